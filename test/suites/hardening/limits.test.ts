/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
/**
 * KS-17.8.1, KS-17.8.2 over the wire: the "Starved" and "Unbounded" reproducers. Idle and
 * half-sent connections are closed; a flood of them (larger than the descriptor limit of the
 * server process) does not keep an admin's halt from answering within 1 s; streams are bounded per
 * token and in total; streams opening on one large snapshot share one buffer.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import { startControlPlane, type ControlPlaneOptions } from '../../../src/server/index.js';
import { defaultMaxConnections } from '../../../src/server/connection-guard.js';
import { assertBuilt, CLI } from '../support/serve-process.js';

const ADMIN = 'ks-admin-token-0123456789ab';
const VIEWER = 'ks-viewer-token-0123456789ab';
const FLEET = 'ks-fleet-token-0123456789abc';
const SPECS: TokenSpec[] = [
  { name: 'ada', token: ADMIN, role: 'admin' },
  { name: 'dashboard', token: VIEWER, role: 'viewer' },
  { name: 'fleet', token: FLEET, role: 'worker', workers: ['w-*'] },
];
const quiet = { info() {}, warn() {}, error() {} };
const root = await mkdtemp(join(tmpdir(), 'ks-limits-'));
afterAll(() => rm(root, { recursive: true, force: true }));
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
    logger: quiet,
    ...extra,
  });
  cleanups.push(() => cp.close());
  return { cp, store };
}

/** Opens a TCP connection that sends `bytes` (maybe nothing) and then waits. */
function idleSocket(port: number, bytes = ''): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.once('connect', () => {
      if (bytes !== '') s.write(bytes);
      resolve(s);
    });
    s.once('error', reject);
    cleanups.push(() => s.destroy());
  });
}

function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed || s.readyState === 'closed') return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** POST over a fresh connection; resolves with the status and the time it took. */
function timedHalt(port: number, token: string, tenant: string) {
  const body = JSON.stringify({ action: 'halt', selector: { tenant }, reason: 'incident' });
  const started = performance.now();
  return new Promise<{ status: number; ms: number; json: any }>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/flips',
        agent: false,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            ms: performance.now() - started,
            json: JSON.parse(text),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Opens a stream; resolves with its status (and the socket, paused, for 200s). */
function openStream(
  port: number,
  token: string,
  query = '',
): Promise<{ status: number; body: string; socket: Socket }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    cleanups.push(() => s.destroy());
    let buf = '';
    const onData = (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1]);
      if (status === 200) {
        s.off('data', onData);
        s.pause();
        resolve({ status, body: '', socket: s });
      } else if (/\r\n\r\n[\s\S]*\}/.test(buf) || buf.includes('\r\n0\r\n')) {
        resolve({ status, body: buf.slice(end + 4), socket: s });
      }
    };
    s.on('data', onData);
    s.on('error', () => {});
    s.write(
      `GET /v1/stream${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
  });
}

describe('KS-17.8.1 idle and half-sent connections are closed', () => {
  it('a connection that sends nothing, and one that sends half a request line, are closed after headersTimeoutMs', async () => {
    const { cp } = await server({ headersTimeoutMs: 500 });
    const silent = await idleSocket(cp.port);
    const half = await idleSocket(cp.port, 'POST /v1/fl');
    const headless = await idleSocket(cp.port, 'GET /v1/state HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    // Swept once a second: within 500 ms + 1 s, with room for a loaded machine.
    expect(await closedWithin(silent, 4000)).toBe(true);
    expect(await closedWithin(half, 4000)).toBe(true);
    expect(await closedWithin(headless, 4000)).toBe(true);
    expect(cp.stats().connections.timedOut).toBeGreaterThanOrEqual(2);
  });

  it('a keep-alive connection idle after its answer is closed after keepAliveTimeoutMs', async () => {
    const { cp } = await server({ keepAliveTimeoutMs: 300 });
    const s = await idleSocket(
      cp.port,
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`,
    );
    const answered = new Promise<void>((r) => s.once('data', () => r()));
    await answered;
    expect(await closedWithin(s, 4000)).toBe(true);
  });

  it('the default cap comes from the descriptor limit: 80 % less 64, from 64 to 8192', async () => {
    const file = join(root, 'limits');
    const { writeFile } = await import('node:fs/promises');
    const at = async (n: string) => {
      await writeFile(
        file,
        `Max open files            ${n}                 ${n}                 files\n`,
      );
      return defaultMaxConnections(file);
    };
    expect(await at('256')).toBe(140);
    expect(await at('1024')).toBe(755);
    expect(await at('100')).toBe(64);
    expect(await at('1048576')).toBe(8192);
    expect(defaultMaxConnections(join(root, 'missing'))).toBe(755);
  });
});

