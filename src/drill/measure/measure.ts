import { selectorMatches, type KillContext, type Selector } from '../../model/selector.js';
import type {
  LedgerCheck,
  LeverEffects,
  LeverSchedules,
  LeverTree,
  WorkerStop,
} from '../report/drill-report.js';
import type { SinkEffect } from '../servers/effect-sink.js';
import type { WorkerEvent } from '../internal/protocol.js';

/**
 * Pure measurements over what the sink, the workers and the ledgers recorded. Everything here is
 * a function of recorded data, so the numbers a drill reports can be recomputed from its JSON
 * and unit-tested without processes. KS-9.3.2
 */

/** Nearest-rank percentile (p in 0..100) of a list; undefined for an empty list. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** The time a worker applied seq `seq` or later, from its events. */
export function appliedAtOf(events: readonly WorkerEvent[], seq: number): number | undefined {
  let best: number | undefined;
  for (const e of events) {
    if (e.t === 'applied' && e.seq >= seq && (best === undefined || e.at < best)) best = e.at;
  }
  return best;
}

/** Time-to-stop per worker: applied - accepted (ms). KS-9.3.2 */
export function stopTimes(
  workerIds: readonly string[],
  events: ReadonlyMap<string, readonly WorkerEvent[]>,
  seq: number,
  acceptedAt: number,
): WorkerStop[] {
  return workerIds.map((workerId) => {
    const appliedAt = appliedAtOf(events.get(workerId) ?? [], seq);
    return appliedAt === undefined
      ? { workerId }
      : { workerId, appliedAt, timeToStopMs: round(appliedAt - acceptedAt) };
  });
}

/** Where a lever's halt was active, on the drill clock. */
export interface HaltWindow {
  readonly selector: Selector;
  readonly acceptedAt: number;
  /** Stop-complete from the control plane; undefined when it never completed within the wait. */
  readonly completeAt: number | undefined;
  /** When the resume was sent (or the observation ended). */
  readonly endAt: number;
  /** Length of the baseline window before the flip, ms. */
  readonly baselineMs: number;
  /** Window after the resume for the "it flows again" rate, if there was a resume. */
  readonly resume?: { readonly from: number; readonly to: number };
  /**
   * Runs the halt covers whatever their context says: the descendants of a halted tree root as
   * their spawners recorded them, so a child whose lineage was lost still counts as matching.
   */
  readonly alsoRuns?: ReadonlySet<string>;
}

/** Whether a context falls under a halt window: its selector matches, or it is one of its runs. */
export function windowMatches(w: HaltWindow, ctx: KillContext): boolean {
  return (
    selectorMatches(w.selector, ctx) ||
    (ctx.runId !== undefined && w.alsoRuns?.has(ctx.runId) === true)
  );
}

/** When an effect left its worker: its dispatch stamp, else its arrival. */
export function dispatchedAt(e: SinkEffect): number {
  return e.sentAt ?? e.at;
}

/**
 * Counts effects against a halt window: matching ones after the flip was accepted, after their
 * worker applied it, after the stop was complete; and the other cohorts' rate before and during.
 * KS-9.3.2
 */
export function measureEffects(
  w: HaltWindow,
  effects: readonly SinkEffect[],
  appliedAt: ReadonlyMap<string, number>,
  events: ReadonlyMap<string, readonly WorkerEvent[]>,
): LeverEffects {
  let matchingBefore = 0;
  let matchingAfterAccepted = 0;
  let matchingAfterApplied = 0;
  let matchingAfterComplete = 0;
  let matchingArrivedAfterComplete = 0;
  const afterCompleteKeys: string[] = [];
  const leakedByWorker: Record<string, number> = {};
  let otherBefore = 0;
  let otherDuring = 0;
  let matchingAfterResume = 0;
  const duringFrom = w.completeAt ?? w.acceptedAt;
  for (const e of effects) {
    const t = dispatchedAt(e);
    const matching = windowMatches(w, e.context);
    if (matching) {
      if (t >= w.acceptedAt - w.baselineMs && t < w.acceptedAt) matchingBefore++;
      if (w.resume && t >= w.resume.from && t < w.resume.to) matchingAfterResume++;
      if (t < w.acceptedAt || t >= w.endAt) continue;
      matchingAfterAccepted++;
      const applied = appliedAt.get(e.workerId);
      const leaked =
        (applied !== undefined && t > applied) || (w.completeAt !== undefined && t > w.completeAt);
      if (applied !== undefined && t > applied) matchingAfterApplied++;
      if (leaked) leakedByWorker[e.workerId] = (leakedByWorker[e.workerId] ?? 0) + 1;
      if (w.completeAt === undefined || t > w.completeAt) {
        matchingAfterComplete++;
        if (afterCompleteKeys.length < 20) afterCompleteKeys.push(e.key);
      } else if (e.at > w.completeAt) {
        matchingArrivedAfterComplete++;
      }
    } else {
      if (t >= w.acceptedAt - w.baselineMs && t < w.acceptedAt) otherBefore++;
      if (t >= duringFrom && t < w.endAt) otherDuring++;
    }
  }
  let otherRefused = 0;
  const otherRefusedBy: Record<string, number> = {};
  for (const [workerId, list] of events) {
    for (const e of list) {
      if (e.t === 'refused' && e.at >= w.acceptedAt && e.at < w.endAt && !windowMatches(w, e.ctx)) {
        otherRefused++;
        // Which worker and why (`halted` by a flip, `stale` lease, `error`): a stale worker is
        // failing closed (a starved or cut-off worker), a `halted` one matched the wrong halt.
        const k = `${workerId}:${e.cause}${e.flipSeq !== undefined ? `#${e.flipSeq}` : ''}`;
        otherRefusedBy[k] = (otherRefusedBy[k] ?? 0) + 1;
      }
    }
  }
  const rate = (n: number, ms: number) => (ms > 0 ? round((n * 1000) / ms) : 0);
  return {
    matchingBefore,
    matchingAfterAccepted,
    matchingAfterApplied,
    matchingAfterComplete,
    matchingArrivedAfterComplete,
    afterCompleteKeys,
    leakedByWorker,
    otherRateBefore: rate(otherBefore, w.baselineMs),
    otherRateDuring: rate(otherDuring, w.endAt - duringFrom),
    otherRefused,
    otherRefusedBy,
    ...(w.resume
      ? { matchingRateAfterResume: rate(matchingAfterResume, w.resume.to - w.resume.from) }
      : {}),
  };
}

