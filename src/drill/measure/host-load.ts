import { readFileSync, readdirSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { round } from '../internal/round.js';

/**
 * How loaded the host was while a drill ran. A time-to-stop target missed on an overloaded host
 * says more about the host than about the kill switch (issue 18: 75.8 ms against 50 at a load of
 * 25 on 2 cores), so such a miss is reported as inconclusive, apart from the violations; an
 * effect after stop-complete stays a violation whatever the load. KS-9.3.7
 *
 * The drill loads the host itself (its control plane and its workers), so "overloaded" means
 * loaded by OTHER processes: the load average net of the drill's own share of the busy CPU, CPU
 * stolen by a hypervisor, or a calibration loop that was already late before the fleet started.
 * The drill's own event-loop delay under its own fleet is reported, never a cause. KS-9.3.8
 */
export interface HostLoad {
  readonly cpus: number;
  /** The highest 1-minute load average sampled (every second). */
  readonly loadMax: number;
  /** The 1-minute load average at the latest sample. */
  readonly loadNow?: number;
  /**
   * The highest load average attributed to other processes: the load average times the share of
   * the busy CPU time that was not the drill's own processes'. Equals `loadMax` where the CPU
   * times cannot be read (not Linux).
   */
  readonly foreignLoadMax: number;
  /** CPUs' worth of time the drill's own processes used, averaged over the run so far. */
  readonly ownCpus?: number;
  /** The share of CPU time stolen by a hypervisor over the run so far (0 to 1). */
  readonly stealShare?: number;
  /** The drill process's event-loop delay, p99 and max, ms (what its own timers were late by). */
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
  /** The event-loop delay p99 of the calibration loop run before the fleet started, ms. */
  readonly calibrationP99Ms?: number;
  /** Whether other load made timing targets meaningless, and why. */
  readonly overloaded: boolean;
  readonly why?: string;
}

/** Load per core, attributed to other processes, from which timing targets are inconclusive. */
export const OVERLOADED_LOAD_PER_CPU = 1.5;
/** The calibration loop's event-loop delay p99 from which timing targets are inconclusive, ms. */
export const OVERLOADED_EVENT_LOOP_P99_MS = 50;
/** The share of CPU time stolen by a hypervisor from which timing targets are inconclusive. */
export const OVERLOADED_STEAL_SHARE = 0.2;

/** CPU time counters of the whole host, in clock ticks (the first line of `/proc/stat`). */
export interface CpuTicks {
  readonly total: number;
  /** idle + iowait. */
  readonly idle: number;
  readonly steal: number;
}

/** Where the monitor reads the host from; injected by tests. */
export interface HostReadings {
  readonly cpus: () => number;
  /** The 1-minute load average. */
  readonly loadavg: () => number;
  /** The host's CPU ticks, or undefined where they cannot be read. */
  readonly cpuTicks: () => CpuTicks | undefined;
  /**
   * CPU ticks used so far by this process and each of its live descendants, by pid, or
   * undefined. (The monitor remembers a process that exited with its last reading.)
   */
  readonly ownTicks: () => ReadonlyMap<number, number> | undefined;
}

/** A running measurement of the host's load; {@link HostLoadMonitor.stop} returns it. */
export interface HostLoadMonitor {
  /** The load so far (the monitor keeps running). */
  read(): HostLoad;
  /** Stops sampling and returns the load over the whole run. */
  stop(): HostLoad;
}

/** Options of {@link startHostLoadMonitor}. */
export interface HostLoadOptions {
  /** @default the real host (`/proc` on Linux, `os.loadavg`) */
  readonly readings?: HostReadings;
  /** The calibration loop's event-loop delay p99, ms (see {@link calibrateEventLoop}). */
  readonly calibrationP99Ms?: number;
  /** How often to sample, ms. @default 1000 */
  readonly sampleEveryMs?: number;
}

/**
 * Starts measuring the host's load: the load average, the part of it other processes make, CPU
 * steal, and this process's event-loop delay.
 */
export function startHostLoadMonitor(options: HostLoadOptions = {}): HostLoadMonitor {
  const r = options.readings ?? systemReadings;
  const cpus = r.cpus();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const ticks0 = r.cpuTicks();
  const byPid = new Map<number, number>();
  const ownNow = (): number | undefined => {
    const m = r.ownTicks();
    if (m === undefined) return undefined;
    for (const [pid, t] of m) byPid.set(pid, t);
    let sum = 0;
    for (const t of byPid.values()) sum += t;
    return sum;
  };
  const own0 = ownNow();
  let ticks = ticks0;
  let own = own0;
  let loadMax = 0;
  let loadNow = 0;
  let foreignLoadMax = 0;
  const share = (): { own?: number; steal?: number; ownCpus?: number } => {
    if (ticks0 === undefined || ticks === undefined) return {};
    const total = ticks.total - ticks0.total;
    if (total <= 0) return {};
    const busy = total - (ticks.idle - ticks0.idle);
    const steal = (ticks.steal - ticks0.steal) / total;
    if (own0 === undefined || own === undefined || busy <= 0) return { steal };
    return {
      own: Math.min(1, (own - own0) / busy),
      steal,
      ownCpus: Math.min(1, (own - own0) / total) * cpus,
    };
  };
  const sample = (): void => {
    ticks = r.cpuTicks() ?? ticks;
    own = ownNow() ?? own;
    const load = r.loadavg();
    loadNow = load;
    loadMax = Math.max(loadMax, load);
    const s = share();
    // Until the CPU times have moved, whose load it is cannot be told: count it only where
    // they cannot be read at all.
    if (s.own !== undefined || ticks0 === undefined || own0 === undefined)
      foreignLoadMax = Math.max(foreignLoadMax, load * (1 - (s.own ?? 0)));
  };
  sample();
  const sampler = setInterval(sample, options.sampleEveryMs ?? 1000);
  sampler.unref();
  const read = (): HostLoad => {
    sample();
    // The histogram reads nanoseconds; an empty one (a very short run) reads as zero delay.
    const p99 = delay.count > 0 ? delay.percentile(99) / 1e6 : 0;
    const max = delay.count > 0 ? delay.max / 1e6 : 0;
    const s = share();
    const ownCpus = s.ownCpus;
    const reasons: string[] = [];
    if (foreignLoadMax / cpus >= OVERLOADED_LOAD_PER_CPU) {
      reasons.push(
        ownCpus === undefined
          ? `load average up to ${fig(loadMax, 1)} on ${cpus} CPU(s)`
          : `load average up to ${fig(loadMax, 1)} on ${cpus} CPU(s), ${fig(foreignLoadMax, 1)} of it from other processes`,
      );
    }
    if (s.steal !== undefined && s.steal >= OVERLOADED_STEAL_SHARE)
      reasons.push(`${Math.round(s.steal * 100)}% of the CPU time was stolen by the hypervisor`);
    const cal = options.calibrationP99Ms;
    if (cal !== undefined && cal >= OVERLOADED_EVENT_LOOP_P99_MS)
      reasons.push(
        `before the fleet started, a calibration loop was late by ${fig(cal, 1)} ms (p99)`,
      );
    return {
      cpus,
      loadMax: round(loadMax),
      loadNow: round(loadNow),
      foreignLoadMax: round(foreignLoadMax),
      ...(ownCpus !== undefined ? { ownCpus: round(ownCpus) } : {}),
      ...(s.steal !== undefined ? { stealShare: round(s.steal) } : {}),
      eventLoopDelayP99Ms: round(p99),
      eventLoopDelayMaxMs: round(max),
      ...(cal !== undefined ? { calibrationP99Ms: round(cal) } : {}),
      overloaded: reasons.length > 0,
      ...(reasons.length > 0 ? { why: reasons.join('; ') } : {}),
    };
  };
  return {
    read,
    stop() {
      clearInterval(sampler);
      const h = read();
      delay.disable();
      return h;
    },
  };
}

/**
 * The calibration loop: how late this process's timers are for `ms` before the drill starts any
 * process of its own, so a host already overloaded is told from one the drill loads. Resolves the
 * event-loop delay p99, ms.
 */
export async function calibrateEventLoop(ms = 500): Promise<number> {
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  await new Promise((resolve) => setTimeout(resolve, ms));
  delay.disable();
  return delay.count > 0 ? delay.percentile(99) / 1e6 : 0;
}

/**
 * One line for a progress report: the load now, whose it is, and what it means for the targets.
 * Each figure once, rounded for reading (the report keeps the exact ones); on an overloaded host
 * the reason carries the highest load and the share of other processes.
 */
export function describeHostLoad(h: HostLoad): string {
  const now = fig(h.loadNow ?? h.loadMax, 1);
  const own =
    h.ownCpus !== undefined ? `; the drill's processes use ${fig(h.ownCpus, 2)} CPU(s)` : '';
  const delay = `event-loop delay p99 ${fig(h.eventLoopDelayP99Ms, h.eventLoopDelayP99Ms >= 10 ? 0 : 1)} ms`;
  if (h.overloaded)
    return `load ${now} now on ${h.cpus} CPU(s)${own}; ${delay}; host overloaded by other processes (${h.why}): a missed timing target will be inconclusive`;
  const others =
    h.ownCpus !== undefined ? `, ${fig(h.foreignLoadMax, 1)} of it from other processes` : '';
  return `load ${now} now (up to ${fig(h.loadMax, 1)}) on ${h.cpus} CPU(s)${others}${own}; ${delay}; not overloaded by other processes`;
}

/** `n` to `digits` decimals, without trailing zeros (26.1437 -> 26.1, 1.04 -> 1). */
function fig(n: number, digits: number): string {
  return String(Number(n.toFixed(digits)));
}

/** The real host: `/proc/stat` and `/proc/<pid>` on Linux (undefined elsewhere), `os.loadavg`. */
export const systemReadings: HostReadings = {
  cpus: () => availableParallelism(),
  loadavg: () => loadavg()[0] ?? 0,
  cpuTicks: () => {
    try {
      const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
      const f = line.trim().split(/\s+/).slice(1).map(Number);
      // user nice system idle iowait irq softirq steal (guest time is inside user already)
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
      return { total, idle: (f[3] ?? 0) + (f[4] ?? 0), steal: f[7] ?? 0 };
    } catch {
      return undefined;
    }
  },
  ownTicks: () => {
    const out = new Map<number, number>();
    try {
      treeTicks(process.pid, 0, out);
      return out;
    } catch {
      return undefined;
    }
  },
};

/** utime + stime of a process and of each of its live descendants, in clock ticks, by pid. */
function treeTicks(pid: number, depth: number, out: Map<number, number>): void {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  out.set(pid, Number(f[11]) + Number(f[12]));
  if (depth > 4) return;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.trim().split(/\s+/).filter(Boolean)) {
      try {
        treeTicks(Number(c), depth + 1, out);
      } catch {
        // it exited meanwhile
      }
    }
  }
}

/**
 * The violation codes that measure timing, and so are inconclusive on an overloaded host: the
 * time-to-stop, the two that need matching effects to flow within a window (before the flip,
 * after the resume), the other cohorts' rate, and other cohorts refused only by workers whose
 * lease ran out (failing closed, as a starved worker must), which a starved host misses whatever
 * the kill switch does.
 */
export const TIMING_VIOLATIONS: ReadonlySet<string> = new Set([
  'time-to-stop',
  'no-matching-traffic',
  'not-resumed',
  'other-cohort-slowed',
  'other-cohort-stale',
]);
