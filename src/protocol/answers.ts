import { z } from 'zod';
import type { ValidationIssue } from '../errors.js';
import type { FlipRecord } from '../model/flip-record.js';

/**
 * The answers of the control plane's routes (KS-5.1, KS-6.2), as the server sends them and the
 * typed client reads them. Every time is an {@link ApiTime} (ISO 8601, UTC, milliseconds), the
 * format of a flip record's `at`; every duration is a whole number of milliseconds in a field
 * named `…Ms`. KS-5.1.15
 */

/**
 * A time in an answer: ISO 8601 in UTC with milliseconds, `2026-12-05T18:10:00.123Z`, as
 * `Date.prototype.toISOString` writes it and as every flip record's `at` is. A wall-clock label
 * (KS-6.2.7): compare two of them with `Date.parse`, never for a lease. KS-5.1.15
 */
export type ApiTime = string;

/** The largest epoch ms a Date holds (ECMA-262 TimeClip). */
const MAX_DATE_MS = 8.64e15;
const DAY_MS = 86_400_000;
/** `00` .. `59`. */
const PAD2 = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));
/** The start (epoch ms) of the day whose `YYYY-MM-DDT` prefix {@link apiTime} holds. */
let labelDay = Number.NaN;
let labelDayPrefix = '';

/**
 * The {@link ApiTime} of a wall-clock reading in epoch ms (rounded to the millisecond).
 *
 * @example apiTime(0) // '1970-01-01T00:00:00.000Z'
 */
