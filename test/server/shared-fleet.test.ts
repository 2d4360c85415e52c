/**
 * The pure core of the shared fleet (KS-6.6): what another replica's acknowledgements, heartbeats
 * and this replica's barrier mean for a flip's answer, on a manual clock (no sleeping). The
 * over-the-wire proof with real replicas is test/postgres/shared-fleet.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/internal/clock.js';
import { FleetTracker } from '../../src/server/fleet-tracker.js';
import { SharedFleet } from '../../src/server/shared-fleet.js';

const STALE = 3000;
const MARGIN = 100;
const LEASE = STALE + MARGIN;

function setup() {
  const clock = new ManualClock({ now: 10_000 });
  const tracker = new FleetTracker({ clock, staleAfterMs: STALE, leaseMarginMs: MARGIN });
  const fleet = new SharedFleet({
    selfId: 'r-a',
    staleAfterMs: STALE,
    leaseMarginMs: MARGIN,
    replicaTimeoutMs: 1000,
    clock,
  });
  fleet.selfUrl = 'http://a';
  let renewals = 0;
  const beats = new Map<string, number>();
  return {
    clock,
    tracker,
    fleet,
    /** Replica `replica` shared an ack of `seq` committed when the log's head was `head`. */
    ack(
      replica: string,
      workerId: string,
      seq: number,
      head: number,
      unenforced?: { seq: number; reason: string }[],
    ) {
      fleet.onEvent({
        kind: 'acks',
        replica,
        answeredHead: head,
        acks: [
          {
            workerId,
            seq,
            connections: 1,
            renewals: ++renewals,
            ...(unenforced ? { unenforced } : {}),
          },
        ],
      });
    },
    beat(replica: string, head = 0) {
      const b = (beats.get(replica) ?? 0) + 1;
      beats.set(replica, b);
      fleet.onEvent({ kind: 'beat', replica, url: `http://${replica}`, beat: b, head });
    },
    append(seq: number) {
      const at = clock.now();
      tracker.flipAppended(seq, at);
      fleet.flipAppended(seq, at);
    },
    status(seq: number) {
      return fleet.status(seq, tracker.status(seq))!;
    },
  };
}

describe('KS-6.6.2 a remote worker counts as stopped when its acknowledgement is observed', () => {
  it('an acknowledgement shared by replica B completes the flip posted to A, naming B', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    expect(t.status(1).complete).toBe(false);
    expect(t.status(1).laggards).toEqual([
      expect.objectContaining({ workerId: 'w1', replica: 'r-b', leaseExpired: false }),
    ]);
    t.clock.advanceSync(7);
    t.ack('r-b', 'w1', 1, 1);
    const st = t.status(1);
    expect(st.complete).toBe(true);
    expect(st.acknowledged).toEqual([
      expect.objectContaining({ workerId: 'w1', replica: 'r-b', latencyMs: 7 }),
    ]);
    expect(st.completeAfterMs).toBe(7);
    expect(st.unknownReplicas).toEqual([]);
  });

  it('a worker that moved (a local laggard) counts as acknowledged when another replica saw its ack', () => {
    const t = setup();
    t.beat('r-b');
    t.tracker.ack({ workerId: 'w1', seq: 0 });
    t.append(1);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    expect(t.status(1).laggards.map((l) => l.replica)).toEqual(['r-a']);
    t.clock.advanceSync(5);
    t.ack('r-b', 'w1', 1, 1);
    const st = t.status(1);
    expect(st.laggards).toEqual([]);
    expect(st.acknowledged).toEqual([expect.objectContaining({ workerId: 'w1', replica: 'r-b' })]);
    expect(st.complete).toBe(true);
  });

  it('KS-6.5.2 a negative acknowledgement shared by B is listed apart and keeps the flip open', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'gw', 0, 0);
    t.append(1);
    t.ack('r-b', 'gw', 1, 1, [{ seq: 1, reason: 'no route to enforce' }]);
    const st = t.status(1);
    expect(st.unenforced).toEqual([
      expect.objectContaining({ workerId: 'gw', replica: 'r-b', reason: 'no route to enforce' }),
    ]);
    expect(st.acknowledged).toEqual([]);
    expect(st.complete).toBe(false);
    t.ack('r-b', 'gw', 1, 1); // withdrawn
    expect(t.status(1).complete).toBe(true);
  });

  it('KS-6.5.2 a negative acknowledgement observed before this replica registered the flip keeps it open', () => {
    // The flip was appended here, but B's share of the gateway's acknowledgement (which refused
    // it) arrived before this replica's append path registered the flip: seen in the CI run of
    // test/gateway/gateway-replicas.test.ts, which answered complete while the gateway's call ran.
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'gw', 0, 0);
    t.ack('r-b', 'gw', 1, 1, [{ seq: 1, reason: 'could not cancel a call in flight' }]);
    t.append(1);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    const st = t.status(1);
    expect(st.complete).toBe(false);
    expect(st.acknowledged).toEqual([]);
    expect(st.unenforced).toEqual([
      expect.objectContaining({
        workerId: 'gw',
        replica: 'r-b',
        reason: 'could not cancel a call in flight',
      }),
    ]);
    t.ack('r-b', 'gw', 1, 1); // withdrawn: enforced from this acknowledgement on
    expect(t.status(1).complete).toBe(true);
  });
});

