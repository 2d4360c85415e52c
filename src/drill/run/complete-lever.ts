import type { LeverResult, WorkerStop } from '../report/drill-report.js';
import { type SinkEffect } from '../servers/effect-sink.js';
import { type WorkerEvent } from '../internal/protocol.js';
import {
  measureCancelled,
  measureEffects,
  measureSchedules,
  measureTree,
  percentile,
  stopTimes,
  treeRunsOf,
  type HaltWindow,
} from '../measure/measure.js';
import { type Scenario } from '../scenario.js';
import { type RawLever } from './pull-lever.js';

/** The baseline window before a flip, ms: matching traffic must flow in it. */
export function baselineOf(s: Scenario): number {
  return Math.max(250, s.timings.warmupMs);
}

/** Folds the sink's effects and the workers' events into a lever. */
export function completeLever(
  raw: RawLever,
  s: Scenario,
  effects: readonly SinkEffect[],
  events: ReadonlyMap<string, readonly WorkerEvent[]> | undefined,
  ids: readonly string[],
): LeverResult {
  const { endAt, resumeFrom, resumeTo, fleetStops, treeAtFlip, ...lever } = raw;
  if (lever.acceptedAt === undefined || lever.seq === undefined || endAt === undefined)
    return lever;
  const acks = new Map((fleetStops ?? []).map((x) => [x.workerId, x.timeToStopMs]));
  const stops: WorkerStop[] = events
    ? stopTimes(ids, events, lever.seq, lever.acceptedAt).map((x) => {
        const ack = acks.get(x.workerId);
        return ack === undefined ? x : { ...x, ackMs: ack };
      })
    : [...(fleetStops ?? [])].map((x) =>
        x.timeToStopMs === undefined ? x : { ...x, ackMs: x.timeToStopMs },
      );
  const ackTimes = stops.flatMap((x) => (x.ackMs === undefined ? [] : [x.ackMs]));
  const ttl = stops.flatMap((x) => (x.timeToStopMs === undefined ? [] : [x.timeToStopMs]));
  // KS-9.3.6 a run-tree lever: the tree's runs as their spawners recorded them also match, so a
  // descendant whose lineage was lost is still counted against the halt.
  const root = s.traffic.tree?.rootRunId;
  const treeRuns =
    treeAtFlip !== undefined && root !== undefined && events !== undefined
      ? treeRunsOf(root, events, endAt)
      : undefined;
  const window: HaltWindow = {
    ...(treeRuns ? { alsoRuns: treeRuns } : {}),
    selector: lever.selector,
    acceptedAt: lever.acceptedAt,
    completeAt: lever.completeAt,
    endAt,
    baselineMs: baselineOf(s),
    ...(resumeFrom !== undefined && resumeTo !== undefined && resumeTo > resumeFrom
      ? { resume: { from: resumeFrom, to: resumeTo } }
      : {}),
  };
  const applied = new Map<string, number>();
  for (const x of stops)
    if (x.appliedAt !== undefined && !x.fromAck) applied.set(x.workerId, x.appliedAt);
  const ev = events ?? new Map<string, readonly WorkerEvent[]>();
  let discarded = 0;
  for (const list of ev.values()) {
    for (const e of list)
      if (e.t === 'discard' && e.at >= lever.acceptedAt && e.at < endAt) discarded += e.count;
  }
  // The first event-loop figure each worker took after the lever ended covers the lever.
  let loopP99: number | undefined;
  let loopMax: number | undefined;
  let loopSince: number | undefined;
  for (const list of ev.values()) {
    const l = list.find((e) => e.t === 'loop' && e.at >= endAt);
    if (l?.t === 'loop') {
      loopP99 = Math.max(loopP99 ?? 0, l.p99);
      loopMax = Math.max(loopMax ?? 0, l.max);
      if (l.since !== undefined) loopSince = Math.min(loopSince ?? l.since, l.since);
    }
  }
  return {
    ...lever,
    stops,
    ...(loopP99 !== undefined && loopMax !== undefined
      ? {
          workerLoopDelay: {
            p99: loopP99,
            max: loopMax,
            ...(loopSince !== undefined ? { since: loopSince } : {}),
          },
        }
      : {}),
    timeToAck: {
      p50: percentile(ackTimes, 50),
      p99: percentile(ackTimes, 99),
      max: percentile(ackTimes, 100),
    } as LeverResult['timeToStop'],
    timeToStop: {
      p50: percentile(ttl, 50),
      p99: percentile(ttl, 99),
      max: percentile(ttl, 100),
    } as LeverResult['timeToStop'],
    ...(events || effects.length > 0
      ? { effects: measureEffects(window, effects, applied, ev) }
      : {}),
    ...(events
      ? {
          inFlightCancelled: measureCancelled(window, ev),
          schedules: measureSchedules(window, applied, ev),
        }
      : {}),
    ...(lever.queue ? { queue: { ...lever.queue, discarded } } : {}),
    ...(treeRuns && treeAtFlip && root !== undefined
      ? {
          tree: measureTree(
            window,
            root,
            treeRuns,
            treeAtFlip,
            applied,
            ev,
            (s.traffic.tree?.grandchildEvery ?? 0) > 0,
          ),
        }
      : {}),
  };
}
