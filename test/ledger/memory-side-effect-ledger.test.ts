import { describeLedgerConformance } from './side-effect-ledger.conformance.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';

describeLedgerConformance('MemorySideEffectLedger', {
  create: async () => new MemorySideEffectLedger(),
});
