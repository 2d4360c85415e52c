import {
  InMemoryProvider,
  MultiProvider,
  OpenFeature,
  type EvaluationContext,
} from '@openfeature/server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { EffectGuard, FailClosedKillStrategy, HaltedError } from '../../src/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { lineageContext } from '../../src/lineage/index.js';

afterAll(async () => {
  await OpenFeature.close();
});

/**
 * A backend's own rule on the array attribute, written as a team would write it in their flag
 * system (LaunchDarkly: `runPath` "is one of" [...]; flagd: `{"in": [X, {"var": "runPath"}]}`):
 * it knows nothing of this project's model.
 */
function killFlagsTargetingRuns(haltedRuns: readonly string[]) {
  return {
    'kill-switch': {
      variants: { on: true, off: false },
      defaultVariant: 'off',
      disabled: false,
      contextEvaluator: (ctx: EvaluationContext) => {
        const path = ctx.runPath;
        return Array.isArray(path) && path.some((id) => haltedRuns.includes(String(id)))
          ? 'on'
          : 'off';
      },
    },
  };
}

describe('KS-1.5.5 runPath is an ordinary array attribute: another backend can target it', () => {
  it('the guard passes runPath through a MultiProvider to an InMemoryProvider rule: a halted ancestor refuses a grandchild, a sibling tree runs', async () => {
    const domain = `run-tree-mp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const inMemory = new InMemoryProvider(killFlagsTargetingRuns(['parent']));
    await OpenFeature.setProviderAndWait(
      domain,
      new MultiProvider([{ provider: inMemory, name: 'flags' }], new FailClosedKillStrategy()),
    );
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({
      client: OpenFeature.getClient(domain),
      ledger,
      logger: { warn: () => {} },
    });
    const grandchild = lineageContext({ tenant: 'acme', runPath: ['parent', 'c1', 'g1'] });
    let sent = 0;
    await expect(
      guard.run(
        { context: grandchild, runId: 'g1', step: 's1', capability: 'email.send' },
        async () => {
          sent++;
        },
      ),
    ).rejects.toBeInstanceOf(HaltedError);
    const sibling = lineageContext({ tenant: 'acme', runPath: ['other', 'c1b'] });
    await guard.run(
      { context: sibling, runId: 'c1b', step: 's1', capability: 'email.send' },
      async () => {
        sent++;
      },
    );
    expect(sent).toBe(1);
    // The ledger keeps the run path of each effect (a report on a run covers its tree).
    const entries = await ledger.entries();
    expect(entries.map((e) => e.context.runPath)).toEqual(
      expect.arrayContaining([
        ['parent', 'c1', 'g1'],
        ['other', 'c1b'],
      ]),
    );
    await guard.close();
  });
});
