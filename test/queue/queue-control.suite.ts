import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@openfeature/server-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HaltWatcher } from '../../src/guard/halt-watcher.js';
import { FileQueueJournal } from '../../src/queue/file-queue-journal.js';
import { QueueController } from '../../src/queue/queue-controller.js';
import type { QueuedTask, TaskConsumer, TaskQueue } from '../../src/queue/task-queue.js';
import { currentRunScope, runInScope } from '../../src/scope/run-scope.js';
import { killHarness, type KillHarness } from '../schedule/kill-harness.js';

export interface Payload {
  readonly n: number;
  readonly note: string;
}

export interface QueueHarness {
  /** A fresh, empty queue with a name unique to this test. */
  create(): Promise<TaskQueue<Payload>>;
}

/** Waits for a condition by polling (a wait, not a timing assertion). */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A client whose event handlers are never called: halts reach it only by evaluation. */
export function deaf(client: Client): Client {
  return new Proxy(client, {
    get(target, prop) {
      if (prop === 'addHandler' || prop === 'removeHandler') return () => undefined;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The queue-control behaviour every TaskQueue must show under a QueueController (KS-7.2). The
 * in-memory queue and the BullMQ adapter both run it.
 */
export function describeQueueControl(name: string, harness: QueueHarness): void {
  describe(`${name}: queue control`, () => {
    let h: KillHarness;
    let dir: string;
    let queue: TaskQueue<Payload>;
    let journal: FileQueueJournal;
    let controller: QueueController<Payload>;
    let consumers: TaskConsumer[];
    let ran: QueuedTask<Payload>[];

    beforeEach(async () => {
      h = await killHarness();
      dir = await mkdtemp(join(tmpdir(), 'ks-queue-'));
      queue = await harness.create();
      journal = new FileQueueJournal({ path: join(dir, 'journal.jsonl') });
      controller = new QueueController({
        queue,
        watcher: h.watcher,
        journal,
        logger: { warn: () => undefined },
      });
      await controller.start();
      consumers = [];
      ran = [];
    });

    afterEach(async () => {
      await Promise.all(consumers.map((c) => c.close()));
      await controller.close();
      await queue.close();
      await journal.close();
      await h.close();
      await rm(dir, { recursive: true, force: true });
    });

    const fill = async () => {
      for (let n = 1; n <= 3; n++)
        await controller.enqueue({ tenant: 'acme', runId: `a${n}` }, { n, note: `acme ${n}` });
      for (let n = 1; n <= 2; n++)
        await controller.enqueue({ tenant: 'beta', runId: `b${n}` }, { n, note: `beta ${n}` });
    };
    const work = async (c: QueueController<Payload> = controller) => {
      consumers.push(
        await c.work(
          async (task) => {
            ran.push(task);
          },
          { concurrency: 2 },
        ),
      );
    };
    const ranOf = (tenant: string) =>
      ran
        .filter((t) => t.context.tenant === tenant)
        .map((t) => t.payload.n)
        .sort();

    describe('KS-7.2.6 producers are gated', () => {
      for (const mode of ['discard', 'hold', 'drain'] as const) {
        it(`an enqueue that matches a ${mode} halt is refused with KS_HALTED naming the flip; other tenants enqueue`, async () => {
          const seq = await h.halt({ tenant: 'acme' }, mode);
          await expect(
            controller.enqueue({ tenant: 'acme', runId: 'x' }, { n: 1, note: '' }),
          ).rejects.toMatchObject({
            code: 'KS_HALTED',
            flip: { seq, mode },
          });
          await controller.enqueue({ tenant: 'beta', runId: 'y' }, { n: 1, note: '' });
          expect(await controller.depth({ tenant: 'acme' })).toMatchObject({ total: 0 });
          expect(await controller.depth({ tenant: 'beta' })).toMatchObject({
            waiting: 1,
            total: 1,
          });
        });
      }
    });

    describe('KS-7.2.2 discard journals every matching queued task, then removes it; KS-7.2.8 depth at T+0 and T+N', () => {
      it('removes exactly the halted tenant’s tasks and the journal holds each with payload, context, enqueue time and halt seq', async () => {
        await fill();
        const before = await queue.list({ tenant: 'acme' });
        expect(await controller.depth()).toMatchObject({ waiting: 5, total: 5 });
        const seq = await h.halt({ tenant: 'acme' }, 'discard');
        await until(
          async () => (await controller.depth({ tenant: 'acme' })).total === 0,
          'acme discarded',
        );
        expect(await controller.depth({ tenant: 'beta' })).toMatchObject({ waiting: 2, total: 2 });
        const journaled = await controller.discarded({ haltSeq: seq });
        expect(journaled.map((r) => r.taskId).sort()).toEqual(before.map((t) => t.id).sort());
        for (const r of journaled) {
          const t = before.find((b) => b.id === r.taskId)!;
          expect(r).toMatchObject({
            type: 'discarded',
            queue: queue.name,
            name: 'task',
            payload: t.payload,
            context: t.context,
            enqueuedAt: t.enqueuedAt,
            haltSeq: seq,
            mode: 'discard',
            cause: 'halted',
          });
        }
        // The journal is on disk: a fresh reader sees the same records.
        const reread = new FileQueueJournal({ path: journal.path });
        expect((await reread.read()).filter((r) => r.type === 'discarded')).toHaveLength(3);
        await reread.close();
        await work();
        await until(() => ranOf('beta').length === 2, 'beta ran');
        expect(ranOf('acme')).toEqual([]);
      });

      it('KS-7.2.3 requeue after a resume enqueues each discarded task once; while halted it refuses', async () => {
        await fill();
        const seq = await h.halt({ tenant: 'acme' }, 'discard');
        await until(
          async () => (await controller.depth({ tenant: 'acme' })).total === 0,
          'acme discarded',
        );
        expect(await controller.requeue()).toMatchObject({ requeued: [], refused: 3 });
        await h.resume({ tenant: 'acme' });
        const r = await controller.requeue({ haltSeq: seq });
        expect(r.requeued).toHaveLength(3);
        expect(await controller.requeue()).toMatchObject({ requeued: [], refused: 0 });
        expect(await controller.discarded()).toEqual([]);
        const again = await queue.list({ tenant: 'acme' });
        expect(again.map((t) => t.payload.n).sort()).toEqual([1, 2, 3]);
        await work();
        await until(() => ran.length === 5, 'all ran');
        expect(ranOf('acme')).toEqual([1, 2, 3]);
      });
    });

    describe('KS-7.4.1 a halt on an ancestor applies the queue policy to every queued task of a descendant', () => {
      const tree = async () => {
        // Enqueued from inside each run's scope: the context (and run path) is inherited.
        const at = (runPath: string[], n: number) =>
          runInScope({ tenant: 'acme', runPath }, () =>
            controller.enqueue({}, { n, note: runPath.join('>') }),
          );
        await at(['root-1'], 1);
        await at(['root-1', 'c1'], 2);
        await at(['root-1', 'c1', 'g1'], 3);
        await at(['root-1', 'c2', 'g2', 'gg2'], 4);
        await at(['root-2', 'c1b'], 5);
        await at(['root-2'], 6);
      };
      const ranTree = (root: string) =>
        ran
          .filter((t) => t.context.runPath?.[0] === root || t.context.runId === root)
          .map((t) => t.payload.n)
          .sort();

      it('discard: every descendant at every depth is journaled with its run path and removed; the sibling tree runs in its own scope', async () => {
        await tree();
        const queued = await queue.list({ runId: 'root-1' });
        expect(queued.map((t) => t.payload.n).sort()).toEqual([1, 2, 3, 4]);
        expect(queued.find((t) => t.payload.n === 4)!.context.runPath).toEqual([
          'root-1',
          'c2',
          'g2',
          'gg2',
        ]);
        const seq = await h.halt({ runId: 'root-1' }, 'discard');
        await until(
          async () => (await queue.list({ runId: 'root-1' })).length === 0,
          'tree discarded',
        );
        const journaled = await controller.discarded({ haltSeq: seq });
        expect(journaled.map((r) => (r.payload as Payload).n).sort()).toEqual([1, 2, 3, 4]);
        expect(journaled.find((r) => (r.payload as Payload).n === 3)!.context.runPath).toEqual([
          'root-1',
          'c1',
          'g1',
        ]);
        const scopes: (readonly string[] | undefined)[] = [];
        consumers.push(
          await controller.work(async (task) => {
            scopes.push(currentRunScope()?.runPath);
            ran.push(task);
          }),
        );
        await until(() => ran.length === 2, 'root-2 ran');
        expect(ranTree('root-2')).toEqual([5, 6]);
        expect(ranTree('root-1')).toEqual([]);
        expect(scopes).toEqual(expect.arrayContaining([['root-2', 'c1b'], ['root-2']]));
        // A child enqueued after the halt is refused at the producer.
        await expect(
          runInScope({ tenant: 'acme', runPath: ['root-1', 'c9'] }, () =>
            controller.enqueue({}, { n: 9, note: 'late' }),
          ),
        ).rejects.toMatchObject({ code: 'KS_HALTED' });
      });

      it('hold: descendants are held until the ancestor is resumed, then run', async () => {
        await tree();
        await h.halt({ runId: 'root-1' }, 'hold');
        await work();
        await until(
          async () =>
            ranTree('root-2').length === 2 &&
            (await controller.depth({ runId: 'root-1' })).held === 4,
          'root-2 ran, root-1 held',
        );
        expect(ranTree('root-1')).toEqual([]);
        await h.resume({ runId: 'root-1' });
        expect(await controller.resume()).toMatchObject({ released: 4, stillHalted: 0 });
        await until(() => ranTree('root-1').length === 4, 'root-1 tree ran after resume');
      });
    });

    describe("KS-7.4.2 a worker runs each task's handler in the task's run scope, never in its starter's", () => {
      it("a worker started inside a run scope runs each task in its own run's scope, and a task of no run in none", async () => {
        await runInScope({ tenant: 'acme', runPath: ['r1', 'c1'] }, () =>
          controller.enqueue({}, { n: 1, note: 'scoped' }),
        );
        await controller.enqueue({ tenant: 'beta', runId: 'plain' }, { n: 2, note: 'its own run' });
        await controller.enqueue({ tenant: 'beta' }, { n: 3, note: 'no run' });
        const seen = new Map<number, readonly string[] | undefined>();
        // The code that starts the worker is itself inside another run's scope.
        const consumer = await runInScope({ tenant: 'other', runPath: ['starter'] }, () =>
          controller.work(async (task) => {
            seen.set(task.payload.n, currentRunScope()?.runPath);
          }),
        );
        consumers.push(consumer);
        await until(() => seen.size === 3, 'the tasks ran');
        expect(seen.get(1)).toEqual(['r1', 'c1']);
        expect(seen.get(2)).toEqual(['plain']);
        expect(seen.get(3)).toBeUndefined();
      });
    });

    describe('KS-7.2.4 hold keeps matching tasks where no worker runs them; resume releases them', () => {
      it('no held task runs, other tenants run, and after the resume the held ones run', async () => {
        await fill();
        await h.halt({ tenant: 'acme' }, 'hold');
        await work();
        await until(
          async () =>
            ranOf('beta').length === 2 && (await controller.depth({ tenant: 'acme' })).held === 3,
          'beta ran, acme held',
        );
        expect(ranOf('acme')).toEqual([]);
        expect(await controller.depth({ tenant: 'acme' })).toMatchObject({
          held: 3,
          waiting: 0,
          total: 3,
        });
        expect(await controller.resume()).toMatchObject({ released: 0, stillHalted: 3 });
        await h.resume({ tenant: 'acme' });
        expect(await controller.resume()).toMatchObject({ released: 3, stillHalted: 0 });
        await until(() => ranOf('acme').length === 3, 'acme ran after resume');
        expect(await controller.discarded()).toEqual([]);
      });
    });

    describe('KS-7.2.5 drain refuses intake and lets queued tasks run', () => {
      it('queued tasks of the drained tenant run; new ones are refused', async () => {
        await fill();
        await h.halt({ tenant: 'acme' }, 'drain');
        await expect(
          controller.enqueue({ tenant: 'acme', runId: 'late' }, { n: 9, note: '' }),
        ).rejects.toMatchObject({ code: 'KS_HALTED' });
        expect(await controller.depth({ tenant: 'acme' })).toMatchObject({ waiting: 3 });
        await work();
        await until(() => ran.length === 5, 'all queued ran');
        expect(ranOf('acme')).toEqual([1, 2, 3]);
        expect(await controller.discarded()).toEqual([]);
      });
    });

    describe('KS-7.2.7 workers evaluate the kill flag for every task they take (a halt whose event was missed still stops it)', () => {
      for (const mode of ['discard', 'hold'] as const) {
        it(`a worker ${mode}s tasks of a halted tenant the controller never enforced`, async () => {
          await fill();
          const deafWatcher = new HaltWatcher(deaf(h.client));
          const deafController = new QueueController({
            queue,
            watcher: deafWatcher,
            journal,
            logger: { warn: () => undefined },
          });
          try {
            const seq = await h.halt({ tenant: 'acme' }, mode);
            expect(await controller.depth({ tenant: 'acme' })).toMatchObject({ total: 3 });
            await controller.close(); // the listening controller is gone; only the deaf one runs workers
            await work(deafController);
            await until(async () => {
              const d = await deafController.depth({ tenant: 'acme' });
              return ranOf('beta').length === 2 && (mode === 'hold' ? d.held === 3 : d.total === 0);
            }, `acme ${mode} by the worker gate`);
            expect(ranOf('acme')).toEqual([]);
            if (mode === 'discard')
              expect((await deafController.discarded({ haltSeq: seq })).length).toBe(3);
          } finally {
            await Promise.all(consumers.splice(0).map((c) => c.close()));
            await deafController.close();
            deafWatcher.close();
          }
        });
      }
    });

    describe('KS-7.2.7 a running task’s signal aborts on a matching halt', () => {
      it('aborts with KS_ABORTED naming the flip; a task of another tenant is not aborted', async () => {
        const signals = new Map<string, AbortSignal>();
        consumers.push(
          await controller.work(
            (task, signal) =>
              new Promise<void>((resolve) => {
                signals.set(task.context.tenant!, signal);
                signal.addEventListener('abort', () => resolve());
                setTimeout(resolve, 2_000);
              }),
            { concurrency: 2 },
          ),
        );
        await controller.enqueue({ tenant: 'acme', runId: 'long' }, { n: 1, note: '' });
        await controller.enqueue({ tenant: 'beta', runId: 'long' }, { n: 2, note: '' });
        await until(() => signals.size === 2, 'both running');
        const seq = await h.halt({ tenant: 'acme' }, 'discard');
        await until(() => signals.get('acme')!.aborted, 'acme aborted');
        expect(signals.get('acme')!.reason).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
        expect(signals.get('beta')!.aborted).toBe(false);
      });
    });

    describe('KS-7.2.9 KS-7.3.1 a halt matching every context pauses the whole queue; a tenant halt does not', () => {
      it('pauses on a global hold, stays unpaused on a tenant hold, and unpauses on resume', async () => {
        await fill();
        await h.halt({ tenant: 'beta' }, 'hold');
        await until(
          async () =>
            (await controller.depth({ tenant: 'beta' })).held +
              (await controller.depth({ tenant: 'beta' })).waiting ===
            2,
          'beta enforced',
        );
        expect(await queue.isPaused()).toBe(false);
        await h.halt({}, 'hold');
        await until(() => queue.isPaused(), 'paused');
        await work();
        await h.resume({});
        await h.resume({ tenant: 'beta' });
        expect(await controller.resume()).toMatchObject({ unpaused: true });
        await until(() => ran.length === 5, 'all ran after resume');
      });

      it('KS-7.2.10 a fail-closed answer without a flip holds (it never discards)', async () => {
        await fill();
        await h.provider.onClose(); // the source closes: the provider fails closed (STALE)
        await controller.enforce();
        expect(await controller.discarded()).toEqual([]);
        expect(await queue.isPaused()).toBe(true);
        expect((await controller.depth()).total).toBe(5);
      });
    });
  });
}