/** Retries and timers against a halt window. KS-9.3.2 */
export function measureSchedules(
  w: HaltWindow,
  appliedAt: ReadonlyMap<string, number>,
  events: ReadonlyMap<string, readonly WorkerEvent[]>,
): LeverSchedules {
  let retriesCancelled = 0;
  let timersCancelled = 0;
  let firedAfterAccepted = 0;
  let firedAfterApplied = 0;
  for (const [workerId, list] of events) {
    // A worker that never applied the flip is failed closed by its lease from stop-complete on.
    const applied = appliedAt.get(workerId) ?? w.completeAt;
    for (const e of list) {
      if (e.at < w.acceptedAt || e.at >= w.endAt) continue;
      if (!('ctx' in e) || !windowMatches(w, e.ctx)) continue;
      if (e.t === 'unscheduled') {
        if (e.kind === 'retry') retriesCancelled++;
        else timersCancelled++;
      } else if (e.t === 'fire') {
        firedAfterAccepted++;
        if (applied === undefined || e.at > applied) firedAfterApplied++;
      }
    }
  }
  return { retriesCancelled, timersCancelled, firedAfterAccepted, firedAfterApplied };
}

/** In-flight LLM and tool calls cancelled by a halt window. */
export function measureCancelled(
  w: HaltWindow,
  events: ReadonlyMap<string, readonly WorkerEvent[]>,
): { llm: number; tool: number } {
  let llm = 0;
  let tool = 0;
  for (const list of events.values()) {
    for (const e of list) {
      if (e.t !== 'cancel' || e.at < w.acceptedAt || e.at >= w.endAt) continue;
      if (!windowMatches(w, e.ctx)) continue;
      if (e.kind === 'llm') llm++;
      else tool++;
    }
  }
  return { llm, tool };
}

/**
 * The runs of a tree rooted at `root` as their spawners recorded them (`spawn` events, up to
 * `until`): the ground truth of who descends from whom, independent of the lineage each child
 * received. The root is included. KS-9.3.6
 */
export function treeRunsOf(
  root: string,
  events: ReadonlyMap<string, readonly WorkerEvent[]>,
  until = Number.POSITIVE_INFINITY,
): Set<string> {
  const edges: { parent: string; child: string }[] = [];
  for (const list of events.values()) {
    for (const e of list) {
      if (e.t === 'spawn' && e.at < until) {
        const parent = e.parentPath[e.parentPath.length - 1];
        if (parent !== undefined) edges.push({ parent, child: e.childId });
      }
    }
  }
  const runs = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const x of edges) {
      if (runs.has(x.parent) && !runs.has(x.child)) {
        runs.add(x.child);
        grew = true;
      }
    }
  }
  return runs;
}

/**
 * A run-tree lever (KS-9.3.6): the tree's descendants at the flip (from the workers' snapshot
 * taken right before it), spawns and child starts after the spawning or starting worker applied the
 * halt (or after stop-complete when it never did), and descendants whose context did not carry the
 * root (their lineage was lost on the way).
 */
