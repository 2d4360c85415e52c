import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from '../../errors.js';
import type { KillContext, SelectorKey } from '../../model/selector.js';
import { systemClock, type Clock } from '../../internal/clock.js';

/** One effect that reached the sink: it landed at `at`. KS-9.2.1 */
export interface SinkEffect {
  /** Arrival time (drill clock, epoch ms with sub-ms precision). */
  readonly at: number;
  /** When the worker dispatched it (its `x-drill-sent-at` header), if it said. */
  readonly sentAt?: number;
  /** The effect's idempotency key. */
  readonly key: string;
  readonly context: KillContext;
  readonly capability: string;
  /** The worker that sent it. */
  readonly workerId: string;
  /** `run` (a step of a run), `retry`, `timer` or `queue`. */
  readonly kind: string;
  /** Attempt number (1 = first). */
  readonly attempt: number;
}

/** Options of {@link startEffectSink}. */
export interface EffectSinkOptions {
  /** Port; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** Loopback only by default; the sink takes effects from anyone who can reach it. @default '127.0.0.1' */
  readonly host?: string;
  /** The time basis: arrival times are its monotonic `now()` readings. @default systemClock */
  readonly clock?: Clock;
}

/** A running sink. */
export interface EffectSink {
  readonly url: string;
  /** Every effect that landed, in arrival order. */
  readonly effects: readonly SinkEffect[];
  /** Attempts the sink rejected on purpose (503), so workers retry. */
  readonly rejected: number;
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;

/**
 * The effect sink: a local HTTP server standing in for every tool's side effect. Each
 * `POST /effects` is an effect landing; the sink records its arrival time, idempotency key and
 * context. A request with `x-drill-fail: 1` is rejected with 503 and does not land (a transient
 * tool failure, so the workers' retries run). `GET /effects?since=<ms>` lists what landed, so a
 * drill against a fleet it did not start can read a sink it did not start. KS-9.2.1
 *
 * @example
 * ```ts
 * const sink = await startEffectSink();
 * // ... workers POST to `${sink.url}/effects`
 * sink.effects.filter((e) => e.at > flipAt);
 * ```
 */
export async function startEffectSink(options: EffectSinkOptions = {}): Promise<EffectSink> {
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidOptionError('port', 'an integer 0..65535', port);
  }
  const clock = options.clock ?? systemClock;
  const effects: SinkEffect[] = [];
  let rejected = 0;

  const server: Server = createServer((req, res) => {
    // The arrival time is taken before the body is read: that is when the effect reached the tool.
    const at = clock.now();
    const url = new URL(req.url ?? '/', 'http://sink');
    if (url.pathname === '/effects' && req.method === 'POST') {
      readBody(req).then(
        (body) => {
          const parsed = parseEffect(body, req, at);
          if (parsed === undefined) return send(res, 400, { error: 'bad effect' });
          if (req.headers['x-drill-fail'] === '1') {
            rejected++;
            return send(res, 503, { error: 'transient failure (drill)' });
          }
          effects.push(parsed);
          send(res, 200, { ok: true, key: parsed.key });
        },
        () => send(res, 400, { error: 'unreadable body' }),
      );
      return;
    }
    if (url.pathname === '/effects' && req.method === 'GET') {
      const since = Number(url.searchParams.get('since') ?? '0');
      return send(res, 200, { effects: effects.filter((e) => e.at > since) });
    }
    if (url.pathname === '/healthz') return send(res, 200, { ok: true });
    send(res, 404, { error: 'not found' });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, options.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    effects,
    get rejected() {
      return rejected;
    },
    close: () => closeServer(server),
  };
}

function parseEffect(body: string, req: IncomingMessage, at: number): SinkEffect | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (
    typeof o.key !== 'string' ||
    typeof o.capability !== 'string' ||
    typeof o.workerId !== 'string'
  ) {
    return undefined;
  }
  const c = (typeof o.context === 'object' && o.context !== null ? o.context : {}) as Record<
    string,
    unknown
  >;
  const context: { -readonly [K in SelectorKey]?: string } & { runPath?: readonly string[] } = {};
  for (const k of ['tenant', 'feature', 'runId', 'capability'] as const) {
    if (typeof c[k] === 'string') context[k] = c[k];
  }
  // The run tree of the effect, so a run-tree drill can tell a descendant's effect from others.
  const rp = c.runPath;
  if (Array.isArray(rp) && rp.length <= 64 && rp.every((v) => typeof v === 'string')) {
    context.runPath = rp as string[];
  }
  const sent = Number(req.headers['x-drill-sent-at']);
  return {
    at,
    ...(Number.isFinite(sent) && sent > 0 ? { sentAt: sent } : {}),
    key: o.key,
    context,
    capability: o.capability,
    workerId: o.workerId,
    kind: typeof o.kind === 'string' ? o.kind : 'run',
    attempt: typeof o.attempt === 'number' ? o.attempt : 1,
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Closes a server and every kept-alive connection, so tests and drills end promptly. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
