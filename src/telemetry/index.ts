export {
  FeatureFlagSpanHook,
  FEATURE_FLAG_EVALUATION_EVENT,
  evaluationAttributes,
  type FeatureFlagSpanHookOptions,
} from './feature-flag-span-hook.js';
export { traceGuard, GuardSpanEvent, type TraceGuardOptions } from './trace-guard.js';
export {
  loadOpenTelemetryApi,
  type OpenTelemetryApiLike,
  type SpanLike,
  type SpanAttributeValue,
} from './load-opentelemetry.js';
export type { GuardRunner } from './guard-runner.js';
