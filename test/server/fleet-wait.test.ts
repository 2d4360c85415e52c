import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import type { FlipLogStore } from '../../src/store/index.js';
import { SseReader } from './sse-reader.js';
import { TOKENS, bearer, call, halt, startTestServer } from './helpers.js';

let cp: ControlPlane | undefined;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await cp?.close();
  cp = undefined;
});

/** A worker in the test: follows the stream and acks every applied seq, like the remote source. */
async function ackingWorker(id: string): Promise<{ acked: number[] }> {
  const { reader } = await SseReader.open(
    `${cp!.url}/v1/stream?worker=${id}&release=v1`,
    bearer(TOKENS.worker),
  );
  const acked: number[] = [];
  let stop = false;
  cleanups.push(() => {
    stop = true;
    reader.close();
  });
  const ack = async (seq: number) => {
    const r = await call(cp!, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: id, release: 'v1', seq },
    });
    expect(r.status).toBe(200);
    acked.push(seq);
  };
  const snap = await reader.next();
  await ack(JSON.parse(snap.data).seq);
  void (async () => {
    while (!stop) {
      const e = await reader.next(60_000).catch(() => undefined);
      if (e?.event === 'flip') await ack(Number(e.id));
    }
  })();
  return { acked };
}

describe('KS-6.2.4 / KS-5.1.4 a flip with wait reports who applied it and when the stop was complete', () => {
  it('one worker acks; the silent one counts as stopped when its lease runs out', async () => {
    // A lease long enough that worker-a (acking at once) keeps it through a loaded machine's
    // scheduling delays (400 ms let it run out before the flip under the full suite at load 24).
    ({ cp } = await startTestServer({ staleAfterMs: 1500, leaseMarginMs: 100 }));
    const a = await ackingWorker('worker-a');
    // worker-b renews its lease once and then goes silent.
    const b = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'worker-b', release: 'v0', seq: 0 },
    });
    expect(b.status).toBe(200);
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.operator,
      body: halt('acme', { wait: 5000 }),
    });
    expect(r.status).toBe(201);
    const fleet = r.json.fleet;
    expect(fleet.complete).toBe(true);
    expect(fleet.applied).toBe(1);
    expect(fleet.acknowledged).toEqual([
      expect.objectContaining({
        workerId: 'worker-a',
        release: 'v1',
        latencyMs: expect.any(Number),
      }),
    ]);
    expect(fleet.laggards).toEqual([
      expect.objectContaining({
        workerId: 'worker-b',
        release: 'v0',
        lastAckSeq: 0,
        leaseExpired: true,
      }),
    ]);
    // Complete exactly when worker-b's lease ran out (its ack came last of all the stops).
    expect(fleet.completeAt).toBe(fleet.laggards[0].leaseExpiresAt);
    // KS-5.1.15 times are ISO labels rounded to the ms, the duration is rounded on its own.
    expect(
      Math.abs(
        fleet.completeAfterMs - (Date.parse(fleet.completeAt) - Date.parse(fleet.appendedAt)),
      ),
    ).toBeLessThanOrEqual(1);
    expect(fleet.completeAfterMs).toBeGreaterThan(0);
    expect(fleet.completeAfterMs).toBeLessThanOrEqual(1600);
    expect(a.acked).toContain(1);
  });

  it('answers as soon as every worker acknowledged, well before the wait bound', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 60_000 }));
    await ackingWorker('w1');
    await ackingWorker('w2');
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: halt('acme', { wait: 20_000 }),
    });
    expect(r.json.fleet).toMatchObject({ complete: true, applied: 2, laggards: [] });
    expect(Date.parse(r.json.fleet.completeAt)).toBe(
      Math.max(...r.json.fleet.acknowledged.map((x: { at: string }) => Date.parse(x.at))),
    );
  });

  it('a wait that ends first answers complete: false with the laggards', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 60_000 }));
    await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'slow', seq: 0 },
    });
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: halt('acme', { wait: 50 }),
    });
    expect(r.json.fleet).toMatchObject({
      complete: false,
      completeAt: null,
      completeAfterMs: null,
      applied: 0,
    });
    expect(r.json.fleet.laggards).toEqual([
      expect.objectContaining({ workerId: 'slow', leaseExpired: false }),
    ]);
    const w = await call(cp, 'GET', '/v1/workers', { token: TOKENS.viewer });
    expect(w.json.workers[0]).toMatchObject({ id: 'slow', lag: 1, lastAckSeq: 0 });
  });
});

