import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from '../../errors.js';
import { closeServer } from './effect-sink.js';
import {
  API_ROUTES,
  requestedTokens,
  streamShape,
  wholeAnswer,
  type ApiRoute,
} from './llm-api-shapes.js';

/** Options of {@link startSlowLlmServer}. */
export interface SlowLlmServerOptions {
  /** Tokens per answer unless the request says `?tokens=`. @default 6 */
  readonly tokens?: number;
  /** Gap between tokens in ms unless the request says `?interval=`. @default 15 */
  readonly tokenIntervalMs?: number;
  /** @default 0 (a free port) */
  readonly port?: number;
}

/** Counters of a running LLM server. */
export interface SlowLlmStats {
  readonly started: number;
  readonly completed: number;
  /** Streams whose client went away before the last token: the server stopped generating. */
  readonly cancelled: number;
  /** Streams open right now. */
  readonly open: number;
}

/** One request the server received on an API route (for tests: what reached the upstream). */
export interface SlowLlmRequest {
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly stream: boolean;
}

/** A running slow LLM server. */
export interface SlowLlmServer {
  readonly url: string;
  stats(): SlowLlmStats;
  /** The last 1,000 requests on the API routes, oldest first. */
  requests(): readonly SlowLlmRequest[];
  close(): Promise<void>;
}

/**
 * A slow local LLM: `POST /v1/generate` streams `tokens` tokens as newline-delimited JSON, one
 * every `tokenIntervalMs`. It also answers in the shapes of the OpenAI (`/v1/chat/completions`,
 * `/v1/responses`, `/v1/embeddings`) and Anthropic (`/v1/messages`) APIs, streamed (server-sent
 * events, when the body says `stream: true`) or whole, with `max_tokens` tokens, so the official
 * SDKs and the gateway can be tested against it. When the client disconnects it stops generating
 * at once (a cancelled call must not keep burning tokens), and counts the stream as cancelled.
 * KS-9.2.2
 *
 * @example
 * ```ts
 * const llm = await startSlowLlmServer({ tokens: 20, tokenIntervalMs: 50 });
 * await fetch(`${llm.url}/v1/generate`, { method: 'POST', signal });
 * ```
 */
export async function startSlowLlmServer(
  options: SlowLlmServerOptions = {},
): Promise<SlowLlmServer> {
  const tokens = options.tokens ?? 6;
  const interval = options.tokenIntervalMs ?? 15;
  if (!Number.isInteger(tokens) || tokens < 1)
    throw new InvalidOptionError('tokens', 'an integer >= 1', tokens);
  if (!Number.isInteger(interval) || interval < 0) {
    throw new InvalidOptionError('tokenIntervalMs', 'an integer >= 0 (ms)', interval);
  }
  let started = 0;
  let completed = 0;
  let cancelled = 0;
  let open = 0;
  const seen: SlowLlmRequest[] = [];

  /** Runs one generation: `onToken(i)` every `gap` ms, `onDone` after the last; the client leaving cancels it. */
  const generate = (
    res: ServerResponse,
    n: number,
    gap: number,
    onToken: (i: number) => void,
    onDone: () => void,
  ): void => {
    started++;
    open++;
    let sent = 0;
    let done = false;
    const finish = (how: 'completed' | 'cancelled') => {
      if (done) return;
      done = true;
      open--;
      clearTimeout(timer);
      if (how === 'completed') completed++;
      else cancelled++;
    };
    const tick = () => {
      if (done) return;
      sent++;
      onToken(sent);
      if (sent >= n) {
        finish('completed');
        onDone();
        return;
      }
      timer = setTimeout(tick, gap);
    };
    let timer = setTimeout(tick, gap);
    res.on('close', () => finish('cancelled'));
  };

  const api = (route: ApiRoute, req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ error: { message: 'body is not JSON', type: 'invalid_request_error' } }),
        );
        return;
      }
      const stream = body.stream === true && route !== '/v1/embeddings';
      seen.push({ path: route, headers: { ...req.headers }, stream });
      if (seen.length > 1000) seen.shift();
      const model = typeof body.model === 'string' ? body.model : 'slow-1';
      const n = route === '/v1/embeddings' ? 1 : requestedTokens(body, tokens);
      if (!stream) {
        generate(
          res,
          n,
          interval,
          () => undefined,
          () => {
            const text = JSON.stringify(wholeAnswer(route, model, n));
            res.writeHead(200, {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(text),
            });
            res.end(text);
          },
        );
        return;
      }
      const shape = streamShape(route, model);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write(shape.head);
      generate(
        res,
        n,
        interval,
        (i) => res.write(shape.token(i)),
        () => res.end(shape.tail),
      );
    });
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://llm');
    const route = API_ROUTES.find((r) => r === url.pathname);
    if (route !== undefined && req.method === 'POST') {
      api(route, req, res);
      return;
    }
    if (url.pathname !== '/v1/generate' || req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    req.resume();
    const n = clampInt(url.searchParams.get('tokens'), tokens, 1, 100_000);
    const gap = clampInt(url.searchParams.get('interval'), interval, 0, 600_000);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.flushHeaders();
    generate(
      res,
      n,
      gap,
      (i) => res.write(JSON.stringify({ token: `t${i}`, index: i - 1 }) + '\n'),
      () => res.end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    stats: () => ({ started, completed, cancelled, open }),
    requests: () => [...seen],
    close: () => closeServer(server),
  };
}

function clampInt(raw: string | null, fallback: number, min: number, max: number): number {
  if (raw === null) return fallback;
  const n = Number(raw);
  return Number.isInteger(n) && n >= min && n <= max ? n : fallback;
}
