import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { isLoopbackHost } from '../auth/is-loopback-host.js';
import { authorize, Role, type Action, type Principal } from '../auth/principal.js';
import type { TokenAuthenticator } from '../auth/token-authenticator.js';
import { WorkerClaims } from '../auth/worker-claims.js';
import { ErrorCode, InvalidOptionError, KillSwitchError, ValidationError } from '../errors.js';
import { systemClock, type Clock } from '../internal/clock.js';
import { Mutex } from '../internal/mutex.js';
import { ofrepRoutes, type Vouch } from '../ofrep/ofrep-routes.js';
import { toIssues } from '../internal/zod-issues.js';
import type { FlipRecord } from '../model/flip-record.js';
import type { KillSnapshot } from '../model/kill-state.js';
import { haltCoverage } from '../model/selector.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { isFleetChannelStore, type FleetChannel } from '../store/fleet-channel.js';
import { randomUUID } from 'node:crypto';
import { parseAcks, type AckRequest } from '../protocol/acks.js';
import {
  Divergence,
  LogDivergedError,
  describePosition,
  type LogPosition,
} from '../protocol/log-position.js';
import {
  apiTime,
  type AckAnswer,
  type FlipAnswer,
  type HealthAnswer,
  type LogAnswer,
  type WorkersAnswer,
} from '../protocol/answers.js';
import {
  flipQuerySchema,
  logQuerySchema,
  parseFlipRequest,
  MAX_WAIT_MS,
  streamQuerySchema,
} from '../protocol/flip-request.js';
import { ApiPath, LAST_EVENT_ID_HEADER, STREAM_HEADERS } from '../protocol/paths.js';
import {
  encodeEvent,
  StreamEvent,
  type HeartbeatData,
  type SnapshotData,
} from '../protocol/stream-events.js';
import { LogFollower } from './log-follower.js';
import { FleetTracker, type FlipFleetStatus, type WorkerInfo } from './fleet-tracker.js';
import { SharedFleet } from './shared-fleet.js';
import { VouchState } from './vouch-state.js';
import { HttpError, readJsonBody, sendJson, toHttpError } from './internal/http-io.js';
import { parseRequestTarget } from './request-target.js';
import { Router, type Route, type RouteContext } from './router.js';
import { StreamHub } from './stream-hub.js';
import { RequestGuard } from './request-guard.js';
import { ConnectionGuard, connectionLimits, type ConnectionStats } from './connection-guard.js';
import { StreamLimits } from './stream-limits.js';
import { SharedSnapshot } from './shared-snapshot.js';
import { FlipLimits } from './flip-limits.js';
import { StreamCredentials } from './stream-credentials.js';
import { releaseRoutes, type ReleaseGate } from './release-gate.js';
import type { z } from 'zod';
import { intOption } from '../internal/int-option.js';

/** Where the control plane writes its own log lines. */
export interface ControlPlaneLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Options of {@link startControlPlane}. Times in milliseconds. */
export interface ControlPlaneOptions {
  /** The flip log. The caller opens and closes it; the control plane only follows and appends. */
  readonly store: FlipLogStore;
  /** Address to bind. @default '127.0.0.1' */
  readonly host?: string;
  /** Port; 0 picks a free one. @default 7411 */
  readonly port?: number;
  /**
   * Bearer-token authentication; required (KS-17.9.1). `'none'`, given explicitly, treats every
   * caller as an anonymous admin: it logs a warning at start and is refused on a non-loopback host
   * (KS-5.2.8). `killswitch serve` always passes tokens.
   */
  readonly auth: TokenAuthenticator | 'none';
  /**
   * Names this control plane answers to besides its bound address (and `localhost` on loopback):
   * the names clients and proxies put in `Host`. Any other `Host` is answered 421 (DNS
   * rebinding, KS-17.9.2). @default []
   */
  readonly allowedHosts?: readonly string[];
  /** Heartbeat interval on the stream. @default 1000 */
  readonly heartbeatMs?: number;
  /** The `retry:` the stream announces. @default 1000 */
  readonly retryMs?: number;
  /** Worker lease after each ack (KS-6.2). @default 3000 */
  readonly staleAfterMs?: number;
  /** Added to every lease the server computes. @default 100 */
  readonly leaseMarginMs?: number;
  /** Drop a stream subscriber with more than this pending (KS-6.1.5). @default 1048576 bytes */
  readonly maxBufferedBytes?: number;
  /** Largest request body (KS-5.1.6). @default 65536 bytes */
  readonly maxBodyBytes?: number;
  /** Records kept in memory for `Last-Event-ID` replay (KS-6.1.6). @default 10000 */
  readonly maxReplay?: number;
  /**
   * Stop vouching for the state (KS-12.5) when the store's last catch-up with the log (stores that
   * expose `followStatus()`, such as PostgreSQL) is older than this. @default 3000
   */
  readonly storeStaleAfterMs?: number;
  /** Mount the OFREP routes (`/ofrep/v1/...`, KS-12.1). @default true */
  readonly ofrep?: boolean;
  /**
   * Gated resume (KS-10.5): mounts `POST/GET /v1/releases` and refuses (409) a resume that names
   * no green release, or while a connected worker reports a red one. `killswitch serve` always
   * passes one; without it resumes are not gated. The control plane opens it on start.
   * @default none
   */
  readonly releaseGate?: ReleaseGate;
  /**
   * A connection must send its first request head within this; later heads: Node's
   * `headersTimeout`, also this (KS-17.8.1). @default 10000
   */
  readonly headersTimeoutMs?: number;
  /** A request (head and body) must arrive within this; streams are not bound. @default 30000 */
  readonly requestTimeoutMs?: number;
  /** A connection idle between requests is closed after this. @default 5000 */
  readonly keepAliveTimeoutMs?: number;
  /**
   * Connections held at most (KS-17.8.1). @default 80 % of the descriptor limit less 64, from 64
   * to 8192
   */
  readonly maxConnections?: number;
  /**
   * Room kept for flips: above `maxConnections - reservedConnections` each new connection closes
   * the oldest idle one. @default a tenth of maxConnections, from 4 to 64
   */
  readonly reservedConnections?: number;
  /** Streams open at most, in total (KS-17.8.2). @default maxConnections - 2 x reservedConnections */
  readonly maxStreams?: number;
  /** Streams naming no worker, per token (KS-17.8.2). @default 32 */
  readonly maxStreamsPerToken?: number;
  /**
   * Serve HTTPS with this certificate and key (PEM; KS-17.10.1); the URL says `https`. Workers and
   * the CLI then need the CA that signed it (`tls: { ca }`, `--ca`, or `NODE_EXTRA_CA_CERTS`).
   * @default plain HTTP
   */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Flips per token per second, sustained (KS-17.8.3). @default 20 */
  readonly maxFlipsPerSecond?: number;
  /** Flips a token may send at once before the rate applies. @default 2 x maxFlipsPerSecond */
  readonly flipBurst?: number;
  /** Active halts at most; a resume is always accepted (KS-17.8.3). @default 10000 */
  readonly maxActiveHalts?: number;
  /** Distinct halts one Alertmanager post may place (KS-17.8.3). @default 20 */
  readonly maxHaltsPerAlert?: number;
  /** Workers tracked at most (KS-17.8.4). @default 10000 */
  readonly maxWorkers?: number;
  /**
   * KS-6.6 share acknowledgements, leases and renewals with the other replicas through the store,
   * when the store can (PostgreSQL): a flip's answer then counts every worker on every replica.
   * @default true
   */
  readonly shareFleet?: boolean;
  /** This replica's id in a shared fleet. @default `r-` and 12 random hex digits, new each start */
  readonly replicaId?: string;
  /**
   * A replica whose heartbeat was not seen for this long is unknown (KS-6.6.5): a flip whose
   * workers it holds is not complete, and the answer names it. @default 1500
   */
  readonly replicaTimeoutMs?: number;
  /** Heartbeat interval of this replica in a shared fleet. @default 250 */
  readonly replicaBeatMs?: number;
  /** Extra routes (webhooks, /metrics, OFREP, the console), mounted after the built-in ones. */
  readonly routes?: readonly Route[];
  /** @default warnings and errors to stderr, info dropped */
  readonly logger?: ControlPlaneLogger;
  /**
   * Clock (the fleet tracker, heartbeats, waits; today all on its wall reading).
   * @default systemClock
   */
  readonly clock?: Clock;
}

