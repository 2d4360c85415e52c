import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/model/canonical-json.js';
import {
  GENESIS_HASH,
  chainRecord,
  computeHash,
  parseFlipInput,
  recordCanonicalJson,
  verifyRecordHash,
  type FlipRecord,
} from '../../src/model/flip-record.js';

const RECORD_KEYS = [
  'seq',
  'id',
  'at',
  'actor',
  'action',
  'selector',
  'reason',
  'mode',
  'release',
  'source',
  'prev',
  'hash',
];
const SELECTOR_KEYS = ['tenant', 'feature', 'runId', 'capability'];

/** Any JSON-ish value canonicalJson encodes (strings with quotes, escapes and lone surrogates). */
const leaf = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
);
const value = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    leaf,
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('v'), { maxKeys: 3 }),
  ),
})).v;

/** A selector-like member: mostly the four keys with strings, sometimes anything at all. */
const selectorLike = fc.oneof(
  fc.dictionary(
    fc.constantFrom(...SELECTOR_KEYS),
    fc.option(fc.string({ unit: 'binary' }), { nil: undefined }),
    { maxKeys: 4 },
  ),
  fc.dictionary(fc.constantFrom(...SELECTOR_KEYS, 'other', '__proto__x'), value, { maxKeys: 5 }),
  value,
);

/** Objects shaped like records (any subset of their keys, any values), sometimes with more keys. */
const recordLike = fc
  .tuple(
    fc.dictionary(fc.constantFrom(...RECORD_KEYS), value, { maxKeys: 12 }),
    selectorLike,
    fc.boolean(),
    fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 2 }),
  )
  .map(([fields, selector, withSelector, extra]) => ({
    ...fields,
    ...(withSelector ? { selector } : {}),
    ...extra,
  }));

/** The encoding, or the error it throws (both encoders refuse the same values the same way). */
const outcome = (f: () => string): string => {
  try {
    return f();
  } catch (err) {
    return `throws ${(err as Error).name}`;
  }
};

describe('KS-2.3.1 the record encoder without a sort gives exactly the canonical JSON', () => {
  it('recordCanonicalJson(x) equals canonicalJson(x) for any record-like object', () => {
    fc.assert(
      fc.property(recordLike, (o) => {
        expect(outcome(() => recordCanonicalJson(o))).toBe(outcome(() => canonicalJson(o)));
      }),
      { numRuns: 2000 },
    );
  });

  it('without the hash it equals canonicalJson of the object less its hash member', () => {
    fc.assert(
      fc.property(recordLike, (o) => {
        const { hash: _h, ...rest } = o as Record<string, unknown>;
        expect(outcome(() => recordCanonicalJson(o, true))).toBe(
          outcome(() => canonicalJson(rest)),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('arrays, null, primitives and objects with a prototype of their own are left to canonicalJson', () => {
    const proto = Object.assign(Object.create({ mode: 'hold' }) as object, {
      action: 'halt',
      seq: 1,
    });
    for (const x of [[1, 'a'], null, 'text', 3, true, proto, Object.create(null)])
      expect(recordCanonicalJson(x)).toBe(canonicalJson(x));
    // A non-finite number is refused by both.
    expect(() => recordCanonicalJson({ seq: Infinity })).toThrow(TypeError);
  });

  it('a chained record hashes as before: the hash is SHA-256 of the canonical JSON less the hash', async () => {
    const { hash } = await import('node:crypto');
    const r: FlipRecord = chainRecord(
      parseFlipInput({
        actor: 'op "quoted" \\ é',
        action: 'halt',
        selector: { tenant: 'acme', capability: 'email.send' },
        reason: 'incident\u2028line',
        release: 'r1',
        source: 'drill',
      }),
      { seq: 41, hash: GENESIS_HASH },
      new Date(1_700_000_000_123),
    );
    const { hash: own, ...body } = r;
    expect(own).toBe(hash('sha256', canonicalJson(body), 'hex'));
    expect(computeHash(r)).toBe(own);
    expect(verifyRecordHash(r)).toBe(true);
    // The key order of the frozen record is the one records always had.
    expect(Object.keys(r)).toEqual([
      'seq',
      'id',
      'at',
      'actor',
      'action',
      'selector',
      'reason',
      'mode',
      'release',
      'source',
      'prev',
      'hash',
    ]);
    expect(Object.isFrozen(r)).toBe(true);
    // A tampered field no longer verifies.
    expect(verifyRecordHash({ ...r, reason: 'other' })).toBe(false);
  });
});