describe('KS-17.8.1 a flood of idle connections does not keep a flip out', () => {
  it('300 idle sockets against maxConnections 64: an admin halt answers within 1 s; the flood is cut, streams are not', async () => {
    const { cp } = await server({ maxConnections: 64, reservedConnections: 8 });
    const worker = await openStream(cp.port, FLEET, '?worker=w-1');
    expect(worker.status).toBe(200);
    const flood: Socket[] = [];
    for (let i = 0; i < 300; i++) flood.push(await idleSocket(cp.port, i % 2 ? '' : 'GET /v1/st'));
    const halt = await timedHalt(cp.port, ADMIN, 'acme');
    expect(halt.status).toBe(201);
    expect(halt.ms).toBeLessThan(1000);
    const st = cp.stats();
    expect(st.connections.open).toBeLessThanOrEqual(64);
    expect(st.connections.evicted).toBeGreaterThan(200);
    // The worker's stream was never closed to make room: it is still subscribed.
    expect(st.subscribers).toBe(1);
    expect(worker.socket.destroyed).toBe(false);
  });

  it('killswitch serve with a descriptor limit of 256 and 300 idle sockets still answers an admin halt within 1 s', async () => {
    assertBuilt();
    const dir = join(root, 'serve-fd');
    const child = spawn(
      'sh',
      [
        '-c',
        `ulimit -n 256 && exec "$0" "$@"`,
        process.execPath,
        CLI,
        'serve',
        '--json',
        '--data-dir',
        dir,
        '--port',
        '0',
        '--store',
        'memory',
      ],
      {
        env: { PATH: process.env['PATH'] ?? '', KILLSWITCH_TOKENS: JSON.stringify(SPECS) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    cleanups.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`serve did not start: ${out} ${err}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    const port = Number(new URL(url).port);
    for (let i = 0; i < 300; i++) await idleSocket(port);
    const halt = await timedHalt(port, ADMIN, 'acme');
    expect(halt.status, err).toBe(201);
    expect(halt.ms).toBeLessThan(1000);
    expect(err).toMatch(/closing idle connections to make room/);
  });
});

describe('KS-17.8.2 streams are bounded per token and in total; a worker id has one stream', () => {
  it('a viewer token beyond maxStreamsPerToken is refused 429 naming the limit; another token still streams', async () => {
    const { cp } = await server({ maxStreamsPerToken: 3 });
    for (let i = 0; i < 3; i++) expect((await openStream(cp.port, VIEWER)).status).toBe(200);
    const fourth = await openStream(cp.port, VIEWER);
    expect(fourth.status).toBe(429);
    expect(fourth.body).toMatch(/KS_LIMIT_EXCEEDED/);
    expect(fourth.body).toMatch(/maxStreamsPerToken \(3\)/);
    expect((await openStream(cp.port, ADMIN)).status).toBe(200);
    expect(cp.stats().subscribers).toBe(4);
  });

  it('beyond maxStreams every stream is refused 429, and a closed stream frees its slot', async () => {
    const { cp } = await server({ maxStreams: 2 });
    const a = await openStream(cp.port, VIEWER);
    expect((await openStream(cp.port, ADMIN)).status).toBe(200);
    const third = await openStream(cp.port, FLEET, '?worker=w-9');
    expect(third.status).toBe(429);
    expect(third.body).toMatch(/maxStreams \(2\)/);
    a.socket.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await openStream(cp.port, FLEET, '?worker=w-9')).status).toBe(200);
  });

  it('a second stream as the same worker id ends the first', async () => {
    const { cp } = await server();
    const first = await openStream(cp.port, FLEET, '?worker=w-1');
    const closed = closedWithin(first.socket, 3000);
    first.socket.resume();
    const second = await openStream(cp.port, FLEET, '?worker=w-1');
    expect(second.status).toBe(200);
    expect(await closed).toBe(true);
    expect(cp.stats().subscribers).toBe(1);
  });
});

describe('KS-17.8.2 streams share one encoded snapshot', () => {
  it('30 non-reading streams on a 7 MB kill state hold about one copy of it, not 30', async () => {
    const { cp, store } = await server({ maxBufferedBytes: 64 * 1024 });
    for (let i = 0; i < 3600; i++) {
      await store.append({
        actor: 'ada',
        action: 'halt',
        selector: { tenant: `t${i}` },
        reason: 'r'.repeat(1900),
      });
    }
    await new Promise((r) => setTimeout(r, 50));
    const first = await openStream(cp.port, ADMIN, '?snapshot=1');
    expect(first.status).toBe(200);
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 30; i++) expect((await openStream(cp.port, ADMIN)).status).toBe(200);
    const grown = process.memoryUsage().arrayBuffers - before;
    // Before: each stream encoded its own ~7 MB snapshot (30 x 7 MB = 210 MB held).
    expect(grown).toBeLessThan(30 * 1024 * 1024);
    expect(cp.stats().subscribers).toBe(31);
  });
});
