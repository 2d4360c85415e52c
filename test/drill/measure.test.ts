import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkTargets } from '../../src/drill/measure/check-targets.js';
import { TIMING_VIOLATIONS } from '../../src/drill/measure/host-load.js';
import type { LeverResult, LeverTree, WorkerSummary } from '../../src/drill/report/drill-report.js';
import type { SinkEffect } from '../../src/drill/servers/effect-sink.js';
import type { WorkerEvent } from '../../src/drill/internal/protocol.js';
import {
  checkLedger,
  measureEffects,
  measureSchedules,
  measureTree,
  percentile,
  stopTimes,
  treeRunsOf,
  type HaltWindow,
} from '../../src/drill/measure/measure.js';
import { parseScenario } from '../../src/drill/scenario.js';

const eff = (over: Partial<SinkEffect> & { at: number; key: string }): SinkEffect => ({
  context: { tenant: 'acme', runId: 'w1-r0', capability: 'x' },
  capability: 'x',
  workerId: 'w1',
  kind: 'run',
  attempt: 1,
  ...over,
});

const window: HaltWindow = {
  selector: { tenant: 'acme' },
  acceptedAt: 1000,
  completeAt: 1010,
  endAt: 2000,
  baselineMs: 1000,
};

describe('KS-9.3.2 time-to-stop is flip accepted to worker applied, per worker', () => {
  it('takes the first applied seq at or beyond the flip, and leaves a worker that never applied it empty', () => {
    const events = new Map<string, WorkerEvent[]>([
      [
        'w1',
        [
          { t: 'applied', at: 990, seq: 0 },
          { t: 'applied', at: 1003.5, seq: 1 },
        ],
      ],
      ['w2', [{ t: 'applied', at: 1007.25, seq: 2 }]],
      ['w3', []],
    ]);
    expect(stopTimes(['w1', 'w2', 'w3'], events, 1, 1000)).toEqual([
      { workerId: 'w1', appliedAt: 1003.5, timeToStopMs: 3.5 },
      { workerId: 'w2', appliedAt: 1007.25, timeToStopMs: 7.25 },
      { workerId: 'w3' },
    ]);
  });

  it('nearest-rank percentiles: p99 of 8 samples is the slowest', () => {
    expect(percentile([5, 1, 3, 2, 8, 4, 7, 6], 99)).toBe(8);
    expect(percentile([5, 1, 3, 2, 8, 4, 7, 6], 50)).toBe(4);
    expect(percentile([], 99)).toBeUndefined();
  });

  it('a percentile is always one of the samples and is monotone in p', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1 }),
        fc.integer({ min: 1, max: 99 }),
        (xs, p) => {
          const a = percentile(xs, p)!;
          expect(xs).toContain(a);
          expect(percentile(xs, p + 1)!).toBeGreaterThanOrEqual(a);
        },
      ),
      { seed: 905, verbose: true },
    );
  });
});

describe('KS-9.3.2 effects are counted against the halt window by dispatch time', () => {
  const applied = new Map([['w1', 1004]]);
  it('separates after-accepted, after-applied and after-complete, and other cohorts', () => {
    const effects = [
      eff({ key: 'before', at: 900, sentAt: 899 }),
      eff({ key: 'in-window', at: 1003, sentAt: 1002 }), // accepted, before w1 applied
      eff({ key: 'leak', at: 1006, sentAt: 1005 }), // after w1 applied, before complete
      eff({ key: 'late', at: 1500, sentAt: 1499 }), // after complete
      eff({ key: 'arrived-late', at: 1012, sentAt: 1003 }), // sent before, arrived after complete
      eff({ key: 'other', at: 1500, sentAt: 1500, context: { tenant: 'globex' } }),
      eff({ key: 'other-before', at: 500, sentAt: 500, context: { tenant: 'globex' } }),
    ];
    const m = measureEffects(window, effects, applied, new Map());
    expect(m).toMatchObject({
      matchingBefore: 1,
      matchingAfterAccepted: 4,
      matchingAfterApplied: 2,
      matchingAfterComplete: 1,
      matchingArrivedAfterComplete: 1,
      afterCompleteKeys: ['late'],
      leakedByWorker: { w1: 2 },
      otherRateBefore: 1,
    });
    expect(m.otherRateDuring).toBeCloseTo(1000 / 990, 3);
  });

  it('counts refusals of contexts outside the selector while it was halted', () => {
    const events = new Map<string, WorkerEvent[]>([
      [
        'w1',
        [
          { t: 'refused', at: 1100, ctx: { tenant: 'globex' }, cause: 'halted', kind: 'run' },
          { t: 'refused', at: 1100, ctx: { tenant: 'acme' }, cause: 'halted', kind: 'run' },
        ],
      ],
    ]);
    const m = measureEffects(window, [], new Map(), events);
    expect(m.otherRefused).toBe(1);
    expect(m.otherRefusedBy).toEqual({ 'w1:halted': 1 });
  });

  it('counts retries and timers that fired after their worker applied the halt', () => {
    const events = new Map<string, WorkerEvent[]>([
      [
        'w1',
        [
          { t: 'fire', at: 1002, ctx: { tenant: 'acme' }, kind: 'timer' },
          { t: 'fire', at: 1200, ctx: { tenant: 'acme' }, kind: 'retry' },
          { t: 'fire', at: 1200, ctx: { tenant: 'globex' }, kind: 'retry' },
          { t: 'unscheduled', at: 1004.5, ctx: { tenant: 'acme' }, kind: 'timer' },
        ],
      ],
    ]);
    expect(measureSchedules(window, applied, events)).toEqual({
      retriesCancelled: 0,
      timersCancelled: 1,
      firedAfterAccepted: 2,
      firedAfterApplied: 1,
    });
  });
});

