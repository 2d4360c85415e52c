/**
 * KS-8.9 the release verdicts a PostgreSQL schema keeps for every replica (schema version 6):
 * gates on one schema give one answer, appends from several replicas chain one after the other,
 * the table is insert-only and chained like `flips`, a forged verdict refuses every resume, and
 * `shareReleases: false` keeps the gate on its own file (the replica-local gate of before).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import { canonicalJson } from '../../src/model/canonical-json.js';
import { chainRelease, releaseHash } from '../../src/integrity/release-chain.js';
import { SigningKey } from '../../src/integrity/signing-key.js';
import type { ReleaseRecord } from '../../src/protocol/releases.js';
import { ReleaseGate, startControlPlane } from '../../src/server/index.js';
import { PG_URL, RUN_PG, admin, dropSchemas, schemaName } from './pg-harness.js';

const quiet = { warn() {}, info() {}, error() {} };
const schemas = new Set<string>();
const cleanups: (() => Promise<unknown>)[] = [];
const dirs: string[] = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function newSchema(tag: string): string {
  const s = schemaName(tag);
  schemas.add(s);
  return s;
}

/** A gate opened on its own store of `schema`, as one replica's control plane opens it. */
async function replicaGate(
  schema: string,
  key?: SigningKey,
): Promise<{ gate: ReleaseGate; store: PostgresFlipLogStore }> {
  const store = new PostgresFlipLogStore({
    connectionString: PG_URL,
    schema,
    logger: quiet,
    ...(key === undefined ? {} : { signingKey: key }),
  });
  const gate = new ReleaseGate({
    logger: quiet,
    ...(key === undefined ? {} : { signingKey: key }),
  });
  await gate.open(store);
  cleanups.push(
    () => store.close(),
    () => gate.close(),
  );
  return { gate, store };
}

const worker = (release: string) => ({
  id: `w-${release}`,
  release,
  connected: true,
  stale: false,
});

async function refusal(p: Promise<unknown>): Promise<{ code?: string; message?: string }> {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: string; message?: string } | undefined;
  expect(err, 'refused').toBeDefined();
  return err!;
}

describe.runIf(RUN_PG)('KS-8.9.3 every replica reads the verdicts any replica recorded', () => {
  it('a red verdict recorded through B refuses a resume checked on A, and a green one on B opens it', async () => {
    const schema = newSchema('relgate');
    const a = await replicaGate(schema);
    const b = await replicaGate(schema);
    await a.gate.record({ release: 'v2', status: 'green' }, 'admin');
    await b.gate.record({ release: 'v1', status: 'red', reason: 'bad' }, 'admin');
    const fleet = [worker('v1')] as never[];
    const err = await refusal(a.gate.checkResume('v2', fleet));
    expect(err.code).toBe('KS_RESUME_REFUSED');
    expect(err.message).toContain('w-v1 (v1)');
    await b.gate.record({ release: 'v1', status: 'green' }, 'admin');
    await expect(a.gate.checkResume('v2', fleet)).resolves.toBeUndefined();
    expect(await a.gate.list()).toEqual(await b.gate.list());
  });

  it('KS-8.9.2 appends from two replicas at once chain densely, each on the other', async () => {
    const schema = newSchema('relrace');
    const key = SigningKey.generate();
    const a = await replicaGate(schema, key);
    const b = await replicaGate(schema, key);
    const recorded = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        (i % 2 === 0 ? a : b).gate.record(
          { release: `r${i % 5}`, status: i % 3 === 0 ? 'red' : 'green' },
          `op${i}`,
        ),
      ),
    );
    expect(recorded.map((r) => r.seq).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 24 }, (_, i) => i + 1),
    );
    const rows = await admin<{
      seq: string;
      prev: string;
      hash: string;
      body: string;
      sig: string;
    }>(`SELECT seq::text AS seq, prev, hash, body, sig FROM "${schema}".releases r ORDER BY r.seq`);
    let prev = '0'.repeat(64);
    for (const row of rows) {
      expect(row.prev).toBe(prev);
      expect(row.sig).toMatch(/^[0-9a-f]{16}:/);
      prev = row.hash;
    }
    // A third replica opening now reads, checks and agrees.
    const c = await replicaGate(schema, key);
    expect(await c.gate.list()).toEqual(await a.gate.list());
  });
});

