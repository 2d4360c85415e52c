import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseScenario, type Scenario } from '../../src/drill/scenario.js';

/** The compiled worker entry (child-process tests run compiled code; `npm test` builds first). */
export const WORKER_SCRIPT = fileURLToPath(
  new URL('../../dist/src/drill/worker/worker.js', import.meta.url),
);

/** A scenario file from spec/drills with overrides. */
export async function scenarioFrom(
  file: string,
  override: (raw: Record<string, unknown>) => Record<string, unknown> = (r) => r,
): Promise<Scenario> {
  const path = fileURLToPath(new URL(`../../spec/drills/${file}`, import.meta.url));
  return parseScenario(
    override(JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>),
  );
}

/** Collects progress lines, printed when a test fails so the reason is visible. */
export function progress(): { log: (l: string) => void; lines: string[] } {
  const lines: string[] = [];
  return { lines, log: (l) => lines.push(l) };
}

/** The compiled embedded control plane entry. */
export const CONTROL_PLANE_SCRIPT = fileURLToPath(
  new URL('../../dist/src/drill/servers/control-plane-process.js', import.meta.url),
);

/** Both compiled entries, as runDrill options. */
export const SCRIPTS = {
  workerScript: WORKER_SCRIPT,
  controlPlaneScript: CONTROL_PLANE_SCRIPT,
} as const;
