/**
 * openfeature-kill-switch: what a worker needs to evaluate kill flags and guard its effects (the
 * provider, the guard, ledgers, retries and queues under a halt, durable and child runs, and the
 * errors they throw). Everything else sits behind a subpath export, so a worker loads neither the
 * server nor a database driver: `/server`, `/client`, `/providers/*` (stores, the remote source,
 * ledgers and queues on PostgreSQL or BullMQ), `/report`, `/lineage`, `/tripwire`, `/telemetry`,
 * `/metrics`, `/ofrep`, `/protocol`, the framework adapters (`/ai-sdk`, `/openai-agents`, `/mcp`,
 * `/langgraph`), `/gateway`, `/drill`, and `/testing` (the manual clock, the conformance suites).
 */

// The errors every part throws, with their stable codes.
export * from './errors.js';

// The model: what a halt names and what a flip is.
export {
  Level,
  QueueMode,
  FlipAction,
  HaltCause,
  KILL_SWITCH_FLAG,
  LEVEL_FLAGS,
  KILL_FLAG_KEYS,
  parseSelector,
  formatSelector,
  type Selector,
  type SelectorKey,
  type KillContext,
  type FlipRecord,
  type FlipSummary,
  type KillSnapshot,
  type KillFlagKey,
} from './model/index.js';

// Where the kill state comes from, and the OpenFeature provider that answers it.
export type { FlipLogStore } from './store/index.js';
export {
  SourceStatus,
  StoreFlipSource,
  type FlipSource,
  type FlipSourceListener,
} from './source/index.js';
export * from './provider/index.js';
export * from './hooks/index.js';

// The guard: check before, abort during, record every effect.
export {
  EffectGuard,
  HaltWatcher,
  DuplicateEffectError,
  DuplicateState,
  FailClosedKillStrategy,
  type EffectGuardOptions,
  type GuardedEffect,
  type EffectBody,
  type EffectInfo,
  type ResultCodec,
  type HaltListener,
  type KillDecision,
} from './guard/index.js';
export {
  EffectStatus,
  MemorySideEffectLedger,
  FileSideEffectLedger,
  LedgerCorruptError,
  type FileSideEffectLedgerOptions,
  type SideEffectLedger,
  type LedgerEntry,
  type LedgerEvent,
  type LedgerFilter,
  type Compensation,
} from './ledger/index.js';

// Retries, timers and queues under a halt.
export {
  Scheduler,
  TimerState,
  type SchedulerOptions,
  type SchedulerLogger,
  type RetryOptions,
  type ScheduleOptions,
  type ScheduledTimer,
  type RetryPolicy,
  type BackoffPolicy,
} from './schedule/index.js';
export {
  QueueController,
  MemoryTaskQueue,
  MemoryQueueJournal,
  FileQueueJournal,
  TaskState,
  type QueueControllerOptions,
  type QueueControllerLogger,
  type EnforceResult,
  type ResumeResult,
  type RequeueResult,
  type WorkOptions,
  type TaskHandler,
  type TaskQueue,
  type QueuedTask,
  type NewTask,
  type QueueJournal,
  type FileQueueJournalOptions,
  type MemoryTaskQueueOptions,
} from './queue/index.js';

// Durable runs, resumed on any worker, and the runs they spawn.
export {
  DurableRunner,
  MemoryRunJournal,
  FileRunJournal,
  RunJournalCorruptError,
  RunStatus,
  type DurableRunnerOptions,
  type RunFunction,
  type RunHandle,
  type RunSpec,
  type StepOptions,
  type RunJournal,
} from './run/index.js';
export {
  runInScope,
  runInRunScope,
  currentRunScope,
  spawnChildRun,
  type RunScope,
  type ChildRun,
  type SpawnChildRunOptions,
} from './scope/index.js';

export { systemClock, type Clock } from './internal/clock.js';