describe('KS-9.3.3 ledger consistency after recovery', () => {
  const sink = [
    eff({ key: 'a', at: 1 }),
    eff({ key: 'b', at: 2 }),
    eff({ key: 'c', at: 3 }),
    eff({ key: 'd', at: 4 }),
  ];
  it('passes landed and in-doubt effects the sink saw', () => {
    const g = checkLedger(sink, [
      { key: 'a', workerId: 'w1', statuses: ['intent', 'landed'] },
      { key: 'b', workerId: 'w1', statuses: ['intent', 'failed', 'intent', 'landed'] },
      { key: 'c', workerId: 'w1', statuses: ['intent'] },
      { key: 'd', workerId: 'w1', statuses: ['intent', 'aborted'] },
      { key: 'r', workerId: 'w1', statuses: ['refused'] },
      { key: 'x', workerId: 'w1', statuses: ['intent', 'aborted', 'cancelled'] },
    ]);
    expect(g).toMatchObject({
      missing: [],
      wrongOutcome: [],
      phantom: [],
      orphans: [],
      inDoubt: 2,
      sinkEffects: 4,
    });
  });

  it('reports a sink effect with no ledger entry, a phantom landing and an orphan intent', () => {
    const g = checkLedger(sink.slice(0, 2), [
      { key: 'a', workerId: 'w1', statuses: ['intent', 'failed'] },
      { key: 'ghost', workerId: 'w1', statuses: ['intent', 'landed'] },
      { key: 'orphan', workerId: 'w2', statuses: ['intent'] },
    ]);
    expect(g.missing).toEqual(['b']);
    expect(g.wrongOutcome).toEqual(['a (failed)']);
    expect(g.phantom).toEqual(['ghost']);
    expect(g.orphans).toEqual(['orphan']);
  });

  it('lists (but accepts) an aborted effect that the sink saw land', () => {
    const g = checkLedger(
      [eff({ key: 'k', at: 1 })],
      [{ key: 'k', workerId: 'w1', statuses: ['intent', 'aborted', 'cancelled'] }],
    );
    expect(g.wrongOutcome).toEqual([]);
    expect(g.abortedButLanded).toEqual(['k (intent > aborted > cancelled)']);
  });
});

