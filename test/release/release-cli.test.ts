import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSideEffectLedger } from '../../src/ledger/index.js';
import { MAIN, runCli } from '../fixtures/run-cli.js';

let dir = '';
let server: ChildProcess;
let env: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-release-cli-'));
  env = { KILLSWITCH_DATA_DIR: dir };
  server = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--json'], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise<string>((ok, fail) => {
    let out = '';
    const t = setTimeout(() => fail(new Error(`serve did not start: ${out}`)), 20_000);
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"([^"]+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        ok(m[1]!);
      }
    });
    server.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  });
  env['KILLSWITCH_URL'] = url;
});
afterAll(async () => {
  if (server.exitCode === null) {
    const gone = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await gone;
  }
  await rm(dir, { recursive: true, force: true });
});

describe('KS-10.5.7 killswitch release and killswitch resume --release against killswitch serve', () => {
  it('a resume is refused until its release is marked green; verdicts land in <data-dir>/releases.jsonl', async () => {
    expect(
      (await runCli(['flip', '--tenant', 'acme', '--reason', 'incident', '--wait', '0'], env)).code,
    ).toBe(0);
    const none = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'fixed', '--wait', '0'],
      env,
    );
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/409 KS_RESUME_REFUSED.*must name the release/);
    const unknown = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'fixed', '--release', 'v9', '--wait', '0'],
      env,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/v9 has not been marked green/);
    // KS-10.5.3: the refusal names the command that marks it green.
    expect(unknown.stderr).toContain('killswitch release v9 --green --reason');

    const red = await runCli(['release', 'v9', '--red', '--reason', 'crash loop'], env);
    expect(red.code, red.stderr).toBe(0);
    expect(red.stdout).toMatch(/^release v9 RED \(#1 .* by admin: crash loop\)/);
    expect(
      (
        await runCli(
          ['resume', '--tenant', 'acme', '--reason', 'x', '--release', 'v9', '--wait', '0'],
          env,
        )
      ).stderr,
    ).toMatch(/release v9 is red/);

    expect(
      (await runCli(['release', 'v9', '--green', '--reason', 'hotfix verified'], env)).code,
    ).toBe(0);
    const ok = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'fixed', '--release', 'v9', '--wait', '0'],
      env,
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/resumed \{tenant=acme\}/);
    expect(ok.stdout).toMatch(/release=v9/);

    const list = await runCli(['release'], env);
    expect(list.stdout).toMatch(/v9 GREEN \(#2 /);
    const lines = (await readFile(join(dir, 'releases.jsonl'), 'utf8')).trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { status: string }).status)).toEqual([
      'red',
      'green',
    ]);
  });

  it('KS-10.4.4 killswitch report --since-seq reads the flip time from the control plane', async () => {
    const ledger = new FileSideEffectLedger({
      path: join(dir, 'effects.jsonl'),
      logger: { warn() {} },
    });
    const at = new Date().toISOString();
    await ledger.append({
      key: 'r1/a',
      status: 'refused',
      at,
      runId: 'r1',
      step: 'a',
      capability: 'c',
      context: { tenant: 'acme' },
      flipSeq: 1,
    });
    await ledger.append({
      key: 'r0/a',
      status: 'intent',
      at: '2020-01-01T00:00:00.000Z',
      runId: 'r0',
      step: 'a',
      capability: 'c',
      context: {},
    });
    await ledger.close();
    const out = await runCli(
      ['report', '--ledger', join(dir, 'effects.jsonl'), '--since-seq', '1', '--json'],
      env,
    );
    expect(out.code, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout) as { filter: { since: string }; runs: { runId: string }[] };
    expect(r.runs.map((x) => x.runId)).toEqual(['r1']);
    expect(Date.parse(r.filter.since)).toBeGreaterThan(Date.parse('2021-01-01T00:00:00.000Z'));
    const missing = await runCli(
      ['report', '--ledger', join(dir, 'effects.jsonl'), '--since-seq', '99'],
      env,
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no flip #99/);
  });

  it('usage errors exit 2', async () => {
    expect((await runCli(['release', 'v1'], env)).code).toBe(2);
    expect((await runCli(['release', 'v1', '--green', '--red'], env)).code).toBe(2);
    expect((await runCli(['release', '--green'], env)).code).toBe(2);
  });
});
