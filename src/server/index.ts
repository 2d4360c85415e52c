export {
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
  type ControlPlaneLogger,
  type FlipAnswer,
  type AckAnswer,
  type LogAnswer,
  type WorkersAnswer,
  type HealthAnswer,
} from './control-plane.js';
export {
  FleetTracker,
  type FleetTrackerOptions,
  type FlipFleetStatus,
  type AckedWorker,
  type Laggard,
  type WorkerInfo,
} from './fleet-tracker.js';
export {
  Router,
  type Route,
  type RouteContext,
  type RouteMatch,
  type HttpMethod,
} from './router.js';
export {
  flipRequestSchema,
  logQuerySchema,
  streamQuerySchema,
  MAX_WAIT_MS,
  type FlipRequest,
} from '../protocol/flip-request.js';
export { ackRequestSchema, type AckRequest } from '../protocol/acks.js';
export { encodeEvent } from '../protocol/stream-events.js';
export { isLoopbackHost } from '../auth/is-loopback-host.js';
export { checkpointRoutes } from './checkpoint-route.js';
export {
  ReleaseGate,
  ReleaseStatus,
  releaseRequestSchema,
  releaseRoutes,
  type ReleaseGateOptions,
  type ReleaseRecord,
  type ReleaseRequest,
  type ReleasesAnswer,
} from './release-gate.js';
export {
  alertmanagerRoute,
  mountAlertmanager,
  alertmanagerPayloadSchema,
  ALERTMANAGER_PATH,
} from './alertmanager-webhook.js';
// KS-17.7.1 the signing key of stores, checkpoints and snapshots, and the keys verifiers trust.
export { SigningKey, PublicKeyRing } from '../integrity/signing-key.js';
