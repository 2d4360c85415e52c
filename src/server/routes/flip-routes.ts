import {
  authorize,
  visibleSimilar,
  type Action,
  type Principal,
  type Role,
} from '../../auth/principal.js';
import { ErrorCode, KillSwitchError, ValidationError } from '../../errors.js';
import { Mutex } from '../../internal/mutex.js';
import { recordJson, type FlipRecord } from '../../model/flip-record.js';
import { haltCoverage } from '../../model/selector.js';
import type { FlipAnswer } from '../../protocol/answers.js';
import { flipQuerySchema, parseFlipRequest } from '../../protocol/flip-request.js';
import { ApiPath } from '../../protocol/paths.js';
import type { FlipLogStore } from '../../store/flip-log-store.js';
import type { FleetView } from '../fleet-view.js';
import type { FlipLimits } from '../flip-limits.js';
import { HttpError, sendJsonText } from '../internal/http-io.js';
import type { LogFollower } from '../log-follower.js';
import type { ReleaseGate } from '../release-gate.js';
import type { Route } from '../router.js';
import { ANONYMOUS, parseQuery } from './route-support.js';

/** How long a flip's answer waits for this control plane to apply what it appended. KS-6.4.5 */
const APPLIED_WAIT_MS = 5000;

/** What {@link flipRoutes} uses of the control plane. */
export interface FlipRouteParts {
  /** The log followed: the state a flip is checked against, and where it must be applied. */
  readonly follower: LogFollower;
  /** The fleet a flip's answer reports (and waits for, with `wait`). */
  readonly fleet: FleetView;
  /** Flip rate, active halts (KS-17.8.3). */
  readonly limits: FlipLimits;
  /** Where flips are appended. */
  readonly store: Pick<FlipLogStore, 'append'>;
  /** The release gate resumes pass (KS-10.5), when there is one. */
  readonly releaseGate: ReleaseGate | undefined;
  /** The role of the token that placed a halt, when it is still known (KS-17.5.1). */
  roleOf(actor: string): Role | undefined;
  /** Throws 503 unless the control plane vouches for its state (KS-12.5.2). */
  requireVouching(): void;
  /** Whether the control plane is closing (a wait ends). */
  closed(): boolean;
}

/**
 * `POST /v1/flips`: validates a halt or resume once, authorises it, appends it under one lock
 * (resumes through the release gate), answers only once this control plane applied it at its seq,
 * and with `wait` reports the fleet. KS-5.1.1 .. KS-5.1.4, KS-6.4.5
 */
