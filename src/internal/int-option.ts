import { InvalidOptionError } from '../errors.js';

/**
 * Checks an integer option: a safe integer from `min` to `max`, both included. The one check of
 * every integer option (counts, limits, durations in ms), so each refuses alike and says so.
 *
 * @param name - the option's name, as the caller wrote it (`staleAfterMs`, `limits.maxStreams`)
 * @param value - what arrived
 * @param min - the smallest value allowed
 * @param max - the largest value allowed @default Number.MAX_SAFE_INTEGER
 * @returns `value`, typed as a number
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` naming the option, the range and what arrived
 *
 * @example
 * ```ts
 * this.#leaseMs = intOption('leaseMs', options.leaseMs ?? 10_000, 1);
 * ```
 */
export function intOption(
  name: string,
  value: unknown,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, expected(min, max), value);
  }
  return value;
}

function expected(min: number, max: number): string {
  if (max !== Number.MAX_SAFE_INTEGER) return `an integer from ${min} to ${max}`;
  if (min === 1) return 'a positive integer';
  if (min === 0) return 'a non-negative integer';
  return `an integer >= ${min}`;
}
