import { ControlPlaneError, type ControlPlaneClient } from '../../client/control-plane-client.js';
import { formatSelector, type Selector } from '../../model/selector.js';
import type { FlipAnswer } from '../../protocol/answers.js';
import type { LeverResult, WorkerStop } from '../report/drill-report.js';
import { systemClock } from '../../internal/clock.js';
import type { QueueDepth, TreeAtFlip } from '../internal/protocol.js';
import { leverTarget, type Lever, type Scenario } from '../scenario.js';
import { sleep } from '../internal/sleep.js';
import { round } from '../internal/round.js';

/** What {@link pullLever} needs: the client it flips through, the lever and where it stands. */
export interface PullContext {
  readonly client: ControlPlaneClient;
  readonly lever: Lever;
  readonly index: number;
  readonly total: number;
  readonly runTag: string;
  readonly scenario: Scenario;
  readonly log: (l: string) => void;
  readonly queueDepth?: (selector: Selector) => Promise<(QueueDepth & { workerId: string })[]>;
  /** Fleet mode: skip the warm-up wait after the resume (nothing of ours to recover). */
  readonly fleetMode?: boolean;
  /** A run-tree lever: the workers' tree runs, read right before the flip. KS-9.3.6 */
  readonly treeShape?: () => Promise<(TreeAtFlip & { workerId: string })[]>;
}

/** A lever's raw measurements before the sink and worker data are folded in. */
export interface RawLever extends LeverResult {
  readonly endAt?: number;
  readonly resumeFrom?: number;
  readonly resumeTo?: number;
  readonly fleetStops?: readonly WorkerStop[];
  readonly treeAtFlip?: readonly (TreeAtFlip & { workerId: string })[];
}

