import type { ControlPlaneClient } from '../client/control-plane-client.js';
import type { QueueMode } from '../model/flip-record.js';
import type { Selector } from '../model/selector.js';
import type { FlipLogStore } from '../store/flip-log-store.js';

/** The halt a tripwire asks for. */
export interface TripwireFlipRequest {
  /** Idempotency key: the same trip retried is the same flip. */
  readonly id: string;
  readonly selector: Selector;
  /** Says what tripped, with the figures. */
  readonly reason: string;
  readonly mode: QueueMode;
  /** Always `tripwire`. */
  readonly source: 'tripwire';
}

/**
 * Appends a tripwire's halt; resolves once it is durable, rejects when it is not (the tripwire
 * then keeps the scope refused and retries).
 */
export type TripwireFlip = (request: TripwireFlipRequest) => Promise<void>;

/**
 * A {@link TripwireFlip} over the control plane's HTTP API: `POST /v1/flips`. The token needs an
 * operator scope covering the selectors the tripwire may halt (or admin); the flip's actor is the
 * token's name.
 *
 * @example
 * ```ts
 * const flip = controlPlaneTripwireFlip(new ControlPlaneClient({ url, token: process.env.TRIPWIRE_TOKEN }));
 * ```
 */
export function controlPlaneTripwireFlip(client: Pick<ControlPlaneClient, 'flip'>): TripwireFlip {
  return async (r) => {
    await client.flip({
      action: 'halt',
      id: r.id,
      selector: r.selector,
      reason: r.reason,
      mode: r.mode,
      source: r.source,
    });
  };
}

/**
 * A {@link TripwireFlip} that appends to a flip-log store directly (an embedded deployment where
 * the worker holds the log).
 *
 * @param actor - the flip's actor. @default 'tripwire'
 */
export function storeTripwireFlip(
  store: Pick<FlipLogStore, 'append'>,
  actor = 'tripwire',
): TripwireFlip {
  return async (r) => {
    await store.append({
      id: r.id,
      actor,
      action: 'halt',
      selector: r.selector,
      reason: r.reason,
      mode: r.mode,
      source: r.source,
    });
  };
}
