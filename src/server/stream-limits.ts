import { InvalidOptionError } from '../errors.js';
import { LimitExceededError } from './limit-exceeded.js';

/** Options of {@link StreamLimits}. KS-17.8.2 */
export interface StreamLimitsOptions {
  /** Streams open at most, in total. */
  readonly maxStreams: number;
  /** Streams that name no worker, per token. @default 32 */
  readonly maxStreamsPerToken?: number;
}

interface Held {
  readonly token: string;
  readonly workerId: string | undefined;
  /** Ends the stream (its response). */
  readonly end: () => void;
}

/**
 * Bounds the streams a control plane holds (KS-17.8.2): `maxStreams` in total, and
 * `maxStreamsPerToken` per token of streams that name no worker (a dashboard's, a scraper's; a
 * leaked viewer token cannot open thousands). A worker id has one stream: a new stream as the
 * same id ends the older one (a worker that reconnects before the server saw its old connection
 * die is not refused, and no one holds an id twice); worker streams are bounded by the total and
 * by the number of workers tracked.
 *
 * @example
 * ```ts
 * const limits = new StreamLimits({ maxStreams: 1000 });
 * const release = limits.acquire('dashboard', undefined, () => res.end()); // throws 429 beyond
 * res.once('close', release);
 * ```
 */
export class StreamLimits {
  readonly maxStreams: number;
  readonly maxStreamsPerToken: number;
  readonly #held = new Set<Held>();
  readonly #perToken = new Map<string, number>();
  readonly #byWorker = new Map<string, Held>();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: StreamLimitsOptions) {
    this.maxStreams = positive('maxStreams', options.maxStreams);
    this.maxStreamsPerToken = positive('maxStreamsPerToken', options.maxStreamsPerToken ?? 32);
  }

  /** Streams open now. */
  get size(): number {
    return this.#held.size;
  }

  /**
   * Takes a slot for a stream of `token` (as `workerId`, when it names one), or refuses.
   * Records nothing when it throws.
   *
   * @param end - ends the stream; called when a newer stream takes its worker id
   * @returns the function to call when the stream closes (idempotent)
   * @throws {LimitExceededError} `KS_LIMIT_EXCEEDED` (429) naming the limit
   */
  acquire(token: string, workerId: string | undefined, end: () => void): () => void {
    const older = workerId === undefined ? undefined : this.#byWorker.get(workerId);
    if (workerId === undefined) {
      const n = this.#perToken.get(token) ?? 0;
      if (n >= this.maxStreamsPerToken) {
        throw new LimitExceededError(
          'maxStreamsPerToken',
          this.maxStreamsPerToken,
          `token '${token}' holds ${n} streams that name no worker`,
          5,
        );
      }
    }
    // The older stream of the same worker id gives its slot to the new one.
    if (older === undefined && this.#held.size >= this.maxStreams) {
      throw new LimitExceededError(
        'maxStreams',
        this.maxStreams,
        `${this.#held.size} streams are open`,
        5,
      );
    }
    if (older !== undefined) {
      this.#release(older);
      older.end();
    }
    const h: Held = { token, workerId, end };
    this.#held.add(h);
    if (workerId === undefined) this.#perToken.set(token, (this.#perToken.get(token) ?? 0) + 1);
    else this.#byWorker.set(workerId, h);
    return () => this.#release(h);
  }

  #release(h: Held): void {
    if (!this.#held.delete(h)) return;
    if (h.workerId === undefined) {
      const n = (this.#perToken.get(h.token) ?? 1) - 1;
      if (n <= 0) this.#perToken.delete(h.token);
      else this.#perToken.set(h.token, n);
    } else if (this.#byWorker.get(h.workerId) === h) {
      this.#byWorker.delete(h.workerId);
    }
  }
}

function positive(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1)
    throw new InvalidOptionError(name, 'a positive integer', v);
  return v;
}
