/**
 * openfeature-kill-switch/drill: run a kill-switch drill programmatically (what `killswitch drill`
 * does), or use its parts: the scenario schema, the effect sink, the slow LLM server, the pure
 * measurements and the report writer. KS-9
 */
export {
  scenarioSchema,
  leverSchema,
  trafficSchema,
  targetsSchema,
  timingsSchema,
  parseScenario,
  loadScenario,
  leverTarget,
  workerIdOf,
  runIdOf,
  type Scenario,
  type Lever,
  type Traffic,
  type Targets,
} from './scenario.js';
export {
  runDrill,
  type RunDrillOptions,
  type DrillOutcome,
  type DrillScope,
} from './run/run-drill.js';
export { fleetLevers } from './run/fleet.js';
export { DrillInterruptedError } from './run/drill-interrupted.js';
export {
  startEffectSink,
  type EffectSink,
  type EffectSinkOptions,
  type SinkEffect,
} from './servers/effect-sink.js';
export {
  startSlowLlmServer,
  type SlowLlmServer,
  type SlowLlmServerOptions,
  type SlowLlmStats,
} from './servers/slow-llm-server.js';
export {
  percentile,
  stopTimes,
  measureEffects,
  measureSchedules,
  measureCancelled,
  checkLedger,
  dispatchedAt,
  appliedAtOf,
  type HaltWindow,
  type LedgerView,
} from './measure/measure.js';
export { checkTargets, type DrillMeasurements } from './measure/check-targets.js';
export {
  writeDrillReport,
  renderMarkdown,
  renderSvg,
  type WrittenReport,
} from './report/report-writer.js';
export type {
  DrillReport,
  LeverResult,
  LeverEffects,
  LeverSchedules,
  LedgerCheck,
  Violation,
  WorkerStop,
  WorkerSummary,
} from './report/drill-report.js';
export { WorkerVariant, WORKER_VARIANTS } from './internal/protocol.js';
