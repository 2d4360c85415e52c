import type { Clock } from '../internal/clock.js';
import type { GatewayReport } from '../protocol/acks.js';
import {
  apiTime,
  type AckedWorker,
  type FlipFleetStatus,
  type Laggard,
  type ReplicaInfo,
  type UnenforcedWorker,
  type UnknownReplica,
  type WorkerInfo,
} from '../protocol/answers.js';
import type { FleetEvent, ObservedAck } from '../store/fleet-channel.js';

/** Options of {@link SharedFleet}. Times in ms, on the clock's monotonic scale. */
export interface SharedFleetOptions {
  /** This replica's id; its own acknowledgements are the local tracker's, not this view's. */
  readonly selfId: string;
  readonly staleAfterMs: number;
  readonly leaseMarginMs: number;
  /** A replica whose heartbeat counter did not move for this long is unknown (KS-6.6.5). */
  readonly replicaTimeoutMs: number;
  /** Forget a worker not renewed for this long. @default 600000 */
  readonly forgetAfterMs?: number;
  /** Keep the fleet answer of at most this many recent flips. @default 1000 */
  readonly maxTrackedFlips?: number;
  readonly clock: Clock;
}

/** A worker as the acknowledgements shared by the other replicas show it. */
interface RemoteWorker {
  readonly id: string;
  replica: string;
  release: string | undefined;
  seq: number;
  answeredHead: number;
  renewals: number;
  connections: number;
  /** When this replica observed its last renewal (monotonic): never a time written elsewhere. */
  observedAt: number;
  /** KS-15.5.3 a gateway's last report of its seams, and when this replica observed it. */
  gateway?: { readonly report: GatewayReport; readonly at: number } | undefined;
  /**
   * KS-6.5 the negative acknowledgements its last renewal carried (every renewal carries all
   * that stand), so a flip this replica registers after observing them is never counted stopped.
   */
  nacks?: ReadonlyMap<number, string> | undefined;
}

/** A replica and when this one last saw its heartbeat counter move. */
interface Replica {
  url: string;
  beat: number;
  head: number;
  heardAt: number;
}

/** One remote worker in one flip's answer. */
interface Slot {
  replica: string;
  release: string | undefined;
  lastAckSeq: number | null;
  /** When its lease runs out for the flip (NaN: acknowledged before the append). */
  deadline: number;
  /** When this replica observed its acknowledgement of the flip (NaN: pending). */
  ackAt: number;
  /** KS-6.5 a negative acknowledgement: never counted as stopped. */
  nack?: { readonly reason: string; readonly at: number } | undefined;
}

/** The remote part of one flip's answer. */
interface RemoteFlip {
  readonly seq: number;
  readonly appendedAt: number;
  readonly slots: Map<string, Slot>;
}

/**
 * The fleet as the other replicas of a shared store show it (KS-6.6), beside this replica's own
 * {@link FleetTracker}. Pure: no I/O, no timers; events come from the store's fleet channel and
 * time from the injected clock.
 *
 * Why no clocks of other replicas are needed: a replica records a renewal only after the store
 * committed it together with the log's head at that commit (`answeredHead`, KS-6.6.3), under a
 * lock that no append holds at the same time. So a renewal that could extend a worker's lease for
 * flip `s` (answered head below `s`) was committed before `s`, and this replica has observed every
 * such renewal once it received its own heartbeat published after it applied `s` (the barrier,
 * KS-6.6.4). Each renewal is timed when this replica observes it, on its own monotonic clock,
 * which is after the worker read its clock to send it: the lease computed here (observation +
 * `staleAfterMs` + `leaseMarginMs`) never ends before the worker's own. A remote worker counts as
 * stopped for `s` when this replica observed its acknowledgement of `s`, or once that lease ran
 * out and the barrier for `s` passed.
 */
export class SharedFleet {
  readonly selfId: string;
  /** The URL this replica serves (known once it listens). */
  selfUrl = '';
  readonly #leaseMs: number;
  readonly #replicaTimeoutMs: number;
  readonly #forgetAfterMs: number;
  readonly #maxTracked: number;
  readonly #clock: Clock;
  readonly #workers = new Map<string, RemoteWorker>();
  readonly #replicas = new Map<string, Replica>();
  /** Replicas that left on purpose (closed): their workers are not waited for as unknown. */
  readonly #left = new Set<string>();
  readonly #flips = new Map<number, RemoteFlip>();
  /** Flips whose remote part may still change (barrier not passed, or a lease still running). */
  readonly #open = new Set<RemoteFlip>();
  #barrier = 0;
  #lastSeq = 0;

