/**
 * KS-17.9.3 the drill's own control plane checks tokens: while an embedded drill runs, its control
 * plane refuses an anonymous flip (issue 15: "the drill's internal control plane does not"), and the
 * drill itself still pulls every lever (admin token) and its workers still acknowledge (worker token).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDrill } from '../../../src/drill/run/run-drill.js';
import { SCRIPTS, scenarioFrom } from '../../drill/drill-helpers.js';

let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('KS-17.9.3 the embedded drill control plane needs tokens', () => {
  it(
    'answers an anonymous flip and acknowledgement with 401 while the drill passes',
    { timeout: 120_000 },
    async () => {
      dir = await mkdtemp(join(tmpdir(), 'drill-tokens-'));
      const scenario = await scenarioFrom('ci.json', (raw) => ({
        ...raw,
        // Two workers, no gateway member (ci.json's gw1): the drill under test is the tokens'.
        gateway: undefined,
        workers: 2,
        levers: [{ label: 'global', selector: {}, resume: {} }],
      }));
      const probes: Promise<number[]>[] = [];
      const lines: string[] = [];
      const { exitCode, report } = await runDrill({
        scenario,
        ...SCRIPTS,
        outDir: dir,
        log: (line) => {
          lines.push(line);
          const url = /^control plane (http:\/\/\S+) \(embedded/.exec(line)?.[1];
          if (url === undefined) return;
          const post = (path: string, body: unknown) =>
            fetch(url + path, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify(body),
            }).then(async (r) => (await r.text(), r.status));
          probes.push(
            Promise.all([
              post('/v1/flips', { action: 'halt', selector: {}, reason: 'anonymous' }),
              post('/v1/acks', { workerId: 'w-ghost', seq: 0 }),
            ]),
          );
        },
      });
      expect(probes, lines.join('\n')).toHaveLength(1);
      expect(await probes[0]).toEqual([401, 401]);
      expect(report.violations, lines.join('\n')).toEqual([]);
      expect(exitCode).toBe(0);
      expect(report.levers[0]!.stops).toHaveLength(2);
    },
  );
});
