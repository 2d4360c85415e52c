import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BullMqTaskQueue } from '../../providers/bullmq/index.js';
import { ControlPlaneClient } from '../../src/client/index.js';
import {
  spawnLineProcess,
  startFileControlPlane,
  startJsonSink,
  untilOrExit as until,
} from '../fixtures/process-fleet.js';
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
}

const startWorker = (config: { readonly workerId: string; readonly [k: string]: unknown }) =>
  spawnLineProcess(WORKER, config.workerId, config, { stdin: true, stderrTail: 4000 });

describe.runIf(up)(
  'KS-4.9 KS-7.4 over the wire: a halted parent stops its whole tree, in every process',
  () => {
    it('running, queued and timer-waiting descendants at every depth stop; a child spawned after the halt is refused; the sibling tree runs on', async () => {
      const plane = await startFileControlPlane('ks-tree-');
      const { cp } = plane;
      const sink = await startJsonSink<Arrival>();
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
        await sink.close();
        await plane.close();
      }
    }, 180_000);
  },
);
