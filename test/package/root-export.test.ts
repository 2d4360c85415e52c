import { describe, expect, it } from 'vitest';

/** What a worker needs from the root: the provider, the guard, ledgers, retries, queues, runs, errors. */
const WORKER_NAMES = [
  'KillSwitchProvider',
  'KillSwitchHook',
  'StoreFlipSource',
  'EffectGuard',
  'HaltedError',
  'KillSwitchError',
  'ErrorCode',
  'DuplicateEffectError',
  'MemorySideEffectLedger',
  'FileSideEffectLedger',
  'Scheduler',
  'QueueController',
  'DurableRunner',
  'runInScope',
  'spawnChildRun',
  'systemClock',
];

describe('KS-16.1.3 the root export names what a worker needs; helpers stay in their subpaths', () => {
  it('the root holds the worker API and at most 80 runtime names', async () => {
    const root = await import('openfeature-kill-switch');
    const names = Object.keys(root);
    expect(names.filter((n) => !WORKER_NAMES.includes(n)).length).toBeGreaterThan(0);
    expect(WORKER_NAMES.filter((n) => !names.includes(n))).toEqual([]);
    expect(names.length).toBeLessThanOrEqual(80);
  });

  it('tripwires, telemetry, lineage, the recovery report and the test helpers are subpaths, not the root', async () => {
    const root = Object.keys(await import('openfeature-kill-switch'));
    const elsewhere: Record<string, string> = {
      WriteRateTripwire: 'openfeature-kill-switch/tripwire',
      traceGuard: 'openfeature-kill-switch/telemetry',
      lineageSchema: 'openfeature-kill-switch/lineage',
      buildRecoveryReport: 'openfeature-kill-switch/report',
      ManualClock: 'openfeature-kill-switch/testing',
    };
    for (const [name, subpath] of Object.entries(elsewhere)) {
      expect(root, name).not.toContain(name);
      expect(Object.keys(await import(subpath)), subpath).toContain(name);
    }
  });
});
