import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from '../../errors.js';
import { closeServer } from './effect-sink.js';

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

/** A running slow LLM server. */
export interface SlowLlmServer {
  readonly url: string;
  stats(): SlowLlmStats;
  close(): Promise<void>;
}

/**
 * A slow local LLM: `POST /v1/generate` streams `tokens` tokens as newline-delimited JSON, one
 * every `tokenIntervalMs`. When the client disconnects it stops generating at once (a cancelled
 * call must not keep burning tokens), and counts the stream as cancelled. KS-9.2.2
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

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://llm');
    if (url.pathname !== '/v1/generate' || req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    req.resume();
    const n = clampInt(url.searchParams.get('tokens'), tokens, 1, 100_000);
    const gap = clampInt(url.searchParams.get('interval'), interval, 0, 600_000);
    started++;
    open++;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.flushHeaders();
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
      res.write(JSON.stringify({ token: `t${sent}`, index: sent - 1 }) + '\n');
      if (sent >= n) {
        finish('completed');
        res.end();
        return;
      }
      timer = setTimeout(tick, gap);
    };
    let timer = setTimeout(tick, gap);
    // 'close' on the response before the last token means the client went away.
    res.on('close', () => finish('cancelled'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    stats: () => ({ started, completed, cancelled, open }),
    close: () => closeServer(server),
  };
}

function clampInt(raw: string | null, fallback: number, min: number, max: number): number {
  if (raw === null) return fallback;
  const n = Number(raw);
  return Number.isInteger(n) && n >= min && n <= max ? n : fallback;
}
