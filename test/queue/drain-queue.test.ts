import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BullMqTaskQueue } from '../../providers/bullmq/index.js';
import type { DrainPermit } from '../../src/guard/drain-permit.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { MemoryQueueJournal } from '../../src/queue/memory-queue-journal.js';
import { MemoryTaskQueue } from '../../src/queue/memory-task-queue.js';
import { QueueController } from '../../src/queue/queue-controller.js';
import type { QueuedTask, TaskConsumer, TaskQueue } from '../../src/queue/task-queue.js';
import { inMemoryKill, killHarness, settle, type KillHarness } from '../schedule/kill-harness.js';
import { until } from './queue-control.suite.js';
import { REDIS, deletePrefix, requireRedis, testPrefix } from './redis-test-env.js';

interface Job {
  readonly n: number;
}

const quiet = { warn: () => undefined };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// KS-7.3.5: with CI=true a missing Redis fails this file instead of skipping the BullMQ case.
const redis = await requireRedis();

interface Rig {
  readonly h: KillHarness;
  readonly queue: TaskQueue<Job>;
  readonly controller: QueueController<Job>;
  readonly guard: EffectGuard;
  readonly ledger: MemorySideEffectLedger;
  readonly journal: MemoryQueueJournal;
  /** Effects that left (the sink). */
  readonly sent: number[];
  /** What each task's guarded effect ended with. */
  readonly outcomes: Map<number, string>;
  work(opts?: { usePermit?: boolean }): Promise<TaskConsumer>;
}

async function rig(queue: TaskQueue<Job> = new MemoryTaskQueue<Job>()): Promise<Rig> {
  const h = await killHarness();
  cleanups.push(() => h.close());
  const journal = new MemoryQueueJournal();
  const ledger = new MemorySideEffectLedger();
  const guard = new EffectGuard({ client: h.client, ledger, watcher: h.watcher, logger: quiet });
  const controller = new QueueController<Job>({
    queue,
    watcher: h.watcher,
    journal,
    logger: quiet,
  });
  cleanups.push(async () => {
    await controller.close();
    await guard.close();
    await queue.close();
  });
  await controller.start();
  const sent: number[] = [];
  const outcomes = new Map<number, string>();
  return {
    h,
    queue,
    controller,
    guard,
    ledger,
    journal,
    sent,
    outcomes,
    async work({ usePermit = true } = {}) {
      const c = await controller.work(async (task, _signal, permit) => {
        try {
          await guard.run(
            {
              context: task.context,
              runId: task.context.runId!,
              step: `send-${task.payload.n}`,
              capability: 'email.send',
              ...(usePermit ? { drainPermit: permit } : {}),
            },
            async () => {
              sent.push(task.payload.n);
            },
          );
          outcomes.set(task.payload.n, 'landed');
        } catch (err) {
          outcomes.set(task.payload.n, (err as { code?: string }).code ?? String(err));
        }
      });
      cleanups.push(() => c.close());
      return c;
    },
  };
}

async function fill(r: Rig, tenant = 'acme', ns = [1, 2, 3]): Promise<QueuedTask<Job>[]> {
  const out: QueuedTask<Job>[] = [];
  for (const n of ns) out.push(await r.controller.enqueue({ tenant, runId: `run-${n}` }, { n }));
  return out;
}

describe('KS-7.2.11 KS-4.8.2 a task records its admission point at enqueue: a seq, not a time', () => {
  it('admittedSeq is the seq of the kill state the enqueue check read', async () => {
    const r = await rig();
    expect((await fill(r, 'acme', [1]))[0]?.admittedSeq).toBe(0);
    await r.h.halt({ tenant: 'other' }, 'discard');
    expect((await fill(r, 'acme', [2]))[0]?.admittedSeq).toBe(1);
    expect((await r.queue.list()).map((t) => t.admittedSeq)).toEqual([0, 1]);
  });

  it('with a provider that names no state seq (InMemoryProvider) the task has none', async () => {
    const mem = await inMemoryKill(() => false);
    cleanups.push(() => mem.close());
    const queue = new MemoryTaskQueue<Job>();
    const controller = new QueueController<Job>({
      queue,
      watcher: mem.watcher,
      journal: new MemoryQueueJournal(),
      logger: quiet,
    });
    cleanups.push(() => controller.close());
    const t = await controller.enqueue({ tenant: 'acme' }, { n: 1 });
    expect(t.admittedSeq).toBeUndefined();
  });
});