export type {
  AckAnswer,
  FlipAnswer,
  HealthAnswer,
  LogAnswer,
  WorkersAnswer,
} from '../protocol/answers.js';

/** A running control plane. */
export interface ControlPlane {
  /** `http://host:port` (IPv6 hosts bracketed). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The route table; `router.add(route)` mounts more routes while running. */
  readonly router: Router;
  /** Who acknowledged what. */
  readonly tracker: FleetTracker;
  /** The bounds on flips, halts and workers, shared with routes that append (KS-17.8.3). */
  readonly limits: FlipLimits;
  /**
   * The fleet's answer for a flip now: the tracker's, merged with every other replica's workers
   * when the store shares the fleet (KS-6.6); undefined when the flip is not tracked.
   */
  fleetStatus(seq: number): FlipFleetStatus | undefined;
  /** Every worker: the whole fleet, each with its replica, when the store shares it (KS-6.6.6). */
  workers(): WorkerInfo[];
  /** The current kill state. */
  snapshot(): KillSnapshot;
  /**
   * Whether the control plane vouches for that state now: not when it lost track of the log, is
   * closing, or its store stopped following (`followStatus()` failed, or its last catch-up older
   * than `storeStaleAfterMs`). KS-12.5.1
   */
  vouch(): Vouch;
  /** Counters for tests and metrics. */
  stats(): ControlPlaneStats;
  /** Ends streams, stops listening, unsubscribes from the store (which stays open). */
  close(): Promise<void>;
}

/** What {@link ControlPlane.stats} counts. */
export interface ControlPlaneStats {
  subscribers: number;
  dropped: number;
  head: number;
  /** Connections held, closed to make room, refused, timed out (KS-17.8.1). */
  connections: ConnectionStats;
}

const ANONYMOUS: Principal = Object.freeze({
  name: 'anonymous',
  role: Role.ADMIN,
  scopes: [],
  resume: true,
});

