import { describe, expect, it } from 'vitest';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import type { FlipLogStore } from '../../src/store/flip-log-store.js';
import { systemClock, type Clock } from '../../src/internal/clock.js';
import { describeFlipLogStoreConformance } from '../../src/testing/flip-log-store-conformance.js';
import { IN_CI, PG_UP, PG_URL, RUN_PG, dropSchemas, schemaName } from './pg-harness.js';

describe('KS-8.7.1 the PostgreSQL tests have a server', () => {
  it.runIf(IN_CI)('PostgreSQL answers at KS_PG_URL (CI must not skip these tests)', () => {
    expect(PG_UP, `no PostgreSQL at ${PG_URL}`).toBe(true);
  });
});

const schemas = new Set<string>();
const schemaOf = new WeakMap<FlipLogStore, string>();

function make(schema: string, clock: Clock): FlipLogStore {
  const store = new PostgresFlipLogStore({ connectionString: PG_URL, schema, clock, poolSize: 4 });
  schemaOf.set(store, schema);
  return store;
}

describe.runIf(RUN_PG)(
  'KS-2.4.3 KS-8.7.2 the PostgreSQL store passes the conformance suite',
  () => {
    let lastClock: Clock = systemClock;
    describeFlipLogStoreConformance('postgres', {
      async create({ clock }) {
        const schema = schemaName('conf');
        schemas.add(schema);
        lastClock = clock;
        return make(schema, clock);
      },
      async reopen(store) {
        await store.close();
        return make(schemaOf.get(store)!, lastClock);
      },
      async cleanup() {
        await dropSchemas(schemas);
      },
      numRuns: 15,
    });
  },
);
