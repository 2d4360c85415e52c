import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { authorize, Role, type Principal } from '../auth/principal.js';
import { InvalidOptionError } from '../errors.js';
import type { FlipRecord } from '../model/flip-record.js';
import type { KillSnapshot } from '../model/kill-state.js';
import { LEVELS, levelOf } from '../model/selector.js';
import type { FlipFleetStatus, WorkerInfo } from '../server/fleet-tracker.js';
import type { Route, RouteContext, Router } from '../server/router.js';
import type { FlipLogStore } from '../store/flip-log-store.js';

/** What the metrics read from a running control plane (`ControlPlane` has all of it). */
export interface MetricsSource {
  snapshot(): KillSnapshot;
  stats(): { subscribers: number; dropped: number; head: number };
  /** Every worker: the whole fleet, across replicas, when the store shares it (KS-6.6.6). */
  workers(): WorkerInfo[];
  /** A flip's fleet answer: the whole fleet's when shared (KS-6.6.2); undefined when untracked. */
  fleetStatus(seq: number): FlipFleetStatus | undefined;
}

/** Options of {@link ControlPlaneMetrics}. */
export interface ControlPlaneMetricsOptions {
  /** The running control plane. */
  readonly controlPlane: MetricsSource;
  /** Its flip log: the flip counters start from the log's contents and follow its appends. */
  readonly store: FlipLogStore;
  /**
   * Where the metrics are registered. Never prom-client's global registry by default, so two
   * control planes in one process (tests, replicas) never share or collide. @default a new Registry
   */
  readonly registry?: Registry;
  /** Most recent flips whose acknowledgements are still being collected. @default 1000 */
  readonly maxWatchedFlips?: number;
}

/** Acknowledgement latencies: a loopback fleet acks in ms, a remote one in tens of ms, a sick one in s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const ANONYMOUS_ADMIN: Principal = {
  name: 'anonymous',
  role: Role.ADMIN,
  scopes: [],
  resume: true,
};

/**
 * The control plane's Prometheus metrics (KS-11.2), on a registry of its own:
 *
 * | metric | type | labels |
 * |---|---|---|
 * | `killswitch_flips_total` | counter | `level`, `action` |
 * | `killswitch_active_halts` | gauge | `level` |
 * | `killswitch_head_seq` | gauge | |
 * | `killswitch_stream_subscribers` | gauge | |
 * | `killswitch_stream_dropped_subscribers` | gauge (since start) | |
 * | `killswitch_ack_latency_seconds` | histogram | |
 * | `killswitch_stop_complete_seconds` | histogram | |
 * | `killswitch_workers` | gauge | `state` = `fresh` or `stale` |
 * | `killswitch_workers_stale` | gauge | |
 * | `killswitch_worker_lag_max` | gauge | |
 *
 * Gauges are read from the control plane when scraped; acknowledgement latencies are collected
 * from the fleet's answer per flip, each (flip, worker) once. The worker gauges, latencies and
 * stop-complete times are the whole fleet's: with replicas sharing the fleet (PostgreSQL) each
 * replica reports every worker on every replica, as its flip answers do (KS-11.2.4), so a
 * dashboard aggregates them across replicas with `max`, not `sum`.
 *
 * @example
 * ```ts
 * const metrics = await ControlPlaneMetrics.start({ controlPlane: cp, store });
 * cp.router.add(metrics.route());
 * ```
 */
