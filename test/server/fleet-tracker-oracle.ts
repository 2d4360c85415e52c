/**
 * The fleet tracker as it was before its flips were stored as columns (one map entry and one
 * object per worker and flip): kept as the reference the compact tracker is checked against
 * (fleet-tracker-differential.test.ts). Test code only.
 */
import { InvalidOptionError } from '../../src/errors.js';
import { apiTime } from '../../src/protocol/answers.js';
import type {
  AckedWorker,
  FleetTrackerOptions,
  FlipFleetStatus,
  Laggard,
  WorkerInfo,
} from '../../src/server/fleet-tracker.js';

/** An acknowledgement with its time in ms (made an ISO label when answered, KS-5.1.15). */
type AckedMs = Omit<AckedWorker, 'at'> & { at: number };

interface Worker {
  readonly id: string;
  release: string | undefined;
  connections: number;
  lastAckSeq: number | null;
  lastAckAt: number | null;
  lastSeenAt: number;
}

interface Pending {
  readonly release: string | undefined;
  readonly lastAckSeq: number | null;
  readonly deadline: number;
}

interface TrackedFlip {
  readonly seq: number;
  readonly appendedAt: number;
  readonly pending: Map<string, Pending>;
  readonly acked: Map<string, AckedMs>;
  readonly alreadyStale: { readonly workerId: string; readonly release?: string }[];
  /** The latest pending deadline. */
  lastDeadline: number;
}

/**
 * Who has applied which flip, and when each stop was complete. Pure: no timers, no I/O; time
 * comes from the injected clock, so tests step it by hand.
 *
 * The rule (KS-6.2.4): worker `w` counts as stopped for flip `s` at the receive time of its
 * first ack with `seq >= s`, or at (receive time of its last ack before `s` was appended) +
 * `staleAfterMs` + `leaseMarginMs`, whichever is first; a worker whose lease had already run out
 * when `s` was appended counts as stopped at once. A flip is complete when every worker counts as
 * stopped (KS-6.2.5).
 *
 * The head the ack answer carries is the tracker's head, which moves in the same step that
 * records a flip's append time: an ack answered after `s` was recorded tells the worker it is
 * behind (so it does not extend its lease), and an ack received before counts as "before `s`".
 *
 * @example
 * ```ts
 * const t = new FleetTracker({ now: () => clock });
 * t.ack({ workerId: 'w1', seq: 0 });
 * t.flipAppended(1);
 * t.status(1)?.complete; // false until w1 acks 1 or its lease runs out
 * ```
 */
