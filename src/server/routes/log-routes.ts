import type { LogAnswer } from '../../protocol/answers.js';
import { logQuerySchema } from '../../protocol/flip-request.js';
import { ApiPath } from '../../protocol/paths.js';
import type { FlipLogStore } from '../../store/flip-log-store.js';
import { sendJson } from '../internal/http-io.js';
import type { Route } from '../router.js';
import { parseQuery } from './route-support.js';
import { readLogPage, readViewOf } from '../read-view.js';

/** What {@link logRoutes} reads. */
export interface LogRouteView {
  /** The flip log. */
  readonly store: Pick<FlipLogStore, 'read' | 'head'>;
  /** Throws 503 unless the control plane vouches for its state (KS-12.5.2). */
  requireVouching(): void;
}

/**
 * `GET /v1/flips?after=&limit=` (any authenticated role): a page of the log, the head, and
 * `next` (the `after` of the next page, or null). KS-5.1; a scoped reader sees only the flips it
 * may read, and `next` is the last record examined (KS-17.4.1, KS-17.4.2).
 */
export function logRoutes(view: LogRouteView): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.FLIPS,
      auth: 'authenticated',
      handle: async ({ res, url, principal }) => {
        const q = parseQuery(logQuerySchema, url, 'log query');
        view.requireVouching();
        // KS-17.4.1, KS-17.4.2 a scoped reader's page holds only the flips it may read.
        const page = await readLogPage(view.store, q.after, q.limit, readViewOf(principal));
        const answer: LogAnswer = { flips: page.flips, head: page.head, next: page.next };
        sendJson(res, 200, answer);
      },
    },
  ];
}
