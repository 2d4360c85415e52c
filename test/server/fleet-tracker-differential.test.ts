import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FleetTracker } from '../../src/server/index.js';
import { OracleFleetTracker } from './fleet-tracker-oracle.js';
import { readClock } from '../fixtures/clock.js';

/**
 * KS-6.2.4, KS-6.2.5, KS-13.7: the compact fleet tracker (columns per flip, acks found by binary
 * search, forgetting checked at most once a second) gives the same answers as the reference
 * tracker (a map entry and an object per worker and flip) for any sequence of connects,
 * disconnects, acks, appends and clock steps.
 */
type Op =
  | { op: 'ack'; w: number; seqBack: number; release: string | undefined }
  | { op: 'connect'; w: number }
  | { op: 'disconnect'; w: number }
  | { op: 'append' }
  | { op: 'advance'; ms: number };

/** Worker ids, some of which JSON escapes or writes in more than one UTF-8 byte. */
const ID = ['w0', 'w"1', 'w\\2', 'wé3', 'w4', 'w\n5', 'w\u{1F600}6', 'w7'];

/** Thousandths of a millisecond, 0 to `max` of them. */
const thousandths = (max: number): fc.Arbitrary<number> =>
  fc.integer({ min: 0, max }).map((x) => x / 1000);

/** Operations on a tracker; `advance` steps the clock by what `msArb` draws. */
const opsArb = (msArb: fc.Arbitrary<number>): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        op: fc.constant('ack' as const),
        w: fc.nat(7),
        seqBack: fc.nat(3),
        release: fc.option(fc.constantFrom('v1', 'v2', 'v"3', 'vé'), { nil: undefined }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('connect' as const), w: fc.nat(7) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('disconnect' as const), w: fc.nat(7) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('append' as const) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('advance' as const),
        ms: msArb,
      }),
    },
  );

const opArb = opsArb(fc.oneof(fc.nat(50), fc.integer({ min: 1000, max: 4000 })));

