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
    ({ cp } = await startTestServer({ staleAfterMs: 400, leaseMarginMs: 100 }));
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
    expect(fleet.completeAfterMs).toBe(fleet.completeAt - fleet.appendedAt);
    expect(fleet.completeAfterMs).toBeGreaterThan(0);
    expect(fleet.completeAfterMs).toBeLessThanOrEqual(500);
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
    expect(r.json.fleet.completeAt).toBe(
      Math.max(...r.json.fleet.acknowledged.map((x: { at: number }) => x.at)),
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
