import { randomUUID } from 'node:crypto';
import {
  InMemoryProvider,
  MultiProvider,
  NOOP_PROVIDER,
  OpenFeature,
  type EvaluationContext,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { HaltedError } from '../../src/errors.js';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { DrainPermit, drainPermits } from '../../src/guard/drain-permit.js';
import { FailClosedKillStrategy } from '../../src/guard/fail-closed-kill-strategy.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import type { HaltWatcher } from '../../src/guard/halt-watcher.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillState } from '../../src/model/kill-state.js';
import type { QueueMode } from '../../src/model/flip-record.js';
import type { KillContext, Selector } from '../../src/model/selector.js';
import { inMemoryKill, killHarness, settle, type KillHarness } from '../schedule/kill-harness.js';

const quiet = { warn: () => undefined };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(): Promise<KillHarness> {
  const h = await killHarness();
  cleanups.push(() => h.close());
  return h;
}

function guardOn(client: KillHarness['client'], watcher?: HaltWatcher) {
  const ledger = new MemorySideEffectLedger();
  const guard = new EffectGuard({
    client,
    ledger,
    logger: quiet,
    ...(watcher ? { watcher } : {}),
  });
  cleanups.push(() => guard.close());
  return { guard, ledger };
}

const TASK_CTX = { tenant: 'acme', runId: 'run-1' } as const;

function effect(step: string, permit?: DrainPermit, extra: Partial<GuardedEffect> = {}) {
  return {
    context: TASK_CTX,
    runId: 'run-1',
    step,
    capability: 'email.send',
    ...(permit !== undefined ? { drainPermit: permit } : {}),
    ...extra,
  } satisfies GuardedEffect;
}

function permitAt(admittedSeq: number | undefined, context: KillContext = TASK_CTX): DrainPermit {
  return new DrainPermit({ admittedSeq, context, taskId: 'task-1' });
}

/** The seq the provider's state is at now (what an enqueue check would have read). */
function seqOf(h: KillHarness): number {
  return h.provider.snapshot()!.seq;
}

describe('KS-4.8.1 a drain halt appended after the task was admitted lets the task’s effects dispatch', () => {
  it('KS-4.8.5 dispatches, lands, and records intent (naming the drain flip, the task and its admission seq) then landed', async () => {
    const h = await harness();
    const { guard, ledger } = guardOn(h.client);
    const admitted = seqOf(h);
    const permit = permitAt(admitted);
    const drainSeq = await h.halt({ tenant: 'acme' }, 'drain');
    const out = await guard.run(effect('send', permit), async () => 'sent');
    expect(out).toBe('sent');
    const [entry] = await ledger.entries();
    expect(entry?.history.map((e) => e.status)).toEqual(['intent', 'landed']);
    expect(entry?.history[0]).toMatchObject({ flipSeq: drainSeq });
    expect(entry?.history[0]?.detail).toBe(
      `dispatched under drain halt #${drainSeq}: task task-1 was admitted at seq ${admitted}`,
    );
  });

  it('a global drain halt also lets it through; a global halt of any other mode does not', async () => {
    const h = await harness();
    const { guard } = guardOn(h.client);
    const permit = permitAt(seqOf(h));
    await h.halt({}, 'drain');
    await expect(guard.run(effect('a', permit), async () => 1)).resolves.toBe(1);
    await h.resume({});
    for (const mode of ['discard', 'hold', undefined] as const) {
      const p = permitAt(seqOf(h));
      await h.halt({}, mode);
      await expect(guard.run(effect(`g-${mode}`, p), async () => 1)).rejects.toMatchObject({
        code: 'KS_HALTED',
      });
      await h.resume({});
    }
  });

  it('several drain halts, all after the admission, still let it through', async () => {
    const h = await harness();
    const { guard } = guardOn(h.client);
    const permit = permitAt(seqOf(h));
    await h.halt({ tenant: 'acme' }, 'drain');
    await h.halt({ capability: 'email.send' }, 'drain');
    await h.halt({}, 'drain');
    await expect(guard.run(effect('send', permit), async () => 'ok')).resolves.toBe('ok');
  });
});