describe('KS-13.7 the compact fleet tracker answers as the reference tracker', () => {
  it('same status, deadlines, workers and ack answers for random histories', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), (ops) => {
        let now = 5_000_000;
        const opts = {
          staleAfterMs: 3000,
          leaseMarginMs: 100,
          // Forgetting is not compared here: the reference forgets on every ack, the compact
          // tracker at most once a second (tested on its own below).
          forgetAfterMs: 10_000_000,
          maxTrackedFlips: 5,
          clock: readClock(() => now),
        };
        const a = new FleetTracker(opts);
        const b = new OracleFleetTracker(opts);
        const closers: (() => void)[][] = Array.from({ length: 8 }, () => []);
        let head = 0;
        for (const o of ops) {
          switch (o.op) {
            case 'ack': {
              const ack = {
                workerId: ID[o.w]!,
                release: o.release,
                seq: Math.max(0, head - o.seqBack),
              };
              expect(a.ack(ack)).toEqual(b.ack(ack));
              break;
            }
            case 'connect': {
              const ca = a.connect(ID[o.w]!);
              const cb = b.connect(ID[o.w]!);
              closers[o.w]!.push(() => {
                ca();
                cb();
              });
              break;
            }
            case 'disconnect':
              closers[o.w]!.shift()?.();
              break;
            case 'append':
              head++;
              a.flipAppended(head);
              b.flipAppended(head);
              break;
            case 'advance':
              now += o.ms;
              break;
          }
          for (let s = Math.max(1, head - 6); s <= head; s++) {
            expect(a.status(s)).toEqual(b.status(s));
            expect(a.nextDeadline(s)).toEqual(b.nextDeadline(s));
            // The flip answer's text, written from the columns, is the status serialised.
            const text = a.statusJson(s);
            expect(text).toBe(a.status(s) === undefined ? undefined : JSON.stringify(a.status(s)));
          }
          expect(a.head).toBe(b.head);
        }
        expect(a.workers()).toEqual(b.workers());
      }),
      { seed: Number(process.env['FC_SEED'] ?? Date.now() % 2 ** 31), verbose: true, numRuns: 300 },
    );
  });

  it('the flip answer text is status() serialised, with times in fractions of a millisecond', () => {
    // Leases, acks and appends at fractional times, and a wall clock a fraction of a millisecond
    // off the monotonic one (as Date.now() and performance.now() are): the labels rounded to the
    // millisecond, neighbouring entries sharing a label or not, ids and releases JSON escapes.
    fc.assert(
      fc.property(
        fc.array(opsArb(fc.oneof(thousandths(3000), fc.nat(4000))), {
          minLength: 1,
          maxLength: 120,
        }),
        thousandths(1000).map((x) => x - 0.5),
        (ops, wallOffset) => {
          let now = 5_000_000.25;
          const t = new FleetTracker({
            clock: { ...readClock(() => now), wallNow: () => now + wallOffset },
          });
          const closers: (() => void)[][] = Array.from({ length: 8 }, () => []);
          let head = 0;
          for (const o of ops) {
            if (o.op === 'ack')
              t.ack({ workerId: ID[o.w]!, release: o.release, seq: Math.max(0, head - o.seqBack) });
            else if (o.op === 'connect') closers[o.w]!.push(t.connect(ID[o.w]!));
            else if (o.op === 'disconnect') closers[o.w]!.shift()?.();
            else if (o.op === 'append') t.flipAppended(++head);
            else now += o.ms;
            for (let s = Math.max(1, head - 6); s <= head; s++) {
              const status = t.status(s);
              expect(t.statusJson(s)).toBe(
                status === undefined ? undefined : JSON.stringify(status),
              );
            }
          }
        },
      ),
      { seed: Number(process.env['FC_SEED'] ?? Date.now() % 2 ** 31), verbose: true, numRuns: 300 },
    );
  });

  it('the flip answer text tells apart two leases labelled the same millisecond, one run out', () => {
    let now = 1000.6;
    const t = new FleetTracker({
      staleAfterMs: 3000,
      leaseMarginMs: 100,
      clock: readClock(() => now),
    });
    t.ack({ workerId: 'a', seq: 0 }); // lease until 4100.6
    now = 1001.4;
    t.ack({ workerId: 'b', seq: 0 }); // lease until 4101.4: the same label, 4101
    t.flipAppended(1);
    now = 4101;
    const laggards = t.status(1)!.laggards;
    expect(laggards.map((l) => [l.leaseExpiresAt, l.leaseExpired])).toEqual([
      [new Date(4101).toISOString(), true],
      [new Date(4101).toISOString(), false],
    ]);
    expect(t.statusJson(1)).toBe(JSON.stringify(t.status(1)));
  });

  it('leaves the flip answer text to status() for a flip with a negative acknowledgement or a match report', () => {
    let now = 1000;
    const t = new FleetTracker({ clock: readClock(() => now) });
    // No worker yet: complete when appended.
    t.flipAppended(1);
    expect(t.statusJson(1)).toBe(JSON.stringify(t.status(1)));
    expect(t.status(1)).toMatchObject({ complete: true, completeAfterMs: 0, laggards: [] });
    for (const w of ['b', 'a', 'c']) t.ack({ workerId: w, release: 'v1', seq: 1 });
    t.flipAppended(2);
    t.flipAppended(3);
    now = 1003;
    t.ack({ workerId: 'c', seq: 2 });
    // Written from the columns: laggards by id, the acknowledged worker, the same text.
    expect(t.statusJson(2)).toBe(JSON.stringify(t.status(2)));
    expect(t.status(2)!.laggards.map((l) => l.workerId)).toEqual(['a', 'b']);
    t.ack({ workerId: 'a', seq: 1, unenforced: [{ seq: 1, reason: 'cannot cut' }] });
    t.ack({ workerId: 'b', seq: 2, matched: [{ seq: 2, inFlight: 1, queued: 0, recent: 0 }] });
    expect(t.statusJson(1)).toBeUndefined();
    expect(t.statusJson(2)).toBeUndefined();
    expect(t.status(1)!.unenforced).toHaveLength(1);
    expect(t.status(2)!.matched).toMatchObject({ workers: 1, inFlight: 1 });
    expect(t.statusJson(4)).toBeUndefined();
  });

  it('a flip appended with an explicit time is recorded at that time', () => {
    let now = 1000;
    const t = new FleetTracker({ clock: readClock(() => now) });
    t.ack({ workerId: 'w', seq: 0 });
    now = 1010;
    t.flipAppended(1, 1005);
    now = 1012;
    t.ack({ workerId: 'w', seq: 1 });
    expect(t.status(1)).toMatchObject({
      appendedAt: new Date(1005).toISOString(),
      complete: true,
      completeAfterMs: 7,
      acknowledged: [{ workerId: 'w', at: new Date(1012).toISOString(), latencyMs: 7 }],
    });
  });

  it('forgets a worker with no stream and no ack for forgetAfterMs (checked at most once a second)', () => {
    let now = 0;
    const t = new FleetTracker({ forgetAfterMs: 5000, clock: readClock(() => now) });
    t.ack({ workerId: 'gone', seq: 0 });
    const close = t.connect('kept');
    now = 5001;
    t.ack({ workerId: 'other', seq: 0 }); // prunes: 'gone' was last seen 5001 ms ago
    expect(t.workers().map((w) => w.id)).toEqual(['kept', 'other']);
    close();
  });

  it('2,000 workers acknowledging one flip are each found and recorded', () => {
    let now = 0;
    const t = new FleetTracker({ clock: readClock(() => now) });
    for (let i = 0; i < 2000; i++) t.ack({ workerId: `w${i}`, seq: 0 });
    t.flipAppended(1);
    for (let i = 0; i < 2000; i++) t.ack({ workerId: `w${i}`, seq: 1 });
    now += 1;
    const s = t.status(1)!;
    expect(s.applied).toBe(2000);
    expect(s.complete).toBe(true);
    expect(s.laggards).toEqual([]);
  });
});
