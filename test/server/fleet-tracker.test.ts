import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FleetTracker } from '../../src/server/index.js';
import { readClock } from '../fixtures/clock.js';

/** Answers carry times as ISO 8601 labels (KS-5.1.15). */
const iso = (ms: number) => new Date(ms).toISOString();

function setup(opts: { staleAfterMs?: number; leaseMarginMs?: number } = {}) {
  let now = 1_000_000;
  const t = new FleetTracker({
    staleAfterMs: 3000,
    leaseMarginMs: 100,
    ...opts,
    clock: readClock(() => now),
  });
  return {
    t,
    at: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('KS-6.2.4 a worker counts as stopped at its first ack with seq >= s', () => {
  it('acks after the append mark the worker stopped at their receive time', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'w1', seq: 0 });
    t.ack({ workerId: 'w2', seq: 0 });
    advance(10);
    t.flipAppended(1);
    const appendedAt = at();
    advance(5);
    t.ack({ workerId: 'w1', seq: 1 });
    let s = t.status(1)!;
    expect(s.complete).toBe(false);
    expect(s.applied).toBe(1);
    expect(s.acknowledged).toEqual([{ workerId: 'w1', at: iso(appendedAt + 5), latencyMs: 5 }]);
    expect(s.laggards.map((l) => l.workerId)).toEqual(['w2']);
    advance(7);
    t.ack({ workerId: 'w2', seq: 3 });
    s = t.status(1)!;
    expect(s).toMatchObject({
      complete: true,
      completeAt: iso(appendedAt + 12),
      completeAfterMs: 12,
      applied: 2,
      laggards: [],
    });
  });

  it('an ack with a lower seq renews nothing for the flip and leaves the worker a laggard', () => {
    const { t, advance } = setup();
    t.ack({ workerId: 'w1', seq: 0 });
    t.flipAppended(1);
    advance(1);
    const answer = t.ack({ workerId: 'w1', seq: 0 });
    // The answer's head tells the worker it is behind (KS-6.2.2).
    expect(answer.head).toBe(1);
    expect(t.status(1)!.complete).toBe(false);
  });
});

describe('KS-6.2.4 a silent worker counts as stopped when its lease runs out', () => {
  it('complete at last ack before the append + staleAfterMs + leaseMarginMs', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'fast', seq: 0 });
    t.ack({ workerId: 'silent', seq: 0 });
    const silentAck = at();
    advance(500);
    t.flipAppended(1);
    advance(2);
    t.ack({ workerId: 'fast', seq: 1 });
    advance(2597);
    expect(t.status(1)!.complete).toBe(false);
    expect(t.nextDeadline(1)).toBe(silentAck + 3100);
    advance(1);
    const s = t.status(1)!;
    expect(s.complete).toBe(true);
    expect(s.completeAt).toBe(iso(silentAck + 3100));
    expect(s.completeAfterMs).toBe(2600);
    expect(s.laggards).toEqual([
      {
        workerId: 'silent',
        lastAckSeq: 0,
        leaseExpiresAt: iso(silentAck + 3100),
        leaseExpired: true,
      },
    ]);
  });

  it('an ack arriving after the lease ran out does not move the complete time', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'w', seq: 0 });
    const last = at();
    t.flipAppended(1);
    advance(5000);
    t.ack({ workerId: 'w', seq: 1 });
    expect(t.status(1)).toMatchObject({ complete: true, completeAt: iso(last + 3100), applied: 0 });
  });

  it('workers whose lease had run out at the append count as stopped at once', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'gone', seq: 0 });
    const close = t.connect('never-acked', 'v1');
    advance(3100);
    t.flipAppended(1);
    const s = t.status(1)!;
    expect(s).toMatchObject({
      complete: true,
      completeAt: iso(at()),
      completeAfterMs: 0,
      laggards: [],
    });
    expect(s.alreadyStale).toEqual([{ workerId: 'never-acked', release: 'v1' }]);
    close();
  });
});

