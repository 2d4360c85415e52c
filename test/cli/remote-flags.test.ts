import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteFrom } from '../../src/cli/internal/remote.js';
import { runCli } from '../fixtures/run-cli.js';

/** Every command that talks to a control plane, with the arguments it needs to send a request. */
const REMOTE: readonly (readonly [string, readonly string[]])[] = [
  ['status', []],
  ['log', []],
  ['workers', []],
  ['flip', ['--tenant', 'acme', '--reason', 'flags test', '--wait', '0']],
  ['resume', ['--tenant', 'acme', '--reason', 'flags test', '--release', 'v1', '--wait', '0']],
  ['release', ['v1', '--green', '--reason', 'flags test']],
];

/** An HTTP server that records who called it with which token, and answers 404 to everything. */
let server: Server;
let url = '';
const seen: { path: string; auth: string | undefined }[] = [];
let dir = '';
const FILE_TOKEN = 'generated-admin-token-0123456789abcdef';

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', auth: req.headers.authorization });
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":{"code":"KS_NOT_FOUND","message":"recorder"}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'ks-remote-flags-'));
  await writeFile(join(dir, 'admin.token'), FILE_TOKEN + '\n', { mode: 0o600 });
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

/** Runs a command and answers the Authorization headers the recorder saw. */
async function tokensSent(args: string[], env: Record<string, string>): Promise<string[]> {
  seen.length = 0;
  await runCli(args, env);
  return [...new Set(seen.map((s) => s.auth ?? '(none)'))];
}

describe('KS-5.3.4 every remote command takes --url, --token, --json and --help', () => {
  it.each(REMOTE)(
    '%s: --help names them; --url and --token win over the environment; --json answers JSON',
    async (name, args) => {
      const help = await runCli([name, '--help']);
      expect(help.code).toBe(0);
      for (const flag of ['--url', '--token', '--json']) expect(help.stdout).toContain(flag);
      expect(help.stdout).toContain('http://127.0.0.1:7411');
      seen.length = 0;
      const r = await runCli(
        [name, ...args, '--json', '--url', url, '--token', 'flag-token-0123456789'],
        {
          KILLSWITCH_URL: 'http://127.0.0.1:1',
          KILLSWITCH_TOKEN: 'env-token-0123456789',
          KILLSWITCH_DATA_DIR: dir,
        },
      );
      expect(seen.length).toBeGreaterThan(0);
      expect(new Set(seen.map((x) => x.auth))).toEqual(new Set(['Bearer flag-token-0123456789']));
      // The recorder answers 404 to everything: the error is JSON on stdout.
      expect(r.code).not.toBe(0);
      expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toHaveProperty('error.code');
    },
  );

  it('without flags: $KILLSWITCH_URL and $KILLSWITCH_TOKEN, else the local admin.token for a loopback URL', async () => {
    expect(
      await tokensSent(['status'], {
        KILLSWITCH_URL: url,
        KILLSWITCH_TOKEN: 'env-token-0123456789',
        KILLSWITCH_DATA_DIR: dir,
      }),
    ).toEqual(['Bearer env-token-0123456789']);
    expect(await tokensSent(['status'], { KILLSWITCH_URL: url, KILLSWITCH_DATA_DIR: dir })).toEqual(
      [`Bearer ${FILE_TOKEN}`],
    );
  });

  it('the URL defaults to http://127.0.0.1:7411; the admin.token is never read for a URL that is not loopback', async () => {
    const io = { stdout: () => undefined, stderr: () => undefined };
    const byDefault = await remoteFrom({}, { ...io, env: { KILLSWITCH_DATA_DIR: dir } });
    expect(byDefault.client.url).toMatch(/^http:\/\/127\.0\.0\.1:7411\/?$/);
    expect(byDefault.token).toEqual({ from: 'file', path: join(dir, 'admin.token') });
    const remote = await remoteFrom(
      { url: 'https://killswitch.example.com' },
      { ...io, env: { KILLSWITCH_DATA_DIR: dir } },
    );
    expect(remote.token).toMatchObject({ from: 'none' });
    expect((remote.token as { why: string }).why).toMatch(/read only for a loopback URL/);
  });
});
