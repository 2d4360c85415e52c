/**
 * KS-8.9 release verdicts shared through the PostgreSQL store, over the wire with real processes:
 * two `killswitch serve` replicas (the compiled CLI) on one schema and a worker process on a red
 * release. Issue 14: each replica kept its own releases.jsonl, so a red verdict recorded on B did
 * not block a resume posted to A. Run `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ReleasesAnswer } from '../../src/protocol/releases.js';
import type { WorkersAnswer } from '../../src/protocol/answers.js';
import { startServe, type ServeProcess } from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, admin, dropSchemas, schemaName, until } from './pg-harness.js';

const WORKER = resolve('dist/test/fixtures/fleet-worker.js');
const TOKEN = 'pg-shared-releases-admin-token-0123456789';
const STALE_MS = 4000;
const HEARTBEAT_MS = 200;

const schemas = new Set<string>();
const children = new Set<ChildProcess>();
const dirs: string[] = [];

afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Replica extends ServeProcess {
  readonly dataDir: string;
}

async function startReplica(schema: string): Promise<Replica> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-shared-releases-'));
  dirs.push(dataDir);
  const p = await startServe({
    dataDir,
    store: `${PG_URL}?schema=${schema}`,
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    tokens: [{ name: 'admin', token: TOKEN, role: 'admin' }],
  });
  children.add(p.child);
  return { ...p, dataDir };
}

async function get<T>(r: Replica, path: string): Promise<T> {
  const res = await fetch(`${r.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

async function post(
  r: Replica,
  path: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${r.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** One worker process (the fleet-worker fixture reports release 'fleet-test') following `url`. */
async function startWorker(url: string, id: string): Promise<void> {
  const child = spawn(
    process.execPath,
    [
      WORKER,
      JSON.stringify({
        urls: [url],
        token: TOKEN,
        workers: [id],
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
      }),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  children.add(child);
  let ready = false;
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    if (c.includes('"type":"ready"')) ready = true;
  });
  await until(() => ready, `worker ${id} open`, 20_000);
}

async function fleetSeen(r: Replica, id: string): Promise<void> {
  for (let i = 0; ; i++) {
    const w = await get<WorkersAnswer>(r, '/v1/workers');
    if (w.workers.some((x) => x.id === id && !x.stale)) return;
    expect(i, `${r.url} sees ${id}`).toBeLessThan(200);
    await new Promise((res) => setTimeout(res, 50));
  }
}

const refusal = (answer: { json: Record<string, unknown> }) =>
  answer.json.error as { code: string; message: string };

describe.runIf(RUN_PG)('KS-8.9 KS-10.5.2 one release gate across replicas', () => {
  it(
    'a red verdict recorded on B refuses a resume posted to A; a green one on B lets it through; the override on A is kept in the store for both',
    { timeout: 90_000 },
    async () => {
      const schema = schemaName('relshare');
      schemas.add(schema);
      const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
      await startWorker(a.url, 'w-red');
      await fleetSeen(a, 'w-red');

      // The release the worker runs is marked red on B only; the one the resume names is green.
      expect((await post(a, '/v1/releases', { release: 'v2', status: 'green' })).status).toBe(201);
      const red = await post(b, '/v1/releases', {
        release: 'fleet-test',
        status: 'red',
        reason: 'INC-7 corrupts orders',
      });
      expect(red.status, JSON.stringify(red.json)).toBe(201);
      expect((await post(a, '/v1/flips', halt('rel-halt'))).status).toBe(201);

      // Posted to A, which never saw the red verdict itself: refused, naming the worker.
      const resume = {
        id: 'rel-resume',
        action: 'resume',
        selector: { tenant: 'rel-halt' },
        reason: 'fixed in v2',
        release: 'v2',
      };
      const refused = await post(a, '/v1/flips', resume);
      expect(refused.status, JSON.stringify(refused.json)).toBe(409);
      expect(refusal(refused).code).toBe('KS_RESUME_REFUSED');
      expect(refusal(refused).message).toContain('w-red (fleet-test)');

      // B turns v2 red: A refuses a resume on v2 on that verdict alone.
      await post(b, '/v1/releases', {
        release: 'fleet-test',
        status: 'green',
        reason: 'false alarm',
      });
      await post(b, '/v1/releases', { release: 'v2', status: 'red', reason: 'v2 leaks' });
      const onRed = await post(a, '/v1/flips', resume);
      expect(onRed.status, JSON.stringify(onRed.json)).toBe(409);
      expect(refusal(onRed).message).toMatch(/release v2 is red .*by admin: v2 leaks/);

      // A release marked green on B only is green on A too (a file per replica refused this).
      expect((await post(b, '/v1/releases', { release: 'v3', status: 'green' })).status).toBe(201);
      const v3 = await post(a, '/v1/flips', {
        ...resume,
        id: 'rel-resume-v3',
        release: 'v3',
        selector: { tenant: 'rel-halt' },
      });
      expect(v3.status, JSON.stringify(v3.json)).toBe(201);

      // Both replicas answer the same verdicts.
      const onA = await get<ReleasesAnswer>(a, '/v1/releases');
      const onB = await get<ReleasesAnswer>(b, '/v1/releases');
      expect(onA.releases).toEqual(onB.releases);
      expect(onA.releases.map((r) => [r.release, r.status])).toEqual([
        ['fleet-test', 'green'],
        ['v2', 'red'],
        ['v3', 'green'],
      ]);

      // The admin override on A (v2 is red) passes and is recorded in the store, chained.
      expect((await post(a, '/v1/flips', halt('rel-halt-2'))).status).toBe(201);
      const passed = await post(a, '/v1/flips', {
        ...resume,
        id: 'rel-override',
        selector: { tenant: 'rel-halt-2' },
        overrideGate: 'INC-9 v2 leak is harmless',
      });
      expect(passed.status, JSON.stringify(passed.json)).toBe(201);
      const rows = await admin<{ seq: string; body: string }>(
        `SELECT seq::text AS seq, body FROM "${schema}".releases r ORDER BY r.seq`,
      );
      expect(rows.map((r) => Number(r.seq))).toEqual([1, 2, 3, 4, 5, 6]);
      expect(JSON.parse(rows.at(-1)!.body)).toMatchObject({
        status: 'override',
        release: 'v2',
        reason: 'INC-9 v2 leak is harmless',
        flip: 'rel-override',
        actor: 'admin',
      });
      // Neither replica wrote its own file: the store is where verdicts live.
      for (const r of [a, b]) {
        await expect(stat(join(r.dataDir, 'releases.jsonl'))).rejects.toMatchObject({
          code: 'ENOENT',
        });
      }
    },
  );
});

function halt(tenant: string) {
  return { id: tenant, action: 'halt', selector: { tenant }, reason: `release test ${tenant}` };
}
