import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { effectKey } from '../../src/ledger/index.js';

describe('KS-4.4.4 the idempotency key is derived from run and step', () => {
  it('is the same for the same pair, every time', () => {
    expect(effectKey('run-1', 'send-email')).toBe('run-1/send-email');
    expect(effectKey('run-1', 'send-email')).toBe(effectKey('run-1', 'send-email'));
  });

  it('never maps two distinct pairs to one key', () => {
    expect(effectKey('a/b', 'c')).not.toBe(effectKey('a', 'b/c'));
    expect(effectKey('a%2F', 'b')).not.toBe(effectKey('a/', 'b'));
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }),
        fc.string({ minLength: 1 }),
        fc.string({ minLength: 1 }),
        fc.string({ minLength: 1 }),
        (r1, s1, r2, s2) => {
          fc.pre(r1 !== r2 || s1 !== s2);
          expect(effectKey(r1, s1)).not.toBe(effectKey(r2, s2));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('rejects empty parts and lone surrogates with KS_INVALID_INPUT', () => {
    expect(() => effectKey('', 'a')).toThrow(ValidationError);
    expect(() => effectKey('r', '')).toThrow(/step/);
    expect(() => effectKey('r\uD800', 'a')).toThrow(/well-formed/);
  });
});
