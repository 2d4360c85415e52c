/**
 * The PostgreSQL side of the shared fleet (KS-8.8): the version-3 tables and their upgrade path,
 * acknowledgements committed before they are answered, and the read that covers lost
 * notifications. In-process control planes on the real server; the multi-process proof is
 * shared-fleet.test.ts.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore, SCHEMA_VERSION } from '../../providers/postgres/index.js';
import { ErrorCode } from '../../src/errors.js';
import type { WorkersAnswer } from '../../src/protocol/answers.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { PG_URL, RUN_PG, admin, dropSchemas, schemaName } from './pg-harness.js';

const schemas = new Set<string>();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(async () => {
  await dropSchemas(schemas);
});

const quiet = { info() {}, warn() {}, error() {} };

function fresh(tag: string): string {
  const s = schemaName(tag);
  schemas.add(s);
  return s;
}

function store(schema: string): PostgresFlipLogStore {
  const s = new PostgresFlipLogStore({ connectionString: PG_URL, schema, logger: { warn() {} } });
  cleanups.push(() => s.close());
  return s;
}

async function replica(schema: string, replicaId: string): Promise<ControlPlane> {
  const cp = await startControlPlane({
    store: store(schema),
    port: 0,
    auth: 'none',
    logger: quiet,
    replicaId,
  });
  cleanups.push(() => cp.close());
  return cp;
}

async function ack(cp: ControlPlane, workerId: string, seq: number) {
  const res = await fetch(`${cp.url}/v1/acks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ workerId, seq }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function workers(cp: ControlPlane): Promise<WorkersAnswer> {
  return (await (await fetch(`${cp.url}/v1/workers`)).json()) as WorkersAnswer;
}

describe.runIf(RUN_PG)('KS-8.8.1 schema version 3 holds the shared fleet', () => {
  it('creates replicas and fleet_acks, and upgrades a version-2 schema keeping its log', async () => {
    const schema = fresh('fleetmig');
    const a = store(schema);
    await a.append({ actor: 't', action: 'halt', selector: { tenant: 'x' }, reason: 'r' });
    await a.close();
    // What a version-2 library left: no fleet tables, schema_version 2.
    await admin(`DROP TABLE "${schema}".replicas, "${schema}".fleet_acks`);
    await admin(`UPDATE "${schema}".meta SET value = '2' WHERE key = 'schema_version'`);
    const b = store(schema);
    await b.open();
    expect((await b.read()).map((r) => r.selector)).toEqual([{ tenant: 'x' }]);
    const tables = await admin<{ t: string }>(
      `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`,
      [schema],
    );
    expect(tables.map((t) => t.t)).toEqual(['fleet_acks', 'flips', 'meta', 'releases', 'replicas']);
    expect(await admin(`SELECT value FROM "${schema}".meta WHERE key = 'schema_version'`)).toEqual([
      { value: String(SCHEMA_VERSION) },
    ]);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.8.2 KS-6.6.3 an acknowledgement is answered only once committed, with the head at the commit',
  () => {
    it('the row is in fleet_acks when the answer arrives, and the other replica lists the worker', async () => {
      const schema = fresh('fleetack');
      const a = await replica(schema, 'r-a');
      const b = await replica(schema, 'r-b');
      const answer = await ack(b, 'w1', 0);
      expect(answer.status).toBe(200);
      expect(answer.body['head']).toBe(0);
      const rows = await admin<{ replica_id: string; seq: string; answered_head: string }>(
        `SELECT replica_id, seq::text, answered_head::text FROM "${schema}".fleet_acks WHERE worker_id = 'w1'`,
      );
      expect(rows).toEqual([{ replica_id: 'r-b', seq: '0', answered_head: '0' }]);
      await ack(b, 'w1', 0);
      expect(
        await admin(
          `SELECT renewals::text AS n FROM "${schema}".fleet_acks WHERE worker_id = 'w1'`,
        ),
      ).toEqual([{ n: '2' }]);
      let seen: WorkersAnswer | undefined;
      const end = Date.now() + 5000;
      while (Date.now() < end) {
        seen = await workers(a);
        if (seen.workers.some((w) => w.id === 'w1')) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen!.workers).toEqual([expect.objectContaining({ id: 'w1', replica: 'r-b' })]);
      expect(seen!.replicas!.map((r) => [r.replica, r.self])).toEqual([
        ['r-a', true],
        ['r-b', false],
      ]);
    });

    it('KS-8.8.2 the renewal is one transaction sent as SQL literals: a release with quotes and backslashes arrives intact', async () => {
      const schema = fresh('fleetquote');
      const a = await replica(schema, 'r-a');
      const b = await replica(schema, 'r-b');
      const release = `v2 'it''s' \\ "q" $1 E'\\x'`;
      const res = await fetch(`${b.url}/v1/acks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ workerId: 'w-q1', release, seq: 0 }),
      });
      expect(res.status).toBe(200);
      const rows = await admin<{ worker_id: string; release: string }>(
        `SELECT worker_id, release FROM "${schema}".fleet_acks`,
      );
      expect(rows).toEqual([{ worker_id: 'w-q1', release }]);
      const end = Date.now() + 5000;
      let seen: WorkersAnswer | undefined;
      while (Date.now() < end) {
        seen = await workers(a);
        if (seen.workers.length > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen!.workers).toEqual([expect.objectContaining({ id: 'w-q1', release })]);
    });

    it('with the store unreachable for the fleet, an acknowledgement is 503 and renews nothing', async () => {
      const schema = fresh('fleetack503');
      const a = await replica(schema, 'r-a');
      await admin(`ALTER TABLE "${schema}".fleet_acks RENAME TO fleet_acks_gone`);
      const answer = await ack(a, 'w1', 0);
      expect(answer.status).toBe(503);
      expect(JSON.stringify(answer.body)).toMatch(/could not be shared/);
    });
  },
);

describe.runIf(RUN_PG)('KS-8.8.3 a change whose notification was lost is read within 5 s', () => {
  it('a row written without NOTIFY reaches the other replica by the periodic read', async () => {
    const schema = fresh('fleetsync');
    const a = await replica(schema, 'r-a');
    await admin(
      `INSERT INTO "${schema}".fleet_acks (worker_id, replica_id, seq, answered_head, renewals, connections) VALUES ('w-quiet', 'r-z', 0, 0, 1, 1)`,
    );
    await admin(
      `INSERT INTO "${schema}".replicas (replica_id, url, beat, head) VALUES ('r-z', 'http://z', 1, 0)`,
    );
    let listed = false;
    const end = Date.now() + 8000;
    while (!listed && Date.now() < end) {
      listed = (await workers(a)).workers.some((w) => w.id === 'w-quiet' && w.replica === 'r-z');
      if (!listed) await new Promise((r) => setTimeout(r, 100));
    }
    expect(listed).toBe(true);
  });
});

describe.runIf(RUN_PG)(
  'KS-6.6.7 a replica that cannot join the shared fleet does not start',
  () => {
    it('startControlPlane fails naming the shared fleet when the fleet tables are unusable', async () => {
      const schema = fresh('fleetjoin');
      const s = store(schema);
      await s.open();
      await admin(`DROP TABLE "${schema}".replicas`);
      await expect(
        startControlPlane({ store: s, port: 0, auth: 'none', logger: quiet }),
      ).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE, message: /shared fleet/ });
    });
  },
);
