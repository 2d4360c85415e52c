import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  InMemoryProvider,
  OpenFeature,
  ProviderEvents,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { HaltedError, KillSwitchError } from '../../src/errors.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import {
  FileSideEffectLedger,
  MemorySideEffectLedger,
  type LedgerEntry,
  type LedgerEvent,
  type SideEffectLedger,
} from '../../src/ledger/index.js';
import { deferred, freshDomain, inMemoryBackend, killFlags } from './backends.js';

const quiet = { warn: () => undefined };
const guards: EffectGuard[] = [];
function guardFor(domain: string, ledger: SideEffectLedger = new MemorySideEffectLedger()) {
  const g = new EffectGuard({ client: OpenFeature.getClient(domain), ledger, logger: quiet });
  guards.push(g);
  return { guard: g, ledger };
}
const fx: GuardedEffect = { context: { tenant: 'acme' }, runId: 'r', step: 's', capability: 'c' };

afterEach(async () => {
  for (const g of guards.splice(0)) await g.close();
});
afterAll(async () => {
  await OpenFeature.close();
});

async function refusedWithoutDispatch(guard: EffectGuard, step = fx.step) {
  let calls = 0;
  const err = await guard
    .run({ ...fx, step }, async () => {
      calls += 1;
    })
    .catch((e: unknown) => e);
  expect(calls).toBe(0);
  return err as HaltedError;
}

class ThrowingProvider implements Provider {
  readonly metadata = { name: 'throwing' };
  readonly runsOn = 'server';
  async resolveBooleanEvaluation(): Promise<ResolutionDetails<boolean>> {
    throw new Error('backend exploded');
  }
  resolveStringEvaluation = this.resolveBooleanEvaluation as never;
  resolveNumberEvaluation = this.resolveBooleanEvaluation as never;
  resolveObjectEvaluation = this.resolveBooleanEvaluation as never;
}

class NeverReadyProvider extends ThrowingProvider {
  override readonly metadata = { name: 'never-ready' };
  initialize(): Promise<void> {
    return new Promise(() => undefined);
  }
  override async resolveBooleanEvaluation(): Promise<ResolutionDetails<boolean>> {
    return { value: false };
  }
}

describe('KS-4.1.4 every abnormal SDK path refuses the effect', () => {
  it('refuses when no provider is bound to the domain', async () => {
    const { guard, ledger } = guardFor(freshDomain('unbound'));
    const err = await refusedWithoutDispatch(guard);
    expect(err).toBeInstanceOf(HaltedError);
    expect(err.code).toBe('KS_HALTED');
    expect((await ledger.entries())[0]?.status).toBe('refused');
  });

  it('refuses while the provider is not ready (its initialize never settles)', async () => {
    const domain = freshDomain('not-ready');
    void OpenFeature.setProvider(domain, new NeverReadyProvider());
    const { guard } = guardFor(domain);
    const err = await refusedWithoutDispatch(guard);
    expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'error' });
  });

  it('refuses when the provider resolver throws', async () => {
    const domain = freshDomain('throwing');
    await OpenFeature.setProviderAndWait(domain, new ThrowingProvider());
    const { guard } = guardFor(domain);
    const err = await refusedWithoutDispatch(guard);
    expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'error' });
    expect(err.message).toMatch(/failed closed/);
  });

  it('refuses when the provider does not define kill-switch', async () => {
    const domain = freshDomain('no-flag');
    await OpenFeature.setProviderAndWait(domain, new InMemoryProvider({}));
    const err = await refusedWithoutDispatch(guardFor(domain).guard);
    expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'error' });
  });

  it('refuses when the flag resolves to a non-boolean', async () => {
    const domain = freshDomain('string-flag');
    const p = new InMemoryProvider({
      'kill-switch': { variants: { off: 'false' }, defaultVariant: 'off', disabled: false },
    });
    await OpenFeature.setProviderAndWait(domain, p);
    const err = await refusedWithoutDispatch(guardFor(domain).guard);
    expect(err.code).toBe('KS_HALTED');
  });

  it('refuses when a hook throws', async () => {
    const b = await inMemoryBackend();
    b.client.addHooks({
      before: () => {
        throw new Error('hook bug');
      },
    });
    const guard = new EffectGuard({
      client: b.client,
      ledger: new MemorySideEffectLedger(),
      logger: quiet,
    });
    guards.push(guard);
    const err = await refusedWithoutDispatch(guard);
    expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'error' });
  });
});

/** A ledger whose writes or reads fail on demand. */
class FlakyLedger implements SideEffectLedger {
  readonly inner = new MemorySideEffectLedger();
  failIntent = false;
  failRead = false;
  async append(e: LedgerEvent): Promise<void> {
    if (this.failIntent && e.status === 'intent') throw new Error('disk full');
    return this.inner.append(e);
  }
  async entries(f?: Parameters<SideEffectLedger['entries']>[0]): Promise<LedgerEntry[]> {
    if (this.failRead) throw new Error('cannot read');
    return this.inner.entries(f);
  }
  close() {
    return this.inner.close();
  }
}

describe('KS-4.2.3 no intent, no dispatch', () => {
  it('rejects with KS_STORE_UNAVAILABLE and never calls the body when the intent write fails', async () => {
    const b = await inMemoryBackend();
    const ledger = new FlakyLedger();
    ledger.failIntent = true;
    const { guard } = guardFor(b.domain, ledger);
    let calls = 0;
    const err = await guard
      .run(fx, async () => {
        calls += 1;
      })
      .catch((e: unknown) => e);
    expect(calls).toBe(0);
    expect(err).toBeInstanceOf(KillSwitchError);
    expect(err).toMatchObject({ code: 'KS_STORE_UNAVAILABLE' });
    expect((err as Error).message).toMatch(/intent could not be recorded.*disk full/);
  });

  it('rejects with KS_STORE_UNAVAILABLE when the ledger cannot be read', async () => {
    const b = await inMemoryBackend();
    const ledger = new FlakyLedger();
    ledger.failRead = true;
    const { guard } = guardFor(b.domain, ledger);
    await expect(guard.run(fx, async () => 1)).rejects.toMatchObject({
      code: 'KS_STORE_UNAVAILABLE',
    });
  });
});