/** Pulls one lever: halt with wait, queue depth at T+0 and T+N, resume, recovery window. */
export async function pullLever(p: PullContext): Promise<RawLever> {
  const { selector, level, label } = leverTarget(p.lever);
  const s = p.scenario;
  const mode = p.lever.mode ?? s.queueMode;
  const flipId = `drill-${p.runTag}-${p.index + 1}-${label}`;
  const errors: string[] = [];
  const head = `[${p.index + 1}/${p.total}] ${label} ${formatSelector(selector)}`;
  const treeAtFlip = p.treeShape ? await p.treeShape() : undefined;
  if (treeAtFlip) {
    const sum = (k: 'running' | 'queued' | 'waiting') => treeAtFlip.reduce((a, x) => a + x[k], 0);
    p.log(
      `${head}: the tree has ${sum('running')} running (${sum('waiting')} waiting on a timer or retry) and ${sum('queued')} queued descendants on ${treeAtFlip.filter((x) => x.running + x.queued > 0).length} worker(s)`,
    );
  }
  p.log(`${head}: halting (mode ${mode})`);
  let answer: FlipAnswer;
  try {
    answer = await p.client.flip({
      action: 'halt',
      selector,
      reason: `drill ${s.name}: ${label} lever`,
      mode,
      id: `${flipId}-halt`,
      source: 'drill',
      wait: s.timings.waitMs,
    });
  } catch (err) {
    const msg = `halt failed: ${(err as Error).message}`;
    p.log(`! ${head}: ${msg}`);
    return {
      label,
      level,
      selector,
      mode,
      flipId,
      stops: [],
      timeToStop: {},
      errors: [msg],
      ...(treeAtFlip ? { treeAtFlip } : {}),
    };
  }
  const fleet = answer.fleet;
  // The answer's times are ISO 8601 (KS-5.1.15); the drill computes in epoch ms. Accepted is when
  // the control plane took the flip into its log (the record's time, stamped when it was chained):
  // a halt may reach the workers while its write is in flight (KS-2.4.9), before the fleet's
  // `appendedAt`, which follows durability. Whichever is earlier (a control plane whose records
  // are stamped on another clock than its fleet's).
  const recordAt = Date.parse(answer.flip.at);
  const appendedAt = fleet?.appendedAt === undefined ? NaN : Date.parse(fleet.appendedAt);
  const acceptedAt = Number.isNaN(appendedAt) ? recordAt : Math.min(recordAt, appendedAt);
  const completeAt =
    fleet?.completeAt === undefined || fleet.completeAt === null
      ? undefined
      : Date.parse(fleet.completeAt);
  const t0 = p.queueDepth ? await p.queueDepth(selector) : undefined;
  p.log(
    `${head}: seq ${answer.flip.seq} accepted; ${
      completeAt !== undefined
        ? `stop complete after ${(completeAt - acceptedAt).toFixed(2)} ms (${fleet?.applied ?? 0} acknowledged)`
        : `stop NOT complete within ${s.timings.waitMs} ms`
    }`,
  );
  await sleep(s.timings.observeMs);
  const tN = p.queueDepth ? await p.queueDepth(selector) : undefined;
  const endAt = systemClock.now();
  let resume: LeverResult['resume'];
  let resumeFrom: number | undefined;
  if (p.lever.resume !== false) {
    const release = p.lever.resume.release;
    try {
      // A gated resume names a release; mark it green first (KS-9.1.3). A control plane without
      // the release gate has no such route, and then the resume is not gated.
      if (release !== undefined) await markGreen(p.client, release, s.name);
      const r = await p.client.flip({
        action: 'resume',
        selector,
        reason: `drill ${s.name}: ${label} lever resumed`,
        id: `${flipId}-resume`,
        source: 'drill',
        wait: s.timings.waitMs,
        ...(release !== undefined ? { release } : {}),
      });
      resume = { seq: r.flip.seq, ...(release !== undefined ? { release } : {}), ok: true };
      const resumedAt = r.fleet?.completeAt ?? r.fleet?.appendedAt;
      resumeFrom = resumedAt === undefined ? systemClock.now() : Date.parse(resumedAt);
      p.log(`${head}: resumed (seq ${r.flip.seq})`);
    } catch (err) {
      resume = {
        ...(release !== undefined ? { release } : {}),
        ok: false,
        detail: (err as Error).message,
      };
      p.log(`! ${head}: resume failed: ${(err as Error).message}`);
    }
  }
  // Recovery window: traffic flows again, and the next lever's baseline is taken in it.
  if (!p.fleetMode || p.index < p.total - 1) await sleep(s.timings.warmupMs);
  const resumeTo = systemClock.now();
  const fleetStops: WorkerStop[] = (fleet?.acknowledged ?? []).map((a) => ({
    workerId: a.workerId,
    appliedAt: Date.parse(a.at),
    timeToStopMs: a.latencyMs,
    fromAck: true,
  }));
  for (const l of fleet?.laggards ?? []) fleetStops.push({ workerId: l.workerId });
  return {
    label,
    level,
    selector,
    mode,
    flipId,
    seq: answer.flip.seq,
    acceptedAt,
    ...(completeAt !== undefined
      ? { completeAt, stopCompleteMs: round(completeAt - acceptedAt) }
      : {}),
    answer: {
      applied: fleet?.applied ?? null,
      laggards: fleet?.laggards.map((l) => l.workerId) ?? [],
      alreadyStale: fleet?.alreadyStale.map((w) => w.workerId) ?? [],
      complete: fleet?.complete ?? false,
      completeAfterMs: fleet?.completeAfterMs ?? null,
    },
    stops: [],
    timeToStop: {},
    ...(t0 && tN ? { queue: { t0, tN, discarded: 0 } } : {}),
    ...(resume ? { resume } : {}),
    errors,
    endAt,
    ...(resumeFrom !== undefined ? { resumeFrom, resumeTo } : {}),
    fleetStops,
    ...(treeAtFlip ? { treeAtFlip } : {}),
  };
}

/**
 * Marks a release green (`POST /v1/releases`) so a gated resume on it may pass. A 404 or 405 means
 * the control plane has no release gate: nothing to do. Any other refusal throws (the resume
 * then fails and the lever reports it).
 */
async function markGreen(
  client: ControlPlaneClient,
  release: string,
  scenario: string,
): Promise<void> {
  try {
    await client.markRelease({
      release,
      status: 'green',
      reason: `drill ${scenario}: resume gate`,
    });
  } catch (err) {
    if (err instanceof ControlPlaneError && (err.status === 404 || err.status === 405)) return;
    throw new Error(`marking release ${release} green failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
