import { EffectStatus, type Compensation, type LedgerEntry } from '../ledger/side-effect-ledger.js';
import type { RunState, RunStatus } from '../run/run-record.js';

/** Which ledger entries a report covers; every given field must match. KS-10.4.3 */
export interface ReportFilter {
  /** One run and its whole tree: every run whose run path contains it (KS-10.4.6). */
  readonly runId?: string;
  /** Effects whose kill context names this tenant. */
  readonly tenant?: string;
  /** Effects of this capability. */
  readonly capability?: string;
  /**
   * Since a flip: entries refused or aborted by this flip or a later one (`flipSeq >= sinceSeq`),
   * or with any event at or after {@link ReportFilter.since}.
   */
  readonly sinceSeq?: number;
  /** With `sinceSeq`: the time that flip was appended (an entry with an event at or after it matches). Alone: just that. */
  readonly since?: Date | string;
}

/** How many effects (ledger keys) are in each state. KS-10.4.1 */
export interface EffectCounts {
  /** Keys with at least one `intent`: the guard let them go (or was about to). */
  readonly intended: number;
  /** Keys that landed (including the ones that landed after a halt aborted them). */
  readonly landed: number;
  /** Keys whose aborted body landed anyway. */
  readonly landedAfterHalt: number;
  /** Keys with an intent or an abort and no outcome after: they may or may not have landed. */
  readonly inDoubt: number;
  /** Keys whose last status is `failed`. */
  readonly failed: number;
  /** Keys whose last status is `refused`: stopped before dispatch, nothing left. */
  readonly refused: number;
  /** Keys a halt aborted while they ran (whatever happened after). */
  readonly aborted: number;
  /** Keys whose last status is `cancelled`. */
  readonly cancelled: number;
}

/** One effect, as the report lists it. */
export interface ReportedEffect {
  readonly key: string;
  readonly runId?: string;
  readonly step?: string;
  readonly capability?: string;
  readonly tenant?: string;
  readonly status: EffectStatus;
  readonly attempts: number;
  /** The flip that refused or aborted it, when one did. */
  readonly flipSeq?: number;
  /** Time of its last event. */
  readonly at: string;
  readonly detail?: string;
}

/** One run: what it intended and what landed. */
export interface RunReport {
  /** The run's id (`(none)` for effects recorded without one). */
  readonly runId: string;
  /** Its ancestry, root first, ending with `runId` (absent for a run recorded without one). */
  readonly runPath?: readonly string[];
  readonly counts: EffectCounts;
  readonly effects: readonly ReportedEffect[];
  /** Where the run stands, from the run journal when one was given. KS-10.4.5 */
  readonly journal?: {
    readonly status: RunStatus;
    readonly executions: number;
    readonly workers: readonly string[];
    readonly landedSteps: number;
    readonly detail?: string;
  };
}

/** One compensating action to consider, from what an effect declared with its intent. KS-10.4.2 */
export interface CompensationItem {
  readonly key: string;
  readonly runId?: string;
  readonly step?: string;
  readonly capability?: string;
  readonly action: string;
  readonly args?: unknown;
  /** `landed`, `landed-after-halt`, or `in-doubt` (check whether it landed before undoing it). */
  readonly state: 'landed' | 'landed-after-halt' | 'in-doubt';
  /** When it landed (or, in doubt, when its last event was written). */
  readonly at: string;
}

/** The recovery report: intended vs landed per run, in doubt, landed after halt, compensations. */
export interface RecoveryReport {
  readonly filter: ReportFilter;
  readonly totals: EffectCounts;
  readonly runs: readonly RunReport[];
  readonly inDoubt: readonly ReportedEffect[];
  readonly landedAfterHalt: readonly ReportedEffect[];
  /** Newest first: undo in the reverse order of landing. */
  readonly compensations: readonly CompensationItem[];
}

const NO_RUN = '(none)';

/** True when the run is `root` or one of its descendants (its path contains `root`). */
function inTree(
  runId: string | undefined,
  runPath: readonly string[] | undefined,
  root: string,
): boolean {
  return runId === root || (Array.isArray(runPath) && runPath.includes(root));
}

