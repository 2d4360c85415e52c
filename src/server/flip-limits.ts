import { systemClock, type Clock } from '../internal/clock.js';
import { LimitExceededError, TooLargeError } from './limit-exceeded.js';
import { intOption } from '../internal/int-option.js';

/** Options of {@link FlipLimits}. KS-17.8.3, KS-17.8.4 */
export interface FlipLimitsOptions {
  /** Flips per token per second, sustained. @default 20 */
  readonly maxFlipsPerSecond?: number;
  /** Flips a token may send at once before the rate applies. @default 2 x maxFlipsPerSecond */
  readonly flipBurst?: number;
  /** Active halts at most; a resume is always accepted. @default 10000 */
  readonly maxActiveHalts?: number;
  /** Distinct halts one Alertmanager post may place; beyond, the post is refused whole. @default 20 */
  readonly maxHaltsPerAlert?: number;
  /** Workers the control plane tracks at most (KS-17.8.4). @default 10000 */
  readonly maxWorkers?: number;
  /** @default systemClock (its monotonic reading refills the buckets) */
  readonly clock?: Clock;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The bounds on what goes into the flip log and the fleet tracker (KS-17.8.3, KS-17.8.4). Every
 * check runs before anything is appended or recorded, and every refusal names its limit:
 * `429 KS_LIMIT_EXCEEDED` with `Retry-After` for rates and counts, `413 KS_PAYLOAD_TOO_LARGE` for
 * an Alertmanager post that would place too many halts.
 *
 * - flips per token: a token bucket of `flipBurst`, refilled at `maxFlipsPerSecond` (a script
 *   looping on a token cannot fill the log; an operator's burst of 40 flips goes through);
 * - active halts: at most `maxActiveHalts`; a resume is always accepted, and a halt that replaces
 *   an active one with the same selector adds none;
 * - one Alertmanager post: at most `maxHaltsPerAlert` distinct halts (an alert storm must not turn
 *   into thousands of halts; group the alerts, or label them at a broader level);
 * - tracked workers: at most `maxWorkers`; a new one beyond is refused, no worker is dropped.
 *
 * @example
 * ```ts
 * const limits = new FlipLimits({ maxFlipsPerSecond: 5 });
 * limits.takeFlip('oncall'); // throws LimitExceededError once the bucket is empty
 * ```
 */
export class FlipLimits {
  readonly maxFlipsPerSecond: number;
  readonly flipBurst: number;
  readonly maxActiveHalts: number;
  readonly maxHaltsPerAlert: number;
  readonly maxWorkers: number;
  readonly #buckets = new Map<string, Bucket>();
  readonly #now: () => number;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` naming the option */
  constructor(options: FlipLimitsOptions = {}) {
    this.maxFlipsPerSecond = intOption(
      'maxFlipsPerSecond',
      options.maxFlipsPerSecond ?? 20,
      1,
      1e6,
    );
    this.flipBurst = intOption(
      'flipBurst',
      options.flipBurst ?? 2 * this.maxFlipsPerSecond,
      1,
      1e7,
    );
    this.maxActiveHalts = intOption('maxActiveHalts', options.maxActiveHalts ?? 10_000, 1, 1e8);
    this.maxHaltsPerAlert = intOption('maxHaltsPerAlert', options.maxHaltsPerAlert ?? 20, 1, 1e6);
    this.maxWorkers = intOption('maxWorkers', options.maxWorkers ?? 10_000, 1, 1e8);
    const clock = options.clock ?? systemClock;
    this.#now = () => clock.now();
  }

  /**
   * Takes `n` flips from the token's bucket, or refuses and takes none.
   *
   * @throws {LimitExceededError} 429 naming `maxFlipsPerSecond`
   */
  takeFlip(token: string, n = 1): void {
    const now = this.#now();
    let b = this.#buckets.get(token);
    if (b === undefined) {
      b = { tokens: this.flipBurst, at: now };
      this.#buckets.set(token, b);
    } else {
      const refill = ((now - b.at) / 1000) * this.maxFlipsPerSecond;
      b.tokens = Math.min(this.flipBurst, b.tokens + Math.max(0, refill));
      b.at = now;
    }
    if (b.tokens < n) {
      const wait = (n - b.tokens) / this.maxFlipsPerSecond;
      throw new LimitExceededError(
        'maxFlipsPerSecond',
        this.maxFlipsPerSecond,
        `token '${token}' sent more than ${this.maxFlipsPerSecond} flips per second (bursts of ${this.flipBurst})`,
        wait,
      );
    }
    b.tokens -= n;
    if (this.#buckets.size > 10_000) this.#forgetFull(now);
  }

  /**
   * Refuses halts that would take the active halts beyond the bound.
   *
   * @param active - active halts now
   * @param adding - halts this request would add (new selectors only)
   * @throws {LimitExceededError} 429 naming `maxActiveHalts`
   */
  checkActiveHalts(active: number, adding: number): void {
    if (adding > 0 && active + adding > this.maxActiveHalts) {
      throw new LimitExceededError(
        'maxActiveHalts',
        this.maxActiveHalts,
        `${active} halts are active${adding > 1 ? ` and this request adds ${adding}` : ''}; lift some, or halt at a broader level (a tenant, a capability, global)`,
        60,
      );
    }
  }

  /** @throws {TooLargeError} 413 naming `maxHaltsPerAlert` */
  checkAlertHalts(count: number): void {
    if (count > this.maxHaltsPerAlert) {
      throw new TooLargeError(
        'maxHaltsPerAlert',
        this.maxHaltsPerAlert,
        `this Alertmanager post maps to ${count} distinct halts; group the alerts, or label them at a broader level (killswitch_level)`,
      );
    }
  }

  /** @throws {LimitExceededError} 429 naming `maxWorkers` when a new worker would exceed it */
  checkNewWorker(tracked: number, workerId: string): void {
    if (tracked >= this.maxWorkers) {
      throw new LimitExceededError(
        'maxWorkers',
        this.maxWorkers,
        `${tracked} workers are tracked; worker '${workerId}' is not one of them`,
        30,
      );
    }
  }

  /** Buckets that refilled completely carry no state: drop them. */
  #forgetFull(now: number): void {
    for (const [k, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.maxFlipsPerSecond >= this.flipBurst)
        this.#buckets.delete(k);
    }
  }
}
