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

describe('KS-9.7.1 KS-9.7.2 the gateway path: an agent calling through a kill-switch gateway joins the drill', () => {
  it(
    'the gateway is counted in every lever (time-to-stop, stop-complete), its calls land at the sink, none after stop-complete, its ledger matches',
    { timeout: 150_000 },
    async () => {
      const scenario = await scenarioFrom('ci.json', (raw) => ({
        ...raw,
        workers: 2,
        gateway: { workerId: 'gw1' },
        levers: [
          { label: 'capability', selector: { capability: 'payments.refund' }, resume: {} },
          { label: 'tenant', selector: { tenant: 'acme' }, resume: {} },
          { label: 'global', selector: {}, resume: {} },
        ],
      }));
      dir = await mkdtemp(join(tmpdir(), 'drill-gw-'));
      const p = progress();
      const { exitCode, report } = await runDrill({
        scenario,
        ...SCRIPTS,
        outDir: dir,
        log: p.log,
      });
      expect(report.violations, p.lines.join('\n')).toEqual([]);
      if (exitCode === 4) process.stdout.write(`gateway drill inconclusive: ${report.host?.why}\n`);
      else expect(exitCode, p.lines.join('\n')).toBe(0);
      const gw = report.workers.find((w) => w.workerId === 'gw1');
      expect(gw, p.lines.join('\n')).toMatchObject({ connected: true, everFresh: true });
      // Its calls went through the gateway and landed at the sink, under its worker id.
      expect(gw!.effectsAtSink).toBeGreaterThan(0);
      for (const l of report.levers) {
        // The gateway applied each flip (time-to-stop measured) and stop-complete waited for it.
        const stop = l.stops.find((s) => s.workerId === 'gw1');
        expect(stop?.timeToStopMs, `${l.label}: ${p.lines.join('\n')}`).toBeTypeOf('number');
        expect(l.effects!.matchingAfterComplete).toBe(0);
        expect(l.effects!.leakedByWorker['gw1'] ?? 0).toBe(0);
      }
      // Every effect its upstream landed is in the gateway's ledger under the same key.
      expect(report.ledger!.missing).toEqual([]);
      expect(report.ledger!.phantom).toEqual([]);
      expect(report.ledger!.orphans).toEqual([]);
    },
  );
});
