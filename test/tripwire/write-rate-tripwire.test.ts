import { OpenFeature } from '@openfeature/server-sdk';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { ControlPlaneClient } from '../../src/client/index.js';
import { ErrorCode, HaltedError } from '../../src/errors.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import { ManualClock } from '../../src/internal/clock.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import {
  controlPlaneTripwireFlip,
  storeTripwireFlip,
  TripwireGuard,
  WriteRateTripwire,
  type TripwireFlipRequest,
} from '../../src/tripwire/index.js';

const quiet = { warn: () => {} };
const flush = () => new Promise((r) => setImmediate(r));

function recorder() {
  const calls: TripwireFlipRequest[] = [];
  let fail = 0;
  return {
    calls,
    failNext(n: number) {
      fail = n;
    },
    flip: async (r: TripwireFlipRequest) => {
      calls.push(r);
      if (fail > 0) {
        fail--;
        throw new Error('control plane unreachable');
      }
    },
  };
}

describe('KS-11.4.1 more than limit effects of one scope within the window trips a halt at that scope', () => {
  it('admits limit effects, refuses the next, and asks for one halt with source tripwire and the figures', async () => {
    const clock = new ManualClock({ now: 1_700_000_000_000, wall: 1_700_000_000_000 });
    const r = recorder();
    const t = new WriteRateTripwire({
      by: 'capability',
      limit: 3,
      windowMs: 1000,
      flip: r.flip,
      clock,
      logger: quiet,
    });
    const ctx = { capability: 'payments.refund', tenant: 'acme' };
    for (let i = 0; i < 3; i++) {
      expect(t.admit(ctx).tripped).toBe(false);
      await clock.advance(100);
    }
    const v = t.admit(ctx);
    expect(v).toMatchObject({ tripped: true, selector: { capability: 'payments.refund' } });
    await flush();
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0]).toMatchObject({
      selector: { capability: 'payments.refund' },
      source: 'tripwire',
      mode: 'discard',
    });
    expect(r.calls[0]!.reason).toMatch(
      /^write-rate tripwire: 4 effects on \{capability=payments\.refund\} within 1000 ms \(limit 3;/,
    );
    // Another capability is not affected.
    expect(t.admit({ capability: 'email.send' }).tripped).toBe(false);
    expect(t.trips).toBe(1);
  });

  it('effects spread wider than the window never trip', async () => {
    const clock = new ManualClock({ now: 0, wall: 0 });
    const r = recorder();
    const t = new WriteRateTripwire({
      by: 'tenant',
      limit: 2,
      windowMs: 1000,
      flip: r.flip,
      clock,
    });
    for (let i = 0; i < 50; i++) {
      expect(t.admit({ tenant: 'acme', capability: 'x' }).tripped).toBe(false);
      await clock.advance(501);
    }
    expect(r.calls).toHaveLength(0);
    // Effects without the scope attribute are not counted.
    for (let i = 0; i < 10; i++) expect(t.admit({ capability: 'x' }).tripped).toBe(false);
  });

  it('counts per tenant when told to, and halts that tenant', async () => {
    const clock = new ManualClock({ now: 0, wall: 0 });
    const r = recorder();
    const t = new WriteRateTripwire({
      by: 'tenant',
      limit: 1,
      windowMs: 60_000,
      flip: r.flip,
      clock,
      mode: 'hold',
    });
    t.admit({ tenant: 'acme', capability: 'a' });
    expect(t.admit({ tenant: 'acme', capability: 'b' }).tripped).toBe(true);
    await flush();
    expect(r.calls[0]).toMatchObject({ selector: { tenant: 'acme' }, mode: 'hold' });
  });

  it('rejects bad options at construction, naming the option', () => {
    const flip = async () => {};
    expect(
      () => new WriteRateTripwire({ by: 'runId' as never, limit: 1, windowMs: 1, flip }),
    ).toThrow(/option by/);
    expect(() => new WriteRateTripwire({ by: 'tenant', limit: 0, windowMs: 1, flip })).toThrow(
      /option limit/,
    );
    expect(() => new WriteRateTripwire({ by: 'tenant', limit: 1, windowMs: 1.5, flip })).toThrow(
      /option windowMs/,
    );
    expect(
      () => new WriteRateTripwire({ by: 'tenant', limit: 1, windowMs: 1, flip: 'no' as never }),
    ).toThrow(/option flip/);
  });
});

describe('KS-11.4.2 KS-11.4.3 the scope stays refused until the halt is in force; a failed flip is retried with the same id', () => {
  it('refuses the scope while the flip fails, retries it with one id, and lets go latchMs after it succeeded', async () => {
    const clock = new ManualClock({ now: 0, wall: 0 });
    const r = recorder();
    r.failNext(2);
    const t = new WriteRateTripwire({
      by: 'capability',
      limit: 1,
      windowMs: 1000,
      flip: r.flip,
      clock,
      retryMs: 500,
      latchMs: 3000,
      logger: quiet,
    });
    const ctx = { capability: 'payments.refund' };
    t.admit(ctx);
    expect(t.admit(ctx).tripped).toBe(true);
    await flush();
    expect(r.calls).toHaveLength(1);
    // Failing: still refused, long after the window and the latch would have passed.
    await clock.advance(499);
    expect(t.admit(ctx).tripped).toBe(true);
    await clock.advance(1);
    await flush();
    expect(r.calls).toHaveLength(2);
    await clock.advance(500);
    await flush();
    expect(r.calls).toHaveLength(3);
    expect(new Set(r.calls.map((c) => c.id)).size).toBe(1);
    // Succeeded at t=1000: refused for latchMs more, then admitted again (counts start over).
    await clock.advance(2999);
    expect(t.admit(ctx).tripped).toBe(true);
    await clock.advance(1);
    expect(t.admit(ctx).tripped).toBe(false);
    expect(t.trips).toBe(1);
  });
});

