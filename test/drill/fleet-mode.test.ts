import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { startEffectSink, type EffectSink } from '../../src/drill/servers/effect-sink.js';
import { systemClock } from '../../src/internal/clock.js';
import { WorkerFleet } from '../../src/drill/run/worker-fleet.js';
import { fleetLevers } from '../../src/drill/run/fleet.js';
import { runDrill } from '../../src/drill/run/run-drill.js';
import { startSlowLlmServer, type SlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import { TokenAuthenticator } from '../../src/auth/token-authenticator.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';

const FLEET_TOKEN = 'fleet-token-0123456789abcdef0123456789';
const DRILL_TOKEN = 'drill-token-0123456789abcdef0123456789';
import { progress, scenarioFrom, WORKER_SCRIPT } from './drill-helpers.js';

let dir: string | undefined;
let cp: ControlPlane | undefined;
let sink: EffectSink | undefined;
let llm: SlowLlmServer | undefined;
const fleet = new WorkerFleet();
afterAll(async () => {
  await fleet.stop(5_000).catch(() => undefined);
  fleet.kill();
  await cp?.close();
  await sink?.close();
  await llm?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('KS-9.5.1 against a fleet it did not start, the drill pulls levers on the drill scope only', () => {
  it('derives the levers from the scope and pulls global only when allowed', () => {
    expect(
      fleetLevers({ tenant: 'drill', capability: 'canary' }, false).map((l) => l.selector),
    ).toEqual([{ tenant: 'drill', capability: 'canary' }, { tenant: 'drill' }]);
    expect(fleetLevers({ runId: 'r1' }, true).map((l) => l.selector)).toEqual([
      { runId: 'r1' },
      {},
    ]);
  });

  it('refuses expected workers without a control plane URL', async () => {
    const scenario = await scenarioFrom('ci.json');
    await expect(runDrill({ scenario, expectWorkers: 2 })).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
    });
  });
});

describe('KS-9.5.2 KS-9.5.3 a fleet drill measures the acknowledgements, fails on a missing worker or a token that may not flip, and leaves other tenants alone', () => {
  it(
    'flags the expected worker that never connected and measures the others from their acks',
    { timeout: 120_000 },
    async () => {
      dir = await mkdtemp(join(tmpdir(), 'drill-fleet-'));
      const store = new MemoryFlipLogStore();
      await store.open();
      // Real auth: the workers hold a worker token, the drill an operator token scoped to the
      // drill tenant with the resume permission (what an on-call team hands a quarterly drill).
      const auth = new TokenAuthenticator({
        tokens: [
          { name: 'fleet', token: FLEET_TOKEN, role: 'worker', workers: ['w*'] },
          {
            name: 'drill-op',
            token: DRILL_TOKEN,
            role: 'operator',
            scopes: [{ tenant: 'acme' }],
            resume: true,
          },
        ],
      });
      cp = await startControlPlane({
        store,
        port: 0,
        auth,
        clock: { ...systemClock, wallNow: systemClock.now },
        logger: { info() {}, warn() {}, error() {} },
      });
      sink = await startEffectSink();
      llm = await startSlowLlmServer({ tokens: 3, tokenIntervalMs: 10 });
      const scenario = await scenarioFrom('ci.json', (raw) => ({
        ...raw,
        workers: 2,
        timings: {
          warmupMs: 600,
          observeMs: 600,
          waitMs: 5_000,
          freshWithinMs: 3_000,
          connectTimeoutMs: 10_000,
        },
      }));
      const ledgers = ['w1', 'w2'].map((id) => join(dir!, `ledger-${id}.jsonl`));
      ['w1', 'w2'].forEach((workerId, i) =>
        fleet.spawn(WORKER_SCRIPT, {
          workerId,
          release: 'staging-1',
          urls: [cp!.url],
          token: FLEET_TOKEN,
          sinkUrl: sink!.url,
          llmUrl: llm!.url,
          ledgerPath: ledgers[i]!,
          traffic: scenario.traffic,
          seed: 3,
          variant: 'normal',
          staleAfterMs: 3_000,
          heartbeatMs: 1_000,
        }),
      );
      await expect
        .poll(() => cp!.tracker.workers().filter((w) => w.connected && !w.stale).length, {
          timeout: 20_000,
        })
        .toBe(2);
      await new Promise((r) => setTimeout(r, 800));

      const p = progress();
      const { report, exitCode } = await runDrill({
        scenario,
        url: cp.url,
        token: DRILL_TOKEN,
        expectWorkers: ['w1', 'w2', 'w9'],
        scope: { tenant: 'acme', capability: 'payments.refund' },
        sinkUrl: sink.url,
        ledgerPaths: ledgers,
        log: p.log,
      });
      expect(exitCode, p.lines.join('\n')).toBe(1);
      expect(report.mode).toBe('fleet');
      expect(
        report.violations.filter((v) => v.code === 'worker-not-connected').map((v) => v.workerId),
      ).toEqual(['w9']);
      expect(report.levers.map((l) => l.selector)).toEqual([
        { tenant: 'acme', capability: 'payments.refund' },
        { tenant: 'acme' },
      ]);
      for (const l of report.levers) {
        const acked = l.stops
          .filter((s) => s.fromAck && s.timeToStopMs !== undefined)
          .map((s) => s.workerId);
        expect(acked.sort()).toEqual(['w1', 'w2']);
        expect(l.completeAt).toBeDefined();
        expect(l.effects!.matchingAfterComplete).toBe(0);
        expect(l.resume?.ok).toBe(true);
      }
      // Only the drill scope was ever flipped: production traffic outside it was untouched.
      const flips = await store.read();
      expect(flips.length).toBe(4);
      expect(flips.every((f) => f.selector.tenant === 'acme')).toBe(true);
      // The ledgers were read while the workers were still writing them, without cutting them.
      expect(report.ledger!.unreadable).toEqual([]);
      expect(report.ledger!.entries).toBeGreaterThan(0);

      // A token that may not flip the scope fails the drill instead of measuring nothing.
      const viewer = await runDrill({
        scenario,
        url: cp.url,
        token: FLEET_TOKEN,
        expectWorkers: ['w1', 'w2'],
        scope: { tenant: 'acme' },
      });
      expect(viewer.exitCode).toBe(1);
      expect(viewer.report.violations.map((v) => v.code)).toEqual(
        expect.arrayContaining(['lever-error', 'flip-not-accepted']),
      );
      expect(viewer.report.violations.find((v) => v.code === 'lever-error')!.message).toMatch(
        /is a worker and may not flip/,
      );
      expect((await store.read()).length).toBe(4);
    },
  );
});
