/**
 * KS-17.3 through the CLI: `killswitch token create|hash`, and a running `killswitch serve` that
 * reloads its token file on change and on SIGHUP, refuses an exposed one, and keeps the tokens in
 * force when a reload breaks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MAIN, runCli } from '../../fixtures/run-cli.js';

const root = await mkdtemp(join(tmpdir(), 'ks-token-cli-'));
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0))
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
let n = 0;

interface Serve {
  readonly url: string;
  readonly child: ChildProcess;
  stderr(): string;
}

function serve(dataDir: string, tokensFile: string): Promise<Serve> {
  const child = spawn(
    process.execPath,
    [MAIN, 'serve', '--json', '--port', '0', '--data-dir', dataDir, '--tokens', tokensFile],
    { env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((done, fail) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      // With --json, a refusal is a JSON error line on stdout too.
      const line = JSON.parse(out.slice(0, nl)) as { url?: string; error?: { message: string } };
      if (line.url !== undefined) done({ url: line.url, child, stderr: () => err });
      else fail(new Error(`serve refused: ${line.error?.message ?? out} ${err}`));
    });
    child.once('exit', (code) => fail(new Error(`serve exited ${code}: ${err}`)));
  });
}

async function status(url: string, token: string): Promise<number> {
  const r = await fetch(`${url}/v1/state`, { headers: { authorization: `Bearer ${token}` } });
  await r.text();
  return r.status;
}

async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function create(
  ...args: string[]
): Promise<{ token: string; entry: Record<string, unknown> }> {
  const r = await runCli(['token', 'create', '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('KS-17.3.3 killswitch token create and hash', () => {
  it('prints a new token once and a hashed entry that holds no secret', async () => {
    const { token, entry } = await create(
      '--name',
      'fleet-eu',
      '--role',
      'worker',
      '--workers',
      'eu-*',
    );
    expect(token).toMatch(/^ks_[a-z0-9]{12}_/);
    expect(entry).toMatchObject({ name: 'fleet-eu', role: 'worker', workers: ['eu-*'] });
    expect(JSON.stringify(entry)).not.toContain(token.slice(16));
    const scoped = await create(
      '--name',
      'acme',
      '--role',
      'operator',
      '--scope',
      'tenant=acme',
      '--resume',
    );
    expect(scoped.entry).toMatchObject({ scopes: [{ tenant: 'acme' }], resume: true });
  });

  it('refuses an entry the token file would refuse, naming the field', async () => {
    const r = await runCli(['token', 'create', '--name', 'w', '--role', 'worker']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/workers: a worker token needs the worker ids/);
  });

  it('hash reads the token on stdin, never as an argument', async () => {
    const r = await runCli(['token', 'hash', 'ks_abcdefabcdef_x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/on stdin, not as an argument/);
  });
});

describe('KS-17.3.1 a running serve reloads its token file (change, rename, SIGHUP) and keeps the old set when a reload breaks', () => {
  it('revokes, adds and rotates tokens without a restart', async () => {
    const dir = join(root, `s${++n}`);
    const file = join(root, `tokens-${n}.json`);
    const admin = await create('--name', 'ada', '--role', 'admin');
    const old = await create('--name', 'ci', '--role', 'viewer');
    await writeFile(file, JSON.stringify({ tokens: [admin.entry, old.entry] }), { mode: 0o644 });
    const s = await serve(dir, file);
    expect(await status(s.url, admin.token)).toBe(200);
    expect(await status(s.url, old.token)).toBe(200);

    // Rotate: the new entry in, the old one out, by editing the file.
    const next = await create('--name', 'ci-2', '--role', 'viewer');
    await writeFile(file, JSON.stringify({ tokens: [admin.entry, next.entry] }));
    await until(async () => (await status(s.url, old.token)) === 401);
    expect(await status(s.url, next.token)).toBe(200);

    // A broken file: refused with an error, the tokens in force stay.
    await writeFile(file, '{"tokens": [');
    await until(async () =>
      /tokens not reloaded, the previous ones stay in force/.test(s.stderr()),
    );
    expect(await status(s.url, next.token)).toBe(200);

    // SIGHUP reloads too (and does not stop the server).
    await writeFile(file, JSON.stringify({ tokens: [admin.entry] }));
    s.child.kill('SIGHUP');
    await until(async () => (await status(s.url, next.token)) === 401);
    expect(await status(s.url, admin.token)).toBe(200);
    expect(s.child.exitCode).toBeNull();
  });

  it('refuses to start on a token file of plain tokens that others may read', async () => {
    const file = join(root, `tokens-${++n}.json`);
    await writeFile(
      file,
      JSON.stringify([{ name: 'p', token: 'plain-token-0123456789', role: 'admin' }]),
    );
    await chmod(file, 0o644);
    await expect(serve(join(root, `s${n}`), file)).rejects.toThrow(
      /readable by group or others \(mode 644\) and holds secrets/,
    );
  });
});
