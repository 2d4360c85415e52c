import { availableParallelism, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { round } from '../internal/round.js';

/**
 * How loaded the host was while a drill ran. A time-to-stop target missed on an overloaded host
 * says more about the host than about the kill switch (issue 18: 75.8 ms against 50 at a load of
 * 25 on 2 cores), so such a miss is reported as inconclusive, apart from the violations; an
 * effect after stop-complete stays a violation whatever the load. KS-9.3.7
 */
export interface HostLoad {
  readonly cpus: number;
  /** The highest 1-minute load average sampled (every second). */
  readonly loadMax: number;
  /** The drill process's event-loop delay, p99 and max, ms (what its own timers were late by). */
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
  /** Whether the host was too loaded for timing targets to mean anything, and why. */
  readonly overloaded: boolean;
  readonly why?: string;
}

/** Load per core from which timing targets are inconclusive. */
export const OVERLOADED_LOAD_PER_CPU = 1.5;
/** The drill process's event-loop delay p99 from which timing targets are inconclusive, ms. */
export const OVERLOADED_EVENT_LOOP_P99_MS = 50;

/** A running measurement of the host's load; {@link HostLoadMonitor.stop} returns it. */
export interface HostLoadMonitor {
  /** The load so far (the monitor keeps running). */
  read(): HostLoad;
  /** Stops sampling and returns the load over the whole run. */
  stop(): HostLoad;
}

/** Starts measuring the host's load average and this process's event-loop delay. */
export function startHostLoadMonitor(): HostLoadMonitor {
  const cpus = availableParallelism();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let loadMax = loadavg()[0] ?? 0;
  const sampler = setInterval(() => {
    loadMax = Math.max(loadMax, loadavg()[0] ?? 0);
  }, 1000);
  sampler.unref();
  const read = (): HostLoad => {
    // The histogram reads nanoseconds; an empty one (a very short run) reads as zero delay.
    const p99 = delay.count > 0 ? delay.percentile(99) / 1e6 : 0;
    const max = delay.count > 0 ? delay.max / 1e6 : 0;
    const reasons: string[] = [];
    if (loadMax / cpus >= OVERLOADED_LOAD_PER_CPU)
      reasons.push(`load average up to ${round(loadMax)} on ${cpus} CPU(s)`);
    if (p99 >= OVERLOADED_EVENT_LOOP_P99_MS)
      reasons.push(`the drill's event loop was late by up to ${round(p99)} ms (p99)`);
    return {
      cpus,
      loadMax: round(loadMax),
      eventLoopDelayP99Ms: round(p99),
      eventLoopDelayMaxMs: round(max),
      overloaded: reasons.length > 0,
      ...(reasons.length > 0 ? { why: reasons.join('; ') } : {}),
    };
  };
  return {
    read,
    stop() {
      clearInterval(sampler);
      const r = read();
      delay.disable();
      return r;
    },
  };
}

/** The violation codes that measure timing, and so are inconclusive on an overloaded host. */
export const TIMING_VIOLATIONS: ReadonlySet<string> = new Set(['time-to-stop']);
