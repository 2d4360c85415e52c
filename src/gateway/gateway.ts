import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { OpenFeature } from '@openfeature/server-sdk';
import { RemoteFlipSource } from '../../providers/remote/remote-flip-source.js';
import { isLoopbackHost } from '../auth/is-loopback-host.js';
import { ErrorCode, HaltedError, InvalidOptionError, KillSwitchError } from '../errors.js';
import { EffectGuard } from '../guard/effect-guard.js';
import { FileSideEffectLedger } from '../ledger/file-side-effect-ledger.js';
import { MemorySideEffectLedger } from '../ledger/memory-side-effect-ledger.js';
import { effectKey, type SideEffectLedger } from '../ledger/side-effect-ledger.js';
import { KillSwitchProvider } from '../provider/kill-switch-provider.js';
import { SourceStatus } from '../source/flip-source.js';
import {
  parseGatewayConfig,
  resolveControlPlanePublicKeys,
  resolveControlPlaneToken,
  type GatewayConfig,
  type GatewayConfigInput,
} from './gateway-config.js';
import { GatewayMetrics, Seam } from './gateway-metrics.js';
import type { Lineage } from '../lineage/lineage.js';
import { LlmProxy } from './llm-proxy.js';
import type * as McpGatewayModule from './mcp-gateway.js';
import type { McpGateway } from './mcp-gateway.js';

/** Where the gateway reports. */
export interface GatewayLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@link Gateway.start}. */
export interface GatewayOptions {
  /** The configuration (validated here; see `gatewayConfigSchema`). */
  readonly config: GatewayConfigInput | GatewayConfig;
  /** A ledger to use instead of the configured one; the gateway does not close it. */
  readonly ledger?: SideEffectLedger;
  /** @default console (info lines go to console.error, so stdio mode keeps stdout clean) */
  readonly logger?: GatewayLogger;
  /** Environment read for `controlPlane.tokenEnv`. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Start the HTTP listener. @default true (false for the stdio MCP mode) */
  readonly listen?: boolean;
}

/** One call through the gateway, as the seams describe it. */
export interface GatewayCall {
  readonly seam: Seam;
  /** The LLM endpoint or MCP upstream (a bounded set: a metrics label). */
  readonly target: string;
  /** The capability the call is evaluated under, e.g. `llm.chat.completions` or `files.read`. */
  readonly capability: string;
  readonly lineage: Lineage;
}

/** A route handler: answers and returns true, or returns false to pass. */
export type GatewayRoute = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/** A seam the gateway hosts (the LLM proxy, the MCP gateway). */
export interface GatewaySeam {
  readonly route?: GatewayRoute;
  close(): Promise<void>;
}

let domains = 0;

/**
 * The kill-switch gateway (DESIGN section 6a): one process that follows the control plane
 * exactly like a worker (a {@link RemoteFlipSource} under its own worker id: lease,
 * acknowledgements, fail closed, counted in a flip's stop-complete) and enforces at the LLM and
 * MCP boundaries for agents in any language. Every call through it is a guarded effect: evaluated
 * before it leaves, recorded in the gateway's ledger (intent, landed, refused, aborted), cut
 * upstream the moment a matching halt arrives or the gateway's state goes stale. KS-15.1
 *
 * @example
 * ```ts
 * import { Gateway } from 'openfeature-kill-switch/gateway';
 * const gw = await Gateway.start({ config: JSON.parse(readFileSync('gateway.json', 'utf8')) });
 * console.log(gw.url); // point OPENAI_BASE_URL at `${gw.url}/v1`
 * ```
 */