export function flipRoutes(p: FlipRouteParts): Route[] {
  const { follower } = p;
  const mutex = new Mutex();

  /** What a flip asks to do; a resume names the halt it lifts and who placed it (KS-17.5.1). */
  const flipAction = (flip: {
    action: 'halt' | 'resume';
    selector: FlipRecord['selector'];
  }): Action => {
    if (flip.action === 'halt') return { kind: 'halt', selector: flip.selector };
    const halt = follower.state.get(flip.selector);
    if (halt === undefined) return { kind: 'resume', selector: flip.selector };
    return {
      kind: 'resume',
      selector: flip.selector,
      halt: { actor: halt.actor, actorRole: p.roleOf(halt.actor), seq: halt.seq },
    };
  };

  return [
    {
      method: 'POST',
      path: ApiPath.FLIPS,
      auth: 'authenticated',
      handle: async ({ res, principal, body, target }) => {
        const who = principal ?? ANONYMOUS;
        // KS-5.1.14 `?wait=` is honoured (validated like the body's) or the request refused.
        const query = parseQuery(flipQuerySchema, target, 'flip query');
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
          (flip.action !== 'resume' || p.releaseGate === undefined)
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
        authorize(who, flipAction(flip));
        // KS-17.8.3: the token's flip rate, before anything is appended.
        p.limits.takeFlip(who.name);
        p.requireVouching();
        // The section returns the append's promise itself (no async wrapper around it): each
        // promise a result passes through costs the flip a turn of the microtask queue.
        const result = await mutex.run(() => {
          const state = follower.state;
          const known = follower.hasId(flip.id);
          // KS-5.1.3: a resume that lifts nothing is refused, not appended (a retry of an appended
          // resume, same id, goes through to the store, which answers with the stored record).
          if (flip.action === 'resume' && !known && state.get(flip.selector) === undefined) {
            throw new KillSwitchError(
              ErrorCode.RESUME_REFUSED,
              'no active halt has exactly this selector; nothing to resume',
            );
          }
          // KS-17.8.3: a halt with a new selector must stay within maxActiveHalts.
          if (flip.action === 'halt' && !known && state.get(flip.selector) === undefined)
            p.limits.checkActiveHalts(state.size, 1);
          // KS-10.5.3, KS-10.5.6 gated under the flip lock; a retried resume already appended is not.
          const gate = flip.action === 'resume' && !known ? p.releaseGate : undefined;
          if (gate === undefined) return p.store.append(flip);
          return gate
            .checkOrOverride(flip, p.fleet.workers(), who, parsed.overrideGate)
            .then(() => p.store.append(flip));
        });
        // KS-6.4.5 never 2xx for a flip this control plane has not applied at its seq: applied
        // already (the usual case, the store tells the follower within its append), or waited for.
        const { record } = result;
        const applied =
          (follower.broken === undefined && follower.appliedHash(record.seq) === record.hash) ||
          (await follower.waitApplied(record.seq, record.hash, APPLIED_WAIT_MS));
        if (!applied) {
          throw new HttpError(
            503,
            follower.broken === undefined ? ErrorCode.STORE_UNAVAILABLE : ErrorCode.LOG_DIVERGED,
            `flip ${record.id} was written at seq ${record.seq}, but this control plane has not applied it there (${follower.broken ?? `not within ${APPLIED_WAIT_MS} ms`}); nothing was streamed to the fleet for it`,
          );
        }
        const waits = wait !== undefined && wait > 0;
        // The fleet as the tracker writes it (no match report: nothing to hide), or as an object.
        let fleetJson = waits ? undefined : p.fleet.statusJson(record.seq);
        if (fleetJson === undefined) {
          const fleet = waits
            ? // The caller hanging up ends the wait (the flip itself is durable already).
              await p.fleet.wait(record.seq, wait, () => p.closed() || res.destroyed)
            : (p.fleet.status(record.seq) ?? null);
          // KS-17.4.1 the match reports' near-miss values may name another tenant's contexts.
          fleetJson = JSON.stringify(fleetAsReadBy(who, record.selector, fleet));
        }
        sendJsonText(
          res,
          result.duplicate ? 200 : 201,
          flipAnswerText(record, result.duplicate, fleetJson, haltCoverage(record.selector)),
        );
      },
    },
  ];
}

/** A flip's fleet answer with only the near-miss values `who` may read (KS-17.4.1). */
function fleetAsReadBy(
  who: Principal,
  selector: FlipRecord['selector'],
  fleet: FlipAnswer['fleet'],
): FlipAnswer['fleet'] {
  const matched = fleet?.matched;
  if (fleet === null || matched === undefined || matched.similar.length === 0) return fleet;
  const similar = visibleSimilar(who, selector, matched.similar);
  return similar === matched.similar ? fleet : { ...fleet, matched: { ...matched, similar } };
}

/**
 * The JSON text of a {@link FlipAnswer}, members in its order: the record as encoded once when it
 * was chained (recordJson), not encoded again, and the rest written around it (no object built
 * to be stringified and sliced open).
 */
function flipAnswerText(
  record: FlipRecord,
  duplicate: FlipAnswer['duplicate'],
  fleetJson: string,
  covers: string,
): string {
  return `{"flip":${recordJson(record)},"duplicate":${duplicate ? 'true' : 'false'},"fleet":${fleetJson},"covers":${JSON.stringify(covers)}}`;
}
