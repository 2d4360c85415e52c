import { spawn, type ChildProcess } from 'node:child_process';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import { delay } from '../../internal/backoff.js';
import type { McpUpstreamConfig } from '../gateway-config.js';
import {
  LATEST_HANDSHAKE_VERSION,
  RpcCode,
  SseParser,
  asMessage,
  isNotification,
  isRequest,
  type JsonRpcError,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcResponse,
} from './json-rpc.js';

/** How one call to an upstream ends early or reports progress. */
export interface UpstreamCallOptions {
  /** Aborting it cancels the call upstream (`notifications/cancelled`, then the request closed). */
  readonly signal?: AbortSignal;
  /** The text sent upstream as the cancel's reason (fixed texts only: it leaves the gateway). */
  readonly cancelReason?: () => string;
  /** Longest the call may take; progress resets it. */
  readonly timeoutMs: number;
  /** Progress the upstream reports for this call (its params, the upstream's token in them). */
  readonly onProgress?: (params: Record<string, unknown>) => void;
  /**
   * How the cancel went: `delivered` (the upstream took the notification, or the upstream is gone
   * and nothing runs there), else the error of an attempt (it is sent again, backing off, until
   * delivered or the upstream is gone).
   */
  readonly onCancel?: (outcome: { delivered: true } | { delivered: false; error: string }) => void;
}

/** An upstream's JSON-RPC error answer, forwarded to the client as it is. */
export class UpstreamRpcError extends Error {
  readonly rpc: JsonRpcError;
  constructor(upstream: string, rpc: JsonRpcError) {
    super(`upstream ${upstream}: ${rpc.message}`);
    this.name = 'UpstreamRpcError';
    this.rpc = rpc;
  }
}

/** The HTTP upstream forgot the session (404): the call did not run; initialize and send again. */
class SessionExpired extends Error {}

interface Pending {
  settled: boolean;
  resolve(r: JsonRpcResponse): void;
  reject(err: unknown): void;
  onProgress?: ((params: Record<string, unknown>) => void) | undefined;
  /** Closes the call's own request (HTTP): the 2026-07-28 protocol's cancel. */
  abortTransport?: () => void;
  rearm?: () => void;
  /** HTTP: the request went to a socket (the upstream may have it from now on). */
  written?: boolean;
  /** HTTP: the upstream answered on the call's own stream (headers, or the stream ended). */
  responded?: boolean;
  /** Called once when {@link responded} becomes true. */
  onResponded?: (() => void) | undefined;
}

const CLIENT_INFO = { name: 'killswitch-gateway', version: '1.0.0' };
/** From this protocol version on, closing a request's stream cancels it (ISO dates sort). */
const STREAM_CLOSE_CANCELS = '2026-07-28';

/** The upstream answered on a call's own stream (or it ended): tell whoever waits for it. */
function responded(p: Pending): void {
  if (p.responded === true) return;
  p.responded = true;
  p.onResponded?.();
}
/** A refused cancel is sent again after 100, 200, 400 ... ms, at most 5 s apart (no jitter). */
const CANCEL_RETRY = { initialMs: 100, factor: 2, maxMs: 5000, jitter: 0 } as const;
/** How often the cancel connection of an HTTP upstream is used while calls are in flight, ms. */
const WARM_EVERY_MS = 2_000;
/** What a stdio upstream inherits, as the MCP SDK does: nothing secret from the gateway's env. */
const INHERITED_ENV =
  process.platform === 'win32'
    ? [
        'APPDATA',
        'HOMEDRIVE',
        'HOMEPATH',
        'LOCALAPPDATA',
        'PATH',
        'PROCESSOR_ARCHITECTURE',
        'SYSTEMDRIVE',
        'SYSTEMROOT',
        'TEMP',
        'USERNAME',
        'USERPROFILE',
        'PROGRAMFILES',
      ]
    : ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER'];