/** True when an entry is in the report's scope. Pure. KS-10.4.3 */
export function entryMatches(e: LedgerEntry, f: ReportFilter): boolean {
  if (f.runId !== undefined && !inTree(e.runId, e.context.runPath, f.runId)) return false;
  if (f.tenant !== undefined && e.context.tenant !== f.tenant) return false;
  if (f.capability !== undefined && e.capability !== f.capability) return false;
  if (f.sinceSeq !== undefined || f.since !== undefined) {
    const since =
      f.since === undefined
        ? undefined
        : typeof f.since === 'string'
          ? Date.parse(f.since)
          : f.since.getTime();
    const bySeq =
      f.sinceSeq !== undefined &&
      e.history.some((h) => h.flipSeq !== undefined && h.flipSeq >= f.sinceSeq!);
    const byTime = since !== undefined && e.history.some((h) => Date.parse(h.at) >= since);
    if (!bySeq && !byTime) return false;
  }
  return true;
}

/** Counts the states of a list of entries. Pure. KS-10.4.1 */
export function countEffects(entries: readonly LedgerEntry[]): EffectCounts {
  const c = {
    intended: 0,
    landed: 0,
    landedAfterHalt: 0,
    inDoubt: 0,
    failed: 0,
    refused: 0,
    aborted: 0,
    cancelled: 0,
  };
  for (const e of entries) {
    if (e.attempts > 0) c.intended++;
    if (e.landed) c.landed++;
    if (e.landedAfterHalt) c.landedAfterHalt++;
    if (e.inDoubt) c.inDoubt++;
    if (e.status === EffectStatus.FAILED) c.failed++;
    if (e.status === EffectStatus.REFUSED) c.refused++;
    if (e.status === EffectStatus.CANCELLED) c.cancelled++;
    if (e.history.some((h) => h.status === EffectStatus.ABORTED)) c.aborted++;
  }
  return c;
}

/**
 * The compensation list: every effect that declared a compensating action and landed (or may
 * have: in doubt), newest first. Pure. KS-10.4.2
 */
export function compensationsOf(entries: readonly LedgerEntry[]): CompensationItem[] {
  const items: CompensationItem[] = [];
  for (const e of entries) {
    const comp: Compensation | undefined = e.compensation;
    if (comp === undefined || (!e.landed && !e.inDoubt)) continue;
    const landedEvent = e.history.find(
      (h) => h.status === EffectStatus.LANDED || h.status === EffectStatus.LANDED_AFTER_HALT,
    );
    items.push({
      key: e.key,
      ...(e.runId !== undefined ? { runId: e.runId } : {}),
      ...(e.step !== undefined ? { step: e.step } : {}),
      ...(e.capability !== undefined ? { capability: e.capability } : {}),
      action: comp.action,
      ...(comp.args !== undefined ? { args: comp.args } : {}),
      state: e.landedAfterHalt ? 'landed-after-halt' : e.landed ? 'landed' : 'in-doubt',
      at: (landedEvent ?? e.last).at,
    });
  }
  // Newest first (a saga undoes in reverse); the key breaks ties so the order is stable.
  return items.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : a.key < b.key ? -1 : 1));
}

/**
 * Builds the recovery report from folded ledger entries (any backend's `entries()`). Pure: the
 * same entries and filter always give the same report. KS-10.4
 *
 * @example
 * ```ts
 * const report = buildRecoveryReport(await ledger.entries(), { tenant: 'acme' });
 * for (const c of report.compensations) console.log(c.action, c.args);
 * ```
 */
export function buildRecoveryReport(
  entries: readonly LedgerEntry[],
  filter: ReportFilter = {},
  runStates: readonly RunState[] = [],
): RecoveryReport {
  const scoped = entries.filter((e) => entryMatches(e, filter));
  const byRun = new Map<string, LedgerEntry[]>();
  for (const e of scoped) {
    const id = e.runId ?? NO_RUN;
    let list = byRun.get(id);
    if (list === undefined) byRun.set(id, (list = []));
    list.push(e);
  }
  // KS-10.4.5 runs the journal knows but the ledger does not (refused before their first
  // effect) are listed too, unless the filter names something only the ledger can tell.
  const states = new Map(runStates.map((r) => [r.runId, r]));
  const ledgerOnly =
    filter.capability !== undefined || filter.sinceSeq !== undefined || filter.since !== undefined;
  for (const r of runStates) {
    if (byRun.has(r.runId) || ledgerOnly) continue;
    if (filter.runId !== undefined && !inTree(r.runId, r.context.runPath, filter.runId)) continue;
    if (filter.tenant !== undefined && r.context.tenant !== filter.tenant) continue;
    byRun.set(r.runId, []);
  }
  const runs: RunReport[] = [...byRun].map(([runId, list]) => {
    const st = states.get(runId);
    const detail = st?.lastEnd?.detail;
    const runPath =
      st?.context.runPath ?? list.find((e) => e.context.runPath !== undefined)?.context.runPath;
    return {
      runId,
      ...(runPath !== undefined ? { runPath } : {}),
      counts: countEffects(list),
      effects: list.map(reported),
      ...(st === undefined
        ? {}
        : {
            journal: {
              status: st.status,
              executions: st.executions,
              workers: st.workers,
              landedSteps: Object.keys(st.steps).length,
              ...(detail !== undefined ? { detail } : {}),
            },
          }),
    };
  });
  // KS-10.4.6 a tree reads top-down: each run after its parent, siblings in order.
  runs.sort((a, b) => treeOrder(a).localeCompare(treeOrder(b)));
  return {
    filter,
    totals: countEffects(scoped),
    runs,
    inDoubt: scoped.filter((e) => e.inDoubt).map(reported),
    landedAfterHalt: scoped.filter((e) => e.landedAfterHalt).map(reported),
    compensations: compensationsOf(scoped),
  };
}

