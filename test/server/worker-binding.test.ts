/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import {
  TokenAuthenticator,
  WorkerClaims,
  tokenSpecSchema,
  type TokenSpec,
} from '../../src/auth/index.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { call, halt, silentLogger } from './helpers.js';
import { readClock } from '../fixtures/clock.js';

const T = {
  fleet: 'fleet-worker-token-0123456789',
  exact: 'exact-worker-token-0123456789',
  vera: 'viewer-vera-token-0123456789',
  vic: 'viewer-vic-token-01234567890',
  fleet2: 'fleet2-worker-token-0123456789',
  otto: 'operator-otto-token-0123456789',
  admin: 'admin-token-0123456789abcdef',
} as const;

const SPECS: TokenSpec[] = [
  { name: 'fleet', token: T.fleet, role: 'viewer', workers: ['w-*'] },
  { name: 'exact', token: T.exact, role: 'viewer', workers: ['exact-1'] },
  { name: 'vera', token: T.vera, role: 'viewer' },
  { name: 'vic', token: T.vic, role: 'viewer' },
  { name: 'fleet2', token: T.fleet2, role: 'worker', workers: ['w-*', 'free-*'] },
  {
    name: 'otto',
    token: T.otto,
    role: 'operator',
    scopes: [{ tenant: 'acme' }],
    workers: ['ops-*', 'w-7'],
  },
  { name: 'ada', token: T.admin, role: 'admin' },
];

const STALE_AFTER_MS = 3000;
const MARGIN_MS = 100;

const servers: ControlPlane[] = [];
const streams: AbortController[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.abort();
  for (const cp of servers.splice(0)) await cp.close();
});

/** A server with the binding tokens and a clock the test moves. */
async function server(): Promise<{ cp: ControlPlane; clock: { now: number } }> {
  const clock = { now: 1_000_000 };
  const cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    auth: new TokenAuthenticator({ tokens: SPECS }),
    logger: silentLogger,
    staleAfterMs: STALE_AFTER_MS,
    leaseMarginMs: MARGIN_MS,
    clock: readClock(() => clock.now),
  });
  servers.push(cp);
  return { cp, clock };
}

const ack = (cp: ControlPlane, token: string, workerId: string, seq = 0) =>
  call(cp, 'POST', '/v1/acks', { token, body: { workerId, seq } });

