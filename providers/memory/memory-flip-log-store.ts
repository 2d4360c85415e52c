import { ErrorCode, KillSwitchError } from '../../src/errors.js';
import type { FlipInput, FlipRecord } from '../../src/model/flip-record.js';
import type {
  AppendResult,
  FlipLogStore,
  LogHead,
  ReadOptions,
  RecordListener,
} from '../../src/store/flip-log-store.js';
import { systemClock, type Clock } from '../../src/internal/clock.js';
import { LogCore } from '../../src/store/internal/log-core.js';

/** Options of {@link MemoryFlipLogStore}. */
export interface MemoryFlipLogStoreOptions {
  /** Clock whose wall-clock reading stamps each record's `at`. @default systemClock */
  readonly clock?: Clock;
}

/**
 * The in-memory flip log: the reference implementation and the oracle the conformance suite
 * compares every other store with. Nothing survives the process.
 *
 * @example
 * ```ts
 * const store = new MemoryFlipLogStore();
 * await store.append({ actor: 'me', action: 'halt', selector: { tenant: 'acme' }, reason: 'incident 42' });
 * ```
 */
export class MemoryFlipLogStore implements FlipLogStore {
  readonly kind = 'memory';
  readonly #core = new LogCore();
  readonly #clock: Clock;
  #closed = false;

  constructor(options: MemoryFlipLogStoreOptions = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  async open(): Promise<void> {
    this.#check();
  }

  async append(input: FlipInput): Promise<AppendResult> {
    this.#check();
    const p = this.#core.prepare(input, new Date(this.#clock.wallNow()));
    if ('duplicate' in p) return { record: p.duplicate, duplicate: true };
    return this.#core.commit(p.next);
  }

  async read(options?: ReadOptions): Promise<FlipRecord[]> {
    this.#check();
    return this.#core.read(options);
  }

  async head(): Promise<LogHead> {
    this.#check();
    return this.#core.head();
  }

  subscribe(listener: RecordListener): () => void {
    this.#check();
    return this.#core.subscribe(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#core.clearListeners();
  }

  #check(): void {
    if (this.#closed) throw new KillSwitchError(ErrorCode.STORE_CLOSED, 'memory store is closed');
  }
}
