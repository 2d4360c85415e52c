import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import {
  KillState,
  selectorMatches,
  selectorEquals,
  parseSelector,
  levelOf,
  type FlipRecord,
  type KillContext,
  type Selector,
} from '../../src/model/index.js';

const values = ['a', 'b', 'c'];
const arbSelector: fc.Arbitrary<Selector> = fc
  .record(
    {
      tenant: fc.constantFrom(...values),
      feature: fc.constantFrom(...values),
      runId: fc.constantFrom(...values),
      capability: fc.constantFrom(...values),
    },
    { requiredKeys: [] },
  )
  .map((s) => parseSelector(s));
const arbContext: fc.Arbitrary<KillContext> = arbSelector;
const arbFlip = fc.record({
  action: fc.constantFrom('halt' as const, 'resume' as const),
  selector: arbSelector,
});

/** The oracle: a list of active halts, scanned linearly. */
function naive(records: readonly FlipRecord[]): FlipRecord[] {
  let active: FlipRecord[] = [];
  for (const r of records) {
    active = active.filter((h) => !selectorEquals(h.selector, r.selector));
    if (r.action === 'halt') active.push(r);
  }
  return active;
}

async function logOf(flips: readonly { action: 'halt' | 'resume'; selector: Selector }[]) {
  const store = new MemoryFlipLogStore();
  for (const f of flips) await store.append({ ...f, actor: 't', reason: 'r' });
  return store.read();
}

describe('KS-1.3.1 any matching halt wins; KS-1.3.2 resume lifts exactly its selector', () => {
  it('the indexed fold answers like a linear scan of the active halts', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbFlip, { maxLength: 40 }),
        fc.array(arbContext, { minLength: 1, maxLength: 10 }),
        async (flips, ctxs) => {
          const records = await logOf(flips);
          const state = KillState.fold(records);
          const active = naive(records);
          expect(state.size).toBe(active.length);
          for (const ctx of ctxs) {
            const expected = active
              .filter((h) => selectorMatches(h.selector, ctx))
              .sort((a, b) => a.seq - b.seq)[0];
            expect(state.match(ctx)?.seq).toBe(expected?.seq);
            for (const level of ['capability', 'run', 'tenant', 'feature', 'global'] as const) {
              const el = active
                .filter((h) => levelOf(h.selector) === level && selectorMatches(h.selector, ctx))
                .sort((a, b) => a.seq - b.seq)[0];
              expect(state.match(ctx, level)?.seq).toBe(el?.seq);
            }
          }
        },
      ),
    );
  });
});

describe('KS-1.4.1 a snapshot plus the records after it folds to the same state', () => {
  it('holds at every cut point', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbFlip, { minLength: 1, maxLength: 30 }),
        fc.nat(),
        async (flips, cutSeed) => {
          const records = await logOf(flips);
          const cut = cutSeed % (records.length + 1);
          const partial = KillState.fold(records.slice(0, cut));
          const resumed = KillState.fromSnapshot(JSON.parse(JSON.stringify(partial.toSnapshot())));
          for (const r of records.slice(cut)) resumed.apply(r);
          expect(resumed.toSnapshot()).toEqual(KillState.fold(records).toSnapshot());
        },
      ),
    );
  });
});

describe('KS-1.4.3 folding refuses records out of order', () => {
  it('a gap is KS_SEQ_GAP and a broken prev is KS_LOG_CORRUPT', async () => {
    const records = await logOf([
      { action: 'halt', selector: {} },
      { action: 'resume', selector: {} },
    ]);
    const s = KillState.empty();
    expect(() => s.apply(records[1]!)).toThrow(expect.objectContaining({ code: 'KS_SEQ_GAP' }));
    s.apply(records[0]!);
    expect(() => s.apply({ ...records[1]!, prev: '1'.repeat(64) })).toThrow(
      expect.objectContaining({ code: 'KS_LOG_CORRUPT', seq: 2 }),
    );
  });
});
