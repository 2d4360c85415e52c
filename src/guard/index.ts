export {
  EffectGuard,
  type EffectGuardOptions,
  type GuardedEffect,
  type EffectBody,
  type EffectInfo,
  type ResultCodec,
} from './effect-guard.js';
export { DuplicateEffectError, DuplicateState } from './duplicate-effect-error.js';
export { FailClosedKillStrategy } from './fail-closed-kill-strategy.js';
export { HaltWatcher, type HaltListener } from './halt-watcher.js';
export {
  evaluateKill,
  decide,
  flipFromMetadata,
  toEvaluationContext,
  type KillDecision,
} from './kill-decision.js';
export { DrainPermit, drainPermits, watchUnlessDrained } from './drain-permit.js';