describe('KS-11.4.1 the tripwire in front of a real guard', () => {
  afterAll(async () => {
    await OpenFeature.close();
  });

  it('halts the capability in the log, refuses (and records) the crossing effect, then the guard refuses on its own; refused retries do not trip again', async () => {
    const store = new MemoryFlipLogStore();
    await store.open();
    await OpenFeature.setProviderAndWait('tripwire-guard', KillSwitchProvider.fromStore(store));
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({
      client: OpenFeature.getClient('tripwire-guard'),
      ledger,
      logger: quiet,
    });
    const clock = new ManualClock({
      now: Date.parse('2026-11-24T03:00:00.000Z'),
      wall: Date.parse('2026-11-24T03:00:00.000Z'),
    });
    const tripwire = new WriteRateTripwire({
      by: 'capability',
      limit: 5,
      windowMs: 10_000,
      latchMs: 2000,
      flip: storeTripwireFlip(store),
      clock,
    });
    const guarded = new TripwireGuard({ guard, tripwires: [tripwire], ledger });
    const effect = (step: string) => ({
      context: { tenant: 'acme' },
      runId: 'run-1',
      step,
      capability: 'payments.refund',
    });
    let dispatched = 0;
    const body = async () => {
      dispatched++;
      return 'ok';
    };
    for (let i = 0; i < 5; i++) expect(await guarded.run(effect(`s${i}`), body)).toBe('ok');
    const err = await guarded.run(effect('s5'), body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HaltedError);
    expect(err).toMatchObject({ code: ErrorCode.HALTED });
    expect((err as Error).message).toContain('write-rate tripwire: 6 effects');
    expect(dispatched).toBe(5);
    await flush();
    const records = await store.read();
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      actor: 'tripwire',
      source: 'tripwire',
      selector: { capability: 'payments.refund' },
    });
    const [refusal] = await ledger.entries({
      key: (await ledger.entries()).find((e) => e.step === 's5')!.key,
    });
    expect(refusal?.status).toBe('refused');

    // After the latch the guard refuses through the flag; those attempts do not count.
    await clock.advance(2000);
    for (let i = 0; i < 20; i++) {
      const e = await guarded.run(effect(`later-${i}`), body).catch((x: unknown) => x);
      expect(e).toMatchObject({
        code: ErrorCode.HALTED,
        // Named by the guard through the flag (a tripwire refusal names no flip).
        flip: expect.objectContaining({ seq: 1, actor: 'tripwire' }),
      });
    }
    expect(dispatched).toBe(5);
    expect(await store.read()).toHaveLength(1);
    expect(tripwire.trips).toBe(1);
    await guard.close();
  });
});

describe('KS-11.4.1 the tripwire flips through the control plane API', () => {
  let cp: ControlPlane | undefined;
  afterEach(async () => {
    await cp?.close();
  });

  it('the halt is appended with the token as actor and source tripwire; a retry with the same id is one flip', async () => {
    const store = new MemoryFlipLogStore();
    const token = 'tripwire-operator-0123456789';
    cp = await startControlPlane({
      store,
      port: 0,
      auth: new TokenAuthenticator({
        tokens: [
          {
            name: 'tripwire-bot',
            token,
            role: 'operator',
            scopes: [{ capability: 'payments.refund' }],
          },
        ],
      }),
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    const flip = controlPlaneTripwireFlip(new ControlPlaneClient({ url: cp.url, token }));
    const request: TripwireFlipRequest = {
      id: 'tripwire-capability-test-1',
      selector: { capability: 'payments.refund' },
      reason: 'write-rate tripwire: 101 effects within 1000 ms (limit 100)',
      mode: 'discard',
      source: 'tripwire',
    };
    await flip(request);
    await flip(request);
    const records = await store.read();
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ actor: 'tripwire-bot', source: 'tripwire', id: request.id });
    // Out of the token's scope: the flip fails, so the tripwire would keep refusing and retry.
    await expect(
      flip({ ...request, id: 'other', selector: { capability: 'email.send' } }),
    ).rejects.toThrow(/may not flip/);
  });
});

describe('KS-11.4.1 KS-11.4.3 property: the tripwire trips exactly when a window holds more than limit effects, and stays tripped', () => {
  it('matches a naive sliding-window count for random arrival times, limits and windows (fast-check, seed printed on failure)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 500 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 60 }),
        async (limit, windowMs, gaps) => {
          const clock = new ManualClock({ now: 0, wall: 0 });
          // A flip that never answers: the scope must stay refused (fail closed).
          const t = new WriteRateTripwire({
            by: 'tenant',
            limit,
            windowMs,
            flip: () => new Promise<void>(() => {}),
            clock,
          });
          const times: number[] = [];
          let now = 0;
          let tripped = false;
          for (const gap of gaps) {
            now += gap;
            await clock.advance(gap);
            const v = t.admit({ tenant: 'acme' });
            if (!tripped) {
              times.push(now);
              const inWindow = times.filter((x) => x > now - windowMs).length;
              tripped = inWindow > limit;
            }
            expect(v.tripped).toBe(tripped);
          }
          expect(t.trips).toBe(tripped ? 1 : 0);
        },
      ),
    );
  });
});
