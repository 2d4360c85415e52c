import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryQueueJournal } from '../../src/queue/memory-queue-journal.js';
import { MemoryTaskQueue } from '../../src/queue/memory-task-queue.js';
import { QueueController, modeOf } from '../../src/queue/queue-controller.js';
import { inMemoryKill } from '../schedule/kill-harness.js';
import { describeQueueControl, until, type Payload } from './queue-control.suite.js';

describeQueueControl('KS-7.2 MemoryTaskQueue', {
  create: async () => new MemoryTaskQueue<Payload>({ name: `mem-${randomUUID().slice(0, 8)}` }),
});

describe('KS-7.2.1 the mode comes from the flip; a halt that names none discards; KS-7.2.10 a fail-closed answer holds', () => {
  it('modeOf reads flip.mode, defaults to discard, and holds on STALE and ERROR', () => {
    const flip = { seq: 1, id: 'f', actor: 'a', reason: 'r', selector: {} };
    expect(modeOf({ halted: true, cause: 'halted', flip: { ...flip, mode: 'drain' } })).toBe(
      'drain',
    );
    expect(modeOf({ halted: true, cause: 'halted', flip })).toBe('discard');
    expect(modeOf({ halted: true, cause: 'halted' })).toBe('discard');
    expect(modeOf({ halted: true, cause: 'stale' })).toBe('hold');
    expect(modeOf({ halted: true, cause: 'error' })).toBe('hold');
  });

  it('with a plain InMemoryProvider (no flagMetadata) a halted tenant’s tasks are journaled and removed', async () => {
    let acme = false;
    const mem = await inMemoryKill((ctx) => acme && ctx.tenant === 'acme');
    const queue = new MemoryTaskQueue<Payload>();
    const journal = new MemoryQueueJournal();
    const controller = new QueueController({ queue, watcher: mem.watcher, journal });
    try {
      await controller.enqueue({ tenant: 'acme' }, { n: 1, note: 'x' });
      await controller.enqueue({ tenant: 'beta' }, { n: 2, note: 'y' });
      acme = true;
      const r = await controller.enforce();
      expect(r).toMatchObject({ discarded: 1, held: 0, paused: false });
      const [d] = await controller.discarded();
      expect(d).toMatchObject({
        context: { tenant: 'acme' },
        payload: { n: 1, note: 'x' },
        cause: 'halted',
      });
      expect(d?.haltSeq).toBeUndefined();
      expect(await controller.depth()).toMatchObject({ waiting: 1, total: 1 });
    } finally {
      await controller.close();
      mem.watcher.close();
      await mem.close();
    }
  });
});

describe('KS-7.2.7 the controller does not keep a watch per finished run forever', () => {
  it('drops the watches of contexts that left the queue once the watch count doubles', async () => {
    const mem = await inMemoryKill(() => false);
    const queue = new MemoryTaskQueue<Payload>();
    const controller = new QueueController({
      queue,
      watcher: mem.watcher,
      journal: new MemoryQueueJournal(),
    });
    try {
      for (let i = 0; i < 1100; i++)
        await controller.enqueue({ runId: `a${i}` }, { n: i, note: '' });
      const worker = await controller.work(async () => undefined, { concurrency: 4 });
      await until(async () => (await controller.depth()).total === 0, 'drained');
      await worker.close();
      for (let i = 0; i < 1000; i++)
        await controller.enqueue({ runId: `b${i}` }, { n: i, note: '' });
      await controller.enforce(); // queued behind the prune
      expect(mem.watcher.size).toBeLessThanOrEqual(1000);
      expect(mem.watcher.size).toBeGreaterThan(0);
    } finally {
      await controller.close();
      mem.watcher.close();
      await mem.close();
    }
  });
});