/** Opens `GET /v1/stream?worker=` and returns its status (the stream stays open when 200). */
async function openStream(cp: ControlPlane, token: string, worker: string): Promise<number> {
  const ac = new AbortController();
  streams.push(ac);
  const res = await fetch(`${cp.url}/v1/stream?worker=${encodeURIComponent(worker)}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: ac.signal,
  });
  if (res.status !== 200) {
    await res.text();
    ac.abort();
  }
  return res.status;
}

async function workerIds(cp: ControlPlane): Promise<string[]> {
  const r = await call(cp, 'GET', '/v1/workers', { token: T.admin });
  return (r.json.workers as { id: string }[]).map((w) => w.id).sort();
}

describe('KS-5.2.9 a token bound to worker ids acknowledges only as those ids', () => {
  it('acks inside the binding are accepted; outside it 403 KS_FORBIDDEN and nothing is recorded', async () => {
    const { cp } = await server();
    expect((await ack(cp, T.fleet, 'w-1')).status).toBe(200);
    const refused = await ack(cp, T.fleet, 'db-1');
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('KS_FORBIDDEN');
    expect(refused.json.error.message).toContain('db-1');
    // The prefix needs at least one character after it, and only matches at the start.
    expect((await ack(cp, T.fleet, 'w-')).status).toBe(403);
    expect((await ack(cp, T.fleet, 'x-w-1')).status).toBe(403);
    expect((await ack(cp, T.exact, 'exact-1')).status).toBe(200);
    expect((await ack(cp, T.exact, 'exact-10')).status).toBe(403);
    expect((await ack(cp, T.otto, 'ops-3')).status).toBe(200);
    expect((await ack(cp, T.otto, 'w-7')).status).toBe(200);
    expect((await ack(cp, T.otto, 'w-8')).status).toBe(403);
    expect(await workerIds(cp)).toEqual(['exact-1', 'ops-3', 'w-1', 'w-7']);
  });

  it('a batch with one entry outside the binding is refused whole: no entry is recorded', async () => {
    const { cp } = await server();
    const r = await call(cp, 'POST', '/v1/acks', {
      token: T.fleet,
      body: {
        acks: [
          { workerId: 'w-1', seq: 0 },
          { workerId: 'db-1', seq: 0 },
        ],
      },
    });
    expect(r.status).toBe(403);
    expect(await workerIds(cp)).toEqual([]);
    const ok = await call(cp, 'POST', '/v1/acks', {
      token: T.fleet,
      body: {
        acks: [
          { workerId: 'w-1', seq: 0 },
          { workerId: 'w-2', seq: 0 },
        ],
      },
    });
    expect(ok.status).toBe(200);
    expect(await workerIds(cp)).toEqual(['w-1', 'w-2']);
  });

  it('a stream opened as a worker id outside the binding is 403 and never counted as connected', async () => {
    const { cp } = await server();
    expect(await openStream(cp, T.fleet, 'db-1')).toBe(403);
    expect(await openStream(cp, T.fleet, 'w-3')).toBe(200);
    const r = await call(cp, 'GET', '/v1/workers', { token: T.admin });
    expect(r.json.workers).toEqual([expect.objectContaining({ id: 'w-3', connected: true })]);
    // Reading the stream without naming a worker stays open to every token.
    const plain = await call(cp, 'HEAD', '/v1/stream', { token: T.fleet });
    expect(plain.status).toBe(200);
  });

  it('an admin may act as any worker id, bound ones included', async () => {
    const { cp } = await server();
    expect((await ack(cp, T.admin, 'w-1')).status).toBe(200);
    expect((await ack(cp, T.admin, 'anything-1')).status).toBe(200);
    expect(await openStream(cp, T.admin, 'exact-1')).toBe(200);
  });
});

describe('KS-17.2.1 only worker credentials act as workers; two credentials never hold one id', () => {
  it('a token with no binding may neither acknowledge nor stream as any worker id', async () => {
    const { cp } = await server();
    for (const id of ['w-1', 'exact-1', 'free-1']) {
      const r = await ack(cp, T.vera, id);
      expect(r.status, id).toBe(403);
      expect(r.json.error.message).toMatch(/may not act as a worker: .*need a worker credential/);
    }
    expect(await openStream(cp, T.vera, 'free-2')).toBe(403);
    expect(await workerIds(cp)).toEqual([]);
  });

  it('KS-17.2.2 of two credentials whose bindings overlap, the first to act as an id holds it; the other gets 403', async () => {
    const { cp } = await server();
    expect((await ack(cp, T.fleet, 'w-5')).status).toBe(200);
    const spoof = await ack(cp, T.fleet2, 'w-5', 5);
    expect(spoof.status).toBe(403);
    expect(spoof.json.error.message).toContain('another token acts as it');
    expect((await ack(cp, T.fleet, 'w-5', 0)).status).toBe(200);
    expect(await openStream(cp, T.fleet2, 'w-5')).toBe(403);
    // Other ids of the overlap stay free for the other credential.
    expect((await ack(cp, T.fleet2, 'w-6')).status).toBe(200);
    const workers = (await call(cp, 'GET', '/v1/workers', { token: T.admin })).json.workers;
    expect(workers.find((w: any) => w.id === 'w-5').lastAckSeq).toBe(0);
  });

  it('KS-17.2.2 a hold lapses staleAfterMs + leaseMarginMs after its holder’s last ack, and never while its stream is open', async () => {
    const { cp, clock } = await server();
    expect((await ack(cp, T.fleet, 'w-1')).status).toBe(200);
    clock.now += STALE_AFTER_MS + MARGIN_MS - 1;
    expect((await ack(cp, T.fleet2, 'w-1')).status).toBe(403);
    clock.now += 1;
    // The holder's lease ran out: it counts as stopped and fails closed on its own.
    expect((await ack(cp, T.fleet2, 'w-1')).status).toBe(200);
    expect((await ack(cp, T.fleet, 'w-1')).status).toBe(403);

    expect(await openStream(cp, T.fleet, 'w-2')).toBe(200);
    clock.now += 10 * STALE_AFTER_MS;
    expect((await ack(cp, T.fleet2, 'w-2')).status).toBe(403);
  });
});

describe('KS-5.2.9 a leaked token cannot make a flip look complete', () => {
  it('the spoofed ack is refused and the real worker stays a laggard until it acknowledges itself', async () => {
    const { cp } = await server();
    expect(await openStream(cp, T.fleet, 'w-1')).toBe(200);
    expect((await ack(cp, T.fleet, 'w-1', 0)).status).toBe(200);
    const flip = await call(cp, 'POST', '/v1/flips', { token: T.admin, body: halt('acme') });
    expect(flip.status).toBe(201);
    const seq = flip.json.flip.seq as number;
    // A viewer token leaked from a dashboard tries to acknowledge for the worker.
    expect((await ack(cp, T.vera, 'w-1', seq)).status).toBe(403);
    expect((await ack(cp, T.otto, 'w-1', seq)).status).toBe(403);
    let st = cp.tracker.status(seq)!;
    expect(st.complete).toBe(false);
    expect(st.applied).toBe(0);
    expect(st.laggards.map((l) => l.workerId)).toEqual(['w-1']);
    expect((await ack(cp, T.fleet, 'w-1', seq)).status).toBe(200);
    st = cp.tracker.status(seq)!;
    expect(st.complete).toBe(true);
    expect(st.acknowledged.map((a) => a.workerId)).toEqual(['w-1']);
  });
});

describe('KS-5.2.9 the binding is validated with the token config', () => {
  const base = { name: 'x', token: 'x-token-0123456789abcdef', role: 'viewer' } as const;
  it.each([
    ['a bare * (on a viewer: only worker tokens may take any id)', ['*']],
    ['an empty list', []],
    ['a * in the middle', ['w-*-1']],
    ['a character a worker id cannot hold', ['w 1']],
    ['an empty pattern', ['']],
  ])('refuses %s', (_what, workers) => {
    const r = tokenSpecSchema.safeParse({ ...base, workers });
    expect(r.success).toBe(false);
    expect(r.error?.issues.some((i) => i.path[0] === 'workers')).toBe(true);
    expect(() => new TokenAuthenticator({ tokens: [{ ...base, workers }] })).toThrow(
      /KS_INVALID_OPTION|valid token specs/,
    );
  });

  it('refuses a binding on an admin token (an admin acts as any worker)', () => {
    const r = tokenSpecSchema.safeParse({ ...base, role: 'admin', workers: ['w-*'] });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message)).toContain(
      'an admin may act as any worker; bind a worker token instead',
    );
  });

  it('reservesWorker answers for the ids some binding names', () => {
    const auth = new TokenAuthenticator({ tokens: SPECS });
    expect(auth.reservesWorker('w-1')).toBe(true);
    expect(auth.reservesWorker('exact-1')).toBe(true);
    expect(auth.reservesWorker('exact-2')).toBe(false);
    expect(auth.reservesWorker('other-1')).toBe(false);
  });

  it('a worker token needs a binding; WorkerClaims refuses unbound principals and, when full, new ids', () => {
    expect(tokenSpecSchema.safeParse({ ...base, role: 'worker' }).success).toBe(false);
    expect(tokenSpecSchema.safeParse({ ...base, role: 'worker', workers: ['*'] }).success).toBe(
      true,
    );
    const vera = { name: 'vera', role: 'viewer', scopes: [], resume: false } as const;
    const wes = { ...vera, name: 'wes', role: 'worker', workers: ['*'] } as const;
    expect(() => new WorkerClaims({ ttlMs: 1000 }).check(vera, 'free-1')).toThrow(
      /may not act as a worker/,
    );
    const clock = { now: 0 };
    const full = new WorkerClaims({ ttlMs: 1000, maxClaims: 1, clock: readClock(() => clock.now) });
    full.check(wes, 'a');
    full.touch(wes, 'a');
    expect(() => full.check(wes, 'b')).toThrow(/worker ids are held/);
    expect(full.holder('a')).toBe('wes');
    clock.now += 1000; // a's claim lapsed: room again, and a is free
    expect(() => full.check(wes, 'b')).not.toThrow();
    expect(full.holder('a')).toBeUndefined();
  });
});
