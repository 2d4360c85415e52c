import { describe, expect, it } from 'vitest';
import type { HostLoad, HostLoadMonitor } from '../../src/drill/measure/host-load.js';
import { startHostLoadMonitor } from '../../src/drill/measure/host-load.js';
import type { LeverResult, WorkerSummary } from '../../src/drill/report/drill-report.js';
import { renderMarkdown } from '../../src/drill/report/report-writer.js';
import { finishDrill } from '../../src/drill/run/finish-drill.js';
import { parseScenario } from '../../src/drill/scenario.js';

const scenario = parseScenario({
  name: 't',
  traffic: { tenants: ['a', 'b'], features: ['f', 'g'], capabilities: ['c', 'd'] },
  levers: [{ selector: { tenant: 'a' } }],
  targets: { p99TimeToStopMs: 50 },
});
const workers: WorkerSummary[] = [
  { workerId: 'w1', connected: true, everFresh: true, effectsAtSink: 3 },
];
/** A lever whose p99 time-to-stop (75.8 ms) misses the 50 ms target, as in issue 18. */
const slow = (over: Partial<LeverResult> = {}): LeverResult =>
  ({
    label: 'tenant',
    level: 'tenant',
    selector: { tenant: 'a' },
    mode: 'discard',
    flipId: 'f',
    seq: 1,
    acceptedAt: 1000,
    completeAt: 1080,
    stops: [{ workerId: 'w1', appliedAt: 1075.8, timeToStopMs: 75.8 }],
    timeToStop: { p50: 75.8, p99: 75.8, max: 75.8 },
    errors: [],
    ...over,
  }) as LeverResult;
const host = (overloaded: boolean): HostLoadMonitor => {
  const h: HostLoad = {
    cpus: 2,
    loadMax: overloaded ? 25 : 0.3,
    eventLoopDelayP99Ms: overloaded ? 80 : 11,
    eventLoopDelayMaxMs: overloaded ? 120 : 12,
    overloaded,
    ...(overloaded ? { why: 'load average up to 25 on 2 CPU(s)' } : {}),
  };
  return { read: () => h, stop: () => h };
};
const finish = async (levers: LeverResult[], monitor: HostLoadMonitor) => {
  const lines: string[] = [];
  const outcome = await finishDrill(
    {
      scenario,
      mode: 'embedded',
      controlPlane: 'http://127.0.0.1:1',
      startedAt: new Date().toISOString(),
      workers,
      levers,
      loadStart: 0,
    },
    { scenario, hostLoad: monitor },
    (l) => lines.push(l),
  );
  return { ...outcome, lines };
};

describe('KS-9.3.7 a timing target missed on an overloaded host is inconclusive, never a false fail or pass', () => {
  it('on a quiet host a missed p99 is a violation: FAILED, exit 1', async () => {
    const { report, exitCode, lines } = await finish([slow()], host(false));
    expect(report.violations.map((v) => v.code)).toEqual(['time-to-stop']);
    expect(report.verdict).toBe('failed');
    expect(exitCode).toBe(1);
    expect(lines.at(-1)).toMatch(/FAILED/);
  });

  it('on an overloaded host the same miss is inconclusive, named with the load: exit 4, not passed', async () => {
    const { report, exitCode, lines } = await finish([slow()], host(true));
    expect(report.violations).toEqual([]);
    expect(report.inconclusive?.map((v) => v.code)).toEqual(['time-to-stop']);
    expect(report.passed).toBe(false);
    expect(report.verdict).toBe('inconclusive');
    expect(exitCode).toBe(4);
    expect(lines.at(-1)).toMatch(/INCONCLUSIVE: host overloaded \(load average up to 25 on 2 CPU/);
    const md = renderMarkdown(report);
    expect(md).toMatch(/^# Drill `t`: INCONCLUSIVE/);
    expect(md).toContain('## Inconclusive: host overloaded');
  });

  it('an effect after stop-complete stays a violation on an overloaded host', async () => {
    const effects = {
      matchingBefore: 5,
      matchingAfterAccepted: 1,
      matchingAfterApplied: 0,
      matchingAfterComplete: 1,
      matchingArrivedAfterComplete: 0,
      afterCompleteKeys: ['k'],
      leakedByWorker: { w1: 1 },
      otherRateBefore: 100,
      otherRateDuring: 100,
      otherRefused: 0,
      otherRefusedBy: {},
      matchingRateAfterResume: 0,
    };
    const { report, exitCode } = await finish([slow({ effects })], host(true));
    expect(report.violations.map((v) => v.code)).toContain('effect-after-complete');
    expect(report.verdict).toBe('failed');
    expect(exitCode).toBe(1);
  });

  it('the monitor measures this process: a blocked event loop reads as delay', async () => {
    const m = startHostLoadMonitor();
    await new Promise((r) => setTimeout(r, 30));
    const until = performance.now() + 120;
    while (performance.now() < until); // block the loop for 120 ms
    await new Promise((r) => setTimeout(r, 30));
    const h = m.stop();
    expect(h.cpus).toBeGreaterThan(0);
    expect(h.eventLoopDelayMaxMs).toBeGreaterThanOrEqual(100);
  });
});
