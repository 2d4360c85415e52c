import fc from 'fast-check';
import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import {
  MemorySideEffectLedger,
  type LedgerEvent,
  type SideEffectLedger,
} from '../../src/ledger/index.js';
import type { KillContext, Selector } from '../../src/model/selector.js';
import { inMemoryBackend } from './backends.js';

afterAll(async () => {
  await OpenFeature.close();
});

const tick = () => new Promise<void>((r) => setImmediate(r));

const arbSelector: fc.Arbitrary<Selector> = fc.record(
  {
    tenant: fc.constantFrom('a', 'b'),
    runId: fc.constantFrom('r1', 'r2'),
    capability: fc.constantFrom('x', 'y'),
  },
  { requiredKeys: [] },
);
const arbCtx: fc.Arbitrary<KillContext> = fc.record({
  tenant: fc.constantFrom('a', 'b'),
  runId: fc.constantFrom('r1', 'r2'),
  capability: fc.constantFrom('x', 'y'),
});
type Behaviour = 'quick' | 'fail' | 'ignore' | 'honour';
const arbCmd = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('halt' as const), sel: arbSelector }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('resume' as const), sel: arbSelector }), weight: 2 },
  {
    arbitrary: fc.record({
      t: fc.constant('effect' as const),
      ctx: arbCtx,
      behaviour: fc.constantFrom<Behaviour>('quick', 'fail', 'ignore', 'honour'),
      bodyTicks: fc.nat({ max: 4 }),
      intentTicks: fc.nat({ max: 3 }),
    }),
    weight: 4,
  },
  { arbitrary: fc.constant({ t: 'tick' as const }), weight: 3 },
);

/** The memory ledger, with the intent write of each key delayed by some macrotasks (like a disk). */
class SlowIntentLedger implements SideEffectLedger {
  readonly inner = new MemorySideEffectLedger();
  readonly delays = new Map<string, number>();
  async append(e: LedgerEvent): Promise<void> {
    if (e.status === 'intent') for (let i = 0; i < (this.delays.get(e.key) ?? 0); i++) await tick();
    return this.inner.append(e);
  }
  entries(f?: Parameters<SideEffectLedger['entries']>[0]) {
    return this.inner.entries(f);
  }
  close() {
    return this.inner.close();
  }
}

const SETTLED_PATTERNS = new Set([
  'intent,landed',
  'intent,failed',
  'intent,aborted,landed-after-halt',
  'intent,aborted,aborted',
]);
const REFUSED_PATTERNS = new Set(['refused', 'intent,refused']);

describe('KS-4.2.8 for any interleaving of halts, resumes and effects', () => {
  it('no effect halted at dispatch time is dispatched; each dispatched effect has one intent and one outcome', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(arbCmd, { minLength: 1, maxLength: 40 }), async (cmds) => {
        const b = await inMemoryBackend();
        const ledger = new SlowIntentLedger();
        const guard = new EffectGuard({
          client: b.client,
          ledger,
          logger: { warn: () => undefined },
        });
        const violations: string[] = [];
        const bodyCalls = new Map<string, number>();
        const outcomes = new Map<string, 'resolved' | string>();
        const runs: Promise<void>[] = [];
        let n = 0;
        for (const c of cmds) {
          // Flips arrive as their own macrotask, as a stream message or a store append would.
          if (c.t === 'tick') await tick();
          else if (c.t === 'halt' || c.t === 'resume') {
            await tick();
            if (c.t === 'halt') void b.halt(c.sel);
            else void b.resume(c.sel);
          } else {
            const step = `s${n++}`;
            const key = `${c.ctx.runId}/${step}`;
            ledger.delays.set(key, c.intentTicks);
            const body = async (signal: AbortSignal) => {
              bodyCalls.set(key, (bodyCalls.get(key) ?? 0) + 1);
              if (b.halted(c.ctx)) violations.push(`${key} dispatched while halted`);
              if (c.behaviour === 'quick') return 'ok';
              if (c.behaviour === 'fail') throw new Error('boom');
              for (let i = 0; i < c.bodyTicks; i++) {
                await tick();
                if (c.behaviour === 'honour' && signal.aborted) throw signal.reason;
              }
              return 'ok';
            };
            runs.push(
              guard
                .run(
                  { context: c.ctx, runId: c.ctx.runId!, step, capability: c.ctx.capability! },
                  body,
                )
                .then(
                  () => void outcomes.set(key, 'resolved'),
                  (e: unknown) =>
                    void outcomes.set(key, (e as { code?: string }).code ?? 'body-error'),
                ),
            );
          }
        }
        await Promise.all(runs);
        for (let i = 0; i < 10; i++) await tick(); // let aborted bodies finish
        await guard.close();
        expect(violations).toEqual([]);
        const entries = await ledger.inner.entries();
        expect(entries).toHaveLength(n);
        for (const e of entries) {
          const pattern = e.history.map((h) => h.status).join(',');
          const calls = bodyCalls.get(e.key) ?? 0;
          expect(calls).toBeLessThanOrEqual(1);
          if (calls === 1) {
            expect(SETTLED_PATTERNS, `${e.key}: ${pattern}`).toContain(pattern);
            expect(e.attempts).toBe(1);
            const out = outcomes.get(e.key);
            if (e.status === 'landed') expect(out).toBe('resolved');
            else if (e.status === 'failed') expect(out).toBe('body-error');
            else expect(out).toBe('KS_ABORTED');
          } else {
            expect(REFUSED_PATTERNS, `${e.key}: ${pattern}`).toContain(pattern);
            expect(outcomes.get(e.key)).toBe('KS_HALTED');
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});
