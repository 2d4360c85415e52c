import { afterEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import type { FlipRecord, KillSnapshot } from '../../src/model/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import { FleetTracker } from '../../src/server/index.js';
import type { SourceStatus } from '../../src/source/index.js';
import { readClock } from '../fixtures/clock.js';
import { TOKENS, call, halt, startTestServer } from './helpers.js';

describe('KS-6.5.2 the tracker lists a negative acknowledgement apart and never counts it stopped', () => {
  function setup() {
    let now = 1_000_000;
    const t = new FleetTracker({
      staleAfterMs: 3000,
      leaseMarginMs: 100,
      clock: readClock(() => now),
    });
    return { t, advance: (ms: number) => (now += ms), at: () => now };
  }

  it('an unenforced flip is not complete, even after every lease ran out, and names the reason', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'gw', seq: 0 });
    t.ack({ workerId: 'w1', seq: 0 });
    t.flipAppended(1);
    advance(5);
    const nackAt = at();
    t.ack({
      workerId: 'gw',
      seq: 1,
      unenforced: [{ seq: 1, reason: 'upstream stream cannot be cut' }],
    });
    t.ack({ workerId: 'w1', seq: 1 });
    let s = t.status(1)!;
    expect(s.unenforced).toEqual([
      {
        workerId: 'gw',
        reason: 'upstream stream cannot be cut',
        at: new Date(nackAt).toISOString(),
      },
    ]);
    expect(s.acknowledged.map((a) => a.workerId)).toEqual(['w1']);
    expect(s.laggards).toEqual([]);
    expect(s.applied).toBe(1);
    expect(s.complete).toBe(false);
    expect(s.completeAt).toBeNull();
    advance(10_000); // every lease long gone: still not stopped
    t.ack({
      workerId: 'gw',
      seq: 1,
      unenforced: [{ seq: 1, reason: 'upstream stream cannot be cut' }],
    });
    s = t.status(1)!;
    expect(s.complete).toBe(false);
    expect(s.unenforced[0]!.at).toBe(new Date(nackAt).toISOString()); // the first report's time is kept
  });

  it('a later acknowledgement without it withdraws it: stopped from that acknowledgement', () => {
    const { t, advance, at } = setup();
    t.ack({ workerId: 'gw', seq: 0 });
    t.flipAppended(1);
    t.ack({ workerId: 'gw', seq: 1, unenforced: [{ seq: 1, reason: 'not yet' }] });
    advance(50);
    t.ack({ workerId: 'gw', seq: 1 });
    const s = t.status(1)!;
    expect(s.unenforced).toEqual([]);
    expect(s.complete).toBe(true);
    expect(s.acknowledged.map((a) => [a.workerId, a.at])).toEqual([
      ['gw', new Date(at()).toISOString()],
    ]);
  });

  it('a refusal after a positive acknowledgement un-completes the flip', () => {
    const { t } = setup();
    t.ack({ workerId: 'gw', seq: 0 });
    t.flipAppended(1);
    t.ack({ workerId: 'gw', seq: 1 });
    expect(t.status(1)!.complete).toBe(true);
    t.ack({ workerId: 'gw', seq: 1, unenforced: [{ seq: 1, reason: 'lost the upstream handle' }] });
    expect(t.status(1)!.complete).toBe(false);
    expect(t.status(1)!.acknowledged).toEqual([]);
  });
});

let cp: ControlPlane | undefined;
const sources: RemoteFlipSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  await cp?.close();
  cp = undefined;
});

describe('KS-6.5.1 KS-6.5.3 over the wire: an enforcement point says it cannot enforce a flip', () => {
  it('the flip answer lists it apart from laggards, not complete; withdrawn, the flip completes', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 1000, leaseMarginMs: 100, heartbeatMs: 200 }));
    const source = new RemoteFlipSource({
      urls: [cp.url],
      token: TOKENS.worker,
      workerId: 'gateway-1',
      release: 'gw-1',
      staleAfterMs: 1000,
      heartbeatMs: 200,
    });
    sources.push(source);
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const seen: number[] = [];
    let nackNext = true;
    await source.start({
      onSnapshot: (s: KillSnapshot) => seen.push(s.seq),
      onFlip: (r: FlipRecord) => {
        seen.push(r.seq);
        // The gateway received the halt but cannot cut what it matches.
        if (nackNext) source.reportUnenforced(r.seq, 'an upstream call cannot be aborted here');
      },
      onStatus: (st: SourceStatus) => {
        if (st === 'open') open();
      },
    });
    await opened;
    await new Promise((r) => setTimeout(r, 300)); // its lease is renewed at seq 0
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.operator,
      body: halt('acme', { wait: 1500 }),
    });
    expect(r.status).toBe(201);
    const f = r.json.fleet;
    expect(f.complete).toBe(false);
    expect(f.completeAt).toBeNull();
    expect(f.laggards).toEqual([]);
    expect(f.acknowledged).toEqual([]);
    expect(f.unenforced).toEqual([
      {
        workerId: 'gateway-1',
        release: 'gw-1',
        reason: 'an upstream call cannot be aborted here',
        at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      },
    ]);
    // Enforced after all: withdrawn, the next acknowledgement counts it stopped.
    nackNext = false;
    source.withdrawUnenforced(r.json.flip.seq);
    const seq = r.json.flip.seq as number;
    for (let i = 0; i < 100 && cp.tracker.status(seq)?.complete !== true; i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    const after = { json: cp.tracker.status(seq)! };
    expect(after.json.unenforced).toEqual([]);
    expect(after.json.complete).toBe(true);
    expect(after.json.acknowledged.map((a: { workerId: string }) => a.workerId)).toEqual([
      'gateway-1',
    ]);
  });

  it('refuses (400) a negative acknowledgement of a flip beyond the acknowledged seq', async () => {
    ({ cp } = await startTestServer());
    const r = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'gw', seq: 0, unenforced: [{ seq: 1, reason: 'x' }] },
    });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(/beyond the acknowledged seq/);
  });
});
