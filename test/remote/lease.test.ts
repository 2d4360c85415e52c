/**
 * KS-6.2.2 KS-6.3.6 KS-6.3.11 the remote source's lease as pure functions: plain numbers in,
 * a verdict out; no clock, no timer, so no wall-clock step can reach them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { freshness, renewedLease, type LeaseFacts } from '../../providers/remote/lease.js';

const fresh: LeaseFacts = {
  diverged: undefined,
  hasState: true,
  resyncing: undefined,
  leaseUntil: 3000,
  lastReceived: 1000,
  staleAfterMs: 3000,
};

describe('KS-6.2.2 an acknowledgement answer renews the lease from its send time', () => {
  it('to sentAt + the smaller of the two bounds when not behind the head', () => {
    const ack = { sentAt: 100, ackedSeq: 3, head: 3, serverStaleAfterMs: 5000 };
    expect(renewedLease(Number.NEGATIVE_INFINITY, ack, 2000)).toBe(2100);
    expect(renewedLease(Number.NEGATIVE_INFINITY, { ...ack, serverStaleAfterMs: 1500 }, 2000)).toBe(
      1600,
    );
  });

  it('not at all when the server is ahead of what was acknowledged (behind: catch up first)', () => {
    const ack = { sentAt: 100, ackedSeq: 3, head: 4, serverStaleAfterMs: 3000 };
    expect(renewedLease(500, ack, 3000)).toBe(500);
  });

  it('never shortens a lease, whatever order answers arrive in (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(10_000), fc.nat(3), fc.nat(3), fc.integer({ min: 1, max: 5000 }))),
        fc.integer({ min: 1, max: 5000 }),
        (answers, stale) => {
          let lease = Number.NEGATIVE_INFINITY;
          for (const [sentAt, ackedSeq, head, server] of answers) {
            const next = renewedLease(
              lease,
              { sentAt, ackedSeq, head, serverStaleAfterMs: server },
              stale,
            );
            expect(next).toBeGreaterThanOrEqual(lease);
            // Only an answer that was not ahead of the ack renews, and never beyond its own bound.
            if (next !== lease) {
              expect(head).toBeLessThanOrEqual(ackedSeq);
              expect(next).toBe(sentAt + Math.min(stale, server));
            }
            lease = next;
          }
        },
      ),
    );
  });
});

describe('KS-6.3.6 KS-6.3.11 freshness is decided from monotonic readings alone', () => {
  it('fresh until the earlier of the lease end and the silence bound', () => {
    expect(freshness(fresh, 2000)).toEqual({ fresh: true, until: 3000 });
    expect(freshness({ ...fresh, leaseUntil: 9000 }, 2000)).toEqual({ fresh: true, until: 4000 });
  });

  it('fails closed at the lease end exactly, and when the stream was silent for staleAfterMs', () => {
    expect(freshness(fresh, 2999).fresh).toBe(true);
    expect(freshness(fresh, 3000)).toEqual({
      fresh: false,
      reason: 'lease ran out (no acknowledgement renewed it)',
    });
    expect(freshness({ ...fresh, leaseUntil: 9000 }, 4000)).toEqual({
      fresh: false,
      reason: 'nothing received for 3000 ms',
    });
  });

  it('names the first cause: another log, then no state, then a resynchronisation', () => {
    expect(freshness({ ...fresh, diverged: 'log X moved backwards', hasState: false }, 0)).toEqual({
      fresh: false,
      reason: 'log X moved backwards',
    });
    expect(freshness({ ...fresh, hasState: false, resyncing: 'gap' }, 0)).toEqual({
      fresh: false,
      reason: 'no state yet',
    });
    expect(freshness({ ...fresh, resyncing: 'a gap after seq 4' }, 0)).toEqual({
      fresh: false,
      reason: 'resynchronising: a gap after seq 4',
    });
  });

  it('is never fresh at or after the lease end, whatever the other facts (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -1e9, max: 1e9 }),
        fc.integer({ min: -1e9, max: 1e9 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.integer({ min: 0, max: 1e6 }),
        (leaseUntil, lastReceived, staleAfterMs, after) => {
          const facts = { ...fresh, leaseUntil, lastReceived, staleAfterMs };
          expect(freshness(facts, leaseUntil + after).fresh).toBe(false);
          expect(freshness(facts, lastReceived + staleAfterMs + after).fresh).toBe(false);
        },
      ),
    );
  });
});
