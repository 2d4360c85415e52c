import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fastLedgerEvent } from '../../src/ledger/internal/fast-ledger-event.js';
import { ledgerEventSchema, parseLedgerEvent } from '../../src/ledger/side-effect-ledger.js';

/** What zod alone says: the normalised event (as parseLedgerEvent returned it before the fast path), or undefined. */
function viaZod(input: unknown): unknown {
  const r = ledgerEventSchema.safeParse(input);
  if (!r.success) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r.data)) {
    if (v === undefined) continue;
    if (k === 'context') {
      const c: Record<string, unknown> = {};
      for (const [ck, cv] of Object.entries(v as object)) if (cv !== undefined) c[ck] = cv;
      out[k] = c;
    } else out[k] = v;
  }
  return out;
}

const VALID: Record<string, unknown>[] = [
  {
    key: 'run-1/send',
    status: 'intent',
    at: '2026-12-05T18:00:00.000Z',
    runId: 'run-1',
    step: 'send',
    capability: 'email.send',
    context: {
      tenant: 'acme',
      runId: 'run-1',
      capability: 'email.send',
      runPath: ['root', 'run-1'],
    },
    attempt: 1,
    compensation: { action: 'email.recall', args: { id: 3 } },
  },
  {
    key: 'k',
    status: 'landed',
    at: '2026-12-05T18:00:00.001Z',
    context: {},
    result: { rows: [1, 2] },
  },
  {
    key: 'k',
    status: 'refused',
    at: '2026-12-05T18:00:00.002Z',
    context: { feature: 'f' },
    flipSeq: 7,
    detail: 'effect k refused: halted by flip #7',
  },
];

const tricky = fc.oneof(
  fc.anything(),
  fc.constantFrom(
    '',
    'x',
    'x'.repeat(256),
    'x'.repeat(257),
    'x'.repeat(1024),
    'x'.repeat(1025),
    'x'.repeat(4097),
    '2026-12-05T18:00:00.000Z',
    '2026-02-30T00:00:00.000Z',
    '2026-13-45T00:00:00.000Z',
    '2026-12-05T18:00:00Z',
    'intent',
    'landed-after-halt',
    'cancelled',
    'halted',
    0,
    1,
    1.5,
    -1,
    2 ** 53,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    null,
    undefined,
    [],
    ['a'],
    [''],
    Array.from({ length: 65 }, () => 'a'),
    // eslint-disable-next-line no-sparse-arrays -- a hole in a run path
    ['a', , 'b'],
    {},
    { action: 'x' },
    { action: 'x', args: undefined },
    { action: '' },
    { action: 'x', other: 1 },
    { tenant: 'a' },
    { tenant: '' },
    { tenant: 'a', other: 'b' },
    { runPath: ['a'] },
    { runPath: [] },
    Object.create(null) as object,
    new Date(0),
  ),
);
const keys = fc.constantFrom(
  'key',
  'status',
  'at',
  'runId',
  'step',
  'capability',
  'context',
  'flipSeq',
  'detail',
  'compensation',
  'attempt',
  'result',
  'extra',
  '__proto__',
);
const contextKeys = fc.constantFrom('tenant', 'feature', 'runId', 'capability', 'runPath', 'x');

describe('KS-4.4.2 the fast ledger-event check accepts only what the zod schema accepts, and answers the same event', () => {
  it('agrees on valid events', () => {
    for (const e of VALID) {
      expect(fastLedgerEvent(e)).toStrictEqual(viaZod(e));
      expect(parseLedgerEvent(e)).toStrictEqual(viaZod(e));
    }
  });

  it('never accepts what zod refuses, and answers what zod answers, on every mutation (fast-check)', () => {
    let fastHits = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...VALID),
        fc.array(fc.tuple(keys, tricky), { minLength: 0, maxLength: 3 }),
        fc.option(fc.tuple(contextKeys, tricky)),
        (base, edits, contextEdit) => {
          const input: Record<string, unknown> = JSON.parse(JSON.stringify(base)) as Record<
            string,
            unknown
          >;
          for (const [k, v] of edits)
            Object.defineProperty(input, k, {
              value: v,
              enumerable: true,
              writable: true,
              configurable: true,
            });
          if (contextEdit && typeof input.context === 'object' && input.context !== null)
            (input.context as Record<string, unknown>)[contextEdit[0]] = contextEdit[1];
          const fast = fastLedgerEvent(input);
          const zod = viaZod(input);
          if (fast !== undefined) {
            fastHits++;
            expect(fast).toStrictEqual(zod);
          }
          // Whichever path answers, parseLedgerEvent answers what zod answers.
          let parsed: unknown;
          try {
            parsed = parseLedgerEvent(input);
          } catch (err) {
            expect(err).toMatchObject({ code: 'KS_INVALID_INPUT' });
          }
          expect(parsed).toStrictEqual(zod);
        },
      ),
      { numRuns: 5000 },
    );
    // The fast path is taken for the common events, not only in theory.
    expect(fastHits).toBeGreaterThan(100);
  });

  it('leaves non-plain objects, arrays and a JSON __proto__ key to zod', () => {
    const proto = JSON.parse(
      '{"key":"k","status":"intent","at":"2026-12-05T18:00:00.000Z","context":{},"__proto__":{"x":1}}',
    ) as unknown;
    for (const input of [null, [], 'x', 1, new Date(0), proto]) {
      expect(fastLedgerEvent(input)).toBeUndefined();
    }
    expect(() => parseLedgerEvent(proto)).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_INPUT' }),
    );
  });

  it('copies the run path, so a caller changing its array later does not change the event', () => {
    const path = ['root', 'child'];
    const e = parseLedgerEvent({
      key: 'k',
      status: 'intent',
      at: '2026-12-05T18:00:00.000Z',
      context: { runPath: path },
    });
    path.push('x');
    expect(e.context.runPath).toEqual(['root', 'child']);
  });

  it('remembers only an instant it found valid: an invalid one after it is still left to zod', () => {
    // The fast path keeps the last valid `at` (the guard stamps every event of a millisecond
    // alike): a wrong cache would accept the impossible dates below once a valid one was seen.
    const event = (at: string) => ({ key: 'k', status: 'intent', at, context: { runId: 'r' } });
    const valid = '2026-12-06T05:00:00.000Z';
    const impossible = '2026-13-45T25:61:61.000Z'; // the shape matches, Date.parse says NaN
    for (const at of [
      valid,
      impossible,
      valid,
      impossible,
      '2026-12-06T05:00:00.001Z',
      impossible,
    ]) {
      expect(fastLedgerEvent(event(at)), at).toEqual(
        at === impossible ? undefined : viaZod(event(at)),
      );
    }
    expect(fastLedgerEvent(event(impossible))).toBeUndefined();
    expect(viaZod(event(impossible))).toBeUndefined();
    expect(fastLedgerEvent(event(`${valid} `))).toBeUndefined();
  });
});
