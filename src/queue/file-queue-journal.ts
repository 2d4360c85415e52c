import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { Mutex } from '../internal/mutex.js';
import type { QueueJournal, QueueJournalRecord } from './queue-journal.js';

/** Options of {@link FileQueueJournal}. */
export interface FileQueueJournalOptions {
  /** The journal file (JSON lines); its folder is created. Required. */
  readonly path: string;
  /** fsync after each record, so an acknowledged record survives a crash. @default true */
  readonly fsync?: boolean;
}

/**
 * The default queue journal: one JSON record per line, appended and fsynced before `append`
 * resolves. A torn last line (a crash mid-write, never acknowledged) is cut on open; a bad line
 * before the last fails with `KS_JOURNAL_CORRUPT` rather than being skipped. KS-7.2.3
 *
 * @example
 * ```ts
 * const journal = new FileQueueJournal({ path: '/var/lib/agent/queue-journal.jsonl' });
 * ```
 */
export class FileQueueJournal implements QueueJournal {
  readonly path: string;
  readonly #fsync: boolean;
  readonly #mutex = new Mutex();
  #handle: FileHandle | undefined;
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing path */
  constructor(options: FileQueueJournalOptions) {
    if (typeof options?.path !== 'string' || options.path.length === 0) {
      throw new InvalidOptionError('path', 'a non-empty file path', options?.path);
    }
    if (options.fsync !== undefined && typeof options.fsync !== 'boolean') {
      throw new InvalidOptionError('fsync', 'a boolean', options.fsync);
    }
    this.path = options.path;
    this.#fsync = options.fsync ?? true;
  }

  append(record: QueueJournalRecord): Promise<void> {
    return this.appendAll([record]);
  }

  appendAll(records: readonly QueueJournalRecord[]): Promise<void> {
    const line = records.map((r) => `${JSON.stringify(r)}\n`).join('');
    return this.#mutex.run(async () => {
      if (line.length === 0) return;
      const fh = await this.#open();
      await fh.appendFile(line, 'utf8');
      if (this.#fsync) await fh.sync();
    });
  }

  read(): Promise<QueueJournalRecord[]> {
    return this.#mutex.run(async () => {
      await this.#open();
      return parse(await readText(this.path), this.path).records;
    });
  }

  close(): Promise<void> {
    return this.#mutex.run(async () => {
      this.#closed = true;
      await this.#handle?.close();
      this.#handle = undefined;
    });
  }

  async #open(): Promise<FileHandle> {
    if (this.#closed)
      throw new KillSwitchError(ErrorCode.STORE_CLOSED, `queue journal ${this.path} is closed`);
    if (this.#handle !== undefined) return this.#handle;
    await mkdir(dirname(this.path), { recursive: true });
    const fh = await open(this.path, 'a+');
    const text = await readText(this.path);
    const { validLength } = parse(text, this.path);
    if (validLength < Buffer.byteLength(text)) {
      // A torn tail was never acknowledged: cut it, or the next record would be glued onto it.
      await fh.truncate(validLength);
      await fh.sync();
    }
    this.#handle = fh;
    return fh;
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

function parse(text: string, path: string): { records: QueueJournalRecord[]; validLength: number } {
  const records: QueueJournalRecord[] = [];
  let offset = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const last = i === lines.length - 1;
    if (last) break; // text after the last newline is a torn write (or empty)
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      rec = undefined;
    }
    if (!isRecord(rec)) {
      throw new KillSwitchError(
        ErrorCode.JOURNAL_CORRUPT,
        `queue journal ${path} is corrupt at line ${i + 1}`,
      );
    }
    records.push(rec);
    offset += Buffer.byteLength(line) + 1;
  }
  return { records, validLength: offset };
}

function isRecord(v: unknown): v is QueueJournalRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  if (typeof r.queue !== 'string' || typeof r.taskId !== 'string' || typeof r.at !== 'string')
    return false;
  if (r.type === 'discarded') {
    return (
      typeof r.name === 'string' &&
      typeof r.context === 'object' &&
      r.context !== null &&
      typeof r.enqueuedAt === 'string'
    );
  }
  if (r.type === 'void') return typeof r.reason === 'string' && typeof r.discardId === 'string';
  if (r.type === 'requeued') return typeof r.newTaskId === 'string';
  return false;
}
