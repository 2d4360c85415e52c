import { InvalidOptionError } from '../../errors.js';
import type { DrillOutcome, RunDrillOptions } from './run-drill-options.js';
import { runEmbeddedDrill } from './embedded.js';
import { runFleetDrill } from './fleet.js';
import {
  calibrateEventLoop,
  describeHostLoad,
  startHostLoadMonitor,
  type HostLoad,
} from '../measure/host-load.js';

export type { DrillOutcome, DrillScope, RunDrillOptions } from './run-drill-options.js';

/**
 * Runs a drill (DESIGN section 8, issue 5): a fleet of worker processes on synthetic traffic (or
 * a fleet it did not start), each lever of the scenario pulled in turn, everything measured, the
 * targets checked and the report written. Every expected worker must be connected and fresh
 * before each lever; one that is not fails the drill instead of hiding. KS-9.3.1, KS-9.3.4
 *
 * @returns the report and the exit code (non-zero on any violation)
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for contradicting options
 * @example
 * ```ts
 * const { exitCode } = await runDrill({ scenario: await loadScenario('spec/drills/ci.json'), outDir: 'reports/drill' });
 * ```
 */
export async function runDrill(options: RunDrillOptions): Promise<DrillOutcome> {
  if (options.expectWorkers !== undefined && options.url === undefined) {
    throw new InvalidOptionError(
      'expectWorkers',
      'a control plane url with it (fleet mode)',
      options.expectWorkers,
    );
  }
  const s = options.scenario;
  const log = options.log ?? (() => undefined);
  // Say up front how long it takes: each lever holds for its observation, then the fleet warms up
  // again; the connection and the stop waits come on top.
  const aboutS = Math.ceil(
    (s.timings.warmupMs + s.levers.length * (s.timings.observeMs + s.timings.warmupMs)) / 1000,
  );
  log(
    `drill ${s.name}: ${s.levers.length} lever(s), each held ${s.timings.observeMs} ms; about ${aboutS} s plus starting the workers (a progress line every ${PROGRESS_EVERY_MS / 1000} s)`,
  );
  // KS-9.3.8 how late timers are before the drill starts anything: the host's own lateness.
  const hostLoad =
    options.hostLoad ?? startHostLoadMonitor({ calibrationP99Ms: await calibrateEventLoop() });
  const started = performance.now();
  const progress = setInterval(() => {
    const h = hostLoad.read();
    log(progressLine(Math.round((performance.now() - started) / 1000), aboutS, h));
  }, PROGRESS_EVERY_MS);
  progress.unref();
  try {
    const run = { ...options, hostLoad };
    return await (options.expectWorkers !== undefined ? runFleetDrill(run) : runEmbeddedDrill(run));
  } finally {
    clearInterval(progress);
    if (options.hostLoad === undefined) hostLoad.stop();
  }
}

/**
 * A running drill's progress line: how far along it is against the estimate it gave up front,
 * and the host's load (KS-9.3.7).
 */
export function progressLine(elapsedS: number, aboutS: number, h: HostLoad): string {
  return `... ${elapsedS} s of about ${aboutS} s; ${describeHostLoad(h)}`;
}

/** How often a running drill prints a progress line, ms. */
const PROGRESS_EVERY_MS = 10_000;
