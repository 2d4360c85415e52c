import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../../src/errors.js';
import {
  chainRecord,
  recordJson,
  sameFlip,
  type FlipInput,
  type FlipRecord,
  type NormalizedFlip,
} from '../../src/model/flip-record.js';
import type {
  AppendResult,
  FlipLogStore,
  LogHead,
  PendingListener,
  PendingWritesStore,
  ReadOptions,
  RecordListener,
} from '../../src/store/flip-log-store.js';
import { LogCore } from '../../src/store/internal/log-core.js';
import { isClock, systemClock, type Clock } from '../../src/internal/clock.js';
import { Mutex } from '../../src/internal/mutex.js';
import { LockFile } from '../../src/internal/lock-file.js';
import { readOrCreateLogId } from './log-id-file.js';
import { headFileMismatch, headPath, readHeadFile, writeHeadFile } from './head-file.js';
import { PublicKeyRing, type SigningKey } from '../../src/integrity/signing-key.js';
import {
  attachSignature,
  checkRecordSignatures,
  makeCheckpoint,
  signRecord,
} from '../../src/integrity/record-signatures.js';
import { parseFlipLog } from './read-flip-log-file.js';

/**
 * The few operations the store needs from an open log file. `node:fs/promises`' `FileHandle`
 * satisfies it; tests pass a wrapper to inject faults (disk full, EIO, short writes).
 */
