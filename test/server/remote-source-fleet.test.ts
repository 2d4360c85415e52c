import { afterEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import type { FlipRecord, KillSnapshot } from '../../src/model/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import type { SourceStatus } from '../../src/source/index.js';
import { TOKENS, call, halt, startTestServer } from './helpers.js';

let cp: ControlPlane | undefined;
const sources: RemoteFlipSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  await cp?.close();
  cp = undefined;
});

/** Starts a real remote source and resolves once it is open (fresh). */
async function worker(id: string): Promise<{ source: RemoteFlipSource; applied: number[] }> {
  const source = new RemoteFlipSource({
    urls: [cp!.url],
    token: TOKENS.worker,
    workerId: id,
    release: 'v1',
    staleAfterMs: 1000,
    heartbeatMs: 200,
  });
  sources.push(source);
  const applied: number[] = [];
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  await source.start({
    onSnapshot: (s: KillSnapshot) => applied.push(s.seq),
    onFlip: (r: FlipRecord) => applied.push(r.seq),
    onStatus: (st: SourceStatus) => {
      if (st === 'open') open();
    },
  });
  await opened;
  return { source, applied };
}

describe('KS-6.2.5 with the real remote source: a flip waits for the fleet', () => {
  it('a live source acknowledges; a stopped one counts as stopped at its lease expiry', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 1000, leaseMarginMs: 100, heartbeatMs: 200 }));
    const live = await worker('live-1');
    const gone = await worker('gone-1');
    // Let both renew their leases, then silence one (a worker that froze).
    for (let i = 0; i < 100; i++) {
      const ws = (await call(cp, 'GET', '/v1/workers', { token: TOKENS.viewer })).json.workers;
      if (ws.length === 2 && ws.every((w: { lastAckSeq: number | null }) => w.lastAckSeq === 0))
        break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await gone.source.stop();
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.operator,
      body: halt('acme', { wait: 5000 }),
    });
    expect(r.status).toBe(201);
    const f = r.json.fleet;
    expect(f.complete).toBe(true);
    expect(f.acknowledged.map((a: { workerId: string }) => a.workerId)).toEqual(['live-1']);
    expect(f.laggards).toEqual([
      expect.objectContaining({ workerId: 'gone-1', leaseExpired: true }),
    ]);
    expect(Date.parse(f.completeAt)).toBeGreaterThanOrEqual(
      Date.parse(f.laggards[0].leaseExpiresAt),
    );
    expect(live.applied).toContain(1);
  });
});
