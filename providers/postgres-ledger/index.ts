export {
  PostgresSideEffectLedger,
  type PostgresSideEffectLedgerOptions,
} from './postgres-side-effect-ledger.js';
