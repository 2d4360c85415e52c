import { describe, expect, it } from 'vitest';
import { command } from '../../src/cli/commands/drill.js';
import type { CliIo } from '../../src/cli/internal/command.js';

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
