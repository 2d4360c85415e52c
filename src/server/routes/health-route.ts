import type { Vouch } from '../../ofrep/ofrep-routes.js';
import type { HealthAnswer } from '../../protocol/answers.js';
import { ApiPath } from '../../protocol/paths.js';
import { sendJson } from '../internal/http-io.js';
import type { Route } from '../router.js';

/** What {@link healthRoutes} reads from the control plane. */
export interface HealthRouteView {
  /** Whether the control plane vouches for its state now (KS-12.5.1). */
  vouch(): Vouch;
  /** The head seq applied. */
  head(): number;
  /** The store's kind (`file`, `postgres`, `memory`). */
  readonly storeKind: string;
  /** Open streams. */
  subscribers(): number;
}

/**
 * `GET /healthz` (public): 200 `{ ok: true, head, store, subscribers }` while the control plane
 * vouches for its state, else 503 with `ok: false` and the reason (KS-12.5, KS-6.4.4).
 */
export function healthRoutes(view: HealthRouteView): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.HEALTH,
      auth: 'public',
      handle: ({ res }) => {
        const v = view.vouch();
        const body: HealthAnswer = {
          ok: v.ok,
          head: view.head(),
          store: view.storeKind,
          subscribers: view.subscribers(),
          ...(v.ok ? {} : { reason: v.detail }),
        };
        sendJson(res, v.ok ? 200 : 503, body);
      },
    },
  ];
}
