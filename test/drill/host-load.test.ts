import { describe, expect, it } from 'vitest';
import type {
  CpuTicks,
  HostLoad,
  HostLoadMonitor,
  HostReadings,
} from '../../src/drill/measure/host-load.js';
import {
  describeHostLoad,
  startHostLoadMonitor,
  systemReadings,
} from '../../src/drill/measure/host-load.js';
import { progressLine } from '../../src/drill/run/run-drill.js';
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
    foreignLoadMax: overloaded ? 24 : 0.3,
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

  it('no matching traffic before the flip, or none after the resume, is inconclusive on an overloaded host and a violation on a quiet one', async () => {
    const effects = {
      matchingBefore: 0,
      matchingAfterAccepted: 0,
      matchingAfterApplied: 0,
      matchingAfterComplete: 0,
      matchingArrivedAfterComplete: 0,
      afterCompleteKeys: [],
      leakedByWorker: {},
      otherRateBefore: 100,
      otherRateDuring: 100,
      otherRefused: 0,
      otherRefusedBy: {},
      matchingRateAfterResume: 0,
    };
    const starved = slow({
      effects,
      resume: { ok: true },
      stops: [{ workerId: 'w1', appliedAt: 1010, timeToStopMs: 10 }],
      timeToStop: { p50: 10, p99: 10, max: 10 },
    });
    const busy = await finish([starved], host(true));
    expect(busy.report.violations).toEqual([]);
    expect(busy.report.inconclusive?.map((v) => v.code).sort()).toEqual([
      'no-matching-traffic',
      'not-resumed',
    ]);
    expect(busy.exitCode).toBe(4);
    const quiet = await finish([starved], host(false));
    expect(quiet.report.violations.map((v) => v.code).sort()).toEqual([
      'no-matching-traffic',
      'not-resumed',
    ]);
    expect(quiet.exitCode).toBe(1);
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
    // The histogram records the time between its own timer's ticks from its second tick on: a
    // block before its first tick (this process not run for the first 30 ms, on a loaded host)
    // would be missed. Wait until it has recorded one interval.
    for (let i = 0; i < 200 && m.read().eventLoopDelayP99Ms === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(m.read().eventLoopDelayP99Ms).toBeGreaterThan(0);
    const until = performance.now() + 120;
    while (performance.now() < until); // block the loop for 120 ms
    await new Promise((r) => setTimeout(r, 30));
    const h = m.stop();
    expect(h.cpus).toBeGreaterThan(0);
    expect(h.eventLoopDelayMaxMs).toBeGreaterThanOrEqual(100);
  });
});

/**
 * A host whose readings the test sets: `tick` advances the CPU counters by one interval in which
 * the drill's own processes used `ownCpus` CPUs, others `otherCpus`, the hypervisor stole `steal`.
 */
function fakeHost(cpus = 2) {
  let load = 0;
  let ticks: CpuTicks = { total: 0, idle: 0, steal: 0 };
  let own = 0;
  let exited = false;
  const readings: HostReadings = {
    cpus: () => cpus,
    loadavg: () => load,
    cpuTicks: () => ticks,
    // The drill process and one worker that exits halfway: its ticks must still count.
    ownTicks: () =>
      new Map(
        exited
          ? [[1, own / 2]]
          : [
              [1, own / 2],
              [2, own / 2],
            ],
      ),
  };
  return {
    readings,
    tick(o: { load: number; ownCpus: number; otherCpus: number; steal?: number }) {
      load = o.load;
      const interval = 100 * cpus; // one second of ticks at 100 Hz on every CPU
      const stolen = (o.steal ?? 0) * interval;
      const busy = 100 * (o.ownCpus + o.otherCpus);
      ticks = {
        total: ticks.total + interval,
        idle: ticks.idle + Math.max(0, interval - busy - stolen),
        steal: ticks.steal + stolen,
      };
      own += 100 * o.ownCpus;
    },
    exitWorker() {
      exited = true;
    },
  };
}

