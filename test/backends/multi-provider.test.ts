import { MultiProvider, OpenFeature, type Provider } from '@openfeature/server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { HaltedError } from '../../src/errors.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import { FailClosedKillStrategy } from '../../src/guard/fail-closed-kill-strategy.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillState } from '../../src/model/kill-state.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import { SourceStatus } from '../../src/source/flip-source.js';
import { ControlledFlipSource } from '../provider/controlled-flip-source.js';
import { bind, localLaunchDarkly, sleep, waitFor } from './helpers.js';
import { LdStreamServer } from '../fixtures/ld-stream-server.js';
import { cleanupsAfterEach } from '../fixtures/cleanups.js';

// The SDK's own strategies (FirstMatch, FirstSuccessful, Comparison) and their fail-open cases are
// measured in test/guard/multi-provider.test.ts (KS-4.6.1); this file combines the real providers.

const quiet = { warn: () => undefined, error: () => undefined };
const cleanups = cleanupsAfterEach();
afterAll(async () => {
  await OpenFeature.close();
});

const ctx = { tenant: 'acme', runId: 'r' };
function effect(step: string, tenant = 'acme'): GuardedEffect {
  return { context: { tenant }, runId: `run-${step}`, step, capability: 'email.send' };
}

async function combine(kill: Provider) {
  const ld = new LdStreamServer();
  await ld.start();
  cleanups.push(() => ld.stop());
  const multi = new MultiProvider(
    [
      { provider: kill, name: 'kill-switch' },
      { provider: localLaunchDarkly(ld.url), name: 'launchdarkly' },
    ],
    new FailClosedKillStrategy(),
  );
  const client = await bind(multi, 'multi');
  const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger(), logger: quiet });
  cleanups.push(() => guard.close());
  return { ld, client, guard };
}

async function ours() {
  const store = new MemoryFlipLogStore();
  await store.open();
  const provider = KillSwitchProvider.fromStore(store, { logger: quiet });
  const halt = (tenant: string) =>
    store.append({ action: 'halt', selector: { tenant }, actor: 't', reason: 'test halt' });
  return { store, provider, halt };
}

describe('KS-12.4.1 the guard over MultiProvider(KillSwitchProvider, LaunchDarkly) with FailClosedKillStrategy', () => {
  it('runs while both say running; a halt in either refuses, and ours names the flip', async () => {
    const k = await ours();
    const { ld, client, guard } = await combine(k.provider);
    await waitFor(() => k.provider.sourceStatus === 'open', 5000, 'our provider');
    await expect(guard.run(effect('a'), async () => 'sent')).resolves.toBe('sent');

    await k.halt('acme');
    const err = await guard.run(effect('b'), async () => 'sent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HaltedError);
    expect((err as HaltedError).flip).toMatchObject({ seq: 1, reason: 'test halt' });

    ld.halt({ tenant: 'beta' });
    await waitFor(async () => (await evaluateKill(client, { tenant: 'beta', runId: 'r' })).halted);
    await expect(guard.run(effect('c', 'beta'), async () => 'sent')).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
    await expect(guard.run(effect('d', 'gamma'), async () => 'sent')).resolves.toBe('sent');
  });

  it('a flip in either provider aborts an effect in flight (MultiProvider forwards change events)', async () => {
    const k = await ours();
    const { ld, guard } = await combine(k.provider);
    await waitFor(() => k.provider.sourceStatus === 'open', 5000, 'our provider');
    const inFlight = (step: string, tenant: string) => {
      let started!: () => void;
      const running = new Promise<void>((r) => (started = r));
      const result = guard
        .run(effect(step, tenant), (signal) => {
          started();
          return new Promise((_, reject) =>
            signal.addEventListener('abort', () => reject(signal.reason)),
          );
        })
        .catch((e: unknown) => e);
      return { running, result };
    };
    const a = inFlight('x', 'acme');
    await a.running;
    await k.halt('acme');
    expect(await a.result).toMatchObject({ code: 'KS_ABORTED' });
    const b = inFlight('y', 'beta');
    await b.running;
    ld.halt({ tenant: 'beta' });
    expect(await b.result).toMatchObject({ code: 'KS_ABORTED' });
  });

  it('our provider going STALE halts everything even though LaunchDarkly says running', async () => {
    const source = new ControlledFlipSource();
    const provider = new KillSwitchProvider({ source, logger: quiet });
    const { client, guard } = await combine(provider);
    source.open(KillState.empty().toSnapshot());
    expect((await evaluateKill(client, ctx)).halted).toBe(false);
    source.status(SourceStatus.STALE, 'lease ran out');
    await waitFor(async () => (await evaluateKill(client, ctx)).halted, 5000, 'stale');
    await expect(guard.run(effect('s'), async () => 'sent')).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
    source.status(SourceStatus.OPEN);
    await waitFor(async () => !(await evaluateKill(client, ctx)).halted, 5000, 'fresh again');
  });

  it("LaunchDarkly's stream dying is invisible: our halts still stop effects, its own halts no longer arrive", async () => {
    const k = await ours();
    const { ld, client, guard } = await combine(k.provider);
    await waitFor(() => k.provider.sourceStatus === 'open', 5000, 'our provider');
    await ld.stop();
    await sleep(200);
    ld.halt({ tenant: 'beta' }); // undeliverable: LaunchDarkly keeps serving "running" for beta
    expect((await evaluateKill(client, { tenant: 'beta', runId: 'r' })).halted).toBe(false);
    await expect(guard.run(effect('leak', 'beta'), async () => 'sent')).resolves.toBe('sent');
    await k.halt('acme');
    await expect(guard.run(effect('held'), async () => 'sent')).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
  });
});
