import { JsonLinesFile } from '../internal/json-lines-file.js';
import { RunIndex } from './internal/run-index.js';
import { RunJournalCorruptError } from './run-journal-corrupt-error.js';
import type { RunJournal } from './run-journal.js';
import { parseRunRecord, type RunRecord, type RunState } from './run-record.js';

/** Options of {@link FileRunJournal}. */
export interface FileRunJournalOptions {
  /** The journal file (JSON lines); created when missing. Its folder must exist. */
  readonly path: string;
  /**
   * fdatasync after every append, so a landed step is on disk before the run goes on. Turn it off
   * only for tests and benchmarks (the ledger still prevents repeats; the journal then only
   * saves work).
   * @default true
   */
  readonly fsync?: boolean;
  /** Told when a torn last line is cut and when a dead worker's lock claim is removed. @default console */
  readonly logger?: { warn(message: string): void };
}

/**
 * The run journal in a JSON-lines file shared by path between worker processes (one at a time
 * writes). KS-10.1
 *
 * Opening reads and folds the whole file; a bad line before the last refuses the open with
 * `KS_JOURNAL_CORRUPT`. The first `append` makes the instance the file's writer: it takes the
 * lock `<path>.lock/` (a claim left by a dead process, e.g. a SIGKILLed worker, is taken over; a
 * live one refuses with `KS_STORE_UNAVAILABLE`, so two workers never execute from one journal at
 * once), folds the file again under the lock (to see everything the dead worker wrote), and cuts a
 * torn last line with a warning. A failed write leaves the journal failed (every later append
 * rejects) until a new instance opens it.
 *
 * @example
 * ```ts
 * const journal = new FileRunJournal({ path: '/var/lib/agent/runs.jsonl' });
 * const runner = new DurableRunner({ guard, journal, workerId: 'worker-2' });
 * await runner.resume('run-42', agentLoop);
 * ```
 */
export class FileRunJournal implements RunJournal {
  readonly path: string;
  readonly #index = new RunIndex();
  readonly #file: JsonLinesFile<RunRecord>;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing path or a non-boolean fsync */
  constructor(options: FileRunJournalOptions) {
    this.#file = new JsonLinesFile<RunRecord>({
      ...options,
      what: 'run journal',
      parse: parseRunRecord,
      // KS-10.1.3 only a torn last line (a crash mid-write, never acknowledged) is cut.
      corrupt: (path, line, detail) => new RunJournalCorruptError(path, line, detail),
      reset: () => this.#index.clear(),
      apply: (r) => this.#index.apply(r),
    });
    this.path = this.#file.path;
  }

  /**
   * Reads, checks and folds the file; idempotent. Other methods open on first use.
   *
   * @throws {RunJournalCorruptError} `KS_JOURNAL_CORRUPT` naming the first bad line
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the file cannot be read
   */
  open(): Promise<void> {
    return this.#file.open();
  }

  /**
   * Becomes the file's writer now (lock, re-read); `append` does this on first use. The runner
   * calls it before reading a run it resumes, so it reads what the dead worker wrote last.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when another live process holds the lock
   */
  acquire(): Promise<void> {
    return this.#file.acquire();
  }

  /**
   * Appends a record; resolves once written (and fdatasync'ed unless `fsync: false`). KS-10.1.1
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing written)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  append(record: RunRecord): Promise<void> {
    return this.#file.append(record);
  }

  async run(runId: string): Promise<RunState | undefined> {
    await this.#file.ready();
    return this.#index.run(runId);
  }

  async runs(): Promise<RunState[]> {
    await this.#file.ready();
    return this.#index.runs();
  }

  async records(runId?: string): Promise<RunRecord[]> {
    await this.#file.ready();
    return this.#index.records(runId);
  }

  /** Waits for pending appends, then closes the file and releases the lock. Idempotent. */
  close(): Promise<void> {
    return this.#file.close();
  }
}
