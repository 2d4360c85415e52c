import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiTime } from '../../src/protocol/answers.js';

/** What apiTime has always answered: toISOString of the reading rounded to the millisecond. */
const reference = (ms: number): string => new Date(Math.round(ms)).toISOString();
const outcome = (f: () => string): string => {
  try {
    return f();
  } catch (err) {
    return `throws ${(err as Error).name}`;
  }
};

describe('KS-5.1.15 every time in an answer is ISO 8601 UTC with milliseconds, as toISOString writes it', () => {
  it('equals toISOString of the rounded reading for any reading a Date can hold', () => {
    fc.assert(
      fc.property(fc.double({ min: -8.64e15, max: 8.64e15, noNaN: true }), (ms) => {
        expect(apiTime(ms)).toBe(reference(ms));
      }),
      { numRuns: 5000 },
    );
  });

  it('equals it around now, in runs of the same day, at day and year edges, and before 1970', () => {
    const now = Date.now();
    const cases = [
      0,
      -0,
      -0.5,
      0.4999,
      0.5,
      1,
      -1,
      999.5,
      86_399_999,
      86_400_000,
      86_400_000 - 0.5,
      Date.UTC(2026, 11, 31, 23, 59, 59, 999),
      Date.UTC(2027, 0, 1),
      Date.UTC(2024, 1, 29, 12),
      Date.UTC(1969, 11, 31, 23, 59, 59, 999),
      Date.UTC(-1, 0, 1),
      Date.UTC(10000, 0, 1),
      8.64e15,
      -8.64e15,
      now,
    ];
    for (let i = 0; i < 2000; i++) cases.push(now + i * 7.3, now - i * 1234.567);
    for (const ms of cases) expect([ms, apiTime(ms)]).toEqual([ms, reference(ms)]);
  });

  it('refuses what toISOString refuses (not a time, beyond what a Date holds) the same way', () => {
    for (const ms of [NaN, Infinity, -Infinity, 8.64e15 + 1, -8.64e15 - 1])
      expect(outcome(() => apiTime(ms))).toBe(outcome(() => reference(ms)));
    expect(outcome(() => apiTime(NaN))).toBe('throws RangeError');
  });
});