/**
 * One configured upstream MCP server, spoken to in raw JSON-RPC: an `initialize` handshake on
 * first use (and again after the upstream went away), requests with the gateway's own ids,
 * `notifications/cancelled` on abort, progress routed back to the call it belongs to, and the
 * upstream's own requests answered (`ping`; anything else is refused, the gateway offers the
 * upstream no client capabilities).
 */
export abstract class McpUpstream {
  readonly name: string;
  protected readonly logger: { warn(m: string): void };
  #next = 0;
  readonly #pending = new Map<JsonRpcId, Pending>();
  #ready: Promise<void> | undefined;
  /** Bumped when the upstream is lost: a cancel still being retried knows its call is dead. */
  #generation = 0;
  protected protocolVersion: string = LATEST_HANDSHAKE_VERSION;

  protected constructor(name: string, logger: { warn(m: string): void }) {
    this.name = name;
    this.logger = logger;
  }

  static of(
    name: string,
    config: McpUpstreamConfig,
    logger: { warn(m: string): void },
  ): McpUpstream {
    return 'command' in config
      ? new StdioUpstream(name, config, logger)
      : new HttpUpstream(name, config, logger);
  }

  /**
   * Connects and initializes (once; again after the upstream was lost).
   *
   * @throws {KillSwitchError} `KS_UNREACHABLE` naming `mcp.upstreams.<name>`
   */
  ready(): Promise<void> {
    this.#ready ??= this.connect().catch((err: unknown) => {
      this.#ready = undefined;
      throw new KillSwitchError(
        ErrorCode.UNREACHABLE,
        `gateway config mcp.upstreams.${this.name}: cannot connect: ${(err as Error)?.message ?? String(err)}`,
        { cause: err },
      );
    });
    return this.#ready;
  }

  /** Sends one request (after the handshake); resolves with the upstream's answer. */
  async request(
    method: string,
    params: Record<string, unknown>,
    options: UpstreamCallOptions,
  ): Promise<JsonRpcResponse> {
    try {
      await this.ready();
    } catch (err) {
      // Cut before it was sent: nothing runs upstream.
      if (options.signal?.aborted === true) options.onCancel?.({ delivered: true });
      throw err;
    }
    try {
      return await this.send(method, params, options);
    } catch (err) {
      if (!(err instanceof SessionExpired)) throw err;
      // The upstream restarted or dropped the session before the call ran: once more, anew.
      this.#ready = undefined;
      await this.ready();
      return this.send(method, params, options);
    }
  }

  protected abstract connect(): Promise<void>;
  /**
   * Whether a cancel sent now is sure to reach the upstream after the call it cancels. A stdio
   * upstream reads one pipe in order; an HTTP upstream gets the cancel on another connection, so
   * it is sure only once the upstream answered on the call's stream (an SDK server registers the
   * request before it sends the stream's headers) or, from the 2026-07-28 protocol on, where
   * closing the call's stream is the cancel and comes after the call on its own connection.
   */
  protected cancelOrdered(_entry: Pending): boolean {
    return true;
  }
  /** Told how many requests wait on the upstream whenever that changes. */
  protected callsInFlight(_count: number): void {}
  /** Writes one message; `pending` is the entry of a request (HTTP answers on its own stream). */
  protected abstract transmit(
    msg: JsonRpcMessage,
    pending?: Pending,
    delivered?: (err?: Error) => void,
  ): void;
  abstract close(): Promise<void>;

  /** The `initialize` handshake. */
  protected async handshake(): Promise<void> {
    const r = await this.send(
      'initialize',
      { protocolVersion: LATEST_HANDSHAKE_VERSION, capabilities: {}, clientInfo: CLIENT_INFO },
      { timeoutMs: 30_000 },
    );
    if (r.error !== undefined) throw new Error(`initialize refused: ${r.error.message}`);
    const v = (r.result as { protocolVersion?: unknown } | null)?.protocolVersion;
    if (typeof v !== 'string') throw new Error('initialize answered without a protocolVersion');
    this.protocolVersion = v;
    this.transmit({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  /** The upstream is gone (process exited, stream broke): every call waiting on it fails. */
  protected lost(why: string): void {
    this.#ready = undefined;
    this.#generation++;
    for (const p of [...this.#pending.values()])
      p.reject(new Error(`upstream ${this.name}: ${why}`));
  }

  protected send(
    method: string,
    params: Record<string, unknown>,
    options: UpstreamCallOptions,
  ): Promise<JsonRpcResponse> {
    const id = ++this.#next;
    const { signal, onProgress } = options;
    if (signal?.aborted) {
      options.onCancel?.({ delivered: true }); // cut before it was sent
      return Promise.reject(signal.reason);
    }
    // The upstream's progress token is the request id (unique on this link), as the SDKs do.
    const sent =
      onProgress !== undefined
        ? {
            ...params,
            _meta: { ...((params['_meta'] as object | undefined) ?? {}), progressToken: id },
          }
        : params;
    return new Promise<JsonRpcResponse>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const entry: Pending = {
        settled: false,
        onProgress,
        resolve: (r) => {
          if (!settle()) resolve(r);
        },
        reject: (e) => {
          if (!settle()) reject(e);
        },
        rearm: () => arm(),
      };
      const settle = (): boolean => {
        if (entry.settled) return true;
        entry.settled = true;
        clearTimeout(timer);
        this.#pending.delete(id);
        this.callsInFlight(this.#pending.size);
        return false;
      };
      // Stays registered after the answer: a cut that comes later finds nothing to cancel.
      const onAbort = (): void => {
        if (entry.settled) return options.onCancel?.({ delivered: true });
        this.#cancel(
          id,
          entry,
          options.cancelReason?.() ?? 'cancelled',
          options.timeoutMs,
          options.onCancel,
        );
        entry.reject(signal!.reason);
      };
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.#cancel(id, entry, 'timed out', 0);
          entry.reject(
            new UpstreamRpcError(this.name, {
              code: RpcCode.REQUEST_TIMEOUT,
              message: `upstream ${this.name}: ${method} timed out after ${options.timeoutMs} ms`,
            }),
          );
        }, options.timeoutMs);
        timer.unref();
      };
      this.#pending.set(id, entry);
      this.callsInFlight(this.#pending.size);
      signal?.addEventListener('abort', onAbort, { once: true });
      arm();
      try {
        this.transmit({ jsonrpc: '2.0', id, method, params: sent }, entry);
      } catch (err) {
        entry.reject(err);
      }
    });
  }

  #cancel(
    id: JsonRpcId,
    entry: Pending,
    reason: string,
    timeoutMs: number,
    onCancel?: UpstreamCallOptions['onCancel'],
  ): void {
    if (entry.settled) return;
    const generation = this.#generation;
    const msg: JsonRpcMessage = {
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: id, reason },
    };
    const close = (): void => {
      // The call's own request is closed too (the 2026-07-28 cancel), but after the notification
      // is on the wire: node:http writes it on the next tick (queued just now, so first), and the
      // close is a socket teardown that ran before that write and delayed it (bench:gateway).
      const abortTransport = entry.abortTransport;
      if (abortTransport !== undefined) process.nextTick(abortTransport);
    };
    // KS-15.3.11 a cancel that may reach the upstream before its call is not counted as taken:
    // an upstream ignores a cancel for a request it does not know yet, then runs the call.
    let early = !this.cancelOrdered(entry);
    const attempt = (n: number): void => {
      // The upstream went away since (process exited, gateway closed): nothing runs there.
      if (this.#generation !== generation) return onCancel?.({ delivered: true });
      const failed = (err: Error): void => {
        onCancel?.({ delivered: false, error: err.message });
        setTimeout(() => attempt(n + 1), delay(n, CANCEL_RETRY)).unref();
      };
      const sentEarly = early;
      try {
        this.transmit(msg, undefined, (err) => {
          if (err !== undefined) return failed(err);
          if (!sentEarly) return onCancel?.({ delivered: true });
          onCancel?.({
            delivered: false,
            error: `sent before the upstream answered on the call's stream, so it may have arrived before the call; sent again once it does`,
          });
        });
      } catch (err) {
        failed(err as Error);
      }
    };
    attempt(0);
    if (!early) return close();
    // The call's stream stays open (closing it would cancel nothing before 2026-07-28, and its
    // answer is how the gateway learns the upstream has the call) until the upstream answers on
    // it, or for the call's own time limit at most; then the cancel is sent again, in order.
    const again = (): void => {
      if (!early) return;
      early = false;
      entry.onResponded = undefined;
      clearTimeout(timer);
      attempt(0);
      close();
    };
    const timer = setTimeout(again, timeoutMs);
    timer.unref();
    entry.onResponded = again;
  }

  /** Every message the upstream sends, whatever the transport. */
  protected dispatch(msg: JsonRpcMessage): void {
    if (isRequest(msg)) {
      // The gateway offers the upstream no client capabilities (sampling, roots, elicitation).
      this.transmit(
        msg.method === 'ping'
          ? { jsonrpc: '2.0', id: msg.id, result: {} }
          : {
              jsonrpc: '2.0',
              id: msg.id,
              error: {
                code: RpcCode.METHOD_NOT_FOUND,
                message: `the kill-switch gateway does not serve ${msg.method}`,
              },
            },
      );
      return;
    }
    if (isNotification(msg)) {
      if (msg.method === 'notifications/progress') {
        const token = msg.params?.['progressToken'];
        const p = typeof token === 'number' ? this.#pending.get(token) : undefined;
        if (p !== undefined && msg.params !== undefined) {
          p.rearm?.();
          p.onProgress?.(msg.params);
        }
      }
      return;
    }
    if (msg.id === undefined || msg.id === null) return;
    const p = this.#pending.get(msg.id);
    if (p === undefined) return;
    if (msg.error !== undefined) p.resolve({ error: msg.error });
    else p.resolve({ result: msg.result });
  }

  /** Parses one JSON text (a message or a batch) and dispatches it. */
  protected feed(text: string): void {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      this.logger.warn(`gateway: MCP upstream ${this.name} sent a line that is not JSON; ignored`);
      return;
    }
    for (const m of Array.isArray(v) ? v : [v]) {
      const msg = asMessage(m);
      if (msg !== undefined) this.dispatch(msg);
    }
  }
}