export class ControlPlaneMetrics {
  /** The registry holding these metrics. */
  readonly registry: Registry;
  readonly #cp: MetricsSource;
  readonly #store: FlipLogStore;
  readonly #maxWatched: number;
  readonly #flips: Counter<'level' | 'action'>;
  readonly #ackLatency: Histogram;
  readonly #stopComplete: Histogram;
  /** seq -> workers whose ack was observed already. */
  readonly #watched = new Map<number, Set<string>>();
  #counted = 0;
  #unsubscribe: (() => void) | undefined;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: ControlPlaneMetricsOptions) {
    const cp = options.controlPlane;
    if (
      cp === undefined ||
      typeof cp.snapshot !== 'function' ||
      typeof cp.workers !== 'function' ||
      typeof cp.fleetStatus !== 'function'
    ) {
      throw new InvalidOptionError('controlPlane', 'a running control plane', cp);
    }
    if (options.store === undefined || typeof options.store.subscribe !== 'function') {
      throw new InvalidOptionError('store', 'a FlipLogStore', options.store);
    }
    const max = options.maxWatchedFlips ?? 1000;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new InvalidOptionError('maxWatchedFlips', 'a positive integer', max);
    }
    this.#cp = cp;
    this.#store = options.store;
    this.#maxWatched = max;
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];

    this.#flips = new Counter({
      name: 'killswitch_flips_total',
      help: 'Flips in the log, by level and action.',
      labelNames: ['level', 'action'],
      registers,
    });
    for (const level of LEVELS) {
      for (const action of ['halt', 'resume']) this.#flips.inc({ level, action }, 0);
    }
    new Gauge({
      name: 'killswitch_active_halts',
      help: 'Active halts, by level.',
      labelNames: ['level'],
      registers,
      collect(this: Gauge<'level'>) {
        const counts = new Map<string, number>(LEVELS.map((l) => [l, 0]));
        for (const h of cp.snapshot().halts) {
          const l = levelOf(h.selector);
          counts.set(l, (counts.get(l) ?? 0) + 1);
        }
        for (const [level, n] of counts) this.set({ level }, n);
      },
    });
    new Gauge({
      name: 'killswitch_head_seq',
      help: 'Seq of the last flip the control plane applied.',
      registers,
      collect(this: Gauge) {
        this.set(cp.stats().head);
      },
    });
    new Gauge({
      name: 'killswitch_stream_subscribers',
      help: 'Open SSE stream subscribers (workers and consoles).',
      registers,
      collect(this: Gauge) {
        this.set(cp.stats().subscribers);
      },
    });
    new Gauge({
      name: 'killswitch_stream_dropped_subscribers',
      help: 'Stream subscribers dropped for reading too slowly, since start.',
      registers,
      collect(this: Gauge) {
        this.set(cp.stats().dropped);
      },
    });
    this.#ackLatency = new Histogram({
      name: 'killswitch_ack_latency_seconds',
      help: 'Time from a flip being appended to each worker (of the whole fleet) acknowledging it.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#stopComplete = new Histogram({
      name: 'killswitch_stop_complete_seconds',
      help: 'Time from a flip being appended to its stop being complete (every worker of the whole fleet acknowledged or its lease ran out).',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    // KS-11.2.4 the whole fleet, across replicas when shared.
    const workers = (): WorkerInfo[] => cp.workers();
    new Gauge({
      name: 'killswitch_workers',
      help: 'Known workers (the whole fleet, across replicas when shared), by state (stale: no lease; it fails closed on its own).',
      labelNames: ['state'],
      registers,
      collect(this: Gauge<'state'>) {
        const ws = workers();
        const stale = ws.filter((w) => w.stale).length;
        this.set({ state: 'fresh' }, ws.length - stale);
        this.set({ state: 'stale' }, stale);
      },
    });
    new Gauge({
      name: 'killswitch_workers_stale',
      help: 'Known workers (the whole fleet) without a lease (never acknowledged, or the lease ran out).',
      registers,
      collect(this: Gauge) {
        this.set(workers().filter((w) => w.stale).length);
      },
    });
    new Gauge({
      name: 'killswitch_worker_lag_max',
      help: 'Largest number of flips a connected worker (of the whole fleet) is behind the head.',
      registers,
      collect(this: Gauge) {
        let max = 0;
        for (const w of workers()) if (w.connected && w.lag !== null) max = Math.max(max, w.lag);
        this.set(max);
      },
    });
  }

  /**
   * Creates the metrics and starts following the store.
   *
   * @throws {InvalidOptionError} `KS_INVALID_OPTION`
   */
  static async start(options: ControlPlaneMetricsOptions): Promise<ControlPlaneMetrics> {
    const m = new ControlPlaneMetrics(options);
    await m.#follow();
    return m;
  }

  async #follow(): Promise<void> {
    // Subscribe first, then read: a record appended in between is seen by both and counted once.
    this.#unsubscribe = this.#store.subscribe((r) => this.#count(r, true));
    for (const r of await this.#store.read({ after: this.#counted })) this.#count(r, false);
  }

  #count(r: FlipRecord, live: boolean): void {
    if (r.seq <= this.#counted) return;
    this.#counted = r.seq;
    this.#flips.inc({ level: levelOf(r.selector), action: r.action });
    if (live) {
      this.#watched.set(r.seq, new Set());
      while (this.#watched.size > this.#maxWatched) {
        const oldest = this.#watched.keys().next().value as number;
        this.#watched.delete(oldest);
      }
    }
  }

  /**
   * Moves new acknowledgements from the fleet's answer (every replica's, when shared) into the
   * histograms. Called on every scrape.
   */
  collectAcks(): void {
    for (const [seq, seen] of this.#watched) {
      const st = this.#cp.fleetStatus(seq);
      if (st === undefined) {
        this.#watched.delete(seq);
        continue;
      }
      for (const a of st.acknowledged) {
        if (seen.has(a.workerId)) continue;
        seen.add(a.workerId);
        this.#ackLatency.observe(a.latencyMs / 1000);
      }
      // Once complete (the whole fleet, KS-6.6.2), no later ack counts for this flip.
      if (st.complete) {
        if (st.completeAfterMs !== null) this.#stopComplete.observe(st.completeAfterMs / 1000);
        this.#watched.delete(seq);
      }
    }
  }

  /** The Prometheus text exposition of every metric in the registry. */
  async text(): Promise<string> {
    this.collectAcks();
    return this.registry.metrics();
  }

  /**
   * `GET /metrics`: any valid token (viewer at least, KS-11.2.1). The metrics name scopes and
   * workers, so they are not public.
   */
  route(): Route {
    return {
      method: 'GET',
      path: '/metrics',
      auth: 'authenticated',
      handle: async ({ res, principal }: RouteContext) => {
        authorize(principal ?? ANONYMOUS_ADMIN, { kind: 'read' });
        const body = await this.text();
        res.writeHead(200, {
          'content-type': this.registry.contentType,
          'content-length': Buffer.byteLength(body),
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        });
        res.end(body);
      },
    };
  }

  /** Stops following the store (the registry keeps its last values). */
  stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }
}

/**
 * Starts {@link ControlPlaneMetrics} and mounts `GET /metrics` on a running control plane.
 *
 * @returns the metrics (call `stop()` before closing the store)
 * @example
 * ```ts
 * const metrics = await mountMetrics(cp, store);
 * ```
 */
export async function mountMetrics(
  cp: MetricsSource & { readonly router: Router },
  store: FlipLogStore,
  options: Omit<ControlPlaneMetricsOptions, 'controlPlane' | 'store'> = {},
): Promise<ControlPlaneMetrics> {
  const m = await ControlPlaneMetrics.start({ ...options, controlPlane: cp, store });
  cp.router.add(m.route());
  return m;
}
