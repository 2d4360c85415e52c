import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { ackAnswerSchema } from '../../src/protocol/acks.js';
import { fastAckAnswer, parseAckAnswer } from '../../providers/remote/remote-flip-source.js';

const HASH = 'a'.repeat(64);
const valid = {
  head: 7,
  serverTime: '2026-12-06T08:00:00.000Z',
  staleAfterMs: 3000,
  logId: 'log-1',
  hash: HASH,
};

/** What zod alone says: the answer, or undefined when the schema refuses. */
function viaZod(input: unknown): unknown {
  const r = ackAnswerSchema.safeParse(input);
  return r.success ? r.data : undefined;
}

const tricky = fc.oneof(
  fc.anything(),
  fc.constantFrom(
    '',
    ' ',
    'x'.repeat(64),
    'x'.repeat(65),
    'log-1',
    'log 1',
    'x'.repeat(128),
    'x'.repeat(129),
    HASH,
    'A'.repeat(64),
    '0'.repeat(63),
    's'.repeat(256),
    's'.repeat(257),
    0,
    -0,
    1,
    1.5,
    -1,
    3000,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    2 ** 53,
    Number.MAX_SAFE_INTEGER,
    null,
    undefined,
    [],
    {},
  ),
);
const answers = fc.record(
  {
    head: tricky,
    serverTime: tricky,
    staleAfterMs: tricky,
    logId: tricky,
    hash: tricky,
    sig: tricky,
    extra: tricky,
  },
  { requiredKeys: [] },
);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the acknowledgement answer check: a hand-written fast path, zod for the rest', () => {
  it('the fast path never accepts what the schema refuses, and gives what zod gives', () => {
    fc.assert(
      fc.property(fc.oneof(answers, tricky), (input) => {
        const fast = fastAckAnswer(input);
        if (fast !== undefined) expect(fast).toStrictEqual(viaZod(input));
      }),
      { numRuns: 3000 },
    );
  });

  it('takes the answers a control plane sends without zod (it is cold after a fan-out)', () => {
    const sent = [
      valid,
      { ...valid, serverTime: 1_765_000_000_000 },
      { ...valid, head: 0, sig: 's'.repeat(88) },
      { ...valid, newerField: true },
    ];
    const expected = sent.map(viaZod);
    expect(expected.every((e) => e !== undefined)).toBe(true);
    const spy = vi.spyOn(ackAnswerSchema, 'safeParse');
    sent.forEach((a, i) => {
      expect(fastAckAnswer(a)).toStrictEqual(expected[i]);
      expect(parseAckAnswer(JSON.stringify(a))).toStrictEqual(expected[i]);
    });
    expect(spy).not.toHaveBeenCalled();
  });

  it('what the fast path cannot vouch for goes to zod, which decides', () => {
    // Not a safe integer: refused by the fast path; zod decides (and refuses it too).
    const unsafe = { ...valid, head: 2 ** 53 };
    expect(fastAckAnswer(unsafe)).toBeUndefined();
    expect(parseAckAnswer(JSON.stringify(unsafe))).toStrictEqual(viaZod(unsafe));
    for (const bad of ['not json', '[]', JSON.stringify({ ...valid, hash: 'x' })])
      expect(parseAckAnswer(bad)).toBeUndefined();
  });
});
