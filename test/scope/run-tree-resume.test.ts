import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '../../src/client/index.js';
import { FileRunJournal } from '../../src/run/index.js';
import {
  spawnLineProcess,
  startFileControlPlane,
  startJsonSink,
  untilOrExit,
  type LineProcess,
} from '../fixtures/process-fleet.js';
import { REDIS, deletePrefix, requireRedis, testPrefix } from '../queue/redis-test-env.js';

// Runs compiled code: `npm run build` first (the `pretest` script does).
const WORKER = resolve('dist/test/fixtures/tree-resume-worker.js');
const up = await requireRedis();
const prefixes: string[] = [];
afterAll(async () => {
  if (up) for (const p of prefixes) await deletePrefix(p);
});

interface Arrival {
  readonly key: string;
  readonly runPath: string[];
  readonly role: string;
}

const start = (config: { readonly role: string; readonly [k: string]: unknown }) =>
  spawnLineProcess(WORKER, config.role, config, { stderrTail: 4000 });

/** The parent's process exits by design once P completed; that is not a failure. */
const until = (cond: () => boolean, what: string, procs: readonly LineProcess[]) =>
  untilOrExit(cond, what, procs, { finished: (p) => p.lines.includes('completed P') });

describe.runIf(up)(
  'KS-4.9 KS-10.1.7 over the wire: resuming a halted parent lets its whole tree continue from its journals',
  () => {
    it('the parent, its children and grandchildren (three processes) stop on the halt; after the resume every run completes and no effect is repeated', async () => {
      const plane = await startFileControlPlane('ks-tree-resume-');
      const { cp, dir } = plane;
      const sink = await startJsonSink<Arrival>();
      const arrivals = sink.arrivals;
      const prefix = testPrefix('tree-resume');
      prefixes.push(prefix);
      const base = {
        url: cp.url,
        sink: sink.url,
        redis: { host: REDIS.host, port: REDIS.port },
        prefix,
        dir,
        children: 3,
        steps: 40,
        everyMs: 80,
      };
      const procs = [start({ ...base, role: 'd2' }), start({ ...base, role: 'd3' })];
      try {
        await until(() => procs.every((p) => p.lines.includes('ready')), 'workers ready', procs);
        procs.push(start({ ...base, role: 'parent' }));
        // The whole tree runs: effects of grandchildren (depth 3) in the third process.
        await until(
          () =>
            new Set(arrivals.filter((a) => a.runPath.length === 3).map((a) => a.runPath[2]))
              .size === 3,
          'grandchildren running',
          procs,
        );
        const client = new ControlPlaneClient({ url: cp.url });
        const halt = await client.flip({
          action: 'halt',
          selector: { runId: 'P' },
          reason: 'parent misbehaving',
          wait: 10_000,
        });
        expect(halt.fleet?.complete, JSON.stringify(halt.fleet)).toBe(true);
        // Every run of the tree ended halted (none completed: each has 40 steps of 80 ms).
        await until(
          () =>
            procs.every((p) => p.lines.some((l) => l.startsWith('ended '))) &&
            procs
              .slice(0, 2)
              .every((p) => p.lines.filter((l) => l.startsWith('ended ')).length === 3),
          'every run of the tree ended by the halt',
          procs,
        );
        const atHalt = arrivals.length;
        await new Promise((r) => setTimeout(r, 500));
        expect(arrivals.length, 'no effect while halted').toBe(atHalt);
        expect(procs.flatMap((p) => p.lines).some((l) => l.startsWith('completed'))).toBe(false);

        await client.flip({
          action: 'resume',
          selector: { runId: 'P' },
          reason: 'fixed',
          release: 'v1',
          wait: 10_000,
        });
        await until(
          () =>
            procs[2]!.lines.includes('completed P') &&
            procs[0]!.lines.filter((l) => l.startsWith('completed ')).length === 3 &&
            procs[1]!.lines.filter((l) => l.startsWith('completed ')).length === 3,
          'the whole tree completed after the resume',
          procs,
        );
        // Seven runs, forty steps each: every effect arrived exactly once.
        const byRun = new Map<string, string[]>();
        for (const a of arrivals) {
          const runId = a.runPath[a.runPath.length - 1]!;
          byRun.set(runId, [...(byRun.get(runId) ?? []), a.key]);
        }
        expect(byRun.size).toBe(7);
        for (const [runId, keys] of byRun) {
          expect(new Set(keys).size, `${runId}: no effect repeated`).toBe(keys.length);
          expect(keys.length, `${runId}: every step once`).toBe(40);
        }
        const depths = [...arrivals].map((a) => a.runPath.length);
        expect(new Set(depths)).toEqual(new Set([1, 2, 3]));
        // The resumed runs continued from their journals (a second execution, steps replayed).
        const journal = new FileRunJournal({
          path: join(dir, 'runs-parent.jsonl'),
          logger: { warn: () => undefined },
        });
        const p = await journal.run('P');
        await journal.close();
        expect(p?.status).toBe('completed');
        expect(p?.executions).toBeGreaterThanOrEqual(2);
      } finally {
        for (const p of procs) p.child.kill('SIGKILL');
        await sink.close();
        await plane.close();
      }
    }, 180_000);
  },
);