export interface LogFileHandle {
  readFile(): Promise<Buffer>;
  write(buffer: Uint8Array): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  /**
   * fdatasync: flushes the data and the metadata needed to read it back (the file's new size),
   * not its times. Appends use it when present (KS-2.4.1 needs no more); `sync` otherwise.
   */
  datasync?(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
  /**
   * Writes at the end of the file now, synchronously, into the page cache (not durable; no
   * O_DSYNC), returning the bytes written. A write whose halts are streamed before they are
   * durable (KS-2.4.9) goes this way, then `datasync`: once it returned, a process crash leaves
   * the record in the file. Without it an injected handle's writes are never streamed early;
   * the default handle has it.
   */
  writeSync?(buffer: Uint8Array): number;
}

/** Options of {@link FileFlipLogStore}. */
export interface FileFlipLogStoreOptions {
  /** The JSON-lines log file; created (mode 0600, directory 0700) when missing. */
  readonly path: string;
  /**
   * fsync each write before acknowledging it. Turning it off breaks KS-2.4.1 (a power loss can
   * lose acknowledged flips); it is meant for tests on throw-away files. @default true
   */
  readonly fsync?: boolean;
  /** Told about a torn last line that was cut, and a stale lock that was taken over. @default console */
  readonly logger?: { warn(msg: string): void };
  /** Clock whose wall-clock reading stamps each record's `at`. @default systemClock */
  readonly clock?: Clock;
  /**
   * At most this many appends share one write and one fsync (group commit). 1 turns group
   * commit off. @default 256 records
   */
  readonly maxBatchRecords?: number;
  /**
   * Opens the log file for reading and appending (fault injection in tests).
   * @default `fs.promises.open(path, 'a+', 0o600)`, with O_DSYNC when `fsync` is on (each write
   * then returns durable, and no separate fdatasync is made); an injected one gets fdatasync
   */
  readonly openFile?: (path: string) => Promise<LogFileHandle>;
  /**
   * Sign every record as it is appended, in the same write (KS-17.7.2), and the head file. Its
   * public key is also checked on open. @default unsigned
   */
  readonly signingKey?: SigningKey;
  /**
   * Public keys a record's signature may verify under (KS-17.7.3): opening refuses a log whose
   * last signed record does not verify. Without keys, only the presence rule holds (no unsigned
   * record after a signed one). @default the signing key's public key, if any
   */
  readonly publicKeys?: PublicKeyRing;
}

/**
 * The store's life cycle: `new` → `open` → `closed`, or `open` → `failed` → `closed` when a write
 * or fsync fails (reads still work, appends are refused; close it and open a new
 * {@link FileFlipLogStore} on the file to recover). KS-2.4.4
 */
export const FileStoreState = {
  NEW: 'new',
  OPEN: 'open',
  FAILED: 'failed',
  CLOSED: 'closed',
} as const;
export type FileStoreState = (typeof FileStoreState)[keyof typeof FileStoreState];

interface Pending {
  readonly input: FlipInput;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * The embedded flip log: one JSON record per line in a local file, hash-chained. KS-2.x
 *
 * - An append resolves only after its line is written and fsynced (KS-2.4.1). Appends that
 *   arrive while a write is in flight are written together with one fsync (group commit), in
 *   call order.
 * - Opening reads and verifies the whole chain (KS-2.3.3); a torn last line (no newline) is cut
 *   with a warning; any complete line that is bad refuses the open with `KS_LOG_CORRUPT`
 *   (KS-2.4.2, KS-17.7.5).
 * - With a `signingKey`, each line carries the record's signature (KS-17.7.2); opening checks
 *   the last signature and that no unsigned record follows a signed one (KS-17.7.3).
 * - `<path>.head` holds the last acknowledged head, written after each durable batch; opening
 *   refuses a log that no longer holds it: acknowledged records missing (KS-17.7.5).
 * - A lock file (`<path>.lock`) keeps a second writer out; a lock left by a dead process is
 *   taken over (KS-2.4.5).
 * - A failed write or fsync fails the append and every append after it until the store is
 *   closed and opened again, so nothing is ever chained onto a half-written record (KS-2.4.4).
 *
 * Calls made before {@link FileFlipLogStore.open} open the store first.
 *
 * @example
 * ```ts
 * const store = new FileFlipLogStore({ path: '/var/lib/killswitch/flips.jsonl' });
 * await store.open();
 * await store.append({ actor: 'oncall', action: 'halt', selector: {}, reason: 'INC-7' });
 * ```
 */
export class FileFlipLogStore implements FlipLogStore, PendingWritesStore {
  readonly kind = 'file';
  /** The absolute path of the log file. */
  readonly path: string;
  readonly #fsync: boolean;
  /**
   * The default file is opened with O_DSYNC when appends are fsynced: each write returns once
   * its data and the size needed to read it back are durable, as write + fdatasync would, in one
   * call instead of two trips through libuv's thread pool (on a busy host each trip waits for a
   * thread and then for the event loop: `bench/file-store`).
   */
  readonly #syncedWrites: boolean;
  readonly #logger: { warn(msg: string): void };
  readonly #clock: Clock;
  readonly #maxBatch: number;
  readonly #openFile: (path: string) => Promise<LogFileHandle>;
  readonly #core = new LogCore();
  /** Serialises open, each batch write and close. */
  readonly #mutex = new Mutex();
  #state: FileStoreState = FileStoreState.NEW;
  #opening: Promise<void> | undefined;
  #fh: LogFileHandle | undefined;
  #lock: LockFile | undefined;
  /** Length of the file's durable, verified prefix. */
  #size = 0;
  #failure: KillSwitchError | undefined;
  #logId = '';
  readonly #queue: Pending[] = [];
  #draining = false;
  readonly #key: SigningKey | undefined;
  readonly #ring: PublicKeyRing | undefined;
  #headWriting: Promise<void> | undefined;
  #headDirty = false;
  readonly #pendingListeners = new Set<PendingListener>();
  /** KS-2.4.9 the default handle's second descriptor, without O_DSYNC, for writeSync. */
  #plainFd: number | undefined;