function treeOrder(r: RunReport): string {
  return (r.runPath ?? [r.runId]).join('\u0000');
}

function reported(e: LedgerEntry): ReportedEffect {
  const flipSeq = [...e.history].reverse().find((h) => h.flipSeq !== undefined)?.flipSeq;
  const detail = e.last.detail;
  return {
    key: e.key,
    ...(e.runId !== undefined ? { runId: e.runId } : {}),
    ...(e.step !== undefined ? { step: e.step } : {}),
    ...(e.capability !== undefined ? { capability: e.capability } : {}),
    ...(e.context.tenant !== undefined ? { tenant: e.context.tenant } : {}),
    status: e.status,
    attempts: e.attempts,
    ...(flipSeq !== undefined ? { flipSeq } : {}),
    at: e.last.at,
    ...(detail !== undefined ? { detail } : {}),
  };
}

/** The report as lines of text for people (what `killswitch report` prints). */
export function formatRecoveryReport(r: RecoveryReport): string[] {
  const f = r.filter;
  const scope = [
    f.runId !== undefined ? `run=${f.runId} and its descendants` : '',
    f.tenant !== undefined ? `tenant=${f.tenant}` : '',
    f.capability !== undefined ? `capability=${f.capability}` : '',
    f.sinceSeq !== undefined ? `since-seq=${f.sinceSeq}` : '',
    f.since !== undefined
      ? `since=${typeof f.since === 'string' ? f.since : f.since.toISOString()}`
      : '',
  ]
    .filter(Boolean)
    .join(' ');
  const lines = [
    `recovery report: ${r.runs.length} run(s)${scope ? ` (${scope})` : ''}`,
    `totals: ${counts(r.totals)}`,
  ];
  // KS-10.4.6 with --run, the tree under that run: each run indented below its parent.
  const root = f.runId;
  for (const run of r.runs) {
    const j = run.journal;
    const where = j
      ? ` [${j.status}, ${j.executions} execution(s) on ${j.workers.join(', ')}]`
      : '';
    const depth =
      root !== undefined && run.runPath !== undefined
        ? Math.max(0, run.runPath.length - 1 - run.runPath.indexOf(root))
        : 0;
    const indent = depth === 0 ? '' : `${'  '.repeat(depth - 1)}└ `;
    lines.push(`${indent}run ${run.runId}${where}: ${counts(run.counts)}`);
  }
  lines.push(`in doubt (${r.inDoubt.length}): may or may not have landed; check the target`);
  for (const e of r.inDoubt) lines.push(`  ${effectLine(e)}`);
  lines.push(`landed after halt (${r.landedAfterHalt.length}): ignored the abort and left anyway`);
  for (const e of r.landedAfterHalt) lines.push(`  ${effectLine(e)}`);
  lines.push(`compensations (${r.compensations.length}, newest first):`);
  for (const c of r.compensations) {
    const args = c.args === undefined ? '' : ` ${JSON.stringify(c.args)}`;
    const note = c.state === 'in-doubt' ? '  IN DOUBT: confirm it landed before undoing it' : '';
    lines.push(`  ${c.action}${args}  undoes ${c.key} (${c.state} ${c.at})${note}`);
  }
  return lines;
}

function counts(c: EffectCounts): string {
  return (
    `intended ${c.intended}, landed ${c.landed} (${c.landedAfterHalt} after halt), in doubt ${c.inDoubt}, ` +
    `failed ${c.failed}, refused ${c.refused}, aborted ${c.aborted}, cancelled ${c.cancelled}`
  );
}

function effectLine(e: ReportedEffect): string {
  return `${e.key} ${e.capability ?? '-'} ${e.status} at ${e.at}${e.flipSeq !== undefined ? ` (flip #${e.flipSeq})` : ''}`;
}
