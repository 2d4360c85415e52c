import { systemClock, type Clock } from '../internal/clock.js';
import type { GatewayReport, MatchReport } from '../protocol/acks.js';
import {
  apiTime,
  type AckedWorker,
  type ApiTime,
  type FleetMatch,
  type FlipFleetStatus,
  type Laggard,
  type UnenforcedWorker,
  type WorkerInfo,
} from '../protocol/answers.js';
import { intOption } from '../internal/int-option.js';

export type { AckedWorker, FlipFleetStatus, Laggard, WorkerInfo } from '../protocol/answers.js';

/**
 * Options of {@link FleetTracker}. Leases and deadlines run on the injected clock's monotonic
 * reading; the times in its answers are wall-clock labels (ISO 8601, {@link ApiTime}). KS-6.2.7
 */
export interface FleetTrackerOptions {
  /** A worker's lease after each renewal. @default 3000 ms */
  readonly staleAfterMs?: number;
  /** Added to every lease the server computes, for clocks that tick at slightly different rates. @default 100 ms */
  readonly leaseMarginMs?: number;
  /** Forget a worker with no stream and no ack for this long. @default 600000 ms */
  readonly forgetAfterMs?: number;
  /** Keep the fleet answer of at most this many recent flips. @default 1000 */
  readonly maxTrackedFlips?: number;
  /** Clock: `now()` for leases and deadlines, `wallNow()` for labels only. @default systemClock */
  readonly clock?: Clock;
}

interface Worker {
  readonly id: string;
  /** Position in creation order, never reused: tracked flips find the worker by it. */
  readonly slot: number;
  release: string | undefined;
  connections: number;
  lastAckSeq: number | null;
  lastAckAt: number | null;
  lastSeenAt: number;
  /** A gateway's last report of its seams (KS-15.5.3) and when it came; absent for a worker. */
  gateway?: { readonly report: GatewayReport; readonly at: number };
  /**
   * The start of its entry in a flip's fleet answer, `{"workerId":…` and `,"release":…` when it
   * has one, as JSON.stringify writes them: written once per id and release, not per answer.
   */
  head: string;
}

/**
 * One flip's fleet answer, kept as parallel columns rather than an object per worker: a flip
 * tracked with a thousand workers costs about 55 bytes per worker instead of two map entries and
 * two objects (~130 bytes). Entry `i` is one worker that held a lease (or had acknowledged the
 * flip already) when the flip was appended; `slots` is ascending, so an ack finds its entry by
 * binary search.
 */
interface TrackedFlip {
  readonly seq: number;
  readonly appendedAt: number;
  readonly slots: Float64Array;
  readonly ids: string[];
  readonly releases: (string | undefined)[];
  /** The worker's entry start ({@link Worker.head}) for the id and release above. */
  readonly heads: string[];
  /** The worker's last acknowledged seq at the append (NaN: none). */
  readonly lastAckSeq: Float64Array;
  /** When its lease runs out for this flip (NaN: acknowledged before the append). */
  readonly deadline: Float64Array;
  /** When it acknowledged the flip (NaN: pending). */
  readonly ackAt: Float64Array;
  pending: number;
  readonly alreadyStale: { readonly workerId: string; readonly release?: string }[];
  /** The latest pending deadline. */
  readonly lastDeadline: number;
  /** The workers' match reports, summed (KS-16.4.2); created by the first report. */
  matched?: MatchSum;
  /**
   * KS-6.5 negative acknowledgements by worker id, created on the first one; `at` on the
   * monotonic scale (made a label when answered).
   */
  unenforced?: Map<string, Omit<UnenforcedWorker, 'at'> & { at: number }>;
}

/** Match reports of one flip: one per worker, summed. */
interface MatchSum {
  readonly reporters: Set<string>;
  inFlight: number;
  queued: number;
  recent: number;
  readonly similar: Set<string>;
}

/** Most near-miss values kept per flip. */
const MAX_SIMILAR_KEPT = 3;

/** Workers with no stream and no ack are looked for at most this often (an ack would otherwise scan the fleet). */
const PRUNE_EVERY_MS = 1000;

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
 * Cost: an ack is O(open flips x log workers); an append is O(workers) and keeps ~55 bytes per
 * worker for each of the last `maxTrackedFlips` flips. KS-13.7
 *
 * @example
 * ```ts
 * const t = new FleetTracker({ clock });
 * t.ack({ workerId: 'w1', seq: 0 });
 * t.flipAppended(1);
 * t.status(1)?.complete; // false until w1 acks 1 or its lease runs out
 * ```
 */
