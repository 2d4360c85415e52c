export {
  SELECTOR_KEYS,
  Level,
  LEVELS,
  selectorSchema,
  parseSelector,
  normalizeSelector,
  levelOf,
  selectorMatches,
  selectorEquals,
  formatSelector,
  haltCoverage,
  type Selector,
  type SelectorKey,
  type KillContext,
} from './selector.js';
export {
  QueueMode,
  DEFAULT_QUEUE_MODE,
  FlipAction,
  GENESIS_HASH,
  flipInputSchema,
  flipRecordSchema,
  parseFlipInput,
  parseFlipRecord,
  computeHash,
  verifyRecordHash,
  type FlipRecord,
  type FlipInput,
  type NormalizedFlip,
} from './flip-record.js';
export { canonicalJson } from './canonical-json.js';
export {
  KillState,
  killSnapshotSchema,
  type KillSnapshot,
  type StateChange,
} from './kill-state.js';
export {
  KILL_SWITCH_FLAG,
  LEVEL_FLAGS,
  KILL_FLAG_KEYS,
  isKillFlag,
  levelOfFlag,
  flagsChangedBy,
  type KillFlagKey,
} from './flags.js';
export { HaltCause, type FlipSummary } from './halt-cause.js';