  constructor(o: SharedFleetOptions) {
    this.selfId = o.selfId;
    this.#leaseMs = o.staleAfterMs + o.leaseMarginMs;
    this.#replicaTimeoutMs = o.replicaTimeoutMs;
    this.#forgetAfterMs = o.forgetAfterMs ?? 600_000;
    this.#maxTracked = o.maxTrackedFlips ?? 1000;
    this.#clock = o.clock;
  }

  /** The highest own head whose barrier passed (KS-6.6.4). */
  get barrier(): number {
    return this.#barrier;
  }

  /** Applies one event of the store's fleet channel. */
  onEvent(e: FleetEvent): void {
    const now = this.#clock.now();
    switch (e.kind) {
      case 'acks':
        if (e.replica === this.selfId) return;
        for (const a of e.acks) this.#observe(e.replica, e.answeredHead, a, now);
        return;
      case 'beat':
        this.#beat(e.replica, e.url, e.beat, e.head, now);
        return;
      case 'left':
        this.#replicas.delete(e.replica);
        this.#left.add(e.replica);
        return;
      case 'barrier':
        if (e.head > this.#barrier) this.#barrier = e.head;
        return;
      case 'sync': {
        const seen = new Set<string>();
        for (const r of e.replicas) {
          seen.add(r.replica);
          this.#beat(r.replica, r.url, r.beat, r.head, now);
        }
        for (const id of [...this.#replicas.keys()]) if (!seen.has(id)) this.#replicas.delete(id);
        for (const w of e.workers) {
          if (w.replica === this.selfId) continue;
          const known = this.#workers.get(w.workerId);
          if (known !== undefined && known.replica === w.replica && known.renewals >= w.renewals)
            continue;
          // Renewals whose events were lost: timed now (later than they happened, so leases end
          // later, never earlier), and as if answered at the lowest head known for the worker.
          const head = Math.min(w.answeredHead, known?.answeredHead ?? 0);
          this.#observe(w.replica, head, w, now);
        }
        if (e.barrier > this.#barrier) this.#barrier = e.barrier;
        return;
      }
      case 'trouble':
        return;
    }
  }

  #beat(id: string, url: string, beat: number, head: number, now: number): void {
    if (id === this.selfId) return;
    const r = this.#replicas.get(id);
    if (r === undefined) {
      this.#replicas.set(id, { url, beat, head, heardAt: now });
      this.#left.delete(id);
      return;
    }
    // KS-6.6.5 a counter, never a time: it moved, so the replica is alive now.
    if (beat > r.beat) {
      r.beat = beat;
      r.heardAt = now;
    }
    r.url = url;
    if (head > r.head) r.head = head;
  }

  /** One renewal of a remote worker, observed now. */
  #observe(replica: string, answeredHead: number, a: ObservedAck, now: number): void {
    const prev = this.#workers.get(a.workerId);
    if (prev !== undefined && prev.replica === replica && a.renewals <= prev.renewals) return;
    const w: RemoteWorker = prev ?? {
      id: a.workerId,
      replica,
      release: a.release,
      seq: a.seq,
      answeredHead,
      renewals: a.renewals,
      connections: a.connections,
      observedAt: now,
    };
    const prevSeq = prev === undefined ? null : prev.seq;
    w.replica = replica;
    if (a.release !== undefined) w.release = a.release;
    w.seq = a.seq;
    w.answeredHead = answeredHead;
    w.renewals = a.renewals;
    w.connections = a.connections;
    w.observedAt = now;
    if (a.gateway !== undefined) w.gateway = { report: a.gateway, at: now };
    this.#workers.set(w.id, w);
    const nacks = new Map<number, string>();
    for (const u of a.unenforced ?? []) nacks.set(u.seq, u.reason);
    w.nacks = nacks.size > 0 ? nacks : undefined;
    for (const [seq, reason] of nacks) {
      const f = this.#flips.get(seq);
      if (f === undefined) continue;
      const slot = this.#slot(f, w, prevSeq, now);
      slot.ackAt = NaN; // KS-6.5.2 a refusal un-counts an earlier acknowledgement
      slot.nack = { reason, at: slot.nack?.at ?? now };
      this.#open.add(f);
    }
    for (const f of [...this.#open]) {
      if (nacks.has(f.seq)) continue;
      const slot = f.slots.get(w.id);
      if (a.seq >= f.seq) {
        if (slot === undefined) {
          f.slots.set(w.id, {
            replica,
            release: w.release,
            lastAckSeq: prevSeq,
            deadline: NaN,
            ackAt: now,
          });
        } else if (slot.nack !== undefined) {
          // KS-6.5.2 withdrawn: enforced from this acknowledgement on.
          slot.nack = undefined;
          slot.ackAt = now;
          slot.replica = replica;
        } else if (Number.isNaN(slot.ackAt) && !this.#expired(f, slot, now)) {
          slot.ackAt = now;
          slot.replica = replica;
          slot.release = w.release;
        }
      } else if (answeredHead < f.seq) {
        // KS-6.6.3 committed before the flip: the worker may have extended its lease with it.
        const s = this.#slot(f, w, prevSeq, now);
        if (Number.isNaN(s.ackAt) && s.nack === undefined) {
          s.deadline = Math.max(Number.isNaN(s.deadline) ? 0 : s.deadline, now + this.#leaseMs);
          s.replica = replica;
        }
      }
      if (this.#settled(f, now)) this.#open.delete(f);
    }
  }

  #slot(f: RemoteFlip, w: RemoteWorker, prevSeq: number | null, now: number): Slot {
    let s = f.slots.get(w.id);
    if (s === undefined) {
      s = {
        replica: w.replica,
        release: w.release,
        lastAckSeq: prevSeq,
        deadline: now + this.#leaseMs,
        ackAt: NaN,
      };
      f.slots.set(w.id, s);
    }
    return s;
  }

  /** A pending remote worker counts as stopped once its lease ran out AND the barrier passed. */
  #expired(f: RemoteFlip, s: Slot, now: number): boolean {
    return this.#barrier >= f.seq && s.deadline <= now;
  }

  #settled(f: RemoteFlip, now: number): boolean {
    if (this.#barrier < f.seq) return false;
    for (const s of f.slots.values()) {
      if (s.nack !== undefined) return false;
      if (Number.isNaN(s.ackAt) && s.deadline > now) return false;
    }
    return true;
  }

  /** A flip was appended here at `appendedAt` (the local tracker's time for it). */
  flipAppended(seq: number, appendedAt: number): void {
    if (seq <= this.#lastSeq) return;
    this.#lastSeq = seq;
    const f: RemoteFlip = { seq, appendedAt, slots: new Map() };
    for (const w of this.#workers.values()) {
      const nack = w.nacks?.get(seq);
      if (w.seq >= seq && nack !== undefined) {
        // KS-6.5.2 its acknowledgement reached this replica before the flip did, and refused it:
        // unenforced, never acknowledged (the worker's next renewal withdraws it or not).
        f.slots.set(w.id, {
          replica: w.replica,
          release: w.release,
          lastAckSeq: w.seq,
          deadline: NaN,
          ackAt: NaN,
          nack: { reason: nack, at: appendedAt },
        });
      } else if (w.seq >= seq) {
        f.slots.set(w.id, {
          replica: w.replica,
          release: w.release,
          lastAckSeq: w.seq,
          deadline: NaN,
          ackAt: appendedAt,
        });
      } else if (w.observedAt + this.#leaseMs > appendedAt) {
        // Its last renewal may have been answered below `seq` or not: counting it is later, so safe.
        f.slots.set(w.id, {
          replica: w.replica,
          release: w.release,
          lastAckSeq: w.seq,
          deadline: w.observedAt + this.#leaseMs,
          ackAt: NaN,
        });
      }
    }
    this.#flips.set(seq, f);
    this.#open.add(f);
    while (this.#flips.size > this.#maxTracked) {
      const oldest = this.#flips.values().next().value as RemoteFlip;
      this.#flips.delete(oldest.seq);
      this.#open.delete(oldest);
    }
    this.#prune(appendedAt);
  }

  /** Whether the view tracks `seq` (it was appended after the view started). */
  tracks(seq: number): boolean {
    return this.#flips.has(seq);
  }

  /**
   * The whole fleet's answer for a flip: this replica's own (`local`, from its tracker) merged
   * with every other replica's workers. A worker in both counts as acknowledged when either saw
   * its acknowledgement, and otherwise as pending until both leases ran out. KS-6.6.2
   */
  status(seq: number, local: FlipFleetStatus | undefined): FlipFleetStatus | undefined {
    if (local === undefined) return undefined;
    const f = this.#flips.get(seq);
    const now = this.#clock.now();
    const wall = this.#clock.wallNow() - now;
    const self = this.selfId;
    const acked = new Map<string, AckedWorker>();
    const lagging = new Map<string, Laggard>();
    for (const a of local.acknowledged) acked.set(a.workerId, { ...a, replica: self });
    for (const l of local.laggards) lagging.set(l.workerId, { ...l, replica: self });
    const nacks: UnenforcedWorker[] = local.unenforced.map((n) => ({ ...n, replica: self }));
    const nacked = new Set(nacks.map((n) => n.workerId));
    // A flip appended before this replica joined the fleet has no remote part: the local answer.
    // The answer's times are ISO labels (KS-5.1.15); merged here as epoch ms.
    const appendedLabel = Date.parse(local.appendedAt);
    for (const [id, s] of f?.slots ?? []) {
      if (nacked.has(id)) continue;
      const base = { workerId: id, ...(s.release === undefined ? {} : { release: s.release }) };
      if (s.nack !== undefined) {
        acked.delete(id);
        lagging.delete(id);
        nacked.add(id);
        nacks.push({
          ...base,
          replica: s.replica,
          reason: s.nack.reason,
          at: apiTime(s.nack.at + wall),
        });
        continue;
      }
      if (!Number.isNaN(s.ackAt)) {
        const at = Math.round(s.ackAt + wall);
        const cur = acked.get(id);
        if (cur === undefined || at < Date.parse(cur.at)) {
          lagging.delete(id);
          acked.set(id, {
            ...base,
            replica: s.replica,
            at: apiTime(at),
            latencyMs: Math.round(Math.max(0, s.ackAt - f!.appendedAt)),
          });
        }
        continue;
      }
      if (acked.has(id)) continue;
      const expired = this.#expired(f!, s, now);
      const leaseExpiresAt = Math.round(s.deadline + wall);
      const cur = lagging.get(id);
      if (cur === undefined) {
        lagging.set(id, {
          ...base,
          replica: s.replica,
          lastAckSeq: s.lastAckSeq,
          leaseExpiresAt: apiTime(leaseExpiresAt),
          leaseExpired: expired,
        });
      } else {
        lagging.set(id, {
          ...cur,
          ...(expired ? {} : { replica: s.replica }),
          leaseExpiresAt: apiTime(Math.max(Date.parse(cur.leaseExpiresAt), leaseExpiresAt)),
          leaseExpired: cur.leaseExpired && expired,
        });
      }
    }
    const acknowledged = [...acked.values()].sort(
      // ISO times of one width sort as the times do.
      (a, b) => cmp(a.at, b.at) || cmp(a.workerId, b.workerId),
    );
    const laggards = [...lagging.values()].sort((a, b) => cmp(a.workerId, b.workerId));
    nacks.sort((a, b) => cmp(a.workerId, b.workerId));
    let complete = nacks.length === 0;
    let stoppedAt = appendedLabel;
    for (const a of acknowledged) stoppedAt = Math.max(stoppedAt, Date.parse(a.at));
    const unknown = new Map<string, string[]>();
    for (const l of laggards) {
      if (l.leaseExpired) {
        stoppedAt = Math.max(stoppedAt, Date.parse(l.leaseExpiresAt));
        continue;
      }
      complete = false;
      const r = l.replica;
      if (r !== undefined && r !== self && this.#isUnknown(r, now)) {
        const list = unknown.get(r) ?? [];
        list.push(l.workerId);
        unknown.set(r, list);
      }
    }
    const unknownReplicas: UnknownReplica[] = [...unknown]
      .sort(([a], [b]) => cmp(a, b))
      .map(([replica, workers]) => {
        const r = this.#replicas.get(replica);
        return {
          replica,
          url: r?.url ?? '',
          silentForMs: r === undefined ? -1 : Math.round(now - r.heardAt),
          workers,
        };
      });
    if (unknownReplicas.length > 0) complete = false;
    return {
      ...local,
      applied: acknowledged.length,
      acknowledged,
      laggards,
      unenforced: nacks,
      complete,
      completeAt: complete ? apiTime(stoppedAt) : null,
      completeAfterMs: complete ? stoppedAt - appendedLabel : null,
      unknownReplicas,
    };
  }

  /** KS-6.6.5 silent for longer than `replicaTimeoutMs`, or never heard (and not left). */
  #isUnknown(replica: string, now: number): boolean {
    const r = this.#replicas.get(replica);
    if (r === undefined) return !this.#left.has(replica);
    return now - r.heardAt > this.#replicaTimeoutMs;
  }

  /** The earliest moment a pending remote worker's lease runs out for this flip (monotonic). */
  nextDeadline(seq: number): number | undefined {
    const f = this.#flips.get(seq);
    if (f === undefined) return undefined;
    const now = this.#clock.now();
    let next: number | undefined;
    for (const s of f.slots.values()) {
      if (!Number.isNaN(s.ackAt) || s.nack !== undefined) continue;
      if (s.deadline > now && (next === undefined || s.deadline < next)) next = s.deadline;
    }
    // A replica that falls silent becomes unknown at a time worth answering at, too.
    for (const r of this.#replicas.values()) {
      const at = r.heardAt + this.#replicaTimeoutMs + 1;
      if (at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  /** The whole fleet's workers: this replica's own (`local`) and the others', by id. KS-6.6.6 */
  workers(local: readonly WorkerInfo[], head: number): WorkerInfo[] {
    const now = this.#clock.now();
    const wall = this.#clock.wallNow() - now;
    this.#prune(now);
    const byId = new Map<string, WorkerInfo>();
    for (const w of local) byId.set(w.id, { ...w, replica: this.selfId });
    for (const w of this.#workers.values()) {
      const lastAckAt = Math.round(w.observedAt + wall);
      const cur = byId.get(w.id);
      if (cur !== undefined && cur.lastAckAt !== null && Date.parse(cur.lastAckAt) >= lastAckAt) {
        continue;
      }
      const leaseEnd = w.observedAt + this.#leaseMs;
      byId.set(w.id, {
        id: w.id,
        ...(w.release === undefined ? {} : { release: w.release }),
        replica: w.replica,
        connected: w.connections > 0 || (cur?.connected ?? false),
        connections: w.connections + (cur?.connections ?? 0),
        lastAckSeq: w.seq,
        lastAckAt: apiTime(lastAckAt),
        lag: Math.max(0, head - w.seq),
        leaseExpiresAt: apiTime(leaseEnd + wall),
        stale: leaseEnd <= now,
        // KS-15.5.3 a gateway's seams as its newest report says, wherever it acknowledged.
        ...gatewayOf(w.gateway, cur?.gateway, wall),
      });
    }
    return [...byId.values()].sort((a, b) => cmp(a.id, b.id));
  }

  /** Every replica this one knows, itself first. KS-6.6.6 */
  replicas(selfHead: number): ReplicaInfo[] {
    const now = this.#clock.now();
    const others = [...this.#replicas]
      .sort(([a], [b]) => cmp(a, b))
      .map(([replica, r]) => ({
        replica,
        url: r.url,
        self: false,
        head: r.head,
        silentForMs: Math.round(now - r.heardAt),
        unknown: now - r.heardAt > this.#replicaTimeoutMs,
      }));
    return [
      {
        replica: this.selfId,
        url: this.selfUrl,
        self: true,
        head: selfHead,
        silentForMs: 0,
        unknown: false,
      },
      ...others,
    ];
  }

  #prune(now: number): void {
    for (const [id, w] of this.#workers) {
      if (now - w.observedAt > this.#forgetAfterMs) this.#workers.delete(id);
    }
  }
}

/** The newer of a remote gateway report (monotonic `at`) and the local one (an ISO label). */
function gatewayOf(
  remote: RemoteWorker['gateway'],
  local: WorkerInfo['gateway'],
  wall: number,
): { gateway?: NonNullable<WorkerInfo['gateway']> } {
  if (remote === undefined) return local === undefined ? {} : { gateway: local };
  const at = Math.round(remote.at + wall);
  if (local !== undefined && Date.parse(local.at) >= at) return { gateway: local };
  return {
    gateway: {
      seams: remote.report.seams.map((x) => ({ seam: x.seam, inFlight: x.inFlight })),
      at: apiTime(at),
    },
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
