/**
 * KS-6.6 one fleet answer across replicas, over the wire with real processes: `killswitch serve`
 * replicas (the compiled CLI) on one PostgreSQL schema, and worker processes (RemoteFlipSource)
 * spread over them. Run `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { FlipAnswer, WorkersAnswer } from '../../src/protocol/answers.js';
import { CLI, startServe, type ServeProcess } from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, admin, dropSchemas, schemaName, until } from './pg-harness.js';

const WORKER = resolve('dist/test/fixtures/fleet-worker.js');
const TOKEN = 'pg-shared-fleet-admin-token-0123456789';
const STALE_MS = 4000;
const HEARTBEAT_MS = 200;
const REPLICA_TIMEOUT_MS = 600;

const schemas = new Set<string>();
const children = new Set<ChildProcess>();
const dirs: string[] = [];

afterEach(() => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
  children.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Replica extends ServeProcess {
  readonly id: string;
  /** Its data directory. */
  readonly dataDir: string;
}

async function startReplica(schema: string): Promise<Replica> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-shared-fleet-'));
  dirs.push(dataDir);
  const p = await startServe({
    dataDir,
    store: `${PG_URL}?schema=${schema}`,
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    replicaTimeoutMs: REPLICA_TIMEOUT_MS,
    tokens: [{ name: 'admin', token: TOKEN, role: 'admin' }],
  });
  children.add(p.child);
  const workers = await get<WorkersAnswer>(p.url, '/v1/workers');
  const self = workers.replicas?.find((r) => r.self);
  expect(self, 'GET /v1/workers names this replica (KS-6.6.6)').toBeDefined();
  return { ...p, id: self!.replica, dataDir };
}

async function get<T>(url: string, path: string): Promise<T> {
  const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
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

/** `GET /metrics` parsed into `name{labels} -> value`. */
async function scrape(r: Replica): Promise<Map<string, number>> {
  const res = await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function flip(
  r: Replica,
  id: string,
  wait: number,
): Promise<{ status: number; answer: FlipAnswer }> {
  const res = await fetch(`${r.url}/v1/flips`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      id,
      action: 'halt',
      selector: { tenant: id },
      reason: `shared fleet test ${id}`,
      wait,
    }),
  });
  return { status: res.status, answer: (await res.json()) as FlipAnswer };
}

interface WorkerProcess {
  readonly child: ChildProcess;
  readonly applied: Map<string, number>;
  out: string;
}

/** Starts one worker process holding `workers`, each following `urls`; resolves once all are open. */
async function startWorkers(urls: readonly string[], workers: readonly string[]) {
  const child = spawn(
    process.execPath,
    [
      WORKER,
      JSON.stringify({
        urls,
        token: TOKEN,
        workers,
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
      }),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  children.add(child);
  const p: WorkerProcess = { child, applied: new Map(), out: '' };
  let ready = false;
  let buf = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (p.out += c));
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = JSON.parse(buf.slice(0, nl)) as { type: string; worker?: string; seq?: number };
      buf = buf.slice(nl + 1);
      if (line.type === 'ready') ready = true;
      if ((line.type === 'applied' || line.type === 'snapshot') && line.worker !== undefined)
        p.applied.set(line.worker, Math.max(p.applied.get(line.worker) ?? 0, line.seq ?? 0));
    }
  });
  await until(() => ready, `workers ${workers.join(', ')} open`, 20_000);
  return p;
}

