import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BullMqTaskQueue } from '../../providers/bullmq/index.js';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { ControlPlaneClient } from '../../src/client/index.js';
import { startControlPlane } from '../../src/server/index.js';
import { REDIS, deletePrefix, requireRedis, testPrefix } from '../queue/redis-test-env.js';

// Runs compiled code: `npm run build` first (the `pretest` script does).
const WORKER = resolve('dist/test/fixtures/tree-worker.js');
const up = await requireRedis();
const prefixes: string[] = [];
afterAll(async () => {
  if (up) for (const p of prefixes) await deletePrefix(p);
});

interface Arrival {
  readonly key: string;
  readonly runPath: string[];
  readonly worker: string;
  readonly at: number;
}

function startSink(): Promise<{ url: string; arrivals: Arrival[]; server: Server }> {
  const arrivals: Arrival[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => {
      const b = JSON.parse(body) as Omit<Arrival, 'at'>;
      arrivals.push({ ...b, at: Date.now() });
      res.end('ok');
    });
  });
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () =>
      r({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals, server }),
    ),
  );
}

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: string[];
  stderr: string;
  exited?: string;
}

function startWorker(config: { readonly workerId: string; readonly [k: string]: unknown }): Proc {
  const child = spawn(process.execPath, [WORKER, JSON.stringify(config)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const p: Proc = { name: config.workerId, child, lines, stderr: '' };
  child.on('exit', (code, signal) => (p.exited = `code ${code}, signal ${signal}`));
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  child
    .stderr!.setEncoding('utf8')
    .on('data', (c: string) => (p.stderr = (p.stderr + c).slice(-4000)));
  return p;
}

/**
 * Waits for `cond`. A process of the tree that exits fails the wait at once with its output (a
 * worker that could not start used to show up as a bare timeout); the bound is generous because a
 * loaded suite starts three processes that load BullMQ and open a stream far slower than an idle
 * machine does.
 */
async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  procs: readonly Proc[],
  ms = 60_000,
) {
  const end = Date.now() + ms;
  const why = () =>
    procs
      .map(
        (p) =>
          `${p.name}: ${p.exited ?? 'running'}; out ${p.lines.slice(-5).join(' | ')}; err ${p.stderr.trim().slice(-500)}`,
      )
      .join('\n');
  while (!(await cond())) {
    const dead = procs.find((p) => p.exited !== undefined);
    if (dead) throw new Error(`${dead.name} exited while waiting for ${what}\n${why()}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${why()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.runIf(up)(
  'KS-4.9 KS-7.4 over the wire: a halted parent stops its whole tree, in every process',
  () => {
    it('running, queued and timer-waiting descendants at every depth stop; a child spawned after the halt is refused; the sibling tree runs on', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'ks-tree-'));
      const store = new FileFlipLogStore({ path: join(dir, 'flips.jsonl') });
      const cp = await startControlPlane({
        store,
        port: 0,
        auth: 'none',
        logger: { info() {}, warn() {}, error() {} },
      });
      const sink = await startSink();
      const prefix = testPrefix('tree');
      prefixes.push(prefix);
      const base = {
        url: cp.url,
        sink: sink.url,
        redis: { host: REDIS.host, port: REDIS.port },
        prefix,
        fanout: 3,
        maxDepth: 3,
        everyMs: 50,
        effects: 10_000,
        timerMs: 1_500,
        concurrency: 6,
      };
      const procs = [
        startWorker({ ...base, workerId: 'w1', role: 'worker' }),
        startWorker({ ...base, workerId: 'w2', role: 'worker' }),
        startWorker({ ...base, workerId: 'roots', role: 'roots', roots: ['P', 'S'], fanout: 3 }),
      ];
      const probe = new BullMqTaskQueue<unknown>({
        name: 'tree',
        prefix,
        connection: REDIS,
        logger: { warn: () => undefined },
      });
      try {
        await until(() => procs.every((p) => p.lines.includes('ready')), 'workers ready', procs);
        const ofTree = (root: string) => sink.arrivals.filter((a) => a.runPath[0] === root);
        // The tree is live: effects of P's runs in both worker processes, and grandchildren of P
        // queued (12 slots: 6 children run; 18 grandchildren compete for the other 6, so at
        // least 3 of P's wait in the queue whatever the order).
        let waiting: Awaited<ReturnType<typeof probe.list>> = [];
        await until(
          async () => {
            if (new Set(ofTree('P').map((a) => a.worker)).size < 2) return false;
            waiting = (await probe.list({ runId: 'P' })).filter(
              (t) => t.state === 'waiting' && t.context.runPath?.length === 3,
            );
            return waiting.length > 0;
          },
          'P tree running in both workers with grandchildren queued',
          procs,
        );
        const answer = await new ControlPlaneClient({ url: cp.url }).flip({
          action: 'halt',
          selector: { runId: 'P' },
          reason: 'parent misbehaving',
          wait: 10_000,
        });
        const stopAt = Date.now();
        expect(answer.fleet?.complete, JSON.stringify(answer.fleet)).toBe(true);
        expect(answer.covers).toContain('every run it spawned');
        const sBefore = ofTree('S').length;
        // Past the timers' due time: a timer-waiting descendant would have fired by now.
        await new Promise((r) => setTimeout(r, base.timerMs + 500));
        const late = ofTree('P').filter((a) => a.at > stopAt);
        expect(late, 'effects of P descendants after stop-complete').toEqual([]);
        expect(ofTree('S').length, 'the sibling tree runs on').toBeGreaterThan(sBefore);
        await until(
          async () => (await probe.list({ runId: 'P' })).length === 0,
          'queued descendants of P discarded',
          procs,
        );
        expect((await probe.list({ runId: 'S' })).length).toBeGreaterThan(0);

        // A child spawned after the halt is refused; one of the sibling tree is not.
        const roots = procs[2]!;
        roots.child.stdin!.write('spawn P late\n');
        roots.child.stdin!.write('spawn S late\n');
        await until(() => roots.lines.some((l) => l.startsWith('refused')), 'refused spawn', procs);
        await until(() => roots.lines.some((l) => l.startsWith('spawned')), 'sibling spawn', procs);
        expect(roots.lines).toContain('refused KS_HALTED');
        // No effect was sent twice.
        const keys = sink.arrivals.map((a) => a.key);
        expect(new Set(keys).size).toBe(keys.length);
        console.log(
          `run tree: ${ofTree('P').length} effects of P's tree before the halt (depths ${[
            ...new Set(ofTree('P').map((a) => a.runPath.length)),
          ]
            .sort()
            .join(
              ',',
            )}), ${waiting.length} queued descendants discarded, 0 after stop-complete; S tree ${ofTree('S').length} effects`,
        );
      } finally {
        for (const p of procs) p.child.kill('SIGKILL');
        await probe.close();
        sink.server.closeAllConnections();
        await new Promise((r) => sink.server.close(r));
        await cp.close();
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    }, 180_000);
  },
);
