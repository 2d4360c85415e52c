import { createHash } from 'node:crypto';
import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { HaltedError, type ValidationError } from '../errors.js';
import type { GatewayConfig } from './gateway-config.js';
import type { Gateway, GatewaySeam } from './gateway.js';
import { refusalData, refusalOf, refusalText, type GatewayRefusal } from './gateway-refusal.js';
import { Seam } from './gateway-metrics.js';
import { lineageFromHeaders, type Lineage } from '../lineage/lineage.js';
import { mergeLineage } from './internal/lineage.js';
import { readBody } from './internal/read-body.js';

/** After this long a cut call whose client has not taken its response's end is reported as such, ms. */
const CUT_REPORT_AFTER_MS = 100;
/** After this long such a client's connection is reset (KS-15.2.8), ms. */
const CUT_FLUSH_GRACE_MS = 1_000;

/** The two API families the proxy speaks. */
export const LlmApi = { OPENAI: 'openai', ANTHROPIC: 'anthropic' } as const;
export type LlmApi = (typeof LlmApi)[keyof typeof LlmApi];

type CapabilityKey = keyof NonNullable<GatewayConfig['llm']>['capabilities'];

/** The endpoints the proxy guards (POST only). KS-15.2.1 */
const ENDPOINTS: Readonly<Record<string, { api: LlmApi; target: string; cap: CapabilityKey }>> = {
  '/v1/chat/completions': {
    api: LlmApi.OPENAI,
    target: 'chat.completions',
    cap: 'chatCompletions',
  },
  '/v1/responses': { api: LlmApi.OPENAI, target: 'responses', cap: 'responses' },
  '/v1/embeddings': { api: LlmApi.OPENAI, target: 'embeddings', cap: 'embeddings' },
  '/v1/messages': { api: LlmApi.ANTHROPIC, target: 'messages', cap: 'messages' },
};

/** Request headers never forwarded: hop-by-hop, our own lineage, and what the proxy sets itself. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'accept-encoding',
  'x-killswitch-tenant',
  'x-killswitch-feature',
  'x-killswitch-run-path',
]);
/** Response headers never forwarded (the proxy frames the body itself). */
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'trailer',
  'upgrade',
]);

/** The upstream answered with an error status: forwarded as is, recorded as `failed`. */
class UpstreamStatusError extends Error {
  constructor(readonly answer: BufferedAnswer) {
    super(`upstream answered ${answer.status}`);
  }
}

interface BufferedAnswer {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly body: Buffer;
}

/** What a streamed call's body resolves with (the response was written as it came). */
const STREAMED = Symbol('streamed');

/**
 * The LLM seam of the gateway: a reverse proxy for OpenAI-compatible `/v1/chat/completions`,
 * `/v1/responses`, `/v1/embeddings` and Anthropic `/v1/messages`, streaming and not. Every
 * request is a guarded effect (capability per endpoint, tenant/feature/run from the
 * `x-killswitch-*` headers, W3C baggage, the API key's configured context or the defaults).
 * A refused call gets the API's own error format naming the flip; a halt during a stream ends it
 * with an error event the SDKs raise, and the upstream request is aborted. API keys pass through
 * untouched and are never logged or recorded. KS-15.2
 */
export class LlmProxy implements GatewaySeam {
  readonly #gw: Gateway;
  readonly #llm: NonNullable<GatewayConfig['llm']>;
  readonly #httpAgent = new HttpAgent({ keepAlive: true, maxSockets: Infinity });
  readonly #httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: Infinity });

  constructor(gw: Gateway, llm: NonNullable<GatewayConfig['llm']>) {
    this.#gw = gw;
    this.#llm = llm;
  }

