import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import type { FlipLogStore } from '../../src/store/flip-log-store.js';
import { bind, waitFor } from './helpers.js';
import { bearer, startTestServer, TOKENS } from '../server/helpers.js';
import { dropSchemas, PG_URL, RUN_PG, schemaName, startProxy } from '../postgres/pg-harness.js';
import { cleanupsAfterEach } from '../fixtures/cleanups.js';

const quiet = { warn: () => undefined, error: () => undefined };
const cleanups = cleanupsAfterEach();
afterAll(async () => {
  await OpenFeature.close();
});

type Follow = {
  state: string;
  caughtUpAt: string | undefined;
  caughtUpAgeMs?: number;
  deliveredSeq: number;
};

/** A memory store that reports a follow status the test sets (the PostgreSQL store's API). */
function followingStore(): { store: FlipLogStore; set(f: Partial<Follow>): void } {
  const inner = new MemoryFlipLogStore();
  let follow: Follow = {
    state: 'listening',
    caughtUpAt: new Date().toISOString(),
    deliveredSeq: 0,
  };
  const store: FlipLogStore & { followStatus(): Follow } = {
    kind: inner.kind,
    open: () => inner.open(),
    append: (i) => inner.append(i),
    read: (o) => inner.read(o),
    head: () => inner.head(),
    logId: () => inner.logId(),
    subscribe: (l) => inner.subscribe(l),
    close: () => inner.close(),
    followStatus: () => follow,
  };
  return { store, set: (f) => (follow = { ...follow, ...f }) };
}

async function ack(url: string, seq = 0) {
  return fetch(`${url}/v1/acks`, {
    method: 'POST',
    headers: { ...bearer(TOKENS.worker), 'content-type': 'application/json' },
    body: JSON.stringify({ workerId: 'w-ack', seq }),
  });
}

async function worker(urls: string[], staleAfterMs: number) {
  const provider = new KillSwitchProvider({
    source: new RemoteFlipSource({
      urls,
      token: TOKENS.worker,
      workerId: `w-${Math.random().toString(36).slice(2, 8)}`,
      staleAfterMs,
      heartbeatMs: Math.max(50, Math.floor(staleAfterMs / 4)),
      backoff: { initialMs: 20, maxMs: 200 },
    }),
    logger: quiet,
  });
  const client = await bind(provider, 'replica-worker');
  cleanups.push(() => provider.onClose());
  await waitFor(() => provider.sourceStatus === 'open', 10_000, 'the worker to be fresh');
  return { provider, client };
}

