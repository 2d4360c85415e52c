import { afterEach, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../src/server/index.js';
import { TOKENS, call, startTestServer } from './helpers.js';
import { readClock } from '../fixtures/clock.js';

const started: ControlPlane[] = [];
afterEach(async () => {
  for (const cp of started.splice(0)) await cp.close();
});

/** Two control planes on one manual clock: one gets single acks, the other the same as batches. */
async function pair(): Promise<{
  single: ControlPlane;
  batched: ControlPlane;
  clock: { t: number };
}> {
  const clock = { t: 1_000_000 };
  const now = readClock(() => clock.t);
  const single = (await startTestServer({ clock: now, staleAfterMs: 3000 })).cp;
  const batched = (await startTestServer({ clock: now, staleAfterMs: 3000 })).cp;
  started.push(single, batched);
  return { single, batched, clock };
}

type Ack = { workerId: string; release?: string; seq: number };

async function ackBoth(p: { single: ControlPlane; batched: ControlPlane }, acks: Ack[]) {
  for (const a of acks) {
    const r = await call(p.single, 'POST', '/v1/acks', { token: TOKENS.admin, body: a });
    expect(r.status).toBe(200);
  }
  const b = await call(p.batched, 'POST', '/v1/acks', { token: TOKENS.admin, body: { acks } });
  expect(b.status).toBe(200);
  expect(Object.keys(b.json as object).sort()).toEqual([
    'hash',
    'head',
    'logId',
    'serverTime',
    'staleAfterMs',
  ]);
  return b.json as { head: number; serverTime: string; staleAfterMs: number };
}

async function flipBoth(p: { single: ControlPlane; batched: ControlPlane }, tenant: string) {
  for (const cp of [p.single, p.batched]) {
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: { action: 'halt', selector: { tenant }, reason: 'batch test' },
    });
    expect(r.status).toBe(201);
  }
}

describe('KS-6.2.6 a batch of acknowledgements is recorded exactly as the same acks sent alone', () => {
  it('leases, stopped-at times, laggards and the worker list match single acks step by step', async () => {
    const p = await pair();
    await ackBoth(p, [
      { workerId: 'w1', release: 'r1', seq: 0 },
      { workerId: 'w2', seq: 0 },
      { workerId: 'w3', release: 'r3', seq: 0 },
    ]);
    p.clock.t += 500;
    await flipBoth(p, 'a');
    p.clock.t += 40;
    // w1 applied it, w2 is behind (renews nothing for seq 1), w3 is silent.
    const answer = await ackBoth(p, [
      { workerId: 'w1', release: 'r1', seq: 1 },
      { workerId: 'w2', seq: 0 },
    ]);
    expect(answer.head).toBe(1);
    expect(answer.serverTime).toBe(new Date(p.clock.t).toISOString());
    p.clock.t += 60;
    await flipBoth(p, 'b');
    p.clock.t += 10;
    await ackBoth(p, [
      { workerId: 'w2', seq: 2 },
      { workerId: 'w3', release: 'r3', seq: 2 },
    ]);
    p.clock.t += 4000; // every lease has run out
    for (const seq of [1, 2]) {
      const a = p.single.tracker.status(seq);
      const b = p.batched.tracker.status(seq);
      expect(a).toBeDefined();
      expect(b).toEqual(a);
    }
    expect(p.batched.tracker.status(1)?.complete).toBe(true);
    expect(p.batched.tracker.workers()).toEqual(p.single.tracker.workers());
  });
});

describe('KS-6.2.6 a malformed batch is refused whole and records nothing', () => {
  const bad: [string, unknown][] = [
    ['an empty list', { acks: [] }],
    ['a list that is not an array', { acks: { workerId: 'w1', seq: 0 } }],
    ['another field beside acks', { acks: [{ workerId: 'w1', seq: 0 }], seq: 1 }],
    [
      'a worker twice',
      {
        acks: [
          { workerId: 'w1', seq: 0 },
          { workerId: 'w1', seq: 1 },
        ],
      },
    ],
    [
      'one bad entry after good ones',
      {
        acks: [
          { workerId: 'w1', seq: 0 },
          { workerId: 'w2', seq: -1 },
        ],
      },
    ],
    ['an entry with an unknown field', { acks: [{ workerId: 'w1', seq: 0, extra: true }] }],
    [
      'more than 10,000 entries',
      { acks: Array.from({ length: 10_001 }, (_, i) => ({ workerId: `w${i}`, seq: 0 })) },
    ],
  ];
  it.each(bad)('%s: 400 KS_INVALID_INPUT, no worker recorded', async (_what, body) => {
    const { cp } = await startTestServer({ maxBodyBytes: 1024 * 1024 });
    started.push(cp);
    const r = await call(cp, 'POST', '/v1/acks', { token: TOKENS.admin, body });
    expect(r.status).toBe(400);
    expect((r.json as { error: { code: string } }).error.code).toBe('KS_INVALID_INPUT');
    expect(cp.tracker.workers()).toEqual([]);
  });

  it('asks for the same permission as a single ack (a viewer is refused, nothing recorded)', async () => {
    const { cp } = await startTestServer();
    started.push(cp);
    const single = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.viewer,
      body: { workerId: 'w1', seq: 0 },
    });
    const batch = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.viewer,
      body: { acks: [{ workerId: 'w1', seq: 0 }] },
    });
    expect(batch.status).toBe(single.status);
    if (single.status !== 200) expect(cp.tracker.workers()).toEqual([]);
  });
});