describe('KS-5.1.11 a restart with the file store serves the same log with the same seqs', () => {
  it('records appended before a restart are served after it, and new ones continue the chain', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ks-cp-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'flips.jsonl');
    let store: FlipLogStore = new FileFlipLogStore({ path });
    ({ cp } = await startTestServer({ store }));
    for (const t of ['a', 'b', 'c'])
      await call(cp, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt(t) });
    const before = (await call(cp, 'GET', '/v1/flips', { token: TOKENS.viewer })).json.flips;
    await cp.close();
    await store.close();

    store = new FileFlipLogStore({ path });
    ({ cp } = await startTestServer({ store }));
    cleanups.push(() => store.close());
    const after = (await call(cp, 'GET', '/v1/flips', { token: TOKENS.viewer })).json.flips;
    expect(after).toEqual(before);
    // A client that had seen seq 2 resumes with exactly seq 3, then the next live record.
    const { reader } = await SseReader.open(`${cp.url}/v1/stream`, {
      ...bearer(TOKENS.viewer),
      'last-event-id': '2',
    });
    cleanups.push(() => reader.close());
    const e3 = await reader.next();
    expect(JSON.parse(e3.data)).toEqual(before[2]);
    const r = await call(cp, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('d') });
    expect(r.json.flip.seq).toBe(4);
    expect(r.json.flip.prev).toBe(before[2].hash);
    const e4 = await reader.nextNonHeartbeat();
    expect(e4.id).toBe('4');
  });
});

describe('KS-5.1.15 one time format in the answers', () => {
  const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
  /** Every field named `at` or `…At` in `v`, with its path; and every `…Ms` field. */
  function fields(
    v: unknown,
    path = '',
  ): { times: [string, unknown][]; durations: [string, unknown][] } {
    const out = { times: [] as [string, unknown][], durations: [] as [string, unknown][] };
    if (v === null || typeof v !== 'object') return out;
    for (const [k, x] of Object.entries(v)) {
      const p = `${path}.${k}`;
      if ((k === 'at' || k.endsWith('At')) && x !== null) out.times.push([p, x]);
      else if (k.endsWith('Ms') && x !== null) out.durations.push([p, x]);
      const inner = fields(x, p);
      out.times.push(...inner.times);
      out.durations.push(...inner.durations);
    }
    return out;
  }

  it('every time in a flip answer, the worker list and an ack answer is ISO 8601 UTC with ms, every duration whole ms', async () => {
    // w-fast keeps its lease through scheduling delays; w-gone's runs out within the wait.
    ({ cp } = await startTestServer({ staleAfterMs: 1200, leaseMarginMs: 50 }));
    await ackingWorker('w-fast');
    await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'w-gone', seq: 0 },
    });
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: halt('acme', { wait: 3000 }),
    });
    expect(r.status).toBe(201);
    expect(r.json.fleet.complete).toBe(true);
    const ack = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'w-fast', seq: 1 },
    });
    const workers = await call(cp, 'GET', '/v1/workers', { token: TOKENS.viewer });
    const f = fields({ flip: r.json, workers: workers.json, ack: ack.json });
    // The flip's own `at`, the fleet's appendedAt/completeAt, an acknowledgement's at, a
    // laggard's and the workers' leaseExpiresAt, lastAckAt, and the ack's serverTime.
    const names = new Set(f.times.map(([p]) => p.replace(/\.\d+\./g, '.[].')));
    for (const n of [
      '.flip.flip.at',
      '.flip.fleet.appendedAt',
      '.flip.fleet.completeAt',
      '.flip.fleet.acknowledged.[].at',
      '.flip.fleet.laggards.[].leaseExpiresAt',
      '.workers.workers.[].lastAckAt',
      '.workers.workers.[].leaseExpiresAt',
    ]) {
      expect(names, n).toContain(n);
    }
    for (const [p, t] of f.times) expect(t, p).toMatch(ISO);
    expect(ack.json.serverTime).toMatch(ISO);
    expect(f.durations.length).toBeGreaterThanOrEqual(4);
    for (const [p, d] of f.durations) expect(Number.isInteger(d), `${p} = ${String(d)}`).toBe(true);
  });
});