describe('KS-7.2.5 / KS-7.2.11 drain: queued tasks run to completion and their effects land', () => {
  it('tasks admitted before the drain halt dispatch and land; one enqueued after is refused at enqueue', async () => {
    const r = await rig();
    await fill(r);
    const drainSeq = await r.h.halt({ tenant: 'acme' }, 'drain');
    await expect(
      r.controller.enqueue({ tenant: 'acme', runId: 'late' }, { n: 9 }),
    ).rejects.toMatchObject({
      code: 'KS_HALTED',
      flip: { seq: drainSeq },
    });
    await r.work();
    await until(() => r.outcomes.size === 3, 'three drained tasks finished');
    expect([...r.outcomes.values()]).toEqual(['landed', 'landed', 'landed']);
    expect(r.sent.sort()).toEqual([1, 2, 3]);
    // Still recorded in the ledger, each intent naming the drain halt it left under.
    const entries = await r.ledger.entries();
    expect(entries).toHaveLength(3);
    for (const e of entries) {
      expect(e.history.map((x) => x.status)).toEqual(['intent', 'landed']);
      expect(e.history[0]?.flipSeq).toBe(drainSeq);
    }
    expect(await r.controller.discarded()).toEqual([]);
  });

  it('a handler that does not pass its permit gets its effects refused (the permit is explicit)', async () => {
    const r = await rig();
    await fill(r, 'acme', [1]);
    await r.h.halt({ tenant: 'acme' }, 'drain');
    await r.work({ usePermit: false });
    await until(() => r.outcomes.size === 1, 'task finished');
    expect(r.outcomes.get(1)).toBe('KS_HALTED');
    expect(r.sent).toEqual([]);
  });

  it('a drain halt landing while a task runs neither aborts its signal nor refuses its next effect', async () => {
    const r = await rig();
    await fill(r, 'acme', [1]);
    let go!: () => void;
    const gate = new Promise<void>((ok) => {
      go = ok;
    });
    let started!: () => void;
    const running = new Promise<void>((ok) => {
      started = ok;
    });
    let aborted: boolean | undefined;
    let result: string | undefined;
    const c = await r.controller.work(async (task, signal, permit) => {
      started();
      await gate;
      aborted = signal.aborted;
      result = await r.guard
        .run(
          {
            context: task.context,
            runId: task.context.runId!,
            step: 'after-drain',
            capability: 'email.send',
            drainPermit: permit,
          },
          async () => 'landed',
        )
        .catch((e: { code?: string }) => e.code ?? 'error');
    });
    cleanups.push(() => c.close());
    await running;
    await r.h.halt({ tenant: 'acme' }, 'drain');
    await settle(10);
    go();
    await until(() => result !== undefined, 'effect settled');
    expect(aborted).toBe(false);
    expect(result).toBe('landed');
  });

  it('a discard halt landing while a drained task runs aborts its signal', async () => {
    const r = await rig();
    await fill(r, 'acme', [1]);
    await r.h.halt({ tenant: 'acme' }, 'drain');
    let signal: AbortSignal | undefined;
    const c = await r.controller.work(async (_task, s) => {
      signal = s;
      await new Promise<void>((ok) => s.addEventListener('abort', () => ok()));
    });
    cleanups.push(() => c.close());
    await until(() => signal !== undefined, 'task started');
    await settle(10);
    expect(signal!.aborted).toBe(false);
    await r.h.halt({ runId: 'run-1' }, 'discard');
    await until(() => signal!.aborted, 'signal aborted');
    // The error names the lowest-seq matching halt (here the drain), as every refusal does.
    expect(signal!.reason).toMatchObject({ code: 'KS_ABORTED' });
  });

  it('the permit is revoked once the handler settles: an effect started later is refused', async () => {
    const r = await rig();
    await fill(r, 'acme', [1]);
    await r.h.halt({ tenant: 'acme' }, 'drain');
    let kept: DrainPermit | undefined;
    const c = await r.controller.work(async (_t, _s, permit) => {
      kept = permit;
    });
    cleanups.push(() => c.close());
    await until(() => kept !== undefined && !kept.active, 'handler settled');
    await expect(
      r.guard.run(
        {
          context: { tenant: 'acme', runId: 'run-1' },
          runId: 'run-1',
          step: 'late',
          capability: 'email.send',
          drainPermit: kept!,
        },
        async () => 1,
      ),
    ).rejects.toMatchObject({ code: 'KS_HALTED' });
  });
});

