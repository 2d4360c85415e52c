import { describe, expect, it, vi } from 'vitest';
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

/** A state with `runHalts` run halts and two halts of other shapes (three shapes in use). */
async function stateWithRunHalts(runHalts: number): Promise<KillState> {
  const store = new MemoryFlipLogStore();
  const halt = (selector: Record<string, string>) =>
    store.append({ actor: 't', action: 'halt', selector, reason: 'probe count' });
  for (let i = 0; i < runHalts; i++) await halt({ runId: `run-${i}` });
  await halt({ tenant: 't-1' });
  await halt({ capability: 'c-1', tenant: 't-2' });
  const state = KillState.fold(await store.read());
  await store.close();
  return state;
}

/** The map probes one lookup makes (every Map#get while it runs: match is synchronous). */
function probesOf(state: KillState, ctx: KillContext): number {
  const spy = vi.spyOn(Map.prototype, 'get');
  try {
    state.match(ctx);
    return spy.mock.calls.length;
  } finally {
    spy.mockRestore();
  }
}

describe('KS-1.4.2 a lookup costs the same with 10 or 100,000 active halts', () => {
  it(
    'makes the same map probes, at most one per selector shape in use, whatever the number of halts',
    { timeout: 60_000 },
    async () => {
      const small = await stateWithRunHalts(10);
      const large = await stateWithRunHalts(100_000);
      expect(large.size).toBe(100_002);
      const contexts: KillContext[] = [
        { runId: 'run-5' },
        { runId: 'run-99999', tenant: 't-2', capability: 'c-1' },
        { runId: 'not-halted', tenant: 'other', capability: 'c-1', feature: 'f' },
        { tenant: 't-1' },
      ];
      for (const ctx of contexts) {
        const n = probesOf(small, ctx);
        expect(n).toBeGreaterThan(0);
        expect(n).toBeLessThanOrEqual(3);
        expect(probesOf(large, ctx), JSON.stringify(ctx)).toBe(n);
      }
      // And the large state answers: the probes found the halts.
      expect(large.match({ runId: 'run-99999' })?.selector).toEqual({ runId: 'run-99999' });
      expect(large.match({ runId: 'not-halted' })).toBeUndefined();
    },
  );
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
