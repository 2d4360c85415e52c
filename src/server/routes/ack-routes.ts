import { authorize, type Principal } from '../../auth/principal.js';
import type { WorkerClaims } from '../../auth/worker-claims.js';
import { ErrorCode } from '../../errors.js';
import { ackAnswerStatement } from '../../integrity/statements.js';
import type { SigningKey } from '../../integrity/signing-key.js';
import { parseAckBody, type AckRequest } from '../../protocol/acks.js';
import type { AckAnswer } from '../../protocol/answers.js';
import {
  Divergence,
  LogDivergedError,
  describePosition,
  type LogPosition,
} from '../../protocol/log-position.js';
import { ApiPath } from '../../protocol/paths.js';
import type { FlipLogStore } from '../../store/flip-log-store.js';
import type { FleetTracker } from '../fleet-tracker.js';
import type { FleetView } from '../fleet-view.js';
import type { FlipLimits } from '../flip-limits.js';
import { HttpError, sendJson } from '../internal/http-io.js';
import type { LogFollower } from '../log-follower.js';
import type { Route } from '../router.js';
import { ANONYMOUS } from './route-support.js';

/** How long an acknowledgement beyond the head waits for this replica to catch up. KS-6.4.3 */
const AHEAD_WAIT_MS = 1000;

/** What {@link ackRoutes} uses of the control plane. */
export interface AckRouteParts {
  /** The log followed: its position, the hashes applied, and divergence. */
  readonly follower: LogFollower;
  /** The fleet: the tracker that records acks, and the channel that shares them (KS-6.6). */
  readonly fleet: FleetView;
  /** Which token acts as which worker id (KS-5.2.9). */
  readonly claims: WorkerClaims;
  /** The bound on workers (KS-17.8.4). */
  readonly limits: FlipLimits;
  /** The store: its head, when a worker claims to be beyond this replica's. */
  readonly store: Pick<FlipLogStore, 'head' | 'kind'>;
  /** Throws 503 unless the control plane vouches for its state (KS-12.5.2). */
  requireVouching(): void;
  /** KS-17.7.10 signs each answer over the acknowledgement's nonce, when one was sent. */
  readonly signingKey?: SigningKey | undefined;
}

/**
 * Accepting acknowledgements, as `POST /v1/acks` does and any other transport of them may (one
 * function per control plane): authorises the caller for every worker id (a batch is all or
 * nothing, KS-5.2.9, KS-17.8.4), checks each position against the log (KS-6.4.3), records each
 * in order exactly as if sent alone (KS-6.2.6), wakes the flips waiting for the fleet, and in a
 * shared fleet answers only once the store committed them (KS-6.6.3).
 *
 * @returns `(who, acks) => answer`; throws an HttpError or KillSwitchError to refuse
 */
