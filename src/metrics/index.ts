export {
  ControlPlaneMetrics,
  mountMetrics,
  type ControlPlaneMetricsOptions,
  type MetricsSource,
} from './control-plane-metrics.js';
export { GuardMetrics, type GuardMetricsOptions } from './guard-metrics.js';
