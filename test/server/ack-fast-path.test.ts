import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ackRequestSchema, safeParseAck } from '../../src/protocol/acks.js';

/**
 * KS-6.2.6: acknowledgement entries are validated by a hand-written check before zod; the two
 * must accept exactly the same entries, with the same result.
 */
const idChars = fc.constantFrom(...'abcXYZ019._:@/+=- \n\u0000é'.split(''));
const validIdChars = fc.constantFrom(...'abcXYZ019._:@/+=-'.split(''));
const entryArb = fc.record(
  {
    workerId: fc.oneof(
      { weight: 6, arbitrary: fc.string({ unit: validIdChars, minLength: 1, maxLength: 128 }) },
      { weight: 2, arbitrary: fc.string({ unit: validIdChars, minLength: 125, maxLength: 132 }) },
      fc.string({ unit: idChars, minLength: 0, maxLength: 130 }),
      fc.string({ unit: idChars, minLength: 120, maxLength: 140 }),
      fc.integer(),
      fc.constant(null),
    ),
    seq: fc.oneof(
      { weight: 6, arbitrary: fc.nat() },
      fc.integer({ min: -5, max: 5 }),
      fc.double(),
      fc.constant(Number.MAX_SAFE_INTEGER),
      fc.constant(Number.MAX_SAFE_INTEGER + 2),
      fc.string(),
    ),
    release: fc.oneof(
      fc.string({ maxLength: 210 }),
      fc.string({ minLength: 195, maxLength: 205 }),
      fc.constant(''),
      fc.constant('v1\u0007'),
      fc.integer(),
    ),
    extra: fc.anything(),
  },
  { requiredKeys: ['workerId', 'seq'] },
);

describe('KS-6.2.6 the fast acknowledgement check agrees with the schema', () => {
  it('accepts and refuses exactly what zod does, with the same result (JSON-shaped input)', () => {
    fc.assert(
      fc.property(fc.oneof({ weight: 4, arbitrary: entryArb }, fc.jsonValue()), (input) => {
        // What the server sees: the entry after a JSON round trip.
        const json = JSON.stringify(input);
        const value: unknown = json === undefined ? undefined : JSON.parse(json);
        const ours = safeParseAck(value);
        const zod = ackRequestSchema.safeParse(value);
        expect(ours.success).toBe(zod.success);
        if (ours.success && zod.success) expect(ours.data).toEqual(zod.data);
      }),
      {
        seed: Number(process.env['FC_SEED'] ?? Date.now() % 2 ** 31),
        verbose: true,
        numRuns: 3000,
      },
    );
  });

  it('refuses what it cannot vouch for and explains it through zod', () => {
    const r = safeParseAck({ workerId: 'w 1', seq: -1 });
    expect(r.success).toBe(false);
    if (!r.success) expect(r.error.issues.length).toBeGreaterThanOrEqual(2);
    // Not JSON-shaped (inherited fields): the fast check steps aside and zod decides.
    const inherited: unknown = Object.create({ workerId: 'w', seq: 1 });
    expect(safeParseAck(inherited).success).toBe(ackRequestSchema.safeParse(inherited).success);
    expect(safeParseAck({ workerId: 'w', seq: 1, release: 'v1' })).toEqual({
      success: true,
      data: { workerId: 'w', seq: 1, release: 'v1' },
    });
  });
});
