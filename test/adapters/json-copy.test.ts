import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonCopy } from '../../src/adapters/internal/json-copy.js';

/** What the adapters recorded before the walk: the JSON round trip. */
function roundTrip(v: unknown): unknown {
  const text = JSON.stringify(v);
  return text === undefined ? undefined : (JSON.parse(text) as unknown);
}

/** Same value, same key order, same own properties (a `__proto__` key included), same -0/0. */
function expectSame(v: unknown): void {
  const want = roundTrip(v);
  const got = jsonCopy(v);
  expect(got).toStrictEqual(want);
  expect(JSON.stringify(got)).toBe(JSON.stringify(want));
  if (want !== null && typeof want === 'object')
    expect(Object.getPrototypeOf(got)).toBe(Object.getPrototypeOf(want));
}

class Money {
  constructor(readonly cents: number) {}
}

describe('jsonCopy: the JSON round trip of a tool result, without the text (issue 16 hot path)', () => {
  it('answers what the round trip answers for values that are not plain JSON', () => {
    const withToJSON = { a: 1, toJSON: () => ({ replaced: true }) };
    const nullProto = Object.assign(Object.create(null) as object, { b: 2, a: [1] });
    const protoKey = JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as unknown;
    const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
    for (const v of [
      undefined,
      null,
      () => 1,
      Symbol('s'),
      -0,
      { z: -0 },
      NaN,
      [Infinity, -Infinity],
      { u: undefined, f: () => 1, s: Symbol('t'), keep: 'yes' },
      [undefined, () => 1, Symbol('x')],
      sparse,
      new Date(0),
      { when: new Date(0) },
      withToJSON,
      { nested: withToJSON },
      new Money(5),
      [new Money(6)],
      nullProto,
      protoKey,
      { '2': 'b', '1': 'a', z: 0, '-1': 'neg' },
      'lone \ud800 surrogate',
      Object.assign([1, 2], { extra: 'dropped' }),
      new Map([[1, 2]]),
      Object.defineProperty({ shown: 1 }, 'hidden', { value: 2, enumerable: false }),
      { [Symbol('k')]: 1, kept: 2 },
      { content: [{ type: 'text', text: '1' }], isError: false },
    ])
      expectSame(v);
  });

  it('keeps a __proto__ key as an own property, never as the prototype', () => {
    const v = JSON.parse('{"__proto__": {"polluted": true}}') as unknown;
    const got = jsonCopy(v) as Record<string, unknown>;
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(Object.prototype.hasOwnProperty.call(got, '__proto__')).toBe(true);
    expect((got as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('throws what the round trip throws (a cycle, a BigInt)', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic['self'] = cyclic;
    expect(() => jsonCopy(cyclic)).toThrow(TypeError);
    expect(() => jsonCopy({ n: 1n })).toThrow(TypeError);
    expect(() => jsonCopy([1n])).toThrow(TypeError);
  });

  it('copies deep values past its walk limit as the round trip does', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 200; i++) deep = { d: deep, i: [i] };
    expectSame(deep);
  });

  it('is detached from the value: changing the original later changes no copy', () => {
    const v = { content: [{ type: 'text', text: 'a' }] };
    const got = jsonCopy(v) as typeof v;
    v.content[0]!.text = 'changed';
    v.content.push({ type: 'text', text: 'more' });
    expect(got).toStrictEqual({ content: [{ type: 'text', text: 'a' }] });
  });

  it('answers the round trip for any JSON-like value (property)', () => {
    fc.assert(
      fc.property(
        fc.anything({
          withBoxedValues: true,
          withDate: true,
          withMap: true,
          withNullPrototype: true,
          withObjectString: true,
          withSparseArray: true,
          withTypedArray: true,
          withBigInt: false,
        }),
        (v) => expectSame(v),
      ),
      { numRuns: 2000 },
    );
  });
});
