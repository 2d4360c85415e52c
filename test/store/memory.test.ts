import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { describeFlipLogStoreConformance } from '../../src/testing/flip-log-store-conformance.js';

// The oracle runs the suite too, so the suite itself is checked against the reference store.
describeFlipLogStoreConformance('memory', {
  create: async ({ clock }) => new MemoryFlipLogStore({ clock }),
});
