/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
/**
 * KS-17.8.3, KS-17.8.4 over the wire: the "Unbounded" (flip rate, active halts, one
 * Alertmanager post appending 500 halts) and "Fooled" (acks beyond the head, ghost workers)
 * reproducers. Every refusal names its limit and appends or records nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import {
  mountAlertmanager,
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../../src/server/index.js';

const ADMIN = 'ks-admin-token-0123456789ab';
const OTHER = 'ks-admin2-token-0123456789a';
const FLEET = 'ks-fleet-token-0123456789abc';
const SPECS: TokenSpec[] = [
  { name: 'ada', token: ADMIN, role: 'admin' },
  { name: 'bob', token: OTHER, role: 'admin' },
  { name: 'fleet', token: FLEET, role: 'worker', workers: ['w-*'] },
];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(extra: Partial<ControlPlaneOptions> = {}) {
  const store = new MemoryFlipLogStore();
  const cp = await startControlPlane({
    store,
    port: 0,
    auth: new TokenAuthenticator({ tokens: SPECS }),
    logger: { info() {}, warn() {}, error() {} },
    ...extra,
  });
  cleanups.push(() => cp.close());
  return { cp, store };
}

async function post(cp: ControlPlane, path: string, token: string, body: unknown) {
  const res = await fetch(cp.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    json: (await res.json()) as any,
  };
}

const halt = (tenant: string) => ({ action: 'halt', selector: { tenant }, reason: 'incident' });
const resume = (tenant: string) => ({ action: 'resume', selector: { tenant }, reason: 'fixed' });

describe('KS-17.8.3 flips per token per second', () => {
  it('beyond the burst a token is refused 429 naming maxFlipsPerSecond, with Retry-After; nothing appended; other tokens unaffected; it refills', async () => {
    const { cp, store } = await server({ maxFlipsPerSecond: 1, flipBurst: 5 });
    // Sent back to back: the burst of 5 goes through, then the bucket refills at 1 per second
    // (a loaded machine may take that long for a few requests, so the count allows for it).
    let accepted = 0;
    let refused: Awaited<ReturnType<typeof post>> | undefined;
    const t0 = performance.now();
    for (let i = 0; i < 30 && refused === undefined; i++) {
      const r = await post(cp, '/v1/flips', ADMIN, halt(`t${i}`));
      if (r.status === 201) accepted++;
      else refused = r;
    }
    const elapsed = (performance.now() - t0) / 1000;
    expect(refused?.status).toBe(429);
    expect(accepted).toBeGreaterThanOrEqual(5);
    expect(accepted).toBeLessThanOrEqual(5 + Math.ceil(elapsed));
    expect(refused!.json.error.code).toBe('KS_LIMIT_EXCEEDED');
    expect(refused!.json.error.message).toMatch(/maxFlipsPerSecond \(1\)/);
    expect(Number(refused!.retryAfter)).toBeGreaterThanOrEqual(1);
    expect((await store.head()).seq).toBe(accepted);
    expect((await post(cp, '/v1/flips', OTHER, halt('other'))).status).toBe(201);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await post(cp, '/v1/flips', ADMIN, halt('again'))).status).toBe(201);
  });

  it('the defaults are 20 per second with bursts of 40', async () => {
    const { cp } = await server();
    expect(cp.limits.maxFlipsPerSecond).toBe(20);
    expect(cp.limits.flipBurst).toBe(40);
    expect(cp.limits.maxActiveHalts).toBe(10_000);
    expect(cp.limits.maxHaltsPerAlert).toBe(20);
    expect(cp.limits.maxWorkers).toBe(10_000);
  });

  it('bad limits are refused at construction, naming the option', async () => {
    await expect(server({ maxFlipsPerSecond: 0 })).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
      message: /maxFlipsPerSecond/,
    });
    await expect(server({ maxActiveHalts: -1 })).rejects.toMatchObject({
      message: /maxActiveHalts/,
    });
  });
});

describe('KS-17.8.3 active halts are bounded; a resume is always accepted', () => {
  it('a halt beyond maxActiveHalts is 429 naming it; a resume goes through and makes room', async () => {
    const { cp, store } = await server({ maxActiveHalts: 3 });
    for (const t of ['a', 'b', 'c'])
      expect((await post(cp, '/v1/flips', ADMIN, halt(t))).status).toBe(201);
    const refused = await post(cp, '/v1/flips', ADMIN, halt('d'));
    expect(refused.status).toBe(429);
    expect(refused.json.error.message).toMatch(/maxActiveHalts \(3\) reached: 3 halts are active/);
    expect((await store.head()).seq).toBe(3);
    expect((await post(cp, '/v1/flips', ADMIN, resume('a'))).status).toBe(201);
    expect((await post(cp, '/v1/flips', ADMIN, halt('d'))).status).toBe(201);
    expect(cp.snapshot().halts.map((h) => h.selector.tenant)).toEqual(['b', 'c', 'd']);
  });
});

describe('KS-17.8.3 one Alertmanager post places at most maxHaltsPerAlert halts', () => {
  const alert = (tenant: string, i: number) => ({
    status: 'firing',
    labels: { alertname: 'S', killswitch_level: 'tenant', tenant },
    fingerprint: `f${i}`,
  });
  const payload = (alerts: unknown[]) => ({
    version: '4',
    status: 'firing',
    receiver: 'killswitch',
    groupLabels: {},
    commonLabels: {},
    alerts,
  });

  it("the issue's reproducer: 500 distinct halts in one post are refused whole (413 naming the limit); nothing appended", async () => {
    const { cp, store } = await server();
    mountAlertmanager(cp, store);
    const alerts = Array.from({ length: 500 }, (_, i) => alert(`t${i}`, i));
    const r = await post(cp, '/v1/alerts/alertmanager', ADMIN, payload(alerts));
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('KS_PAYLOAD_TOO_LARGE');
    expect(r.json.error.message).toMatch(/maxHaltsPerAlert \(20\) exceeded: .* 500 distinct halts/);
    expect((await store.head()).seq).toBe(0);
  });

  it('20 distinct halts go through; many alerts on one scope are one halt', async () => {
    const { cp, store } = await server();
    mountAlertmanager(cp, store);
    const twenty = Array.from({ length: 20 }, (_, i) => alert(`t${i}`, i));
    expect((await post(cp, '/v1/alerts/alertmanager', ADMIN, payload(twenty))).status).toBe(200);
    const oneScope = Array.from({ length: 300 }, (_, i) => alert('acme', 1000 + i));
    const r = await post(cp, '/v1/alerts/alertmanager', ADMIN, payload(oneScope));
    expect(r.status).toBe(200);
    expect((await store.head()).seq).toBe(21);
  });

  it('the post also counts against maxActiveHalts, refused whole', async () => {
    const { cp, store } = await server({ maxActiveHalts: 10 });
    mountAlertmanager(cp, store);
    const twelve = Array.from({ length: 12 }, (_, i) => alert(`t${i}`, i));
    const r = await post(cp, '/v1/alerts/alertmanager', ADMIN, payload(twelve));
    expect(r.status).toBe(429);
    expect(r.json.error.message).toMatch(/maxActiveHalts \(10\)/);
    expect((await store.head()).seq).toBe(0);
  });
});

describe('KS-17.8.4 acknowledgements: never beyond the head; tracked workers bounded', () => {
  it("the issue's reproducer: an ack for seq 2^53-1 is refused whole (naming the head); nothing is tracked", async () => {
    const { cp } = await server();
    expect((await post(cp, '/v1/flips', ADMIN, halt('acme'))).status).toBe(201);
    const r = await post(cp, '/v1/acks', FLEET, {
      acks: [
        { workerId: 'w-1', seq: 1 },
        { workerId: 'w-2', seq: Number.MAX_SAFE_INTEGER },
      ],
    });
    // KS-6.4.3 answers it (409 KS_LOG_DIVERGED naming the head, after a short wait for a shared
    // store to catch up), before anything of the batch is recorded.
    expect(r.status).toBe(409);
    expect(r.json.error.message).toMatch(/beyond this control plane's .*seq 1/);
    expect(cp.tracker.workers()).toEqual([]);
    // At the head it is accepted.
    expect((await post(cp, '/v1/acks', FLEET, { workerId: 'w-1', seq: 1 })).status).toBe(200);
  });

  it('a new worker beyond maxWorkers is refused 429 (ack or stream); tracked workers stay', async () => {
    const { cp } = await server({ maxWorkers: 3 });
    for (const w of ['w-1', 'w-2', 'w-3'])
      expect((await post(cp, '/v1/acks', FLEET, { workerId: w, seq: 0 })).status).toBe(200);
    const r = await post(cp, '/v1/acks', FLEET, {
      acks: [
        { workerId: 'w-1', seq: 0 },
        { workerId: 'w-4', seq: 0 },
      ],
    });
    expect(r.status).toBe(429);
    expect(r.json.error.message).toMatch(/maxWorkers \(3\) reached: 3 workers are tracked/);
    const stream = await fetch(`${cp.url}/v1/stream?worker=w-5`, {
      headers: { authorization: `Bearer ${FLEET}` },
    });
    expect(stream.status).toBe(429);
    await stream.body?.cancel();
    expect(
      cp.tracker
        .workers()
        .map((w) => w.id)
        .sort(),
    ).toEqual(['w-1', 'w-2', 'w-3']);
    // A tracked worker still acknowledges.
    expect((await post(cp, '/v1/acks', FLEET, { workerId: 'w-2', seq: 0 })).status).toBe(200);
  });
});