describe('KS-9.3.4 any missed target is a violation; missing data fails', () => {
  const targets = parseScenario({
    name: 't',
    traffic: { tenants: ['a', 'b'], features: ['f', 'g'], capabilities: ['c', 'd'] },
    levers: [{ selector: {} }],
  }).targets;
  const lever = (over: { [K in keyof LeverResult]?: LeverResult[K] | undefined }): LeverResult =>
    ({
      label: 'tenant',
      level: 'tenant',
      selector: { tenant: 'a' },
      mode: 'discard',
      flipId: 'f',
      seq: 1,
      acceptedAt: 1000,
      completeAt: 1010,
      stops: [{ workerId: 'w1', appliedAt: 1005, timeToStopMs: 5 }],
      timeToStop: { p50: 5, p99: 5, max: 5 },
      errors: [],
      ...over,
    }) as LeverResult;
  const workers: WorkerSummary[] = [
    { workerId: 'w1', connected: true, everFresh: true, effectsAtSink: 3 },
  ];
  const codes = (levers: LeverResult[], w = workers) =>
    checkTargets({ levers, workers: w, mode: 'embedded' }, targets).map((v) => v.code);

  it('a clean lever passes', () => {
    expect(codes([lever({})])).toEqual([]);
  });

  it('names each miss by a stable code', () => {
    expect(codes([lever({ completeAt: undefined })])).toContain('stop-not-complete');
    expect(codes([lever({ acceptedAt: undefined })])).toEqual(['flip-not-accepted']);
    expect(codes([lever({ timeToStop: { p99: 51 } })])).toContain('time-to-stop');
    expect(codes([lever({ stops: [{ workerId: 'w2' }] })])).toContain('not-applied');
    expect(codes([lever({ resume: { ok: false, detail: 'release red' } })])).toContain(
      'resume-failed',
    );
    expect(
      codes([
        lever({
          queue: {
            t0: [],
            tN: [{ workerId: 'w1', at: 0, total: 2, matching: 2, held: 0 }],
            discarded: 0,
          },
        }),
      ]),
    ).toContain('queue-not-discarded');
    expect(
      codes(
        [lever({})],
        [{ workerId: 'w9', connected: false, everFresh: false, effectsAtSink: 1 }],
      ),
    ).toEqual(['worker-not-connected', 'effects-from-unfresh-worker']);
  });

  it('a worker that died during the drill fails it', () => {
    expect(
      codes(
        [lever({})],
        [
          {
            workerId: 'w1',
            connected: true,
            everFresh: true,
            effectsAtSink: 3,
            crashed: 'exited (code null, signal SIGKILL)',
          },
        ],
      ),
    ).toEqual(['worker-crashed']);
  });

  it('flags leaks and a stalled other cohort', () => {
    const effects = {
      matchingBefore: 5,
      matchingAfterAccepted: 3,
      matchingAfterApplied: 1,
      matchingAfterComplete: 1,
      matchingArrivedAfterComplete: 0,
      afterCompleteKeys: ['k'],
      leakedByWorker: { w1: 1 },
      otherRateBefore: 100,
      otherRateDuring: 10,
      otherRefused: 2,
      otherRefusedBy: { 'w1:stale': 2 },
      matchingRateAfterResume: 0,
    };
    expect(codes([lever({ effects, resume: { ok: true } })])).toEqual([
      'effect-after-complete',
      'effect-after-applied',
      'other-cohort-stale',
      'other-cohort-slowed',
      'not-resumed',
    ]);
    // KS-9.3.7 refusals by a worker whose lease ran out are timing (inconclusive on an overloaded
    // host); one refused by a halt that matched the wrong cohort is a violation at any load.
    const mixed = {
      ...effects,
      otherRefused: 3,
      otherRefusedBy: { 'w1:stale': 2, 'w2:halted#3': 1 },
    };
    expect(codes([lever({ effects: mixed, resume: { ok: true } })])).toContain(
      'other-cohort-refused',
    );
    expect(TIMING_VIOLATIONS.has('other-cohort-stale')).toBe(true);
    expect(TIMING_VIOLATIONS.has('other-cohort-refused')).toBe(false);
    expect(TIMING_VIOLATIONS.has('effect-after-complete')).toBe(false);
  });
});

