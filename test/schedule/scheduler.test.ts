import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Client } from '@openfeature/server-sdk';
import { HaltedError, InvalidOptionError, KillSwitchError } from '../../src/errors.js';
import { HaltWatcher } from '../../src/guard/halt-watcher.js';
import { MemorySideEffectLedger } from '../../src/ledger/memory-side-effect-ledger.js';
import type { KillContext, Selector } from '../../src/model/selector.js';
import { selectorMatches } from '../../src/model/selector.js';
import { ManualClock } from '../../src/internal/clock.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { backoffDelay, resolveRetryPolicy } from '../../src/schedule/retry-policy.js';
import { inMemoryKill, killHarness, settle, type KillHarness } from './kill-harness.js';

let h: KillHarness;
let clock: ManualClock;
let ledger: MemorySideEffectLedger;
let scheduler: Scheduler;

beforeEach(async () => {
  h = await killHarness();
  clock = new ManualClock({
    now: Date.parse('2026-01-01T00:00:00.000Z'),
    wall: Date.parse('2026-01-01T00:00:00.000Z'),
  });
  ledger = new MemorySideEffectLedger();
  scheduler = new Scheduler({ watcher: h.watcher, ledger, clock, random: () => 0 });
});

afterEach(async () => {
  await scheduler.close();
  await h.close();
});

const policy = { maxAttempts: 5, backoff: { baseMs: 1_000, factor: 2, maxMs: 60_000, jitter: 0 } };

/** Captures a promise's settlement without letting it become an unhandled rejection. */
function capture<T>(p: Promise<T>) {
  const out: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  p.then(
    (v) => Object.assign(out, { settled: true, value: v }),
    (e: unknown) => Object.assign(out, { settled: true, error: e }),
  );
  return out;
}