export function acceptAcks(
  p: AckRouteParts,
): (who: Principal, acks: readonly AckRequest[], nonce?: string) => Promise<AckAnswer> {
  const { follower, fleet, claims } = p;
  const tracker = fleet.tracker;

  /** KS-17.8.4: no new worker beyond maxWorkers; the whole batch is refused, nothing recorded. */
  const checkAcks = (acks: readonly { readonly workerId: string }[]): void => {
    let tracked = tracker.size;
    const added = new Set<string>();
    for (const a of acks) {
      if (!tracker.has(a.workerId) && !added.has(a.workerId)) {
        p.limits.checkNewWorker(tracked++, a.workerId);
        added.add(a.workerId);
      }
    }
  };

  /**
   * KS-6.4.3 what an acknowledgement says about the log: a worker on another log is refused (409,
   * it fails closed on its own); a worker that applied a seq beyond this head (after a short wait
   * for a shared store to catch up) or another record at a seq this control plane applied proves
   * that the log moved backwards or forked, and this control plane stops vouching (503).
   */
  const checkAckPositions = async (acks: readonly AckRequest[]): Promise<void> => {
    let ahead: AckRequest | undefined;
    const logId = follower.logId;
    for (const a of acks) {
      if (a.logId !== undefined && a.logId !== logId) {
        throw new HttpError(
          409,
          ErrorCode.LOG_DIVERGED,
          `worker ${a.workerId} applied log ${a.logId} at seq ${a.seq}, but this control plane serves ${describePosition(follower.position())}: another log; the worker fails closed until it reaches a control plane on its log`,
        );
      }
      if (a.seq > follower.state.seq) {
        if (ahead === undefined || a.seq > ahead.seq) ahead = a;
      } else if (a.hash !== undefined) {
        const known = follower.appliedHash(a.seq);
        if (known !== undefined && known !== a.hash) {
          follower.diverge(
            new LogDivergedError(
              Divergence.FORKED,
              { logId, seq: a.seq, hash: a.hash },
              { logId, seq: a.seq, hash: known },
              { applied: `worker ${a.workerId} applied`, seen: 'this control plane serves' },
            ),
          );
        }
      }
    }
    if (follower.broken !== undefined) p.requireVouching();
    if (ahead === undefined) return;
    // A replica of a shared log may be a poll behind the worker: wait for it a little.
    if (await follower.waitApplied(ahead.seq, ahead.hash, AHEAD_WAIT_MS)) return;
    p.requireVouching();
    // KS-2.4.9 a halt streamed early whose write is still in flight: not durable yet, so it
    // renews nothing now, and proves nothing about the log either.
    if (follower.isEarly(ahead.seq, ahead.hash)) {
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `worker ${ahead.workerId} acknowledged seq ${ahead.seq}, a halt streamed before it was durable, and its write has not finished within ${AHEAD_WAIT_MS} ms`,
      );
    }
    let stored: LogPosition;
    try {
      stored = { logId, ...(await p.store.head()) };
    } catch (err) {
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `worker ${ahead.workerId} acknowledged seq ${ahead.seq}, beyond this control plane's head ${follower.state.seq}, and the store cannot be read: ${(err as Error).message}`,
      );
    }
    if (ahead.logId !== undefined && ahead.hash !== undefined && stored.seq < ahead.seq) {
      follower.diverge(
        new LogDivergedError(
          Divergence.BEHIND,
          { logId: ahead.logId, seq: ahead.seq, hash: ahead.hash },
          stored,
          {
            applied: `worker ${ahead.workerId} applied`,
            seen: `the ${p.store.kind} store holds`,
          },
        ),
      );
      p.requireVouching();
    }
    throw new HttpError(
      409,
      ErrorCode.LOG_DIVERGED,
      `worker ${ahead.workerId} acknowledged seq ${ahead.seq}, beyond this control plane's ${describePosition(follower.position())}; an acknowledgement never goes beyond the head`,
    );
  };

  /**
   * KS-6.6.3 a shared fleet's acknowledgements are answered only once the store committed them
   * (with the log's head at that commit), so every renewal a worker was answered is one the other
   * replicas see; the answer's head is the later of this replica's and that head, so a worker
   * whose replica lags the log learns it is behind and extends nothing.
   */
  const shareAcks = async (acks: readonly AckRequest[], answer: AckAnswer): Promise<AckAnswer> => {
    let head;
    try {
      head = await fleet.share(
        acks.map((a) => ({
          workerId: a.workerId,
          release: a.release,
          seq: a.seq,
          connections: tracker.connections(a.workerId),
          unenforced: a.unenforced,
          gateway: a.gateway,
        })),
      );
    } catch (err) {
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `the acknowledgement could not be shared with the other replicas, so it renews nothing: ${(err as Error).message}`,
      );
    }
    p.requireVouching();
    const mine = tracker.head;
    if (head === undefined || head.seq <= mine)
      return { ...answer, head: mine, hash: follower.state.hash };
    return { ...answer, head: head.seq, hash: head.hash };
  };

  /**
   * KS-17.7.10 the answer renews leases: signed over the worker's nonce, it cannot be forged by
   * someone on the path without the key, nor replayed for a later acknowledgement.
   */
  const signed = (answer: AckAnswer, nonce: string | undefined): AckAnswer =>
    nonce === undefined || p.signingKey === undefined
      ? answer
      : { ...answer, sig: p.signingKey.sign(ackAnswerStatement(nonce, answer)) };

  return async (who, acks, nonce) => {
    authorize(who, { kind: 'ack' });
    // KS-5.2.9: every entry's worker id is checked before any is recorded (a batch is all or
    // nothing), so a token cannot acknowledge for a worker it may not act as.
    for (const a of acks) claims.check(who, a.workerId);
    checkAcks(acks);
    p.requireVouching();
    await checkAckPositions(acks);
    // KS-6.2.6: each entry is recorded exactly as the same acknowledgement sent alone, in
    // order; the answer's fields do not depend on the worker, so one answer serves every entry:
    // the last entry's, built once (a batch holds up to a process's thousand workers).
    let last: ReturnType<FleetTracker['ack']> | undefined;
    for (const a of acks) {
      last = tracker.ack(a);
      claims.touch(who, a.workerId);
    }
    fleet.wake();
    if (last === undefined) throw new TypeError('acceptAcks: no acknowledgement given');
    let answer: AckAnswer = { ...last, logId: follower.logId, hash: follower.state.hash };
    if (fleet.channel !== undefined) answer = await shareAcks(acks, answer);
    return signed(answer, nonce);
  };
}

/**
 * `POST /v1/acks` (worker credentials, for their own worker ids): one acknowledgement, or a batch
 * (`{ acks: [...] }`, KS-6.2.6). It renews the worker's lease; the answer carries the head and
 * the log's position (KS-6.2, KS-6.4). See {@link acceptAcks}.
 */
export function ackRoutes(p: AckRouteParts): Route[] {
  const accept = acceptAcks(p);
  return [
    {
      method: 'POST',
      path: ApiPath.ACKS,
      auth: 'authenticated',
      handle: async ({ res, principal, body }) => {
        const { acks, nonce } = parseAckBody(await body());
        sendJson(res, 200, await accept(principal ?? ANONYMOUS, acks, nonce));
      },
    },
  ];
}
