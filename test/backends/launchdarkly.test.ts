import { OpenFeature, ProviderStatus } from '@openfeature/server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { HaltedError } from '../../src/errors.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { bind, localLaunchDarkly, sleep, waitFor } from './helpers.js';
import { LdStreamServer } from '../fixtures/ld-stream-server.js';
import { cleanupsAfterEach } from '../fixtures/cleanups.js';

const quiet = { warn: () => undefined };
const cleanups = cleanupsAfterEach();
afterAll(async () => {
  await OpenFeature.close();
});

function effect(step: string, tenant = 'acme'): GuardedEffect {
  return { context: { tenant }, runId: `run-${step}`, step, capability: 'email.send' };
}

async function setup() {
  const ld = new LdStreamServer();
  await ld.start();
  cleanups.push(() => ld.stop());
  const provider = localLaunchDarkly(ld.url);
  const client = await bind(provider, 'ld');
  let changes = 0;
  client.addHandler('PROVIDER_CONFIGURATION_CHANGED' as never, () => {
    changes += 1;
  });
  const ledger = new MemorySideEffectLedger();
  const guard = new EffectGuard({ client, ledger, logger: quiet });
  cleanups.push(() => guard.close());
  return { ld, provider, client, guard, ledger, changes: () => changes };
}

describe('KS-12.3.1 the effect guard over the LaunchDarkly OpenFeature provider (local stream, no network)', () => {
  it('a halt streamed as a patch refuses the next effect of that tenant, names no flip, and lets others run', async () => {
    const { ld, client, guard, changes } = await setup();
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    await expect(guard.run(effect('a'), async () => 'sent')).resolves.toBe('sent');
    ld.halt({ tenant: 'acme' });
    await waitFor(() => changes() > 0, 5000, 'the patch');
    const err = await guard.run(effect('b'), async () => 'sent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HaltedError);
    expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'halted' });
    // LaunchDarkly's resolution carries no flagMetadata: the refusal cannot name the flip.
    expect((err as HaltedError).flip).toBeUndefined();
    await expect(guard.run(effect('c', 'other'), async () => 'sent')).resolves.toBe('sent');
    ld.resume({ tenant: 'acme' });
    await waitFor(async () => !(await evaluateKill(client, { tenant: 'acme', runId: 'r' })).halted);
    await expect(guard.run(effect('d'), async () => 'sent')).resolves.toBe('sent');
    // Only the stream was requested: no events, no diagnostics, nothing beyond loopback.
    expect([...ld.requests.keys()]).toEqual(['/all']);
  });

  it('a patch aborts an effect in flight (the provider emits PROVIDER_CONFIGURATION_CHANGED)', async () => {
    const { ld, guard, ledger } = await setup();
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const result = guard
      .run(effect('slow'), (signal) => {
        started();
        return new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason)),
        );
      })
      .catch((e: unknown) => e);
    await running;
    ld.halt({ capability: 'email.send' });
    expect(await result).toMatchObject({ code: 'KS_ABORTED' });
    const [entry] = await ledger.entries();
    expect(entry?.status).toBe('aborted');
  });

  it('an evaluation without a targeting key fails closed (LaunchDarkly answers TARGETING_KEY_MISSING)', async () => {
    const { client } = await setup();
    // The guard always sends runId as the targeting key; a bare check without one reads halted.
    expect(await evaluateKill(client, { tenant: 'acme' })).toMatchObject({
      halted: true,
      cause: 'error',
    });
  });
});

describe('KS-12.3.2 when the local stream dies LaunchDarkly keeps serving its last values (fail open), and the guard cannot tell', () => {
  it('a halt made while the stream is down never reaches the guard: effects keep leaving', async () => {
    const { ld, client, guard } = await setup();
    const port = Number(new URL(ld.url).port);
    await ld.stop();
    // The outage lasts; the SDK retries in the background and still says READY.
    await sleep(300);
    ld.halt({ tenant: 'acme' }); // recorded by the server, undeliverable
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(await evaluateKill(client, { tenant: 'acme', runId: 'r' })).toMatchObject({
      halted: false,
    });
    await expect(guard.run(effect('leak'), async () => 'sent')).resolves.toBe('sent');
    // The stream comes back on the same port: the SDK reconnects, gets a put, and halts.
    await ld.start(port);
    await waitFor(
      async () => (await evaluateKill(client, { tenant: 'acme', runId: 'r' })).halted,
      15_000,
      'the reconnect',
    );
    await expect(guard.run(effect('after'), async () => 'sent')).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
  });

  it('with no stream at start the provider fails to initialise (ERROR) and the guard refuses', async () => {
    const ld = new LdStreamServer();
    await ld.start();
    const url = ld.url;
    await ld.stop();
    const provider = localLaunchDarkly(url, { initTimeoutSeconds: 0.3 });
    const client = await bind(provider, 'ld-down');
    cleanups.push(() => provider.onClose());
    expect(client.providerStatus).toBe(ProviderStatus.ERROR);
    const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger(), logger: quiet });
    cleanups.push(() => guard.close());
    await expect(guard.run(effect('x'), async () => 'sent')).rejects.toMatchObject({
      code: 'KS_HALTED',
      haltCause: 'error',
    });
  });
});
