import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatSelector } from '../../model/selector.js';
import type { DrillReport, LeverResult } from './drill-report.js';

/** Paths {@link writeDrillReport} wrote. */
export interface WrittenReport {
  readonly json: string;
  readonly markdown: string;
  readonly svg: string;
}

/**
 * Writes a drill's report to a directory: `report.json` (everything), `summary.md` (a table per
 * lever and the violations) and `time-to-stop.svg` (a chart of time-to-stop per worker per
 * level). KS-9.3.5
 *
 * @param dir - created if missing
 */
export async function writeDrillReport(report: DrillReport, dir: string): Promise<WrittenReport> {
  await mkdir(dir, { recursive: true });
  const paths = {
    json: join(dir, 'report.json'),
    markdown: join(dir, 'summary.md'),
    svg: join(dir, 'time-to-stop.svg'),
  };
  await writeFile(paths.json, JSON.stringify(report, null, 2) + '\n');
  await writeFile(paths.markdown, renderMarkdown(report));
  await writeFile(paths.svg, renderSvg(report));
  return paths;
}

const fmt = (n: number | undefined, digits = 1): string =>
  n === undefined ? 'n/a' : n.toFixed(digits);

/** The Markdown summary: one row per lever, then the ledger and every violation. */
export function renderMarkdown(r: DrillReport): string {
  const lines: string[] = [];
  lines.push(
    `# Drill \`${r.scenario}\`: ${(r.verdict ?? (r.passed ? 'passed' : 'failed')).toUpperCase()}`,
    '',
  );
  lines.push(
    `Mode ${r.mode}, control plane ${r.controlPlane}, ${r.workers.length} worker(s), ${r.startedAt} to ${r.finishedAt}.`,
    '',
  );
  if (r.environment) {
    const e = r.environment;
    lines.push(
      `Node ${e.node}, ${e.cpus} CPU(s), load average ${e.loadStart} at the start, ${e.loadEnd} at the end.`,
      '',
    );
  }
  if (r.host) {
    const h = r.host;
    lines.push(
      `Host during the drill: load average up to ${h.loadMax} (${h.foreignLoadMax} of it from other processes${h.ownCpus !== undefined ? `; the drill's own processes used ${h.ownCpus} CPU(s)` : ''}), the drill's event-loop delay p99 ${h.eventLoopDelayP99Ms} ms (max ${h.eventLoopDelayMaxMs})${h.calibrationP99Ms !== undefined ? `, ${h.calibrationP99Ms} ms before the fleet started` : ''}${h.overloaded ? `: overloaded by other processes (${escapeMd(h.why ?? '')}), a missed timing target is inconclusive` : ': not overloaded by other processes'}.`,
      '',
    );
  }
  lines.push(
    '| lever | selector | seq | time-to-stop p50 / p99 / max (ms) | ack p99 (ms) | stop complete (ms) | matching after accepted | after complete | other cohort /s before -> during | in-flight cancelled (llm/tool) | retries/timers cancelled | fired after flip / after applied | queue T+0 -> T+N (matching) | worker loop delay p99 / max (ms) | resume |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const l of r.levers) lines.push(leverRow(l));
  lines.push('');
  if (r.ledger) {
    const g = r.ledger;
    lines.push(
      '## Ledger after recovery',
      '',
      `| entries | sink effects | missing | wrong outcome | phantom landings | orphans | in doubt (seen by sink) | aborted yet landed | landed after halt |`,
      '|---|---|---|---|---|---|---|---|---|',
      `| ${g.entries} | ${g.sinkEffects} | ${g.missing.length} | ${g.wrongOutcome.length} | ${g.phantom.length} | ${g.orphans.length} | ${g.inDoubt} | ${g.abortedButLanded.length} | ${g.landedAfterHalt.length} |`,
      '',
    );
  }
  lines.push(
    '## Workers',
    '',
    '| worker | variant | connected | ever fresh | effects at sink |',
    '|---|---|---|---|---|',
  );
  for (const w of r.workers) {
    lines.push(
      `| ${w.workerId} | ${w.variant ?? ''} | ${w.connected ? 'yes' : '**no**'} | ${w.everFresh === undefined ? 'n/a' : w.everFresh ? 'yes' : '**no**'} | ${w.effectsAtSink} |`,
    );
  }
  lines.push('', '## Violations', '');
  if (r.violations.length === 0) lines.push('None.');
  for (const v of r.violations) lines.push(`- \`${v.code}\` ${escapeMd(v.message)}`);
  if (r.inconclusive !== undefined && r.inconclusive.length > 0) {
    lines.push('', `## Inconclusive: host overloaded (${escapeMd(r.host?.why ?? '')})`, '');
    for (const v of r.inconclusive) lines.push(`- \`${v.code}\` ${escapeMd(v.message)}`);
  }
  lines.push('', 'Chart: [time-to-stop.svg](time-to-stop.svg)', '');
  return lines.join('\n');
}

function leverRow(l: LeverResult): string {
  const e = l.effects;
  const s = l.schedules;
  const q = l.queue;
  const sum = (xs: readonly { matching: number }[] | undefined) =>
    xs === undefined ? 'n/a' : String(xs.reduce((a, x) => a + x.matching, 0));
  const cells = [
    l.label,
    `\`${formatSelector(l.selector)}\``,
    l.seq === undefined ? 'n/a' : String(l.seq),
    `${fmt(l.timeToStop.p50, 2)} / ${fmt(l.timeToStop.p99, 2)} / ${fmt(l.timeToStop.max, 2)}`,
    fmt(l.timeToAck?.p99, 2),
    fmt(l.stopCompleteMs, 2),
    e ? String(e.matchingAfterAccepted) : 'n/a',
    e ? (e.matchingAfterComplete > 0 ? `**${e.matchingAfterComplete}**` : '0') : 'n/a',
    e ? `${e.otherRateBefore} -> ${e.otherRateDuring}` : 'n/a',
    l.inFlightCancelled ? `${l.inFlightCancelled.llm}/${l.inFlightCancelled.tool}` : 'n/a',
    s ? `${s.retriesCancelled}/${s.timersCancelled}` : 'n/a',
    s
      ? `${s.firedAfterAccepted} / ${s.firedAfterApplied > 0 ? `**${s.firedAfterApplied}**` : '0'}`
      : 'n/a',
    q ? `${sum(q.t0)} -> ${sum(q.tN)}` : 'n/a',
    l.workerLoopDelay
      ? `${fmt(l.workerLoopDelay.p99, 1)} / ${fmt(l.workerLoopDelay.max, 1)}`
      : 'n/a',
    l.resume
      ? l.resume.ok
        ? `ok${l.resume.seq ? ` (seq ${l.resume.seq})` : ''}`
        : '**failed**'
      : 'none',
  ];
  return `| ${cells.map(escapeMd).join(' | ')} |`;
}

function escapeMd(s: string): string {
  return s.replace(/\|/g, '\\|');
}

const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

/**
 * A grouped bar chart, hand-written SVG: one group per lever, one bar per worker (its
 * time-to-stop in ms), a dashed line at the p99 target. A worker that never applied the halt
 * gets a red cross instead of a bar.
 */
export function renderSvg(r: DrillReport): string {
  const workers = r.workers.map((w) => w.workerId);
  const levers = r.levers;
  const target =
    typeof r.targets.p99TimeToStopMs === 'number' ? r.targets.p99TimeToStopMs : undefined;
  const values = levers.flatMap((l) => l.stops.map((s) => s.timeToStopMs ?? 0));
  const maxV = niceCeil(Math.max(1, ...values, target ?? 0));
  const barW = 14;
  const gap = 4;
  const groupW = Math.max(60, workers.length * (barW + gap) + 24);
  const left = 56;
  const top = 40;
  const plotH = 260;
  // Wide enough for the title whatever the number of levers.
  const width = Math.max(720, left + Math.max(1, levers.length) * groupW + 160);
  const height = top + plotH + 76;
  const y = (v: number) => top + plotH - (Math.min(v, maxV) / maxV) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>Time-to-stop per worker per level: drill ${esc(r.scenario)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">Time-to-stop per worker (flip accepted to worker applied), drill ${esc(r.scenario)}: ${r.verdict === 'inconclusive' ? 'inconclusive (host overloaded)' : r.passed ? 'passed' : 'FAILED'}</text>`,
  );
  for (let i = 0; i <= 5; i++) {
    const v = (maxV * i) / 5;
    const yy = y(v);
    out.push(
      `<line x1="${left}" x2="${width - 150}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${left - 6}" y="${(yy + 4).toFixed(1)}" text-anchor="end">${trim(v)} ms</text>`,
    );
  }
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(
    `<line x1="${left}" x2="${width - 150}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`,
  );
  levers.forEach((l, gi) => {
    const gx = left + gi * groupW + 12;
    l.stops.forEach((s) => {
      const wi = workers.indexOf(s.workerId);
      const x = gx + Math.max(0, wi) * (barW + gap);
      const color = PALETTE[Math.max(0, wi) % PALETTE.length]!;
      if (s.timeToStopMs === undefined) {
        const cy = top + plotH - 8;
        out.push(
          `<path d="M${x} ${cy - 6} l${barW} 12 M${x + barW} ${cy - 6} l-${barW} 12" stroke="#d62728" stroke-width="2"><title>${esc(s.workerId)}: never applied</title></path>`,
        );
        return;
      }
      const yy = y(s.timeToStopMs);
      out.push(
        `<rect x="${x}" y="${yy.toFixed(1)}" width="${barW}" height="${(top + plotH - yy).toFixed(1)}" fill="${color}"><title>${esc(s.workerId)}: ${s.timeToStopMs.toFixed(2)} ms</title></rect>`,
      );
    });
    out.push(
      `<text x="${gx + (groupW - 24) / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(l.label)}</text>`,
      `<text x="${gx + (groupW - 24) / 2}" y="${top + plotH + 30}" text-anchor="middle" fill="#555">p99 ${fmt(l.timeToStop.p99, 1)} ms</text>`,
    );
    // The effects that left after the flip: after it was accepted, and after the stop was
    // complete (the hard target: 0). Red when any left after complete.
    const e = l.effects;
    if (e !== undefined) {
      out.push(
        `<text x="${gx + (groupW - 24) / 2}" y="${top + plotH + 44}" text-anchor="middle" fill="${e.matchingAfterComplete > 0 ? '#d62728' : '#555'}">effects after ${e.matchingAfterAccepted} / ${e.matchingAfterComplete}<title>matching effects after the flip was accepted / after the stop was complete</title></text>`,
      );
    }
  });
  if (target !== undefined) {
    const ty = y(target);
    out.push(
      `<line x1="${left}" x2="${width - 150}" y1="${ty.toFixed(1)}" y2="${ty.toFixed(1)}" stroke="#d62728" stroke-dasharray="6 4"/>`,
    );
  }
  // The legend: the target first (a dashed line), then one entry per worker, in a column of its
  // own right of the plot, so no label lands on another.
  const legendX = width - 140;
  if (target !== undefined) {
    out.push(
      `<line x1="${legendX}" x2="${legendX + 10}" y1="${top + 4}" y2="${top + 4}" stroke="#d62728" stroke-dasharray="3 2" stroke-width="2"/>`,
      `<text x="${legendX + 14}" y="${top + 8}" fill="#d62728">target p99 ${trim(target)} ms</text>`,
    );
  }
  // Two short lines: the legend column is 140 px wide.
  out.push(
    `<text x="${legendX}" y="${top + plotH + 30}" fill="#555">effects after flip:</text>`,
    `<text x="${legendX}" y="${top + plotH + 44}" fill="#555">accepted / complete</text>`,
  );
  workers.forEach((w, i) => {
    const ly = top + 28 + i * 16;
    out.push(
      `<rect x="${width - 140}" y="${ly - 9}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]!}"/>`,
      `<text x="${width - 126}" y="${ly}">${esc(w)}</text>`,
    );
  });
  out.push('</svg>', '');
  return out.join('\n');
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function trim(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function esc(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}