export class OracleFleetTracker {
  readonly staleAfterMs: number;
  readonly leaseMarginMs: number;
  readonly #forgetAfterMs: number;
  readonly #maxTracked: number;
  readonly #now: () => number;
  readonly #workers = new Map<string, Worker>();
  /** Recent flips, oldest first (Map keeps insertion order). */
  readonly #flips = new Map<number, TrackedFlip>();
  /** Flips with workers still pending. */
  readonly #open = new Set<TrackedFlip>();
  #head = 0;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: FleetTrackerOptions = {}) {
    this.staleAfterMs = positiveInt('staleAfterMs', options.staleAfterMs ?? 3000);
    this.leaseMarginMs = nonNegativeInt('leaseMarginMs', options.leaseMarginMs ?? 100);
    this.#forgetAfterMs = positiveInt('forgetAfterMs', options.forgetAfterMs ?? 600_000);
    this.#maxTracked = positiveInt('maxTrackedFlips', options.maxTrackedFlips ?? 1000);
    const clock = options.clock;
    this.#now = clock ? () => clock.wallNow() : Date.now;
  }

  /** The last seq the tracker knows of. */
  get head(): number {
    return this.#head;
  }

  /** Sets the head on start (records before it are not tracked). */
  setHead(seq: number): void {
    if (seq > this.#head) this.#head = seq;
  }

  /** A worker opened a stream. Returns the function that closes it. */
  connect(workerId: string, release?: string): () => void {
    const w = this.#worker(workerId, release);
    w.connections++;
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      w.connections--;
      w.lastSeenAt = this.#now();
    };
  }

  /**
   * Records an acknowledgement (KS-6.2) and returns the answer's fields.
   *
   * @param ack.seq - the highest seq the worker has applied
   */
  ack(ack: {
    readonly workerId: string;
    readonly release?: string | undefined;
    readonly seq: number;
  }): {
    head: number;
    serverTime: string;
    staleAfterMs: number;
  } {
    const now = this.#now();
    const w = this.#worker(ack.workerId, ack.release);
    w.lastAckSeq = ack.seq;
    w.lastAckAt = now;
    w.lastSeenAt = now;
    for (const f of this.#open) {
      if (now >= f.lastDeadline) {
        // Every pending lease has run out: the answer cannot change any more.
        this.#open.delete(f);
        continue;
      }
      if (ack.seq < f.seq) continue;
      const p = f.pending.get(ack.workerId);
      // An ack after the lease ran out changes nothing: the worker already counted as stopped
      // at its lease expiry, and stays listed as a laggard whose lease expired.
      if (p === undefined || now >= p.deadline) continue;
      f.pending.delete(ack.workerId);
      f.acked.set(ack.workerId, acked(ack.workerId, w.release, now, f.appendedAt));
      if (f.pending.size === 0) this.#open.delete(f);
    }
    this.#prune(now);
    return { head: this.#head, serverTime: apiTime(now), staleAfterMs: this.staleAfterMs };
  }

  /**
   * A flip was appended (the server saw it committed). Snapshots which workers hold a lease and
   * until when. Seqs at or below the head are ignored.
   */
  flipAppended(seq: number): void {
    if (seq <= this.#head) return;
    this.#head = seq;
    const now = this.#now();
    const f: TrackedFlip = {
      seq,
      appendedAt: now,
      pending: new Map(),
      acked: new Map(),
      alreadyStale: [],
      lastDeadline: now,
    };
    for (const w of this.#workers.values()) {
      const deadline =
        w.lastAckAt === null ? null : w.lastAckAt + this.staleAfterMs + this.leaseMarginMs;
      if (w.lastAckSeq !== null && w.lastAckSeq >= seq) {
        // Acknowledged through another replica before this one saw the record.
        f.acked.set(w.id, acked(w.id, w.release, now, now));
      } else if (deadline !== null && deadline > now) {
        f.pending.set(w.id, { release: w.release, lastAckSeq: w.lastAckSeq, deadline });
        f.lastDeadline = Math.max(f.lastDeadline, deadline);
      } else if (w.connections > 0) {
        f.alreadyStale.push(
          w.release === undefined ? { workerId: w.id } : { workerId: w.id, release: w.release },
        );
      }
    }
    this.#flips.set(seq, f);
    if (f.pending.size > 0) this.#open.add(f);
    while (this.#flips.size > this.#maxTracked) {
      const oldest = this.#flips.values().next().value as TrackedFlip;
      this.#flips.delete(oldest.seq);
      this.#open.delete(oldest);
    }
  }

  /** The fleet's answer for a flip at this moment, or undefined when it is not tracked. */
  status(seq: number): FlipFleetStatus | undefined {
    const f = this.#flips.get(seq);
    if (f === undefined) return undefined;
    const now = this.#now();
    const laggards: Laggard[] = [];
    let stoppedAt = f.appendedAt;
    let complete = true;
    for (const [workerId, p] of f.pending) {
      const expired = p.deadline <= now;
      laggards.push({
        workerId,
        ...(p.release === undefined ? {} : { release: p.release }),
        lastAckSeq: p.lastAckSeq,
        leaseExpiresAt: apiTime(p.deadline),
        leaseExpired: expired,
      });
      if (expired) stoppedAt = Math.max(stoppedAt, p.deadline);
      else complete = false;
    }
    const acknowledged = [...f.acked.values()].sort(
      (a, b) => a.at - b.at || cmp(a.workerId, b.workerId),
    );
    for (const a of acknowledged) stoppedAt = Math.max(stoppedAt, a.at);
    laggards.sort((a, b) => cmp(a.workerId, b.workerId));
    return {
      seq: f.seq,
      appendedAt: apiTime(f.appendedAt),
      // The oracle models positive acknowledgements only (the differential sends no KS-6.5 nacks).
      unenforced: [],
      applied: acknowledged.length,
      acknowledged: acknowledged.map((a): AckedWorker => ({ ...a, at: apiTime(a.at) })),
      laggards,
      alreadyStale: [...f.alreadyStale],
      complete,
      completeAt: complete ? apiTime(stoppedAt) : null,
      completeAfterMs: complete ? stoppedAt - f.appendedAt : null,
    };
  }

  /**
   * The earliest time a still-pending worker's lease runs out for this flip (when to look again),
   * or undefined when nothing is pending.
   */
  nextDeadline(seq: number): number | undefined {
    const f = this.#flips.get(seq);
    if (f === undefined) return undefined;
    const now = this.#now();
    let next: number | undefined;
    for (const p of f.pending.values()) {
      if (p.deadline > now && (next === undefined || p.deadline < next)) next = p.deadline;
    }
    return next;
  }

  /** Every known worker, by id. */
  workers(): WorkerInfo[] {
    const now = this.#now();
    this.#prune(now);
    return [...this.#workers.values()]
      .sort((a, b) => cmp(a.id, b.id))
      .map((w) => {
        const leaseExpiresAt =
          w.lastAckAt === null ? null : w.lastAckAt + this.staleAfterMs + this.leaseMarginMs;
        return {
          id: w.id,
          ...(w.release === undefined ? {} : { release: w.release }),
          connected: w.connections > 0,
          connections: w.connections,
          lastAckSeq: w.lastAckSeq,
          lastAckAt: w.lastAckAt === null ? null : apiTime(w.lastAckAt),
          lag: w.lastAckSeq === null ? null : Math.max(0, this.#head - w.lastAckSeq),
          leaseExpiresAt: leaseExpiresAt === null ? null : apiTime(leaseExpiresAt),
          stale: leaseExpiresAt === null || leaseExpiresAt <= now,
        };
      });
  }

  #worker(id: string, release: string | undefined): Worker {
    let w = this.#workers.get(id);
    if (w === undefined) {
      w = {
        id,
        release,
        connections: 0,
        lastAckSeq: null,
        lastAckAt: null,
        lastSeenAt: this.#now(),
      };
      this.#workers.set(id, w);
    } else if (release !== undefined) {
      w.release = release;
    }
    return w;
  }

  #prune(now: number): void {
    for (const [id, w] of this.#workers) {
      if (w.connections === 0 && now - w.lastSeenAt > this.#forgetAfterMs) this.#workers.delete(id);
    }
  }
}

function acked(
  workerId: string,
  release: string | undefined,
  at: number,
  appendedAt: number,
): AckedMs {
  return {
    workerId,
    ...(release === undefined ? {} : { release }),
    at,
    latencyMs: Math.max(0, at - appendedAt),
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new InvalidOptionError(name, 'a positive integer', v);
  return v;
}

function nonNegativeInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0)
    throw new InvalidOptionError(name, 'a non-negative integer', v);
  return v;
}
