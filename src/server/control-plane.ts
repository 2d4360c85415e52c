import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { isLoopbackHost } from '../auth/is-loopback-host.js';
import { Role, type Principal } from '../auth/principal.js';
import type { TokenAuthenticator } from '../auth/token-authenticator.js';
import { WorkerClaims } from '../auth/worker-claims.js';
import { ErrorCode, InvalidOptionError } from '../errors.js';
import { systemClock, type Clock } from '../internal/clock.js';
import { intOption } from '../internal/int-option.js';
import type { KillSnapshot } from '../model/kill-state.js';
import { ofrepRoutes, type Vouch } from '../ofrep/ofrep-routes.js';
import { apiTime } from '../protocol/answers.js';
import { encodeEvent, StreamEvent, type HeartbeatData } from '../protocol/stream-events.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { isFleetChannelStore } from '../store/fleet-channel.js';
import { isReleaseLogStore } from '../store/release-log.js';
import { ConnectionGuard, connectionLimits, type ConnectionStats } from './connection-guard.js';
import { FleetTracker, type FlipFleetStatus, type WorkerInfo } from './fleet-tracker.js';
import { FleetView } from './fleet-view.js';
import { FlipLimits } from './flip-limits.js';
import { exerciseFlipRoute } from './internal/warm-flip-route.js';
import { HttpError, readJsonBody, sendJson, toHttpError } from './internal/http-io.js';
import { LogFollower } from './log-follower.js';
import { releaseRoutes, type ReleaseGate } from './release-gate.js';
import { RequestGuard } from './request-guard.js';
import { parseRequestTarget, type RequestTarget } from './request-target.js';
import { Router, type Route, type RouteContext } from './router.js';
import { acceptAcks, ackRoutes } from './routes/ack-routes.js';
import { ackStreamRoute } from './routes/ack-stream-route.js';
import { flipRoutes } from './routes/flip-routes.js';
import { healthRoutes } from './routes/health-route.js';
import { logRoutes } from './routes/log-routes.js';
import { ANONYMOUS } from './routes/route-support.js';
import { stateRoutes } from './routes/state-routes.js';
import { streamRoutes } from './routes/stream-routes.js';
import { workersRoutes } from './routes/workers-routes.js';
import { SharedFleet } from './shared-fleet.js';
import { SharedSnapshot } from './shared-snapshot.js';
import type { SigningKey } from '../integrity/signing-key.js';
import { StreamCredentials } from './stream-credentials.js';
import { StreamHub } from './stream-hub.js';
import { StreamLimits } from './stream-limits.js';
import { VouchState } from './vouch-state.js';

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
   * passes one; without it resumes are not gated. The control plane opens it on start, on the
   * store when the store shares release verdicts (PostgreSQL, KS-8.9; see `shareReleases`).
   * @default none
   */
  readonly releaseGate?: ReleaseGate;
  /**
   * KS-8.9 keep the release gate's verdicts in the store when it can share them (PostgreSQL), so
   * a red verdict given on one replica refuses a resume posted to any other; off, each replica's
   * gate keeps its own file and a verdict counts only where it was given.
   * @default true
   */
  readonly shareReleases?: boolean;
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
  /**
   * Sign every snapshot the stream sends (KS-17.7.9), so workers given its public key
   * (`RemoteFlipSource({ publicKeys })`) accept them; give the store the same key to sign records.
   * @default snapshots unsigned
   */
  readonly signingKey?: SigningKey;
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

/** KS-6.1.4 how long a stream resuming beyond this head waits for a shared log to catch up. */
const STREAM_CATCH_UP_MS = 1000;

/** The flip route's code is run on private objects at most this often (see #keepFlipRouteWarm). */
const KEEP_WARM_EVERY_MS = 5000;

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

