import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DrillInterruptedError } from '../../src/drill/run/drill-interrupted.js';
import { runDrill } from '../../src/drill/run/run-drill.js';
import { progress, scenarioFrom, SCRIPTS } from './drill-helpers.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('KS-9.3.7 an interrupted drill (Ctrl-C) leaves nothing running and no data behind', () => {
  it('the signal stops its workers and control plane, removes its data directory, and rejects with DrillInterruptedError', async () => {
    const scenario = await scenarioFrom('ci.json', (raw) => ({ ...raw, workers: 2 }));
    const p = progress();
    const interrupt = new AbortController();
    const lines: string[] = [];
    const run = runDrill({
      scenario,
      ...SCRIPTS,
      signal: interrupt.signal,
      log: (l) => {
        p.log(l);
        lines.push(l);
        // Interrupted while its fleet runs, as a user pressing Ctrl-C would.
        if (/worker\(s\) started/.test(l)) interrupt.abort();
      },
    });
    const err = await run.catch((e: unknown) => e);
    expect(err, p.lines.join('\n')).toBeInstanceOf(DrillInterruptedError);
    expect((err as Error).message).toMatch(
      /workers and control plane were stopped, its data removed/,
    );
    const dataDir = /file log in (\S+)\)/.exec(lines.join('\n'))?.[1];
    expect(dataDir, p.lines.join('\n')).toBeDefined();
    expect(existsSync(dataDir!)).toBe(false);
    const pids = [...lines.join('\n').matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids.length).toBeGreaterThanOrEqual(3); // the control plane and the workers
    // Killed at once; give the kernel a moment to reap them.
    await expect.poll(() => pids.filter(alive), { timeout: 5_000 }).toEqual([]);
  }, 60_000);
});
