import type { ReleaseRecord } from '../protocol/releases.js';

/**
 * Release verdicts shared through a store (KS-8.9): a store that several control-plane replicas
 * share (PostgreSQL) also keeps the release gate's verdicts, so a red verdict recorded on one
 * replica refuses a resume posted to any other (KS-10.5.2). A store that only one process uses
 * (memory, file) does not implement it, and the gate keeps `releases.jsonl` as before.
 *
 * The log is I/O only: the gate (src/server/release-gate.ts) checks the chain and the signatures
 * of what it reads, exactly as it checks its file.
 */
export interface ReleaseLogStore {
  /**
   * The store's release log; opens the store.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the store cannot be reached
   */
  openReleaseLog(): Promise<SharedReleaseLog>;
}

/** The verdicts one store keeps for every replica. */
export interface SharedReleaseLog {
  /** Where the verdicts live, for messages (`postgres schema ks_prod, table releases`). */
  readonly description: string;
  /**
   * The verdicts after `afterSeq`, in seq order, as stored (unchecked).
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`
   */
  read(afterSeq: number): Promise<ReleaseRecord[]>;
  /**
   * Appends one verdict atomically against every other replica: under the store's lock, reads
   * the verdicts after `afterSeq` (`newer`, unchecked), lets `make` check them and build the next
   * record chained onto the last, and writes it; resolves once it is durable (committed). If
   * `make` throws, nothing is written and the error passes through.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` (nothing or, when the commit's outcome is
   *   unknown, possibly the record was written: a later read tells)
   */
  append(
    afterSeq: number,
    make: (newer: readonly ReleaseRecord[]) => ReleaseRecord,
  ): Promise<{ readonly newer: readonly ReleaseRecord[]; readonly record: ReleaseRecord }>;
  /**
   * As {@link append}, for several verdicts in one transaction (an import, KS-8.9.5): `make`
   * returns them chained one onto the other after `newer`; all are written or none is.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, as {@link append}
   */
  appendAll(
    afterSeq: number,
    make: (newer: readonly ReleaseRecord[]) => readonly ReleaseRecord[],
  ): Promise<{
    readonly newer: readonly ReleaseRecord[];
    readonly records: readonly ReleaseRecord[];
  }>;
}

/** Whether a store shares release verdicts ({@link ReleaseLogStore}). */
export function isReleaseLogStore(store: unknown): store is ReleaseLogStore {
  return (
    typeof store === 'object' &&
    store !== null &&
    typeof (store as { openReleaseLog?: unknown }).openReleaseLog === 'function'
  );
}