/** An upstream started as a process speaking MCP over stdio (JSON lines). */
class StdioUpstream extends McpUpstream {
  readonly #config: Extract<McpUpstreamConfig, { command: string }>;
  #child: ChildProcess | undefined;

  constructor(
    name: string,
    config: Extract<McpUpstreamConfig, { command: string }>,
    logger: { warn(m: string): void },
  ) {
    super(name, logger);
    this.#config = config;
  }

  protected async connect(): Promise<void> {
    const env: Record<string, string> = {};
    for (const k of INHERITED_ENV) {
      const v = process.env[k];
      if (v !== undefined && !v.startsWith('()')) env[k] = v;
    }
    const child = spawn(this.#config.command, this.#config.args, {
      env: { ...env, ...(this.#config.env ?? {}) },
      ...(this.#config.cwd !== undefined ? { cwd: this.#config.cwd } : {}),
      stdio: ['pipe', 'pipe', 'inherit'],
      windowsHide: true,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    this.#child = child;
    child.stdin!.on('error', () => undefined); // EPIPE when it exits: 'exit' reports it
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line !== '') this.feed(line);
      }
    });
    child.once('exit', (code, sig) => {
      if (this.#child !== child) return;
      this.#child = undefined;
      const why = `the process exited (${code ?? sig})`;
      this.logger.warn(
        `gateway: MCP upstream ${this.name}: ${why}; it is started again on the next call`,
      );
      this.lost(why);
    });
    try {
      await this.handshake();
    } catch (err) {
      this.#child = undefined;
      child.kill('SIGKILL');
      throw err;
    }
  }

  protected transmit(
    msg: JsonRpcMessage,
    _pending?: Pending,
    delivered?: (err?: Error) => void,
  ): void {
    const child = this.#child;
    if (child === undefined || child.stdin === null || !child.stdin.writable)
      throw new Error(`upstream ${this.name}: the process is not running`);
    child.stdin.write(
      `${JSON.stringify(msg)}\n`,
      delivered === undefined ? undefined : (err) => delivered(err ?? undefined),
    );
  }

  async close(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    this.lost('the gateway closed');
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.stdin?.end();
    const t = setTimeout(() => child.kill('SIGTERM'), 1000);
    const k = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
    clearTimeout(k);
  }
}

/** An upstream served over Streamable HTTP: one POST per message, answers as JSON or SSE. */
class HttpUpstream extends McpUpstream {
  readonly #url: URL;
  readonly #headers: Record<string, string>;
  readonly #agent: HttpAgent;
  /**
   * Notifications (cancels above all) go on a connection of their own, kept open: a cancel must
   * not wait for a TCP handshake while every pooled connection carries a call's answer stream.
   */
  readonly #notifyAgent: HttpAgent;
  /** While calls are in flight, the cancel connection is kept warm (see {@link #warm}). */
  #warmTimer: NodeJS.Timeout | undefined;
  #warmSeq = 0;
  #warming = false;
  /** When a warming ping last came back (performance.now()): the connection was open then. */
  #warmedAt = -Infinity;
  readonly #request: typeof httpRequest;
  #session: string | undefined;

