export { BullMqTaskQueue, type BullMqTaskQueueOptions } from './bullmq-task-queue.js';
