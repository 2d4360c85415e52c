/**
 * KS-17.7.9 the gateway checks the stream's signatures when it is given the control plane's
 * public key (`controlPlane.publicKeys` in its config, `killswitch gateway --public-key <file>`):
 * it follows the key holder, and a server that is not the key holder (here a control plane that
 * holds no key, so its snapshots are unsigned, as a forger's are) leaves it failing closed: every
 * call refused, `/healthz` 503, nothing acknowledged. Real gateway processes (the compiled CLI).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/gateway/index.js';
import { SigningKey, type ControlPlane } from '../../src/server/index.js';
import { startSlowLlmServer, type SlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import { MAIN } from '../fixtures/run-cli.js';
import { stopCli } from '../fixtures/serve-cli.js';
import { TOKENS, call, startTestServer } from '../server/helpers.js';
import { until } from './harness.js';

const key = SigningKey.generate();
let dir: string;
let llm: SlowLlmServer;
const children: ChildProcess[] = [];
const planes: ControlPlane[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ks-gw-sig-'));
  llm = await startSlowLlmServer({ tokens: 2, tokenIntervalMs: 5 });
});
afterEach(async () => {
  for (const c of children.splice(0)) await stopCli(c);
  for (const cp of planes.splice(0)) await cp.close();
  await llm.close();
  rmSync(dir, { recursive: true, force: true });
});

async function controlPlane(signed: boolean): Promise<ControlPlane> {
  const { cp } = await startTestServer({
    staleAfterMs: 1500,
    leaseMarginMs: 100,
    heartbeatMs: 200,
    ...(signed ? { signingKey: key } : {}),
  });
  planes.push(cp);
  return cp;
}

function config(cp: ControlPlane, workerId: string, publicKeys?: string[]) {
  return {
    workerId,
    controlPlane: {
      urls: [cp.url],
      tokenEnv: 'KS_GW_TOKEN',
      staleAfterMs: 1500,
      heartbeatMs: 200,
      ...(publicKeys === undefined ? {} : { publicKeys }),
    },
    llm: { openai: llm.url },
  };
}

/** `killswitch gateway --config ... --public-key <file>`; resolves with its URL and output. */
async function startGateway(cfg: object, keyFile: string) {
  const path = join(dir, `${(cfg as { workerId: string }).workerId}.json`);
  writeFileSync(path, JSON.stringify(cfg));
  const child = spawn(
    process.execPath,
    [MAIN, 'gateway', '--config', path, '--port', '0', '--json', '--public-key', keyFile],
    {
      env: { PATH: process.env['PATH'] ?? '', KS_GW_TOKEN: TOKENS.worker },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  const io = { out: '' };
  child.stdout!.on('data', (d: Buffer) => (io.out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (io.out += d.toString()));
  await until(() => io.out.includes('"url"'), 20_000, `the start line (${io.out})`);
  const start = JSON.parse(io.out.split('\n').find((l) => l.startsWith('{'))!) as {
    url: string;
    signaturesChecked: boolean;
  };
  return { ...start, io };
}

const chat = (url: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'm', messages: [] }),
  });

describe('KS-17.7.9 killswitch gateway --public-key', () => {
  it('follows the key holder: fresh, calls pass, a signed halt is applied and acknowledged', async () => {
    const cp = await controlPlane(true);
    const keyFile = join(dir, 'signing.pub');
    writeFileSync(keyFile, key.publicKeyPem);
    const gw = await startGateway(config(cp, 'gw-signed'), keyFile);
    expect(gw.signaturesChecked).toBe(true);
    await until(async () => (await fetch(`${gw.url}/healthz`)).status === 200, 10_000, 'fresh');
    expect((await chat(gw.url)).status).toBe(200);
    const f = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: { action: 'halt', selector: {}, reason: 'signed stop', wait: 5000 },
    });
    expect(f.json.fleet.acknowledged.map((a: { workerId: string }) => a.workerId)).toContain(
      'gw-signed',
    );
    expect((await chat(gw.url)).status).toBe(403);
  });

  it('refuses the unsigned snapshot of a server that is not the key holder and fails closed: 503 on every call, nothing acknowledged', async () => {
    const forger = await controlPlane(false);
    const keyFile = join(dir, 'signing.pub');
    writeFileSync(keyFile, key.publicKeyPem);
    const gw = await startGateway(config(forger, 'gw-forged'), keyFile);
    await until(
      () => /snapshot at seq 0 is not signed/.test(gw.io.out),
      10_000,
      `the refusal on stderr (${gw.io.out})`,
    );
    // Given time to apply it (several heartbeats), it never does.
    await new Promise((r) => setTimeout(r, 1000));
    const health = await fetch(`${gw.url}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { appliedSeq: number | undefined }).appliedSeq ?? 0).toBe(0);
    const refused = await chat(gw.url);
    expect(refused.status).toBe(503);
    // The forger's halt with wait: the gateway never acknowledged anything it sent.
    const f = await call(forger, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: { action: 'halt', selector: {}, reason: 'forged', wait: 800 },
    });
    expect(f.json.fleet.acknowledged.map((a: { workerId: string }) => a.workerId)).not.toContain(
      'gw-forged',
    );
    // The control run: the same gateway config without keys follows that server.
    const plain = await Gateway.start({
      config: config(forger, 'gw-plain'),
      env: { KS_GW_TOKEN: TOKENS.worker },
      logger: { info() {}, warn() {} },
    });
    try {
      await until(
        async () => (await fetch(`${plain.url}/healthz`)).status === 200,
        10_000,
        'fresh',
      );
    } finally {
      await plain.close();
    }
  });

  it('controlPlane.publicKeys in the config (PEM text) refuses the forger the same way; an unreadable key file refuses to start, naming the field', async () => {
    const forger = await controlPlane(false);
    const warnings: string[] = [];
    const gw = await Gateway.start({
      config: config(forger, 'gw-inline', [key.publicKeyPem]),
      env: { KS_GW_TOKEN: TOKENS.worker },
      logger: { info() {}, warn: (m: string) => warnings.push(m) },
    });
    try {
      await until(
        () => warnings.some((w) => /snapshot at seq 0 is not signed/.test(w)),
        10_000,
        'the refusal',
      );
      expect((await fetch(`${gw.url}/healthz`)).status).toBe(503);
      expect((await chat(gw.url)).status).toBe(503);
    } finally {
      await gw.close();
    }
    await expect(
      Gateway.start({
        config: config(forger, 'gw-nokey', [join(dir, 'missing.pub')]),
        env: { KS_GW_TOKEN: TOKENS.worker },
        logger: { info() {}, warn() {} },
      }),
    ).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
      message: expect.stringMatching(/controlPlane\.publicKeys\.0: cannot read/),
    });
    await expect(
      Gateway.start({
        config: config(forger, 'gw-badkey', [
          '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----',
        ]),
        env: { KS_GW_TOKEN: TOKENS.worker },
        logger: { info() {}, warn() {} },
      }),
    ).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
      message: expect.stringMatching(/publicKeys/),
    });
  });
});