export function apiTime(epochMs: number): ApiTime {
  const ms = Math.round(epochMs);
  // Outside the range a Date can hold (or not a number): toISOString's own answer or RangeError.
  if (!(Math.abs(ms) <= MAX_DATE_MS)) return new Date(ms).toISOString();
  // A fleet answer labels each worker's lease and acknowledgement: a thousand labels, most of
  // them the same millisecond (a process's acknowledgements arrive in one batch). toISOString is
  // about a microsecond each; the same text is built from the day's prefix, computed once per
  // day, and the time of day. test/protocol/api-time.test.ts checks it equals toISOString.
  const day = Math.floor(ms / DAY_MS) * DAY_MS;
  if (day !== labelDay) {
    const iso = new Date(day).toISOString();
    labelDay = day;
    labelDayPrefix = iso.slice(0, iso.indexOf('T') + 1);
  }
  let r = ms - day;
  const h = Math.floor(r / 3_600_000);
  r -= h * 3_600_000;
  const m = Math.floor(r / 60_000);
  r -= m * 60_000;
  const sec = Math.floor(r / 1000);
  const milli = r - sec * 1000;
  return `${labelDayPrefix}${PAD2[h]}:${PAD2[m]}:${PAD2[sec]}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/**
 * zod schema of a time label a worker reads (a heartbeat's `at`, an ack answer's `serverTime`):
 * an {@link ApiTime}, or the epoch-ms number control planes sent before KS-5.1.15. Labels are
 * never read for a lease, so accepting both lets workers and servers upgrade in either order.
 */
export const labelTimeSchema = z.union([z.string().max(64), z.number()]);

/** The JSON error body every route answers with: `{ error: { code, message, issues? } }`. */
export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly issues?: readonly ValidationIssue[];
  };
}

/** One worker as `GET /v1/workers` lists it. KS-5.1.9 */
export interface WorkerInfo {
  readonly id: string;
  readonly release?: string;
  /**
   * The control-plane replica that received its last acknowledgement, when the replicas share
   * the fleet through their store (KS-6.6.6); absent otherwise.
   */
  readonly replica?: string;
  /** At least one open stream. */
  readonly connected: boolean;
  readonly connections: number;
  /** Highest seq the worker acknowledged (null before its first ack). */
  readonly lastAckSeq: number | null;
  /** Receive time of its last ack. */
  readonly lastAckAt: ApiTime | null;
  /** head - lastAckSeq (null before its first ack). */
  readonly lag: number | null;
  /** When the server counts its lease as run out: last ack + staleAfterMs + leaseMarginMs. */
  readonly leaseExpiresAt: ApiTime | null;
  /** True when it has no lease (never acked, or the lease ran out): it fails closed on its own. */
  readonly stale: boolean;
  /**
   * Present when the member is a gateway (KS-15.5.3): its seams and the calls in flight at each,
   * as its last acknowledgement that said so reported them (`at`, receive time).
   */
  readonly gateway?: {
    readonly seams: readonly { readonly seam: string; readonly inFlight: number }[];
    readonly at: ApiTime;
  };
}

/** A worker that acknowledged a flip. */
export interface AckedWorker {
  readonly workerId: string;
  readonly release?: string;
  /** The replica that received the acknowledgement (shared fleets only, KS-6.6.6). */
  readonly replica?: string;
  /** When the server received its acknowledgement. */
  readonly at: ApiTime;
  /** at - the flip's append time. */
  readonly latencyMs: number;
}

/** A worker that had not acknowledged a flip when asked. */
export interface Laggard {
  readonly workerId: string;
  readonly release?: string;
  /** The replica that renewed its lease last (shared fleets only, KS-6.6.6). */
  readonly replica?: string;
  readonly lastAckSeq: number | null;
  /** When it counts as stopped even without an ack (its lease runs out). */
  readonly leaseExpiresAt: ApiTime;
  /** True once that time has passed: it counts as stopped (failed closed). */
  readonly leaseExpired: boolean;
}

/**
 * An enforcement point that received a flip and said it cannot enforce it (a negative
 * acknowledgement, KS-6.5): never counted as stopped, listed apart from the laggards.
 */
export interface UnenforcedWorker {
  readonly workerId: string;
  readonly release?: string;
  /** The replica that received the negative acknowledgement (shared fleets only, KS-6.6.6). */
  readonly replica?: string;
  /** Why it cannot enforce the flip, in its own words. */
  readonly reason: string;
  /** When the server received the negative acknowledgement. */
  readonly at: ApiTime;
}

/** The fleet's answer for one flip. KS-6.2.4, KS-6.2.5 */
export interface FlipFleetStatus {
  readonly seq: number;
  /** When the server saw the flip appended. */
  readonly appendedAt: ApiTime;
  /** Number of workers that acknowledged it (`applied` count). */
  readonly applied: number;
  readonly acknowledged: readonly AckedWorker[];
  readonly laggards: readonly Laggard[];
  /** Connected workers that had no lease when the flip was appended: stopped at once. */
  readonly alreadyStale: readonly { readonly workerId: string; readonly release?: string }[];
  /**
   * Enforcement points that received the flip but cannot enforce it (KS-6.5): never counted as
   * stopped, so the flip is not complete while any is listed.
   */
  readonly unenforced: readonly UnenforcedWorker[];
  /** Every worker counts as stopped. */
  readonly complete: boolean;
  /** When the stop was complete, or null while it is not. */
  readonly completeAt: ApiTime | null;
  /** completeAt - appendedAt, or null. */
  readonly completeAfterMs: number | null;
  /**
   * Shared fleets only (KS-6.6.5): replicas this one has not heard from within its
   * `replicaTimeoutMs` that hold workers still counted as not stopped for this flip. The flip is
   * never complete while any is listed. Absent when the fleet is not shared.
   */
  readonly unknownReplicas?: readonly UnknownReplica[];
  /**
   * What the workers that reported it had that the flip matched (KS-16.4.2); absent when no
   * worker reported (an older worker, a flip that is not a halt). `workers` counts the reports:
   * all zero with every acknowledging worker reporting means the halt stopped nothing that ran.
   */
  readonly matched?: FleetMatch;
}

/** A replica another replica cannot hear from (KS-6.6.5). */
export interface UnknownReplica {
  readonly replica: string;
  /** The URL it registered. */
  readonly url: string;
  /** How long since its heartbeat counter last moved, on the answering replica's clock (ms). */
  readonly silentForMs: number;
  /** Workers it renewed last that are not counted as stopped. */
  readonly workers: readonly string[];
}

/** A control-plane replica of a shared fleet as `GET /v1/workers` lists it (KS-6.6.6). */
export interface ReplicaInfo {
  readonly replica: string;
  readonly url: string;
  /** The replica that answers. */
  readonly self: boolean;
  /** The head seq it said it applied last. */
  readonly head: number;
  /** How long since its heartbeat counter last moved, on the answering replica's clock (ms). */
  readonly silentForMs: number;
  /** True when silent for longer than `replicaTimeoutMs`. */
  readonly unknown: boolean;
}

/** The sum of the workers' match reports for one flip. KS-16.4.2 */
export interface FleetMatch {
  /** Workers that reported. */
  readonly workers: number;
  readonly inFlight: number;
  readonly queued: number;
  readonly recent: number;
  /** Values the workers saw that are close to the halt's (case, a typo), at most 3. */
  readonly similar: readonly string[];
}

/** Answer of `POST /v1/flips`. KS-5.1.1, KS-5.1.4 */
export interface FlipAnswer {
  readonly flip: FlipRecord;
  /** True when the id was already in the log (nothing appended). */
  readonly duplicate: boolean;
  /** The fleet's answer at the time of responding (after `wait`); null when not tracked. */
  readonly fleet: FlipFleetStatus | null;
  /**
   * What the flip's selector stops, in words: a run halt covers the run and every run it
   * spawned (KS-1.5.6). Absent from control planes before it existed.
   */
  readonly covers?: string;
}

/** Answer of `POST /v1/acks`. KS-6.2; `logId` and `hash` with `head` are the server's log position, KS-6.4.1 */
export interface AckAnswer {
  readonly head: number;
  /** The server's wall clock when it answered (a label: the lease never reads it, KS-6.3.11). */
  readonly serverTime: ApiTime;
  readonly staleAfterMs: number;
  readonly logId: string;
  /** Hash of the record at `head` (the genesis hash at 0). */
  readonly hash: string;
  /**
   * KS-17.7.10 `"<kid>:<base64url>"` over `ackAnswerStatement(nonce, answer)`, when the control
   * plane holds a signing key and the acknowledgement carried a `nonce`.
   */
  readonly sig?: string;
}

/** Answer of `GET /v1/flips`. KS-5.1.2 */
export interface LogAnswer {
  readonly flips: readonly FlipRecord[];
  readonly head: number;
  /** The `after` of the next page, or null at the end. */
  readonly next: number | null;
}

/** Answer of `GET /v1/workers`. KS-5.1.9 */
export interface WorkersAnswer {
  readonly head: number;
  readonly staleAfterMs: number;
  readonly leaseMarginMs: number;
  readonly workers: readonly WorkerInfo[];
  /** The replicas of a shared fleet (KS-6.6.6); absent when the fleet is not shared. */
  readonly replicas?: readonly ReplicaInfo[];
}

/** Answer of `GET /healthz`. KS-5.1.9 */
export interface HealthAnswer {
  readonly ok: boolean;
  readonly head: number;
  readonly store: string;
  readonly subscribers: number;
  /** Why the control plane does not vouch for its state (only when `ok` is false). KS-12.5.2 */
  readonly reason?: string;
}
