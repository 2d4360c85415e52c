import type { LogAnswer } from '../../protocol/answers.js';
import { logQuerySchema } from '../../protocol/flip-request.js';
import { ApiPath } from '../../protocol/paths.js';
import type { FlipLogStore } from '../../store/flip-log-store.js';
import { sendJson } from '../internal/http-io.js';
import type { Route } from '../router.js';
import { parseQuery } from './route-support.js';

/** What {@link logRoutes} reads. */
export interface LogRouteView {
  /** The flip log. */
  readonly store: Pick<FlipLogStore, 'read' | 'head'>;
  /** Throws 503 unless the control plane vouches for its state (KS-12.5.2). */
  requireVouching(): void;
}

/**
 * `GET /v1/flips?after=&limit=` (any authenticated role): a page of the log, the head, and
 * `next` (the `after` of the next page, or null). KS-5.1
 */
export function logRoutes(view: LogRouteView): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.FLIPS,
      auth: 'authenticated',
      handle: async ({ res, url }) => {
        const q = parseQuery(logQuerySchema, url, 'log query');
        view.requireVouching();
        const flips = await view.store.read({ after: q.after, limit: q.limit });
        const head = (await view.store.head()).seq;
        const last = flips.at(-1)?.seq;
        const answer: LogAnswer = {
          flips,
          head,
          next: last !== undefined && last < head ? last : null,
        };
        sendJson(res, 200, answer);
      },
    },
  ];
}
