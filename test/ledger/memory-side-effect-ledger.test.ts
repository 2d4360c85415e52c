import { describeLedgerConformance } from '../../src/testing/side-effect-ledger-conformance.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';

describeLedgerConformance('MemorySideEffectLedger', {
  create: async () => new MemorySideEffectLedger(),
});