export function measureTree(
  w: HaltWindow,
  root: string,
  runs: ReadonlySet<string>,
  atFlip: readonly {
    workerId: string;
    running: number;
    queued: number;
    waiting: number;
    grandchildren?: number;
  }[],
  appliedAt: ReadonlyMap<string, number>,
  events: ReadonlyMap<string, readonly WorkerEvent[]>,
  deep = false,
): LeverTree {
  let dispatchedAfterApplied = 0;
  let startedAfterApplied = 0;
  const late: string[] = [];
  const lost = new Set<string>();
  let descendantsBefore = 0;
  for (const [workerId, list] of events) {
    const applied = appliedAt.get(workerId) ?? w.completeAt;
    for (const e of list) {
      if (e.t === 'spawn' && runs.has(e.childId) && e.at < w.acceptedAt) descendantsBefore++;
      if (e.t === 'child-start' && e.ctx.runId !== undefined && runs.has(e.ctx.runId)) {
        if (!(e.ctx.runPath ?? [e.ctx.runId]).includes(root)) lost.add(e.ctx.runId);
      }
      if (e.at < w.acceptedAt || e.at >= w.endAt) continue;
      const after = applied === undefined || e.at > applied;
      if (!after) continue;
      if (e.t === 'spawn' && runs.has(e.childId)) {
        dispatchedAfterApplied++;
        if (late.length < 10) late.push(`${workerId} spawned ${e.childId}`);
      } else if (e.t === 'child-start' && e.ctx.runId !== undefined && runs.has(e.ctx.runId)) {
        startedAfterApplied++;
        if (late.length < 10) late.push(`${workerId} started ${e.ctx.runId}`);
      }
    }
  }
  const sum = (k: 'running' | 'queued' | 'waiting') => atFlip.reduce((a, x) => a + x[k], 0);
  return {
    root,
    spawnedBeforeFlip: descendantsBefore,
    atFlip: {
      running: sum('running'),
      queued: sum('queued'),
      waiting: sum('waiting'),
      workers: atFlip.filter((x) => x.running + x.queued > 0).length,
      ...(deep ? { deepWorkers: atFlip.filter((x) => (x.grandchildren ?? 0) > 0).length } : {}),
      byWorker: atFlip.map((x) => ({
        workerId: x.workerId,
        running: x.running,
        queued: x.queued,
        waiting: x.waiting,
      })),
    },
    dispatchedAfterApplied,
    startedAfterApplied,
    lateDispatches: late,
    lineageLost: [...lost].slice(0, 20),
    lineageLostCount: lost.size,
  };
}

/** A ledger entry as the drill reads it: the key, its statuses in order, and its worker. */
export interface LedgerView {
  readonly key: string;
  readonly workerId: string;
  /** Every status the key went through, oldest first; the last one is its current status. */
  readonly statuses: readonly string[];
  readonly context?: KillContext;
}

const LANDED = new Set(['landed', 'landed-after-halt']);
/** Outcome unknown: dispatched (or about to be) and never confirmed either way. */
const IN_DOUBT = new Set(['intent', 'aborted', 'in-doubt']);

/**
 * Ledger consistency after recovery (KS-9.3.3): every effect the sink received has a ledger
 * entry with the same key and a landed outcome or an in-doubt mark; no entry claims a landing
 * the sink never saw; no intent-only orphan rows (an intent the sink never saw and no outcome).
 */
export function checkLedger(
  sink: readonly SinkEffect[],
  entries: readonly LedgerView[],
  unreadable: readonly string[] = [],
): LedgerCheck {
  const byKey = new Map<string, LedgerView>();
  for (const e of entries) {
    const prev = byKey.get(e.key);
    // The same key in two workers' ledgers (a run resumed elsewhere): merge the histories.
    byKey.set(e.key, prev ? { ...prev, statuses: [...prev.statuses, ...e.statuses] } : e);
  }
  const seen = new Set(sink.map((e) => e.key));
  const missing: string[] = [];
  const wrongOutcome: string[] = [];
  const abortedButLanded: string[] = [];
  let inDoubt = 0;
  for (const key of seen) {
    const entry = byKey.get(key);
    if (entry === undefined) {
      missing.push(key);
      continue;
    }
    const last = entry.statuses[entry.statuses.length - 1] ?? '';
    if (entry.statuses.some((s) => LANDED.has(s))) continue;
    if (IN_DOUBT.has(last)) {
      inDoubt++;
      continue;
    }
    if (entry.statuses.includes('aborted')) {
      // Aborted while its request was already on the wire: the ledger carries the in-doubt mark
      // (`aborted`), but a later `cancelled` claims it did not land. Listed, not a violation.
      abortedButLanded.push(`${key} (${entry.statuses.join(' > ')})`);
      continue;
    }
    wrongOutcome.push(`${key} (${last})`);
  }
  const phantom: string[] = [];
  const orphans: string[] = [];
  const landedAfterHalt: string[] = [];
  for (const entry of byKey.values()) {
    const last = entry.statuses[entry.statuses.length - 1] ?? '';
    if (entry.statuses.includes('landed-after-halt')) landedAfterHalt.push(entry.key);
    if (seen.has(entry.key)) continue;
    if (entry.statuses.some((s) => LANDED.has(s))) phantom.push(entry.key);
    else if (last === 'intent') orphans.push(entry.key);
  }
  return {
    entries: byKey.size,
    sinkEffects: seen.size,
    missing,
    wrongOutcome,
    phantom,
    orphans,
    inDoubt,
    abortedButLanded,
    landedAfterHalt,
    unreadable,
  };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
