import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { flipRecordSchema, normalizeSelector, parseFlipRecord } from '../../src/model/index.js';

/** What zod alone says: the normalised record, or undefined when the schema refuses. */
function viaZod(input: unknown): unknown {
  const r = flipRecordSchema.safeParse(input);
  if (!r.success) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries({ ...r.data, selector: normalizeSelector(r.data.selector) }))
    if (v !== undefined) out[k] = v;
  return out;
}

function viaParse(input: unknown): unknown {
  try {
    return { ...parseFlipRecord(input) };
  } catch (err) {
    expect(err).toMatchObject({ code: 'KS_INVALID_INPUT' });
    return undefined;
  }
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
    'x'.repeat(129),
    'x'.repeat(201),
    'x'.repeat(257),
    'x'.repeat(2001),
    '2026-13-45T00:00:00.000Z',
    '2026-02-30T00:00:00.000Z',
    '2026-11-24T00:00:00Z',
    'A'.repeat(64),
    '0'.repeat(63),
    'halt',
    'resume',
    'discard',
    'drain',
    'hold',
    'pause',
    0,
    -0,
    1,
    1.5,
    -1,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    2 ** 53,
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
  'extra',
);

describe('KS-2.1.1 the fast record check accepts exactly what the zod schema accepts', () => {
  it('agrees with zod on valid records and on every mutation of them', async () => {
    const store = new MemoryFlipLogStore();
    await store.append({
      actor: 'a',
      action: 'halt',
      selector: { tenant: 't', capability: 'c' },
      reason: 'r',
      mode: 'drain',
      source: 'drill',
    });
    await store.append({
      actor: 'a',
      action: 'resume',
      selector: { tenant: 't', capability: 'c' },
      reason: 'r',
      release: 'v1',
    });
    await store.append({ actor: 'a', action: 'halt', selector: {}, reason: 'r' });
    const valid = (await store.read()).map(
      (r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>,
    );
    for (const r of valid) expect(viaParse(r)).toEqual(viaZod(r));
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
          expect(viaParse(input)).toEqual(viaZod(input));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('refuses non-plain objects and arrays like zod does', () => {
    for (const input of [null, [], 'x', 1, Object.create(null)]) {
      expect(viaParse(input)).toEqual(viaZod(input));
    }
  });
});
