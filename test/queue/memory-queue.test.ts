import { randomUUID } from 'node:crypto';
import { MemoryTaskQueue } from '../../src/queue/memory-task-queue.js';
import { describeQueueControl, type Payload } from './queue-control.suite.js';

describeQueueControl('KS-7.2 MemoryTaskQueue', {
  create: async () => new MemoryTaskQueue<Payload>({ name: `mem-${randomUUID().slice(0, 8)}` }),
});