describe('KS-7.2.11 drain never runs a task its permit would not cover', () => {
  it('a drain halt plus a discard halt on the same tasks: none runs, none of their effects leaves', async () => {
    for (const order of ['drain-first', 'discard-first'] as const) {
      const r = await rig();
      await fill(r);
      if (order === 'drain-first') {
        await r.h.halt({ tenant: 'acme' }, 'drain');
        await r.h.halt({ feature: 'f' }, 'discard'); // matches nothing queued
        await r.h.halt({ runId: 'run-1' }, 'discard');
      } else {
        await r.h.halt({ runId: 'run-1' }, 'discard');
        await r.h.halt({ tenant: 'acme' }, 'drain');
      }
      await r.work();
      await until(() => r.outcomes.size === 2, `${order}: the two drained tasks finished`);
      await settle(10);
      // run-1 matches both halts: it was discarded (journaled) or held, never run.
      expect(r.outcomes.has(1)).toBe(false);
      expect(r.sent.sort()).toEqual([2, 3]);
      const discarded = (await r.controller.discarded()).map((d) => d.taskId);
      const held = (await r.queue.list()).filter((t) => t.state === 'held').map((t) => t.id);
      expect([...discarded, ...held]).toHaveLength(1);
    }
  });

  it('a task that reached the queue without an admission point (bypassing the controller) is held, then runs after the resume', async () => {
    const r = await rig();
    await r.queue.add({
      name: 'task',
      payload: { n: 7 },
      context: { tenant: 'acme', runId: 'run-7' },
    });
    await r.h.halt({ tenant: 'acme' }, 'drain');
    await r.work();
    await until(async () => (await r.controller.depth({ tenant: 'acme' })).held === 1, 'held');
    expect(r.sent).toEqual([]);
    const [held] = await r.queue.list();
    expect(held?.admittedSeq).toBeUndefined();
    await r.h.resume({ tenant: 'acme' });
    await r.controller.resume();
    await until(() => r.outcomes.get(7) === 'landed', 'ran after the resume');
  });

  it('a task whose admission is not older than the drain halt (a lagging producer) is held, not run', async () => {
    const r = await rig();
    const seq = await r.h.halt({ tenant: 'acme' }, 'drain');
    await r.queue.add({
      name: 'task',
      payload: { n: 8 },
      context: { tenant: 'acme', runId: 'run-8' },
      admittedSeq: seq,
    });
    await r.controller.enforce();
    await r.work();
    await until(async () => (await r.controller.depth({ tenant: 'acme' })).held === 1, 'held');
    expect(r.sent).toEqual([]);
  });
});

describe('KS-7.2.11 the admission point survives a restart (stored with the task in Redis)', () => {
  it.skipIf(!redis)(
    'a BullMQ task admitted before the drain runs on a new controller and queue instance',
    async () => {
      const prefix = testPrefix('drain');
      cleanups.push(() => deletePrefix(prefix));
      const name = `drain-${randomUUID().slice(0, 8)}`;
      const first = new BullMqTaskQueue<Job>({ name, prefix, connection: REDIS, logger: quiet });
      const a = await rig(first);
      const [task] = await fill(a, 'acme', [1]);
      expect(task?.admittedSeq).toBe(0);
      await a.controller.close();
      await first.close();
      // A worker restarted during the halt: new queue object, new controller, same Redis.
      await a.h.halt({ tenant: 'acme' }, 'drain');
      const second = new BullMqTaskQueue<Job>({ name, prefix, connection: REDIS, logger: quiet });
      cleanups.push(() => second.close());
      const controller = new QueueController<Job>({
        queue: second,
        watcher: a.h.watcher,
        journal: new MemoryQueueJournal(),
        logger: quiet,
      });
      cleanups.push(() => controller.close());
      expect((await second.list()).map((t) => t.admittedSeq)).toEqual([0]);
      await controller.start();
      const landed: number[] = [];
      const c = await controller.work(async (t, _s, permit) => {
        await a.guard.run(
          {
            context: t.context,
            runId: t.context.runId!,
            step: 'send',
            capability: 'email.send',
            drainPermit: permit,
          },
          async () => {
            landed.push(t.payload.n);
          },
        );
      });
      cleanups.push(() => c.close());
      await until(() => landed.length === 1, 'drained task landed after the restart');
      expect(landed).toEqual([1]);
    },
  );
});
