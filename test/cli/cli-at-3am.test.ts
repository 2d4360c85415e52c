import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeText } from '../../src/cli/internal/escape-text.js';
import { ControlPlaneClient } from '../../src/client/control-plane-client.js';
import { MAIN, runCli } from '../fixtures/run-cli.js';
import { serveCli, stopCli, type ServedCli } from '../fixtures/serve-cli.js';

/** Any raw control character, DEL, C1 control, line separator or bidi override. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

let dir: string;
let server: ServedCli;
let env: Record<string, string>;
let notKillswitch: Server;
let notKillswitchUrl: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-3am-'));
  env = { KILLSWITCH_DATA_DIR: join(dir, 'data') };
  // KS-5.3.8 appends 60 flips in a row: not what the flip rate limit (KS-17.8.3, its own suite) is for.
  server = await serveCli(
    ['--port', '0', '--stale-after-ms', '400', '--max-flips-per-second', '1000'],
    env,
    dir,
  );
  env['KILLSWITCH_URL'] = server.url;
  // Another service on the port an operator mistyped: HTML 404s, no killswitch body.
  notKillswitch = createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'text/html' });
    res.end('<html><body>Not Found</body></html>');
  });
  await new Promise<void>((r) => notKillswitch.listen(0, '127.0.0.1', r));
  notKillswitchUrl = `http://127.0.0.1:${(notKillswitch.address() as AddressInfo).port}`;
});
afterAll(async () => {
  if (server) await stopCli(server.child);
  await new Promise((r) => notKillswitch?.close(r));
  await rm(dir, { recursive: true, force: true });
});

const FORGED =
  'fixed\n#99 2026-01-01T00:00:00.000Z halt global {} by root: forged\u001b[31mRED\u202e';

describe('KS-5.3.7 text output escapes control characters; JSON output carries them unchanged', () => {
  it('escapes C0, DEL, C1, line separators and bidi overrides, and leaves the rest alone', () => {
    expect(escapeText('a\nb\rc\td')).toBe('a\\nb\\rc\\td');
    expect(escapeText('\u001b[31m\u007f\u0085\u0000')).toBe('\\x1b[31m\\x7f\\x85\\x00');
    expect(escapeText('x\u2028y\u202ez\u2066')).toBe('x\\u2028y\\u202ez\\u2066');
    expect(escapeText('C:\\path é ✓ 漢字')).toBe('C:\\path é ✓ 漢字');
  });

  it('a reason with a newline and ANSI escapes cannot forge a line in flip, log or status', async () => {
    const flip = await runCli(
      ['flip', '--tenant', 'forge', '--reason', FORGED, '--wait', '0'],
      env,
    );
    expect(flip.code, flip.stderr).toBe(0);
    for (const args of [['log'], ['status']]) {
      const r = await runCli(args, env);
      expect(r.code).toBe(0);
      for (const line of r.stdout.split('\n')) expect(line).not.toMatch(RAW_CONTROL);
      expect(r.stdout).not.toMatch(/^#99 /m);
      expect(r.stdout).toContain(
        'fixed\\n#99 2026-01-01T00:00:00.000Z halt global {} by root: forged\\x1b[31mRED\\u202e',
      );
    }
    expect(flip.stdout.split('\n').filter((l) => l.startsWith('#'))).toHaveLength(1);
    const json = await runCli(['log', '--json'], env);
    const flips = JSON.parse(json.stdout).flips as { reason: string }[];
    expect(flips.map((f) => f.reason)).toContain(FORGED);
  });
});

describe('KS-5.3.8 a reader that goes away ends the output quietly', () => {
  it('killswitch log | head -1 exits 0 with nothing on stderr', { timeout: 60_000 }, async () => {
    // More than a pipe buffer (64 KiB) of log, so the command is still writing when the reader goes.
    const reason = 'x'.repeat(1_900);
    const token = (await readFile(join(dir, 'data', 'admin.token'), 'utf8')).trim();
    for (let i = 0; i < 60; i++) {
      const r = await fetch(`${server.url}/v1/flips`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'halt', selector: { tenant: `bulk-${i}` }, reason }),
      });
      expect(r.status).toBe(201);
    }
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((res) => {
      const child = spawn(process.execPath, [MAIN, 'log', '--limit', '1000'], {
        env: { PATH: process.env['PATH'] ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      // `head -1`: read the first chunk, then close the pipe.
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('close', (c) => res({ code: c, stderr: err }));
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});

describe('KS-5.3.9 with --json, errors are JSON on stdout, with the same exit codes', () => {
  it.each([
    [['flip', '--tennant', 'acme', '--reason', 'x', '--json'], 2, 'KS_USAGE'],
    [
      ['resume', '--tenant', 'nobody-here', '--reason', 'x', '--wait', '0', '--json'],
      1,
      'KS_RESUME_REFUSED',
    ],
    [['status', '--json', '--url', 'http://127.0.0.1:1'], 3, 'KS_UNREACHABLE'],
    [['log', '--json', '--token', 'wrong-token-wrong-token'], 1, 'KS_UNAUTHORIZED'],
  ])('%j exits %i with {"error": {"code": %j}}', async (args, exit, code) => {
    const r = await runCli(args as string[], env);
    expect(r.code).toBe(exit);
    const body = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message.length).toBeGreaterThan(0);
  });
});

describe('KS-5.3.10 a usage error prints the error and one hint, not the whole help', () => {
  it.each([
    [['flip', '--tennant', 'acme', '--reason', 'x'], 'did you mean --tenant?'],
    [['log', '--limt', '5'], 'did you mean --limit?'],
    [['resume', '--tenant', 'acme'], "run 'killswitch resume --help'"],
    [['status', 'extra'], "run 'killswitch status --help'"],
  ])('%j', async (args, hint) => {
    const r = await runCli(args, env);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(hint);
    expect(r.stderr).not.toContain('usage:');
    expect(r.stdout).toBe('');
  });

  it('an unknown command names the closest one', async () => {
    const r = await runCli(['flp']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'flp' (did you mean flip?)");
  });
});

describe('KS-5.3.11 a refused token says where it came from', () => {
  it('names $KILLSWITCH_TOKEN and the local admin.token it overrides', async () => {
    const r = await runCli(['status'], {
      ...env,
      KILLSWITCH_TOKEN: 'stale-token-from-another-shell',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('401 KS_UNAUTHORIZED');
    expect(r.stderr).toContain(
      `the token came from $KILLSWITCH_TOKEN, which overrides ${join(dir, 'data', 'admin.token')}`,
    );
  });

  it('names --token, and says when no token was sent at all', async () => {
    const flag = await runCli(['status', '--token', 'wrong-token-wrong-token'], env);
    expect(flag.stderr).toContain('the token came from --token');
    const none = await runCli(['status'], { ...env, KILLSWITCH_DATA_DIR: join(dir, 'empty') });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no token was sent: no --token, no $KILLSWITCH_TOKEN, and no');
  });
});

describe('KS-5.3.12 something that is not a control plane is named as such', () => {
  it('the CLI says "not a killswitch server" and exits 3, not "refused (404 KS_INTERNAL)"', async () => {
    const r = await runCli(['status', '--url', notKillswitchUrl], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(
      `${notKillswitchUrl} is not a killswitch server (it answered HTTP 404`,
    );
    expect(r.stderr).not.toContain('KS_INTERNAL');
  });

  it('the client throws KS_NOT_A_CONTROL_PLANE for an answer without a killswitch body', async () => {
    const client = new ControlPlaneClient({ url: notKillswitchUrl });
    await expect(client.state()).rejects.toMatchObject({
      code: 'KS_NOT_A_CONTROL_PLANE',
      status: 404,
    });
  });
});

describe('KS-5.3.13 a refused resume says which halts are close and which command gets it through', () => {
  it('a resume of the wrong case lists the close halt with the command that lifts it', async () => {
    expect(
      (await runCli(['flip', '--tenant', 'acme', '--reason', 'x', '--wait', '0'], env)).code,
    ).toBe(0);
    const r = await runCli(['resume', '--tenant', 'ACME', '--reason', 'x', '--wait', '0'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no active halt has exactly this selector');
    expect(r.stderr).toMatch(
      /#\d+ \{tenant=acme\}: killswitch resume --tenant acme --reason "<why>"/,
    );
  });

  it('a release-gate refusal names the command that marks the release green', async () => {
    const r = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'x', '--release', 'v9', '--wait', '0'],
      env,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('killswitch release v9 --green --reason "<why>"');
  });
});

describe('KS-5.3.14 undoing a halt is one command, and a resume never says "stop complete"', () => {
  it('a global halt says EVERYTHING IS HALTED and prints the command that undoes it', async () => {
    const halt = await runCli(['flip', '--global', '--reason', 'fat finger', '--wait', '0'], env);
    expect(halt.code).toBe(0);
    expect(halt.stdout).toContain('EVERYTHING IS HALTED');
    const undo = /^undo: killswitch (.*)$/m.exec(halt.stdout)?.[1];
    expect(undo).toBe('resume --global --reason "<why>" --release <release> --mark-green');
    const status = await runCli(['status'], env);
    expect(status.stdout).toContain('EVERYTHING IS HALTED by #');
    // The printed command, with its placeholders filled in, lifts exactly that halt.
    const r = await runCli(
      [
        'resume',
        '--global',
        '--reason',
        'undo the fat finger',
        '--release',
        'v10',
        '--mark-green',
        '--wait',
        '0',
      ],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('release v10 marked green');
    expect(r.stdout).toContain('resumed {}');
    expect(r.stdout).toMatch(/resume reached the fleet after \d+ ms/);
    expect(r.stdout).not.toContain('stop complete');
    const after = JSON.parse((await runCli(['status', '--json'], env)).stdout) as {
      state: { halts: { selector: object }[] };
    };
    expect(after.state.halts.some((h) => Object.keys(h.selector).length === 0)).toBe(false);
  });
});

describe('KS-1.5.6 a run halt says that it covers the run and every run it spawned', () => {
  it('flip --run prints what it covers, from the flip answer; --json carries `covers`', async () => {
    const r = await runCli(['flip', '--run', 'run-42', '--reason', 'loop', '--wait', '0'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'covers: run run-42 and every run it spawned, at any depth, in any process',
    );
    const j = await runCli(
      ['flip', '--run', 'run-43', '--tenant', 'acme', '--reason', 'loop', '--wait', '0', '--json'],
      env,
    );
    expect(JSON.parse(j.stdout)).toMatchObject({
      covers:
        'run run-43 and every run it spawned, at any depth, in any process (only effects of tenant acme)',
    });
    const help = await runCli(['flip', '--help'], env);
    expect(help.stdout + help.stderr).toContain('one run and every run it spawned');
  });
});