describe('KS-6.6.3 only a renewal committed below the flip extends a lease for it', () => {
  it('a renewal observed after the append, committed at a head below it, extends the lease from its observation', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.clock.advanceSync(1000);
    // Committed before seq 1 (answered head 0), delivered here after the append.
    t.ack('r-b', 'w1', 0, 0);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    t.clock.advanceSync(LEASE - 1);
    expect(t.status(1).complete).toBe(false);
    t.beat('r-b');
    t.clock.advanceSync(1);
    const st = t.status(1);
    expect(st.complete).toBe(true);
    expect(st.completeAfterMs).toBe(1000 + LEASE);
  });

  it('a renewal committed at a head at or beyond the flip renews nothing for it', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    t.clock.advanceSync(1000);
    t.ack('r-b', 'w1', 0, 1); // B's worker is behind: the answer said head 1, it extended nothing
    t.clock.advanceSync(LEASE - 1000);
    t.beat('r-b');
    const st = t.status(1);
    expect(st.complete).toBe(true);
    expect(st.completeAfterMs).toBe(LEASE);
    expect(st.laggards).toEqual([expect.objectContaining({ workerId: 'w1', leaseExpired: true })]);
  });
});

describe('KS-6.6.4 a remote lease runs out only after the barrier', () => {
  it('until this replica saw its own heartbeat with the flip, a run-out remote lease is still pending', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.clock.advanceSync(LEASE + 500);
    t.beat('r-b');
    expect(t.status(1).complete).toBe(false);
    expect(t.status(1).laggards[0]!.leaseExpired).toBe(false);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    expect(t.status(1).complete).toBe(true);
    // Complete at the lease's end, not when the barrier arrived.
    expect(t.status(1).completeAfterMs).toBe(LEASE);
  });

  it('a sync read establishes the barrier too', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.clock.advanceSync(LEASE + 1);
    t.fleet.onEvent({
      kind: 'sync',
      replicas: [{ replica: 'r-b', url: 'http://r-b', beat: 99, head: 1 }],
      workers: [],
      barrier: 1,
    });
    expect(t.status(1).complete).toBe(true);
  });
});

describe('KS-6.6.5 an unknown replica holding workers is named, and the flip is not complete', () => {
  it('names the silent replica with its workers; its heartbeat counter moving makes it known again', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    t.clock.advanceSync(1001);
    const st = t.status(1);
    expect(st.complete).toBe(false);
    expect(st.unknownReplicas).toEqual([
      { replica: 'r-b', url: 'http://r-b', silentForMs: 1001, workers: ['w1'] },
    ]);
    t.beat('r-b');
    expect(t.status(1).unknownReplicas).toEqual([]);
  });

  it('a wall clock stepped either way makes no replica look alive or dead', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.fleet.onEvent({ kind: 'barrier', head: 1 });
    t.clock.advanceSync(500);
    t.clock.stepWall(-600_000);
    expect(t.status(1).unknownReplicas).toEqual([]);
    t.clock.stepWall(1_200_000);
    expect(t.status(1).unknownReplicas).toEqual([]);
    t.clock.advanceSync(501);
    expect(t.status(1).unknownReplicas!.map((u) => u.replica)).toEqual(['r-b']);
    // The lease still runs on the monotonic clock: it ends LEASE after the renewal was observed.
    t.clock.advanceSync(LEASE - 1001);
    expect(t.status(1).complete).toBe(true);
    expect(t.status(1).unknownReplicas).toEqual([]);
  });

  it('a replica that left on purpose is not unknown', () => {
    const t = setup();
    t.beat('r-b');
    t.ack('r-b', 'w1', 0, 0);
    t.append(1);
    t.fleet.onEvent({ kind: 'left', replica: 'r-b' });
    t.clock.advanceSync(2000);
    expect(t.status(1).unknownReplicas).toEqual([]);
    expect(t.status(1).complete).toBe(false);
  });
});

describe('KS-6.6.6 the fleet lists every replica and the replica each worker is on', () => {
  it('merges its own workers with the others, the later renewal naming the replica', () => {
    const t = setup();
    t.beat('r-b', 3);
    t.tracker.ack({ workerId: 'w-local', seq: 0 });
    t.ack('r-b', 'w-remote', 0, 0);
    const workers = t.fleet.workers(t.tracker.workers(), 0);
    expect(workers.map((w) => [w.id, w.replica, w.stale])).toEqual([
      ['w-local', 'r-a', false],
      ['w-remote', 'r-b', false],
    ]);
    expect(t.fleet.replicas(0)).toEqual([
      { replica: 'r-a', url: 'http://a', self: true, head: 0, silentForMs: 0, unknown: false },
      { replica: 'r-b', url: 'http://r-b', self: false, head: 3, silentForMs: 0, unknown: false },
    ]);
  });
});
