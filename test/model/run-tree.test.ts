import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OpenFeature, type Client, type EvaluationContext } from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { KillSwitchProvider } from '../../src/index.js';
import {
  KillState,
  levelOf,
  selectorMatches,
  type FlipRecord,
  type KillContext,
  type Selector,
} from '../../src/model/index.js';
import { runPathProblem } from '../../src/model/selector.js';
import { MAX_RUN_DEPTH } from '../../src/lineage/index.js';

afterAll(async () => {
  await OpenFeature.close();
});

const quiet = { warn: () => {}, error: () => {} };
const LEVELS = ['capability', 'run', 'tenant', 'feature', 'global'] as const;

async function logOf(flips: readonly { action: 'halt' | 'resume'; selector: Selector }[]) {
  const store = new MemoryFlipLogStore();
  for (const f of flips) await store.append({ ...f, actor: 't', reason: 'r' });
  return store.read();
}

/** A random run tree: node i's parent is a node before it, or none (a root). */
const arbTree = fc
  .array(fc.option(fc.nat(), { nil: undefined }), { minLength: 1, maxLength: 24 })
  .map((seeds) => seeds.map((s, i) => (i === 0 || s === undefined ? -1 : s % i)));

/** The reference: is run X the context's run or one of its ancestors, by walking parent links. */
function isSelfOrAncestor(parents: readonly number[], node: number, x: string): boolean {
  for (let n = node; n >= 0; n = parents[n]!) if (`n${n}` === x) return true;
  return false;
}

function pathOf(parents: readonly number[], node: number): string[] {
  const out: string[] = [];
  for (let n = node; n >= 0; n = parents[n]!) out.unshift(`n${n}`);
  return out;
}

/** Plain reference of a decision: a list of active halts scanned linearly, no index. */
function referenceMatches(
  active: readonly FlipRecord[],
  parents: readonly number[],
  node: number | undefined,
  attrs: { tenant?: string; feature?: string; capability?: string },
): FlipRecord[] {
  return active
    .filter((h) => {
      const s = h.selector;
      if (s.tenant !== undefined && s.tenant !== attrs.tenant) return false;
      if (s.feature !== undefined && s.feature !== attrs.feature) return false;
      if (s.capability !== undefined && s.capability !== attrs.capability) return false;
      if (
        s.runId !== undefined &&
        (node === undefined || !isSelfOrAncestor(parents, node, s.runId))
      )
        return false;
      return true;
    })
    .sort((a, b) => a.seq - b.seq);
}

function activeHalts(records: readonly FlipRecord[]): FlipRecord[] {
  let active: FlipRecord[] = [];
  for (const r of records) {
    active = active.filter((h) => JSON.stringify(h.selector) !== JSON.stringify(r.selector));
    if (r.action === 'halt') active.push(r);
  }
  return active;
}

