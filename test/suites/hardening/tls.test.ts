/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
/**
 * KS-17.10.1 over the wire: the control plane serves HTTPS with a certificate generated in the
 * test (openssl: a CA, and a certificate for 127.0.0.1 it signs); the client, the CLI and a worker
 * accept that CA and refuse a certificate another CA signed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { RemoteFlipSource } from '../../../providers/remote/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import { ControlPlaneClient, tlsFetch } from '../../../src/client/index.js';
import { startControlPlane } from '../../../src/server/index.js';
import { MAIN, runCli } from '../../fixtures/run-cli.js';
import { RecordingListener } from '../support/recording-listener.js';

const ADMIN = 'ks-admin-token-0123456789ab';
const FLEET = 'ks-fleet-token-0123456789abc';
const SPECS: TokenSpec[] = [
  { name: 'ada', token: ADMIN, role: 'admin' },
  { name: 'fleet', token: FLEET, role: 'worker', workers: ['w-*'] },
];
let dir = '';
let ca: Buffer;
let otherCa: Buffer;
let cert: Buffer;
let key: Buffer;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=ks-test-ca',
  );
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'other.key',
    '-out',
    'other.pem',
    '-days',
    '1',
    '-subj',
    '/CN=ks-other-ca',
  );
  openssl('req', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'srv.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'srv.pem',
    '-days',
    '1',
    '-extfile',
    'san.ext',
  );
  ca = await readFile(join(dir, 'ca.pem'));
  otherCa = await readFile(join(dir, 'other.pem'));
  cert = await readFile(join(dir, 'srv.pem'));
  key = await readFile(join(dir, 'srv.key'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function server() {
  const store = new MemoryFlipLogStore();
  const cp = await startControlPlane({
    store,
    port: 0,
    auth: new TokenAuthenticator({ tokens: SPECS }),
    tls: { cert, key },
    headersTimeoutMs: 500,
    heartbeatMs: 200,
    logger: { info() {}, warn() {}, error() {} },
  });
  cleanups.push(() => cp.close());
  return { cp, store };
}

describe('KS-17.10.1 TLS', () => {
  it('serves https; a client with the CA flips; one with another CA, or none, is refused', async () => {
    const { cp, store } = await server();
    expect(cp.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const good = new ControlPlaneClient({ url: cp.url, token: ADMIN, fetch: tlsFetch({ ca }) });
    const answer: any = await good.flip({
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'tls',
    });
    expect(answer.flip.seq).toBe(1);
    const wrong = new ControlPlaneClient({
      url: cp.url,
      token: ADMIN,
      fetch: tlsFetch({ ca: otherCa }),
    });
    await expect(
      wrong.flip({ action: 'halt', selector: { tenant: 'b' }, reason: 'x' }),
    ).rejects.toThrow();
    await expect(fetch(`${cp.url}/healthz`)).rejects.toThrow();
    expect((await store.head()).seq).toBe(1);
  });

  it('a worker with tls: { ca } streams and acknowledges over https, and applies a halt', async () => {
    const { cp } = await server();
    const source = new RemoteFlipSource({
      urls: [cp.url],
      token: FLEET,
      workerId: 'w-tls',
      tls: { ca },
      staleAfterMs: 2000,
      heartbeatMs: 200,
    });
    cleanups.push(() => source.stop());
    const admin = new ControlPlaneClient({ url: cp.url, token: ADMIN, fetch: tlsFetch({ ca }) });
    await source.start(new RecordingListener());
    await admin.flip({ action: 'halt', selector: { tenant: 'acme' }, reason: 'tls' });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !cp.tracker.workers().some((w) => w.lastAckSeq === 1))
      await new Promise((r) => setTimeout(r, 50));
    expect(cp.tracker.workers().find((w) => w.id === 'w-tls')?.lastAckSeq).toBe(1);
  });

  it('a TCP connection that never starts its handshake is closed after headersTimeoutMs', async () => {
    const { cp } = await server();
    const s = connect(cp.port, '127.0.0.1');
    s.on('error', () => {});
    cleanups.push(() => s.destroy());
    const closed = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 5000);
      s.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    expect(closed).toBe(true);
  });

  it('killswitch serve --tls-cert --tls-key prints an https URL; the CLI flips with --ca, and is refused without it', async () => {
    const data = join(dir, 'serve');
    const { spawn } = await import('node:child_process');
    const child = spawn(
      process.execPath,
      [
        MAIN,
        'serve',
        '--json',
        '--data-dir',
        data,
        '--port',
        '0',
        '--store',
        'memory',
        '--tls-cert',
        join(dir, 'srv.pem'),
        '--tls-key',
        join(dir, 'srv.key'),
      ],
      {
        env: { PATH: process.env['PATH'] ?? '', KILLSWITCH_TOKENS: JSON.stringify(SPECS) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    cleanups.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    });
    expect(url).toMatch(/^https:/);
    const env = { KILLSWITCH_URL: url, KILLSWITCH_TOKEN: ADMIN };
    const ok = await runCli(
      ['flip', '--tenant', 'acme', '--reason', 'tls', '--wait', '0', '--ca', join(dir, 'ca.pem')],
      env,
    );
    expect(ok.code, ok.stderr).toBe(0);
    const refused = await runCli(['flip', '--tenant', 'b', '--reason', 'tls', '--wait', '0'], env);
    expect(refused.code).toBe(3);
  });
});
