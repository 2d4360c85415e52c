import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, HaltedError, type ValidationError } from '../errors.js';
import {
  LineageWire,
  lineageFromHeaders,
  lineageFromMeta,
  type Lineage,
} from '../lineage/lineage.js';
import type { GatewayConfig } from './gateway-config.js';
import {
  EFFECT_KEY_META,
  MCP_HALTED_ERROR_CODE,
  refusalData,
  refusalOf,
  refusalText,
} from './gateway-refusal.js';
import type { Gateway, GatewaySeam } from './gateway.js';
import { Seam } from './gateway-metrics.js';
import {
  HANDSHAKE_VERSIONS,
  LATEST_HANDSHAKE_VERSION,
  RpcCode,
  asMessage,
  isNotification,
  isRequest,
  sseEvent,
  type JsonRpcError,
  type JsonRpcId,
  type JsonRpcMessage,
} from './internal/json-rpc.js';
import { mergeLineage } from './internal/lineage.js';
import { McpUpstream, UpstreamRpcError } from './internal/mcp-upstream.js';
import { readBody } from './internal/read-body.js';

/**
 * The reason sent upstream with `notifications/cancelled` when a halt cuts a call: a fixed text,
 * so the flip's selector and reason (tenant names, incident notes) never reach a third party.
 */
const UPSTREAM_CANCEL_REASON = 'cancelled by the kill switch';
/** The reason sent upstream when the client cancelled or went away. */
const CLIENT_CANCEL_REASON = 'cancelled by the client';
const CLIENT_GONE_REASON = 'the client closed the request stream';
const SERVER_INFO = { name: 'killswitch-gateway', version: '1.0.0' };

type McpConfig = NonNullable<GatewayConfig['mcp']>;
type Headers = Record<string, string | string[] | undefined>;
type Notify = (msg: JsonRpcMessage) => void;

/** One MCP session: a Streamable HTTP `mcp-session-id`, or the one stdio session. */
interface Session {
  readonly id: string;
  /** The name of the bearer token that opened it (a session answers only to that token). */
  readonly principal: string | undefined;
  /** When it was last used (monotonic ms): idle sessions are closed after `mcp.sessionIdleMs`. */
  lastSeen: number;
  /** Calls in flight by JSON-RPC id: aborted when the client cancels or closes the stream. */
  readonly live: Map<string, AbortController>;
}

const liveKey = (id: JsonRpcId): string => `${typeof id}:${String(id)}`;

/**
 * The MCP seam of the gateway: an MCP server (Streamable HTTP at `mcp.path`, or stdio) in front of
 * the configured upstream MCP servers, speaking raw JSON-RPC both ways (no SDK in the hot path).
 * `tools/list` passes through with each upstream's tools under its prefix (`files__read`); every
 * `tools/call` is a guarded effect with capability `<upstream>.<tool>` (configurable) and
 * tenant/feature/run from `_meta["dev.killswitch/lineage"]` or the request's headers. A matching
 * halt cancels the call upstream at once (`notifications/cancelled`, and its request stream
 * closed, the 2026-07-28 cancel) and answers the client at once with a JSON-RPC error
 * {@link MCP_HALTED_ERROR_CODE} naming the flip in `data`; a refused call never leaves. A client
 * that closes its request stream (how the 2026-07-28 protocol cancels) or sends
 * `notifications/cancelled` (how 2025 versions do) cancels the call upstream too. KS-15.3
 */