describe('KS-6.2.5 complete is the moment every worker counts as stopped (property)', () => {
  it('completeAt equals the latest per-worker stop time, computed independently', () => {
    const arb = fc.record({
      workers: fc.array(
        fc.record({
          lastAckAgo: fc.integer({ min: 0, max: 4000 }),
          ackAfter: fc.option(fc.integer({ min: 0, max: 5000 })),
        }),
        { minLength: 0, maxLength: 8 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ workers }) => {
        const { t, advance, at } = setup();
        // Place each worker's last ack in time order before the append.
        const order = workers
          .map((w, i) => ({ ...w, id: `w${i}` }))
          .sort((a, b) => b.lastAckAgo - a.lastAckAgo);
        const start = at();
        const maxAgo = Math.max(0, ...order.map((w) => w.lastAckAgo));
        for (const w of order) {
          const when = start + (maxAgo - w.lastAckAgo);
          advance(when - at());
          t.ack({ workerId: w.id, seq: 0 });
        }
        advance(start + maxAgo - at());
        const appendedAt = at();
        t.flipAppended(1);
        const acks = order
          .filter((w) => w.ackAfter !== null)
          .map((w) => ({ id: w.id, at: appendedAt + w.ackAfter! }))
          .sort((a, b) => a.at - b.at);
        for (const a of acks) {
          advance(a.at - at());
          t.ack({ workerId: a.id, seq: 1 });
        }
        advance(10_000);
        // The oracle: KS-6.2.4 literally, per worker.
        let expected = appendedAt;
        for (const w of order) {
          const lastAck = appendedAt - w.lastAckAgo;
          const lease = lastAck + 3000 + 100;
          if (lease <= appendedAt) continue;
          const ackAt = w.ackAfter === null ? Infinity : appendedAt + w.ackAfter;
          expected = Math.max(expected, Math.min(ackAt, lease));
        }
        const s = t.status(1)!;
        expect(s.complete).toBe(true);
        expect(s.completeAt).toBe(iso(expected));
      }),
      { seed: Number(process.env['FC_SEED'] ?? Date.now() % 2 ** 31), verbose: true },
    );
  });
});

describe('KS-6.2 worker listing', () => {
  it('lists lag, lease expiry and stale from the clock', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'b', release: 'v2', seq: 1 });
    const ackAt = at();
    t.flipAppended(1);
    t.flipAppended(2);
    const close = t.connect('a');
    expect(t.workers()).toEqual([
      {
        id: 'a',
        connected: true,
        connections: 1,
        lastAckSeq: null,
        lastAckAt: null,
        lag: null,
        leaseExpiresAt: null,
        stale: true,
      },
      {
        id: 'b',
        release: 'v2',
        connected: false,
        connections: 0,
        lastAckSeq: 1,
        lastAckAt: iso(ackAt),
        lag: 1,
        leaseExpiresAt: iso(ackAt + 3100),
        stale: false,
      },
    ]);
    advance(3100);
    expect(t.workers()[1]!.stale).toBe(true);
    close();
  });

  it('refuses bad options at construction', () => {
    expect(() => new FleetTracker({ staleAfterMs: 0 })).toThrow(/staleAfterMs/);
    expect(() => new FleetTracker({ leaseMarginMs: -1 })).toThrow(/leaseMarginMs/);
  });
});

describe('KS-6.2.7 the tracker runs on the monotonic clock; its times are wall-clock labels', () => {
  it('a wall clock stepped back 10 minutes or forward an hour moves no lease and no completion', async () => {
    const { ManualClock } = await import('../../src/internal/clock.js');
    const clock = new ManualClock({ now: 50_000, wall: Date.parse('2026-12-05T12:00:00.000Z') });
    const t = new FleetTracker({ staleAfterMs: 3000, leaseMarginMs: 100, clock });
    t.ack({ workerId: 'w1', seq: 0 });
    t.ack({ workerId: 'silent', seq: 0 });
    clock.advanceSync(100);
    t.flipAppended(1);
    const appendedWall = clock.wallNow();
    clock.stepWall(-600_000); // an operator sets the clock back 10 minutes
    clock.advanceSync(50);
    t.ack({ workerId: 'w1', seq: 1 });
    let s = t.status(1)!;
    expect(s.complete).toBe(false);
    expect(s.laggards[0]!.leaseExpired).toBe(false);
    // Labels are wall-clock readings as of now: the append 50 ms before this answer.
    expect(s.appendedAt).toBe(iso(clock.wallNow() - 50));
    expect(s.acknowledged[0]!.latencyMs).toBe(50);
    clock.stepWall(3_600_000); // and an hour forward: the silent worker's lease is not cut short
    clock.advanceSync(2000);
    expect(t.status(1)!.complete).toBe(false);
    expect(t.nextDeadline(1)).toBe(50_000 + 3000 + 100);
    clock.advanceSync(3000 + 100 - 2050); // its lease (ack + 3000 + 100 on the monotonic clock) runs out
    s = t.status(1)!;
    expect(s.complete).toBe(true);
    expect(s.completeAfterMs).toBe(3000);
    expect(appendedWall).toBe(Date.parse('2026-12-05T12:00:00.100Z'));
  });
});