describe('KS-12.5.1 / KS-12.5.2 a control plane stops vouching when its store stops following', () => {
  it('a failed follow state: acks, flips, state and new streams 503; /healthz 503 with the reason; OFREP fail-closed', async () => {
    const f = followingStore();
    const { cp } = await startTestServer({ store: f.store, heartbeatMs: 50 });
    cleanups.push(() => cp.close());
    expect((await ack(cp.url)).status).toBe(200);
    f.set({ state: 'failed' });
    expect((await ack(cp.url)).status).toBe(503);
    const health = await fetch(`${cp.url}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/failed/),
    });
    const stream = await fetch(`${cp.url}/v1/stream`, { headers: bearer(TOKENS.viewer) });
    expect(stream.status).toBe(503);
    const state = await fetch(`${cp.url}/v1/state`, { headers: bearer(TOKENS.viewer) });
    expect(state.status).toBe(503);
    const flip = await fetch(`${cp.url}/v1/flips`, {
      method: 'POST',
      headers: { ...bearer(TOKENS.admin), 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'halt', selector: { tenant: 'a' }, reason: 'r' }),
    });
    expect(flip.status).toBe(503);
    const client = await bind(
      new OFREPProvider({ baseUrl: cp.url, headers: bearer(TOKENS.viewer) }),
      'ofrep-replica',
    );
    expect(await client.getBooleanDetails('kill-switch', false, { tenant: 'x' })).toMatchObject({
      value: true,
      variant: 'fail-closed',
      reason: 'ERROR',
    });
    f.set({ state: 'listening', caughtUpAt: new Date().toISOString() });
    expect((await ack(cp.url)).status).toBe(200);
    expect((await fetch(`${cp.url}/healthz`)).status).toBe(200);
  });

  it('a last catch-up older than storeStaleAfterMs is STALE; a fresh one vouches again (KS-12.5.3)', async () => {
    const f = followingStore();
    const { cp } = await startTestServer({ store: f.store, storeStaleAfterMs: 500 });
    cleanups.push(() => cp.close());
    f.set({ state: 'backoff', caughtUpAt: new Date(Date.now() - 10_000).toISOString() });
    expect((await ack(cp.url)).status).toBe(503);
    const client = await bind(
      new OFREPProvider({ baseUrl: cp.url, headers: bearer(TOKENS.viewer) }),
      'ofrep-stale',
    );
    expect(await client.getBooleanDetails('kill-switch', false, {})).toMatchObject({
      value: true,
      reason: 'STALE',
    });
    // The LISTEN connection is down but the poll catches up: that is still vouching.
    f.set({ state: 'backoff', caughtUpAt: new Date().toISOString() });
    expect((await ack(cp.url)).status).toBe(200);
    expect(await client.getBooleanValue('kill-switch', true, {})).toBe(false);
  });

  it("KS-12.5.4 staleness is the store's age on a monotonic clock, never its wall-clock label", async () => {
    const f = followingStore();
    const { cp } = await startTestServer({ store: f.store, storeStaleAfterMs: 500 });
    cleanups.push(() => cp.close());
    // The wall clock was stepped forward after the store's last catch-up, 10 s ago by its
    // monotonic clock: the label reads "just now", the store is stale.
    f.set({ state: 'backoff', caughtUpAt: new Date().toISOString(), caughtUpAgeMs: 10_000 });
    expect((await ack(cp.url)).status).toBe(503);
    expect(await (await fetch(`${cp.url}/healthz`)).json()).toMatchObject({ ok: false });
    // The wall clock was stepped back 10 minutes: the label reads old, the store caught up 20 ms ago.
    f.set({
      state: 'listening',
      caughtUpAt: new Date(Date.now() - 600_000).toISOString(),
      caughtUpAgeMs: 20,
    });
    expect((await ack(cp.url)).status).toBe(200);
    expect((await fetch(`${cp.url}/healthz`)).status).toBe(200);
  });

  it('open streams are ended and a connected worker fails closed, then recovers', async () => {
    const f = followingStore();
    const { cp } = await startTestServer({
      store: f.store,
      heartbeatMs: 50,
      staleAfterMs: 400,
      storeStaleAfterMs: 300,
    });
    cleanups.push(() => cp.close());
    const refresh = setInterval(() => f.set({ caughtUpAt: new Date().toISOString() }), 50);
    cleanups.push(() => clearInterval(refresh));
    const w = await worker([cp.url], 400);
    expect((await evaluateKill(w.client, { tenant: 'x' })).halted).toBe(false);
    f.set({ state: 'failed' });
    await waitFor(() => cp.stats().subscribers === 0, 5000, 'the streams to end');
    await waitFor(
      async () => (await evaluateKill(w.client, { tenant: 'x' })).halted,
      5000,
      'the worker to fail closed',
    );
    f.set({ state: 'listening' });
    await waitFor(
      async () => !(await evaluateKill(w.client, { tenant: 'x' })).halted,
      10_000,
      'the worker to be fresh again',
    );
  });

  it('a store without followStatus (memory, file) is always caught up', async () => {
    const { cp } = await startTestServer({ store: new MemoryFlipLogStore() });
    cleanups.push(() => cp.close());
    expect((await ack(cp.url)).status).toBe(200);
    expect(await (await fetch(`${cp.url}/healthz`)).json()).toMatchObject({ ok: true });
  });
});

describe.runIf(RUN_PG)('KS-12.5.2 a PostgreSQL replica whose database connection is cut', () => {
  const schemas: string[] = [];
  afterAll(async () => {
    await dropSchemas(schemas);
  });

  it('its workers fail closed within staleAfterMs of it stopping to vouch, and are fresh again after the reconnect', async () => {
    const schema = schemaName('stalled');
    schemas.push(schema);
    const proxy = await startProxy();
    cleanups.push(() => proxy.close());
    const direct = new PostgresFlipLogStore({ connectionString: PG_URL, schema });
    const viaProxy = new PostgresFlipLogStore({
      connectionString: proxy.url,
      schema,
      pollIntervalMs: 100,
      reconnectMaxMs: 200,
      statementTimeoutMs: 1000,
      connectTimeoutMs: 500,
      logger: quiet,
    });
    cleanups.push(() => direct.close());
    cleanups.push(() => viaProxy.close());
    const a = await startTestServer({ store: direct, staleAfterMs: 800, heartbeatMs: 100 });
    cleanups.push(() => a.cp.close());
    const b = await startTestServer({
      store: viaProxy,
      staleAfterMs: 800,
      heartbeatMs: 100,
      storeStaleAfterMs: 500,
    });
    cleanups.push(() => b.cp.close());
    const w = await worker([b.cp.url], 800);
    expect((await evaluateKill(w.client, { tenant: 'acme' })).halted).toBe(false);

    await proxy.cut();
    // A flip on replica A that replica B cannot see.
    const res = await fetch(`${a.cp.url}/v1/flips`, {
      method: 'POST',
      headers: { ...bearer(TOKENS.admin), 'content-type': 'application/json' },
      body: JSON.stringify({
        action: 'halt',
        selector: { tenant: 'acme' },
        reason: 'while B is cut',
      }),
    });
    expect(res.status).toBe(201);
    const cutAt = Date.now();
    // B stops vouching after storeStaleAfterMs; its worker's lease then runs out (staleAfterMs).
    await waitFor(
      async () => (await evaluateKill(w.client, { tenant: 'other' })).halted,
      10_000,
      'the worker on B to fail closed',
    );
    const failedClosedAfter = Date.now() - cutAt;
    expect(failedClosedAfter).toBeLessThan(10_000);
    const health = await fetch(`${b.cp.url}/healthz`);
    expect(health.status).toBe(503);

    await proxy.restore();
    await waitFor(
      async () => !(await evaluateKill(w.client, { tenant: 'other' })).halted,
      15_000,
      'the worker on B to be fresh again',
    );
    // Fresh again, and it has the flip made on A while B was cut.
    expect(await evaluateKill(w.client, { tenant: 'acme' })).toMatchObject({
      halted: true,
      cause: 'halted',
    });
  });
});
