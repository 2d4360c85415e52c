import { access, open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { LockFile } from './lock-file.js';
import { Mutex } from './mutex.js';

/** What a {@link JsonLinesFile} needs from the file it keeps (the ledger, the run journal). */
export interface JsonLinesFileOptions<T> {
  /** The file; created when missing. Its folder must exist. */
  readonly path: string;
  /** fdatasync after every append. @default true */
  readonly fsync?: boolean;
  /** Told when a torn last line is cut and when a dead process's lock claim is removed. @default console */
  readonly logger?: { warn(message: string): void };
  /** Names the file in messages: `side-effect ledger`, `run journal`. */
  readonly what: string;
  /** Validates one parsed line; throws with a message when it is not a record. */
  readonly parse: (value: unknown) => T;
  /** The error for a bad complete line (1-based), which refuses the open. */
  readonly corrupt: (path: string, line: number, detail: string) => Error;
  /** The file was (re)read: drop what was folded before. */
  readonly reset: () => void;
  /** Fold one record (read on open, or just appended). */
  readonly apply: (record: T) => void;
}

const State = { NEW: 'new', OPEN: 'open', FAILED: 'failed', CLOSED: 'closed' } as const;
type State = (typeof State)[keyof typeof State];

/**
 * A JSON-lines file of validated records with one writer across processes: the durable half of
 * the file ledger and the run journal, so both follow one set of rules.
 *
 * Opening reads and folds the whole file (a reader needs nothing more); any bad line but a torn
 * last one refuses the open. The first `append` makes the instance the writer: it takes the lock
 * `<path>.lock/` (a claim left by a dead process is taken over; a live one refuses with
 * `KS_STORE_UNAVAILABLE`), folds the file again under the lock (to see what an earlier writer
 * left), and cuts a torn last line (a crash in the middle of a write, never acknowledged) with a
 * warning. Readers never cut, so a reader cannot damage a live writer's file. A failed write
 * leaves the file failed: every later append rejects until a new instance opens it, because a
 * half-written line would otherwise end up in the middle of the file.
 */
export class JsonLinesFile<T> {
  readonly path: string;
  readonly #o: JsonLinesFileOptions<T>;
  readonly #fsync: boolean;
  readonly #logger: { warn(message: string): void };
  readonly #mutex = new Mutex();
  #state: State = State.NEW;
  #opening: Promise<void> | undefined;
  #writer: Promise<void> | undefined;
  #fh: FileHandle | undefined;
  #lock: LockFile | undefined;
  #failure: unknown;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing path or a non-boolean fsync */
  constructor(options: JsonLinesFileOptions<T>) {
    if (typeof options?.path !== 'string' || options.path.length === 0) {
      throw new InvalidOptionError('path', 'a non-empty file path', options?.path);
    }
    if (options.fsync !== undefined && typeof options.fsync !== 'boolean') {
      throw new InvalidOptionError('fsync', 'a boolean', options.fsync);
    }
    this.#o = options;
    this.path = options.path;
    this.#fsync = options.fsync ?? true;
    this.#logger = options.logger ?? console;
  }

  /** Reads, checks and folds the file; idempotent. */
  open(): Promise<void> {
    if (this.#state === State.CLOSED) return Promise.reject(this.#closed());
    this.#opening ??= (async () => {
      await this.#load(false);
      if (this.#state === State.NEW) this.#state = State.OPEN;
    })().catch((err: unknown) => {
      this.#opening = undefined;
      throw err;
    });
    return this.#opening;
  }

  /** Opens, and fails with `KS_STORE_CLOSED` once closed: call before reading the fold. */
  async ready(): Promise<void> {
    await this.open();
    if (this.#state === State.CLOSED) throw this.#closed();
  }

  /** Becomes the file's writer now (lock, fold again); `append` does this on first use. */
  async acquire(): Promise<void> {
    await this.open();
    await this.#mutex.run(async () => {
      if (this.#state === State.CLOSED) throw this.#closed();
      await this.#becomeWriter();
    });
  }

  /**
   * Validates, writes and (unless `fsync: false`) fdatasyncs one record, then folds it.
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing written)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  async append(record: T): Promise<void> {
    const r = this.#o.parse(record);
    let line: string;
    try {
      line = `${JSON.stringify(r)}\n`;
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_INPUT,
        `${this.#o.what} record not JSON-serialisable: ${(err as Error).message}`,
      );
    }
    await this.open();
    return this.#mutex.run(async () => {
      if (this.#state === State.CLOSED) throw this.#closed();
      if (this.#state === State.FAILED) {
        throw unavailable(
          `an earlier write to ${this.path} failed; reopen the ${this.#o.what}`,
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
        this.#state = State.FAILED;
        this.#failure = err;
        throw unavailable(`cannot append to ${this.path}`, err);
      }
      this.#o.apply(r);
    });
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
    const end = buf.lastIndexOf(0x0a) + 1;
    const text = buf.subarray(0, end).toString('utf8');
    const lines = text.length === 0 ? [] : text.slice(0, -1).split('\n');
    const records: T[] = [];
    for (let i = 0; i < lines.length; i++) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(lines[i]!);
      } catch {
        throw this.#o.corrupt(this.path, i + 1, 'not JSON');
      }
      try {
        records.push(this.#o.parse(parsed));
      } catch (err) {
        throw this.#o.corrupt(this.path, i + 1, (err as Error).message);
      }
    }
    if (end < buf.length && cut) {
      try {
        await truncate(this.path, end);
      } catch (err) {
        throw unavailable(`cannot cut the torn last line of ${this.path}`, err);
      }
      this.#logger.warn(
        `${this.#o.what} ${this.path}: cut a torn last line (${buf.length - end} bytes) at line ${lines.length + 1}`,
      );
    }
    this.#o.reset();
    for (const r of records) this.#o.apply(r);
    return { created };
  }

  #becomeWriter(): Promise<void> {
    this.#writer ??= (async () => {
      let lock: LockFile | undefined;
      let fh: FileHandle | undefined;
      try {
        // A mistyped path must not grow a folder tree (the lock would create one).
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

  #closed(): KillSwitchError {
    return new KillSwitchError(ErrorCode.STORE_CLOSED, `${this.#o.what} is closed`);
  }
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
    // Some platforms cannot open directories; the file's own fsync is the best available there.
  } finally {
    await fh?.close();
  }
}
