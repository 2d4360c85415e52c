import type { KillSnapshot } from '../../model/kill-state.js';
import { ApiPath } from '../../protocol/paths.js';
import { sendJson } from '../internal/http-io.js';
import type { Route } from '../router.js';
import { readViewOf, snapshotFor } from '../read-view.js';

/** What {@link stateRoutes} reads from the control plane. */
export interface StateRouteView {
  /** Throws 503 unless the control plane vouches for its state (KS-12.5.2). */
  requireVouching(): void;
  /** The current kill state. */
  snapshot(): KillSnapshot;
}

/** `GET /v1/state` (any authenticated role): the kill state, the active halts and the seq. KS-5.1 */
export function stateRoutes(view: StateRouteView): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.STATE,
      auth: 'authenticated',
      handle: ({ res, principal }) => {
        view.requireVouching();
        // KS-17.4.1 a scoped reader sees the halts it may read (the seq and hash are everyone's).
        sendJson(res, 200, snapshotFor(view.snapshot(), readViewOf(principal)));
      },
    },
  ];
}
