import { ErrorCode, InvalidOptionError, KillSwitchError } from '../../src/errors.js';
import { MAX_LOG_ID_LENGTH } from '../../src/protocol/log-position.js';
import { isIdText } from '../../src/protocol/text.js';
import { logIdFor } from '../../src/store/log-id.js';
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
  /** The log's identity (KS-2.7.1). @default a random UUID */
  readonly logId?: string;
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
  readonly #logId: string;
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a `logId` outside the id alphabet */
  constructor(options: MemoryFlipLogStoreOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    if (options.logId !== undefined && !isIdText(options.logId, MAX_LOG_ID_LENGTH)) {
      throw new InvalidOptionError('logId', 'an id (letters, digits, ._:@/+=-)', options.logId);
    }
    this.#logId = options.logId ?? logIdFor(undefined);
  }

  /** A random id given at construction (nothing survives the process). KS-2.7.1 */
  async logId(): Promise<string> {
    this.#check();
    return this.#logId;
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