export class FleetTracker {
  readonly staleAfterMs: number;
  readonly leaseMarginMs: number;
  readonly #forgetAfterMs: number;
  readonly #maxTracked: number;
  readonly #now: () => number;
  /** Wall clock minus monotonic clock now: turns a monotonic reading into a wall-clock label. */
  readonly #wallOffset: () => number;
  readonly #workers = new Map<string, Worker>();
  /** Recent flips, oldest first (Map keeps insertion order). */
  readonly #flips = new Map<number, TrackedFlip>();
  /** Flips with workers still pending. */
  readonly #open = new Set<TrackedFlip>();
  /** Flips some worker said it cannot enforce (KS-6.5); a later positive ack withdraws it. */
  readonly #unenforced = new Set<TrackedFlip>();
  #head = 0;
  #nextSlot = 0;
  #lastPrune = -Infinity;
  /**
   * The entries of the last flip {@link FleetTracker.statusJson} answered, by worker id: a flip
   * appended to the same workers (the same slots) lists them in the same order, not sorted again.
   */
  #byId: { readonly slots: Float64Array; readonly order: Uint32Array } | undefined;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: FleetTrackerOptions = {}) {
    this.staleAfterMs = intOption('staleAfterMs', options.staleAfterMs ?? 3000, 1);
    this.leaseMarginMs = intOption('leaseMarginMs', options.leaseMarginMs ?? 100, 0);
    this.#forgetAfterMs = intOption('forgetAfterMs', options.forgetAfterMs ?? 600_000, 1);
    this.#maxTracked = intOption('maxTrackedFlips', options.maxTrackedFlips ?? 1000, 1);
    const clock = options.clock ?? systemClock;
    // KS-6.2.7 leases, deadlines and waits on the monotonic reading; wall time only as labels.
    this.#now = () => clock.now();
    this.#wallOffset = () => clock.wallNow() - clock.now();
  }

  /** The last seq the tracker knows of. */
  get head(): number {
    return this.#head;
  }

  /** Workers tracked now (connected, or seen within `forgetAfterMs`). */
  get size(): number {
    return this.#workers.size;
  }

  /** Streams the worker holds open here now (0 for an unknown worker). */
  connections(workerId: string): number {
    return this.#workers.get(workerId)?.connections ?? 0;
  }

  /** True when the tracker knows this worker id. */
  has(workerId: string): boolean {
    return this.#workers.has(workerId);
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
    readonly matched?: readonly MatchReport[] | undefined;
    readonly unenforced?: readonly { readonly seq: number; readonly reason: string }[] | undefined;
    readonly gateway?: GatewayReport | undefined;
  }): {
    head: number;
    serverTime: ApiTime;
    staleAfterMs: number;
  } {
    const now = this.#now();
    const w = this.#worker(ack.workerId, ack.release);
    w.lastAckSeq = ack.seq;
    w.lastAckAt = now;
    w.lastSeenAt = now;
    if (ack.gateway !== undefined) w.gateway = { report: ack.gateway, at: now };
    if (ack.unenforced !== undefined || this.#unenforced.size > 0) this.#nack(w, ack, now);
    for (const f of this.#open) {
      if (now >= f.lastDeadline) {
        // Every pending lease has run out: the answer cannot change any more.
        this.#open.delete(f);
        continue;
      }
      if (ack.seq < f.seq) continue;
      if (f.unenforced?.has(w.id) === true) continue; // KS-6.5.2 never counted stopped
      const i = indexOf(f.slots, w.slot);
      // An ack after the lease ran out changes nothing: the worker already counted as stopped
      // at its lease expiry, and stays listed as a laggard whose lease expired.
      if (i < 0 || !Number.isNaN(f.ackAt[i]!) || now >= f.deadline[i]!) continue;
      f.ackAt[i] = now;
      f.releases[i] = w.release;
      f.heads[i] = w.head;
      if (--f.pending === 0) this.#open.delete(f);
    }
    if (ack.matched !== undefined) this.#addMatches(ack.workerId, ack.matched);
    if (now - this.#lastPrune >= PRUNE_EVERY_MS) this.#prune(now);
    return {
      head: this.#head,
      serverTime: apiTime(now + this.#wallOffset()),
      staleAfterMs: this.staleAfterMs,
    };
  }

  /**
   * KS-6.5.2 records the negative acknowledgements of an ack, and withdraws earlier ones for flips
   * this ack covers without naming them again (the worker now enforces them).
   */
  #nack(
    w: Worker,
    ack: {
      readonly seq: number;
      readonly unenforced?:
        readonly { readonly seq: number; readonly reason: string }[] | undefined;
    },
    now: number,
  ): void {
    const named = new Map<number, string>();
    for (const u of ack.unenforced ?? []) named.set(u.seq, u.reason);
    for (const f of [...this.#unenforced]) {
      if (!f.unenforced?.has(w.id) || named.has(f.seq) || ack.seq < f.seq) continue;
      f.unenforced.delete(w.id);
      if (f.unenforced.size === 0) this.#unenforced.delete(f);
      // Enforced now: it counts as stopped from this acknowledgement on.
      const i = indexOf(f.slots, w.slot);
      if (i >= 0 && Number.isNaN(f.ackAt[i]!)) {
        f.ackAt[i] = now;
        if (--f.pending === 0) this.#open.delete(f);
      }
    }
    for (const [seq, reason] of named) {
      const f = this.#flips.get(seq);
      if (f === undefined) continue; // not tracked here (older than maxTrackedFlips)
      const i = indexOf(f.slots, w.slot);
      // Once a worker acknowledged the flip it counted as stopped then; a later refusal is
      // still listed, and the flip is no longer complete.
      if (i >= 0 && !Number.isNaN(f.ackAt[i]!) && !Number.isNaN(f.deadline[i]!)) {
        f.ackAt[i] = NaN;
        f.pending++;
      }
      f.unenforced ??= new Map();
      f.unenforced.set(w.id, {
        workerId: w.id,
        ...(w.release === undefined ? {} : { release: w.release }),
        reason,
        at: f.unenforced.get(w.id)?.at ?? now,
      });
      this.#unenforced.add(f);
    }
  }

  /**
   * A flip was appended (the server saw it committed). Snapshots which workers hold a lease and
   * until when. Seqs at or below the head are ignored.
   *
   * @param appendedAt - when the server saw it committed (default: now); the control plane
   *   takes the time before it writes the event to the streams and records it right after, so
   *   the bookkeeping does not delay the fan-out (no ack can be handled in between).
   */
  flipAppended(seq: number, appendedAt: number = this.#now()): void {
    if (seq <= this.#head) return;
    this.#head = seq;
    const now = appendedAt;
    let n = 0;
    let stale = 0;
    for (const w of this.#workers.values()) {
      const kind = classify(w, seq, now, this.staleAfterMs + this.leaseMarginMs);
      if (kind === ACKED || kind === PENDING) n++;
      else if (kind === STALE) stale++;
    }
    // No worker: the empty typed arrays are shared (a typed array of length 0 holds nothing and
    // takes no write), not five new ArrayBuffers per flip.
    const slots = n === 0 ? NO_NUMBERS : new Float64Array(n);
    const ids: string[] = new Array<string>(n);
    const releases: (string | undefined)[] = new Array<string | undefined>(n);
    const heads: string[] = new Array<string>(n);
    const lastAckSeq = n === 0 ? NO_NUMBERS : new Float64Array(n);
    const deadline = n === 0 ? NO_NUMBERS : new Float64Array(n);
    const ackAt = n === 0 ? NO_NUMBERS : new Float64Array(n);
    const alreadyStale: { workerId: string; release?: string }[] = new Array(stale);
    let i = 0;
    let s = 0;
    let pending = 0;
    let lastDeadline = now;
    for (const w of this.#workers.values()) {
      const kind = classify(w, seq, now, this.staleAfterMs + this.leaseMarginMs);
      if (kind === STALE) {
        alreadyStale[s++] =
          w.release === undefined ? { workerId: w.id } : { workerId: w.id, release: w.release };
        continue;
      }
      if (kind === IGNORED) continue;
      slots[i] = w.slot;
      ids[i] = w.id;
      releases[i] = w.release;
      heads[i] = w.head;
      lastAckSeq[i] = w.lastAckSeq ?? NaN;
      if (kind === ACKED) {
        // Acknowledged through another replica before this one saw the record.
        deadline[i] = NaN;
        ackAt[i] = now;
      } else {
        const d = w.lastAckAt! + this.staleAfterMs + this.leaseMarginMs;
        deadline[i] = d;
        ackAt[i] = NaN;
        pending++;
        if (d > lastDeadline) lastDeadline = d;
      }
      i++;
    }
    const f: TrackedFlip = {
      seq,
      appendedAt: now,
      slots,
      ids,
      releases,
      heads,
      lastAckSeq,
      deadline,
      ackAt,
      pending,
      alreadyStale,
      lastDeadline,
    };
    this.#flips.set(seq, f);
    if (pending > 0) this.#open.add(f);
    while (this.#flips.size > this.#maxTracked) {
      const oldest = this.#flips.values().next().value as TrackedFlip;
      this.#flips.delete(oldest.seq);
      this.#open.delete(oldest);
      this.#unenforced.delete(oldest);
    }
  }

  /** The fleet's answer for a flip at this moment, or undefined when it is not tracked. */
  status(seq: number): FlipFleetStatus | undefined {
    const f = this.#flips.get(seq);
    if (f === undefined) return undefined;
    const now = this.#now();
    // Computed on the monotonic scale; every time in the answer is a wall-clock label.
    const wall = this.#wallOffset();
    const laggards: Laggard[] = [];
    const acknowledged: AckedWorker[] = [];
    let stoppedAt = f.appendedAt;
    let complete = true;
    const unenforced = f.unenforced;
    for (let i = 0; i < f.ids.length; i++) {
      const workerId = f.ids[i]!;
      if (unenforced?.has(workerId) === true) continue; // KS-6.5.2 listed apart
      const release = f.releases[i];
      const at = f.ackAt[i]!;
      // Built without spreading `release` in: a fleet answer holds an entry per worker, and an
      // object spread per entry cost more than the rest of the entry.
      if (!Number.isNaN(at)) {
        const ackedAt = apiTime(at + wall);
        const latencyMs = Math.round(Math.max(0, at - f.appendedAt));
        acknowledged.push(
          release === undefined
            ? { workerId, at: ackedAt, latencyMs }
            : { workerId, release, at: ackedAt, latencyMs },
        );
        if (at > stoppedAt) stoppedAt = at;
        continue;
      }
      const deadline = f.deadline[i]!;
      const expired = deadline <= now;
      const last = f.lastAckSeq[i]!;
      const lastAck = Number.isNaN(last) ? null : last;
      const leaseExpiresAt = apiTime(deadline + wall);
      laggards.push(
        release === undefined
          ? { workerId, lastAckSeq: lastAck, leaseExpiresAt, leaseExpired: expired }
          : { workerId, release, lastAckSeq: lastAck, leaseExpiresAt, leaseExpired: expired },
      );
      if (expired) stoppedAt = Math.max(stoppedAt, deadline);
      else complete = false;
    }
    // ISO times of one width sort as the times do.
    acknowledged.sort((a, b) => cmp(a.at, b.at) || cmp(a.workerId, b.workerId));
    laggards.sort((a, b) => cmp(a.workerId, b.workerId));
    const nacks =
      unenforced === undefined
        ? []
        : [...unenforced.values()].map((u) => ({ ...u, at: apiTime(u.at + wall) }));
    nacks.sort((a, b) => cmp(a.workerId, b.workerId));
    if (nacks.length > 0) complete = false;
    return {
      seq: f.seq,
      appendedAt: apiTime(f.appendedAt + wall),
      applied: acknowledged.length,
      acknowledged,
      laggards,
      alreadyStale: [...f.alreadyStale],
      unenforced: nacks,
      complete,
      // Whole milliseconds (KS-5.1.15): the monotonic reading has fractions.
      completeAt: complete ? apiTime(stoppedAt + wall) : null,
      completeAfterMs: complete ? Math.round(stoppedAt - f.appendedAt) : null,
      ...(f.matched === undefined ? {} : { matched: fleetMatch(f.matched) }),
    };
  }

  /**
   * Exactly `JSON.stringify(this.status(seq))`, written from the flip's columns without an object
   * per worker: a flip's answer reports every worker, and building then serialising a thousand
   * entries was most of its cost. Undefined when the flip is not tracked, or carries negative
   * acknowledgements or match reports (rare: {@link FleetTracker.status} answers those).
   * test/server/fleet-tracker-differential.test.ts compares the two.
   */
  statusJson(seq: number): string | undefined {
    const f = this.#flips.get(seq);
    if (f === undefined || f.unenforced !== undefined || f.matched !== undefined) return undefined;
    const wall = this.#wallOffset();
    const n = f.ids.length;
    if (n === 0 && f.alreadyStale.length === 0) {
      // No worker held a lease: complete when appended (the answer of a fleet with no worker).
      const at = apiTime(f.appendedAt + wall);
      return `{"seq":${JSON.stringify(f.seq)},"appendedAt":"${at}","applied":0,"acknowledged":[],"laggards":[],"alreadyStale":[],"unenforced":[],"complete":true,"completeAt":"${at}","completeAfterMs":0}`;
    }
    const now = this.#now();
    const order = this.#orderById(f);
    const acked: number[] = [];
    // Each entry is one string, joined once at the end: a flat string, not a rope of a few
    // thousand pieces that the answer's length and its write would each have to walk.
    const laggards: string[] = [];
    // Entries in id order share lease labels (a process's acks arrive in one batch): the label
    // of the last millisecond is kept (apiTime rounds to the millisecond, so the text is the same).
    let labelMs = NaN;
    let labelExpired = false;
    let tail = '';
    let lastSeq = -1;
    let seqText = '';
    let stoppedAt = f.appendedAt;
    let complete = true;
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      const at = f.ackAt[i]!;
      if (!Number.isNaN(at)) {
        acked.push(i);
        if (at > stoppedAt) stoppedAt = at;
        continue;
      }
      const deadline = f.deadline[i]!;
      const expired = deadline <= now;
      const last = f.lastAckSeq[i]!;
      const ms = Math.round(deadline + wall);
      if (ms !== labelMs || expired !== labelExpired) {
        labelMs = ms;
        labelExpired = expired;
        tail = `,"leaseExpiresAt":"${apiTime(ms)}","leaseExpired":${expired ? 'true' : 'false'}}`;
      }
      if (!Object.is(last, lastSeq)) {
        lastSeq = last;
        seqText = `,"lastAckSeq":${Number.isNaN(last) ? 'null' : String(last)}`;
      }
      laggards.push(f.heads[i]! + seqText + tail);
      if (expired) stoppedAt = Math.max(stoppedAt, deadline);
      else complete = false;
    }
    // Acknowledged: by time, then worker id (the entries are already in id order, and the sort
    // is stable), as status() sorts them.
    const labels = acked.map((i) => apiTime(f.ackAt[i]! + wall));
    const byTime = acked.map((_, k) => k).sort((a, b) => cmp(labels[a]!, labels[b]!));
    const acknowledged: string[] = new Array<string>(byTime.length);
    for (let k = 0; k < byTime.length; k++) {
      const j = byTime[k]!;
      const i = acked[j]!;
      acknowledged[k] =
        `${f.heads[i]!},"at":"${labels[j]}","latencyMs":${String(Math.round(Math.max(0, f.ackAt[i]! - f.appendedAt)))}}`;
    }
    return `{"seq":${JSON.stringify(f.seq)},"appendedAt":"${apiTime(f.appendedAt + wall)}","applied":${acked.length},"acknowledged":[${acknowledged.join(',')}],"laggards":[${laggards.join(',')}],"alreadyStale":${JSON.stringify(f.alreadyStale)},"unenforced":[],"complete":${complete ? 'true' : 'false'},"completeAt":${complete ? `"${apiTime(stoppedAt + wall)}"` : 'null'},"completeAfterMs":${complete ? JSON.stringify(Math.round(stoppedAt - f.appendedAt)) : 'null'}}`;
  }

  /** The flip's entry indices in worker-id order (see #byId). */
  #orderById(f: TrackedFlip): Uint32Array {
    const cached = this.#byId;
    if (cached !== undefined && sameSlots(cached.slots, f.slots)) return cached.order;
    const order = Uint32Array.from({ length: f.ids.length }, (_, i) => i).sort((a, b) =>
      cmp(f.ids[a]!, f.ids[b]!),
    );
    this.#byId = { slots: f.slots, order };
    return order;
  }

  /**
   * The earliest time a still-pending worker's lease runs out for this flip (when to look again),
   * on the clock's monotonic scale (`clock.now()`), or undefined when nothing is pending.
   */
  nextDeadline(seq: number): number | undefined {
    const f = this.#flips.get(seq);
    if (f === undefined) return undefined;
    const now = this.#now();
    let next: number | undefined;
    for (let i = 0; i < f.ids.length; i++) {
      if (!Number.isNaN(f.ackAt[i]!)) continue;
      const d = f.deadline[i]!;
      if (d > now && (next === undefined || d < next)) next = d;
    }
    return next;
  }

  /** Every known worker, by id. */
  workers(): WorkerInfo[] {
    const now = this.#now();
    const wall = this.#wallOffset();
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
          lastAckAt: w.lastAckAt === null ? null : apiTime(w.lastAckAt + wall),
          lag: w.lastAckSeq === null ? null : Math.max(0, this.#head - w.lastAckSeq),
          leaseExpiresAt: leaseExpiresAt === null ? null : apiTime(leaseExpiresAt + wall),
          stale: leaseExpiresAt === null || leaseExpiresAt <= now,
          ...(w.gateway === undefined
            ? {}
            : {
                gateway: {
                  seams: w.gateway.report.seams.map((x) => ({
                    seam: x.seam,
                    inFlight: x.inFlight,
                  })),
                  at: apiTime(w.gateway.at + wall),
                },
              }),
        };
      });
  }

  /** KS-16.4.2: one report per worker and flip counts; a repeat is ignored. */
  #addMatches(workerId: string, reports: readonly MatchReport[]): void {
    for (const r of reports) {
      const f = this.#flips.get(r.seq);
      if (f === undefined) continue;
      const m = (f.matched ??= {
        reporters: new Set(),
        inFlight: 0,
        queued: 0,
        recent: 0,
        similar: new Set(),
      });
      if (m.reporters.has(workerId)) continue;
      m.reporters.add(workerId);
      m.inFlight += r.inFlight;
      m.queued += r.queued;
      m.recent += r.recent;
      for (const v of r.similar ?? []) if (m.similar.size < MAX_SIMILAR_KEPT) m.similar.add(v);
    }
  }

  #worker(id: string, release: string | undefined): Worker {
    let w = this.#workers.get(id);
    if (w === undefined) {
      w = {
        id,
        slot: this.#nextSlot++,
        release,
        connections: 0,
        lastAckSeq: null,
        lastAckAt: null,
        lastSeenAt: this.#now(),
        head: entryHead(id, release),
      };
      this.#workers.set(id, w);
    } else if (release !== undefined && release !== w.release) {
      w.release = release;
      w.head = entryHead(id, release);
    }
    return w;
  }

  #prune(now: number): void {
    this.#lastPrune = now;
    for (const [id, w] of this.#workers) {
      if (w.connections === 0 && now - w.lastSeenAt > this.#forgetAfterMs) this.#workers.delete(id);
    }
  }
}