  constructor(
    name: string,
    config: Extract<McpUpstreamConfig, { url: string }>,
    logger: { warn(m: string): void },
  ) {
    super(name, logger);
    this.#url = new URL(config.url);
    this.#headers = config.headers ?? {};
    const https = this.#url.protocol === 'https:';
    const agent = (): HttpAgent =>
      https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#agent = agent();
    this.#notifyAgent = agent();
    this.#request = https ? (httpsRequest as typeof httpRequest) : httpRequest;
  }

  protected async connect(): Promise<void> {
    this.#session = undefined;
    await this.handshake();
  }

  protected override cancelOrdered(entry: Pending): boolean {
    // Never sent: the call's request is closed before the upstream could read it whole.
    if (entry.written !== true || entry.responded === true) return true;
    return this.protocolVersion >= STREAM_CLOSE_CANCELS;
  }

  #headersFor(body: string): Record<string, string | number> {
    return {
      ...this.#headers,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'content-length': Buffer.byteLength(body),
      ...(this.#session !== undefined
        ? { 'mcp-session-id': this.#session, 'mcp-protocol-version': this.protocolVersion }
        : {}),
    };
  }

  protected transmit(
    msg: JsonRpcMessage,
    pending?: Pending,
    delivered?: (err?: Error) => void,
  ): void {
    const body = JSON.stringify(msg);
    const sessionSent = this.#session;
    const req = this.#request(this.#url, {
      method: 'POST',
      agent: pending === undefined && msg.method !== undefined ? this.#notifyAgent : this.#agent,
      headers: this.#headersFor(body),
    });
    if (pending !== undefined) {
      pending.abortTransport = () => req.destroy();
      // node:http writes the request right after this event, in the same tick.
      req.once('socket', () => (pending.written = true));
    }
    req.on('error', (err) => {
      if (pending !== undefined) responded(pending);
      if (delivered !== undefined) delivered(err);
      else if (pending === undefined)
        this.logger.warn(
          `gateway: MCP upstream ${this.name}: ${msg.method ?? 'answer'} not delivered: ${err.message}`,
        );
      else pending.reject(new Error(`upstream ${this.name}: ${err.message}`));
    });
    req.on('response', (res) => {
      if (delivered !== undefined) {
        res.resume();
        const status = res.statusCode ?? 0;
        // 404: the upstream no longer knows the session, so nothing of it runs there.
        if ((status >= 200 && status < 300) || status === 404) delivered();
        else delivered(new Error(`HTTP ${status}`));
        return;
      }
      this.#answer(res, msg, pending, sessionSent);
    });
    req.end(body);
  }

  #answer(
    res: IncomingMessage,
    msg: JsonRpcMessage,
    pending: Pending | undefined,
    sessionSent: string | undefined,
  ): void {
    if (pending !== undefined) responded(pending);
    const status = res.statusCode ?? 0;
    const sid = res.headers['mcp-session-id'];
    if (msg.method === 'initialize' && typeof sid === 'string') this.#session = sid;
    res.on('error', (err) => pending?.reject(new Error(`upstream ${this.name}: ${err.message}`)));
    if (status === 202 || pending === undefined) {
      res.resume();
      return;
    }
    if (status >= 400) {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (text.length < 500) text += c;
      });
      res.on('end', () => {
        if (status === 404 && sessionSent !== undefined && msg.method !== 'initialize')
          pending.reject(new SessionExpired(`upstream ${this.name} lost session ${sessionSent}`));
        else
          pending.reject(
            new Error(`upstream ${this.name} answered HTTP ${status}: ${text.slice(0, 300)}`),
          );
      });
      return;
    }
    res.setEncoding('utf8');
    if (String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
      const sse = new SseParser();
      res.on('data', (c: string) => {
        for (const data of sse.push(c)) this.feed(data);
      });
    } else {
      let text = '';
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if (text.trim() !== '') this.feed(text);
      });
    }
    res.on('close', () =>
      pending.reject(new Error(`upstream ${this.name} ended the response without an answer`)),
    );
  }

  /**
   * Keeps the cancel connection open while calls are in flight: a halt's `notifications/cancelled`
   * then goes out on a connection that is already there instead of waiting for a TCP (and TLS)
   * handshake, which on a loaded host was the slowest step of the halt path (an idle keep-alive
   * connection is closed by the upstream after its keep-alive timeout, 5 s in Node and uvicorn).
   * Warmed when the first call starts unless a ping came back within {@link WARM_EVERY_MS} (the
   * connection is open: one call after another must not each cost a ping, which doubled the
   * upstream's requests), and every {@link WARM_EVERY_MS} while any runs.
   */
  protected override callsInFlight(count: number): void {
    if (count > 0 && this.#warmTimer === undefined) {
      if (performance.now() - this.#warmedAt >= WARM_EVERY_MS) this.#warm();
      this.#warmTimer = setInterval(() => this.#warm(), WARM_EVERY_MS).unref();
    } else if (count === 0 && this.#warmTimer !== undefined) {
      clearInterval(this.#warmTimer);
      this.#warmTimer = undefined;
    }
  }

  /** A `ping` on the cancel connection (its answer is read and dropped). */
  #warm(): void {
    if (this.#warming || this.#session === undefined) return;
    this.#warming = true;
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: `killswitch-warm-${++this.#warmSeq}`,
      method: 'ping',
    });
    const req = this.#request(this.#url, {
      method: 'POST',
      agent: this.#notifyAgent,
      headers: this.#headersFor(body),
    });
    const done = (): void => {
      this.#warming = false;
    };
    req.on('error', done);
    req.on('response', (res) => {
      this.#warmedAt = performance.now();
      res.resume();
      res.on('close', done);
    });
    req.end(body);
  }

  async close(): Promise<void> {
    this.lost('the gateway closed');
    const sid = this.#session;
    this.#session = undefined;
    if (sid !== undefined) {
      // Best effort: tell the upstream the session is over.
      await new Promise<void>((resolve) => {
        const req = this.#request(this.#url, {
          method: 'DELETE',
          agent: this.#agent,
          headers: { ...this.#headers, 'mcp-session-id': sid },
          timeout: 1000,
        });
        req.on('response', (res) => {
          res.resume();
          res.on('close', () => resolve());
        });
        req.on('error', () => resolve());
        req.on('timeout', () => req.destroy());
        req.end();
      });
    }
    clearInterval(this.#warmTimer);
    this.#warmTimer = undefined;
    this.#agent.destroy();
    this.#notifyAgent.destroy();
  }
}