describe.runIf(RUN_PG)('KS-8.9.1 the releases table is insert-only and chained', () => {
  it('refuses update, delete, truncate and a row that does not extend the chain, even from the owner', async () => {
    const schema = newSchema('relrules');
    const { gate } = await replicaGate(schema);
    await gate.record({ release: 'v1', status: 'green' }, 'admin');
    const s = `"${schema}".releases`;
    for (const sql of [`UPDATE ${s} SET body = body`, `DELETE FROM ${s}`, `TRUNCATE ${s}`]) {
      await expect(admin(sql), sql).rejects.toMatchObject({ code: 'KS002' });
    }
    const body = canonicalJson({
      seq: 5,
      release: 'v1',
      status: 'red',
      actor: 'x',
      at: 'now',
      prev: '0'.repeat(64),
    });
    await expect(
      admin(`SELECT "${schema}".append_release(5, repeat('0', 64), $1, $2, NULL)`, [
        releaseHash(JSON.parse(body) as ReleaseRecord),
        body,
      ]),
    ).rejects.toMatchObject({
      code: 'KS001',
      message: expect.stringMatching(/does not follow the head seq 1/),
    });
  });

  it('KS-17.7.6 an unsigned verdict after signed ones is refused by the table; one signed by another key, or chained with the triggers off, refuses every resume on every replica', async () => {
    const schema = newSchema('relforge');
    const key = SigningKey.generate();
    const a = await replicaGate(schema, key);
    const b = await replicaGate(schema, key);
    const first = await a.gate.record({ release: 'v1', status: 'red', reason: 'INC-3' }, 'admin');
    await b.gate.record({ release: 'v2', status: 'green' }, 'admin');
    await a.gate.list();
    const last = (await b.gate.list()).at(-1)!;
    expect(last.seq).toBe(2);
    // Someone with the database's credentials but not the key turns v1 green.
    const forged = chainRelease(
      { seq: 3, release: 'v1', status: 'green', reason: 'all good', actor: 'admin', at: first.at },
      last.hash!,
      undefined,
    );
    const { hash, ...rest } = forged;
    const body = canonicalJson(rest);
    await expect(
      admin(`SELECT "${schema}".append_release(3, $1, $2, $3, NULL)`, [last.hash, hash, body]),
    ).rejects.toMatchObject({ code: 'KS001', message: expect.stringMatching(/not signed/) });
    // With another key's signature it passes the table's presence rule, not the gates' check.
    const other = chainRelease({ ...rest }, last.hash!, SigningKey.generate());
    await admin(`SELECT "${schema}".append_release(3, $1, $2, $3, $4)`, [
      last.hash,
      other.hash,
      body,
      other.sig,
    ]);
    for (const r of [a, b]) {
      const err = await refusal(r.gate.checkResume('v2', []));
      expect(err.code).toBe('KS_JOURNAL_CORRUPT');
      expect(err.message).toMatch(/corrupt at seq 3: signature does not verify/);
      // It stays refused, and recording more is refused too: nothing chains onto a forgery.
      expect((await refusal(r.gate.checkResume('v2', []))).code).toBe('KS_JOURNAL_CORRUPT');
      expect((await refusal(r.gate.record({ release: 'v3', status: 'green' }, 'admin'))).code).toBe(
        'KS_JOURNAL_CORRUPT',
      );
    }
    // A replica opening on the forged table refuses to start its gate.
    const store = new PostgresFlipLogStore({ connectionString: PG_URL, schema, logger: quiet });
    cleanups.push(() => store.close());
    const gate = new ReleaseGate({ logger: quiet, signingKey: key });
    await expect(gate.open(store)).rejects.toMatchObject({ code: 'KS_JOURNAL_CORRUPT' });
  });

  it('a row rewritten with the triggers off (superuser) is caught by the chain', async () => {
    const schema = newSchema('reledit');
    const a = await replicaGate(schema);
    await a.gate.record({ release: 'v1', status: 'red', reason: 'INC-4' }, 'admin');
    await a.gate.record({ release: 'v2', status: 'green' }, 'admin');
    await admin(`ALTER TABLE "${schema}".releases DISABLE TRIGGER USER`);
    await admin(
      `UPDATE "${schema}".releases SET body = replace(body, '"status":"red"', '"status":"green"') WHERE seq = 1`,
    );
    await admin(`ALTER TABLE "${schema}".releases ENABLE TRIGGER USER`);
    const b = await replicaGate(schema).catch((e: unknown) => e);
    expect(b).toMatchObject({
      code: 'KS_JOURNAL_CORRUPT',
      message: expect.stringMatching(/seq 1: hash does not match/),
    });
  });
});

describe.runIf(RUN_PG)('KS-8.9.4 shareReleases: false keeps a replica-local gate', () => {
  it('on false the verdicts go to the gate file and the table stays empty; by default they go to the table', async () => {
    const schema = newSchema('reloff');
    const dir = await mkdtemp(join(tmpdir(), 'ks-release-off-'));
    dirs.push(dir);
    const run = async (shareReleases: boolean | undefined, file: string) => {
      const store = new PostgresFlipLogStore({ connectionString: PG_URL, schema, logger: quiet });
      const gate = new ReleaseGate({ path: join(dir, file), logger: quiet });
      const cp = await startControlPlane({
        store,
        releaseGate: gate,
        port: 0,
        auth: 'none',
        logger: quiet,
        ...(shareReleases === undefined ? {} : { shareReleases }),
      });
      cleanups.push(
        () => store.close(),
        () => gate.close(),
        () => cp.close(),
      );
      const res = await fetch(`${cp.url}/v1/releases`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ release: `via-${file}`, status: 'red' }),
      });
      expect(res.status).toBe(201);
    };
    await run(false, 'off.jsonl');
    expect(await readFile(join(dir, 'off.jsonl'), 'utf8')).toContain('"release":"via-off.jsonl"');
    expect(await admin(`SELECT count(*)::int AS n FROM "${schema}".releases`)).toEqual([{ n: 0 }]);
    await run(undefined, 'on.jsonl');
    await expect(readFile(join(dir, 'on.jsonl'), 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    const rows = await admin<{ body: string }>(`SELECT body FROM "${schema}".releases`);
    expect(rows.map((r) => (JSON.parse(r.body) as ReleaseRecord).release)).toEqual([
      'via-on.jsonl',
    ]);
  });
});