function fleetMatch(m: MatchSum): FleetMatch {
  return {
    workers: m.reporters.size,
    inFlight: m.inFlight,
    queued: m.queued,
    recent: m.recent,
    similar: [...m.similar].sort(),
  };
}

const IGNORED = 0;
const ACKED = 1;
const PENDING = 2;
const STALE = 3;

/** How a worker enters a flip's answer when it is appended at `now`. */
function classify(w: Worker, seq: number, now: number, leaseMs: number): number {
  if (w.lastAckSeq !== null && w.lastAckSeq >= seq) return ACKED;
  if (w.lastAckAt !== null && w.lastAckAt + leaseMs > now) return PENDING;
  return w.connections > 0 ? STALE : IGNORED;
}

/** `{"workerId":…` and `,"release":…` when there is one: how a fleet answer's entry starts. */
function entryHead(id: string, release: string | undefined): string {
  return release === undefined
    ? `{"workerId":${JSON.stringify(id)}`
    : `{"workerId":${JSON.stringify(id)},"release":${JSON.stringify(release)}`;
}

/** The arrays of a flip tracked with no worker: length 0, so nothing is ever read or written. */
const NO_NUMBERS = new Float64Array(0);

/** Index of `slot` in the ascending `slots`, or -1. */
function indexOf(slots: Float64Array, slot: number): number {
  let lo = 0;
  let hi = slots.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = slots[mid]!;
    if (v === slot) return mid;
    if (v < slot) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

function sameSlots(a: Float64Array, b: Float64Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
