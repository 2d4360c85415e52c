import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ID_PATTERN,
  hasControlCharacters,
  idText,
  isIdText,
  isSafeText,
  safeText,
} from '../../src/protocol/index.js';

describe('protocol text rules: the fast checks accept exactly what the zod schemas accept', () => {
  const alphabet = fc.constantFrom(...'aZ09._:@/+=- \t\n\u0000\u001f\u007f\u00e9\u200b*'.split(''));
  const text = fc.array(alphabet, { maxLength: 12 }).map((a) => a.join(''));

  it('isIdText agrees with idText', () => {
    fc.assert(
      fc.property(text, fc.integer({ min: 1, max: 10 }), (s, max) => {
        expect(isIdText(s, max)).toBe(idText(max).safeParse(s).success);
      }),
    );
  });

  it('isSafeText agrees with safeText', () => {
    fc.assert(
      fc.property(text, fc.integer({ min: 1, max: 10 }), (s, max) => {
        expect(isSafeText(s, max)).toBe(safeText(max).safeParse(s).success);
      }),
    );
  });

  it('names the rule that failed', () => {
    expect(idText(5).safeParse('a b').error?.issues[0]?.message).toBe(
      'must use only letters, digits and ._:@/+=-',
    );
    expect(safeText(5).safeParse('a\u0007').error?.issues[0]?.message).toBe(
      'must not contain control characters',
    );
    expect(hasControlCharacters('tab\there')).toBe(true);
    expect(hasControlCharacters('caf\u00e9')).toBe(false);
    expect(ID_PATTERN.test('w-1@host:7411/a+b=c')).toBe(true);
    expect(isIdText(42, 10)).toBe(false);
  });
});
