import { access, open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { Mutex } from '../internal/mutex.js';
// The flip-log store's lock (a claim directory that survives SIGKILL and never steals a live
// claim); shared so both files follow one locking rule.
import { LockFile } from '../internal/lock-file.js';
import { LedgerIndex } from './internal/ledger-index.js';
import { LedgerCorruptError } from './ledger-corrupt-error.js';
import {
  inDoubt,
  parseLedgerEvent,
  type LedgerEntry,
  type LedgerEvent,
  type LedgerFilter,
  type SideEffectLedger,
} from './side-effect-ledger.js';

/** Options of {@link FileSideEffectLedger}. */
export interface FileSideEffectLedgerOptions {
  /** The ledger file (JSON lines); created when missing. Its folder must exist. */
  readonly path: string;
  /**
   * fdatasync after every append, so an intent is on disk before its effect is dispatched. Turn it
   * off only for tests and benchmarks: a crash can then lose intents of effects that left.
   * @default true
   */
  readonly fsync?: boolean;
  /** Told when a torn last line is cut and when a stale lock claim is removed. @default console */
  readonly logger?: { warn(message: string): void };
}

/** Lifecycle of the file ledger. */
const State = { NEW: 'new', OPEN: 'open', FAILED: 'failed', CLOSED: 'closed' } as const;
type State = (typeof State)[keyof typeof State];

/**
 * The side-effect ledger in a JSON-lines file: one event per line, appended and (by default)
 * fdatasync'ed before `append` resolves. KS-4.5
 *
 * On open the whole file is read and folded (a reader: `entries` needs nothing more); any bad line
 * but a torn last one refuses the open with `KS_LEDGER_CORRUPT`. The first `append` makes it the
 * writer: it takes the lock `<path>.lock/` (one writer per file, across processes and within
 * one; a claim left by a dead process is taken over), reads and folds the file again under the
 * lock (so it sees what an earlier writer left), and cuts a torn last line (no newline: a crash in
 * the middle of a write) with a warning. Readers never cut, so a reader cannot damage a live
 * writer's file. A failed write leaves the ledger failed: every later append rejects
 * (`KS_STORE_UNAVAILABLE`), so the guard dispatches nothing more, until a new instance opens it.
 * A reader sees the file as it was when it opened; open a new instance to see later appends.
 *
 * @example
 * ```ts
 * const ledger = new FileSideEffectLedger({ path: '/var/lib/agent/effects.jsonl' });
 * await ledger.open();
 * ```
 */
export class FileSideEffectLedger implements SideEffectLedger {
  readonly path: string;
  readonly #fsync: boolean;
  readonly #logger: { warn(message: string): void };
  readonly #index = new LedgerIndex();
  readonly #mutex = new Mutex();
  #state: State = State.NEW;
  #opening: Promise<void> | undefined;
  #fh: FileHandle | undefined;
  #lock: LockFile | undefined;
  #writer: Promise<void> | undefined;
  #failure: unknown;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing path or a non-boolean fsync */
  constructor(options: FileSideEffectLedgerOptions) {
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
   * @throws {LedgerCorruptError} `KS_LEDGER_CORRUPT` naming the first bad line
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the file cannot be read or created
   */
  open(): Promise<void> {
    if (this.#state === State.CLOSED) return Promise.reject(closedError());
    this.#opening ??= this.#open().catch((err: unknown) => {
      this.#opening = undefined;
      throw err;
    });
    return this.#opening;
  }

  async #open(): Promise<void> {
    await this.#load(false);
    this.#state = State.OPEN;
  }

  /** Reads and folds the file into the index; the writer (holding the lock) also cuts a torn tail. */
  async #load(cut: boolean): Promise<{ created: boolean }> {
    let buf: Buffer;
    let created = false;
    try {
      buf = await readFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw unavailable(`cannot read ${this.path}`, err);
      }
      buf = Buffer.alloc(0);
      created = true;
    }
    // KS-4.5.2 a torn last line (no trailing newline) is cut by the writer; every complete line
    // must parse (KS-4.5.3).
    const end = buf.lastIndexOf(0x0a) + 1;
    const torn = end < buf.length;
    const text = buf.subarray(0, end).toString('utf8');
    const lines = text.length === 0 ? [] : text.slice(0, -1).split('\n');
    const events: LedgerEvent[] = [];
    for (let i = 0; i < lines.length; i++) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(lines[i]!);
      } catch {
        throw new LedgerCorruptError(this.path, i + 1, 'not JSON');
      }
      try {
        events.push(parseLedgerEvent(parsed));
      } catch (err) {
        throw new LedgerCorruptError(this.path, i + 1, (err as Error).message);
      }
    }
    if (torn && cut) {
      try {
        await truncate(this.path, end);
      } catch (err) {
        throw unavailable(`cannot cut the torn last line of ${this.path}`, err);
      }
      this.#logger.warn(
        `side-effect ledger ${this.path}: cut a torn last line (${buf.length - end} bytes) at line ${lines.length + 1}`,
      );
    }
    this.#index.clear();
    for (const e of events) this.#index.apply(e);
    return { created };
  }

  /** Becomes the file's one writer: lock, fold again under the lock, cut a torn tail, open. KS-4.5.6 */
  #becomeWriter(): Promise<void> {
    this.#writer ??= (async () => {
      let lock: LockFile | undefined;
      let fh: FileHandle | undefined;
      try {
        // A mistyped path must not grow a folder tree (the lock would create one): the folder must exist.
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
   * Appends an event; resolves once it is written (and fdatasync'ed unless `fsync: false`).
   * KS-4.5.1
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing written)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the write failed, `KS_STORE_CLOSED`
   */
  async append(event: LedgerEvent): Promise<void> {
    const e = parseLedgerEvent(event);
    const line = `${JSON.stringify(e)}\n`;
    await this.open();
    return this.#mutex.run(async () => {
      if (this.#state === State.CLOSED) throw closedError();
      if (this.#state === State.FAILED) {
        throw unavailable(
          `an earlier write to ${this.path} failed; reopen the ledger`,
          this.#failure,
        );
      }
      await this.#becomeWriter();
      const fh = this.#fh!;
      try {
        const bytes = Buffer.from(line, 'utf8');
        const { bytesWritten } = await fh.write(bytes);
        if (bytesWritten !== bytes.length)
          throw new Error(`short write (${bytesWritten} of ${bytes.length} bytes)`);
        if (this.#fsync) await fh.datasync();
      } catch (err) {
        // A half-written line would corrupt the middle of the file on the next append: stop here.
        this.#state = State.FAILED;
        this.#failure = err;
        throw unavailable(`cannot append to ${this.path}`, err);
      }
      this.#index.apply(e);
    });
  }

  async entries(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    await this.open();
    if (this.#state === State.CLOSED) throw closedError();
    return this.#index.entries(filter);
  }

  /** Entries whose effect may or may not have landed (last status `intent` or `aborted`). KS-4.4.5 */
  inDoubt(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    return inDoubt(this, filter);
  }

  /** Waits for pending appends, then closes the file. Idempotent. */
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
}

function closedError(): KillSwitchError {
  return new KillSwitchError(ErrorCode.STORE_CLOSED, 'side-effect ledger is closed');
}

function unavailable(message: string, cause: unknown): KillSwitchError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new KillSwitchError(ErrorCode.STORE_UNAVAILABLE, `${message}${why}`, { cause });
}

/** Makes a newly created file's directory entry durable (not supported on every platform). */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Windows cannot open directories; the file's own fsync is the best available there.
  } finally {
    await fh?.close();
  }
}
