export {
  ofrepRoutes,
  OFREP_PATHS,
  type OfrepRoutesOptions,
  type OfrepStateView,
  type OfrepEvaluation,
  type OfrepFailure,
  type Vouch,
} from './ofrep-routes.js';
export { HaltPoller, type HaltPollerOptions } from './halt-poller.js';
export { timeoutFetch, type TimeoutFetchOptions } from './timeout-fetch.js';
