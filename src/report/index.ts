export {
  buildRecoveryReport,
  compensationsOf,
  countEffects,
  entryMatches,
  formatRecoveryReport,
  type CompensationItem,
  type EffectCounts,
  type RecoveryReport,
  type ReportFilter,
  type ReportedEffect,
  type RunReport,
} from './recovery-report.js';