describe('KS-9.3.8 the drill tells a host overloaded by others from the load it makes itself', () => {
  const blockLoop = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until); // the drill's own work holding its event loop
  };

  it('its own fleet busy on every core, its own event loop late: not overloaded', async () => {
    const h = fakeHost();
    const m = startHostLoadMonitor({
      readings: h.readings,
      calibrationP99Ms: 4,
      sampleEveryMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 20));
    blockLoop(120);
    await new Promise((r) => setTimeout(r, 20));
    // Load 5 on 2 CPUs (as seen at load 3-6 with 8 workers), 1.8 CPUs of it the drill's own.
    h.tick({ load: 5, ownCpus: 1.8, otherCpus: 0.1 });
    m.read();
    h.exitWorker();
    const load = m.stop();
    expect(load.eventLoopDelayMaxMs).toBeGreaterThanOrEqual(100);
    expect(load.loadMax).toBe(5);
    expect(load.ownCpus).toBeCloseTo(1.8, 5);
    expect(load.foreignLoadMax).toBeLessThan(0.5);
    expect(load.overloaded).toBe(false);
    expect(describeHostLoad(load)).toMatch(/not overloaded by other processes$/);
  });

  it('other processes queueing on the CPUs: overloaded, named with their share of the load', () => {
    const h = fakeHost();
    const m = startHostLoadMonitor({ readings: h.readings, sampleEveryMs: 60_000 });
    h.tick({ load: 20, ownCpus: 0.2, otherCpus: 1.8 });
    const load = m.stop();
    expect(load.foreignLoadMax).toBeCloseTo(18, 5);
    expect(load.overloaded).toBe(true);
    expect(load.why).toBe('load average up to 20 on 2 CPU(s), 18 of it from other processes');
    expect(describeHostLoad(load)).toMatch(/host overloaded by other processes/);
  });

  it('KS-9.3.7 a progress line says how far along the drill is and the load now, each figure once', () => {
    const h = fakeHost();
    const m = startHostLoadMonitor({ readings: h.readings, sampleEveryMs: 60_000 });
    h.tick({ load: 26.1437, ownCpus: 0.5712, otherCpus: 1.4 });
    m.read();
    h.tick({ load: 21.2688, ownCpus: 0.5712, otherCpus: 1.4 });
    const load = m.stop();
    // A new user's standard drill printed 'load 26.14 ... 18.506 ... (load average up to 26.14
    // on 2 CPU(s), 18.506 of it ...)' every 10 s for minutes: the highest load as if it were
    // now, every figure twice, three decimals, and no word of how far along it was.
    const overloaded = progressLine(40, 318, load);
    expect(overloaded).toBe(
      "... 40 s of about 318 s; load 21.3 now on 2 CPU(s); the drill's processes use 0.57 CPU(s); event-loop delay p99 0 ms; host overloaded by other processes (load average up to 26.1 on 2 CPU(s), 18.6 of it from other processes): a missed timing target will be inconclusive",
    );
    const quiet = fakeHost();
    const q = startHostLoadMonitor({ readings: quiet.readings, sampleEveryMs: 60_000 });
    quiet.tick({ load: 1.04, ownCpus: 0.9, otherCpus: 0.1 });
    expect(progressLine(10, 318, q.stop())).toBe(
      "... 10 s of about 318 s; load 1 now (up to 1) on 2 CPU(s), 0.1 of it from other processes; the drill's processes use 0.9 CPU(s); event-loop delay p99 0 ms; not overloaded by other processes",
    );
  });

  it('a hypervisor stealing a fifth of the CPU time: overloaded', () => {
    const h = fakeHost();
    const m = startHostLoadMonitor({ readings: h.readings, sampleEveryMs: 60_000 });
    h.tick({ load: 1, ownCpus: 0.8, otherCpus: 0, steal: 0.3 });
    const load = m.stop();
    expect(load.stealShare).toBeCloseTo(0.3, 5);
    expect(load.overloaded).toBe(true);
    expect(load.why).toMatch(/30% of the CPU time was stolen/);
  });

  it('a calibration loop already late before the fleet started: overloaded', () => {
    const h = fakeHost();
    const m = startHostLoadMonitor({
      readings: h.readings,
      calibrationP99Ms: 80,
      sampleEveryMs: 60_000,
    });
    h.tick({ load: 1, ownCpus: 0.5, otherCpus: 0.5 });
    const load = m.stop();
    expect(load.overloaded).toBe(true);
    expect(load.why).toMatch(/before the fleet started, a calibration loop was late by 80 ms/);
  });

  it('without CPU times (not Linux) the whole load average counts, as before', () => {
    const m = startHostLoadMonitor({
      readings: {
        cpus: () => 2,
        loadavg: () => 4,
        cpuTicks: () => undefined,
        ownTicks: () => undefined,
      },
      sampleEveryMs: 60_000,
    });
    const load = m.stop();
    expect(load.foreignLoadMax).toBe(4);
    expect(load.overloaded).toBe(true);
    expect(load.why).toBe('load average up to 4 on 2 CPU(s)');
  });

  it('verdicts: a met target passes under its own load; a miss is inconclusive only when others overloaded the host', async () => {
    const ownLoad = fakeHost();
    const quietMonitor = startHostLoadMonitor({
      readings: ownLoad.readings,
      sampleEveryMs: 60_000,
    });
    ownLoad.tick({ load: 5, ownCpus: 1.8, otherCpus: 0.1 });
    const fast = slow({
      stops: [{ workerId: 'w1', appliedAt: 1010, timeToStopMs: 10 }],
      timeToStop: { p50: 10, p99: 10, max: 10 },
    });
    const met = await finish([fast], quietMonitor);
    expect(met.report.verdict).toBe('passed');
    expect(met.exitCode).toBe(0);
    const missed = await finish([slow()], quietMonitor);
    expect(missed.report.verdict).toBe('failed');
    expect(missed.report.violations.map((v) => v.code)).toEqual(['time-to-stop']);
    quietMonitor.stop();

    const others = fakeHost();
    const busyMonitor = startHostLoadMonitor({ readings: others.readings, sampleEveryMs: 60_000 });
    others.tick({ load: 20, ownCpus: 0.2, otherCpus: 1.8 });
    const metBusy = await finish([fast], busyMonitor);
    expect(metBusy.report.verdict).toBe('passed');
    const missedBusy = await finish([slow()], busyMonitor);
    expect(missedBusy.report.verdict).toBe('inconclusive');
    expect(missedBusy.exitCode).toBe(4);
    busyMonitor.stop();
  });

  it.runIf(process.platform === 'linux')(
    'on Linux the real readings see the CPU this process burns',
    () => {
      const t0 = systemReadings.cpuTicks()!;
      const sum = (m: ReadonlyMap<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);
      const o0 = sum(systemReadings.ownTicks()!);
      blockLoop(300);
      const t1 = systemReadings.cpuTicks()!;
      const o1 = sum(systemReadings.ownTicks()!);
      expect(t1.total).toBeGreaterThan(t0.total);
      // 300 ms of CPU is about 30 ticks at 100 Hz; a loaded host may give it less of the CPU. The
      // process's ticks and the host's are counted apart (per task, per CPU): one or two apart
      // (seen: 31 own against 30 busy on a loaded host).
      expect(o1 - o0).toBeGreaterThan(0);
      expect(o1 - o0).toBeLessThanOrEqual(t1.total - t0.total - (t1.idle - t0.idle) + 2);
    },
  );
});