describe('KS-4.1.5 a halt that arrives while the intent is written stops the dispatch', () => {
  it('records intent then refused, and never calls the body', async () => {
    const b = await inMemoryBackend();
    const gate = deferred();
    const inner = new MemorySideEffectLedger();
    const slow: SideEffectLedger = {
      append: async (e) => {
        if (e.status === 'intent') await gate.promise;
        return inner.append(e);
      },
      entries: (f) => inner.entries(f),
      close: () => inner.close(),
    };
    const { guard } = guardFor(b.domain, slow);
    let calls = 0;
    const run = guard.run(fx, async () => {
      calls += 1;
    });
    await new Promise((r) => setImmediate(r));
    await b.halt({ tenant: 'acme' });
    gate.resolve();
    await expect(run).rejects.toMatchObject({ code: 'KS_HALTED' });
    expect(calls).toBe(0);
    expect((await inner.entries())[0]?.history.map((e) => e.status)).toEqual(['intent', 'refused']);
  });
});

describe('KS-4.1.6 a closed guard fails closed', () => {
  it('aborts effects still running and refuses new ones', async () => {
    const b = await inMemoryBackend();
    const { guard, ledger } = guardFor(b.domain);
    const started = deferred();
    const run = guard.run(fx, () => {
      started.resolve();
      return new Promise<never>(() => undefined);
    });
    await started.promise;
    await guard.close();
    await expect(run).rejects.toMatchObject({ code: 'KS_ABORTED', haltCause: 'error' });
    await expect(guard.run({ ...fx, step: 't' }, async () => 1)).rejects.toMatchObject({
      code: 'KS_STORE_CLOSED',
    });
    expect((await ledger.entries())[0]?.status).toBe('aborted');
  });
});

describe('KS-4.1.7 a bad effect description is refused before anything else', () => {
  it('rejects with KS_INVALID_INPUT listing the issues', async () => {
    const b = await inMemoryBackend();
    const { guard, ledger } = guardFor(b.domain);
    await expect(
      guard.run(
        { context: { runId: 'other' }, runId: 'r', step: '', capability: 'c' },
        async () => 1,
      ),
    ).rejects.toMatchObject({
      code: 'KS_INVALID_INPUT',
      message: expect.stringMatching(/step.*context\.runId/),
    });
    expect(await ledger.entries()).toEqual([]);
  });

  it('rejects bad options at construction', () => {
    expect(
      () => new EffectGuard({ client: {} as never, ledger: new MemorySideEffectLedger() }),
    ).toThrow(/option client/);
    expect(() => new EffectGuard({ client: OpenFeature.getClient(), ledger: {} as never })).toThrow(
      /option ledger/,
    );
  });
});

describe('KS-4.1.10 a provider that reports STALE or ERROR halts, even though the SDK still asks it', () => {
  it('aborts a running effect on STALE, refuses new ones, and runs again after READY', async () => {
    const domain = freshDomain('stale');
    const provider = new InMemoryProvider(killFlags([]));
    await OpenFeature.setProviderAndWait(domain, provider);
    const { guard, ledger } = guardFor(domain);
    const started = deferred();
    const run = guard.run(fx, () => {
      started.resolve();
      return new Promise<never>(() => undefined);
    });
    await started.promise;
    provider.events.emit(ProviderEvents.Stale, { message: 'no heartbeat for 3000 ms' });
    await expect(run).rejects.toMatchObject({ code: 'KS_ABORTED', haltCause: 'stale' });
    const err = await refusedWithoutDispatch(guard, 'after-stale');
    expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'stale' });
    expect(err.message).toMatch(/stale/);
    provider.events.emit(ProviderEvents.Error, { message: 'backend error' });
    expect(await refusedWithoutDispatch(guard, 'after-error')).toMatchObject({
      haltCause: 'error',
    });
    provider.events.emit(ProviderEvents.Ready, {});
    await expect(guard.run({ ...fx, step: 'after-ready' }, async () => 'ran')).resolves.toBe('ran');
    await guard.flush();
    expect((await ledger.entries()).map((e) => e.status)).toEqual([
      'aborted',
      'refused',
      'refused',
      'landed',
    ]);
  });
});

describe('KS-4.2.5 a result the ledger cannot store does not cost the landed record', () => {
  it('records landed without the result and warns', async () => {
    const b = await inMemoryBackend();
    const dir = await mkdtemp(join(tmpdir(), 'ks-guard-result-'));
    const ledger = new FileSideEffectLedger({ path: join(dir, 'e.jsonl') });
    const warnings: string[] = [];
    const guard = new EffectGuard({
      client: b.client,
      ledger,
      logger: { warn: (m) => warnings.push(m) },
    });
    guards.push(guard);
    const codec = { encode: (v: bigint) => v, decode: (s: unknown) => BigInt(s as string) };
    await expect(guard.run({ ...fx, result: codec }, async () => 10n)).resolves.toBe(10n);
    const [entry] = await ledger.entries();
    expect(entry?.status).toBe('landed');
    expect(entry?.result).toBeUndefined();
    expect(warnings.join('\n')).toMatch(/result not recorded/);
    await ledger.close();
    await rm(dir, { recursive: true, force: true });
  });
});
