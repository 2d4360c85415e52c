import type { Clock } from '../internal/clock.js';
import { MAX_WAIT_MS } from '../protocol/flip-request.js';
import type { ReplicaInfo } from '../protocol/answers.js';
import type { FleetChannel, SharedAck } from '../store/fleet-channel.js';
import type { LogHead } from '../store/flip-log-store.js';
import type { FleetTracker, FlipFleetStatus, WorkerInfo } from './fleet-tracker.js';
import type { SharedFleet } from './shared-fleet.js';

/** Options of {@link FleetView}. */
export interface FleetViewOptions {
  /** This replica's own workers. */
  readonly tracker: FleetTracker;
  /** The other replicas' workers, when the store shares the fleet (KS-6.6). */
  readonly shared?: SharedFleet;
  /** The monotonic clock the tracker and waits run on (KS-6.2.7). */
  readonly clock: Clock;
}

/**
 * The fleet as the control plane answers it: this replica's tracker, merged with every other
 * replica's workers when the store shares the fleet (KS-6.6), and the waits of flips posted with
 * `wait` (woken by every acknowledgement, local or remote).
 */
export class FleetView {
  readonly tracker: FleetTracker;
  readonly #shared: SharedFleet | undefined;
  readonly #clock: Clock;
  readonly #waiters = new Set<() => void>();
  #channel: FleetChannel | undefined;

  constructor(o: FleetViewOptions) {
    this.tracker = o.tracker;
    this.#shared = o.shared;
    this.#clock = o.clock;
  }

  /** The shared fleet, when the store shares it. */
  get shared(): SharedFleet | undefined {
    return this.#shared;
  }

  /** The store's fleet channel once joined (KS-6.6), or undefined. */
  get channel(): FleetChannel | undefined {
    return this.#channel;
  }

  /** Sets the fleet channel once this replica joined the others. */
  attach(channel: FleetChannel): void {
    this.#channel = channel;
  }

  /** A flip's answer now; undefined when the flip is not tracked. */
  status(seq: number): FlipFleetStatus | undefined {
    const local = this.tracker.status(seq);
    return this.#shared === undefined ? local : this.#shared.status(seq, local);
  }

  /**
   * `JSON.stringify(this.status(seq))` when this replica's tracker can write it directly (a fleet
   * not shared, no negative acknowledgement or match report on the flip); undefined otherwise.
   */
  statusJson(seq: number): string | undefined {
    return this.#shared === undefined ? this.tracker.statusJson(seq) : undefined;
  }

  /** Every worker this replica knows of (the whole fleet when shared, KS-6.6.6). */
  workers(): WorkerInfo[] {
    const local = this.tracker.workers();
    return this.#shared === undefined ? local : this.#shared.workers(local, this.tracker.head);
  }

  /** The replicas of a shared fleet, or undefined when the fleet is not shared. */
  replicas(selfHead: number): ReplicaInfo[] | undefined {
    return this.#shared?.replicas(selfHead);
  }

  /**
   * A flip was applied at `appendedAt` (the tracker's monotonic scale): its fleet is tracked from
   * now, and a shared fleet's heartbeat announces it (KS-6.6.4, this flip's barrier).
   */
  flipAppended(seq: number, appendedAt: number): void {
    this.tracker.flipAppended(seq, appendedAt);
    if (this.#shared !== undefined) {
      this.#shared.flipAppended(seq, appendedAt);
      this.#channel?.publishHead(seq);
    }
  }

  /**
   * KS-6.6.3 shares acknowledgements with the other replicas through the store; resolves with the
   * log's head at that commit. Undefined when the fleet is not shared.
   *
   * @throws what the channel's `renew` throws (nothing was shared)
   */
  async share(acks: readonly SharedAck[]): Promise<LogHead | undefined> {
    return this.#channel === undefined ? undefined : this.#channel.renew(acks);
  }

  /** Something may have completed a waited flip (an ack, a remote event, a divergence). */
  wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Waits up to `waitMs` (at most MAX_WAIT_MS) until the flip at `seq` is complete, or `stop()`
   * says to give up (the control plane closing, the caller hanging up); the answer then. Deadlines
   * on the monotonic clock (KS-6.2.7).
   */
  async wait(seq: number, waitMs: number, stop: () => boolean): Promise<FlipFleetStatus | null> {
    const end = this.#clock.now() + Math.min(waitMs, MAX_WAIT_MS);
    for (;;) {
      const st = this.status(seq);
      if (st === undefined) return null;
      const now = this.#clock.now();
      if (st.complete || now >= end || stop()) return st;
      const local = this.tracker.nextDeadline(seq) ?? end;
      const remote = this.#shared?.nextDeadline(seq) ?? end;
      const next = Math.min(local, remote);
      const delay = Math.max(1, Math.min(end, next) - now);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, delay);
        this.#waiters.add(done);
      });
    }
  }

  /** Closes the channel and answers every wait. */
  async close(): Promise<void> {
    await this.#channel?.close();
    this.wake();
  }
}
