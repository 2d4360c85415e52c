import type { FlipInput, FlipRecord } from '../model/flip-record.js';

/** The head of a log: the last record's seq and hash (0 and the genesis hash when empty). */
export interface LogHead {
  readonly seq: number;
  readonly hash: string;
}

/** What an append returns. */
export interface AppendResult {
  /** The stored record (for a retried id, the record stored the first time). */
  readonly record: FlipRecord;
  /** True when the id was already in the log and nothing was appended. KS-2.2.3 */
  readonly duplicate: boolean;
}

/** Options of {@link FlipLogStore.read}. */
export interface ReadOptions {
  /** Return records with seq greater than this. @default 0 */
  readonly after?: number;
  /** At most this many records. @default no limit */
  readonly limit?: number;
}

/** Called with each record appended after subscribing, in seq order, exactly once. */
export type RecordListener = (record: FlipRecord) => void;

/**
 * Told about the records of a write before it is durable (KS-2.4.9): only stores with one
 * exclusive writer (the file store) offer it, so the seqs they give can be taken by no one else.
 */
export interface PendingListener {
  /**
   * The records of one write, in seq order, chained onto the durable head, given once they are
   * in the file (a process crash keeps them) and before they are durable. Each is later delivered to `subscribe`'s listeners once
   * durable, or `failed` is called.
   */
  pending(records: readonly FlipRecord[]): void;
  /**
   * The write of the records last given to `pending` failed: they are not durable and the store
   * refuses every later append (KS-2.4.4).
   */
  failed(error: Error): void;
}

/** A store that tells about writes before they are durable. KS-2.4.9 */
export interface PendingWritesStore {
  /** @returns a function that unsubscribes */
  subscribePending(listener: PendingListener): () => void;
}

/** Whether `store` offers {@link PendingWritesStore.subscribePending}. */
export function hasPendingWrites<S extends object>(store: S): store is S & PendingWritesStore {
  return typeof (store as Partial<PendingWritesStore>).subscribePending === 'function';
}

/**
 * The contract every flip-log store fulfils (in-memory, file, PostgreSQL). One conformance suite
 * (`src/testing/flip-log-store-conformance.ts`, exported by `openfeature-kill-switch/testing`) checks them all against the in-memory
 * store, which is the oracle. KS-2.x
 *
 * Promises:
 * - `append` validates first and appends nothing on bad input (`KS_INVALID_INPUT`);
 * - `append` resolves only once the record is durable (fsync, commit); KS-2.4.1
 * - seq is dense from 1 and each record chains to the one before; KS-2.2.1
 * - an id already in the log returns the stored record (`duplicate: true`) when the flip is the
 *   same, and fails with `KS_ID_CONFLICT` when it differs; KS-2.2.3
 * - `open` verifies the whole chain and fails with `KS_LOG_CORRUPT` naming the seq. KS-2.3.3
 */
export interface FlipLogStore {
  /** A short name for logs and metrics (`memory`, `file`, `postgres`). */
  readonly kind: string;
  /** Opens the store and verifies the log; idempotent. */
  open(): Promise<void>;
  /**
   * Appends a flip once it is durable.
   *
   * @throws {ValidationError} `KS_INVALID_INPUT`
   * @throws {KillSwitchError} `KS_ID_CONFLICT`, `KS_STORE_CLOSED`, `KS_STORE_UNAVAILABLE`
   */
  append(input: FlipInput): Promise<AppendResult>;
  /** Records in seq order. */
  read(options?: ReadOptions): Promise<FlipRecord[]>;
  /** The current head. */
  head(): Promise<LogHead>;
  /**
   * The log's identity: a random id given at genesis, kept as long as the log (the file store's
   * `<path>.logid`, PostgreSQL's `meta.log_id`). Every copy of a log has the same id; another
   * log has another. A log from before identities gets one on its first open, derived from its
   * first record's hash (so two copies of it get the same), or random when it is empty.
   * Opens the store. KS-2.7.1
   *
   * @throws what {@link FlipLogStore.open} throws
   */
  logId(): Promise<string>;
  /**
   * Delivers every record appended from now on (by any writer the store can see) in seq order.
   * Use {@link followStore} to get a consistent snapshot plus the records after it.
   *
   * @returns a function that unsubscribes
   */
  subscribe(listener: RecordListener): () => void;
  /** Closes the store; later calls fail with `KS_STORE_CLOSED`. */
  close(): Promise<void>;
}
