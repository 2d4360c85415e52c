import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  LineageWire,
  MAX_RUN_DEPTH,
  MAX_LINEAGE_ID_LENGTH,
  formatRunPath,
  lineageContext,
  lineageFromBaggage,
  lineageFromHeaders,
  lineageFromJobData,
  lineageFromMeta,
  lineageOfContext,
  lineageToBaggage,
  lineageToHeaders,
  lineageToMeta,
  parseLineage,
  parseRunPath,
  withLineage,
  type Lineage,
} from '../../src/lineage/index.js';
import { ValidationError } from '../../src/errors.js';

const idChar = fc.constantFrom(...'abcXYZ019._:@/+=-'.split(''));
const id = fc.array(idChar, { minLength: 1, maxLength: 12 }).map((a) => a.join(''));
const lineageArb: fc.Arbitrary<Lineage> = fc
  .record(
    {
      tenant: id,
      feature: id,
      runPath: fc.uniqueArray(id, { maxLength: MAX_RUN_DEPTH }),
    },
    { requiredKeys: ['runPath'] },
  )
  .map((l) => l as Lineage);

function invalid(f: () => unknown): ValidationError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).code).toBe('KS_INVALID_INPUT');
    return e as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('KS-1.6.1 the lineage crosses processes in every carrier unchanged', () => {
  it('round-trips through headers, baggage, MCP _meta and job data (fast-check)', () => {
    fc.assert(
      fc.property(lineageArb, (l) => {
        const want = parseLineage(l);
        // A lineage with nothing in it sends no header: it reads back as "no lineage".
        const empty = l.tenant === undefined && l.feature === undefined && l.runPath.length === 0;
        const viaHeaders = lineageFromHeaders(lineageToHeaders(l));
        const viaBaggage = lineageFromBaggage(lineageToBaggage(l, 'other=1;p=2'));
        const viaBoth = lineageFromHeaders(
          new Headers({ ...lineageToHeaders(l), baggage: lineageToBaggage(l) }),
        );
        if (empty) {
          expect(viaHeaders).toBeUndefined();
          expect(viaBaggage).toBeUndefined();
        } else {
          expect(viaHeaders).toEqual(want);
          expect(viaBaggage).toEqual(want);
          expect(viaBoth).toEqual(want);
        }
        expect(lineageFromMeta(JSON.parse(JSON.stringify(lineageToMeta(l, { k: 1 }))))).toEqual(
          want,
        );
        expect(lineageFromJobData(JSON.parse(JSON.stringify(withLineage({ n: 1 }, l))))).toEqual(
          want,
        );
        expect(parseRunPath(formatRunPath(l.runPath))).toEqual(l.runPath);
      }),
    );
  });

  it('uses the agreed wire names', () => {
    const l = { tenant: 'acme', feature: 'auto-reply', runPath: ['root', 'child'] };
    expect(lineageToHeaders(l)).toEqual({
      'x-killswitch-tenant': 'acme',
      'x-killswitch-feature': 'auto-reply',
      'x-killswitch-run-path': 'root,child',
    });
    expect(lineageToBaggage(l, 'userId=7')).toBe(
      'userId=7,killswitch.tenant=acme,killswitch.feature=auto-reply,killswitch.run_path=root%2Cchild',
    );
    expect(lineageToMeta(l)).toEqual({ 'dev.killswitch/lineage': l });
    expect(withLineage({ x: 1 }, l)).toEqual({ x: 1, lineage: l });
    expect(LineageWire.META_KEY).toBe('dev.killswitch/lineage');
  });

  it('replaces the killswitch members of existing baggage and keeps the others', () => {
    const b = lineageToBaggage(
      { runPath: ['b'] },
      'a=1, killswitch.run_path=old;x, killswitch.tenant=t',
    );
    expect(b).toBe('a=1,killswitch.run_path=b');
    expect(lineageFromBaggage(b)).toEqual({ runPath: ['b'] });
  });

  it('reads Node-style header records case-insensitively, and returns undefined without any', () => {
    expect(
      lineageFromHeaders({
        'X-Killswitch-Run-Path': 'r1,r2',
        host: 'x',
        'x-killswitch-tenant': 't',
      }),
    ).toEqual({ tenant: 't', runPath: ['r1', 'r2'] });
    expect(lineageFromHeaders({ host: 'x', baggage: 'a=1' })).toBeUndefined();
    expect(lineageFromMeta(undefined)).toBeUndefined();
    expect(lineageFromMeta({ progressToken: 1 })).toBeUndefined();
    expect(lineageFromJobData({ n: 1 })).toBeUndefined();
  });

  it('gives the evaluation context: runId is the last element', () => {
    expect(lineageContext({ tenant: 't', runPath: ['a', 'b'] })).toEqual({
      tenant: 't',
      runId: 'b',
      runPath: ['a', 'b'],
    });
    expect(lineageContext({ runPath: [] })).toEqual({});
    expect(lineageOfContext({ runId: 'r' })).toEqual({ runPath: ['r'] });
    expect(lineageOfContext({ runId: 'b', runPath: ['a', 'b'] })).toEqual({ runPath: ['a', 'b'] });
    invalid(() => lineageOfContext({ runId: 'c', runPath: ['a', 'b'] }));
    invalid(() => lineageOfContext({ runPath: ['a'] }));
  });
});

