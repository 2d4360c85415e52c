export {
  DurableRunner,
  type DurableRunnerOptions,
  type RunFunction,
  type RunHandle,
  type RunSpec,
  type StepOptions,
} from './durable-runner.js';
export type { RunJournal } from './run-journal.js';
export { MemoryRunJournal } from './memory-run-journal.js';
export { FileRunJournal, type FileRunJournalOptions } from './file-run-journal.js';
export { RunJournalCorruptError } from './run-journal-corrupt-error.js';
export {
  RunStatus,
  runRecordSchema,
  parseRunRecord,
  foldRunRecord,
  foldRunRecords,
  type RunEndStatus,
  type RunRecord,
  type RunStartedRecord,
  type RunResumedRecord,
  type RunStepRecord,
  type RunEndedRecord,
  type RunState,
  type RunStepState,
} from './run-record.js';
