import { ErrorCode, KillSwitchError } from '../errors.js';
import { LedgerIndex } from './internal/ledger-index.js';
import {
  inDoubt,
  parseLedgerEvent,
  type LedgerEntry,
  type LedgerEvent,
  type LedgerFilter,
  type SideEffectLedger,
} from './side-effect-ledger.js';

/**
 * The in-memory side-effect ledger: the reference implementation, for tests and single-process
 * runs where nothing must survive a restart. KS-4.4
 *
 * @example
 * ```ts
 * const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger() });
 * ```
 */
export class MemorySideEffectLedger implements SideEffectLedger {
  readonly #events: LedgerEvent[] = [];
  readonly #index = new LedgerIndex();
  #closed = false;

  /** @throws {ValidationError} `KS_INVALID_INPUT`; {@link KillSwitchError} `KS_STORE_CLOSED` */
  async append(event: LedgerEvent): Promise<void> {
    this.#check();
    const e = parseLedgerEvent(event);
    this.#events.push(e);
    this.#index.apply(e);
  }

  async entries(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    this.#check();
    return this.#index.entries(filter);
  }

  /** Every event in append order. */
  async events(): Promise<LedgerEvent[]> {
    this.#check();
    return [...this.#events];
  }

  /** Entries whose effect may or may not have landed (last status `intent` or `aborted`). KS-4.4.5 */
  inDoubt(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    return inDoubt(this, filter);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #check(): void {
    if (this.#closed)
      throw new KillSwitchError(ErrorCode.STORE_CLOSED, 'side-effect ledger is closed');
  }
}
