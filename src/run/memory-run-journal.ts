import { ErrorCode, KillSwitchError } from '../errors.js';
import { RunIndex } from './internal/run-index.js';
import type { RunJournal } from './run-journal.js';
import { parseRunRecord, type RunRecord, type RunState } from './run-record.js';

/**
 * The in-memory run journal: for tests and for runs that need not survive their process.
 * KS-10.1
 *
 * @example
 * ```ts
 * const runner = new DurableRunner({ guard, journal: new MemoryRunJournal(), workerId: 'w1' });
 * ```
 */
export class MemoryRunJournal implements RunJournal {
  readonly #index = new RunIndex();
  #closed = false;

  /** @throws {ValidationError} `KS_INVALID_INPUT`; {@link KillSwitchError} `KS_STORE_CLOSED` */
  async append(record: RunRecord): Promise<void> {
    this.#check();
    this.#index.apply(parseRunRecord(record));
  }

  async run(runId: string): Promise<RunState | undefined> {
    this.#check();
    return this.#index.run(runId);
  }

  async runs(): Promise<RunState[]> {
    this.#check();
    return this.#index.runs();
  }

  async records(runId?: string): Promise<RunRecord[]> {
    this.#check();
    return this.#index.records(runId);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #check(): void {
    if (this.#closed) throw new KillSwitchError(ErrorCode.STORE_CLOSED, 'run journal is closed');
  }
}
