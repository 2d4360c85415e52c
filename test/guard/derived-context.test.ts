import { OpenFeature, type Client } from '@openfeature/server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { HaltedError, ValidationError } from '../../src/errors.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/memory-side-effect-ledger.js';
import type { FlipInput } from '../../src/model/flip-record.js';
import type { KillContext } from '../../src/model/selector.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';

let domainSeq = 0;

async function setup(): Promise<{ guard: EffectGuard; store: MemoryFlipLogStore; client: Client }> {
  const store = new MemoryFlipLogStore();
  const provider = KillSwitchProvider.fromStore(store);
  const domain = `derived-context-${++domainSeq}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  await provider.waitUntilFresh();
  const client = OpenFeature.getClient(domain);
  return {
    guard: new EffectGuard({ client, ledger: new MemorySideEffectLedger() }),
    store,
    client,
  };
}

function halt(selector: FlipInput['selector']): FlipInput {
  return { actor: 'oncall', action: 'halt', selector, reason: 'incident 7' };
}

afterEach(async () => {
  await OpenFeature.clearProviders();
});

const ok = async (): Promise<string> => 'done';

/**
 * The guard derives an effect's evaluated context once per frozen context (an adapter run's) and
 * capability, and reuses it for the run's later effects (issue 16 hot path). These pin what the
 * reuse must never change: each effect is still evaluated against what it names now.
 */
describe('KS-4.9.2 the context the guard evaluates, derived once per frozen run context', () => {
  it('a frozen context reused by many effects: a halt of one capability refuses only it', async () => {
    const { guard, store } = await setup();
    const ctx: KillContext = Object.freeze({
      tenant: 'acme',
      runId: 'run-1',
      runPath: Object.freeze(['run-1']) as unknown as string[],
    });
    const effect = (step: string, capability: string) => ({
      context: ctx,
      runId: 'run-1',
      step,
      capability,
    });
    await expect(guard.run(effect('a1', 'email.send'), ok)).resolves.toBe('done');
    await expect(guard.run(effect('b1', 'payments.refund'), ok)).resolves.toBe('done');
    await store.append(halt({ capability: 'payments.refund' }));
    // The flip reached the provider; the same context and capability as before now refuses.
    await expect(guard.run(effect('b2', 'payments.refund'), ok)).rejects.toBeInstanceOf(
      HaltedError,
    );
    await expect(guard.run(effect('a2', 'email.send'), ok)).resolves.toBe('done');
    await store.append(halt({ tenant: 'acme' }));
    await expect(guard.run(effect('a3', 'email.send'), ok)).rejects.toBeInstanceOf(HaltedError);
    await guard.close();
  });

  it('a context that is not frozen is read again for every effect', async () => {
    const { guard, store } = await setup();
    await store.append(halt({ tenant: 'globex' }));
    const path = Object.freeze(['run-2']) as unknown as string[];
    const ctx: { tenant: string; runId: string; runPath: string[] } = {
      tenant: 'acme',
      runId: 'run-2',
      runPath: path,
    };
    const effect = (step: string) => ({ context: ctx, runId: 'run-2', step, capability: 'x' });
    await expect(guard.run(effect('s1'), ok)).resolves.toBe('done');
    await expect(guard.run(effect('s2'), ok)).resolves.toBe('done');
    ctx.tenant = 'globex';
    await expect(guard.run(effect('s3'), ok)).rejects.toBeInstanceOf(HaltedError);
    await guard.close();
  });

  it('a run path changed in place after earlier effects is evaluated as it is now', async () => {
    const { guard, store } = await setup();
    await store.append(halt({ runId: 'halted-parent' }));
    const path = ['run-3'];
    const ctx: KillContext = Object.freeze({ runId: 'run-3', runPath: path });
    const effect = (step: string) => ({ context: ctx, runId: 'run-3', step, capability: 'x' });
    await expect(guard.run(effect('s1'), ok)).resolves.toBe('done');
    await expect(guard.run(effect('s2'), ok)).resolves.toBe('done');
    path.unshift('halted-parent');
    await expect(guard.run(effect('s3'), ok)).rejects.toBeInstanceOf(HaltedError);
    await guard.close();
  });

  it('the effect is still validated against the reused context (another run id is refused)', async () => {
    const { guard } = await setup();
    const ctx: KillContext = Object.freeze({
      runId: 'run-4',
      runPath: Object.freeze(['run-4']) as unknown as string[],
    });
    await expect(
      guard.run({ context: ctx, runId: 'run-4', step: 's1', capability: 'x' }, ok),
    ).resolves.toBe('done');
    await expect(
      guard.run({ context: ctx, runId: 'other', step: 's2', capability: 'x' }, ok),
    ).rejects.toBeInstanceOf(ValidationError);
    await expect(
      guard.run({ context: ctx, runId: 'run-4', step: '', capability: 'x' }, ok),
    ).rejects.toBeInstanceOf(ValidationError);
    await guard.close();
  });

  it('records each effect with the context it was evaluated under', async () => {
    const { client } = await setup();
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client, ledger });
    const ctx: KillContext = Object.freeze({
      tenant: 'acme',
      runId: 'run-5',
      runPath: Object.freeze(['root', 'run-5']) as unknown as string[],
    });
    for (const [step, capability] of [
      ['s1', 'email.send'],
      ['s2', 'crm.update'],
      ['s3', 'email.send'],
    ] as const)
      await guard.run({ context: ctx, runId: 'run-5', step, capability }, ok);
    const recorded = (await ledger.entries({ runId: 'run-5' })).map((e) => e.last.context);
    expect(recorded).toEqual([
      { tenant: 'acme', runId: 'run-5', capability: 'email.send', runPath: ['root', 'run-5'] },
      { tenant: 'acme', runId: 'run-5', capability: 'crm.update', runPath: ['root', 'run-5'] },
      { tenant: 'acme', runId: 'run-5', capability: 'email.send', runPath: ['root', 'run-5'] },
    ]);
    await guard.close();
  });
});
