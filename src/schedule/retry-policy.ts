import { InvalidOptionError } from '../errors.js';
import { delay } from '../internal/backoff.js';

/** Exponential back-off between attempts. */
export interface BackoffPolicy {
  /** Wait after the first failed attempt, in ms. @default 100 */
  readonly baseMs?: number;
  /** Multiplier per further failure (>= 1). @default 2 */
  readonly factor?: number;
  /** Upper bound of one wait, in ms. @default 30_000 */
  readonly maxMs?: number;
  /**
   * Share of each wait that is random, from 0 (none) to 1 ("full jitter"): the wait is
   * `delay * (1 - jitter * random())`. @default 0.2
   */
  readonly jitter?: number;
}

/** How a scheduler retries an attempt. */
export interface RetryPolicy {
  /** Attempts in all, the first included (>= 1). @default 3 */
  readonly maxAttempts?: number;
  readonly backoff?: BackoffPolicy;
}

/** A policy with every default applied. */
export interface ResolvedRetryPolicy {
  readonly maxAttempts: number;
  readonly backoff: Required<BackoffPolicy>;
}

/**
 * Validates a retry policy and applies the defaults.
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` naming the bad field
 */
export function resolveRetryPolicy(policy: RetryPolicy = {}): ResolvedRetryPolicy {
  const maxAttempts = policy.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1_000) {
    throw new InvalidOptionError('policy.maxAttempts', 'an integer from 1 to 1000', maxAttempts);
  }
  const b = policy.backoff ?? {};
  const baseMs = b.baseMs ?? 100;
  const factor = b.factor ?? 2;
  const maxMs = b.maxMs ?? 30_000;
  const jitter = b.jitter ?? 0.2;
  if (!Number.isFinite(baseMs) || baseMs < 0) {
    throw new InvalidOptionError('policy.backoff.baseMs', 'a finite number of ms >= 0', baseMs);
  }
  if (!Number.isFinite(factor) || factor < 1) {
    throw new InvalidOptionError('policy.backoff.factor', 'a finite number >= 1', factor);
  }
  if (!Number.isFinite(maxMs) || maxMs < baseMs) {
    throw new InvalidOptionError(
      'policy.backoff.maxMs',
      `a finite number of ms >= baseMs (${baseMs})`,
      maxMs,
    );
  }
  if (!Number.isFinite(jitter) || jitter < 0 || jitter > 1) {
    throw new InvalidOptionError('policy.backoff.jitter', 'a number from 0 to 1', jitter);
  }
  return { maxAttempts, backoff: { baseMs, factor, maxMs, jitter } };
}

/**
 * The wait before attempt `failed + 1`, after `failed` failed attempts (>= 1).
 *
 * @param random - a source of numbers in [0, 1)
 * @returns the wait in ms, never above `maxMs` and never negative
 */
export function backoffDelay(
  policy: ResolvedRetryPolicy,
  failed: number,
  random: () => number,
): number {
  const { baseMs, factor, maxMs, jitter } = policy.backoff;
  return delay(failed - 1, { initialMs: baseMs, factor, maxMs, jitter }, random);
}
