import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import type { FlipRecord } from '../../src/model/flip-record.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { SseReader } from '../server/sse-reader.js';
import { PG_URL, RUN_PG, dropSchemas, schemaName } from './pg-harness.js';

/**
 * KS-6.1.4 on a shared log: a client resuming on a replica that is behind the one it came from
 * (by `Last-Event-ID`) gets exactly the records after its id once this replica caught up, not a
 * snapshot older than what it applied (which a worker must refuse as a log moved backwards) and
 * not a record it already has. Two in-process replicas on one schema; B's store delivers what
 * it follows 400 ms late, so B is reliably behind A.
 */

const schemas = new Set<string>();
const cleanups: (() => Promise<unknown>)[] = [];
const readers: SseReader[] = [];
afterEach(async () => {
  for (const r of readers.splice(0)) r.close();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(async () => {
  await dropSchemas(schemas);
});

const quiet = { info() {}, warn() {}, error() {} };
const LAG_MS = 400;

/** A real store whose subscribers hear each record `lagMs` late (a replica behind). */
function lagging(store: PostgresFlipLogStore, lagMs: number): PostgresFlipLogStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'subscribe') {
        return (cb: (r: FlipRecord) => void) =>
          target.subscribe((r) => void setTimeout(() => cb(r), lagMs));
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function replica(schema: string, lagMs = 0): Promise<ControlPlane> {
  const store = new PostgresFlipLogStore({
    connectionString: PG_URL,
    schema,
    logger: { warn() {} },
  });
  cleanups.push(() => store.close());
  const cp = await startControlPlane({
    store: lagMs > 0 ? lagging(store, lagMs) : store,
    port: 0,
    auth: 'none',
    logger: quiet,
    maxFlipsPerSecond: 100_000,
  });
  cleanups.push(() => cp.close());
  return cp;
}

async function halt(cp: ControlPlane, id: string): Promise<FlipRecord> {
  const res = await fetch(`${cp.url}/v1/flips`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id, action: 'halt', selector: { tenant: id }, reason: 'catch-up test' }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { flip: FlipRecord }).flip;
}

describe.runIf(RUN_PG)('KS-6.1.4 a resume beyond a replica head on a shared log', () => {
  it('waits for the replica to catch up, then replays exactly: no snapshot, no record twice', async () => {
    const schema = schemaName('catchup');
    schemas.add(schema);
    const a = await replica(schema);
    const b = await replica(schema, LAG_MS);
    const first = await halt(a, 'one');
    // A applied seq 1; B hears of it LAG_MS later. A client of A resumes on B at once.
    expect(b.snapshot().seq).toBe(0);
    const { res, reader } = await SseReader.open(`${b.url}/v1/stream`, {
      'last-event-id': String(first.seq),
    });
    readers.push(reader);
    expect(res.status).toBe(200);
    expect(b.snapshot().seq).toBe(first.seq);
    const second = await halt(a, 'two');
    const e = await reader.nextNonHeartbeat(5000);
    expect(e.event).toBe('flip');
    expect((JSON.parse(e.data) as FlipRecord).seq).toBe(second.seq);
  }, 30_000);
});