export class McpGateway implements GatewaySeam {
  readonly #gw: Gateway;
  readonly #config: McpConfig;
  readonly #upstreams: McpUpstream[];
  readonly #sessions = new Map<string, Session>();
  readonly #tokens: { name: string; digest: Buffer }[];
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  private constructor(gw: Gateway, config: McpConfig, upstreams: McpUpstream[]) {
    this.#gw = gw;
    this.#config = config;
    this.#upstreams = upstreams;
    this.#tokens = (config.auth?.tokens ?? []).map((t) => ({
      name: t.name,
      digest: Buffer.from(t.sha256, 'hex'),
    }));
    this.#sweeper = setInterval(
      () => this.#sweep(),
      Math.min(config.sessionIdleMs, 60_000),
    ).unref();
  }

  /**
   * The token a request presents: its name, undefined when no auth is configured, false when the
   * request must be refused (no bearer token, or one not configured). Compared as SHA-256 digests
   * in constant time.
   */
  #principal(req: IncomingMessage): string | undefined | false {
    if (this.#config.auth === undefined) return undefined;
    const h = req.headers['authorization'];
    const m = typeof h === 'string' ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h) : null;
    if (m === null) return false;
    const digest = createHash('sha256').update(m[1]!, 'utf8').digest();
    let found: string | false = false;
    for (const t of this.#tokens) if (timingSafeEqual(t.digest, digest)) found = t.name;
    return found;
  }

  /** Closes sessions idle longer than `mcp.sessionIdleMs` with no call in flight. */
  #sweep(): void {
    const now = performance.now();
    for (const s of [...this.#sessions.values()])
      if (s.live.size === 0 && now - s.lastSeen > this.#config.sessionIdleMs)
        this.#endSession(s, CLIENT_GONE_REASON);
  }

  /**
   * Connects every configured upstream (so a wrong command or URL fails the start, named).
   *
   * @throws {KillSwitchError} `KS_UNREACHABLE` naming `mcp.upstreams.<name>`
   */
  static async open(
    gw: Gateway,
    config: McpConfig,
    logger: { warn(m: string): void },
  ): Promise<McpGateway> {
    const upstreams = Object.entries(config.upstreams).map(([name, c]) =>
      McpUpstream.of(name, c, logger),
    );
    try {
      await Promise.all(upstreams.map((u) => u.ready()));
    } catch (err) {
      await Promise.allSettled(upstreams.map((u) => u.close()));
      throw err;
    }
    return new McpGateway(gw, config, upstreams);
  }

  /** Sessions open over Streamable HTTP. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Answers one request of a session (undefined for a notification). */
  async #handle(
    session: Session,
    msg: JsonRpcMessage,
    headers: Headers | undefined,
    notify: Notify | undefined,
  ): Promise<JsonRpcMessage | undefined> {
    if (isNotification(msg)) {
      if (msg.method === 'notifications/cancelled') {
        const id = msg.params?.['requestId'];
        if (typeof id === 'string' || typeof id === 'number')
          session.live.get(liveKey(id))?.abort(CLIENT_CANCEL_REASON);
      }
      return undefined;
    }
    if (!isRequest(msg)) return undefined; // a response to nothing the gateway asked
    const id = msg.id;
    const params = msg.params ?? {};
    try {
      switch (msg.method) {
        case 'initialize':
          return ok(id, {
            protocolVersion: negotiate(params['protocolVersion']),
            capabilities: { tools: { listChanged: false } },
            serverInfo: SERVER_INFO,
          });
        case 'ping':
          return ok(id, {});
        case 'tools/list':
          return ok(id, { tools: await this.#listTools() });
        case 'tools/call':
          return await this.#callTool(session, id, params, headers, notify);
        default:
          return fail(id, {
            code: RpcCode.METHOD_NOT_FOUND,
            message: `the kill-switch gateway serves tools only (${msg.method} not found)`,
          });
      }
    } catch (err) {
      if (err instanceof UpstreamRpcError) return fail(id, err.rpc);
      return fail(id, {
        code: RpcCode.INTERNAL_ERROR,
        message: (err as Error)?.message ?? String(err),
      });
    }
  }

  async #listTools(): Promise<unknown[]> {
    const pages = await Promise.all(
      this.#upstreams.map(async (u) => {
        const out: unknown[] = [];
        let cursor: string | undefined;
        do {
          const r = await u.request('tools/list', cursor !== undefined ? { cursor } : {}, {
            timeoutMs: this.#config.callTimeoutMs,
          });
          if (r.error !== undefined) throw new UpstreamRpcError(u.name, r.error);
          const page = r.result as { tools?: unknown; nextCursor?: unknown } | null;
          if (page === null || typeof page !== 'object' || !Array.isArray(page.tools))
            throw new Error(`upstream ${u.name}: tools/list answered without a tools array`);
          for (const t of page.tools) {
            if (
              t !== null &&
              typeof t === 'object' &&
              typeof (t as { name?: unknown }).name === 'string'
            )
              out.push({
                ...t,
                name: `${u.name}${this.#config.separator}${(t as { name: string }).name}`,
              });
          }
          cursor = typeof page.nextCursor === 'string' ? page.nextCursor : undefined;
        } while (cursor !== undefined);
        return out;
      }),
    );
    return pages.flat();
  }

  #resolve(name: string): { upstream: McpUpstream; tool: string } | undefined {
    let best: { upstream: McpUpstream; tool: string } | undefined;
    for (const u of this.#upstreams) {
      const prefix = `${u.name}${this.#config.separator}`;
      if (name.startsWith(prefix) && name.length > prefix.length) {
        if (best === undefined || u.name.length > best.upstream.name.length)
          best = { upstream: u, tool: name.slice(prefix.length) };
      }
    }
    return best;
  }

  async #callTool(
    session: Session,
    id: JsonRpcId,
    params: Record<string, unknown>,
    headers: Headers | undefined,
    notify: Notify | undefined,
  ): Promise<JsonRpcMessage> {
    const name = params['name'];
    const target = typeof name === 'string' ? this.#resolve(name) : undefined;
    if (target === undefined)
      return fail(id, {
        code: RpcCode.INVALID_PARAMS,
        message: `unknown tool ${String(name)}: list the gateway's tools for the prefixed names`,
      });
    const meta = params['_meta'];
    let lineage: Lineage;
    try {
      lineage = this.#lineage(meta, headers);
    } catch (err) {
      // KS-15.3.3 an unreadable lineage refuses the call: a run halt could not match it.
      this.#gw.metrics.calls.inc({
        seam: Seam.MCP,
        target: target.upstream.name,
        outcome: 'rejected',
      });
      return fail(id, {
        code: RpcCode.INVALID_PARAMS,
        message: (err as ValidationError).message,
        data: { issues: (err as ValidationError).issues },
      });
    }
    const capability = this.#config.capability
      .replaceAll('{upstream}', target.upstream.name)
      .replaceAll('{tool}', target.tool);
    const key = liveKey(id);
    const gone = new AbortController();
    session.live.set(key, gone);
    const clientToken =
      meta !== null && typeof meta === 'object'
        ? (meta as Record<string, unknown>)['progressToken']
        : undefined;
    try {
      const result = await this.#gw.run(
        { seam: Seam.MCP, target: target.upstream.name, capability, lineage },
        async (signal, _callId, effectKey) => {
          // One signal for the ways a call ends early: a halt (the guard's) or the client.
          const upstreamAbort = new AbortController();
          const where = `MCP upstream ${target.upstream.name}`;
          let hold: ReturnType<Gateway['holdUnenforced']> | undefined;
          const onHalt = (): void => {
            // KS-6.5 until the upstream took the cancel, the halt is not enforced for this call:
            // held now, while the halt is applied, so the flip's first acknowledgement says so.
            const seq = signal.reason instanceof HaltedError ? signal.reason.flip?.seq : undefined;
            if (seq !== undefined)
              hold = this.#gw.holdUnenforced(seq, `cancelling a call in flight on ${where}`);
            upstreamAbort.abort(signal.reason);
          };
          const onGone = (): void => upstreamAbort.abort(gone.signal.reason);
          if (signal.aborted) onHalt();
          else signal.addEventListener('abort', onHalt, { once: true });
          if (gone.signal.aborted) onGone();
          else gone.signal.addEventListener('abort', onGone, { once: true });
          try {
            const started = performance.now();
            const r = await target.upstream.request(
              'tools/call',
              {
                ...params,
                name: target.tool,
                // The upstream gets its own progress token (the client's stays here), the
                // lineage the call was evaluated under (KS-15.3.3: the client's _meta over its
                // headers over the defaults) and the call's ledger key (KS-15.3.10).
                _meta: {
                  ...(meta !== undefined && meta !== null && typeof meta === 'object'
                    ? withoutProgressToken(meta as Record<string, unknown>)
                    : {}),
                  [LineageWire.META_KEY]: { ...lineage, runPath: [...lineage.runPath] },
                  [EFFECT_KEY_META]: effectKey,
                },
              },
              {
                signal: upstreamAbort.signal,
                cancelReason: () =>
                  signal.aborted ? UPSTREAM_CANCEL_REASON : CLIENT_CANCEL_REASON,
                timeoutMs: this.#config.callTimeoutMs,
                onCancel: (o) => {
                  if (o.delivered) hold?.release();
                  else
                    hold?.update(
                      `could not cancel a call in flight on ${where} (${o.error}): it may still run there; retrying`,
                    );
                },
                ...(clientToken !== undefined && notify !== undefined
                  ? {
                      onProgress: (p: Record<string, unknown>) =>
                        notify({
                          jsonrpc: '2.0',
                          method: 'notifications/progress',
                          params: { ...p, progressToken: clientToken },
                        }),
                    }
                  : {}),
              },
            );
            this.#gw.observeUpstream(
              Seam.MCP,
              target.upstream.name,
              (performance.now() - started) / 1000,
            );
            if (r.error !== undefined) throw new UpstreamRpcError(target.upstream.name, r.error);
            return r.result;
          } finally {
            signal.removeEventListener('abort', onHalt);
            gone.signal.removeEventListener('abort', onGone);
          }
        },
      );
      return ok(id, result);
    } catch (err) {
      if (err instanceof HaltedError) {
        // A halt that cut the call queued its cancel for the upstream on the next tick: the
        // cancel leaves first, then this answer (a few µs later), so the client's answer never
        // holds up what stops the upstream's work.
        if (err.code === ErrorCode.ABORTED) await nextTick();
        const r = refusalOf(err);
        return fail(id, {
          code: MCP_HALTED_ERROR_CODE,
          message: refusalText(r),
          data: refusalData(r),
        });
      }
      if (err instanceof UpstreamRpcError) return fail(id, err.rpc);
      if (gone.signal.aborted)
        return fail(id, {
          code: RpcCode.REQUEST_TIMEOUT,
          message: `call cancelled: ${String(gone.signal.reason)}`,
        });
      return fail(id, {
        code: RpcCode.INTERNAL_ERROR,
        message: (err as Error)?.message ?? String(err),
      });
    } finally {
      session.live.delete(key);
    }
  }

  #lineage(meta: unknown, headers: Headers | undefined): Lineage {
    const d = this.#gw.config.defaults;
    let l: Lineage = {
      ...(d.tenant !== undefined ? { tenant: d.tenant } : {}),
      ...(d.feature !== undefined ? { feature: d.feature } : {}),
      runPath: [],
    };
    if (headers !== undefined) l = mergeLineage(l, lineageFromHeaders(headers));
    return mergeLineage(l, lineageFromMeta(meta));
  }

  /** Streamable HTTP at `mcp.path`: one MCP session per `mcp-session-id`. KS-15.3.1 */
  readonly route = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== this.#config.path) return false;
    const principal = this.#principal(req);
    if (principal === false) {
      // KS-15.3.7 nothing is read, no session is made, nothing leaves for an unknown caller.
      this.#gw.metrics.mcpRejected.inc({ reason: 'unauthorized' });
      res.setHeader('www-authenticate', 'Bearer realm="killswitch-gateway"');
      rpcError(res, 401, RpcCode.CONNECTION_CLOSED, 'Unauthorized: a bearer token is required');
      req.resume();
      return true;
    }
    const sid = req.headers['mcp-session-id'];
    // A session answers only to the token that opened it; to any other it does not exist.
    const known = (id: unknown): Session | undefined => {
      const s = typeof id === 'string' ? this.#sessions.get(id) : undefined;
      return s !== undefined && s.principal === principal ? s : undefined;
    };
    if (req.method === 'DELETE') {
      const s = known(sid);
      if (s === undefined) {
        rpcError(res, 404, RpcCode.CONNECTION_CLOSED, `unknown MCP session ${String(sid)}`);
        return true;
      }
      this.#endSession(s, CLIENT_GONE_REASON);
      res.writeHead(200).end();
      return true;
    }
    if (req.method !== 'POST') {
      // No server-initiated stream: the gateway sends nothing outside an answer.
      res.writeHead(405, { allow: 'POST, DELETE' }).end();
      return true;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse((await readBody(req, 4 * 1024 * 1024)).toString('utf8'));
    } catch (err) {
      rpcError(res, 400, RpcCode.PARSE_ERROR, `request body: ${(err as Error).message}`);
      return true;
    }
    const batch = Array.isArray(parsed);
    const msgs: JsonRpcMessage[] = [];
    for (const m of batch ? (parsed as unknown[]) : [parsed]) {
      const msg = asMessage(m);
      if (msg === undefined) {
        rpcError(res, 400, RpcCode.INVALID_REQUEST, 'request body: not a JSON-RPC 2.0 message');
        return true;
      }
      msgs.push(msg);
    }
    let session = known(sid);
    if (session === undefined) {
      if (typeof sid === 'string') {
        rpcError(res, 404, RpcCode.CONNECTION_CLOSED, `unknown MCP session ${sid}`);
        return true;
      }
      if (msgs.length !== 1 || msgs[0]!.method !== 'initialize' || !isRequest(msgs[0]!)) {
        rpcError(
          res,
          400,
          RpcCode.CONNECTION_CLOSED,
          'Bad Request: no mcp-session-id: send initialize first',
        );
        return true;
      }
      if (this.#closed) {
        rpcError(res, 503, RpcCode.CONNECTION_CLOSED, 'the gateway is closing');
        return true;
      }
      if (this.#sessions.size >= this.#config.maxSessions) this.#sweep();
      if (this.#sessions.size >= this.#config.maxSessions) {
        // KS-15.3.8 bounded: a new session past the cap is refused, the open ones keep working.
        this.#gw.metrics.mcpRejected.inc({ reason: 'session-cap' });
        res.setHeader('retry-after', '5');
        rpcError(
          res,
          503,
          RpcCode.CONNECTION_CLOSED,
          `the gateway holds its maximum of ${this.#config.maxSessions} MCP sessions (mcp.maxSessions): close one (DELETE) or retry later`,
        );
        return true;
      }
      session = { id: randomUUID(), principal, lastSeen: performance.now(), live: new Map() };
      this.#sessions.set(session.id, session);
      this.#gw.metrics.mcpSessions.set(this.#sessions.size);
    } else if (msgs.some((m) => m.method === 'initialize')) {
      rpcError(res, 400, RpcCode.INVALID_REQUEST, 'initialize sent twice in one session');
      return true;
    }
    session.lastSeen = performance.now();
    const requests = msgs.filter(isRequest);
    const s = session;
    if (requests.length === 0) {
      for (const m of msgs) void this.#handle(s, m, req.headers, undefined);
      res.writeHead(202, { 'mcp-session-id': s.id }).end();
      return true;
    }
    // KS-15.3.6 a client that closes its request stream cancels its calls (the 2026-07-28 way).
    res.on('close', () => {
      if (res.writableFinished) return;
      for (const r of requests) s.live.get(liveKey(r.id))?.abort(CLIENT_GONE_REASON);
    });
    const accept = String(req.headers['accept'] ?? '');
    const only = requests.length === 1 && !batch ? requests[0]! : undefined;
    const token = (only?.params?.['_meta'] as Record<string, unknown> | undefined)?.[
      'progressToken'
    ];
    if (only !== undefined && token !== undefined && accept.includes('text/event-stream')) {
      // Progress to relay: answer as a stream of events, the answer last.
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'mcp-session-id': s.id,
      });
      const notify: Notify = (m) => {
        if (!res.writableEnded) res.write(sseEvent(m));
      };
      const answer = await this.#handle(s, only, req.headers, notify);
      if (!res.writableEnded) res.end(sseEvent(answer));
      return true;
    }
    const answers = await Promise.all(msgs.map((m) => this.#handle(s, m, req.headers, undefined)));
    const body = batch ? answers.filter((a) => a !== undefined) : answers[0];
    if (res.writableEnded || res.destroyed) return true;
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'mcp-session-id': s.id,
    });
    res.end(text);
    return true;
  };

  #endSession(s: Session, reason: string): void {
    this.#sessions.delete(s.id);
    this.#gw.metrics.mcpSessions.set(this.#sessions.size);
    for (const c of s.live.values()) c.abort(reason);
  }

  /**
   * Serves one MCP session over this process's stdin and stdout (for local agents that start the
   * gateway as their MCP server): JSON-RPC messages one per line. Resolves when stdin ends. KS-15.3.1
   */
  async serveStdio(
    input: NodeJS.ReadableStream = process.stdin,
    output: NodeJS.WritableStream = process.stdout,
  ): Promise<void> {
    const session: Session = {
      id: 'stdio',
      principal: undefined,
      lastSeen: performance.now(),
      live: new Map(),
    };
    const write = (m: JsonRpcMessage | undefined): void => {
      if (m !== undefined) output.write(`${JSON.stringify(m)}\n`);
    };
    let buf = '';
    const onLine = (line: string): void => {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch (err) {
        write(
          fail(null, { code: RpcCode.PARSE_ERROR, message: `not JSON: ${(err as Error).message}` }),
        );
        return;
      }
      for (const m of Array.isArray(v) ? v : [v]) {
        const msg = asMessage(m);
        if (msg === undefined) {
          write(
            fail(null, { code: RpcCode.INVALID_REQUEST, message: 'not a JSON-RPC 2.0 message' }),
          );
          continue;
        }
        void this.#handle(session, msg, undefined, write).then(write);
      }
    };
    input.setEncoding('utf8');
    await new Promise<void>((resolve) => {
      input.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line !== '') onLine(line);
        }
      });
      input.once('end', () => resolve());
      input.once('close', () => resolve());
    });
    for (const c of session.live.values()) c.abort(CLIENT_GONE_REASON);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const s of [...this.#sessions.values()]) this.#endSession(s, UPSTREAM_CANCEL_REASON);
    await Promise.allSettled(this.#upstreams.map((u) => u.close()));
  }
}

/** The protocol version answered to `initialize`: the client's when known, else the latest. */
function negotiate(asked: unknown): string {
  return typeof asked === 'string' && (HANDSHAKE_VERSIONS as readonly string[]).includes(asked)
    ? asked
    : LATEST_HANDSHAKE_VERSION;
}

/** Resolves after the callbacks already queued with process.nextTick ran. */
function nextTick(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve));
}

function ok(id: JsonRpcId, result: unknown): JsonRpcMessage {
  return { jsonrpc: '2.0', id, result };
}

function fail(id: JsonRpcId | null, error: JsonRpcError): JsonRpcMessage {
  return { jsonrpc: '2.0', id, error };
}

/** The upstream gets its own progress token; the client's stays between gateway and client. */
function withoutProgressToken(meta: Record<string, unknown>): Record<string, unknown> {
  const { progressToken: _dropped, ...rest } = meta;
  return rest;
}

function rpcError(res: ServerResponse, status: number, code: number, message: string): void {
  const text = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