/** A client whose event handlers are never called: a halt's event is "missed". */
function deaf(client: Client): Client {
  return new Proxy(client, {
    get(target, prop) {
      if (prop === 'addHandler' || prop === 'removeHandler') return () => undefined;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('KS-7.1.1 KS-7.1.2 a halt cancels a pending retry at once and the retry never fires', () => {
  it('rejects the caller with KS_ABORTED, clears the sleep, records cancelled, and makes no further attempt', async () => {
    const ctx = { tenant: 'acme', runId: 'r1' };
    let calls = 0;
    const result = capture(
      scheduler.retry(
        ctx,
        async () => {
          calls++;
          throw new Error('503');
        },
        policy,
        { step: 'llm' },
      ),
    );
    await clock.advance(0);
    expect(calls).toBe(1);
    expect(clock.pending).toBe(1); // the back-off sleep before attempt 2
    const seq = await h.halt({ tenant: 'acme' });
    expect(result.settled).toBe(true);
    expect(result.error).toBeInstanceOf(HaltedError);
    expect((result.error as HaltedError).code).toBe('KS_ABORTED');
    expect((result.error as HaltedError).flip?.seq).toBe(seq);
    expect(clock.pending).toBe(0);
    await clock.advance(10 * 60_000); // "ten minutes after we stopped"
    expect(calls).toBe(1);
    await scheduler.flush();
    const [entry] = await ledger.entries({ runId: 'r1' });
    expect(entry?.status).toBe('cancelled');
    expect(entry?.key).toBe('r1/llm#retry');
    expect(entry?.last.flipSeq).toBe(seq);
    expect(entry?.last.detail).toMatch(/retry attempt 2 cancelled due at/);
  });

  it('a retry loop that keeps failing without a halt makes exactly maxAttempts attempts on the back-off schedule', async () => {
    const at: number[] = [];
    const start = clock.now();
    const result = capture(
      scheduler.retry(
        { runId: 'r2' },
        async () => {
          at.push(clock.now() - start);
          throw new Error('boom');
        },
        { maxAttempts: 4, backoff: { baseMs: 100, factor: 2, maxMs: 300, jitter: 0 } },
      ),
    );
    await clock.advance(10_000);
    expect(at).toEqual([0, 100, 300, 600]);
    expect((result.error as Error).message).toBe('boom');
    expect(await ledger.entries()).toEqual([]);
  });
});

describe('KS-7.1.1 a halt cancels pending timers; KS-7.1.8 a tenant halt leaves other tenants alone', () => {
  it('no timer of the halted tenant fires, every other tenant fires, and the ledger lists exactly the cancelled ones', async () => {
    const fired: string[] = [];
    const acme = [1, 2, 3].map((i) =>
      scheduler.schedule({ tenant: 'acme', runId: `a${i}` }, i * 1_000, () => fired.push(`a${i}`), {
        step: 'remind',
      }),
    );
    const beta = [1, 2].map((i) =>
      scheduler.schedule({ tenant: 'beta', runId: `b${i}` }, i * 1_000, () => fired.push(`b${i}`), {
        step: 'remind',
      }),
    );
    await clock.advance(500);
    expect(scheduler.pending()).toEqual({ retries: 0, timers: 5 });
    const seq = await h.halt({ tenant: 'acme' }, 'hold');
    expect(scheduler.pending({ tenant: 'acme' })).toEqual({ retries: 0, timers: 0 });
    expect(scheduler.pending({ tenant: 'beta' })).toEqual({ retries: 0, timers: 2 });
    for (const t of acme) {
      await expect(t.done).rejects.toMatchObject({
        code: 'KS_ABORTED',
        flip: { seq, mode: 'hold' },
      });
      expect(t.state).toBe('cancelled');
    }
    await clock.advance(60_000);
    expect(fired.sort()).toEqual(['b1', 'b2']);
    for (const t of beta) expect(t.state).toBe('fired');
    await scheduler.flush();
    const entries = await ledger.entries();
    expect(entries.map((e) => [e.runId, e.status, e.last.flipSeq])).toEqual([
      ['a1', 'cancelled', seq],
      ['a2', 'cancelled', seq],
      ['a3', 'cancelled', seq],
    ]);
  });

  it('a timer whose callback is running when the halt lands is aborted: the signal fires and the caller is freed', async () => {
    let seen: AbortSignal | undefined;
    const t = scheduler.schedule({ runId: 'slow' }, 10, (signal) => {
      seen = signal;
      return new Promise<never>(() => undefined); // ignores the signal, never settles
    });
    await clock.advance(10);
    expect(t.state).toBe('running');
    await h.halt({ runId: 'slow' });
    await expect(t.done).rejects.toMatchObject({ code: 'KS_ABORTED' });
    expect(seen?.aborted).toBe(true);
    expect(t.state).toBe('aborted');
    await scheduler.flush();
    expect((await ledger.entries())[0]?.status).toBe('aborted');
  });

  it('KS-7.1.7 a timer set while its context is halted is refused (ledger refused) and never fires', async () => {
    await h.halt({ feature: 'digest' });
    let fired = false;
    const t = scheduler.schedule({ feature: 'digest' }, 1_000, () => (fired = true));
    await settle();
    await expect(t.done).rejects.toMatchObject({ code: 'KS_HALTED' });
    await clock.advance(5_000);
    expect(fired).toBe(false);
    await scheduler.flush();
    expect((await ledger.entries())[0]?.status).toBe('refused');
  });

  it('cancel() by the owner stops a timer without a ledger record and rejects with KS_CANCELLED', async () => {
    let fired = false;
    const t = scheduler.schedule({ runId: 'x' }, 1_000, () => (fired = true));
    expect(scheduler.cancel(t.id)).toBe(true);
    await expect(t.done).rejects.toMatchObject({ code: 'KS_CANCELLED' });
    await clock.advance(5_000);
    expect(fired).toBe(false);
    expect(t.cancel()).toBe(false);
    expect(await ledger.entries()).toEqual([]);
  });
});

describe('KS-7.1.3 the kill flag is evaluated again before each attempt and each callback (a missed event still stops it)', () => {
  let deafScheduler: Scheduler;
  let deafWatcher: HaltWatcher;
  beforeEach(() => {
    deafWatcher = new HaltWatcher(deaf(h.client));
    deafScheduler = new Scheduler({ watcher: deafWatcher, ledger, clock, random: () => 0 });
  });
  afterEach(async () => {
    await deafScheduler.close();
    deafWatcher.close();
  });

  it('a timer due after a halt whose event was missed does not run its callback', async () => {
    let fired = false;
    const t = deafScheduler.schedule({ tenant: 'acme' }, 1_000, () => (fired = true));
    await settle();
    await h.halt({ tenant: 'acme' });
    expect(t.state).toBe('pending'); // the event never reached this watcher
    await clock.advance(1_000);
    await expect(t.done).rejects.toMatchObject({ code: 'KS_ABORTED' });
    expect(fired).toBe(false);
    await deafScheduler.flush();
    expect((await ledger.entries())[0]?.status).toBe('cancelled');
  });

  it('a retry due after a halt whose event was missed makes no further attempt', async () => {
    let calls = 0;
    const result = capture(
      deafScheduler.retry(
        { tenant: 'acme' },
        async () => {
          calls++;
          throw new Error('503');
        },
        policy,
      ),
    );
    await clock.advance(0);
    await h.halt({ tenant: 'acme' });
    expect(result.settled).toBe(false);
    await clock.advance(60_000);
    expect(calls).toBe(1);
    expect((result.error as HaltedError).code).toBe('KS_ABORTED');
  });

  it('a context halted before the first attempt is refused with KS_HALTED and the attempt never runs', async () => {
    await h.halt({});
    let calls = 0;
    await expect(
      deafScheduler.retry({ runId: 'r9' }, async () => {
        calls++;
        return 1;
      }),
    ).rejects.toMatchObject({ code: 'KS_HALTED', haltCause: 'halted' });
    expect(calls).toBe(0);
    await deafScheduler.flush();
    expect((await ledger.entries())[0]?.status).toBe('refused');
  });
});

describe('KS-7.1.4 a halt during an attempt aborts its signal and frees the caller; KS-7.1.5 halt errors are not retried', () => {
  it('frees the caller without waiting for an attempt that ignores its signal', async () => {
    let signal: AbortSignal | undefined;
    const result = capture(
      scheduler.retry(
        { capability: 'payments.refund' },
        (s) => {
          signal = s;
          return new Promise<never>(() => undefined);
        },
        policy,
      ),
    );
    await settle();
    await h.halt({ capability: 'payments.refund' });
    expect((result.error as HaltedError).code).toBe('KS_ABORTED');
    expect(signal?.aborted).toBe(true);
    await scheduler.flush();
    expect((await ledger.entries())[0]?.status).toBe('aborted');
  });

  it('an attempt that throws KS_HALTED (the guard refused) is not retried', async () => {
    let calls = 0;
    const err = new HaltedError('KS_HALTED', 'refused', 'halted', undefined);
    await expect(
      scheduler.retry(
        { runId: 'g' },
        async () => {
          calls++;
          throw err;
        },
        policy,
      ),
    ).rejects.toBe(err);
    expect(calls).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it('retryOn can stop retrying errors that will not heal', async () => {
    let calls = 0;
    await expect(
      scheduler.retry(
        { runId: 'g' },
        async () => {
          calls++;
          throw new Error('400');
        },
        policy,
        { retryOn: (e) => (e as Error).message !== '400' },
      ),
    ).rejects.toThrow('400');
    expect(calls).toBe(1);
  });
});

describe('KS-7.1.9 any OpenFeature backend: a plain InMemoryProvider halt cancels timers too', () => {
  it('cancels the timer; the error names no flip because the backend named none', async () => {
    let acmeHalted = false;
    const mem = await inMemoryKill((ctx) => acmeHalted && ctx.tenant === 'acme');
    const s = new Scheduler({ watcher: mem.watcher, ledger, clock });
    try {
      let fired = false;
      const t = s.schedule({ tenant: 'acme' }, 1_000, () => (fired = true));
      await settle();
      acmeHalted = true;
      mem.provider.putConfiguration({
        'kill-switch': {
          variants: { on: true, off: false },
          defaultVariant: 'off',
          disabled: false,
          contextEvaluator: (ctx) => (ctx.tenant === 'acme' ? 'on' : 'off'),
        },
      });
      await settle();
      await expect(t.done).rejects.toMatchObject({ code: 'KS_ABORTED', flip: undefined });
      await clock.advance(2_000);
      expect(fired).toBe(false);
    } finally {
      await s.close();
      mem.watcher.close();
      await mem.close();
    }
  });
});

describe('KS-7.1.10 retry policies are validated at the call and back-off stays within bounds', () => {
  it('refuses bad policies with KS_INVALID_OPTION naming the field', async () => {
    const bad = [
      [{ maxAttempts: 0 }, 'policy.maxAttempts'],
      [{ backoff: { factor: 0.5 } }, 'policy.backoff.factor'],
      [{ backoff: { baseMs: 100, maxMs: 10 } }, 'policy.backoff.maxMs'],
      [{ backoff: { jitter: 2 } }, 'policy.backoff.jitter'],
    ] as const;
    for (const [p, option] of bad) {
      await expect(scheduler.retry({}, async () => 1, p)).rejects.toMatchObject({
        code: 'KS_INVALID_OPTION',
        option,
      });
    }
    expect(() => scheduler.schedule({}, -1, () => 1)).toThrow(InvalidOptionError);
    expect(() => new Scheduler({ watcher: undefined as never, ledger })).toThrow(/option watcher/);
  });

  it('every delay is within [raw * (1 - jitter), min(maxMs, raw)]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5_000 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 30 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (baseMs, factor, extra, jitter, failed, r) => {
          const p = resolveRetryPolicy({
            backoff: { baseMs, factor, maxMs: baseMs + extra, jitter },
          });
          const raw = Math.min(baseMs + extra, baseMs * factor ** (failed - 1));
          const d = backoffDelay(p, failed, () => r);
          return d <= Math.round(raw) && d >= Math.floor(raw * (1 - jitter)) - 1;
        },
      ),
      { verbose: true },
    );
  });
});

describe('KS-7.1.8 property: after a halt no matching timer fires and every other one does', () => {
  it('holds for random timers, contexts and halt selectors', async () => {
    const tenants = ['a', 'b'];
    const arbCtx = fc.record({
      tenant: fc.constantFrom(...tenants),
      runId: fc.constantFrom('r1', 'r2', 'r3'),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ ctx: arbCtx, delay: fc.integer({ min: 1, max: 5_000 }) }), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.integer({ min: 0, max: 5_000 }),
        fc.constantFrom<Selector>(
          { tenant: 'a' },
          { runId: 'r2' },
          { tenant: 'b', runId: 'r1' },
          {},
        ),
        async (items, haltAt, selector) => {
          const hh = await killHarness();
          const t = new ManualClock({ now: 0, wall: 0 });
          const s = new Scheduler({
            watcher: hh.watcher,
            ledger: new MemorySideEffectLedger(),
            clock: t,
          });
          try {
            const firedAt: { ctx: KillContext; at: number }[] = [];
            for (const it of items)
              s.schedule(it.ctx, it.delay, () => firedAt.push({ ctx: it.ctx, at: t.now() }));
            await t.advance(haltAt);
            await hh.halt(selector);
            const haltTime = t.now();
            await t.advance(10_000);
            for (const f of firedAt) {
              if (selectorMatches(selector, f.ctx)) expect(f.at).toBeLessThanOrEqual(haltTime);
            }
            const expected = items.filter(
              (i) => i.delay <= haltAt || !selectorMatches(selector, i.ctx),
            ).length;
            expect(firedAt.length).toBe(expected);
          } finally {
            await s.close();
            await hh.close();
          }
        },
      ),
      { numRuns: 40, verbose: true },
    );
  });
});