describe('KS-4.8.1 everything else stays refused', () => {
  const cases: {
    readonly title: string;
    readonly setup: (h: KillHarness) => Promise<DrainPermit | undefined>;
  }[] = [
    {
      title: 'no permit',
      setup: async (h) => {
        await h.halt({ tenant: 'acme' }, 'drain');
        return undefined;
      },
    },
    {
      title: 'a drain halt appended before the admission (seq not above admittedSeq)',
      setup: async (h) => {
        const seq = await h.halt({ tenant: 'acme' }, 'drain');
        return permitAt(seq);
      },
    },
    {
      title: 'an unknown admission point',
      setup: async (h) => {
        await h.halt({ tenant: 'acme' }, 'drain');
        return permitAt(undefined);
      },
    },
    {
      title: 'a drain halt plus a discard halt matching the same effect (drain first)',
      setup: async (h) => {
        const p = permitAt(seqOf(h));
        await h.halt({ tenant: 'acme' }, 'drain');
        await h.halt({ capability: 'email.send' }, 'discard');
        return p;
      },
    },
    {
      title: 'a drain halt plus a discard halt matching the same effect (discard first)',
      setup: async (h) => {
        const p = permitAt(seqOf(h));
        await h.halt({ capability: 'email.send' }, 'discard');
        await h.halt({ tenant: 'acme' }, 'drain');
        return p;
      },
    },
    {
      title: 'a drain halt plus a hold halt',
      setup: async (h) => {
        const p = permitAt(seqOf(h));
        await h.halt({ tenant: 'acme' }, 'drain');
        await h.halt({ runId: 'run-1' }, 'hold');
        return p;
      },
    },
    {
      title: 'a drain halt plus a halt that names no mode (discard by default)',
      setup: async (h) => {
        const p = permitAt(seqOf(h));
        await h.halt({ tenant: 'acme' }, 'drain');
        await h.halt({ runId: 'run-1' });
        return p;
      },
    },
    {
      title: 'a drain halt older than the admission plus one newer',
      setup: async (h) => {
        await h.halt({ capability: 'email.send' }, 'drain');
        const p = permitAt(seqOf(h));
        await h.halt({ tenant: 'acme' }, 'drain');
        return p;
      },
    },
    {
      title: 'a permit of another task context (another tenant)',
      setup: async (h) => {
        const p = permitAt(seqOf(h), { tenant: 'other' });
        await h.halt({ tenant: 'acme' }, 'drain');
        return p;
      },
    },
    {
      title: 'a revoked permit (the task’s handler has settled)',
      setup: async (h) => {
        const p = permitAt(seqOf(h));
        await h.halt({ tenant: 'acme' }, 'drain');
        p.revoke();
        return p;
      },
    },
  ];
  for (const c of cases) {
    it(`refuses with KS_HALTED and dispatches nothing: ${c.title}`, async () => {
      const h = await harness();
      const { guard, ledger } = guardOn(h.client);
      const permit = await c.setup(h);
      let calls = 0;
      const err = await guard
        .run(effect('send', permit), async () => {
          calls++;
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_HALTED' });
      expect(calls).toBe(0);
      const [entry] = await ledger.entries();
      expect(entry?.history.map((e) => e.status)).toEqual(['refused']);
    });
  }

  it('refuses a stale (fail-closed) answer whatever the permit says', async () => {
    const h = await harness();
    const { guard } = guardOn(h.client);
    const permit = permitAt(seqOf(h));
    await h.halt({ tenant: 'acme' }, 'drain');
    await h.provider.onClose(); // the provider now answers fail-closed STALE
    await expect(guard.run(effect('send', permit), async () => 1)).rejects.toMatchObject({
      code: 'KS_HALTED',
      haltCause: 'stale',
    });
  });

  it('rejects a drainPermit that is not a DrainPermit with KS_INVALID_INPUT, before recording anything', async () => {
    const h = await harness();
    const { guard, ledger } = guardOn(h.client);
    const forged = { admittedSeq: 0, context: TASK_CTX, taskId: 't', active: true };
    await expect(
      guard.run(effect('send', forged as unknown as DrainPermit), async () => 1),
    ).rejects.toMatchObject({ code: 'KS_INVALID_INPUT' });
    expect(await ledger.entries()).toEqual([]);
  });
});

describe('KS-4.8.6 a provider that does not say every matching halt is a drain halt: drain degrades to refusing', () => {
  it('InMemoryProvider (no flagMetadata at all) refuses even with a permit', async () => {
    const mem = await inMemoryKill((ctx) => ctx.tenant === 'acme');
    cleanups.push(() => mem.close());
    const { guard } = guardOn(mem.client);
    await expect(guard.run(effect('send', permitAt(0)), async () => 1)).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
  });

  it('a provider naming a drain flip but no drainOnly (or drainOnly not exactly true) refuses', async () => {
    for (const drainOnly of [undefined, 'true', 1, false] as const) {
      const provider = metadataProvider({
        seq: 5,
        id: 'f5',
        actor: 'a',
        reason: 'r',
        mode: 'drain',
        selector: '{"tenant":"acme"}',
        ...(drainOnly !== undefined ? { drainOnly } : {}),
      });
      const domain = `drain-meta-${randomUUID()}`;
      await OpenFeature.setProviderAndWait(domain, provider);
      cleanups.push(() => OpenFeature.setProviderAndWait(domain, NOOP_PROVIDER));
      const { guard } = guardOn(OpenFeature.getClient(domain));
      await expect(
        guard.run(effect(`send-${String(drainOnly)}`, permitAt(1)), async () => 1),
      ).rejects.toMatchObject({ code: 'KS_HALTED' });
    }
  });

  it('the same provider with drainOnly: true lets a task admitted before seq 5 through (the rule, not the backend)', async () => {
    const provider = metadataProvider({
      seq: 5,
      id: 'f5',
      actor: 'a',
      reason: 'r',
      mode: 'drain',
      selector: '{"tenant":"acme"}',
      drainOnly: true,
    });
    const domain = `drain-meta-${randomUUID()}`;
    await OpenFeature.setProviderAndWait(domain, provider);
    cleanups.push(() => OpenFeature.setProviderAndWait(domain, NOOP_PROVIDER));
    const { guard } = guardOn(OpenFeature.getClient(domain));
    await expect(guard.run(effect('a', permitAt(4)), async () => 1)).resolves.toBe(1);
    await expect(guard.run(effect('b', permitAt(5)), async () => 1)).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
  });
});

describe('KS-4.8.7 through a MultiProvider (FailClosedKillStrategy)', () => {
  async function multi(other: Provider | undefined) {
    const store = new MemoryFlipLogStore();
    const ks = KillSwitchProvider.fromStore(store, { logger: quiet });
    const entries = [
      { provider: ks, name: 'kill' },
      ...(other !== undefined ? [{ provider: other, name: 'other' }] : []),
    ];
    const domain = `drain-mp-${randomUUID()}`;
    await OpenFeature.setProviderAndWait(
      domain,
      new MultiProvider(entries, new FailClosedKillStrategy()),
    );
    cleanups.push(async () => {
      await OpenFeature.setProviderAndWait(domain, NOOP_PROVIDER);
      await store.close();
    });
    for (let i = 0; i < 200 && ks.failure !== undefined; i++) await settle(1);
    const client = OpenFeature.getClient(domain);
    const admitted = (await evaluateKill(client, TASK_CTX)).stateSeq;
    await store.append({
      actor: 't',
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'drain',
      mode: 'drain',
    });
    await settle();
    return { client, admitted };
  }
  const killFlag = (halted: boolean) =>
    new InMemoryProvider({
      'kill-switch': {
        variants: { on: true, off: false },
        defaultVariant: halted ? 'on' : 'off',
        disabled: false,
      },
    });

  it('with the kill-switch provider the only one defining the flag, a drained effect dispatches', async () => {
    const other = new InMemoryProvider({
      unrelated: { variants: { on: true }, defaultVariant: 'on', disabled: false },
    });
    const { client, admitted } = await multi(other);
    expect(admitted).toBe(0);
    const { guard } = guardOn(client);
    await expect(guard.run(effect('a', permitAt(admitted)), async () => 1)).resolves.toBe(1);
  });

  it('another provider halting too (mode unknown) refuses: drainOnly is dropped', async () => {
    const { client } = await multi(killFlag(true));
    const { guard } = guardOn(client);
    await expect(guard.run(effect('a', permitAt(0)), async () => 1)).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
  });

  it('another provider defining the flag at all makes the log facts unusable: refused (drain degrades)', async () => {
    const { client, admitted } = await multi(killFlag(false));
    expect(admitted).toBeUndefined();
    const { guard } = guardOn(client);
    await expect(guard.run(effect('a', permitAt(0)), async () => 1)).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
  });
});

describe('KS-4.8.4 while a drained effect runs', () => {
  it('another drain halt does not abort it; a discard halt then does, at once', async () => {
    const h = await harness();
    const { guard, ledger } = guardOn(h.client);
    const permit = permitAt(seqOf(h));
    await h.halt({ tenant: 'acme' }, 'drain');
    let release!: () => void;
    let signal!: AbortSignal;
    const started = new Promise<void>((ok) => {
      release = ok;
    });
    const run = guard.run(effect('slow', permit), (s) => {
      signal = s;
      release();
      return new Promise<string>(() => undefined); // ignores the signal, never settles
    });
    const outcome = run.catch((e: unknown) => e);
    await started;
    await h.halt({ capability: 'email.send' }, 'drain');
    await settle(10);
    expect(signal.aborted).toBe(false);
    const discardSeq = await h.halt({ runId: 'run-1' }, 'discard');
    const err = await outcome;
    expect(err).toMatchObject({ code: 'KS_ABORTED' });
    expect((err as HaltedError).flip?.seq).toBeLessThanOrEqual(discardSeq);
    expect(signal.aborted).toBe(true);
    await guard.flush();
    const [entry] = await ledger.entries();
    expect(entry?.history.map((e) => e.status)).toEqual(['intent', 'aborted']);
  });

  it('an effect that started with no halt is not aborted by a drain halt its permit covers', async () => {
    const h = await harness();
    const { guard } = guardOn(h.client);
    const permit = permitAt(seqOf(h));
    let finish!: (v: string) => void;
    let started!: () => void;
    const go = new Promise<void>((ok) => {
      started = ok;
    });
    const run = guard.run(effect('s', permit), () => {
      started();
      return new Promise<string>((ok) => {
        finish = ok;
      });
    });
    await go;
    await h.halt({ tenant: 'acme' }, 'drain');
    await settle(10);
    finish('done');
    await expect(run).resolves.toBe('done');
  });
});

describe('KS-4.8.1 property: the guard dispatches exactly when every matching halt is a drain halt appended after the admission', () => {
  it('agrees with the fold’s matchAll on random halts, resumes and admission points', async () => {
    const selectors: Selector[] = [
      {},
      { tenant: 'acme' },
      { tenant: 'other' },
      { runId: 'run-1' },
      { capability: 'email.send' },
      { tenant: 'acme', capability: 'email.send' },
    ];
    const modes: (QueueMode | undefined)[] = ['drain', 'drain', 'discard', 'hold', undefined];
    const op = fc.record({
      resume: fc.boolean(),
      selector: fc.integer({ min: 0, max: selectors.length - 1 }),
      mode: fc.integer({ min: 0, max: modes.length - 1 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: 8 }),
        fc.nat(),
        async (ops, admitPick) => {
          const h = await killHarness();
          const ledger = new MemorySideEffectLedger();
          const guard = new EffectGuard({ client: h.client, ledger, logger: quiet });
          try {
            for (const o of ops) {
              const s = selectors[o.selector]!;
              if (o.resume) await h.resume(s);
              else await h.halt(s, modes[o.mode]);
            }
            const records = await h.store.read();
            const admitted = admitPick % (records.length + 1);
            const state = KillState.fold(records);
            const ctx = { ...TASK_CTX, capability: 'email.send' };
            const matches = state.matchAll(ctx);
            const expected =
              matches.length === 0 || matches.every((r) => r.mode === 'drain' && r.seq > admitted);
            const ok = await guard
              .run(effect('p', permitAt(admitted)), async () => true)
              .catch(() => false);
            expect(ok).toBe(expected);
            // The pure rule agrees on the decision the guard read.
            const d = await guard.check(ctx);
            if (d.halted) expect(drainPermits(d, permitAt(admitted), ctx)).toBe(expected);
          } finally {
            await guard.close();
            await h.close();
          }
        },
      ),
      {
        numRuns: 60,
        seed: Number(process.env.KS_SEED ?? Date.now() % 2_147_483_647),
        verbose: true,
      },
    );
  }, 60_000);
});

/** A provider whose `kill-switch` answers halted with the given flagMetadata. */
function metadataProvider(metadata: Record<string, string | number | boolean>): Provider {
  const halted: ResolutionDetails<boolean> = {
    value: true,
    variant: 'halted',
    reason: 'TARGETING_MATCH',
    flagMetadata: metadata,
  };
  const fail = (): never => {
    throw new Error('not a boolean flag');
  };
  return {
    metadata: { name: 'metadata-provider' },
    runsOn: 'server',
    resolveBooleanEvaluation: async (_k: string, _d: boolean, _c: EvaluationContext) => halted,
    resolveStringEvaluation: fail,
    resolveNumberEvaluation: fail,
    resolveObjectEvaluation: fail as () => Promise<ResolutionDetails<JsonValue>>,
  } as Provider;
}
