import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { isTreeLever, leverTarget, loadScenario, parseScenario } from '../../src/drill/scenario.js';

const base = {
  name: 'unit',
  traffic: {
    tenants: ['acme', 'globex'],
    features: ['a', 'b'],
    capabilities: ['x.send', 'y.read'],
  },
  levers: [{ selector: { tenant: 'acme' } }],
};

describe('KS-9.1.1 a drill scenario is a validated JSON file', () => {
  it('applies the documented defaults', () => {
    const s = parseScenario(base);
    expect(s.workers).toBe(8);
    expect(s.queueMode).toBe('discard');
    expect(s.timings.observeMs).toBe(60_000);
    expect(s.targets).toMatchObject({
      maxEffectsAfterComplete: 0,
      p99TimeToStopMs: 50,
      ledgerConsistent: true,
    });
    expect(s.levers[0]!.resume).toEqual({});
  });

  it('lists every issue of a bad scenario at once', () => {
    let err: unknown;
    try {
      parseScenario({ ...base, workers: 0, name: '', levers: [], extra: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const paths = (err as ValidationError).issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['workers', 'name', 'levers']));
    expect((err as ValidationError).code).toBe('KS_INVALID_INPUT');
  });

  it('lets --workers override the file', () => {
    expect(parseScenario(base, { workers: 3 }).workers).toBe(3);
  });

  it('refuses a file that is not JSON with KS_INVALID_INPUT', async () => {
    await expect(loadScenario('/nonexistent/drill.json')).rejects.toMatchObject({
      code: 'KS_INVALID_INPUT',
    });
  });
});

describe('KS-9.1.2 the traffic shape describes production-shaped agent traffic', () => {
  it('has every part, with defaults, and refuses one tenant or one feature (a halt must leave a cohort)', () => {
    const t = parseScenario(base).traffic;
    expect(t).toMatchObject({
      tenants: ['acme', 'globex'],
      features: ['a', 'b'],
      capabilities: ['x.send', 'y.read'],
      runsPerWorker: 4,
      llm: { tokens: 6, tokenIntervalMs: 15 },
      toolLatencyMs: 10,
      failureRate: 0.1,
      retry: { baseMs: 60, maxAttempts: 4 },
      timers: { everySteps: 3, delayMs: 250 },
    });
    expect(t.failureRate).toBeGreaterThan(0); // retries happen
    expect(t.queue).toBeDefined();
    for (const key of ['tenants', 'features'] as const) {
      let err: unknown;
      try {
        parseScenario({ ...base, traffic: { ...base.traffic, [key]: ['only'] } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).issues.map((i) => i.path.join('.'))).toContain(
        `traffic.${key}`,
      );
    }
  });
});

describe('KS-9.1.4 a lever that matches no traffic is refused, so a drill cannot pass by luck', () => {
  it('refuses a tenant, capability or run the traffic does not have', () => {
    const r = () =>
      parseScenario({
        ...base,
        workers: 2,
        levers: [
          { selector: { tenant: 'nobody' } },
          { selector: { capability: 'z' } },
          { selector: { runId: 'w3-r0' } },
        ],
      });
    expect(r).toThrow(
      /levers\.0\.selector\.tenant.*levers\.1\.selector\.capability.*levers\.2\.selector\.runId/,
    );
  });

  it('derives each lever level from its selector', () => {
    const s = parseScenario({
      ...base,
      levers: [
        { selector: { capability: 'x.send', tenant: 'acme' } },
        { selector: { runId: 'w1-r0' } },
        { selector: {} },
      ],
    });
    expect(s.levers.map((l) => leverTarget(l).level)).toEqual(['capability', 'run', 'global']);
  });
});

describe('KS-9.1.6 a scenario may describe a run tree; a lever on its root is a run-tree lever', () => {
  it('applies the tree defaults and takes a lever on the root run id', () => {
    const s = parseScenario({
      ...base,
      workers: 4,
      traffic: { ...base.traffic, tree: {} },
      levers: [{ selector: { runId: 'tree' } }, { selector: { runId: 'w1-r0' } }],
    });
    expect(s.traffic.tree).toEqual({
      rootRunId: 'tree',
      rootWorker: 'w1',
      children: 32,
      grandchildEvery: 2,
      concurrency: 2,
      followUpMs: 1_000,
    });
    expect(s.targets.minTreeRuns).toBe(30);
    expect(s.levers.map((l) => isTreeLever(l, s))).toEqual([true, false]);
  });

  it('refuses a root run id without a tree, a root worker out of the fleet, a root named like a plain run', () => {
    expect(() => parseScenario({ ...base, levers: [{ selector: { runId: 'tree' } }] })).toThrow(
      /levers\.0\.selector\.runId/,
    );
    let err: unknown;
    try {
      parseScenario({
        ...base,
        workers: 2,
        traffic: { ...base.traffic, tree: { rootWorker: 'w3', rootRunId: 'w1-r0' } },
      });
    } catch (e) {
      err = e;
    }
    expect((err as ValidationError).issues.map((i) => i.path.join('.'))).toEqual([
      'traffic.tree.rootWorker',
      'traffic.tree.rootRunId',
    ]);
  });
});

describe('KS-9.1.5 the shipped scenarios pull capability, run, tenant or feature and global, each followed by a resume', () => {
  for (const file of ['standard', 'ci']) {
    it(`spec/drills/${file}.json is valid and pulls the four levels in turn`, async () => {
      const s = parseScenario(JSON.parse(await readFile(`spec/drills/${file}.json`, 'utf8')));
      const levels = s.levers.map((l) => leverTarget(l).level);
      expect(levels[0]).toBe('capability');
      expect(levels[1]).toBe('run');
      expect(['tenant', 'feature']).toContain(levels[2]);
      expect(levels[3]).toBe('global');
      expect(s.levers.every((l) => l.resume !== false)).toBe(true);
    });
  }

  it('the standard drill runs 8 workers for 60 s per level against the issue targets', async () => {
    const s = await loadScenario('spec/drills/standard.json');
    expect(s.workers).toBe(8);
    expect(s.timings.observeMs).toBe(60_000);
    expect(s.targets.p99TimeToStopMs).toBe(50);
    expect(s.targets.maxEffectsAfterComplete).toBe(0);
    // Then the run-tree lever: a root fanning out to at least 30 children over every worker.
    const last = s.levers[s.levers.length - 1]!;
    expect(last.label).toBe('run-tree');
    expect(isTreeLever(last, s)).toBe(true);
    expect(s.traffic.tree!.children).toBeGreaterThanOrEqual(30);
    expect(s.targets.minTreeRuns).toBeGreaterThanOrEqual(30);
  });
});