describe('KS-7.1.11 close() cancels everything pending', () => {
  it('rejects pending work with KS_CANCELLED and refuses new work', async () => {
    const t = scheduler.schedule({ runId: 'c' }, 1_000, () => 1);
    await scheduler.close();
    await expect(t.done).rejects.toMatchObject({ code: 'KS_CANCELLED' });
    expect(() => scheduler.schedule({}, 1, () => 1)).toThrow(KillSwitchError);
  });
});

describe('KS-7.1.1 a ledger that cannot be written does not keep a cancelled timer alive', () => {
  it('cancels and frees the caller anyway; flush() reports the write error', async () => {
    const failing = {
      append: () => Promise.reject(new Error('disk full')),
      entries: () => Promise.resolve([]),
      close: () => Promise.resolve(),
    };
    const warnings: string[] = [];
    const s = new Scheduler({
      watcher: h.watcher,
      ledger: failing,
      clock,
      logger: { warn: (m) => warnings.push(m) },
    });
    let fired = false;
    const t = s.schedule({ tenant: 'acme' }, 1_000, () => (fired = true));
    await settle();
    await h.halt({ tenant: 'acme' });
    await expect(t.done).rejects.toMatchObject({ code: 'KS_ABORTED' });
    await clock.advance(5_000);
    expect(fired).toBe(false);
    await expect(s.flush()).rejects.toThrow('disk full');
    expect(warnings.join()).toMatch(/could not record cancelled/);
    await s.close();
  });
});
