/**
 * KS-13.7 Soak, CI version: bench/soak for 20 seconds with 100 subscribers in 2 processes
 * (`npm run soak` is the full one: 1,000 subscribers, 5 minutes). Checks what a short run can:
 * every subscriber applied every flip in order and acknowledged the head, the server's file
 * descriptors stayed flat during the run and returned to the baseline after the subscribers
 * left. The memory trend needs the long run (20 s is mostly warm-up) and is not judged here.
 *
 * `KS_SOAK_CI_SECONDS` / `KS_SOAK_CI_SUBSCRIBERS` change the size.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SOAK = resolve('dist/bench/soak/soak.js');
const SECONDS = process.env['KS_SOAK_CI_SECONDS'] ?? '20';
const SUBSCRIBERS = process.env['KS_SOAK_CI_SUBSCRIBERS'] ?? '100';

describe('KS-13.7.1 a short soak: every flip reaches and is acknowledged by every subscriber, descriptors stay flat', () => {
  it(`${SUBSCRIBERS} subscribers, 10 flips/s, ${SECONDS} s`, async () => {
    expect(existsSync(SOAK), `${SOAK} is missing: run npm run build first`).toBe(true);
    const child = spawn(
      process.execPath,
      [
        '--expose-gc',
        SOAK,
        '--seconds',
        SECONDS,
        '--subscribers',
        SUBSCRIBERS,
        '--processes',
        '2',
        '--skip-memory-check',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const code = await new Promise<number | null>((done) => child.once('exit', done));
    const lines = out.trim().split('\n');
    console.log(lines.filter((l) => !/t=\s*\d+ s/.test(l)).join('\n'));
    const result = JSON.parse(lines.at(-1)!) as {
      ok: boolean;
      flips: number;
      head: number;
      violations: number;
      fds: { min: number; max: number; listening: number; after: number };
    };
    expect(code, out).toBe(0);
    expect(result.ok).toBe(true);
    expect(result.flips).toBeGreaterThan(0);
    expect(result.violations).toBe(0);
    expect(result.fds.after).toBeLessThanOrEqual(result.fds.listening);
  }, 150_000);
});
