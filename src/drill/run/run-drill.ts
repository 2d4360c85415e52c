import { InvalidOptionError } from '../../errors.js';
import type { DrillOutcome, RunDrillOptions } from './run-drill-options.js';
import { runEmbeddedDrill } from './embedded.js';
import { runFleetDrill } from './fleet.js';

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
  return options.expectWorkers !== undefined ? runFleetDrill(options) : runEmbeddedDrill(options);
}
