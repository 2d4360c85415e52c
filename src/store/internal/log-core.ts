import { ErrorCode, KillSwitchError } from '../../errors.js';
import {
  GENESIS_HASH,
  chainRecord,
  isValidatedFlip,
  parseFlipInput,
  sameFlip,
  type FlipRecord,
} from '../../model/flip-record.js';
import type { AppendResult, LogHead, ReadOptions, RecordListener } from '../flip-log-store.js';

/**
 * The in-memory half every single-writer store shares: the records, the id index, the head and
 * the subscribers. A store persists `prepare`'s record, then calls `commit`; nothing is visible
 * to readers or subscribers before `commit`. Callers serialise prepare/commit pairs.
 */
export class LogCore {
  readonly #records: FlipRecord[] = [];
  readonly #byId = new Map<string, FlipRecord>();
  readonly #listeners = new Set<RecordListener>();

  /** Loads already-verified records (on open). */
  load(records: readonly FlipRecord[]): void {
    for (const r of records) {
      this.#records.push(r);
      this.#byId.set(r.id, r);
    }
  }

  head(): LogHead {
    const last = this.#records.at(-1);
    return last ? { seq: last.seq, hash: last.hash } : { seq: 0, hash: GENESIS_HASH };
  }

  /**
   * Validates the input (unless it is a flip parseFlipInput already validated and froze); returns
   * the duplicate's stored record, or the record to persist.
   *
   * @throws {ValidationError} `KS_INVALID_INPUT`
   * @throws {KillSwitchError} `KS_ID_CONFLICT`
   */
  prepare(input: unknown, now: Date): { duplicate: FlipRecord } | { next: FlipRecord } {
    const flip = isValidatedFlip(input) ? input : parseFlipInput(input);
    const existing = this.#byId.get(flip.id);
    if (existing !== undefined) {
      if (sameFlip(existing, flip)) return { duplicate: existing };
      throw new KillSwitchError(
        ErrorCode.ID_CONFLICT,
        `flip id ${flip.id} is already used by seq ${existing.seq} for a different flip`,
      );
    }
    return { next: chainRecord(flip, this.head(), now) };
  }

  /** Makes a persisted record visible and tells subscribers. */
  commit(record: FlipRecord): AppendResult {
    this.#records.push(record);
    this.#byId.set(record.id, record);
    for (const l of [...this.#listeners]) {
      try {
        l(record);
      } catch (err) {
        // A throwing subscriber must not undo a durable append nor starve the others.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    return { record, duplicate: false };
  }

  read(options: ReadOptions = {}): FlipRecord[] {
    const after = Math.max(0, Math.floor(options.after ?? 0));
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    // seq is dense from 1, so record n sits at index n - 1.
    return this.#records.slice(
      after,
      limit === Number.POSITIVE_INFINITY ? undefined : after + limit,
    );
  }

  subscribe(listener: RecordListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  clearListeners(): void {
    this.#listeners.clear();
  }
}
