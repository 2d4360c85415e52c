import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { command } from '../../src/cli/commands/drill.js';
import type { CliIo } from '../../src/cli/internal/command.js';
import { SigningKey } from '../../src/integrity/signing-key.js';

function capture(): { io: CliIo; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (l) => out.push(l), stderr: (l) => err.push(l), env: {} }, out, err };
}

describe('KS-9.6.2 killswitch drill validates its flags before starting anything', () => {
  it('refuses a bad worker count with a usage error', async () => {
    const c = capture();
    expect(await command.run(['--workers', '0'], c.io)).toBe(2);
    expect(c.err.join('\n')).toContain('--workers: expected an integer 1..64');
  });

  it('refuses expected workers without a control plane URL', async () => {
    const c = capture();
    expect(await command.run(['--expect-workers', 'w1,w2'], c.io)).toBe(2);
    expect(c.err.join('\n')).toContain('--expect-workers needs --url');
  });

  it('refuses an unknown flag and an unreadable scenario', async () => {
    const c = capture();
    expect(await command.run(['--bogus'], c.io)).toBe(2);
    expect(await command.run(['--scenario', '/nonexistent.json'], c.io)).toBe(2);
    expect(c.err.join('\n')).toContain('cannot read scenario /nonexistent.json');
  });

  it('KS-9.2.5 refuses --public-key without --url, with --expect-workers, and a file that holds no public key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drill-cli-key-'));
    try {
      const good = join(dir, 'good.pem');
      await writeFile(good, SigningKey.generate().publicKeyPem);
      const bad = join(dir, 'bad.pem');
      await writeFile(bad, 'not a key\n');
      const c = capture();
      expect(await command.run(['--public-key', good], c.io)).toBe(2);
      expect(c.err.join('\n')).toContain('--public-key needs --url');
      const f = capture();
      const fleet = ['--url', 'http://127.0.0.1:9', '--expect-workers', '2', '--public-key', good];
      expect(await command.run(fleet, f.io)).toBe(2);
      expect(f.err.join('\n')).toContain('with --expect-workers it starts none');
      const b = capture();
      const badKey = ['--url', 'http://127.0.0.1:9', '--public-key', good, '--public-key', bad];
      expect(await command.run(badKey, b.io)).toBe(2);
      expect(b.err.join('\n')).toContain(`--public-key ${bad}: `);
      expect(b.err.join('\n')).toContain('no PEM public key');
      const m = capture();
      const missing = join(dir, 'missing.pem');
      expect(
        await command.run(['--url', 'http://127.0.0.1:9', '--public-key', missing], m.io),
      ).toBe(2);
      expect(m.err.join('\n')).toContain(`--public-key ${missing}: `);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a fleet drill without a scope', async () => {
    const c = capture();
    const code = await command.run(
      [
        '--url',
        'http://127.0.0.1:9',
        '--expect-workers',
        '2',
        '--scenario',
        'spec/drills/ci.json',
        '--out',
        '/tmp/unused',
      ],
      c.io,
    );
    expect(code).toBe(2);
    expect(c.err.join('\n')).toContain('scope');
  });
});

describe('KS-9.6.2 killswitch drill runs end to end from the built CLI', () => {
  it(
    'runs a scenario, prints progress, writes the report and exits 0',
    { timeout: 120_000 },
    async () => {
      const { execFile } = await import('node:child_process');
      const { mkdtemp, readFile, rm } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const out = await mkdtemp(join(tmpdir(), 'drill-cli-'));
      try {
        const { code, stdout, stderr } = await new Promise<{
          code: number | null;
          stdout: string;
          stderr: string;
        }>((resolve) => {
          const child = execFile(
            process.execPath,
            [
              'dist/src/cli/main.js',
              'drill',
              '--scenario',
              'test/fixtures/drill-tiny.json',
              '--out',
              out,
              '--json',
            ],
            { timeout: 110_000 },
            (_err, so, se) => resolve({ code: child.exitCode, stdout: so, stderr: se }),
          );
        });
        // --json: the report on stdout, progress on stderr. It says up front how long it takes
        // (KS-9.3.7): the levers, how long each is held, the total.
        expect(stderr.split('\n')[0]).toMatch(
          /^\[drill \+[\d.]+s\] drill tiny: 1 lever\(s\), each held \d+ ms; about \d+ s plus starting the workers \(a progress line every 10 s\)$/,
        );
        // On a host overloaded by other processes a missed timing target is INCONCLUSIVE, exit 4
        // (KS-9.3.7), never PASSED: the main CI run at load 16 got that, and this test, which
        // only knew PASSED, failed on it. Anything else (FAILED) fails the test.
        const verdict = /drill tiny (PASSED|INCONCLUSIVE)/.exec(stderr)?.[1];
        expect(verdict, stderr).toBeDefined();
        expect(code, stderr).toBe(verdict === 'PASSED' ? 0 : 4);
        const printed = JSON.parse(stdout) as {
          passed: boolean;
          verdict: string;
          host?: { overloaded: boolean };
          levers: unknown[];
        };
        if (verdict === 'PASSED') expect(printed.passed).toBe(true);
        else expect([printed.verdict, printed.host?.overloaded]).toEqual(['inconclusive', true]);
        expect(printed.levers).toHaveLength(1);
        expect(JSON.parse(await readFile(join(out, 'report.json'), 'utf8'))).toEqual(printed);
        expect(await readFile(join(out, 'summary.md'), 'utf8')).toContain(verdict);
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    },
  );
});