describe('KS-9.3.6 a run-tree lever counts the tree from its spawners, whatever lineage a child received', () => {
  const spawn = (at: number, parentPath: string[], childId: string, to: string): WorkerEvent => ({
    t: 'spawn',
    at,
    parentPath,
    childId,
    to,
  });
  const events = new Map<string, WorkerEvent[]>([
    [
      'w1',
      [
        { t: 'applied', at: 1005, seq: 1 },
        spawn(500, ['T'], 'c0', 'w2'),
        spawn(510, ['T'], 'c1', 'w1'),
        spawn(520, ['other'], 'x0', 'w2'),
        // After w1 applied the halt: a late spawn.
        spawn(1006, ['T'], 'c2', 'w2'),
      ],
    ],
    [
      'w2',
      [
        { t: 'applied', at: 1002, seq: 1 },
        spawn(600, ['T', 'c0'], 'g0', 'w1'),
        { t: 'child-start', at: 700, ctx: { runId: 'c0', runPath: ['T', 'c0'] } },
        // Its lineage was lost on the way: it ran as a root.
        { t: 'child-start', at: 800, ctx: { runId: 'g0', runPath: ['g0'] } },
        // A queued child started after w2 applied the halt.
        { t: 'child-start', at: 1500, ctx: { runId: 'c2', runPath: ['T', 'c2'] } },
      ],
    ],
  ]);
  const w: HaltWindow = { ...window, selector: { runId: 'T' } };

  it('takes the closure over spawn records, root included, other trees excluded', () => {
    expect([...treeRunsOf('T', events)].sort()).toEqual(['T', 'c0', 'c1', 'c2', 'g0']);
    expect([...treeRunsOf('T', events, 1000)].sort()).toEqual(['T', 'c0', 'c1', 'g0']);
  });

  it('counts a descendant effect whose context lost the root as matching', () => {
    const runs = treeRunsOf('T', events);
    const lost = eff({ at: 1600, key: 'g0/s1', context: { runId: 'g0', runPath: ['g0'] } });
    const plain = measureEffects(w, [lost], new Map(), events);
    expect(plain.matchingAfterComplete).toBe(0);
    const tree = measureEffects({ ...w, alsoRuns: runs }, [lost], new Map(), events);
    expect(tree.matchingAfterComplete).toBe(1);
  });

  it('reports spawns and starts after the worker applied the halt, lost lineage, and the shape at the flip', () => {
    const runs = treeRunsOf('T', events);
    const applied = new Map([
      ['w1', 1005],
      ['w2', 1002],
    ]);
    const t = measureTree(
      { ...w, alsoRuns: runs },
      'T',
      runs,
      [
        { workerId: 'w1', running: 2, queued: 0, waiting: 1 },
        { workerId: 'w2', running: 1, queued: 3, waiting: 0 },
      ],
      applied,
      events,
    );
    expect(t).toMatchObject({
      root: 'T',
      spawnedBeforeFlip: 3,
      atFlip: { running: 3, queued: 3, waiting: 1, workers: 2 },
      dispatchedAfterApplied: 1,
      startedAfterApplied: 1,
      lineageLost: ['g0'],
      lineageLostCount: 1,
    });
    const targets = parseScenario({
      name: 'u',
      traffic: { tenants: ['a', 'b'], features: ['f', 'g'], capabilities: ['x', 'y'] },
      levers: [{ selector: {} }],
    }).targets;
    const lever: LeverResult = {
      label: 'run-tree',
      level: 'run',
      selector: { runId: 'T' },
      mode: 'discard',
      flipId: 'f',
      seq: 1,
      acceptedAt: 1000,
      completeAt: 1010,
      stops: [],
      timeToStop: {},
      errors: [],
      tree: t,
    };
    const workers: WorkerSummary[] = ['w1', 'w2', 'w3'].map((workerId) => ({
      workerId,
      connected: true,
      effectsAtSink: 1,
    }));
    const codes = checkTargets({ levers: [lever], workers, mode: 'embedded' }, targets).map(
      (v) => v.code,
    );
    expect(codes).toEqual(['tree-not-shaped', 'child-dispatched-after-halt', 'lineage-lost']);
    const shape = (ws: WorkerSummary[]) =>
      checkTargets({ levers: [lever], workers: ws, mode: 'embedded' }, targets).find(
        (v) => v.code === 'tree-not-shaped',
      )?.message;
    // KS-9.3.6 with KS-9.7: the tree spreads over the agent workers; the gateway member runs no
    // runs, so a tree on w1 and w2 beside a gateway is on every worker, one on w1 and w2 of three
    // agent workers is not.
    const gw: WorkerSummary = { workerId: 'gw1', gateway: true, connected: true, effectsAtSink: 0 };
    expect(shape([workers[0]!, workers[1]!, gw]) ?? '').not.toMatch(/descendants on/);
    expect(shape([...workers, gw])).toMatch(/descendants on 2 of 3 workers/);
    expect(shape([...workers, gw])).not.toMatch(/grandchildren/);

    // KS-9.3.6 at its full depth: when children spawn grandchildren, every agent worker holds one
    // (a drops-lineage spawner's escaped descendants are grandchildren, KS-9.4.5).
    const deep = (grandchildren: [number, number]) =>
      measureTree(
        { ...w, alsoRuns: runs },
        'T',
        runs,
        [
          { workerId: 'w1', running: 2, queued: 0, waiting: 1, grandchildren: grandchildren[0] },
          { workerId: 'w2', running: 1, queued: 3, waiting: 0, grandchildren: grandchildren[1] },
          { workerId: 'gw1', running: 0, queued: 0, waiting: 0, grandchildren: 0 },
        ],
        applied,
        events,
        true,
      );
    const two = [workers[0]!, workers[1]!, gw];
    const shapeOf = (tree: LeverTree) =>
      checkTargets({ levers: [{ ...lever, tree }], workers: two, mode: 'embedded' }, targets).find(
        (v) => v.code === 'tree-not-shaped',
      )?.message;
    expect(deep([1, 0]).atFlip.deepWorkers).toBe(1);
    expect(shapeOf(deep([1, 0]))).toMatch(/grandchildren on 1 of 2 workers/);
    expect(shapeOf(deep([1, 2])) ?? '').not.toMatch(/grandchildren/);
  });
});
