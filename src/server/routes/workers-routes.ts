import type { WorkersAnswer } from '../../protocol/answers.js';
import { ApiPath } from '../../protocol/paths.js';
import type { FleetView } from '../fleet-view.js';
import { sendJson } from '../internal/http-io.js';
import type { Route } from '../router.js';

/** What {@link workersRoutes} reads from the control plane. */
export interface WorkersRouteView {
  /** The fleet (the whole fleet when the store shares it). */
  readonly fleet: FleetView;
  /** The head seq this control plane applied. */
  head(): number;
}

/**
 * `GET /v1/workers` (any authenticated role): every worker with its lease, and in a shared fleet
 * the replica each is on and the replicas themselves (KS-6.6.6).
 */
export function workersRoutes(view: WorkersRouteView): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.WORKERS,
      auth: 'authenticated',
      handle: ({ res }) => {
        const { tracker } = view.fleet;
        const replicas = view.fleet.replicas(view.head());
        const answer: WorkersAnswer = {
          head: tracker.head,
          staleAfterMs: tracker.staleAfterMs,
          leaseMarginMs: tracker.leaseMarginMs,
          workers: view.fleet.workers(),
          ...(replicas === undefined ? {} : { replicas }),
        };
        sendJson(res, 200, answer);
      },
    },
  ];
}