/**
 * The control plane: the composition of its parts. The {@link LogFollower} folds the log into the
 * state and hands each applied record to the stream hub and the fleet; the {@link FleetView}
 * answers and waits for the fleet; the core routes (`routes/*`) serve the API, mounted on the
 * router like every other route; this class starts, beats and closes them.
 */
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
  readonly #streamCredentials = new StreamCredentials();
  #unwatchTokens: (() => void) | undefined;
  readonly #heartbeatMs: number;
  readonly #maxBodyBytes: number;
  readonly #log: ControlPlaneLogger;
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #hub: StreamHub;
  readonly #server: Server;
  readonly #scheme: 'http' | 'https';
  /** The log, folded into the state; broken when it moved backwards or forked (KS-6.4.4). */
  readonly #follower: LogFollower;
  /** The fleet: this replica's tracker and, when shared, every other replica's workers (KS-6.6). */
  readonly #fleet: FleetView;
  #heartbeat: NodeJS.Timeout | undefined;
  /** When the flip route was last warmed (clock.now()); never yet: -Infinity. */
  #warmedAt = Number.NEGATIVE_INFINITY;
  #actualPort = 0;
  readonly #releaseGate: ReleaseGate | undefined;
  readonly #shareReleases: boolean;
  /** KS-12.5, KS-6.4.4 whether this control plane vouches for its state, and why not. */
  readonly #vouch: VouchState;
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
    const retryMs = intOption('retryMs', o.retryMs ?? 1000, 0, 3_600_000);
    this.#maxBodyBytes = intOption('maxBodyBytes', o.maxBodyBytes ?? 65_536, 1, 64 * 1024 * 1024);
    const maxReplay = intOption('maxReplay', o.maxReplay ?? 10_000, 1, 10_000_000);
    const maxBuffered = intOption(
      'maxBufferedBytes',
      o.maxBufferedBytes ?? 1_048_576,
      1,
      1024 * 1024 * 1024,
    );
    this.#clock = o.clock ?? systemClock;
    const clock = this.#clock;
    // Wall-clock readings, for labels only. Leases, the tracker, waits and the store's staleness
    // use clock.now() (KS-6.2.7, KS-12.5.4).
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
      clock: this.#clock,
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
    this.#fleet = new FleetView({
      tracker: this.tracker,
      clock: this.#clock,
      ...(o.shareFleet !== false && isFleetChannelStore(o.store)
        ? {
            shared: new SharedFleet({
              selfId: o.replicaId ?? `r-${randomUUID().replaceAll('-', '').slice(0, 12)}`,
              staleAfterMs: this.tracker.staleAfterMs,
              leaseMarginMs: this.tracker.leaseMarginMs,
              replicaTimeoutMs,
              clock: this.#clock,
            }),
          }
        : {}),
    });
    this.#follower = new LogFollower({
      log: this.#store,
      maxReplay,
      logger: this.#log,
      onApplied: (r, event) => {
        // The fan-out goes first; the bookkeeping after it costs O(workers) and would delay every
        // subscriber. Nothing can run in between (this is one synchronous step): the tracker still
        // records the append, at the time taken before the broadcast, before any ack is handled.
        const appendedAt = this.#clock.now(); // the tracker's monotonic scale (KS-6.2.7)
        this.#hub.broadcast(event, r); // KS-17.4.1 scoped readers get a skip
        this.#fleet.flipAppended(r.seq, appendedAt);
      },
      // KS-2.4.9 a halt goes to the streams while its write is in flight (file store: one
      // writer); the answer, every ack and stop-complete still wait for onApplied (durable).
      onEarly: (r, event) => this.#hub.broadcast(event, r),
      // KS-6.4.4 stop vouching for good: acks 503, streams end, /healthz and OFREP fail closed.
      onBroken: (reason) => {
        this.#vouch.breakFor(reason);
        this.#hub.closeAll();
        this.#fleet.wake();
      },
    });
    this.#releaseGate = o.releaseGate;
    this.#shareReleases = o.shareReleases !== false;
    const requireVouching = (): void => this.#vouch.require();
    this.limits = new FlipLimits({
      clock: this.#clock,
      ...(o.maxFlipsPerSecond === undefined ? {} : { maxFlipsPerSecond: o.maxFlipsPerSecond }),
      ...(o.flipBurst === undefined ? {} : { flipBurst: o.flipBurst }),
      ...(o.maxActiveHalts === undefined ? {} : { maxActiveHalts: o.maxActiveHalts }),
      ...(o.maxHaltsPerAlert === undefined ? {} : { maxHaltsPerAlert: o.maxHaltsPerAlert }),
      ...(o.maxWorkers === undefined ? {} : { maxWorkers: o.maxWorkers }),
    });
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
    const ackParts = {
      follower: this.#follower,
      fleet: this.#fleet,
      claims: this.#claims,
      limits: this.limits,
      store: this.#store,
      requireVouching,
      signingKey: o.signingKey,
    };
    // KS-6.7.4 an acknowledgement stream's body ends before Node's request timeout would cut it.
    const ackStreamEndAfterMs = Math.max(1000, Math.floor(limits.requestTimeoutMs / 2));
    // One way to mount routes: the core routes, OFREP, the caller's, then the release gate's.
    this.router.add(
      ...healthRoutes({
        vouch: () => this.vouch(),
        head: () => this.#follower.state.seq,
        storeKind: this.#store.kind,
        subscribers: () => this.#hub.size,
      }),
      ...flipRoutes({
        follower: this.#follower,
        fleet: this.#fleet,
        limits: this.limits,
        store: this.#store,
        releaseGate: this.#releaseGate,
        roleOf: (actor) => (auth === 'none' ? Role.ADMIN : auth.roleOf(actor)),
        requireVouching,
        closed: () => this.#vouch.closed,
      }),
      ...logRoutes({ store: this.#store, requireVouching }),
      ...stateRoutes({ requireVouching, snapshot: () => this.#follower.state.toSnapshot() }),
      ...streamRoutes({
        follower: this.#follower,
        tracker: this.tracker,
        claims: this.#claims,
        limits: this.limits,
        streamLimits: this.#streamLimits,
        streamCredentials: this.#streamCredentials,
        sharedSnapshot: new SharedSnapshot(o.signingKey),
        hub: this.#hub,
        retryMs,
        maxBufferedBytes: maxBuffered,
        requireVouching,
        // KS-6.1.4 other replicas append to a shared log: a resume beyond this head waits for it.
        catchUpMs: isFleetChannelStore(o.store) ? STREAM_CATCH_UP_MS : 0,
      }),
      ...ackRoutes(ackParts),
      ackStreamRoute({
        accept: acceptAcks(ackParts),
        isCurrent: (who) =>
          auth === 'none' || typeof auth.isCurrent !== 'function' || auth.isCurrent(who),
        maxLineBytes: this.#maxBodyBytes,
        endAfterMs: () => ackStreamEndAfterMs,
      }),
      ...workersRoutes({ fleet: this.#fleet, head: () => this.#follower.state.seq }),
      ...(o.ofrep === false ? [] : ofrepRoutes({ view: this, maxBodyBytes: this.#maxBodyBytes })),
      ...(o.routes ?? []),
      ...(o.releaseGate === undefined
        ? []
        : releaseRoutes(o.releaseGate, () => this.#fleet.workers())),
    );
    // KS-17.8.1: Node checks request heads and bodies against their deadlines every second.
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      void this.#dispatch(req, res);
    };
    if (o.signingKey !== undefined && typeof o.signingKey?.sign !== 'function') {
      throw new InvalidOptionError('signingKey', 'a SigningKey', o.signingKey);
    }
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

  fleetStatus(seq: number): FlipFleetStatus | undefined {
    return this.#fleet.status(seq);
  }

  workers(): WorkerInfo[] {
    return this.#fleet.workers();
  }

  async start(): Promise<void> {
    this.#vouch.start();
    await this.#store.open();
    const logId = await this.#store.logId();
    // KS-10.5.2 a release file that cannot be read or is locked fails the start; KS-8.9 on a
    // store the replicas share, the verdicts live there.
    await this.#releaseGate?.open(
      this.#shareReleases && isReleaseLogStore(this.#store) ? this.#store : undefined,
    );
    await this.#follower.start(logId);
    this.tracker.setHead(this.#follower.state.seq);
    // Issue 19: the first flip must not compile the flip path on its way (exerciseFlipRoute).
    await this.#keepFlipRouteWarm();
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
    await this.#fleet.close();
    this.#unwatchTokens?.();
    this.#follower.close();
    this.#hub.closeAll();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /** Registers with the other replicas of a shared store; a replica that cannot, does not start. */
  async #joinFleet(): Promise<void> {
    const fleet = this.#fleet.shared;
    if (fleet === undefined || !isFleetChannelStore(this.#store)) return;
    fleet.selfUrl = this.url;
    try {
      this.#fleet.attach(
        await this.#store.openFleetChannel({
          replicaId: fleet.selfId,
          url: this.url,
          head: this.#follower.state.seq,
          beatMs: this.#replicaBeatMs,
          logger: { warn: (m) => this.#log.warn(m) },
          onEvent: (e) => {
            fleet.onEvent(e);
            // A remote acknowledgement, a barrier or a heartbeat may complete a waited flip.
            this.#fleet.wake();
          },
        }),
      );
    } catch (err) {
      this.#follower.close();
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
      throw err;
    }
  }

  /** KS-17.6.1: streams opened with a token that was removed, changed or expired end. */
  #endRevokedStreams(): void {
    const auth = this.#auth;
    if (auth === 'none' || typeof auth.isCurrent !== 'function') return;
    const ended = this.#streamCredentials.sweep((p) => auth.isCurrent(p));
    if (ended.length > 0)
      this.#log.warn(`ended the streams of revoked or expired tokens: ${ended.join(', ')}`);
  }

  /**
   * Runs the flip route's code on private objects (exerciseFlipRoute) at start and then at most
   * every {@link KEEP_WARM_EVERY_MS} from the heartbeat: V8 flushes the bytecode of functions left
   * unused across garbage collections, and a control plane may idle for weeks before the flip
   * that matters. A failure there touches nothing real: it is logged, never thrown.
   */
  async #keepFlipRouteWarm(): Promise<void> {
    const now = this.#clock.now();
    if (now - this.#warmedAt < KEEP_WARM_EVERY_MS) return;
    this.#warmedAt = now;
    try {
      await exerciseFlipRoute();
    } catch (err) {
      this.#log.warn(`warming the flip route failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  #beat(): void {
    this.#endRevokedStreams();
    // KS-12.5.2: while not vouching, no heartbeat renews anything and open streams end.
    if (!this.#vouch.beat()) return;
    void this.#keepFlipRouteWarm();
    if (this.#hub.size === 0) return;
    // KS-2.4.9 while a halt streamed early is not durable, a heartbeat would show workers that
    // applied it a head behind theirs (a log moved backwards, KS-6.4.2): skip this one.
    if (this.#follower.earlyHead !== undefined) return;
    const { seq, hash } = this.#follower.state;
    const beat: HeartbeatData = {
      head: seq,
      at: apiTime(this.#now()),
      logId: this.#follower.logId,
      hash,
    };
    this.#hub.broadcast(encodeEvent(StreamEvent.HEARTBEAT, beat));
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      // A target that is not a URL (`//[`) or not in normal form (`/v1/../v1/flips`, both found
      // by the KS-13.4 fuzz suite) is the client's error: 400 before any route. KS-5.1.13
      // KS-17.9.2: a request that does not name this control plane is answered before anything.
      this.#guard.checkHost(req);
      const verdict = parseRequestTarget(req.url);
      if (!verdict.ok) throw new HttpError(400, ErrorCode.INVALID_INPUT, verdict.reason);
      const target = verdict.target;
      const m = this.router.match(req.method ?? 'GET', target.pathname);
      if (m.kind === 'not-found') {
        throw new HttpError(404, ErrorCode.NOT_FOUND, `no route ${target.pathname}`);
      }
      if (m.kind === 'method-not-allowed') {
        throw new HttpError(
          405,
          ErrorCode.METHOD_NOT_ALLOWED,
          `${req.method} is not allowed on ${target.pathname}`,
          {
            headers: { allow: m.allow.join(', ') },
          },
        );
      }
      let principal: Principal | undefined;
      if (m.route.auth !== 'public') {
        const who =
          this.#auth === 'none'
            ? ANONYMOUS
            : // Remembered per keep-alive connection until the token set changes (KS-17.3.1);
              // a first-seen hashed token is checked on the thread pool, never on this loop.
              typeof this.#auth.authenticateOnAsync === 'function'
              ? this.#auth.authenticateOnAsync(req.socket, req.headers.authorization)
              : this.#auth.authenticate(req.headers.authorization);
        principal = who instanceof Promise ? await who : who;
      }
      // KS-17.9.2: state-changing requests carry JSON (no cross-site form or simple fetch).
      this.#guard.checkContentType(req);
      const maxBody = this.#maxBodyBytes;
      await m.route.handle(
        new RequestContext(req, res, target, m.params, principal, () => readJsonBody(req, maxBody)),
      );
    } catch (err) {
      const { status, body, headers } = toHttpError(err);
      if (status === 401) headers['www-authenticate'] = 'Bearer realm="killswitch"';
      if (status >= 500)
        this.#log.error(`${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
      if (res.headersSent) res.destroy();
      else sendJson(res, status, body, headers);
    }
  }
}

/**
 * What a route handler gets (see {@link RouteContext}): a class, so `url` is a getter on its
 * prototype; an object literal with an accessor is built by the runtime on every request.
 */
class RequestContext implements RouteContext {
  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly target: RequestTarget,
    readonly params: Readonly<Record<string, string>>,
    readonly principal: Principal | undefined,
    readonly body: () => Promise<unknown>,
  ) {}

  get url(): URL {
    return this.target.url;
  }
}
