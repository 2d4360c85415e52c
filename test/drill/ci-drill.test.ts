import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDrill } from '../../src/drill/run/run-drill.js';
import { progress, scenarioFrom, SCRIPTS } from './drill-helpers.js';

let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('KS-9.6.1 the CI drill (spec/drills/ci.json, 4 workers) meets every target; KS-9.2.5 its control plane runs in its own process', () => {
  it('pulls capability, run, feature and global, and passes', { timeout: 120_000 }, async () => {
    const scenario = await scenarioFrom('ci.json');
    expect(scenario.workers).toBe(4);
    dir = await mkdtemp(join(tmpdir(), 'drill-ci-'));
    const p = progress();
    const { exitCode, report, written } = await runDrill({
      scenario,
      ...SCRIPTS,
      outDir: dir,
      log: p.log,
    });
    // On failure, the violations and the progress say why.
    expect(report.violations, p.lines.join('\n')).toEqual([]);
    // KS-9.3.7 on an overloaded machine a missed timing target is inconclusive (exit 4), never a
    // pass: every other target (no effect after stop-complete above all) is still checked here.
    if (exitCode === 4) process.stdout.write(`ci drill inconclusive: ${report.host?.why}\n`);
    else expect(exitCode, p.lines.join('\n')).toBe(0);
    expect(report.levers.map((l) => l.level)).toEqual(['capability', 'run', 'feature', 'global']);
    // KS-9.2.5 the embedded control plane ran in a process of its own, on a file log.
    const cpLine = p.lines.find((l) => /\(embedded, own process pid \d+, file log in /.test(l));
    expect(cpLine, p.lines.join('\n')).toBeDefined();
    expect(Number(/own process pid (\d+)/.exec(cpLine!)![1])).not.toBe(process.pid);
    for (const l of report.levers) {
      expect(l.stops).toHaveLength(4);
      expect(l.effects!.matchingAfterComplete).toBe(0);
      // Each lever had matching traffic to stop, so the zero is not a pass by luck.
      expect(l.effects!.matchingBefore).toBeGreaterThan(0);
    }
    expect(report.ledger!.sinkEffects).toBeGreaterThan(0);
    expect(written?.svg).toBeDefined();
  });
});