describe('KS-1.5.2 KS-1.5.3 a run halt matches the run and every descendant, like a plain reference', () => {
  it('over random trees, halts and contexts, every decision equals the reference (fast-check)', async () => {
    const values = ['a', 'b'];
    await fc.assert(
      fc.asyncProperty(
        arbTree.chain((parents) =>
          fc.record({
            parents: fc.constant(parents),
            flips: fc.array(
              fc.record({
                action: fc.constantFrom('halt' as const, 'halt' as const, 'resume' as const),
                selector: fc.record(
                  {
                    tenant: fc.constantFrom(...values),
                    feature: fc.constantFrom(...values),
                    runId: fc.integer({ min: 0, max: parents.length }).map((i) => `n${i}`),
                    capability: fc.constantFrom(...values),
                  },
                  { requiredKeys: [] },
                ),
              }),
              { maxLength: 30 },
            ),
            contexts: fc.array(
              fc.record(
                {
                  node: fc.integer({ min: 0, max: parents.length - 1 }),
                  tenant: fc.constantFrom(...values),
                  feature: fc.constantFrom(...values),
                  capability: fc.constantFrom(...values),
                  withPath: fc.boolean(),
                },
                { requiredKeys: ['withPath'] },
              ),
              { minLength: 1, maxLength: 12 },
            ),
          }),
        ),
        async ({ parents, flips, contexts }) => {
          const records = await logOf(flips);
          const state = KillState.fold(records);
          const active = activeHalts(records);
          for (const c of contexts) {
            const path = c.node === undefined ? undefined : pathOf(parents, c.node);
            // A root run may leave runPath out (the path of one); a child must carry its path.
            const sendPath = path !== undefined && (c.withPath || path.length > 1);
            const ctx: KillContext = {
              ...(c.tenant !== undefined ? { tenant: c.tenant } : {}),
              ...(c.feature !== undefined ? { feature: c.feature } : {}),
              ...(c.capability !== undefined ? { capability: c.capability } : {}),
              ...(path !== undefined ? { runId: path[path.length - 1]! } : {}),
              ...(sendPath ? { runPath: path } : {}),
            };
            const want = referenceMatches(active, parents, c.node, c);
            expect(state.match(ctx)?.seq).toBe(want[0]?.seq);
            expect(state.matchAll(ctx).map((r) => r.seq)).toEqual(want.map((r) => r.seq));
            for (const level of LEVELS) {
              expect(state.match(ctx, level)?.seq).toBe(
                want.find((r) => levelOf(r.selector) === level)?.seq,
              );
            }
            for (const h of active) {
              expect(selectorMatches(h.selector, ctx)).toBe(want.includes(h));
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a frozen run path (as a run scope hands out) answers the same after every flip: the per-path cache never goes stale (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        arbTree.chain((parents) =>
          fc.record({
            parents: fc.constant(parents),
            flips: fc.array(
              fc.record({
                action: fc.constantFrom('halt' as const, 'resume' as const),
                selector: fc.record(
                  { runId: fc.integer({ min: 0, max: parents.length - 1 }).map((i) => `n${i}`) },
                  { requiredKeys: ['runId'] },
                ),
              }),
              { maxLength: 25 },
            ),
          }),
        ),
        async ({ parents, flips }) => {
          const records = await logOf(flips);
          const frozen = parents.map((_, node) => Object.freeze(pathOf(parents, node)));
          const state = KillState.empty();
          const check = (applied: readonly FlipRecord[]) => {
            const active = activeHalts(applied);
            frozen.forEach((path, node) => {
              const ctx = { runId: path[path.length - 1]!, runPath: path };
              const want = referenceMatches(active, parents, node, {});
              expect(state.match(ctx)?.seq).toBe(want[0]?.seq);
              expect(state.match(ctx, 'run')?.seq).toBe(want[0]?.seq);
            });
          };
          check([]);
          for (let i = 0; i < records.length; i++) {
            state.apply(records[i]!);
            check(records.slice(0, i + 1));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('halting a run stops its descendants, not its ancestors or siblings; resume lifts exactly it', async () => {
    const records = await logOf([
      { action: 'halt', selector: { runId: 'child' } },
      { action: 'halt', selector: { runId: 'root', tenant: 'acme' } },
    ]);
    const s = KillState.fold(records);
    const at = (...path: string[]) => ({ runId: path[path.length - 1]!, runPath: path });
    expect(s.match(at('root', 'child', 'grandchild'))?.seq).toBe(1);
    expect(s.match(at('root', 'child'))?.seq).toBe(1);
    expect(s.match(at('root'))).toBeUndefined();
    expect(s.match(at('root', 'sibling'))).toBeUndefined();
    // The composite halt {runId root, tenant acme} reaches descendants of tenant acme only.
    expect(s.match({ ...at('root', 'sibling'), tenant: 'acme' })?.seq).toBe(2);
    expect(s.match({ ...at('root', 'child', 'g'), tenant: 'acme' })?.seq).toBe(1);
    expect(s.matchAll({ ...at('root', 'child', 'g'), tenant: 'acme' }).map((r) => r.seq)).toEqual([
      1, 2,
    ]);
    const more = await logOf([
      { action: 'halt', selector: { runId: 'child' } },
      { action: 'resume', selector: { runId: 'root' } },
    ]);
    const t = KillState.fold(more);
    // Resuming {runId: root} lifts nothing: the halt on child has another selector.
    expect(t.match(at('root', 'child', 'g'))?.seq).toBe(1);
  });
});

describe('KS-1.5.4 a malformed or too deep run path fails closed with a clear reason', () => {
  const deep = Array.from({ length: MAX_RUN_DEPTH + 1 }, (_, i) => `r${i}`);
  const bad: [string, unknown, unknown, RegExp][] = [
    ['not an array', 'root,child', 'child', /not an array/],
    ['empty', [], undefined, /empty/],
    ['too deep', deep, deep[deep.length - 1], /65 run ids deep \(at most 64\)/],
    ['a non-string element', ['root', 7], undefined, /runPath\[1\] is not a run id/],
    ['a control character', ['root', 'a\u0000'], 'a\u0000', /runPath\[1\] is not a run id/],
    ['an id too long', ['x'.repeat(129)], 'x'.repeat(129), /runPath\[0\] is not a run id/],
    ['not ending with runId', ['root', 'child'], 'other', /does not end with runId/],
  ];

  it.each(bad)(
    '%s: the provider answers fail-closed ERROR naming the problem',
    async (_n, runPath, runId, why) => {
      const store = new MemoryFlipLogStore();
      const provider = KillSwitchProvider.fromStore(store, { logger: quiet });
      const domain = `run-tree-${Math.random()}`;
      await OpenFeature.setProviderAndWait(domain, provider);
      const client: Client = OpenFeature.getClient(domain);
      for (let i = 0; i < 100 && provider.failure !== undefined; i++) {
        await new Promise((r) => setImmediate(r));
      }
      expect(provider.failure).toBeUndefined();
      const ctx = {
        runPath,
        ...(runId !== undefined ? { runId } : {}),
      } as unknown as EvaluationContext;
      const d = await client.getBooleanDetails('kill-switch', false, ctx);
      expect(d).toMatchObject({ value: true, variant: 'fail-closed', reason: 'ERROR' });
      expect(d.errorCode).toBeUndefined();
      expect(String(d.flagMetadata.failClosed)).toMatch(why);
      expect(runPathProblem(ctx)).toMatch(why);
      // The same path one level shallower is answered normally.
      if (_n === 'too deep') {
        const ok = await client.getBooleanDetails('kill-switch', true, {
          runPath: deep.slice(1),
          runId: deep[deep.length - 1]!,
        });
        expect(ok).toMatchObject({ value: false, variant: 'running' });
      }
      await store.close();
    },
  );

  it('KillState.match refuses to answer on a path it cannot read (KS_INVALID_INPUT)', () => {
    const s = KillState.empty();
    for (const rp of ['a', [], deep] as unknown[]) {
      expect(() => s.match({ runPath: rp } as KillContext)).toThrow(
        expect.objectContaining({ code: 'KS_INVALID_INPUT' }),
      );
    }
    expect(() => s.match({ runId: 'b', runPath: ['a'] })).toThrow(/does not end with runId/);
  });
});

describe('KS-1.5.2 the flag metadata names the run whose halt matched', () => {
  it('an ancestor halt names the ancestor; kill-switch.run answers for descendants', async () => {
    const store = new MemoryFlipLogStore();
    await store.append({
      action: 'halt',
      selector: { runId: 'root' },
      actor: 'op',
      reason: 'loop',
    });
    const provider = KillSwitchProvider.fromStore(store, { logger: quiet });
    const domain = `run-tree-meta-${Math.random()}`;
    await OpenFeature.setProviderAndWait(domain, provider);
    const client = OpenFeature.getClient(domain);
    for (let i = 0; i < 100 && provider.failure !== undefined; i++) {
      await new Promise((r) => setImmediate(r));
    }
    const ctx = { runId: 'c2', runPath: ['root', 'c1', 'c2'] };
    const d = await client.getBooleanDetails('kill-switch', false, ctx);
    expect(d).toMatchObject({ value: true, variant: 'halted' });
    expect(d.flagMetadata).toMatchObject({ seq: 1, haltedRunId: 'root', level: 'run' });
    expect((await client.getBooleanDetails('kill-switch.run', false, ctx)).value).toBe(true);
    expect((await client.getBooleanDetails('kill-switch.tenant', true, ctx)).value).toBe(false);
    expect(
      (await client.getBooleanDetails('kill-switch', true, { runId: 'x', runPath: ['other', 'x'] }))
        .value,
    ).toBe(false);
    await store.close();
  });
});
