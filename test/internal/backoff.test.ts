import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { delay, type BackoffCurve } from '../../src/internal/backoff.js';

const curve: BackoffCurve = { initialMs: 100, factor: 2, maxMs: 5000, jitter: 0.5 };

describe('KS-6.3.9 KS-7.1.10 one backoff: delay(attempt, curve)', () => {
  it('grows by the factor from initialMs and stops at maxMs', () => {
    const flat = { ...curve, jitter: 0 };
    expect([0, 1, 2, 3, 4, 5, 6, 100].map((n) => delay(n, flat))).toEqual([
      100, 200, 400, 800, 1600, 3200, 5000, 5000,
    ]);
  });

  it('takes off up to `jitter` of the wait at random, never adding to it', () => {
    expect(delay(0, curve, () => 0)).toBe(100);
    expect(delay(0, curve, () => 0.5)).toBe(75);
    expect(delay(0, curve, () => 0.999999)).toBe(50);
    expect(delay(3, { ...curve, jitter: 1 }, () => 0.5)).toBe(400);
  });

  it('treats a negative or fractional attempt as the whole number below it, at least 0', () => {
    const flat = { ...curve, jitter: 0 };
    expect(delay(-3, flat)).toBe(100);
    expect(delay(1.7, flat)).toBe(200);
  });

  it('stays within [initial*(1-jitter), maxMs] for any attempt and random value (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        (attempt, r, jitter, factor) => {
          const c = { initialMs: 100, factor, maxMs: 5000, jitter };
          const d = delay(attempt, c, () => r);
          return Number.isInteger(d) && d >= Math.floor(100 * (1 - jitter)) && d <= 5000;
        },
      ),
    );
  });

  it('is monotonic in the attempt when there is no jitter (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        (n, factor) => {
          const c = { initialMs: 10, factor, maxMs: 60_000, jitter: 0 };
          return delay(n + 1, c) >= delay(n, c);
        },
      ),
    );
  });
});
