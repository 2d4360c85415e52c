import { afterEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import type { SourceStatus } from '../../src/source/index.js';
import { TOKENS, call, startTestServer } from './helpers.js';

let cp: ControlPlane | undefined;
let source: RemoteFlipSource | undefined;
afterEach(async () => {
  await source?.stop();
  await cp?.close();
  cp = source = undefined;
});

async function follow(
  url: string,
  options: Partial<ConstructorParameters<typeof RemoteFlipSource>[0]>,
): Promise<RemoteFlipSource> {
  const s = new RemoteFlipSource({
    urls: [url],
    token: TOKENS.worker,
    workerId: 'gw-1',
    staleAfterMs: 1500,
    heartbeatMs: 100,
    logger: { warn: () => undefined },
    ...options,
  });
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  await s.start({
    onSnapshot: () => undefined,
    onFlip: () => undefined,
    onStatus: (st: SourceStatus) => {
      if (st === 'open') open();
    },
  });
  await opened;
  return s;
}

describe('KS-15.5.3 a gateway reports its seams with each acknowledgement; GET /v1/workers lists them', () => {
  it('the newest report is listed with its receive time; an ordinary worker has none', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 1500, leaseMarginMs: 100, heartbeatMs: 200 }));
    let inFlight = 3;
    source = await follow(cp.url, {
      gatewayReport: () => ({
        seams: [
          { seam: 'llm', inFlight },
          { seam: 'mcp', inFlight: 0 },
        ],
      }),
    });
    const listed = async () => {
      const r = await call(cp!, 'GET', '/v1/workers', { token: TOKENS.admin });
      return (r.json as { workers: { id: string; gateway?: unknown }[] }).workers;
    };
    await expect
      .poll(async () => (await listed()).find((w) => w.id === 'gw-1')?.gateway, { timeout: 5000 })
      .toEqual({
        seams: [
          { seam: 'llm', inFlight: 3 },
          { seam: 'mcp', inFlight: 0 },
        ],
        at: expect.any(String),
      });
    inFlight = 0; // the next heartbeat acknowledgement says so
    await expect
      .poll(async () => (await listed()).find((w) => w.id === 'gw-1')?.gateway, { timeout: 5000 })
      .toMatchObject({ seams: [{ seam: 'llm', inFlight: 0 }, { seam: 'mcp' }] });
    // A worker without a report is listed without the field.
    cp.tracker.ack({ workerId: 'w1', seq: 0 });
    expect((await listed()).find((w) => w.id === 'w1')).not.toHaveProperty('gateway');
  });

  it('a control plane that refuses the field (an older one) gets acknowledgements without it from then on: the gateway stays fresh', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 1500, leaseMarginMs: 100, heartbeatMs: 200 }));
    const refused: string[] = [];
    // What an older server answers: its strict ack schema knows no `gateway` key.
    const older: typeof fetch = async (input, init) => {
      const body = typeof init?.body === 'string' ? init.body : '';
      if (String(input).includes('/v1/acks') && body.includes('"gateway"')) {
        refused.push(body);
        return new Response(
          JSON.stringify({
            error: {
              code: 'KS_INVALID_INPUT',
              message: 'invalid acknowledgement: Unrecognized key: "gateway"',
            },
          }),
          { status: 400, headers: { 'content-type': 'application/json' } },
        );
      }
      return fetch(input, init);
    };
    const warnings: string[] = [];
    source = await follow(cp.url, {
      fetch: older,
      logger: { warn: (m: string) => warnings.push(m) },
      gatewayReport: () => ({ seams: [{ seam: 'llm', inFlight: 1 }] }),
    });
    await new Promise((r) => setTimeout(r, 2000)); // longer than the lease
    expect(source.status).toBe('open');
    expect(refused.length).toBeGreaterThan(0);
    const n = refused.length;
    await new Promise((r) => setTimeout(r, 500));
    expect(refused.length).toBe(n); // asked once, not on every heartbeat
    expect(warnings).toContain(
      "remote flip source gw-1: the control plane does not take a gateway's report of its seams; acknowledging without it",
    );
    const w = cp.tracker.workers().find((x) => x.id === 'gw-1')!;
    expect(w.stale).toBe(false);
    expect(w).not.toHaveProperty('gateway');
  });
});
