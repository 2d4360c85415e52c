import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { KILL_FLAG_KEYS } from '../../src/model/flags.js';
import { KillState } from '../../src/model/kill-state.js';
import type { Level } from '../../src/model/selector.js';
import { OFREP_PATHS } from '../../src/ofrep/ofrep-routes.js';
import { waitFor } from '../backends/helpers.js';
import { bearer, startTestServer, TOKENS } from '../server/helpers.js';

const values = ['a', 'b'];
const arbSelector = fc.record(
  {
    tenant: fc.constantFrom(...values),
    feature: fc.constantFrom(...values),
    runId: fc.constantFrom(...values),
    capability: fc.constantFrom(...values),
  },
  { requiredKeys: [] },
);
const arbFlip = fc.record({
  action: fc.constantFrom('halt' as const, 'resume' as const),
  selector: arbSelector,
});

interface Answer {
  key: string;
  value: boolean;
  metadata: Record<string, unknown>;
}

describe('KS-12.1.1 KS-12.1.2 OFREP answers like the fold of the log (property, over HTTP)', () => {
  it('every kill flag, for every context, single and bulk', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbFlip, { maxLength: 20 }),
        fc.array(arbSelector, { minLength: 1, maxLength: 4 }),
        async (flips, ctxs) => {
          const store = new MemoryFlipLogStore();
          const { cp } = await startTestServer({ store });
          try {
            for (const f of flips) await store.append({ ...f, actor: 't', reason: 'r' });
            await waitFor(() => cp.snapshot().seq === flips.length, 5000, 'the control plane');
            const oracle = KillState.fold(await store.read());
            for (const ctx of ctxs) {
              const res = await fetch(`${cp.url}${OFREP_PATHS.bulk}`, {
                method: 'POST',
                headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json' },
                body: JSON.stringify({ context: ctx }),
              });
              const bulk = ((await res.json()) as { flags: Answer[] }).flags;
              for (const key of KILL_FLAG_KEYS) {
                const level = key === 'kill-switch' ? undefined : (key.slice(12) as Level);
                const expected = oracle.match(ctx, level);
                const single = (await (
                  await fetch(`${cp.url}/ofrep/v1/evaluate/flags/${key}`, {
                    method: 'POST',
                    headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json' },
                    body: JSON.stringify({ context: ctx }),
                  })
                ).json()) as Answer;
                for (const a of [single, bulk.find((f) => f.key === key)!]) {
                  expect(a.value).toBe(expected !== undefined);
                  expect(a.metadata.seq).toBe(expected?.seq);
                  expect(a.metadata.stateSeq).toBe(oracle.seq);
                }
              }
            }
          } finally {
            await cp.close();
          }
        },
      ),
      { numRuns: 20 },
    );
  }, 120_000);
});
