/**
 * KS-8.5.7, KS-6.4 over the wire: two `killswitch serve` replicas on one PostgreSQL schema, a
 * worker (the real remote source) on them, and a superuser who deletes the tail of the log.
 * Every replica stops vouching on its next poll, the worker fails closed within its lease, and no
 * flip is answered 2xx afterwards.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { Recorder } from '../fixtures/remote-source.js';
import {
  SUITE_TOKENS,
  assertBuilt,
  httpJson,
  startServe,
  type ServeProcess,
} from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, admin, dropSchemas, schemaName } from './pg-harness.js';

const schemas = new Set<string>();
const children = new Set<ChildProcess>();
const sources = new Set<RemoteFlipSource>();
const dirs: string[] = [];

afterEach(async () => {
  for (const s of sources) await s.stop();
  sources.clear();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** `killswitch serve --store postgres://…?schema=…` with the suite's tokens (a worker token too). */
async function replica(schema: string): Promise<ServeProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-pg-regress-'));
  dirs.push(dataDir);
  const p = await startServe({
    dataDir,
    store: `${PG_URL}?schema=${schema}`,
    heartbeatMs: 200,
    staleAfterMs: 1500,
  });
  children.add(p.child);
  return p;
}

async function halt(url: string, tenant: string) {
  return httpJson(`${url}/v1/flips`, 'POST', {
    token: SUITE_TOKENS.admin,
    body: { action: 'halt', selector: { tenant }, reason: `pg regression ${tenant}` },
  });
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.runIf(RUN_PG)('KS-8.5.7 KS-6.4.4 a PostgreSQL tail deleted by a superuser', () => {
  it('every replica stops vouching and names it, the worker fails closed, no flip answers 2xx', async () => {
    assertBuilt();
    const schema = schemaName('regress');
    schemas.add(schema);
    const a = await replica(schema);
    const b = await replica(schema);
    const source = new RemoteFlipSource({
      urls: [a.url, b.url],
      token: SUITE_TOKENS.worker,
      workerId: 'w-pg',
      staleAfterMs: 1500,
      heartbeatMs: 200,
      backoff: { initialMs: 50, maxMs: 200 },
      logger: { warn: () => undefined },
    });
    sources.add(source);
    const rec = new Recorder();
    await source.start(rec);
    await until(() => rec.status === 'open', 'the worker to open');
    for (const t of ['t1', 't2', 't3']) expect((await halt(a.url, t)).status).toBe(201);
    await until(() => source.appliedSeq === 3, 'the worker to apply seq 3');

    await admin(
      `BEGIN; ALTER TABLE "${schema}".flips DISABLE TRIGGER flips_insert_only; ` +
        `DELETE FROM "${schema}".flips WHERE seq > 1; ` +
        `ALTER TABLE "${schema}".flips ENABLE TRIGGER flips_insert_only; COMMIT`,
    );
    const cutAt = Date.now();
    for (const r of [a, b]) {
      await until(
        async () => (await httpJson(`${r.url}/healthz`, 'GET')).status === 503,
        `${r.url} to stop vouching`,
      );
      const h = await httpJson(`${r.url}/healthz`, 'GET');
      expect(h.json.reason).toMatch(/database now holds log \S+ at seq 1 .*moved backwards/);
    }
    // The worker's lease is not renewed by any replica: it fails closed within it.
    await until(() => rec.status === 'stale', 'the worker to fail closed', 5000);
    expect(Date.now() - cutAt).toBeLessThan(1000 + 1500 + 2000);
    for (const r of [a, b]) {
      const refused = await halt(r.url, 'after-cut');
      expect(refused.status).toBe(503);
    }
    // Nothing was appended at a reused seq behind everyone's back either.
    const rows = await admin<{ n: string }>(`SELECT count(*)::text AS n FROM "${schema}".flips`);
    expect(rows[0]!.n).toBe('1');
    expect(rec.status).toBe('stale');
  });
});
