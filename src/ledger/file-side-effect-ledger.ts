import { JsonLinesFile } from '../internal/json-lines-file.js';
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
  readonly #index = new LedgerIndex();
  readonly #file: JsonLinesFile<LedgerEvent>;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing path or a non-boolean fsync */
  constructor(options: FileSideEffectLedgerOptions) {
    this.#file = new JsonLinesFile<LedgerEvent>({
      ...options,
      what: 'side-effect ledger',
      parse: parseLedgerEvent,
      // KS-4.5.3 every complete line must parse; KS-4.5.2 only a torn last line is cut.
      corrupt: (path, line, detail) => new LedgerCorruptError(path, line, detail),
      reset: () => this.#index.clear(),
      apply: (e) => this.#index.apply(e),
    });
    this.path = this.#file.path;
  }

  /**
   * Reads, checks and folds the file; idempotent. Other methods open on first use.
   *
   * @throws {LedgerCorruptError} `KS_LEDGER_CORRUPT` naming the first bad line
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the file cannot be read or created
   */
  open(): Promise<void> {
    return this.#file.open();
  }

  /**
   * Appends an event; resolves once it is written (and fdatasync'ed unless `fsync: false`).
   * The first append takes the writer's lock. KS-4.5.1, KS-4.5.6
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing written)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the write failed, `KS_STORE_CLOSED`
   */
  append(event: LedgerEvent): Promise<void> {
    return this.#file.append(event);
  }

  async entries(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    await this.#file.ready();
    return this.#index.entries(filter);
  }

  /** Entries whose effect may or may not have landed (last status `intent` or `aborted`). KS-4.4.5 */
  inDoubt(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    return inDoubt(this, filter);
  }

  /** Waits for pending appends, then closes the file. Idempotent. */
  close(): Promise<void> {
    return this.#file.close();
  }
}
