export {
  EffectStatus,
  EFFECT_STATUSES,
  effectKey,
  ledgerEventSchema,
  parseLedgerEvent,
  foldLedgerEvent,
  foldLedgerEvents,
  matchesFilter,
  inDoubt,
  type Compensation,
  type LedgerEvent,
  type LedgerEntry,
  type LedgerFilter,
  type SideEffectLedger,
} from './side-effect-ledger.js';
export { MemorySideEffectLedger } from './memory-side-effect-ledger.js';
export {
  FileSideEffectLedger,
  type FileSideEffectLedgerOptions,
} from './file-side-effect-ledger.js';
export { LedgerCorruptError } from './ledger-corrupt-error.js';
