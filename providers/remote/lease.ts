/**
 * The remote source's lease as pure functions of their inputs: no clock, no timer, no I/O. The
 * source reads its monotonic clock and passes the readings in, so the rules can be tested with
 * plain numbers (and a step of the wall clock cannot reach them: they never see it). KS-6.2.2,
 * KS-6.2.3, KS-6.3.6, KS-6.3.11
 */

/** What an acknowledgement answer says about the lease, with when it was sent. */
export interface AckRenewal {
  /** The source's monotonic reading taken just before the acknowledgement was sent. KS-6.2.2 */
  readonly sentAt: number;
  /** The seq the acknowledgement carried (what the source had applied when it sent it). */
  readonly ackedSeq: number;
  /** The server's head seq in the answer. */
  readonly head: number;
  /** The server's `staleAfterMs` in the answer. */
  readonly serverStaleAfterMs: number;
}

/**
 * The lease end after an acknowledgement answer (KS-6.2.2): `sentAt + min(staleAfterMs, the
 * server's)` when the source was not behind the server's head, else unchanged (it is behind and
 * must catch up first). A late answer never shortens a lease.
 *
 * @param leaseUntil - the current lease end (monotonic ms; -Infinity when none)
 * @param staleAfterMs - the source's own bound (ms)
 * @returns the new lease end (monotonic ms)
 * @example renewedLease(-Infinity, { sentAt: 100, ackedSeq: 3, head: 3, serverStaleAfterMs: 3000 }, 2000) // 2100
 */
export function renewedLease(leaseUntil: number, ack: AckRenewal, staleAfterMs: number): number {
  if (ack.head > ack.ackedSeq) return leaseUntil;
  return Math.max(leaseUntil, ack.sentAt + Math.min(staleAfterMs, ack.serverStaleAfterMs));
}

/** What decides whether the source is fresh (every time on the source's monotonic scale). */
export interface LeaseFacts {
  /** Why the log seen does not continue the one applied (KS-6.4.2), if it does not. */
  readonly diverged: string | undefined;
  /** Whether any state was applied yet. */
  readonly hasState: boolean;
  /** Why a resynchronisation from a snapshot is awaited (KS-6.3.2), if one is. */
  readonly resyncing: string | undefined;
  /** When the lease runs out (monotonic ms). */
  readonly leaseUntil: number;
  /** When the stream last delivered anything (monotonic ms). */
  readonly lastReceived: number;
  /** The source's bound (ms). */
  readonly staleAfterMs: number;
}

/** The verdict of {@link freshness}. */
export type Freshness =
  /** Fresh until `until` (the earlier of the lease end and the silence bound). */
  | { readonly fresh: true; readonly until: number }
  /** Not fresh, and why (the first of: diverged, no state, resynchronising, lease, silence). */
  | { readonly fresh: false; readonly reason: string };

/**
 * Whether the source is fresh at `now`, and until when; or why not (KS-6.3.6). Fresh needs an
 * applied state on a log that continues it, no pending resynchronisation, a lease that has not
 * run out and a stream heard from within `staleAfterMs`.
 *
 * @param now - the source's monotonic reading
 * @example freshness({ ...facts, leaseUntil: 500 }, 500) // { fresh: false, reason: 'lease ran out …' }
 */
export function freshness(facts: LeaseFacts, now: number): Freshness {
  const silentUntil = facts.lastReceived + facts.staleAfterMs;
  if (facts.diverged !== undefined) return { fresh: false, reason: facts.diverged };
  if (!facts.hasState) return { fresh: false, reason: 'no state yet' };
  if (facts.resyncing !== undefined) {
    return { fresh: false, reason: `resynchronising: ${facts.resyncing}` };
  }
  if (now >= facts.leaseUntil) {
    return { fresh: false, reason: 'lease ran out (no acknowledgement renewed it)' };
  }
  if (now >= silentUntil) {
    return { fresh: false, reason: `nothing received for ${facts.staleAfterMs} ms` };
  }
  return { fresh: true, until: Math.min(facts.leaseUntil, silentUntil) };
}