  readonly route = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0]!;
    const ep = Object.hasOwn(ENDPOINTS, path) ? ENDPOINTS[path] : undefined;
    if (ep === undefined) return false;
    if (req.method !== 'POST') {
      sendApiError(
        res,
        ep.api,
        405,
        'invalid_request_error',
        `${req.method} ${path} is not supported by the gateway`,
      );
      return true;
    }
    const base = this.#llm[ep.api];
    if (base === undefined) {
      sendApiError(
        res,
        ep.api,
        404,
        'not_found_error',
        `the gateway has no ${ep.api} upstream configured`,
      );
      return true;
    }
    await this.#handle(req, res, ep, base);
    return true;
  };

  async #handle(
    req: IncomingMessage,
    res: ServerResponse,
    ep: { api: LlmApi; target: string; cap: CapabilityKey },
    base: string,
  ): Promise<void> {
    let body: Buffer;
    try {
      body = await readBody(req, this.#llm.maxBodyBytes);
    } catch (err) {
      sendApiError(res, ep.api, 413, 'invalid_request_error', (err as Error).message);
      return;
    }
    let lineage: Lineage;
    try {
      lineage = this.#lineage(req);
    } catch (err) {
      // KS-15.2.6 an unreadable lineage refuses the call: a run halt could not match it.
      this.#gw.metrics.calls.inc({ seam: Seam.LLM, target: ep.target, outcome: 'rejected' });
      sendApiError(res, ep.api, 400, 'invalid_request_error', (err as ValidationError).message);
      return;
    }
    let stream = false;
    try {
      stream = (JSON.parse(body.toString('utf8')) as { stream?: unknown })?.stream === true;
    } catch {
      stream = false; // not JSON: the upstream will say so
    }
    const call = {
      seam: Seam.LLM,
      target: ep.target,
      capability: this.#llm.capabilities[ep.cap],
      lineage,
    };
    // The client going away cancels the call upstream too (not a halt: recorded as failed).
    const clientGone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) clientGone.abort(new Error('the client closed the connection'));
    });
    const writer = new SseWriter(res);
    try {
      const out = await this.#gw.run(call, (signal) =>
        this.#forward(
          req,
          res,
          body,
          base + ((req.url ?? '').startsWith('/v1') ? req.url! : ''),
          stream,
          ep.target,
          mergeSignals(signal, clientGone.signal),
          writer,
        ),
      );
      if (out !== STREAMED) {
        res.writeHead(out.status, out.headers);
        res.end(out.body);
      }
    } catch (err) {
      if (err instanceof HaltedError) {
        const r = refusalOf(err);
        if (!res.headersSent) sendRefusal(res, ep.api, r);
        else writer.fail(errorEvent(ep.api, r)); // KS-15.2.4
        return;
      }
      if (err instanceof UpstreamStatusError) {
        if (!res.headersSent) {
          res.writeHead(err.answer.status, err.answer.headers);
          res.end(err.answer.body);
        } else res.end();
        return;
      }
      if (clientGone.signal.aborted) return;
      const message = `the gateway could not reach the upstream: ${(err as Error)?.message ?? String(err)}`;
      if (!res.headersSent) sendApiError(res, ep.api, 502, 'api_error', message);
      else writer.fail(plainErrorEvent(ep.api, message));
    }
  }

  #lineage(req: IncomingMessage): Lineage {
    const d = this.#gw.config.defaults;
    let base: Lineage = {
      ...(d.tenant !== undefined ? { tenant: d.tenant } : {}),
      ...(d.feature !== undefined ? { feature: d.feature } : {}),
      runPath: [],
    };
    const map = this.#llm.keyContext;
    if (map !== undefined) {
      const key = apiKeyOf(req);
      if (key !== undefined) {
        const hit = map[createHash('sha256').update(key).digest('hex')];
        if (hit !== undefined)
          base = mergeLineage(base, {
            ...(hit.tenant !== undefined ? { tenant: hit.tenant } : {}),
            ...(hit.feature !== undefined ? { feature: hit.feature } : {}),
            runPath: [],
          });
      }
    }
    return mergeLineage(base, lineageFromHeaders(req.headers));
  }

  #forward(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    url: string,
    stream: boolean,
    target: string,
    signal: AbortSignal,
    writer: SseWriter,
  ): Promise<BufferedAnswer | typeof STREAMED> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const headers: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (v !== undefined && !DROP_REQUEST.has(k)) headers[k] = v;
      }
      // The proxy may have to end a stream between two events: it reads the bytes, so no compression.
      headers['accept-encoding'] = 'identity';
      headers['content-length'] = body.length;
      const https = u.protocol === 'https:';
      const started = performance.now();
      const up = (https ? httpsRequest : httpRequest)(u, {
        method: 'POST',
        headers,
        agent: https ? this.#httpsAgent : this.#httpAgent,
      });
      const onAbort = (): void => {
        // KS-15.2.8 a halt is not enforced for this call until the upstream connection is closed
        // and the client has its response's end: held now, while the halt is applied.
        const seq = signal.reason instanceof HaltedError ? signal.reason.flip?.seq : undefined;
        if (seq !== undefined) this.#holdUntilCut(seq, target, up, res);
        // KS-15.2.5 the upstream request is aborted: the model stops generating.
        up.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const done = (): void => signal.removeEventListener('abort', onAbort);
      up.on('error', (err) => {
        done();
        reject(err);
      });
      up.on('response', (answer) => {
        this.#gw.observeUpstream(Seam.LLM, target, (performance.now() - started) / 1000);
        const status = answer.statusCode ?? 502;
        const out: OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(answer.headers)) {
          if (v !== undefined && !DROP_RESPONSE.has(k)) out[k] = v;
        }
        const sse = String(answer.headers['content-type'] ?? '').startsWith('text/event-stream');
        if (stream && sse && status < 300) {
          res.writeHead(status, out);
          res.flushHeaders();
          answer.on('data', (chunk: Buffer) => {
            // Back-pressure: a client that reads slowly slows the upstream down, the gateway does
            // not buffer the stream for it.
            if (!signal.aborted && !writer.write(chunk)) {
              answer.pause();
              res.once('drain', () => answer.resume());
            }
          });
          answer.on('end', () => {
            done();
            if (signal.aborted) return;
            writer.end();
            resolve(STREAMED);
          });
          answer.on('error', (err) => {
            done();
            reject(err);
          });
          return;
        }
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('error', (err) => {
          done();
          reject(err);
        });
        answer.on('end', () => {
          done();
          const buffered = { status, headers: out, body: Buffer.concat(chunks) };
          if (status >= 400) reject(new UpstreamStatusError(buffered));
          else resolve(buffered);
        });
      });
      up.end(body);
    });
  }

  /**
   * KS-15.2.8 the negative acknowledgement of the LLM seam: a halt that cuts a call in flight is
   * reported unenforced until the upstream connection is closed (nothing more can come from the
   * model) and the client's response has ended (the cut event and every byte before it flushed,
   * or its connection closed). A client that does not take that end within
   * {@link CUT_FLUSH_GRACE_MS} holds output from before the halt that may still reach it: the
   * reason says so, and then its connection is reset (what was not delivered never is) and the
   * report withdrawn.
   */
  #holdUntilCut(seq: number, target: string, up: ClientRequest, res: ServerResponse): void {
    const where = `LLM upstream ${target}`;
    const hold = this.#gw.holdUnenforced(seq, `cutting a call in flight on ${where}`);
    let upstreamClosed = false;
    let clientDone = res.writableFinished || res.destroyed;
    const timers: NodeJS.Timeout[] = [];
    const check = (): void => {
      if (!upstreamClosed || !clientDone) return;
      for (const t of timers) clearTimeout(t);
      hold.release();
    };
    // No socket yet: the request never left (destroying it keeps it from leaving).
    const socket = up.socket;
    if (socket === null || socket.destroyed) upstreamClosed = true;
    else
      socket.once('close', () => {
        upstreamClosed = true;
        check();
      });
    const onClient = (): void => {
      clientDone = true;
      check();
    };
    res.once('finish', onClient);
    res.once('close', onClient);
    timers.push(
      setTimeout(() => {
        if (clientDone) return;
        hold.update(
          `the client of a call cut on ${where} has not taken the end of its response (${res.writableLength} bytes waiting): output from before the halt may still reach it`,
        );
      }, CUT_REPORT_AFTER_MS).unref(),
      setTimeout(() => {
        if (clientDone) return;
        const client = res.socket;
        if (client !== null && typeof client.resetAndDestroy === 'function')
          client.resetAndDestroy();
        else res.destroy();
      }, CUT_FLUSH_GRACE_MS).unref(),
    );
    check();
  }

  async close(): Promise<void> {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }
}

