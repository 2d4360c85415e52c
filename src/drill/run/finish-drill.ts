import { availableParallelism, loadavg } from 'node:os';
import { formatSelector } from '../../model/selector.js';
import { checkTargets } from '../measure/check-targets.js';
import { TIMING_VIOLATIONS } from '../measure/host-load.js';
import type {
  DrillReport,
  LedgerCheck,
  LeverResult,
  WorkerSummary,
} from '../report/drill-report.js';
import { writeDrillReport, type WrittenReport } from '../report/report-writer.js';
import { type Scenario } from '../scenario.js';
import type { DrillOutcome, RunDrillOptions } from './run-drill-options.js';
import { round } from '../internal/round.js';

/**
 * Checks the targets, builds the report, prints one line per lever and the violations, and
 * writes the report files when asked.
 */
export async function finishDrill(
  data: {
    scenario: Scenario;
    mode: 'embedded' | 'fleet';
    controlPlane: string;
    startedAt: string;
    workers: WorkerSummary[];
    levers: LeverResult[];
    ledger?: LedgerCheck;
    llm?: DrillReport['llm'];
    loadStart: number;
  },
  options: RunDrillOptions,
  log: (l: string) => void,
): Promise<DrillOutcome> {
  const host = options.hostLoad?.read();
  const checked = checkTargets(
    {
      levers: data.levers,
      workers: data.workers,
      mode: data.mode,
      ...(data.ledger ? { ledger: data.ledger } : {}),
    },
    data.scenario.targets,
  );
  // KS-9.3.7 on an overloaded host a missed timing target is inconclusive, not a violation; an
  // effect after stop-complete, or anything else, stays a violation whatever the load.
  const timingOnHost = (code: string) => host?.overloaded === true && TIMING_VIOLATIONS.has(code);
  const violations = checked.filter((v) => !timingOnHost(v.code));
  const inconclusive = checked.filter((v) => timingOnHost(v.code));
  const verdict =
    violations.length > 0 ? 'failed' : inconclusive.length > 0 ? 'inconclusive' : 'passed';
  const report: DrillReport = {
    scenario: data.scenario.name,
    mode: data.mode,
    controlPlane: data.controlPlane,
    startedAt: data.startedAt,
    finishedAt: new Date().toISOString(),
    workers: data.workers,
    levers: data.levers,
    ...(data.ledger ? { ledger: data.ledger } : {}),
    ...(data.llm ? { llm: data.llm } : {}),
    targets: { ...data.scenario.targets },
    environment: {
      node: process.version,
      cpus: availableParallelism(),
      loadStart: data.loadStart,
      loadEnd: round(loadavg()[0] ?? 0),
    },
    violations,
    ...(inconclusive.length > 0 ? { inconclusive } : {}),
    ...(host ? { host } : {}),
    verdict,
    passed: verdict === 'passed',
  };
  for (const l of report.levers) {
    log(
      `${l.label} ${formatSelector(l.selector)}: time-to-stop p50 ${fmt(l.timeToStop.p50)} p99 ${fmt(l.timeToStop.p99)} max ${fmt(l.timeToStop.max)} ms; stop complete ${fmt(l.stopCompleteMs)} ms; matching effects after accepted ${l.effects?.matchingAfterAccepted ?? 'n/a'}, after complete ${l.effects?.matchingAfterComplete ?? 'n/a'}; other cohorts ${l.effects?.otherRateBefore ?? 'n/a'}/s -> ${l.effects?.otherRateDuring ?? 'n/a'}/s`,
    );
    const t = l.tree;
    if (t !== undefined) {
      log(
        `${l.label} tree ${t.root}: ${t.atFlip.running} running (${t.atFlip.waiting} waiting) and ${t.atFlip.queued} queued descendants on ${t.atFlip.workers} worker(s) at the flip; spawned after the halt ${t.dispatchedAfterApplied}, started after it ${t.startedAfterApplied}; lineage lost ${t.lineageLostCount}`,
      );
    }
  }
  let written: WrittenReport | undefined;
  if (options.outDir !== undefined) {
    written = await writeDrillReport(report, options.outDir);
    log(`report: ${written.json}, ${written.markdown}, ${written.svg}`);
  }
  for (const v of violations) log(`VIOLATION ${v.code}: ${v.message}`);
  for (const v of inconclusive) log(`INCONCLUSIVE ${v.code}: ${v.message}`);
  if (host?.overloaded) log(`host overloaded: ${host.why}`);
  log(
    verdict === 'passed'
      ? `drill ${report.scenario} PASSED`
      : verdict === 'failed'
        ? `drill ${report.scenario} FAILED (${violations.length} violation(s))`
        : `drill ${report.scenario} INCONCLUSIVE: host overloaded (${host?.why}); every other target was met, ${inconclusive.length} timing target(s) could not be judged`,
  );
  const exitCode = verdict === 'passed' ? 0 : verdict === 'failed' ? 1 : 4;
  return { report, ...(written ? { written } : {}), exitCode };
}

/** A figure for a progress line. */
function fmt(n: number | undefined): string {
  return n === undefined ? 'n/a' : n.toFixed(2);
}