/**
 * Starts the control plane: the HTTP API of spec KS-5 and the stream of KS-6 on `node:http`.
 * Resolves once it listens and has folded the log.
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for bad options, or `auth: 'none'` on a
 *   non-loopback host
 * @example
 * ```ts
 * const cp = await startControlPlane({ store, port: 0, auth: new TokenAuthenticator({ tokens }) });
 * console.log(cp.url);
 * await cp.close();
 * ```
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const cp = new ControlPlaneServer(options);
  await cp.start();
  return cp;
}

class ControlPlaneServer implements ControlPlane {
  readonly router = new Router();
  readonly tracker: FleetTracker;
  readonly limits: FlipLimits;
  /** Which token acts as which worker id (KS-5.2.9). */
  readonly #claims: WorkerClaims;
  readonly #store: FlipLogStore;
  readonly #host: string;
  readonly #port: number;
  readonly #auth: TokenAuthenticator | 'none';
  readonly #guard: RequestGuard;
  readonly #connections: ConnectionGuard;
  readonly #streamLimits: StreamLimits;
  readonly #sharedSnapshot = new SharedSnapshot();
  readonly #streamCredentials = new StreamCredentials();
  #unwatchTokens: (() => void) | undefined;
  readonly #heartbeatMs: number;
  readonly #retryMs: number;
  readonly #maxBodyBytes: number;
  readonly #maxBuffered: number;
  readonly #log: ControlPlaneLogger;
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #hub: StreamHub;
  readonly #server: Server;
  readonly #scheme: 'http' | 'https';
  readonly #flipMutex = new Mutex();
  /** The log, folded into the state; broken when it moved backwards or forked (KS-6.4.4). */
  readonly #follower: LogFollower;
  #heartbeat: NodeJS.Timeout | undefined;
  readonly #ackWaiters = new Set<() => void>();
  #actualPort = 0;
  readonly #releaseGate: ReleaseGate | undefined;
  /** KS-12.5, KS-6.4.4 whether this control plane vouches for its state, and why not. */
  readonly #vouch: VouchState;
  /** KS-6.6 the other replicas' workers, when the store shares the fleet. */
  readonly #fleet: SharedFleet | undefined;
  #fleetChannel: FleetChannel | undefined;
  readonly #replicaBeatMs: number;

  constructor(o: ControlPlaneOptions) {
    if (o.store === undefined || typeof o.store.append !== 'function') {
      throw new InvalidOptionError('store', 'a FlipLogStore', o.store);
    }
    this.#store = o.store;
    this.#host = o.host ?? '127.0.0.1';
    this.#port = intOption('port', o.port ?? 7411, 0, 65535);
    // KS-17.9.1: no anonymous admin unless the caller asks for it by name.
    if (o.auth === undefined) {
      throw new InvalidOptionError(
        'auth',
        "a TokenAuthenticator (or 'none', explicitly, for an anonymous admin on loopback)",
        o.auth,
      );
    }
    this.#auth = o.auth;
    if (this.#auth !== 'none' && typeof this.#auth.authenticate !== 'function') {
      throw new InvalidOptionError('auth', "a TokenAuthenticator or 'none'", o.auth);
    }
    this.#guard = new RequestGuard({ allowedHosts: o.allowedHosts });
    // KS-5.2.8: never serve an unauthenticated API beyond this machine.
    if (!isLoopbackHost(this.#host) && (this.#auth === 'none' || this.#auth.size === 0)) {
      throw new InvalidOptionError(
        'auth',
        `tokens when binding the non-loopback host ${this.#host}`,
        o.auth ?? 'none',
      );
    }
    this.#heartbeatMs = intOption('heartbeatMs', o.heartbeatMs ?? 1000, 1, 3_600_000);
    this.#retryMs = intOption('retryMs', o.retryMs ?? 1000, 0, 3_600_000);
    this.#maxBodyBytes = intOption('maxBodyBytes', o.maxBodyBytes ?? 65_536, 1, 64 * 1024 * 1024);
    const maxReplay = intOption('maxReplay', o.maxReplay ?? 10_000, 1, 10_000_000);
    const maxBuffered = intOption(
      'maxBufferedBytes',
      o.maxBufferedBytes ?? 1_048_576,
      1,
      1024 * 1024 * 1024,
    );
    this.#maxBuffered = maxBuffered;
    this.#clock = o.clock ?? systemClock;
    const clock = this.#clock;
    // Wall-clock readings: labels, and the age of the store's caughtUpAt (a wall time). Leases,
    // the tracker and waits use clock.now() (KS-6.2.7).
    this.#now = () => clock.wallNow();
    this.#log = o.logger ?? {
      info: () => {},
      warn: (m) => process.stderr.write(`killswitch serve: ${m}\n`),
      error: (m) => process.stderr.write(`killswitch serve: ${m}\n`),
    };
    this.tracker = new FleetTracker({
      clock: this.#clock,
      ...(o.staleAfterMs === undefined ? {} : { staleAfterMs: o.staleAfterMs }),
      ...(o.leaseMarginMs === undefined ? {} : { leaseMarginMs: o.leaseMarginMs }),
    });
    const auth = this.#auth;
    this.#claims = new WorkerClaims({
      // A claim lasts as long as the server would still count its holder's lease.
      ttlMs: this.tracker.staleAfterMs + this.tracker.leaseMarginMs,
      clock: this.#clock,
      reserved: (id) =>
        auth !== 'none' && typeof auth.reservesWorker === 'function' && auth.reservesWorker(id),
    });
    this.#hub = new StreamHub({
      maxBufferedBytes: maxBuffered,
      onDrop: ({ workerId, pending }) =>
        this.#log.warn(
          `dropped a slow stream subscriber${workerId ? ` (worker ${workerId})` : ''}: ${pending} bytes pending`,
        ),
    });
    this.#vouch = new VouchState({
      store: this.#store,
      storeStaleAfterMs: intOption('storeStaleAfterMs', o.storeStaleAfterMs ?? 3000, 1, 3_600_000),
      wallNow: this.#now,
      log: this.#log,
      onNotVouching: () => this.#hub.closeAll(),
    });
    this.#replicaBeatMs = intOption('replicaBeatMs', o.replicaBeatMs ?? 250, 10, 60_000);
    const replicaTimeoutMs = intOption(
      'replicaTimeoutMs',
      o.replicaTimeoutMs ?? 1500,
      1,
      3_600_000,
    );
    if (o.replicaId !== undefined && !/^[A-Za-z0-9._:-]{1,64}$/.test(o.replicaId))
      throw new InvalidOptionError('replicaId', '1 to 64 of A-Z a-z 0-9 . _ : -', o.replicaId);
    // KS-6.6 a store several replicas share carries the fleet; the file and memory stores do not,
    // and their path stays as it was.
    this.#fleet =
      o.shareFleet !== false && isFleetChannelStore(o.store)
        ? new SharedFleet({
            selfId: o.replicaId ?? `r-${randomUUID().replaceAll('-', '').slice(0, 12)}`,
            staleAfterMs: this.tracker.staleAfterMs,
            leaseMarginMs: this.tracker.leaseMarginMs,
            replicaTimeoutMs,
            clock: this.#clock,
          })
        : undefined;
    this.#follower = new LogFollower({
      log: this.#store,
      maxReplay,
      logger: this.#log,
      onApplied: (r, event) => {
        // The fan-out goes first; the bookkeeping after it costs O(workers) and would delay every
        // subscriber. Nothing can run in between (this is one synchronous step): the tracker still
        // records the append, at the time taken before the broadcast, before any ack is handled.
        const appendedAt = this.#clock.now(); // the tracker's monotonic scale (KS-6.2.7)
        this.#hub.broadcast(event);
        this.tracker.flipAppended(r.seq, appendedAt);
        if (this.#fleet !== undefined) {
          this.#fleet.flipAppended(r.seq, appendedAt);
          // KS-6.6.4 the heartbeat that says so is this flip's barrier.
          this.#fleetChannel?.publishHead(r.seq);
        }
      },
      // KS-6.4.4 stop vouching for good: acks 503, streams end, /healthz and OFREP fail closed.
      onBroken: (reason) => {
        this.#vouch.breakFor(reason);
        this.#hub.closeAll();
        for (const w of [...this.#ackWaiters]) w();
      },
    });
    this.router.add(
      ...this.#routes(),
      ...(o.ofrep === false ? [] : ofrepRoutes({ view: this, maxBodyBytes: this.#maxBodyBytes })),
      ...(o.routes ?? []),
    );
    this.#releaseGate = o.releaseGate;
    if (o.releaseGate !== undefined)
      this.router.add(...releaseRoutes(o.releaseGate, () => this.#allWorkers()));
    // KS-17.8.1: Node checks request heads and bodies against their deadlines every second.
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      void this.#dispatch(req, res);
    };
    // KS-17.10.1: HTTPS when given a certificate and key.
    if (o.tls !== undefined && (!o.tls.cert || !o.tls.key)) {
      throw new InvalidOptionError('tls', '{ cert, key } (PEM)', o.tls);
    }
    this.#scheme = o.tls === undefined ? 'http' : 'https';
    this.#server =
      o.tls === undefined
        ? createServer({ connectionsCheckingInterval: 1000 }, handler)
        : (createHttpsServer(
            { cert: o.tls.cert, key: o.tls.key, connectionsCheckingInterval: 1000 },
            handler,
          ) as unknown as Server);
    const limits = connectionLimits({
      ...(o.headersTimeoutMs === undefined ? {} : { headersTimeoutMs: o.headersTimeoutMs }),
      ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
      ...(o.keepAliveTimeoutMs === undefined ? {} : { keepAliveTimeoutMs: o.keepAliveTimeoutMs }),
      ...(o.maxConnections === undefined ? {} : { maxConnections: o.maxConnections }),
      ...(o.reservedConnections === undefined
        ? {}
        : { reservedConnections: o.reservedConnections }),
    });
    this.#streamLimits = new StreamLimits({
      maxStreams:
        o.maxStreams ?? Math.max(1, limits.maxConnections - 2 * limits.reservedConnections),
      ...(o.maxStreamsPerToken === undefined ? {} : { maxStreamsPerToken: o.maxStreamsPerToken }),
    });
    this.limits = new FlipLimits({
      clock: this.#clock,
      ...(o.maxFlipsPerSecond === undefined ? {} : { maxFlipsPerSecond: o.maxFlipsPerSecond }),
      ...(o.flipBurst === undefined ? {} : { flipBurst: o.flipBurst }),
      ...(o.maxActiveHalts === undefined ? {} : { maxActiveHalts: o.maxActiveHalts }),
      ...(o.maxHaltsPerAlert === undefined ? {} : { maxHaltsPerAlert: o.maxHaltsPerAlert }),
      ...(o.maxWorkers === undefined ? {} : { maxWorkers: o.maxWorkers }),
    });
    this.#connections = new ConnectionGuard(this.#server, limits, {
      clock: this.#clock,
      onEvict: (m) => this.#log.warn(m),
    });
  }

  get host(): string {
    return this.#host;
  }

  get port(): number {
    return this.#actualPort;
  }

  get url(): string {
    const h = this.#host.includes(':') ? `[${this.#host}]` : this.#host;
    return `${this.#scheme}://${h}:${this.#actualPort}`;
  }

  snapshot(): KillSnapshot {
    return this.#follower.state.toSnapshot();
  }

  stats(): ControlPlaneStats {
    return {
      subscribers: this.#hub.size,
      dropped: this.#hub.dropped,
      head: this.#follower.state.seq,
      connections: this.#connections.stats(),
    };
  }

  /** KS-12.5.1 */
  vouch(): Vouch {
    return this.#vouch.check();
  }

  async start(): Promise<void> {
    this.#vouch.start();
    await this.#store.open();
    const logId = await this.#store.logId();
    // KS-10.5.2 a release file that cannot be read or is locked fails the start.
    await this.#releaseGate?.open();
    await this.#follower.start(logId);
    this.tracker.setHead(this.#follower.state.seq);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    this.#actualPort = address.port;
    this.#guard.bind(this.#host, address.address);
    await this.#joinFleet();
    if (this.#auth === 'none') {
      this.#log.warn(
        `auth: 'none': every caller is an anonymous admin (${this.url}); pass a TokenAuthenticator`,
      );
    }
    this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
    // KS-17.6.1: a reload that revokes or rotates a token ends its streams at once.
    const auth = this.#auth;
    if (auth !== 'none' && typeof auth.onChange === 'function')
      this.#unwatchTokens = auth.onChange(() => this.#endRevokedStreams());
  }

  async close(): Promise<void> {
    if (this.#vouch.closed) return;
    this.#vouch.close();
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#connections.close();
    await this.#fleetChannel?.close();
    this.#unwatchTokens?.();
    this.#follower.close();
    this.#hub.closeAll();
    for (const w of [...this.#ackWaiters]) w();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  // --- the shared fleet (KS-6.6) ---------------------------------------------------------------

  /** Registers with the other replicas of a shared store; a replica that cannot, does not start. */
  async #joinFleet(): Promise<void> {
    const fleet = this.#fleet;
    if (fleet === undefined || !isFleetChannelStore(this.#store)) return;
    fleet.selfUrl = this.url;
    try {
      this.#fleetChannel = await this.#store.openFleetChannel({
        replicaId: fleet.selfId,
        url: this.url,
        head: this.#follower.state.seq,
        beatMs: this.#replicaBeatMs,
        logger: { warn: (m) => this.#log.warn(m) },
        onEvent: (e) => {
          fleet.onEvent(e);
          // A remote acknowledgement, a barrier or a heartbeat may complete a waited flip.
          for (const w of [...this.#ackWaiters]) w();
        },
      });
    } catch (err) {
      this.#follower.close();
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
      throw err;
    }
  }

  fleetStatus(seq: number): FlipFleetStatus | undefined {
    return this.#fleetStatus(seq);
  }

  workers(): WorkerInfo[] {
    return this.#allWorkers();
  }

  /** A flip's answer: this replica's tracker, merged with the other replicas' workers. */
  #fleetStatus(seq: number): FlipFleetStatus | undefined {
    const local = this.tracker.status(seq);
    return this.#fleet === undefined ? local : this.#fleet.status(seq, local);
  }

  /** Every worker this replica knows of (the whole fleet when shared). */
  #allWorkers(): WorkerInfo[] {
    const local = this.tracker.workers();
    return this.#fleet === undefined ? local : this.#fleet.workers(local, this.tracker.head);
  }

  /** KS-17.6.1: streams opened with a token that was removed, changed or expired end. */
  #endRevokedStreams(): void {
    const auth = this.#auth;
    if (auth === 'none' || typeof auth.isCurrent !== 'function') return;
    const ended = this.#streamCredentials.sweep((p) => auth.isCurrent(p));
    if (ended.length > 0)
      this.#log.warn(`ended the streams of revoked or expired tokens: ${ended.join(', ')}`);
  }

  #beat(): void {
    this.#endRevokedStreams();
    // KS-12.5.2: while not vouching, no heartbeat renews anything and open streams end.
    if (!this.#vouch.beat()) return;
    if (this.#hub.size === 0) return;
    const beat: HeartbeatData = {
      head: this.#follower.state.seq,
      at: apiTime(this.#now()),
      logId: this.#follower.logId,
      hash: this.#follower.state.hash,
    };
    this.#hub.broadcast(encodeEvent(StreamEvent.HEARTBEAT, beat));
  }

  // --- HTTP ----------------------------------------------------------------------------------

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      // A target that is not a URL (`//[`) or not in normal form (`/v1/../v1/flips`, both found
      // by the KS-13.4 fuzz suite) is the client's error: 400 before any route. KS-5.1.13
      // KS-17.9.2: a request that does not name this control plane is answered before anything.
      this.#guard.checkHost(req);
      const target = parseRequestTarget(req.url);
      if (!target.ok) throw new HttpError(400, ErrorCode.INVALID_INPUT, target.reason);
      const url = target.url;
      const m = this.router.match(req.method ?? 'GET', url.pathname);
      if (m.kind === 'not-found') {
        throw new HttpError(404, ErrorCode.NOT_FOUND, `no route ${url.pathname}`);
      }
      if (m.kind === 'method-not-allowed') {
        throw new HttpError(
          405,
          ErrorCode.METHOD_NOT_ALLOWED,
          `${req.method} is not allowed on ${url.pathname}`,
          {
            headers: { allow: m.allow.join(', ') },
          },
        );
      }
      let principal: Principal | undefined;
      if (m.route.auth !== 'public') {
        principal =
          this.#auth === 'none' ? ANONYMOUS : this.#auth.authenticate(req.headers.authorization);
      }
      // KS-17.9.2: state-changing requests carry JSON (no cross-site form or simple fetch).
      this.#guard.checkContentType(req);
      const ctx: RouteContext = {
        req,
        res,
        url,
        params: m.params,
        principal,
        body: () => readJsonBody(req, this.#maxBodyBytes),
      };
      await m.route.handle(ctx);
    } catch (err) {
      const { status, body, headers } = toHttpError(err);
      if (status === 401) headers['www-authenticate'] = 'Bearer realm="killswitch"';
      if (status >= 500)
        this.#log.error(`${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
      if (res.headersSent) res.destroy();
      else sendJson(res, status, body, headers);
    }
  }

  #routes(): Route[] {
    return [
      { method: 'GET', path: ApiPath.HEALTH, auth: 'public', handle: (c) => this.#health(c) },
      { method: 'POST', path: ApiPath.FLIPS, auth: 'authenticated', handle: (c) => this.#flip(c) },
      {
        method: 'GET',
        path: ApiPath.FLIPS,
        auth: 'authenticated',
        handle: (c) => this.#readLog(c),
      },
      {
        method: 'GET',
        path: ApiPath.STATE,
        auth: 'authenticated',
        handle: (c) => this.#getState(c),
      },
      {
        method: 'GET',
        path: ApiPath.STREAM,
        auth: 'authenticated',
        handle: (c) => this.#stream(c),
      },
      { method: 'POST', path: ApiPath.ACKS, auth: 'authenticated', handle: (c) => this.#ack(c) },
      {
        method: 'GET',
        path: ApiPath.WORKERS,
        auth: 'authenticated',
        handle: (c) => this.#workers(c),
      },
    ];
  }

  #health({ res }: RouteContext): void {
    const v = this.vouch();
    const ok = v.ok;
    const body: HealthAnswer = {
      ok,
      head: this.#follower.state.seq,
      store: this.#store.kind,
      subscribers: this.#hub.size,
      ...(v.ok ? {} : { reason: v.detail }),
    };
    sendJson(res, ok ? 200 : 503, body);
  }

  #checkHealthy(): void {
    this.#vouch.require();
  }

  /** KS-5.1.1 .. KS-5.1.4 */
  async #flip({ res, principal, body, url }: RouteContext): Promise<void> {
    const who = principal ?? ANONYMOUS;
    // KS-5.1.14 `?wait=` is honoured (validated like the body's) or the request refused.
    const query = parseQuery(flipQuerySchema, url, 'flip query');
    // Validated once, by the model's rules; the store takes the validated flip as it is.
    const parsed = parseFlipRequest(await body(), who.name);
    const flip = parsed.flip;
    if (query.wait !== undefined && parsed.wait !== undefined && query.wait !== parsed.wait) {
      throw new ValidationError('flip request', [
        {
          path: ['wait'],
          message: `given as ${parsed.wait} in the body and ${query.wait} in the query; give one`,
        },
      ]);
    }
    const wait = parsed.wait ?? query.wait;
    // KS-17.2.3 an override names the gate it passes: never ignored silently.
    if (
      parsed.overrideGate !== undefined &&
      (flip.action !== 'resume' || this.#releaseGate === undefined)
    )
      throw new ValidationError('flip request', [
        {
          path: ['overrideGate'],
          message:
            flip.action !== 'resume'
              ? 'only a resume passes the release gate'
              : 'this control plane has no release gate',
        },
      ]);
    authorize(who, this.#flipAction(flip));
    // KS-17.8.3: the token's flip rate, before anything is appended.
    this.limits.takeFlip(who.name);
    this.#checkHealthy();
    const result = await this.#flipMutex.run(async () => {
      // KS-5.1.3: a resume that lifts nothing is refused, not appended (a retry of an appended
      // resume, same id, goes through to the store, which answers with the stored record).
      if (
        flip.action === 'resume' &&
        !this.#follower.hasId(flip.id) &&
        this.#follower.state.get(flip.selector) === undefined
      ) {
        throw new KillSwitchError(
          ErrorCode.RESUME_REFUSED,
          'no active halt has exactly this selector; nothing to resume',
        );
      }
      // KS-17.8.3: a halt with a new selector must stay within maxActiveHalts.
      if (
        flip.action === 'halt' &&
        !this.#follower.hasId(flip.id) &&
        this.#follower.state.get(flip.selector) === undefined
      )
        this.limits.checkActiveHalts(this.#follower.state.size, 1);
      // KS-10.5.3, KS-10.5.6 gated under the flip lock; a retried resume already appended is not.
      if (flip.action === 'resume' && !this.#follower.hasId(flip.id))
        await this.#releaseGate?.checkOrOverride(
          flip,
          this.#allWorkers(),
          who,
          parsed.overrideGate,
        );
      return this.#store.append(flip);
    });
    // KS-6.4.5 never 2xx for a flip this control plane has not applied at its seq.
    if (!(await this.#follower.waitApplied(result.record.seq, result.record.hash, 5000))) {
      throw new HttpError(
        503,
        this.#follower.broken === undefined ? ErrorCode.STORE_UNAVAILABLE : ErrorCode.LOG_DIVERGED,
        `flip ${result.record.id} was written at seq ${result.record.seq}, but this control plane has not applied it there (${this.#follower.broken ?? 'not within 5000 ms'}); nothing was streamed to the fleet for it`,
      );
    }
    const fleet =
      wait !== undefined && wait > 0
        ? await this.#awaitFleet(result.record.seq, wait, res)
        : (this.#fleetStatus(result.record.seq) ?? null);
    const answer: FlipAnswer = {
      flip: result.record,
      duplicate: result.duplicate,
      fleet,
      covers: haltCoverage(result.record.selector),
    };
    sendJson(res, result.duplicate ? 200 : 201, answer);
  }

  /** What a flip asks to do; a resume names the halt it lifts and who placed it (KS-17.5.1). */
  #flipAction(flip: { action: 'halt' | 'resume'; selector: FlipRecord['selector'] }): Action {
    if (flip.action === 'halt') return { kind: 'halt', selector: flip.selector };
    const halt = this.#follower.state.get(flip.selector);
    if (halt === undefined) return { kind: 'resume', selector: flip.selector };
    const actorRole = this.#auth === 'none' ? Role.ADMIN : this.#auth.roleOf(halt.actor);
    return {
      kind: 'resume',
      selector: flip.selector,
      halt: { actor: halt.actor, actorRole, seq: halt.seq },
    };
  }

  async #awaitFleet(
    seq: number,
    waitMs: number,
    res: ServerResponse,
  ): Promise<FlipFleetStatus | null> {
    // KS-6.2.7 the wait and the tracker's deadlines on the monotonic clock.
    const end = this.#clock.now() + Math.min(waitMs, MAX_WAIT_MS);
    for (;;) {
      const st = this.#fleetStatus(seq);
      if (st === undefined) return null;
      const now = this.#clock.now();
      // The caller hanging up ends the wait (the flip itself is durable already).
      if (st.complete || now >= end || this.#vouch.closed || res.destroyed) return st;
      const local = this.tracker.nextDeadline(seq) ?? end;
      const remote = this.#fleet?.nextDeadline(seq) ?? end;
      const next = Math.min(local, remote);
      const delay = Math.max(1, Math.min(end, next) - now);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#ackWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, delay);
        this.#ackWaiters.add(done);
      });
    }
  }

  async #readLog({ res, url }: RouteContext): Promise<void> {
    const q = parseQuery(logQuerySchema, url, 'log query');
    this.#checkHealthy();
    const flips = await this.#store.read({ after: q.after, limit: q.limit });
    const head = (await this.#store.head()).seq;
    const last = flips.at(-1)?.seq;
    const answer: LogAnswer = {
      flips,
      head,
      next: last !== undefined && last < head ? last : null,
    };
    sendJson(res, 200, answer);
  }

  #getState({ res }: RouteContext): void {
    this.#checkHealthy();
    sendJson(res, 200, this.#follower.state.toSnapshot());
  }

  /** KS-6.2: one acknowledgement, or a batch of them (`{ acks: [...] }`, KS-6.2.6). */
  async #ack({ res, principal, body }: RouteContext): Promise<void> {
    const acks = parseAcks(await body());
    const who = principal ?? ANONYMOUS;
    authorize(who, { kind: 'ack' });
    // KS-5.2.9: every entry's worker id is checked before any is recorded (a batch is all or
    // nothing), so a token cannot acknowledge for a worker it may not act as.
    for (const a of acks) this.#claims.check(who, a.workerId);
    this.#checkAcks(acks);
    this.#checkHealthy();
    await this.#checkAckPositions(acks);
    // KS-6.2.6: each entry is recorded exactly as the same acknowledgement sent alone, in order;
    // the answer's fields do not depend on the worker, so one answer serves every entry.
    let answer: AckAnswer | undefined;
    for (const a of acks) {
      answer = {
        ...this.tracker.ack(a),
        logId: this.#follower.logId,
        hash: this.#follower.state.hash,
      };
      this.#claims.touch(who, a.workerId);
    }
    for (const w of [...this.#ackWaiters]) w();
    if (this.#fleetChannel !== undefined && answer !== undefined)
      answer = await this.#shareAcks(acks, answer);
    sendJson(res, 200, answer);
  }

  /**
   * KS-6.6.3 a shared fleet's acknowledgements are answered only once the store committed them
   * (with the log's head at that commit), so every renewal a worker was answered is one the other
   * replicas see; the answer's head is the later of this replica's and that head, so a worker
   * whose replica lags the log learns it is behind and extends nothing.
   */
  async #shareAcks(acks: readonly AckRequest[], answer: AckAnswer): Promise<AckAnswer> {
    let head;
    try {
      head = await this.#fleetChannel!.renew(
        acks.map((a) => ({
          workerId: a.workerId,
          release: a.release,
          seq: a.seq,
          connections: this.tracker.connections(a.workerId),
          unenforced: a.unenforced,
        })),
      );
    } catch (err) {
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `the acknowledgement could not be shared with the other replicas, so it renews nothing: ${(err as Error).message}`,
      );
    }
    this.#checkHealthy();
    const mine = this.tracker.head;
    if (head.seq <= mine) return { ...answer, head: mine, hash: this.#follower.state.hash };
    return { ...answer, head: head.seq, hash: head.hash };
  }

  /**
   * KS-6.4.3 what an acknowledgement says about the log: a worker on another log is refused (409,
   * it fails closed on its own); a worker that applied a seq beyond this head (after a short wait
   * for a shared store to catch up) or another record at a seq this control plane applied proves
   * that the log moved backwards or forked, and this control plane stops vouching (503).
   */
  async #checkAckPositions(acks: readonly AckRequest[]): Promise<void> {
    let ahead: AckRequest | undefined;
    for (const a of acks) {
      if (a.logId !== undefined && a.logId !== this.#follower.logId) {
        throw new HttpError(
          409,
          ErrorCode.LOG_DIVERGED,
          `worker ${a.workerId} applied log ${a.logId} at seq ${a.seq}, but this control plane serves ${describePosition(this.#follower.position())}: another log; the worker fails closed until it reaches a control plane on its log`,
        );
      }
      if (a.seq > this.#follower.state.seq) {
        if (ahead === undefined || a.seq > ahead.seq) ahead = a;
      } else if (a.hash !== undefined) {
        const known = this.#follower.appliedHash(a.seq);
        if (known !== undefined && known !== a.hash) {
          this.#follower.diverge(
            new LogDivergedError(
              Divergence.FORKED,
              { logId: this.#follower.logId, seq: a.seq, hash: a.hash },
              { logId: this.#follower.logId, seq: a.seq, hash: known },
              { applied: `worker ${a.workerId} applied`, seen: 'this control plane serves' },
            ),
          );
        }
      }
    }
    if (this.#follower.broken !== undefined) this.#checkHealthy();
    if (ahead === undefined) return;
    // A replica of a shared log may be a poll behind the worker: wait for it a little.
    if (await this.#follower.waitApplied(ahead.seq, ahead.hash, AHEAD_WAIT_MS)) return;
    this.#checkHealthy();
    let stored: LogPosition;
    try {
      stored = { logId: this.#follower.logId, ...(await this.#store.head()) };
    } catch (err) {
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `worker ${ahead.workerId} acknowledged seq ${ahead.seq}, beyond this control plane's head ${this.#follower.state.seq}, and the store cannot be read: ${(err as Error).message}`,
      );
    }
    if (ahead.logId !== undefined && ahead.hash !== undefined && stored.seq < ahead.seq) {
      this.#follower.diverge(
        new LogDivergedError(
          Divergence.BEHIND,
          { logId: ahead.logId, seq: ahead.seq, hash: ahead.hash },
          stored,
          {
            applied: `worker ${ahead.workerId} applied`,
            seen: `the ${this.#store.kind} store holds`,
          },
        ),
      );
      this.#checkHealthy();
    }
    throw new HttpError(
      409,
      ErrorCode.LOG_DIVERGED,
      `worker ${ahead.workerId} acknowledged seq ${ahead.seq}, beyond this control plane's ${describePosition(this.#follower.position())}; an acknowledgement never goes beyond the head`,
    );
  }

  /**
   * KS-17.8.4: no new worker beyond maxWorkers; the whole batch is refused, nothing recorded.
   * (An acknowledgement beyond the head is KS-6.4.3's, in #checkAckPositions.)
   */
  #checkAcks(acks: readonly { readonly workerId: string }[]): void {
    let tracked = this.tracker.size;
    const added = new Set<string>();
    for (const a of acks) {
      if (!this.tracker.has(a.workerId) && !added.has(a.workerId)) {
        this.limits.checkNewWorker(tracked++, a.workerId);
        added.add(a.workerId);
      }
    }
  }

  #workers({ res }: RouteContext): void {
    const answer: WorkersAnswer = {
      head: this.tracker.head,
      staleAfterMs: this.tracker.staleAfterMs,
      leaseMarginMs: this.tracker.leaseMarginMs,
      workers: this.#allWorkers(),
      // KS-6.6.6 which replica each worker is on, and the replicas themselves.
      ...(this.#fleet === undefined
        ? {}
        : { replicas: this.#fleet.replicas(this.#follower.state.seq) }),
    };
    sendJson(res, 200, answer);
  }

  /** KS-6.1 */
  #stream({ req, res, url, principal }: RouteContext): void {
    const q = parseQuery(streamQuerySchema, url, 'stream query');
    const who = principal ?? ANONYMOUS;
    authorize(who, { kind: 'read' });
    // KS-5.2.9: streaming as a worker id is acting as it (the fleet counts the connection).
    if (q.worker !== undefined) {
      this.#claims.check(who, q.worker);
      // KS-17.8.4: a new worker beyond maxWorkers is refused; none is dropped.
      if (!this.tracker.has(q.worker)) this.limits.checkNewWorker(this.tracker.size, q.worker);
    }
    this.#checkHealthy();
    const head = this.#follower.state.seq;
    const chunks: Buffer[] = [Buffer.from(`retry: ${this.#retryMs}\n\n`)];
    const lastId = req.headers[LAST_EVENT_ID_HEADER];
    const s =
      typeof lastId === 'string' && /^\d{1,16}$/.test(lastId.trim())
        ? Number(lastId.trim())
        : undefined;
    // KS-6.1.4: replay exactly what was missed; KS-6.1.6: a snapshot when that is out of reach.
    const replay =
      q.snapshot !== '1' && s !== undefined ? this.#follower.replaySince(s, head) : undefined;
    // A replay bigger than a subscriber may have pending would be dropped at the next write and
    // start over: a snapshot (the active halts only) resynchronises it instead.
    if (replay !== undefined && byteLength(replay) <= this.#maxBuffered) {
      chunks.push(...replay);
    } else {
      // KS-17.8.2: one encoded snapshot per seq, shared by every stream that opens on it.
      // KS-6.4.1 it names the log it is of.
      chunks.push(
        this.#sharedSnapshot.get(head, '*', (): SnapshotData => ({
          ...this.#follower.state.toSnapshot(),
          logId: this.#follower.logId,
        })),
      );
    }
    if (req.method === 'HEAD') {
      // A HEAD must not become a subscriber that never receives a body.
      res.writeHead(200, {
        'content-type': STREAM_HEADERS['content-type'],
        'cache-control': STREAM_HEADERS['cache-control'],
      });
      res.end();
      return;
    }
    // KS-17.8.2: a slot, or 429 before anything is written or tracked.
    const freeSlot = this.#streamLimits.acquire(who.name, q.worker, () => res.destroy());
    req.socket.setNoDelay(true);
    res.writeHead(200, STREAM_HEADERS);
    // Each chunk written as is: the snapshot and replayed events are shared buffers, never copied.
    res.socket?.cork();
    for (const c of chunks) res.write(c);
    res.socket?.uncork();
    const unhold = this.#streamCredentials.hold(who, () => res.destroy());
    let disconnect: () => void = () => {
      freeSlot();
      unhold();
    };
    if (q.worker !== undefined) {
      const untrack = this.tracker.connect(q.worker, q.release);
      const release = this.#claims.open(who, q.worker);
      disconnect = () => {
        freeSlot();
        unhold();
        untrack();
        release();
      };
    }
    this.#hub.add(res, q.worker, disconnect, byteLength(chunks));
  }
}

/** How long an acknowledgement beyond the head waits for this replica to catch up. KS-6.4.3 */
const AHEAD_WAIT_MS = 1000;

function parseQuery<S extends z.ZodType>(schema: S, url: URL, what: string): z.output<S> {
  const obj: Record<string, string> = {};
  const issues: { path: string[]; message: string }[] = [];
  for (const [k, v] of url.searchParams) {
    if (Object.hasOwn(obj, k)) issues.push({ path: [k], message: 'given more than once' });
    obj[k] = v;
  }
  if (issues.length > 0) throw new ValidationError(what, issues);
  const r = schema.safeParse(obj);
  if (!r.success) throw new ValidationError(what, toIssues(r.error));
  return r.data;
}

function byteLength(chunks: readonly Buffer[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}