/** Every worker has renewed its lease at least once through its replica and the store. */
async function fleetSeen(r: Replica, ids: readonly string[]): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const w = await get<WorkersAnswer>(r.url, '/v1/workers');
    const live = new Set(w.workers.filter((x) => !x.stale).map((x) => x.id));
    if (ids.every((id) => live.has(id))) return;
    if (Date.now() > end) throw new Error(`${r.url} does not see ${ids.join(', ')}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

const sorted = (xs: readonly string[]) => [...xs].sort();

describe.runIf(RUN_PG)('KS-6.6 the shared-fleet tests run the compiled CLI', () => {
  it('finds dist/src/cli/main.js and dist/test/fixtures/fleet-worker.js (run npm run build)', () => {
    expect(existsSync(CLI)).toBe(true);
    expect(existsSync(WORKER)).toBe(true);
  });
});

describe.runIf(RUN_PG)(
  'KS-6.6.1 KS-6.6.2 KS-6.6.6 a flip with wait on any replica counts every worker on every replica',
  () => {
    it(
      'two replicas: a halt posted to A with wait reports the worker on B (the issue 14 case)',
      { timeout: 90_000 },
      async () => {
        const schema = schemaName('fleet2');
        schemas.add(schema);
        const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
        await startWorkers([b.url], ['w-b1', 'w-b2']);
        await fleetSeen(a, ['w-b1', 'w-b2']);
        const { status, answer } = await flip(a, 'two-replicas', 5000);
        expect(status).toBe(201);
        const fleet = answer.fleet!;
        expect(fleet.complete).toBe(true);
        expect(sorted(fleet.acknowledged.map((x) => x.workerId))).toEqual(['w-b1', 'w-b2']);
        expect(fleet.acknowledged.every((x) => x.replica === b.id)).toBe(true);
        expect(fleet.applied).toBe(2);
        expect(fleet.unknownReplicas).toEqual([]);
        // GET /v1/workers on A lists the whole fleet, with the replica each worker is on.
        const workers = await get<WorkersAnswer>(a.url, '/v1/workers');
        expect(workers.workers.map((w) => [w.id, w.replica])).toEqual([
          ['w-b1', b.id],
          ['w-b2', b.id],
        ]);
        expect(sorted(workers.replicas!.map((r) => r.replica))).toEqual(sorted([a.id, b.id]));
      },
    );

    it(
      'three replicas, workers on each: a flip with wait posted to each one reports all six',
      { timeout: 90_000 },
      async () => {
        const schema = schemaName('fleet3');
        schemas.add(schema);
        const replicas = await Promise.all([0, 1, 2].map(() => startReplica(schema)));
        const ids = replicas.map((_, i) => [`w-${i}-x`, `w-${i}-y`]);
        await Promise.all(replicas.map((r, i) => startWorkers([r.url], ids[i]!)));
        const all = ids.flat();
        for (const r of replicas) await fleetSeen(r, all);
        for (const [i, r] of replicas.entries()) {
          const { status, answer } = await flip(r, `three-${i}`, 5000);
          expect(status).toBe(201);
          const fleet = answer.fleet!;
          expect(fleet.complete, JSON.stringify(fleet)).toBe(true);
          expect(sorted(fleet.acknowledged.map((x) => x.workerId))).toEqual(sorted(all));
          for (const [j, owner] of replicas.entries()) {
            for (const id of ids[j]!)
              expect(fleet.acknowledged.find((x) => x.workerId === id)?.replica).toBe(owner.id);
          }
          expect(fleet.laggards).toEqual([]);
        }
      },
    );
  },
);

describe.runIf(RUN_PG)(
  'KS-6.6.5 a replica that cannot hear from another that holds workers never answers complete',
  () => {
    it(
      'B frozen then SIGKILLed mid-wait: the answer names B and its stuck worker; the worker that moves to C is counted; later the flip completes',
      { timeout: 90_000 },
      async () => {
        const schema = schemaName('fleetkill');
        schemas.add(schema);
        const [a, b, c] = (await Promise.all([0, 1, 2].map(() => startReplica(schema)))) as [
          Replica,
          Replica,
          Replica,
        ];
        await startWorkers([a.url], ['w-a']);
        const mover = await startWorkers([b.url, c.url], ['w-move']);
        await startWorkers([b.url], ['w-stuck']);
        await fleetSeen(a, ['w-a', 'w-move', 'w-stuck']);
        // B stops answering (frozen, its sockets open), so its workers cannot stop through it.
        b.child.kill('SIGSTOP');
        const pending = flip(a, 'while-b-dies', 2500);
        await new Promise((res) => setTimeout(res, 300));
        b.child.kill('SIGKILL');
        const { status, answer } = await pending;
        expect(status).toBe(201);
        const fleet = answer.fleet!;
        const seq = answer.flip.seq;
        expect(fleet.complete, JSON.stringify(fleet)).toBe(false);
        expect(fleet.completeAt).toBeNull();
        // The replica it cannot hear from, by id and URL, with the worker it holds.
        expect(fleet.unknownReplicas).toEqual([
          expect.objectContaining({ replica: b.id, url: b.url, workers: ['w-stuck'] }),
        ]);
        expect(fleet.unknownReplicas![0]!.silentForMs).toBeGreaterThan(REPLICA_TIMEOUT_MS);
        expect(fleet.laggards).toEqual([
          expect.objectContaining({ workerId: 'w-stuck', replica: b.id, leaseExpired: false }),
        ]);
        // The worker whose URL list holds C moved there and acknowledged through it.
        await until(() => (mover.applied.get('w-move') ?? 0) >= seq, 'w-move applies the halt');
        expect(fleet.acknowledged.find((x) => x.workerId === 'w-a')?.replica).toBe(a.id);
        const moved = fleet.acknowledged.find((x) => x.workerId === 'w-move');
        expect(moved?.replica).toBe(c.id);
        // Asked again (same id): the stuck worker's lease, renewed last through B before it froze,
        // runs out (it fails closed on its own); nothing else holds the flip open.
        const again = await flip(a, 'while-b-dies', 10_000);
        expect(again.status).toBe(200);
        const done = again.answer.fleet!;
        expect(done.complete, JSON.stringify(done)).toBe(true);
        expect(done.unknownReplicas).toEqual([]);
        expect(done.laggards).toEqual([
          expect.objectContaining({ workerId: 'w-stuck', replica: b.id, leaseExpired: true }),
        ]);
        // A flip after B is gone: C counts the moved worker, A its own.
        const after = await flip(c, 'after-b', 5000);
        const f2 = after.answer.fleet!;
        expect(f2.complete, JSON.stringify(f2)).toBe(true);
        expect(sorted(f2.acknowledged.map((x) => x.workerId))).toEqual(['w-a', 'w-move']);
      },
    );
  },
);

describe.runIf(RUN_PG)('KS-11.2.4 /metrics counts the whole fleet across replicas', () => {
  it(
    'workers on B only: A reports them, and a flip with wait on A observes their acks and the stop-complete',
    { timeout: 90_000 },
    async () => {
      const schema = schemaName('fleetmetrics');
      schemas.add(schema);
      const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
      await startWorkers([b.url], ['w-m1', 'w-m2']);
      await fleetSeen(a, ['w-m1', 'w-m2']);
      await fleetSeen(b, ['w-m1', 'w-m2']);
      for (const r of [a, b]) {
        const m = await scrape(r);
        expect(m.get('killswitch_workers{state="fresh"}'), r.url).toBe(2);
        expect(m.get('killswitch_workers_stale'), r.url).toBe(0);
      }
      const { status, answer } = await flip(a, 'metrics-a', 5000);
      expect(status).toBe(201);
      expect(answer.fleet!.complete, JSON.stringify(answer.fleet)).toBe(true);
      const m = await scrape(a);
      // Both remote acknowledgements, once each, and the whole fleet's stop-complete.
      expect(m.get('killswitch_ack_latency_seconds_count')).toBe(2);
      expect(m.get('killswitch_stop_complete_seconds_count')).toBe(1);
      expect(m.get('killswitch_worker_lag_max')).toBe(0);
      // Scraped again: nothing observed twice.
      const again = await scrape(a);
      expect(again.get('killswitch_ack_latency_seconds_count')).toBe(2);
      expect(again.get('killswitch_stop_complete_seconds_count')).toBe(1);
    },
  );
});

describe.runIf(RUN_PG)('KS-10.5.4 KS-17.2.3 the release gate across replicas', () => {
  it(
    'a worker on a red release connected to B blocks a resume posted to A; an admin override with a reason passes on A, recorded in the shared store',
    { timeout: 90_000 },
    async () => {
      const schema = schemaName('fleetgate');
      schemas.add(schema);
      const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
      // The fleet-worker fixture reports release 'fleet-test'.
      await startWorkers([b.url], ['w-red']);
      await fleetSeen(a, ['w-red']);
      expect(
        (await post(a, '/v1/releases', { release: 'fleet-test', status: 'red', reason: 'bad' }))
          .status,
      ).toBe(201);
      expect(
        (await post(a, '/v1/releases', { release: 'v2', status: 'green', reason: 'fixed' })).status,
      ).toBe(201);
      const halted = await flip(a, 'gate-halt', 0);
      expect(halted.status).toBe(201);
      const resume = {
        id: 'gate-resume',
        action: 'resume',
        selector: { tenant: 'gate-halt' },
        reason: 'fixed in v2',
        release: 'v2',
      };
      const refused = await post(a, '/v1/flips', resume);
      expect(refused.status, JSON.stringify(refused.json)).toBe(409);
      const error = refused.json.error as { code: string; message: string };
      expect(error.code).toBe('KS_RESUME_REFUSED');
      expect(error.message).toContain('w-red (fleet-test)');
      // GET /v1/releases on A lists the worker on B with its release.
      const releases = await get<{ workers: { id: string; release: string | null }[] }>(
        a.url,
        '/v1/releases',
      );
      expect(releases.workers).toEqual([{ id: 'w-red', release: 'fleet-test' }]);
      // Nothing was appended: the halt is still active on both replicas.
      for (const r of [a, b]) {
        const st = await get<{ halts: unknown[] }>(r.url, '/v1/state');
        expect(st.halts, r.url).toHaveLength(1);
      }
      // The admin override, with its reason, passes on A and is recorded before the flip, in the
      // store every replica shares (KS-8.9).
      const passed = await post(a, '/v1/flips', { ...resume, overrideGate: 'INC-9 v2 is safe' });
      expect(passed.status, JSON.stringify(passed.json)).toBe(201);
      const rows = await admin<{ body: string }>(
        `SELECT body FROM "${schema}".releases ORDER BY seq DESC LIMIT 1`,
      );
      const last = JSON.parse(rows[0]!.body) as Record<string, unknown>;
      expect(last).toMatchObject({
        status: 'override',
        release: 'v2',
        reason: 'INC-9 v2 is safe',
        flip: 'gate-resume',
      });
      // The resume reached B and the worker on it.
      const seq = (passed.json.flip as { seq: number }).seq;
      for (let i = 0; (await get<{ seq: number }>(b.url, '/v1/state')).seq < seq; i++) {
        expect(i, 'B applies the resume').toBeLessThan(200);
        await new Promise((res) => setTimeout(res, 50));
      }
      expect((await get<{ halts: unknown[] }>(b.url, '/v1/state')).halts).toEqual([]);
    },
  );
});
