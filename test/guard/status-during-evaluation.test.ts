import {
  OpenFeature,
  OpenFeatureEventEmitter,
  ProviderEvents,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { MemorySideEffectLedger } from '../../src/ledger/memory-side-effect-ledger.js';

/**
 * A provider that reports STALE while an evaluation is in flight and then answers a clean
 * `false`: the answer was computed from state it no longer vouches for.
 */
class GoesStaleMidEvaluation implements Provider {
  readonly metadata = { name: 'goes-stale-mid-evaluation' };
  readonly runsOn = 'server' as const;
  readonly events = new OpenFeatureEventEmitter();
  #stale = false;

  async resolveBooleanEvaluation(): Promise<ResolutionDetails<boolean>> {
    if (!this.#stale) {
      this.#stale = true;
      this.events.emit(ProviderEvents.Stale, { message: 'lease ran out' });
    }
    await new Promise((r) => setImmediate(r));
    return { value: false, variant: 'running', reason: 'TARGETING_MATCH' };
  }
  async resolveStringEvaluation(): Promise<ResolutionDetails<string>> {
    throw new Error('not used');
  }
  async resolveNumberEvaluation(): Promise<ResolutionDetails<number>> {
    throw new Error('not used');
  }
  async resolveObjectEvaluation<T extends JsonValue>(): Promise<ResolutionDetails<T>> {
    throw new Error('not used');
  }
}

afterEach(async () => {
  await OpenFeature.clearProviders();
});

describe('KS-4.1.10 a provider that goes STALE during the evaluation fails closed', () => {
  it('evaluateKill answers halted (stale) for the clean false it returned', async () => {
    const domain = `stale-eval-${Math.random()}`;
    await OpenFeature.setProviderAndWait(domain, new GoesStaleMidEvaluation());
    const d = await evaluateKill(OpenFeature.getClient(domain), { tenant: 'acme' });
    expect(d).toMatchObject({ halted: true, cause: 'stale' });
  });

  it('refuses the effect although the answer was a clean false', async () => {
    const domain = `stale-mid-${Math.random()}`;
    await OpenFeature.setProviderAndWait(domain, new GoesStaleMidEvaluation());
    const ledger = new MemorySideEffectLedger();
    // Without the second look before dispatch, the one evaluation must catch it on its own.
    const guard = new EffectGuard({
      client: OpenFeature.getClient(domain),
      ledger,
      recheckBeforeDispatch: false,
    });
    let dispatched = false;
    await expect(
      guard.run(
        { context: { tenant: 'acme' }, runId: 'r1', step: '1', capability: 'mail.send' },
        async () => {
          dispatched = true;
        },
      ),
    ).rejects.toMatchObject({ code: 'KS_HALTED', haltCause: 'stale' });
    expect(dispatched).toBe(false);
    expect((await ledger.entries())[0]?.status).toBe('refused');
    await guard.close();
  });
});