describe('KS-1.6.2 malformed lineage is refused with a clear error', () => {
  const deep = Array.from({ length: MAX_RUN_DEPTH + 1 }, (_, i) => `r${i}`);

  it('refuses a path deeper than the bound in every carrier', () => {
    expect(invalid(() => parseLineage({ runPath: deep })).message).toMatch(
      /at most 64 run ids deep/,
    );
    expect(invalid(() => parseRunPath(deep.join(','))).message).toMatch(/at most 64 run ids deep/);
    invalid(() => lineageFromHeaders({ 'x-killswitch-run-path': deep.join(',') }));
    invalid(() => lineageFromBaggage(`killswitch.run_path=${deep.join('%2C')}`));
    invalid(() => lineageFromMeta({ 'dev.killswitch/lineage': { runPath: deep } }));
    invalid(() => lineageFromJobData({ lineage: { runPath: deep } }));
    expect(parseLineage({ runPath: deep.slice(1) }).runPath).toHaveLength(MAX_RUN_DEPTH);
  });

  it('refuses ids that are empty, too long, outside the id alphabet or with control characters', () => {
    const long = 'x'.repeat(MAX_LINEAGE_ID_LENGTH + 1);
    for (const bad of ['', long, 'a b', 'a\u0000', 'tab\t', 'café', 'a,b', 'a\nb']) {
      invalid(() => parseLineage({ runPath: [bad] }));
      invalid(() => parseLineage({ tenant: bad, runPath: [] }));
    }
    expect(invalid(() => parseLineage({ runPath: ['ok', 'a\u0007'] })).message).toMatch(
      /runPath\.1: must use only letters, digits/,
    );
    expect(invalid(() => parseLineage({ runPath: [long] })).message).toMatch(/at most 128/);
  });

  it('refuses empty elements, white space and repeated ids in a comma-joined path', () => {
    invalid(() => parseRunPath('a,,b'));
    invalid(() => parseRunPath('a, b'));
    invalid(() => parseRunPath('a,'));
    expect(invalid(() => parseRunPath('a,b,a')).message).toMatch(/appears twice/);
    expect(parseRunPath('')).toEqual([]);
  });

  it('refuses unknown keys, wrong types and oversized text', () => {
    invalid(() => parseLineage({ runPath: ['a'], runId: 'a' }));
    invalid(() => parseLineage({ runPath: 'a' }));
    invalid(() => parseLineage({}));
    invalid(() => parseLineage(null));
    invalid(() => lineageFromMeta('x'));
    invalid(() => parseRunPath('a'.repeat(10_000)));
    invalid(() => lineageFromBaggage(`a=${'x'.repeat(10_000)}`));
  });
});

describe('KS-1.6.3 ambiguous lineage carriers are refused, never guessed around', () => {
  it('refuses repeated headers, and headers that disagree with baggage', () => {
    expect(
      invalid(() => lineageFromHeaders({ 'x-killswitch-run-path': ['a', 'b'] })).message,
    ).toMatch(/appears 2 times/);
    // Node joins a repeated unknown header with ", ": the space makes it fail, not a longer path.
    invalid(() => lineageFromHeaders({ 'x-killswitch-run-path': 'root, evil' }));
    expect(
      invalid(() =>
        lineageFromHeaders({
          'x-killswitch-run-path': 'a,b',
          baggage: 'killswitch.run_path=a',
        }),
      ).message,
    ).toMatch(/disagrees/);
  });

  it('refuses a baggage run path whose comma was not encoded, instead of reading a shorter path', () => {
    // Read naively this would be run path [root] (the parent!) and a member "child".
    expect(invalid(() => lineageFromBaggage('killswitch.run_path=root,child')).message).toMatch(
      /not key=value/,
    );
    invalid(() => lineageFromBaggage('killswitch.tenant=a,killswitch.tenant=b'));
    invalid(() => lineageFromBaggage('killswitch.tenant=%E0%A4%A'));
    invalid(() => lineageFromBaggage('killswitch.tenant=a%20b'));
  });
});
