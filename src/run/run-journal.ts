import type { RunRecord, RunState } from './run-record.js';

/**
 * Where durable runs record their progress: one record per start, resume, landed step and end.
 * A run resumed on another worker reads it to continue where the dead worker stopped. KS-10.1
 *
 * To implement one: `append` MUST validate the record ({@link parseRunRecord}) and resolve only
 * once it is durable; `run` and `runs` MUST return the fold ({@link foldRunRecords}) of what was
 * appended, including by other processes before this instance opened.
 */
export interface RunJournal {
  /**
   * Appends a record once it is durable.
   *
   * @throws {ValidationError} `KS_INVALID_INPUT`
   * @throws {KillSwitchError} `KS_STORE_CLOSED`, `KS_STORE_UNAVAILABLE`
   */
  append(record: RunRecord): Promise<void>;
  /** One run's state, or undefined when it was never started. */
  run(runId: string): Promise<RunState | undefined>;
  /** Every run's state, in order of start. */
  runs(): Promise<RunState[]>;
  /** Every record of a run (or of all runs), in append order. */
  records(runId?: string): Promise<RunRecord[]>;
  close(): Promise<void>;
}
