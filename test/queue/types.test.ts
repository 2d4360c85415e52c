import { describe, expectTypeOf, it } from 'vitest';
import type { BullMqTaskQueue } from '../../providers/bullmq/index.js';
import type {
  FileQueueJournal,
  MemoryQueueJournal,
  MemoryTaskQueue,
  QueueController,
} from '../../src/queue/index.js';
import {
  type QueueDepth,
  type QueueJournal,
  type QueuedTask,
  type TaskQueue,
} from '../../src/queue/index.js';

describe('KS-7.2 the public queue types', () => {
  it('both queues implement TaskQueue and both journals QueueJournal', () => {
    expectTypeOf<MemoryTaskQueue<{ a: number }>>().toExtend<TaskQueue<{ a: number }>>();
    expectTypeOf<BullMqTaskQueue<{ a: number }>>().toExtend<TaskQueue<{ a: number }>>();
    expectTypeOf<FileQueueJournal>().toExtend<QueueJournal>();
    expectTypeOf<MemoryQueueJournal>().toExtend<QueueJournal>();
  });

  it('the controller keeps the payload type from queue to handler', () => {
    type C = QueueController<{ to: string }>;
    expectTypeOf<Parameters<C['enqueue']>[1]>().toEqualTypeOf<{ to: string }>();
    expectTypeOf<Parameters<Parameters<C['work']>[0]>[0]>().toEqualTypeOf<
      QueuedTask<{ to: string }>
    >();
    expectTypeOf<ReturnType<C['depth']>>().toEqualTypeOf<Promise<QueueDepth>>();
  });
});
