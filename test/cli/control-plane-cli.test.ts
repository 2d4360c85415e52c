import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/run-cli.js';
import { serveCli, stopCli, type ServedCli } from '../fixtures/serve-cli.js';

const serve = serveCli;
const stop = stopCli;

let dir: string;
let server: ServedCli;
let env: Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-cli-'));
  env = { KILLSWITCH_DATA_DIR: join(dir, 'data') };
  server = await serve(['--port', '0', '--stale-after-ms', '400'], env, dir);
  env['KILLSWITCH_URL'] = server.url;
});
afterAll(async () => {
  if (server) await stop(server.child);
  await rm(dir, { recursive: true, force: true });
});

describe('KS-5.3.1 killswitch serve starts on the embedded defaults', () => {
  it('prints its URL and where the generated admin token is, never the token', async () => {
    const tokenPath = join(dir, 'data', 'admin.token');
    const token = (await readFile(tokenPath, 'utf8')).trim();
    expect(token.length).toBeGreaterThanOrEqual(16);
    expect((await stat(tokenPath)).mode & 0o777).toBe(0o600);
    expect(server.out()).toContain(tokenPath);
    expect(server.out()).not.toContain(token);
    expect(server.out()).toContain(join(dir, 'data', 'flips.jsonl'));
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});

describe('KS-5.3.3 killswitch flip prints the flip, who acknowledged, the laggards and the stop time', () => {
  it('halts a tenant with the local admin token and reports a silent worker stopped by its lease', async () => {
    const token = (await readFile(join(dir, 'data', 'admin.token'), 'utf8')).trim();
    // A worker stuck at seq 0: it keeps renewing but never applies the flip (its lease, renewed
    // before the flip, is what the server waits out).
    const ack = () =>
      fetch(`${server.url}/v1/acks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ workerId: 'silent-1', release: 'v7', seq: 0 }),
      });
    expect((await ack()).status).toBe(200);
    const renew = setInterval(() => void ack(), 100);
    const r = await runCli(
      ['flip', '--tenant', 'acme', '--reason', 'incident 42', '--wait', '3000'],
      env,
    ).finally(() => clearInterval(renew));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('halted {tenant=acme}');
    expect(r.stdout).toMatch(
      /#1 \S+ halt tenant \{tenant=acme\} mode=discard by admin: incident 42/,
    );
    expect(r.stdout).toMatch(/stop complete after \d+ ms/);
    expect(r.stdout).toMatch(/laggard\s+silent-1 \(v7\) last ack seq 0, lease ran out/);
  });

  it('--json prints the server answer', async () => {
    const r = await runCli(
      [
        'flip',
        '--capability',
        'payments.refund',
        '--tenant',
        'acme',
        '--reason',
        'refund storm',
        '--mode',
        'hold',
        '--wait',
        '0',
        '--json',
        '--id',
        'cli-1',
      ],
      env,
    );
    expect(r.code).toBe(0);
    const a = JSON.parse(r.stdout);
    expect(a.flip).toMatchObject({
      id: 'cli-1',
      mode: 'hold',
      selector: { tenant: 'acme', capability: 'payments.refund' },
    });
    expect(a.duplicate).toBe(false);
  });

  it.each([
    [['flip', '--reason', 'x'], /name what to flip/],
    [['flip', '--tenant', 'acme'], /--reason/],
    [['flip', '--global', '--tenant', 'acme', '--reason', 'x'], /--global cannot be combined/],
    [['flip', '--tenant', 'acme', '--reason', 'x', '--mode', 'pause'], /--mode/],
    [['flip', '--tenant', 'acme', '--reason', 'x', '--wait', '99999'], /--wait/],
    [['flip', '--tenant', 'acme', '--reason', 'x', '--bogus'], /bogus/],
    [['log', '--limit', '0'], /--limit/],
  ])('usage errors exit 2: %j', async (args, msg) => {
    const r = await runCli(args, env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(msg);
  });
});

describe('KS-5.3.5 status, log, workers and resume', () => {
  it('status lists the active halts; log the flips; workers the fleet', async () => {
    const s = await runCli(['status', '--json'], env);
    expect(s.code).toBe(0);
    const st = JSON.parse(s.stdout);
    expect(st.state.halts.length).toBeGreaterThanOrEqual(1);
    const text = await runCli(['status'], env);
    expect(text.stdout).toMatch(/active halt\(s\)/);
    const l = await runCli(['log', '--after', '0', '--limit', '1'], env);
    expect(l.code).toBe(0);
    expect(l.stdout).toMatch(/^#1 /);
    expect(l.stdout).toContain('(more: killswitch log --after 1)');
    const w = await runCli(['workers'], env);
    expect(w.code).toBe(0);
    expect(w.stdout).toMatch(/silent-1\s+v7\s+no\s+0/);
  });

  it('resume lifts the halt; resuming it again is refused with exit 1', async () => {
    // KS-10.5.3 serve gates resumes on a release marked green.
    expect((await runCli(['release', 'v8', '--green', '--reason', 'verified'], env)).code).toBe(0);
    const ok = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'fixed', '--release', 'v8', '--wait', '0'],
      env,
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('resumed {tenant=acme}');
    const again = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'fixed', '--wait', '0'],
      env,
    );
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('KS_RESUME_REFUSED');
  });

  it('a bad token exits 1 with 401; an unreachable control plane exits 3', async () => {
    const bad = await runCli(['status', '--token', 'wrong-token-wrong-token'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('401 KS_UNAUTHORIZED');
    const gone = await runCli(['status', '--url', 'http://127.0.0.1:1'], env);
    expect(gone.code).toBe(3);
  });

  it.each(['status', 'workers'])(
    '%s with an unknown flag or a positional exits 2 with its usage, calling nothing',
    async (name) => {
      for (const args of [['--bogus'], ['extra']]) {
        const r = await runCli([name, ...args, '--url', 'http://127.0.0.1:1']);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`run 'killswitch ${name} --help' for its options`);
      }
    },
  );

  it.each(['serve', 'flip', 'resume', 'status', 'log', 'workers'])(
    '%s --help exits 0',
    async (name) => {
      const r = await runCli([name, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`usage: killswitch ${name}`);
    },
  );
});

describe('KS-5.2.8 serve refuses a non-loopback bind without configured tokens', () => {
  it('exits 2 and generates no token', async () => {
    const d = await mkdtemp(join(tmpdir(), 'ks-cli-nl-'));
    try {
      const r = await runCli(['serve', '--host', '0.0.0.0', '--port', '0', '--data-dir', d]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/refusing to bind 0\.0\.0\.0 without configured tokens/);
      await expect(stat(join(d, 'admin.token'))).rejects.toThrow();
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});

describe('KS-5.3.6 SIGTERM closes cleanly and a restart serves the same durable log', () => {
  it('exits 0 on SIGTERM; after restart the log and seqs are the same', async () => {
    const before = await runCli(['log', '--json'], env);
    expect(await stop(server.child)).toBe(0);
    server = await serve(['--port', '0'], env, dir);
    const after = await runCli(['log', '--json', '--url', server.url], env);
    expect(JSON.parse(after.stdout).flips).toEqual(JSON.parse(before.stdout).flips);
    expect(server.out()).toContain('using the generated admin token');
  });
});