export class Gateway {
  readonly config: GatewayConfig;
  readonly ledger: SideEffectLedger;
  readonly metrics: GatewayMetrics;
  readonly guard: EffectGuard;
  readonly provider: KillSwitchProvider;
  readonly #source: RemoteFlipSource;
  readonly #logger: GatewayLogger;
  readonly #ownsLedger: boolean;
  readonly #seams: GatewaySeam[] = [];
  #server: Server | undefined;
  #mcp: McpGateway | undefined;
  readonly #sockets = new Set<Socket>();
  /** Flips not (yet) enforced here, by seq: each hold's reason (KS-6.5 negative acks). */
  readonly #unenforced = new Map<number, Map<number, string>>();
  /** Calls in flight per configured seam, reported with each acknowledgement (KS-15.5.3). */
  readonly #seamsInFlight: Map<Seam, number>;
  readonly #enforcedListeners = new Set<(seq: number) => void>();
  #holds = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    config: GatewayConfig,
    ledger: SideEffectLedger,
    ownsLedger: boolean,
    source: RemoteFlipSource,
    provider: KillSwitchProvider,
    guard: EffectGuard,
    logger: GatewayLogger,
    seamsInFlight: Map<Seam, number>,
  ) {
    this.#seamsInFlight = seamsInFlight;
    this.config = config;
    this.ledger = ledger;
    this.#ownsLedger = ownsLedger;
    this.#source = source;
    this.provider = provider;
    this.guard = guard;
    this.#logger = logger;
    this.metrics = new GatewayMetrics();
    this.metrics.fresh.set(0);
  }

  /**
   * Validates the configuration, follows the control plane, opens the seams and listens.
   * Calls are refused (stale, failed closed) until the first fresh kill state arrives.
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` naming each bad configuration field
   * @throws {KillSwitchError} `KS_INVALID_OPTION` for an unreadable token, a non-loopback bind
   *   without `listen.allowRemote`, or a port in use
   */
  static async start(options: GatewayOptions): Promise<Gateway> {
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', 'an object', options);
    const config = parseGatewayConfig(options.config);
    const logger = options.logger ?? {
      info: (m: string) => console.error(m),
      warn: (m: string) => console.warn(m),
    };
    if (
      options.listen !== false &&
      !isLoopbackHost(config.listen.host) &&
      !config.listen.allowRemote
    ) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `gateway config listen.host: ${config.listen.host} is not loopback; set listen.allowRemote (and put authentication in front) to expose the gateway`,
      );
    }
    const token = resolveControlPlaneToken(config.controlPlane, options.env);
    const publicKeys = resolveControlPlanePublicKeys(config.controlPlane);
    let ledger = options.ledger;
    const ownsLedger = ledger === undefined;
    if (ledger === undefined) {
      if (config.ledger.kind === 'file') {
        const file = new FileSideEffectLedger({
          path: config.ledger.path,
          fsync: config.ledger.fsync,
        });
        await file.open();
        ledger = file;
      } else {
        ledger = new MemorySideEffectLedger();
      }
    }
    // KS-15.5.3 the seams this gateway enforces at, with their calls in flight: every
    // acknowledgement says so, and the console shows the member as a gateway from it.
    const seamsInFlight = new Map<Seam, number>();
    if (config.llm !== undefined) seamsInFlight.set(Seam.LLM, 0);
    if (config.mcp !== undefined) seamsInFlight.set(Seam.MCP, 0);
    const source = new RemoteFlipSource({
      gatewayReport: () =>
        seamsInFlight.size === 0
          ? undefined
          : { seams: [...seamsInFlight].map(([seam, inFlight]) => ({ seam, inFlight })) },
      urls: config.controlPlane.urls,
      workerId: config.workerId,
      staleAfterMs: config.controlPlane.staleAfterMs,
      heartbeatMs: config.controlPlane.heartbeatMs,
      ...(token !== undefined ? { token } : {}),
      ...(publicKeys !== undefined ? { publicKeys } : {}),
      ...(config.release !== undefined ? { release: config.release } : {}),
      logger,
    });
    const provider = new KillSwitchProvider({
      source,
      logger: { warn: (m: string) => logger.warn(m) },
    });
    const domain = `killswitch-gateway/${config.workerId}/${process.pid}/${++domains}`;
    await OpenFeature.setProviderAndWait(domain, provider);
    const client = OpenFeature.getClient(domain);
    const guard = new EffectGuard({ client, ledger, logger });
    const gw = new Gateway(
      config,
      ledger,
      ownsLedger,
      source,
      provider,
      guard,
      logger,
      seamsInFlight,
    );
    try {
      await gw.#openSeams();
      if (options.listen !== false) await gw.#listen();
    } catch (err) {
      await gw.close();
      throw err;
    }
    gw.#watchFreshness();
    return gw;
  }

  /** `http://host:port` of the listener. @throws when started with `listen: false` */
  get url(): string {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    if (a === undefined || a === null)
      throw new KillSwitchError(ErrorCode.STORE_CLOSED, 'the gateway is not listening');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  /** The gateway's worker id (acknowledgements and stop-complete count it under this id). */
  get workerId(): string {
    return this.config.workerId;
  }

  /** The state of the gateway's flip source: only `open` lets calls through. */
  get status(): SourceStatus {
    return this.#source.status;
  }

  /** Seq of the kill state the gateway holds. */
  get appliedSeq(): number {
    return this.#source.appliedSeq;
  }

  /** Calls dispatched upstream and not yet settled. */
  get inFlight(): number {
    return this.guard.inFlight;
  }

  /**
   * Resolves once the gateway holds a fresh kill state.
   *
   * @throws {KillSwitchError} `KS_STALE` after `timeoutMs`
   */
  async waitFresh(timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.#source.status !== SourceStatus.OPEN) {
      if (this.#closed) throw new KillSwitchError(ErrorCode.STORE_CLOSED, 'the gateway is closed');
      if (Date.now() > until)
        throw new KillSwitchError(
          ErrorCode.STALE,
          `the gateway's kill state is not fresh after ${timeoutMs} ms (${this.#source.status})`,
        );
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Serves the MCP gateway as one MCP session over stdin and stdout (start with `listen: false`
   * so nothing else writes to stdout). Resolves when the client ends the session. KS-15.3.1
   *
   * @throws {KillSwitchError} `KS_INVALID_OPTION` when no `mcp` section is configured
   */
  serveStdio(): Promise<void> {
    if (this.#mcp === undefined)
      return Promise.reject(
        new KillSwitchError(
          ErrorCode.INVALID_OPTION,
          'gateway config mcp: stdio mode needs an mcp section',
        ),
      );
    return this.#mcp.serveStdio();
  }

  /** Registers a seam (its routes are tried in order) and closes it with the gateway. */
  addSeam(seam: GatewaySeam): void {
    this.#seams.push(seam);
  }

  /**
   * Runs one call as a guarded effect: evaluated for its context (capability, tenant, feature,
   * run) before it leaves, recorded in the ledger, its signal aborted the moment a matching halt
   * arrives or the state goes stale. KS-15.1.3
   *
   * @param call - the seam, target, capability and lineage
   * @param body - sends the call upstream; must pass `signal` to the upstream request; `key` is
   *   the call's key in the gateway's ledger (an upstream may use it to deduplicate)
   * @returns what `body` returned
   * @throws {HaltedError} `KS_HALTED` refused (nothing sent), `KS_ABORTED` cut in flight
   */
  async run<T>(
    call: GatewayCall,
    body: (signal: AbortSignal, callId: string, key: string) => Promise<T>,
  ): Promise<T> {
    const callId = randomUUID();
    const selfRun = call.lineage.runPath[call.lineage.runPath.length - 1];
    // A call that names no run is its own run: its key stays unique and no run halt matches it.
    const runId = selfRun ?? `gateway-${callId}`;
    // Unique per call: the gateway never replays a call, each one is an effect of its own.
    const step =
      selfRun === undefined
        ? `${call.seam}:${call.target}`
        : `${call.seam}:${call.target}#${callId}`;
    const labels = { seam: call.seam, target: call.target };
    const key = effectKey(runId, step);
    let started = 0;
    this.metrics.inFlight.inc({ seam: call.seam });
    this.#seamsInFlight.set(call.seam, (this.#seamsInFlight.get(call.seam) ?? 0) + 1);
    try {
      const out = await this.guard.run(
        {
          runId,
          step,
          key,
          capability: call.capability,
          context: {
            ...(call.lineage.tenant !== undefined ? { tenant: call.lineage.tenant } : {}),
            ...(call.lineage.feature !== undefined ? { feature: call.lineage.feature } : {}),
            // KS-1.5.1 the run's ancestry: a halt on any ancestor run matches the call.
            ...(selfRun !== undefined ? { runPath: call.lineage.runPath } : {}),
          },
        },
        (signal) => {
          started = performance.now();
          return body(signal, callId, key);
        },
      );
      this.metrics.calls.inc({ ...labels, outcome: 'landed' });
      return out;
    } catch (err) {
      if (err instanceof HaltedError) {
        const aborted = err.code === ErrorCode.ABORTED;
        (aborted ? this.metrics.aborts : this.metrics.refusals).inc({
          ...labels,
          cause: err.haltCause,
        });
        this.metrics.calls.inc({ ...labels, outcome: aborted ? 'aborted' : 'refused' });
      } else {
        this.metrics.calls.inc({ ...labels, outcome: started === 0 ? 'refused' : 'failed' });
      }
      throw err;
    } finally {
      this.metrics.inFlight.dec({ seam: call.seam });
      this.#seamsInFlight.set(call.seam, (this.#seamsInFlight.get(call.seam) ?? 1) - 1);
    }
  }

  /**
   * Says that the flip at `seq` is not enforced here (yet): a negative acknowledgement (KS-6.5.1)
   * the control plane lists apart from laggards and never counts stopped, until every hold on the
   * flip is released. A seam takes a hold, synchronously while the halt is applied (so the first
   * acknowledgement of the flip carries it), for each call in flight it cannot cut by itself, e.g.
   * an MCP call whose `notifications/cancelled` is not yet delivered upstream.
   *
   * @param seq - the flip's seq
   * @param reason - why (1-500 characters; names the upstream, never the flip's text)
   * @returns `update(reason)` to say more, `release()` once the flip is enforced for this call
   */
  holdUnenforced(seq: number, reason: string): { update(reason: string): void; release(): void } {
    const id = ++this.#holds;
    let holds = this.#unenforced.get(seq);
    if (holds === undefined) this.#unenforced.set(seq, (holds = new Map()));
    holds.set(id, reason);
    this.#reportUnenforced(seq);
    let released = false;
    return {
      update: (r: string) => {
        if (released || holds.get(id) === r) return;
        holds.set(id, r);
        this.#reportUnenforced(seq);
      },
      release: () => {
        if (released) return;
        released = true;
        holds.delete(id);
        if (holds.size > 0) return this.#reportUnenforced(seq);
        this.#unenforced.delete(seq);
        this.#source.withdrawUnenforced(seq);
        for (const l of [...this.#enforcedListeners]) l(seq);
      },
    };
  }

  /**
   * Calls `listener(seq)` when the last hold on flip `seq` is released: from then on the flip is
   * enforced here (its acknowledgement is positive). With {@link unenforced} it tells when this
   * gateway stopped, which is later than when it applied a halt that cut calls in flight.
   *
   * @returns removes the listener
   */
  onEnforced(listener: (seq: number) => void): () => void {
    this.#enforcedListeners.add(listener);
    return () => this.#enforcedListeners.delete(listener);
  }

  /** Flips this gateway has reported unenforced and not withdrawn, with their reasons. */
  get unenforced(): { seq: number; reason: string }[] {
    return [...this.#unenforced].map(([seq, holds]) => ({ seq, reason: unenforcedText(holds) }));
  }

  #reportUnenforced(seq: number): void {
    const holds = this.#unenforced.get(seq);
    if (holds === undefined || this.#closed) return;
    try {
      this.#source.reportUnenforced(seq, unenforcedText(holds));
    } catch (err) {
      // More than the source carries at once (100): the oldest stay listed, this one is logged.
      this.#logger.warn(
        `gateway ${this.workerId}: flip #${seq} is not enforced here and cannot be reported: ${(err as Error).message}`,
      );
    }
  }

  /** Records how long the upstream took to answer (head or first byte). */
  observeUpstream(seam: Seam, target: string, seconds: number): void {
    this.metrics.latency.observe({ seam, target }, seconds);
  }

  /**
   * Stops listening, cuts every call still in flight (`KS_ABORTED`, failing closed), stops
   * following the control plane and closes the seams and the ledger it opened.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const server = this.#server;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of this.#sockets) s.destroy();
      });
    }
    await this.guard.close();
    for (const seam of this.#seams.splice(0).reverse()) {
      try {
        await seam.close();
      } catch (err) {
        this.#logger.warn(
          `gateway ${this.workerId}: closing a seam failed: ${(err as Error).message}`,
        );
      }
    }
    await this.provider.onClose();
    await this.#source.stop();
    if (this.#ownsLedger) await this.ledger.close();
  }

  async #openSeams(): Promise<void> {
    if (this.config.llm !== undefined) this.addSeam(new LlmProxy(this, this.config.llm));
    if (this.config.mcp !== undefined) {
      // Loaded only when configured (it speaks raw JSON-RPC: the MCP SDK is not needed).
      let mod: typeof McpGatewayModule;
      try {
        mod = await import('./mcp-gateway.js');
      } catch (err) {
        throw new KillSwitchError(
          ErrorCode.INVALID_OPTION,
          `gateway config mcp: the MCP gateway could not be loaded (${(err as Error).message})`,
          { cause: err },
        );
      }
      this.#mcp = await mod.McpGateway.open(this, this.config.mcp, this.#logger);
      this.addSeam(this.#mcp);
    }
  }

  #watchFreshness(): void {
    this.metrics.freshness(() => this.#source.status === SourceStatus.OPEN);
  }

  async #listen(): Promise<void> {
    const server = createServer((req, res) => {
      void this.#dispatch(req, res);
    });
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new KillSwitchError(
            ErrorCode.INVALID_OPTION,
            `gateway config listen: cannot listen on ${this.config.listen.host}:${this.config.listen.port}: ${err.message}`,
            { cause: err },
          ),
        ),
      );
      server.listen(this.config.listen.port, this.config.listen.host, () => resolve());
    });
    this.#server = server;
    this.#logger.info(`killswitch gateway ${this.workerId} listening on ${this.url}`);
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/healthz') return this.#healthz(res);
      if (req.method === 'GET' && path === '/metrics') {
        const text = await this.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
        res.end(text);
        return;
      }
      for (const seam of this.#seams) {
        if (seam.route !== undefined && (await seam.route(req, res))) return;
      }
      sendJson(res, 404, {
        error: { code: ErrorCode.NOT_FOUND, message: `no gateway route for ${req.method} ${path}` },
      });
    } catch (err) {
      this.#logger.warn(`gateway ${this.workerId}: ${(err as Error)?.message ?? String(err)}`);
      if (!res.headersSent)
        sendJson(res, 500, {
          error: { code: ErrorCode.INTERNAL, message: 'internal gateway error' },
        });
      else res.destroy();
    }
  }

  /** KS-15.5.1 200 only while fresh: a load balancer takes a stale gateway out of rotation. */
  #healthz(res: ServerResponse): void {
    const fresh = this.#source.status === SourceStatus.OPEN;
    sendJson(res, fresh ? 200 : 503, {
      status: fresh ? 'ok' : 'failing-closed',
      workerId: this.workerId,
      source: this.#source.status,
      appliedSeq: this.#source.appliedSeq,
      inFlight: this.guard.inFlight,
    });
  }
}

/** The reason a negative acknowledgement carries: the latest hold's, and how many more. */
function unenforcedText(holds: Map<number, string>): string {
  const reasons = [...holds.values()];
  const last = reasons[reasons.length - 1]!;
  const text = reasons.length > 1 ? `${last} (and ${reasons.length - 1} more calls)` : last;
  return text.length > 500 ? `${text.slice(0, 497)}...` : text;
}

/** Writes a JSON answer. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
