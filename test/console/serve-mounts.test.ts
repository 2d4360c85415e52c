import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAIN } from '../fixtures/run-cli.js';

// Runs the built CLI (npm run build first): `killswitch serve` mounts the console, /metrics and
// the Alertmanager webhook on the control plane it starts.

let dir: string;
let child: ChildProcess | undefined;
let url: string;
let token: string;

function serve(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--data-dir', dataDir], {
      cwd: dir,
      env: { PATH: process.env['PATH'] ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => rej(new Error(`serve did not start: ${out}`)), 20_000);
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ child: c, url: m[1]! });
      }
    });
    c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`serve exited ${code}: ${out}`));
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-serve-mounts-'));
  const dataDir = join(dir, 'data');
  ({ child, url } = await serve(dataDir));
  token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.removeAllListeners('exit');
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await rm(dir, { recursive: true, force: true });
});

describe('KS-11.1.1 KS-11.2.1 KS-11.5.1 killswitch serve mounts the console, /metrics and the Alertmanager webhook', () => {
  it('serves the console page publicly with its CSP', async () => {
    const res = await fetch(url + '/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await res.text()).toContain('<script src="/console/app.js" defer>');
  });

  it('serves /metrics to a token only', async () => {
    expect((await fetch(url + '/metrics')).status).toBe(401);
    const res = await fetch(url + '/metrics', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('killswitch_flips_total');
  });

  it('halts from an Alertmanager payload, and the flip shows in the metrics', async () => {
    const res = await fetch(url + '/v1/alerts/alertmanager', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        version: '4',
        status: 'firing',
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'Runaway', killswitch_level: 'tenant', tenant: 'acme' },
            fingerprint: 'f00d',
            startsAt: '2026-11-24T03:00:00Z',
          },
        ],
      }),
    });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { halts: { outcome: string }[] };
    expect(answer.halts[0]!.outcome).toBe('halted');
    const metrics = await (
      await fetch(url + '/metrics', { headers: { authorization: `Bearer ${token}` } })
    ).text();
    expect(metrics).toContain('killswitch_active_halts{level="tenant"} 1');
  });
});