/**
 * Forwards a server-sent event stream whole events at a time, so an error event written after a
 * halt never lands inside a half-written event.
 */
class SseWriter {
  #tail = '';
  #ended = false;
  constructor(readonly res: ServerResponse) {}

  /** Writes the whole events in `chunk`; false when the client's buffer is full (wait for `drain`). */
  write(chunk: Buffer): boolean {
    if (this.#ended) return true;
    const text = this.#tail + chunk.toString('utf8');
    const cut = lastBoundary(text);
    if (cut < 0) {
      this.#tail = text;
      return true;
    }
    this.#tail = text.slice(cut);
    return this.res.write(text.slice(0, cut));
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.res.end(this.#tail);
  }

  /** Drops the half event, writes the error event and ends the stream. */
  fail(event: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#tail = '';
    if (this.res.writableEnded || this.res.destroyed) return;
    this.res.end(event);
  }
}

function lastBoundary(text: string): number {
  const a = text.lastIndexOf('\n\n');
  const b = text.lastIndexOf('\r\n\r\n');
  if (a < 0 && b < 0) return -1;
  return Math.max(a < 0 ? -1 : a + 2, b < 0 ? -1 : b + 4);
}

/** The API key the client sent (never logged, never stored: only hashed for `keyContext`). */
function apiKeyOf(req: IncomingMessage): string | undefined {
  const x = req.headers['x-api-key'];
  if (typeof x === 'string' && x !== '') return x;
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '');
  return undefined;
}

function mergeSignals(a: AbortSignal, b: AbortSignal): AbortSignal {
  const c = new AbortController();
  const onA = (): void => c.abort(a.reason);
  const onB = (): void => c.abort(b.reason);
  if (a.aborted) onA();
  else if (b.aborted) onB();
  else {
    a.addEventListener('abort', onA, { once: true });
    b.addEventListener('abort', onB, { once: true });
  }
  return c.signal;
}

/** KS-15.2.3 a refusal in the API's own format; the SDKs do not retry it (`x-should-retry`). */
function sendRefusal(res: ServerResponse, api: LlmApi, r: GatewayRefusal): void {
  // A matching flip forbids the call; a gateway that cannot confirm the state is unavailable.
  const status = r.cause === 'halted' ? 403 : 503;
  const type =
    api === LlmApi.ANTHROPIC
      ? status === 403
        ? 'permission_error'
        : 'api_error'
      : 'killswitch_halted';
  sendApiError(res, api, status, type, refusalText(r), refusalData(r), r.code);
}

function sendApiError(
  res: ServerResponse,
  api: LlmApi,
  status: number,
  type: string,
  message: string,
  killswitch?: Record<string, unknown>,
  code?: string,
): void {
  const extra = killswitch !== undefined ? { killswitch } : {};
  const body =
    api === LlmApi.ANTHROPIC
      ? { type: 'error', error: { type, message, ...extra } }
      : { error: { message, type, param: null, code: code ?? null, ...extra } };
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-should-retry': 'false',
  });
  res.end(text);
}

/**
 * KS-15.2.4 the event that ends a cut stream: OpenAI's SDKs raise `APIError` on an `error` event
 * (and on a data object with `error`), Anthropic's on an `error` event.
 */
function errorEvent(api: LlmApi, r: GatewayRefusal): string {
  const message = refusalText(r);
  const data =
    api === LlmApi.ANTHROPIC
      ? { type: 'error', error: { type: 'api_error', message, killswitch: refusalData(r) } }
      : {
          error: {
            message,
            type: 'killswitch_halted',
            param: null,
            code: r.code,
            killswitch: refusalData(r),
          },
        };
  return `event: error\ndata: ${JSON.stringify(data)}\n\n`;
}

function plainErrorEvent(api: LlmApi, message: string): string {
  const data =
    api === LlmApi.ANTHROPIC
      ? { type: 'error', error: { type: 'api_error', message } }
      : { error: { message, type: 'api_error', param: null, code: null } };
  return `event: error\ndata: ${JSON.stringify(data)}\n\n`;
}
