import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { ValidationError } from '../../src/errors.js';
import { canonicalJson } from '../../src/model/canonical-json.js';
import {
  flipInputSchema,
  isValidatedFlip,
  parseFlipInput,
  recordJson,
  tryParseFlipInput,
} from '../../src/model/flip-record.js';
import { normalizeSelector } from '../../src/model/selector.js';
import { flipRequestSchema, parseFlipRequest } from '../../src/protocol/flip-request.js';

/** What zod alone says: the normalised flip without its id, or undefined when refused. */
function viaZod(input: unknown): unknown {
  const r = flipInputSchema.safeParse(input);
  if (!r.success) return undefined;
  const v = r.data;
  const out: Record<string, unknown> = {
    id: v.id,
    actor: v.actor,
    action: v.action,
    selector: normalizeSelector(v.selector),
    reason: v.reason,
    mode: v.action === 'halt' ? (v.mode ?? 'discard') : undefined,
    release: v.release,
    source: v.source,
  };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

/** What the fast path says, with a generated id dropped when the input named none. */
function viaFast(input: unknown): unknown {
  const f = tryParseFlipInput(input);
  if (f === undefined) return undefined;
  const named = typeof input === 'object' && input !== null && (input as { id?: unknown }).id;
  const { id, ...rest } = f;
  return named === undefined ? rest : { id, ...rest };
}

const tricky = fc.oneof(
  fc.anything(),
  fc.constantFrom(
    '',
    ' ',
    ' x',
    'x ',
    'a\u0000b',
    'a\u007f',
    'a b',
    'x'.repeat(65),
    'x'.repeat(129),
    'x'.repeat(201),
    'x'.repeat(257),
    'x'.repeat(2001),
    'halt',
    'resume',
    'discard',
    'drain',
    'hold',
    'pause',
    0,
    1,
    Number.NaN,
    null,
    undefined,
    [],
    {},
    { tenant: 'a' },
    { tenant: '' },
    { tenant: 'a', other: 'b' },
    { runId: ' r' },
    { capability: undefined },
  ),
);
const keys = fc.constantFrom(
  'id',
  'actor',
  'action',
  'selector',
  'reason',
  'mode',
  'release',
  'source',
  'wait',
  'extra',
);

const valid: Record<string, unknown>[] = [
  { actor: 'a', action: 'halt', selector: { tenant: 't', capability: 'c' }, reason: 'r' },
  { id: 'f-1', actor: 'a', action: 'halt', selector: {}, reason: 'r', mode: 'drain', source: 's' },
  { actor: 'a', action: 'resume', selector: { runId: 'r1' }, reason: 'r', release: 'v1' },
];

/** Without zod's id-free shortcut: the result with the generated id removed. */
const withoutGeneratedId = (input: Record<string, unknown>, v: unknown): unknown => {
  if (v === undefined || input.id !== undefined) return v;
  const { id: _id, ...rest } = v as Record<string, unknown>;
  return rest;
};

describe('KS-2.1.2 a flip is validated once, by a fast check that accepts exactly what the schema accepts', () => {
  it('the fast check agrees with zod on valid flips and every mutation of them', () => {
    for (const v of valid) expect(viaFast(v)).toEqual(withoutGeneratedId(v, viaZod(v)));
    fc.assert(
      fc.property(
        fc.constantFrom(...valid),
        fc.array(fc.tuple(keys, tricky), { minLength: 1, maxLength: 3 }),
        fc.option(
          fc.tuple(fc.constantFrom('tenant', 'feature', 'runId', 'capability', 'x'), tricky),
        ),
        (base, edits, selectorEdit) => {
          const input: Record<string, unknown> = {
            ...base,
            selector: { ...(base.selector as object) },
          };
          for (const [k, v] of edits) input[k] = v;
          if (selectorEdit && typeof input.selector === 'object' && input.selector !== null)
            (input.selector as Record<string, unknown>)[selectorEdit[0]] = selectorEdit[1];
          const fast = viaFast(input);
          // Never more lenient than zod; when it declines, parseFlipInput asks zod.
          if (fast !== undefined) expect(fast).toEqual(withoutGeneratedId(input, viaZod(input)));
          let parsed: unknown;
          try {
            parsed = withoutGeneratedId(input, { ...parseFlipInput(input) });
          } catch (err) {
            expect(err).toBeInstanceOf(ValidationError);
            parsed = undefined;
          }
          expect(parsed).toEqual(withoutGeneratedId(input, viaZod(input)));
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('parsed flips are frozen and known as validated; look-alikes are not', () => {
    const f = parseFlipInput(valid[0]);
    expect(Object.isFrozen(f)).toBe(true);
    expect(Object.isFrozen(f.selector)).toBe(true);
    expect(isValidatedFlip(f)).toBe(true);
    expect(isValidatedFlip({ ...f })).toBe(false);
    expect(() => {
      (f as { reason: string }).reason = '';
    }).toThrow(TypeError);
  });

  it('a store still validates what it was not handed validated, and appends nothing bad', async () => {
    const store = new MemoryFlipLogStore();
    const good = parseFlipInput(valid[0]);
    const bad = { ...good, reason: '   ' };
    await expect(store.append(bad as never)).rejects.toMatchObject({ code: 'KS_INVALID_INPUT' });
    const r = await store.append(good);
    expect(r.record.seq).toBe(1);
    expect(await store.read()).toHaveLength(1);
  });
});

describe('KS-5.1.1 the request schema is the model’s flip input without the actor, plus wait', () => {
  it('accepts what the model accepts, with the token name as actor', () => {
    const { flip, wait } = parseFlipRequest(
      { action: 'halt', selector: { tenant: 't' }, reason: 'r', wait: 250 },
      'oncall',
    );
    expect(wait).toBe(250);
    expect(flip).toMatchObject({ actor: 'oncall', action: 'halt', mode: 'discard' });
    expect(isValidatedFlip(flip)).toBe(true);
  });

  it.each([
    ['names an actor', { action: 'halt', selector: {}, reason: 'r', actor: 'me' }, 'actor'],
    ['a blank reason', { action: 'halt', selector: {}, reason: '  ' }, 'reason'],
    ['a bad id', { action: 'halt', selector: {}, reason: 'r', id: 'a b' }, 'id'],
    ['a resume with a mode', { action: 'resume', selector: {}, reason: 'r', mode: 'hold' }, 'mode'],
    ['a wait too long', { action: 'halt', selector: {}, reason: 'r', wait: 30_001 }, 'wait'],
    ['a fractional wait', { action: 'halt', selector: {}, reason: 'r', wait: 1.5 }, 'wait'],
    ['an unknown field', { action: 'halt', selector: {}, reason: 'r', x: 1 }, ''],
  ])('refuses %s with the field named', (_name, body, field) => {
    let err: unknown;
    try {
      parseFlipRequest(body, 'oncall');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toContain(field);
    // The zod schema, alone, refuses the same body.
    expect(flipRequestSchema.safeParse(body).success).toBe(false);
  });

  it('a token name that is no valid actor is refused, not appended', () => {
    expect(() =>
      parseFlipRequest({ action: 'halt', selector: {}, reason: 'r' }, 'x'.repeat(201)),
    ).toThrow(ValidationError);
  });
});

describe('KS-2.3.1 canonical encoding', () => {
  /** The encoding as first written (functional form): the oracle the loop form must equal. */
  function reference(value: unknown): string {
    if (value === null) return 'null';
    switch (typeof value) {
      case 'string':
        return JSON.stringify(value);
      case 'number':
        if (!Number.isFinite(value)) throw new TypeError('non-finite');
        return JSON.stringify(value);
      case 'boolean':
        return value ? 'true' : 'false';
      case 'object': {
        if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
        const obj = value as Record<string, unknown>;
        const ks = Object.keys(obj)
          .filter((k) => obj[k] !== undefined)
          .sort();
        return `{${ks.map((k) => `${JSON.stringify(k)}:${reference(obj[k])}`).join(',')}}`;
      }
      default:
        throw new TypeError('cannot encode');
    }
  }

  it('gives the same bytes as the reference form on any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
      }),
      { numRuns: 2000 },
    );
  });

  it('a record’s cached encoding is its canonical JSON', async () => {
    const store = new MemoryFlipLogStore();
    const { record } = await store.append(parseFlipInput(valid[1]));
    expect(recordJson(record)).toBe(reference(record));
    expect(recordJson(record)).toBe(recordJson(record));
    // A record that is not frozen is encoded afresh every time (nothing cached could go stale).
    const copy: Record<string, unknown> = { ...record };
    expect(recordJson(copy as never)).toBe(reference(copy));
    copy.reason = 'changed';
    expect(recordJson(copy as never)).toBe(reference(copy));
  });
});
