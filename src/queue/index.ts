export {
  TaskState,
  type QueuedTask,
  type NewTask,
  type QueueDepth,
  type HoldInfo,
  type RemoveResult,
  type Verdict,
  type ConsumeOptions,
  type TaskConsumer,
  type TaskQueue,
} from './task-queue.js';
export {
  pendingDiscards,
  type DiscardedRecord,
  type VoidRecord,
  type RequeuedRecord,
  type QueueJournalRecord,
  type QueueJournal,
  type DiscardFilter,
} from './queue-journal.js';
export { MemoryQueueJournal } from './memory-queue-journal.js';
export { FileQueueJournal, type FileQueueJournalOptions } from './file-queue-journal.js';
export { MemoryTaskQueue, type MemoryTaskQueueOptions } from './memory-task-queue.js';
export {
  QueueController,
  modeOf,
  type QueueControllerOptions,
  type QueueControllerLogger,
  type EnforceResult,
  type ResumeResult,
  type RequeueResult,
  type WorkOptions,
  type TaskHandler,
} from './queue-controller.js';