  /**
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` naming the bad option
   */
  constructor(options: FileFlipLogStoreOptions) {
    const o = options as Partial<FileFlipLogStoreOptions> | undefined;
    if (typeof o !== 'object' || o === null)
      throw new InvalidOptionError('options', 'an object', o);
    if (typeof o.path !== 'string' || o.path.trim() === '' || o.path.includes('\0')) {
      throw new InvalidOptionError('path', 'a non-empty file path', o.path);
    }
    if (o.fsync !== undefined && typeof o.fsync !== 'boolean') {
      throw new InvalidOptionError('fsync', 'a boolean', o.fsync);
    }
    if (o.logger !== undefined && typeof o.logger?.warn !== 'function') {
      throw new InvalidOptionError('logger', 'an object with a warn(msg) function', o.logger);
    }
    if (o.clock !== undefined && !isClock(o.clock)) {
      throw new InvalidOptionError(
        'clock',
        'a Clock (now, wallNow, setTimeout, clearTimeout)',
        o.clock,
      );
    }
    if (
      o.maxBatchRecords !== undefined &&
      !(Number.isSafeInteger(o.maxBatchRecords) && o.maxBatchRecords >= 1)
    ) {
      throw new InvalidOptionError('maxBatchRecords', 'an integer >= 1', o.maxBatchRecords);
    }
    if (o.openFile !== undefined && typeof o.openFile !== 'function') {
      throw new InvalidOptionError('openFile', 'a function', o.openFile);
    }
    if (o.signingKey !== undefined && typeof o.signingKey?.sign !== 'function') {
      throw new InvalidOptionError('signingKey', 'a SigningKey', o.signingKey);
    }
    if (o.publicKeys !== undefined && !(o.publicKeys instanceof PublicKeyRing)) {
      throw new InvalidOptionError('publicKeys', 'a PublicKeyRing', o.publicKeys);
    }
    this.#key = o.signingKey;
    this.#ring =
      o.signingKey === undefined
        ? o.publicKeys
        : (o.publicKeys?.including(o.signingKey) ?? PublicKeyRing.of(o.signingKey));
    this.path = resolve(o.path);
    this.#fsync = o.fsync ?? true;
    this.#logger = o.logger ?? { warn: (m) => console.warn(m) };
    this.#clock = o.clock ?? systemClock;
    this.#maxBatch = o.maxBatchRecords ?? 256;
    this.#syncedWrites = this.#fsync && o.openFile === undefined && DSYNC !== undefined;
    // KS-2.4.6; 'a+' (read, append, create), with O_DSYNC when every append is fsynced
    this.#openFile =
      o.openFile ??
      ((p) => open(p, this.#syncedWrites ? APPEND_DSYNC : 'a+', 0o600) as Promise<LogFileHandle>);
  }

  /** Where the store is in its life cycle. */
  get state(): FileStoreState {
    return this.#state;
  }

  /**
   * Opens the file (creating it), takes the lock, verifies the chain and cuts a torn last line.
   * Idempotent.
   *
   * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq (the store stays closed)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` (locked, unreadable), `KS_STORE_CLOSED`
   */
  open(): Promise<void> {
    if (this.#state === FileStoreState.CLOSED) return Promise.reject(this.#closedError());
    if (this.#state !== FileStoreState.NEW) return Promise.resolve();
    this.#opening ??= this.#mutex
      .run(() => this.#doOpen())
      .finally(() => {
        this.#opening = undefined;
      });
    return this.#opening;
  }

  async #doOpen(): Promise<void> {
    if (this.#state !== FileStoreState.NEW) return;
    const dir = dirname(this.path);
    let lock: LockFile | undefined;
    let fh: LogFileHandle | undefined;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 }); // KS-2.4.6
      lock = await LockFile.acquire(`${this.path}.lock`, (m) => this.#logger.warn(m));
      fh = await this.#openFile(this.path);
      const bytes = await fh.readFile();
      const log = parseFlipLog(bytes);
      // KS-2.7.2 the identity beside the log (given at genesis, or on the first open after an upgrade)
      this.#logId = await readOrCreateLogId(this.path, log.records[0]?.hash, (m) =>
        this.#logger.warn(m),
      );
      // KS-17.7.3 signatures: none missing after the first signed record; the last one verifies.
      const signed = checkRecordSignatures(
        log.records.map((r, i) => ({ seq: r.seq, hash: r.hash, sig: log.sigs[i] })),
        this.#logId,
        this.#ring,
        'last',
      );
      if (this.#ring !== undefined && signed === 0 && log.records.length > 0) {
        this.#logger.warn(
          `killswitch: ${this.path}: no record is signed yet (${log.records.length} records); the next append is signed and covers them (KS-17.7.2)`,
        );
      }
      // KS-17.7.5 the log must still hold the last acknowledged head.
      const ackHead = await readHeadFile(this.path);
      if (ackHead !== undefined) {
        const bad = headFileMismatch(ackHead, this.#logId, log.records, this.#ring, signed > 0);
        if (bad !== undefined) throw bad;
      } else if (log.records.length > 0) {
        this.#logger.warn(
          `killswitch: ${this.path}: no head file ${headPath(this.path)} (a log from before head files, or it was removed); writing one at seq ${log.head.seq} (KS-17.7.5)`,
        );
      }
      if (log.tornBytes > 0) {
        // KS-2.4.2: an interrupted write was never acknowledged; cut it so appends chain on the
        // last good record, and make the cut durable before anything is appended after it.
        // The cut bytes are gone afterwards, so the warning shows their start for forensics.
        const preview = JSON.stringify(
          Buffer.from(bytes.subarray(log.goodBytes, log.goodBytes + 120)).toString('utf8'),
        );
        this.#logger.warn(
          `killswitch: ${this.path}: cut a torn last line (${log.tornBytes} bytes after seq ${log.head.seq}): ${preview}`,
        );
        await fh.truncate(log.goodBytes);
        await fh.sync();
      }
      if (bytes.length === 0) await syncDirectory(dir); // a new file's name must be durable too
      // KS-17.7.9 each record's signature goes with it onto the stream.
      log.records.forEach((r, i) => attachSignature(r, log.sigs[i]));
      this.#core.load(log.records);
      if (ackHead === undefined && log.records.length > 0) await this.#writeHead();
      this.#size = log.goodBytes;
      this.#fh = fh;
      this.#lock = lock;
      // KS-2.4.9 the descriptor early halts are written through, opened with the file: no open on
      // a halt's path, and the process's descriptors do not grow at its first halt.
      if (this.#syncedWrites) this.#plainFd ??= openSync(this.path, 'a', 0o600);
      // close() may have been called while this ran; its section (next on the mutex) releases
      // the file and the lock, so only move to open if nobody closed the store meanwhile.
      if (this.#state === FileStoreState.NEW) this.#state = FileStoreState.OPEN;
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await lock?.release().catch(() => undefined);
      if (err instanceof KillSwitchError) throw err;
      throw new KillSwitchError(
        ErrorCode.STORE_UNAVAILABLE,
        `cannot open flip log ${this.path}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /**
   * Appends a flip; resolves once its line is fsynced. KS-2.4.1
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing appended)
   * @throws {KillSwitchError} `KS_ID_CONFLICT`; `KS_STORE_UNAVAILABLE` when this or an earlier
   *   write failed (KS-2.4.4); `KS_STORE_CLOSED`
   */
  append(input: FlipInput): Promise<AppendResult> {
    if (this.#state === FileStoreState.NEW) return this.open().then(() => this.append(input));
    try {
      this.#writable();
    } catch (err) {
      return Promise.reject(err);
    }
    // Queued synchronously, so an append called before close() is written before the file closes.
    return new Promise<AppendResult>((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
      if (!this.#draining) {
        this.#draining = true;
        void this.#mutex.run(() => this.#drain());
      }
    });
  }

  /**
   * Records in seq order (acknowledged ones only; reads keep working after a write failure).
   *
   * @throws {KillSwitchError} `KS_STORE_CLOSED`; what {@link FileFlipLogStore.open} throws
   */
  async read(options?: ReadOptions): Promise<FlipRecord[]> {
    await this.#ready();
    return this.#core.read(options);
  }

  /**
   * The last acknowledged record's seq and hash.
   *
   * @throws {KillSwitchError} `KS_STORE_CLOSED`; what {@link FileFlipLogStore.open} throws
   */
  async head(): Promise<LogHead> {
    await this.#ready();
    return this.#core.head();
  }

  /**
   * The log's identity, kept in `<path>.logid` (KS-2.7.2). Copy that file with the log: a log
   * without it gets an identity derived from its first record (or a random one when empty).
   *
   * @throws {KillSwitchError} `KS_STORE_CLOSED`; what {@link FileFlipLogStore.open} throws
   */
  async logId(): Promise<string> {
    await this.#ready();
    return this.#logId;
  }

  /**
   * Delivers each record this store appends from now on, in seq order, once it is durable. The
   * file has one writer (KS-2.4.5), so these are all the records the log gets.
   *
   * @throws {KillSwitchError} `KS_STORE_CLOSED`
   */
  subscribe(listener: RecordListener): () => void {
    if (this.#state === FileStoreState.CLOSED) throw this.#closedError();
    return this.#core.subscribe(listener);
  }

  /**
   * KS-2.4.9 tells `listener` the records of each write that leads with a halt once they are in
   * the file (written synchronously, so a process crash keeps them), before they are durable (this file has one writer, KS-2.4.5, so no one else can take those seqs), and when
   * such a write fails. A listener that throws is logged and does not stop the write.
   *
   * @throws {KillSwitchError} `KS_STORE_CLOSED`
   */
  subscribePending(listener: PendingListener): () => void {
    if (this.#state === FileStoreState.CLOSED) throw this.#closedError();
    this.#pendingListeners.add(listener);
    return () => this.#pendingListeners.delete(listener);
  }

  /**
   * Lets appends already accepted finish, then closes the file and releases the lock. Later
   * calls fail with `KS_STORE_CLOSED`.
   */
  async close(): Promise<void> {
    if (this.#state === FileStoreState.CLOSED) return;
    this.#state = FileStoreState.CLOSED;
    this.#core.clearListeners();
    this.#pendingListeners.clear();
    await this.#mutex.run(async () => {
      const fh = this.#fh;
      const lock = this.#lock;
      this.#fh = undefined;
      this.#lock = undefined;
      await this.#headWriting?.catch(() => undefined);
      await fh?.close().catch(() => undefined);
      if (this.#plainFd !== undefined) {
        const fd = this.#plainFd;
        this.#plainFd = undefined;
        try {
          closeSync(fd);
        } catch {
          // already gone
        }
      }
      await lock?.release();
    });
  }

  async #ready(): Promise<void> {
    if (this.#state === FileStoreState.NEW) await this.open();
    if (this.#state === FileStoreState.CLOSED) throw this.#closedError();
  }

  #writable(): void {
    if (this.#state === FileStoreState.CLOSED) throw this.#closedError();
    if (this.#failure !== undefined) throw this.#failure;
  }

  /**
   * Writes queued appends in batches until the queue is empty; appends that arrive while a batch
   * is being written and fsynced form the next batch (group commit, KS-2.4.7). Runs under the
   * mutex, so close (KS-2.4.8) waits for it.
   */
  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        if (this.#failure !== undefined || this.#fh === undefined) {
          const err = this.#failure ?? this.#closedError();
          for (const p of batch) p.reject(err);
          continue;
        }
        await this.#writeBatch(this.#fh, batch);
      }
    } finally {
      this.#draining = false;
    }
  }

  async #writeBatch(fh: LogFileHandle, batch: readonly Pending[]): Promise<void> {
    const accepted: { p: Pending; record: FlipRecord; duplicate: boolean }[] = [];
    const pendingById = new Map<string, FlipRecord>();
    const lines: string[] = [];
    let head: LogHead = this.#core.head();
    for (const p of batch) {
      try {
        const now = new Date(this.#clock.wallNow());
        const prepared = this.#core.prepare(p.input, now);
        if ('duplicate' in prepared) {
          p.resolve({ record: prepared.duplicate, duplicate: true }); // already durable
          continue;
        }
        const flip = flipOf(prepared.next);
        const earlier = pendingById.get(flip.id);
        if (earlier !== undefined) {
          // The same id twice in one batch: one flip (KS-2.2.3), acknowledged with the first.
          if (!sameFlip(earlier, flip)) {
            throw new KillSwitchError(
              ErrorCode.ID_CONFLICT,
              `flip id ${flip.id} is already used by seq ${earlier.seq} for a different flip`,
            );
          }
          accepted.push({ p, record: earlier, duplicate: true });
          continue;
        }
        // prepare chained onto the durable head; chain onto this batch's records instead.
        const record = lines.length === 0 ? prepared.next : chainRecord(flip, head, now);
        pendingById.set(record.id, record);
        lines.push(this.#line(record));
        accepted.push({ p, record, duplicate: false });
        head = record;
      } catch (err) {
        p.reject(err); // KS-2.1.2: refused, nothing appended for this one
      }
    }
    if (lines.length === 0) return;
    const bytes = Buffer.from(lines.join(''), 'utf8');
    try {
      const now = this.#earlyWriter(fh, accepted);
      if (now !== undefined) {
        // KS-2.4.9 a write that leads with a halt: into the page cache now (a process that dies
        // after this keeps it), then made durable while the pending listeners are told.
        writeAllSync(now, bytes);
        // KS-2.4.11 the fdatasync starts before the listeners are told: the disk's wait runs on
        // the thread pool while the event loop streams the halts, not after them.
        const durable = this.#fsync
          ? fh.datasync !== undefined
            ? fh.datasync()
            : fh.sync()
          : undefined;
        this.#tellPending(accepted);
        await durable;
      } else {
        await writeAll(fh, bytes);
        if (this.#fsync && !this.#syncedWrites)
          await (fh.datasync !== undefined ? fh.datasync() : fh.sync());
      }
    } catch (err) {
      await this.#fail(fh, err);
      for (const a of accepted) a.p.reject(this.#failure);
      for (const l of [...this.#pendingListeners])
        this.#callPending(() => l.failed(this.#failure!));
      return;
    }
    this.#size += bytes.length;
    for (const a of accepted) {
      if (a.duplicate) a.p.resolve({ record: a.record, duplicate: true });
      else a.p.resolve(this.#core.commit(a.record));
    }
    this.#scheduleHead();
  }

  /**
   * KS-2.4.9 how to write this batch synchronously when its records are told early: only when
   * someone listens, the batch leads with a halt (nothing else is streamed early), and the
   * handle can (the default one through a second descriptor without O_DSYNC).
   */
  #earlyWriter(
    fh: LogFileHandle,
    accepted: readonly { record: FlipRecord; duplicate: boolean }[],
  ): ((b: Uint8Array) => number) | undefined {
    if (this.#pendingListeners.size === 0) return undefined;
    if (accepted.find((a) => !a.duplicate)?.record.action !== 'halt') return undefined;
    if (fh.writeSync !== undefined) return (b) => fh.writeSync!(b);
    if (!this.#syncedWrites) return undefined; // an injected handle without writeSync
    this.#plainFd ??= openSync(this.path, 'a', 0o600);
    const fd = this.#plainFd;
    return (b) => writeSync(fd, b);
  }

  #tellPending(accepted: readonly { record: FlipRecord; duplicate: boolean }[]): void {
    const records = accepted.filter((a) => !a.duplicate).map((a) => a.record);
    for (const l of [...this.#pendingListeners]) this.#callPending(() => l.pending(records));
  }

  #callPending(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#logger.warn(`killswitch: a pending-write listener failed: ${(err as Error).message}`);
    }
  }

  /**
   * A record's line: its canonical JSON, with its signature beside it when the store holds a key
   * (KS-17.7.2: in the same write, so no record is durable unsigned; not part of the hash).
   */
  #line(record: FlipRecord): string {
    const json = recordJson(record);
    if (this.#key === undefined) return `${json}\n`;
    const sig = signRecord(this.#key, this.#logId, record.seq, record.hash);
    attachSignature(record, sig); // KS-17.7.9 for the stream
    return `${json.slice(0, -1)},"sig":${JSON.stringify(sig)}}\n`;
  }

  /**
   * KS-17.7.5: writes the acknowledged head to `<path>.head` after the fsync that made it durable,
   * off the acknowledgement path: one write at a time, the latest head each time. Close waits
   * for it. A failed write is told (the log stays right; the head file only trails further).
   */
  #scheduleHead(): void {
    if (this.#headWriting !== undefined) {
      this.#headDirty = true;
      return;
    }
    this.#headWriting = (async () => {
      // Started once the callers of the appends just resolved have run (a flip's answer is
      // written in their step): its checkpoint and the first file operation handed to the thread
      // pool cost 0.2-0.35 ms of that step on a loaded host otherwise (docs/benchmarks.md).
      await new Promise<void>((resolve) => setImmediate(resolve));
      do {
        this.#headDirty = false;
        await this.#writeHead().catch((err: unknown) => {
          this.#logger.warn(
            `killswitch: cannot write the head file ${headPath(this.path)}: ${(err as Error).message}`,
          );
        });
      } while (this.#headDirty);
      this.#headWriting = undefined;
    })();
  }

  async #writeHead(): Promise<void> {
    const head = this.#core.head();
    await writeHeadFile(
      this.path,
      makeCheckpoint({ logId: this.#logId, ...head }, new Date(this.#clock.wallNow()), this.#key),
    );
  }

  /**
   * KS-2.4.4: after a failed write the file may end in a partial record, and after a failed
   * fsync the kernel may have dropped the dirty pages, so nothing the process believes about the
   * tail can be trusted. Refuse every later append until the store is reopened (open verifies
   * the file and cuts a torn tail). Cutting back to the last acknowledged length now is only a
   * best effort that makes a retry's outcome less surprising.
   */
  async #fail(fh: LogFileHandle, cause: unknown): Promise<void> {
    if (this.#state === FileStoreState.OPEN) this.#state = FileStoreState.FAILED; // not if closing
    this.#failure = new KillSwitchError(
      ErrorCode.STORE_UNAVAILABLE,
      `write to flip log ${this.path} failed (${(cause as Error)?.message ?? String(cause)}); ` +
        'the append is not acknowledged and the store refuses appends until it is reopened',
      { cause },
    );
    this.#logger.warn(`killswitch: ${this.#failure.message}`);
    try {
      await fh.truncate(this.#size);
      if (this.#fsync) await fh.sync();
    } catch {
      // The reopen will find and cut (or refuse) whatever is there.
    }
  }

  #closedError(): KillSwitchError {
    return new KillSwitchError(ErrorCode.STORE_CLOSED, `file store ${this.path} is closed`);
  }
}

/** O_DSYNC where the platform has it (Linux, macOS); undefined elsewhere (Windows). */
const DSYNC: number | undefined = (fsConstants as { O_DSYNC?: number }).O_DSYNC;
/** The flags of `'a+'` plus O_DSYNC. */
const APPEND_DSYNC = fsConstants.O_RDWR | fsConstants.O_APPEND | fsConstants.O_CREAT | (DSYNC ?? 0);

/** A record's flip: everything but what the store assigns. */
function flipOf(record: FlipRecord): NormalizedFlip {
  const { seq: _seq, at: _at, prev: _prev, hash: _hash, ...flip } = record;
  return flip;
}

/** Writes every byte (a regular file may still take fewer bytes than asked). */
async function writeAll(fh: LogFileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await fh.write(bytes.subarray(offset));
    if (bytesWritten <= 0) throw new Error('write made no progress');
    offset += bytesWritten;
  }
}

/** Writes every byte now, synchronously. */
function writeAllSync(write: (b: Uint8Array) => number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    const n = write(bytes.subarray(offset));
    if (n <= 0) throw new Error('write made no progress');
    offset += n;
  }
}

/** fsyncs a directory so a file created in it survives a crash. */
async function syncDirectory(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
