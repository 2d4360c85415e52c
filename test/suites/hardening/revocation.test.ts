/**
 * KS-17.6.1 over the wire: the "an expired or revoked token's open stream keeps receiving
 * flips" reproducer. A stream ends within a heartbeat once its token is removed or rotated by a
 * reload, or expires; streams of unchanged tokens go on.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import { startControlPlane } from '../../../src/server/index.js';

const ADMIN = 'ks-admin-token-0123456789ab';
const VIEWER = 'ks-viewer-token-0123456789ab';
const FLEET = 'ks-fleet-token-0123456789abc';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(tokens: TokenSpec[]) {
  const auth = new TokenAuthenticator({ tokens });
  const warnings: string[] = [];
  const cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    auth,
    heartbeatMs: 200,
    logger: { info() {}, warn: (m) => warnings.push(m), error() {} },
  });
  cleanups.push(() => cp.close());
  return { cp, auth, warnings };
}

/** An open stream: resolves once its head arrived; `ended` resolves when the server ends it. */
function stream(port: number, token: string, query = '') {
  return new Promise<{ socket: Socket; ended: Promise<void>; text: () => string }>((resolve) => {
    const s = connect(port, '127.0.0.1');
    cleanups.push(() => s.destroy());
    let buf = '';
    const ended = new Promise<void>((r) => s.once('close', () => r()));
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('\r\n\r\n')) resolve({ socket: s, ended, text: () => buf });
    });
    s.write(
      `GET /v1/stream${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
  });
}

const within = (p: Promise<void>, ms: number) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('KS-17.6.1 revoking, rotating or expiring a token ends its open streams', () => {
  it('a token removed by a reload: its streams end at once, others keep streaming', async () => {
    const specs: TokenSpec[] = [
      { name: 'ada', token: ADMIN, role: 'admin' },
      { name: 'dashboard', token: VIEWER, role: 'viewer' },
      { name: 'fleet', token: FLEET, role: 'worker', workers: ['w-*'] },
    ];
    const { cp, auth, warnings } = await server(specs);
    const viewer = await stream(cp.port, VIEWER);
    const worker = await stream(cp.port, FLEET, '?worker=w-1');
    const admin = await stream(cp.port, ADMIN);
    expect(viewer.text()).toMatch(/^HTTP\/1\.1 200/);
    auth.replace(specs.filter((s) => s.name !== 'dashboard'));
    expect(await within(viewer.ended, 1000)).toBe(true);
    expect(warnings.join('\n')).toMatch(
      /ended the streams of revoked or expired tokens: dashboard/,
    );
    // Rotating the worker's token (a new secret under the same name) ends its stream too.
    auth.replace([specs[0]!, { ...specs[2]!, token: 'ks-fleet-token-rotated-01234' }]);
    expect(await within(worker.ended, 1000)).toBe(true);
    // The unchanged admin token's stream stays, and receives the next flip.
    expect(await within(admin.ended, 600)).toBe(false);
    const res = await fetch(`${cp.url}/v1/flips`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'halt', selector: { tenant: 'acme' }, reason: 'x' }),
    });
    expect(res.status).toBe(201);
    await new Promise((r) => setTimeout(r, 200));
    expect(admin.text()).toMatch(/event: flip/);
    expect(cp.stats().subscribers).toBe(1);
  });

  it('a token that expires while streaming: its stream ends within a heartbeat, and it is refused after', async () => {
    const { cp } = await server([
      { name: 'ada', token: ADMIN, role: 'admin' },
      {
        name: 'temp',
        token: VIEWER,
        role: 'viewer',
        expiresAt: new Date(Date.now() + 1500).toISOString(),
      },
    ]);
    const s = await stream(cp.port, VIEWER);
    expect(s.text()).toMatch(/^HTTP\/1\.1 200/);
    expect(await within(s.ended, 5000)).toBe(true);
    const again = await fetch(`${cp.url}/v1/state`, {
      headers: { authorization: `Bearer ${VIEWER}` },
    });
    expect(again.status).toBe(401);
  });
});
