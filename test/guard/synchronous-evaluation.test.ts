import {
  AsyncLocalStorageTransactionContextPropagator,
  InMemoryProvider,
  NOOP_TRANSACTION_CONTEXT_PROPAGATOR,
  OpenFeature,
  ProviderEvents,
  type Client,
  type EvaluationContext,
  type Hook,
} from '@openfeature/server-sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import {
  evaluateKillFlag,
  evaluateKillFlagNow,
  evaluateKillFlagThroughSdk,
} from '../../src/hooks/evaluate-kill-flag.js';
import { RESOLVE_BOOLEAN_NOW } from '../../src/internal/synchronous-resolution.js';
import { MemorySideEffectLedger } from '../../src/ledger/memory-side-effect-ledger.js';
import { effectKey } from '../../src/ledger/side-effect-ledger.js';
import type { FlipInput } from '../../src/model/flip-record.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';

function halt(selector: FlipInput['selector'], extra: Partial<FlipInput> = {}): FlipInput {
  return { actor: 'oncall', action: 'halt', selector, reason: 'incident 42', ...extra };
}

let domainSeq = 0;

/** A KillSwitchProvider over a memory store holding `flips`, bound to a fresh domain. */
async function killSwitch(
  flips: FlipInput[],
  { fresh = true }: { fresh?: boolean } = {},
): Promise<{ client: Client; provider: KillSwitchProvider; store: MemoryFlipLogStore }> {
  const store = new MemoryFlipLogStore();
  for (const f of flips) await store.append(f);
  const provider = KillSwitchProvider.fromStore(store);
  const domain = `sync-eval-${++domainSeq}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  if (fresh) await provider.waitUntilFresh();
  return { client: OpenFeature.getClient(domain), provider, store };
}

afterEach(async () => {
  OpenFeature.clearHooks();
  OpenFeature.setContext({});
  OpenFeature.setTransactionContextPropagator(NOOP_TRANSACTION_CONTEXT_PROPAGATOR);
  vi.restoreAllMocks();
  await OpenFeature.clearProviders();
});

const CONTEXTS: EvaluationContext[] = [
  {},
  { tenant: 'acme' },
  { tenant: 'globex' },
  { tenant: 'globex', runId: 'r1', targetingKey: 'r1', capability: 'payments.refund' },
  { feature: 'checkout' },
  { runId: 'child', targetingKey: 'child', runPath: ['root', 'parent'] },
  { runId: 'child', targetingKey: 'child', runPath: ['root'] },
  { tenant: 'initech', capability: 'email.send' },
  { tenant: 'initech', capability: 'llm' },
  { tenant: 5 as unknown as string },
  { runId: 'x', targetingKey: 'x', runPath: 'not-an-array' as unknown as string[] },
];
const FLAGS = ['kill-switch', 'kill-switch.tenant', 'kill-switch.run', 'kill-switch.global'];

describe('KS-4.7.2 the synchronous evaluation answers exactly what the SDK path answers', () => {
  it('for every flag and context, halted, running, drain and fail-closed alike', async () => {
    const { client } = await killSwitch([
      halt({ tenant: 'acme' }),
      halt({ feature: 'checkout' }),
      halt({ runId: 'parent' }),
      halt({ tenant: 'initech', capability: 'email.send' }, { mode: 'drain' }),
    ]);
    let compared = 0;
    for (const flag of FLAGS) {
      for (const ctx of CONTEXTS) {
        const now = evaluateKillFlagNow(client, flag, ctx);
        expect(now, `${flag} ${JSON.stringify(ctx)}`).toBeDefined();
        expect(now).toEqual(await evaluateKillFlagThroughSdk(client, flag, ctx));
        compared++;
      }
    }
    expect(compared).toBe(FLAGS.length * CONTEXTS.length);
    // The halts above are really seen on this path (not a blanket fail-closed answer).
    expect(evaluateKillFlagNow(client, 'kill-switch', { tenant: 'acme' })).toMatchObject({
      value: true,
      variant: 'halted',
    });
    expect(evaluateKillFlagNow(client, 'kill-switch', { tenant: 'globex' })).toMatchObject({
      value: false,
    });
  });

  it('before the first snapshot (fail closed, STALE) the same as the SDK path', async () => {
    // A source that never starts: the provider is READY for the SDK and answers fail-closed.
    const provider = new KillSwitchProvider({
      source: {
        name: 'never',
        start: () => new Promise<void>(() => undefined),
        stop: async () => {},
      },
    });
    const domain = `sync-eval-stale-${++domainSeq}`;
    await OpenFeature.setProviderAndWait(domain, provider);
    const client = OpenFeature.getClient(domain);
    const now = evaluateKillFlagNow(client, 'kill-switch', { tenant: 'globex' });
    expect(now).toMatchObject({ value: true, reason: 'STALE' });
    expect(now).toEqual(
      await evaluateKillFlagThroughSdk(client, 'kill-switch', { tenant: 'globex' }),
    );
  });

  it('merges the API, transaction and client contexts as the SDK does', async () => {
    const { client } = await killSwitch([halt({ tenant: 'acme' }), halt({ feature: 'search' })]);
    OpenFeature.setTransactionContextPropagator(
      new AsyncLocalStorageTransactionContextPropagator(),
    );
    OpenFeature.setContext({ feature: 'search' });
    const viaApi = evaluateKillFlagNow(client, 'kill-switch', { runId: 'r', targetingKey: 'r' });
    expect(viaApi).toMatchObject({ value: true, variant: 'halted' });
    OpenFeature.setContext({});
    const inTransaction = await new Promise<unknown[]>((resolve) => {
      OpenFeature.setTransactionContext({ tenant: 'acme' }, () => {
        const now = evaluateKillFlagNow(client, 'kill-switch', {});
        void evaluateKillFlagThroughSdk(client, 'kill-switch', {}).then((sdk) =>
          resolve([now, sdk]),
        );
      });
    });
    expect(inTransaction[0]).toMatchObject({ value: true, variant: 'halted' });
    expect(inTransaction[0]).toEqual(inTransaction[1]);
    // The invocation context wins over the transaction's, as in the SDK.
    client.setContext({ tenant: 'acme' });
    const own = evaluateKillFlagNow(client, 'kill-switch', { tenant: 'globex' });
    expect(own).toMatchObject({ value: false });
    expect(evaluateKillFlagNow(client, 'kill-switch', {})).toMatchObject({ value: true });
    client.setContext({});
  });

  it('does not change the caller’s context object', async () => {
    const { client } = await killSwitch([]);
    const ctx = { tenant: 'acme' };
    evaluateKillFlagNow(client, 'kill-switch', ctx);
    expect(Object.isFrozen(ctx)).toBe(false);
    expect(ctx).toEqual({ tenant: 'acme' });
  });
});

describe('KS-4.7.2 wherever the SDK would do more, the evaluation goes through the SDK', () => {
  const counting = (): Hook & { calls: number } => {
    const hook = {
      calls: 0,
      before() {
        hook.calls++;
      },
    };
    return hook;
  };

  it('an API hook, a client hook or a hook of the call runs on every evaluation', async () => {
    const { client } = await killSwitch([]);
    const api = counting();
    OpenFeature.addHooks(api);
    expect(evaluateKillFlagNow(client, 'kill-switch', {})).toBeUndefined();
    expect(await evaluateKillFlag(client, 'kill-switch', {})).toMatchObject({ value: false });
    expect((await evaluateKill(client, { tenant: 'acme' })).halted).toBe(false);
    expect(api.calls).toBe(2);
    OpenFeature.clearHooks();

    const own = counting();
    client.addHooks(own);
    expect(evaluateKillFlagNow(client, 'kill-switch', {})).toBeUndefined();
    const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger() });
    await guard.run({ runId: 'r', step: 's', capability: 'noop' }, async () => 1);
    // Both of the guard's evaluations (KS-4.1.1 and the KS-4.1.5 recheck) ran the hook.
    expect(own.calls).toBe(2);
    await guard.close();
    client.clearHooks();

    const call = counting();
    expect(evaluateKillFlagNow(client, 'kill-switch', {}, { hooks: [call] })).toBeUndefined();
    await evaluateKillFlag(client, 'kill-switch', {}, { hooks: [call] });
    expect(call.calls).toBe(1);
  });

  it('a provider hook runs on every evaluation', async () => {
    const { client, provider } = await killSwitch([]);
    const hook = counting();
    (provider as unknown as { hooks: Hook[] }).hooks = [hook];
    expect(evaluateKillFlagNow(client, 'kill-switch', {})).toBeUndefined();
    await evaluateKillFlag(client, 'kill-switch', {});
    expect(hook.calls).toBe(1);
  });

  it('a provider without a synchronous resolution, a replaced client method, a client of no SDK', async () => {
    const domain = `sync-eval-inmemory-${++domainSeq}`;
    await OpenFeature.setProviderAndWait(
      domain,
      new InMemoryProvider({
        'kill-switch': {
          variants: { on: true, off: false },
          defaultVariant: 'off',
          disabled: false,
        },
      }),
    );
    const inMemory = OpenFeature.getClient(domain);
    expect(evaluateKillFlagNow(inMemory, 'kill-switch', {})).toBeUndefined();
    expect((await evaluateKill(inMemory, {})).halted).toBe(false);

    const { client } = await killSwitch([]);
    const spy = vi.spyOn(client, 'getBooleanDetails');
    expect(evaluateKillFlagNow(client, 'kill-switch', {})).toBeUndefined();
    await evaluateKill(client, { tenant: 'acme' });
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();

    const wrapped = { ...client, providerStatus: client.providerStatus } as unknown as Client;
    expect(evaluateKillFlagNow(wrapped, 'kill-switch', {})).toBeUndefined();
  });

  it('a provider in ERROR or STALE, a flag that is not a kill flag: the SDK’s fail-closed answer', async () => {
    const { client, provider } = await killSwitch([]);
    expect(evaluateKillFlagNow(client, 'other-flag', {})).toBeUndefined();
    expect(await evaluateKillFlag(client, 'other-flag', {})).toMatchObject({
      value: true,
      errorCode: 'FLAG_NOT_FOUND',
    });
    for (const event of [ProviderEvents.Error, ProviderEvents.Stale] as const) {
      provider.events.emit(event, { message: 'test' });
      expect(client.providerStatus).not.toBe('READY');
      expect(evaluateKillFlagNow(client, 'kill-switch', {})).toBeUndefined();
      expect(await evaluateKill(client, { tenant: 'globex' })).toMatchObject({ halted: true });
      provider.events.emit(ProviderEvents.Ready);
      expect(evaluateKillFlagNow(client, 'kill-switch', {})).toMatchObject({ value: false });
    }
  });
});

describe('KS-4.7.2 the guard on the synchronous path keeps both evaluations and the order of KS-4.1', () => {
  it('evaluates twice per effect, and a halt that lands while the intent is written refuses', async () => {
    const { client, provider, store } = await killSwitch([]);
    const resolve = vi.spyOn(provider, RESOLVE_BOOLEAN_NOW);
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client, ledger });
    let ran = 0;
    await guard.run(
      { runId: 'r1', step: 'a', capability: 'noop', context: { tenant: 'acme' } },
      async () => ++ran,
    );
    expect(resolve).toHaveBeenCalledTimes(2);
    expect(ran).toBe(1);

    // The intent write lets the halt in: the memory store tells the provider synchronously.
    const append = ledger.append.bind(ledger);
    vi.spyOn(ledger, 'append').mockImplementation(async (e) => {
      if (e.status === 'intent') await store.append(halt({ tenant: 'acme' }));
      return append(e);
    });
    const events: string[] = [];
    client.addHandler(ProviderEvents.ConfigurationChanged, () => events.push('changed'));
    await expect(
      guard.run(
        { runId: 'r1', step: 'b', capability: 'noop', context: { tenant: 'acme' } },
        async () => ++ran,
      ),
    ).rejects.toMatchObject({ code: 'KS_HALTED' });
    expect(ran).toBe(1);
    const [b] = await ledger.entries({ key: effectKey('r1', 'b') });
    // The intent was durable, then the recheck refused: the intent is closed as refused.
    expect(b?.history.map((e) => e.status)).toEqual(['intent', 'refused']);
    expect(events).toEqual(['changed']);
    await guard.close();
  });

  it('refuses at once when halted before, recording refused with the flip', async () => {
    const { client } = await killSwitch([halt({ tenant: 'acme' })]);
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client, ledger });
    const body = vi.fn(async () => 1);
    const err = await guard
      .run({ runId: 'r2', step: 'a', capability: 'noop', context: { tenant: 'acme' } }, body)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq: 1 } });
    expect(body).not.toHaveBeenCalled();
    await guard.close();
  });
});
