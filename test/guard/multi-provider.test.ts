import {
  ComparisonStrategy,
  FirstSuccessfulStrategy,
  InMemoryProvider,
  MultiProvider,
  OpenFeature,
  ProviderEvents,
  type BaseEvaluationStrategy,
  type Provider,
  type ProviderStatus,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { FailClosedKillStrategy } from '../../src/guard/fail-closed-kill-strategy.js';
import { freshDomain, killFlags } from './backends.js';

afterAll(async () => {
  await OpenFeature.close();
});

const ctx = { tenant: 'acme' };
const halted = () => new InMemoryProvider(killFlags([{ tenant: 'acme' }]));
const running = () => new InMemoryProvider(killFlags([]));
const noKillFlags = () =>
  new InMemoryProvider({
    other: { variants: { on: true, off: false }, defaultVariant: 'on', disabled: false },
  });

class ThrowingProvider implements Provider {
  readonly metadata = { name: 'throwing' };
  readonly runsOn = 'server';
  async resolveBooleanEvaluation(): Promise<ResolutionDetails<boolean>> {
    throw new Error('kill backend down');
  }
  resolveStringEvaluation = this.resolveBooleanEvaluation as never;
  resolveNumberEvaluation = this.resolveBooleanEvaluation as never;
  resolveObjectEvaluation = this.resolveBooleanEvaluation as never;
}

async function multi(
  providers: Provider[],
  strategy?: BaseEvaluationStrategy<ProviderStatus, Provider>,
) {
  const domain = freshDomain('mp');
  const entries = providers.map((provider, i) => ({ provider, name: `p${i}` }));
  await OpenFeature.setProviderAndWait(domain, new MultiProvider(entries, strategy));
  return OpenFeature.getClient(domain);
}

describe('KS-4.6.1 the SDK strategies and kill flags (what each does, measured)', () => {
  it('FirstMatch (default) with the kill provider first and the only one defining kill flags: halts pass, errors fail closed', async () => {
    expect((await evaluateKill(await multi([halted(), noKillFlags()]), ctx)).halted).toBe(true);
    expect((await evaluateKill(await multi([running(), noKillFlags()]), ctx)).halted).toBe(false);
    expect((await evaluateKill(await multi([new ThrowingProvider(), running()]), ctx)).halted).toBe(
      true,
    );
  });

  it('FirstMatch: an earlier provider that also defines kill-switch hides the halt (fail open)', async () => {
    expect((await evaluateKill(await multi([running(), halted()]), ctx)).halted).toBe(false);
  });

  it('FirstSuccessful: a kill provider that errors falls through to a later false (fail open)', async () => {
    const client = await multi([new ThrowingProvider(), running()], new FirstSuccessfulStrategy());
    expect((await evaluateKill(client, ctx)).halted).toBe(false);
  });

  it('Comparison: on disagreement the fallback provider answers, even when it says false (fail open)', async () => {
    const fallback = running();
    const client = await multi([halted(), fallback], new ComparisonStrategy(fallback));
    expect((await evaluateKill(client, ctx)).halted).toBe(false);
  });
});

describe('KS-4.6.2 under FailClosedKillStrategy kill flags fail closed through a MultiProvider', () => {
  const s = () => new FailClosedKillStrategy();

  it('any provider answering halted wins, in any order', async () => {
    expect((await evaluateKill(await multi([running(), halted()], s()), ctx)).halted).toBe(true);
    expect((await evaluateKill(await multi([halted(), running()], s()), ctx)).halted).toBe(true);
    expect((await evaluateKill(await multi([running(), noKillFlags()], s()), ctx)).halted).toBe(
      false,
    );
  });

  it('a provider that errors halts, even for a caller whose default is false', async () => {
    const client = await multi([new ThrowingProvider(), running()], s());
    const d = await client.getBooleanDetails('kill-switch', false, ctx);
    expect(d).toMatchObject({ value: true, variant: 'fail-closed', reason: 'ERROR' });
    expect(d.errorCode).toBeUndefined();
    expect(await evaluateKill(client, ctx)).toMatchObject({ halted: true, cause: 'error' });
  });

  it('no provider defining the flag halts', async () => {
    const client = await multi([noKillFlags()], s());
    expect(await client.getBooleanValue('kill-switch', false, ctx)).toBe(true);
  });

  it('a STALE provider halts until it is READY again', async () => {
    const kill = running();
    const client = await multi([kill, noKillFlags()], s());
    expect((await evaluateKill(client, ctx)).halted).toBe(false);
    kill.events.emit(ProviderEvents.Stale, { message: 'lease ran out' });
    expect((await evaluateKill(client, ctx)).halted).toBe(true);
    kill.events.emit(ProviderEvents.Ready, {});
    expect((await evaluateKill(client, ctx)).halted).toBe(false);
  });

  it('other flags keep FirstMatch', async () => {
    const client = await multi(
      [
        noKillFlags(),
        new InMemoryProvider({
          other: { variants: { a: false }, defaultVariant: 'a', disabled: false },
        }),
      ],
      s(),
    );
    expect(await client.getBooleanValue('other', false)).toBe(true);
    expect(await client.getBooleanValue('missing', false)).toBe(false);
  });
});
