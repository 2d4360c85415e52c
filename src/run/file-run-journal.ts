import { access, open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { Mutex } from '../internal/mutex.js';
// The flip log's lock (a claim directory that survives SIGKILL and never steals a live claim):
// one writer per journal file, and a SIGKILLed worker's claim is taken over by the next one.
import { LockFile } from '../internal/lock-file.js';
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

const State = { NEW: 'new', OPEN: 'open', FAILED: 'failed', CLOSED: 'closed' } as const;
type State = (typeof State)[keyof typeof State];

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
  readonly #fsync: boolean;
  readonly #logger: { warn(message: string): void };
  readonly #index = new RunIndex();
  readonly #mutex = new Mutex();
  #state: State = State.NEW;
  #opening: Promise<void> | undefined;
  #writer: Promise<void> | undefined;
  #fh: FileHandle | undefined;
  #lock: LockFile | undefined;
  #failure: unknown;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing path or a non-boolean fsync */
  constructor(options: FileRunJournalOptions) {
    if (typeof options?.path !== 'string' || options.path.length === 0) {
      throw new InvalidOptionError('path', 'a non-empty file path', options?.path);
    }
    if (options.fsync !== undefined && typeof options.fsync !== 'boolean') {
      throw new InvalidOptionError('fsync', 'a boolean', options.fsync);
    }
    this.path = options.path;
    this.#fsync = options.fsync ?? true;
    this.#logger = options.logger ?? console;
  }

  /**
   * Reads, checks and folds the file; idempotent. Other methods open on first use.
   *
   * @throws {RunJournalCorruptError} `KS_JOURNAL_CORRUPT` naming the first bad line
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the file cannot be read
   */
  open(): Promise<void> {
    if (this.#state === State.CLOSED) return Promise.reject(closedError());
    this.#opening ??= (async () => {
      await this.#load(false);
      if (this.#state === State.NEW) this.#state = State.OPEN;
    })().catch((err: unknown) => {
      this.#opening = undefined;
      throw err;
    });
    return this.#opening;
  }

  async #load(cut: boolean): Promise<{ created: boolean }> {
    let buf: Buffer;
    let created = false;
    try {
      buf = await readFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw unavailable(`cannot read ${this.path}`, err);
      buf = Buffer.alloc(0);
      created = true;
    }
    // KS-10.1.3 a torn last line (a crash mid-write, never acknowledged) is cut by the writer.
    const end = buf.lastIndexOf(0x0a) + 1;
    const text = buf.subarray(0, end).toString('utf8');
    const lines = text.length === 0 ? [] : text.slice(0, -1).split('\n');
    const records: RunRecord[] = [];
    for (let i = 0; i < lines.length; i++) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(lines[i]!);
      } catch {
        throw new RunJournalCorruptError(this.path, i + 1, 'not JSON');
      }
      try {
        records.push(parseRunRecord(parsed));
      } catch (err) {
        throw new RunJournalCorruptError(this.path, i + 1, (err as Error).message);
      }
    }
    if (end < buf.length && cut) {
      try {
        await truncate(this.path, end);
      } catch (err) {
        throw unavailable(`cannot cut the torn last line of ${this.path}`, err);
      }
      this.#logger.warn(
        `run journal ${this.path}: cut a torn last line (${buf.length - end} bytes) at line ${lines.length + 1}`,
      );
    }
    this.#index.clear();
    for (const r of records) this.#index.apply(r);
    return { created };
  }

  #becomeWriter(): Promise<void> {
    this.#writer ??= (async () => {
      let lock: LockFile | undefined;
      let fh: FileHandle | undefined;
      try {
        await access(dirname(this.path));
        lock = await LockFile.acquire(`${this.path}.lock`, (m) => this.#logger.warn(m));
        const { created } = await this.#load(true);
        fh = await open(this.path, 'a');
        await fh.sync();
        if (created) await syncDir(dirname(this.path));
      } catch (err) {
        await fh?.close().catch(() => undefined);
        await lock?.release().catch(() => undefined);
        this.#writer = undefined;
        if (err instanceof KillSwitchError) throw err;
        throw unavailable(`cannot open ${this.path} for appending`, err);
      }
      this.#fh = fh;
      this.#lock = lock;
    })();
    return this.#writer;
  }

  /**
   * Becomes the file's writer now (lock, re-read); `append` does this on first use. The runner
   * calls it before reading a run it resumes, so it reads what the dead worker wrote last.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when another live process holds the lock
   */
  async acquire(): Promise<void> {
    await this.open();
    await this.#mutex.run(async () => {
      if (this.#state === State.CLOSED) throw closedError();
      await this.#becomeWriter();
    });
  }

  /**
   * Appends a record; resolves once written (and fdatasync'ed unless `fsync: false`). KS-10.1.1
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing written)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  async append(record: RunRecord): Promise<void> {
    const r = parseRunRecord(record);
    let line: string;
    try {
      line = `${JSON.stringify(r)}\n`;
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_INPUT,
        `run record not JSON-serialisable: ${(err as Error).message}`,
      );
    }
    await this.open();
    return this.#mutex.run(async () => {
      if (this.#state === State.CLOSED) throw closedError();
      if (this.#state === State.FAILED)
        throw unavailable(
          `an earlier write to ${this.path} failed; reopen the journal`,
          this.#failure,
        );
      await this.#becomeWriter();
      const fh = this.#fh!;
      try {
        const bytes = Buffer.from(line, 'utf8');
        const { bytesWritten } = await fh.write(bytes);
        if (bytesWritten !== bytes.length)
          throw new Error(`short write (${bytesWritten} of ${bytes.length} bytes)`);
        if (this.#fsync) await fh.datasync();
      } catch (err) {
        this.#state = State.FAILED;
        this.#failure = err;
        throw unavailable(`cannot append to ${this.path}`, err);
      }
      this.#index.apply(r);
    });
  }

  async run(runId: string): Promise<RunState | undefined> {
    await this.#ready();
    return this.#index.run(runId);
  }

  async runs(): Promise<RunState[]> {
    await this.#ready();
    return this.#index.runs();
  }

  async records(runId?: string): Promise<RunRecord[]> {
    await this.#ready();
    return this.#index.records(runId);
  }

  /** Waits for pending appends, then closes the file and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === State.CLOSED) return;
    await this.#opening?.catch(() => undefined);
    await this.#mutex.run(async () => {
      this.#state = State.CLOSED;
      await this.#writer?.catch(() => undefined);
      const fh = this.#fh;
      const lock = this.#lock;
      this.#fh = undefined;
      this.#lock = undefined;
      await fh?.close();
      await lock?.release();
    });
  }

  async #ready(): Promise<void> {
    await this.open();
    if (this.#state === State.CLOSED) throw closedError();
  }
}

function closedError(): KillSwitchError {
  return new KillSwitchError(ErrorCode.STORE_CLOSED, 'run journal is closed');
}

function unavailable(message: string, cause: unknown): KillSwitchError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new KillSwitchError(ErrorCode.STORE_UNAVAILABLE, `${message}${why}`, { cause });
}

async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Some platforms cannot open directories; the file's own fsync is the best available there.
  } finally {
    await fh?.close();
  }
}
