import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DrillReport } from '../../src/drill/report/drill-report.js';
import {
  renderMarkdown,
  renderSvg,
  writeDrillReport,
} from '../../src/drill/report/report-writer.js';

const report: DrillReport = {
  scenario: 'unit',
  mode: 'embedded',
  controlPlane: 'http://127.0.0.1:1',
  startedAt: '2026-01-01T00:00:00.000Z',
  finishedAt: '2026-01-01T00:00:10.000Z',
  workers: [
    { workerId: 'w1', connected: true, everFresh: true, effectsAtSink: 10 },
    {
      workerId: 'w2',
      variant: 'unreachable',
      connected: false,
      everFresh: false,
      effectsAtSink: 0,
    },
  ],
  levers: [
    {
      label: 'tenant',
      level: 'tenant',
      selector: { tenant: 'a|b' },
      mode: 'discard',
      flipId: 'f',
      seq: 1,
      acceptedAt: 0,
      completeAt: 3,
      stopCompleteMs: 3,
      stops: [{ workerId: 'w1', appliedAt: 2, timeToStopMs: 2 }, { workerId: 'w2' }],
      timeToStop: { p50: 2, p99: 2, max: 2 },
      errors: [],
    },
  ],
  targets: { p99TimeToStopMs: 50 },
  violations: [
    { code: 'worker-not-connected', workerId: 'w2', message: 'worker w2 <was> not connected' },
  ],
  passed: false,
};

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('KS-9.3.5 the report is JSON, a Markdown summary and an SVG chart in one directory', () => {
  it('writes the three files, and the JSON reads back as the report', async () => {
    dir = await mkdtemp(join(tmpdir(), 'drill-report-'));
    const out = await writeDrillReport(report, join(dir, 'nested'));
    expect(JSON.parse(await readFile(out.json, 'utf8'))).toEqual(report);
    expect(await readFile(out.markdown, 'utf8')).toContain('# Drill `unit`: FAILED');
    expect(await readFile(out.svg, 'utf8')).toMatch(
      /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/,
    );
  });

  it('the summary has a row per lever and lists every violation, escaping table pipes', () => {
    const md = renderMarkdown(report);
    expect(md).toContain('| tenant | `{tenant=a\\|b}` | 1 | 2.00 / 2.00 / 2.00 | n/a | 3.00 |');
    expect(md).toContain('- `worker-not-connected` worker w2 <was> not connected');
    expect(md).toContain('| w2 | unreachable | **no** | **no** | 0 |');
  });

  it('the chart draws a bar per worker that applied the halt, a cross for one that never did, and the target line', () => {
    const svg = renderSvg(report);
    expect(svg.match(/<rect x="[^"]+" y="[^"]+" width="14"/g)).toHaveLength(1);
    expect(svg).toContain('w2: never applied');
    expect(svg).toContain('target p99 50 ms');
    // Hand-written XML: every text is escaped.
    expect(svg).not.toMatch(/<title>[^<]*<was>/);
    const opens = (svg.match(/<(rect|line|text|path|title|svg)\b/g) ?? []).length;
    const closes = (svg.match(/<\/(rect|line|text|path|title|svg)>|\/>/g) ?? []).length;
    expect(closes).toBe(opens);
  });

  it('KS-9.3.7 the target label sits in the legend column apart from every worker entry, and each lever shows the effects after the flip', () => {
    const effects = {
      matchingBefore: 5,
      matchingAfterAccepted: 2,
      matchingAfterApplied: 0,
      matchingAfterComplete: 1,
      matchingArrivedAfterComplete: 0,
      afterCompleteKeys: ['k'],
      leakedByWorker: { w1: 1 },
      otherRateBefore: 1,
      otherRateDuring: 1,
      otherRefused: 0,
      otherRefusedBy: {},
      matchingRateAfterResume: 0,
    };
    const svg = renderSvg({ ...report, levers: report.levers.map((l) => ({ ...l, effects })) });
    // Every text in the legend column: one line each, none at the same height as another.
    const legend = [...svg.matchAll(/<text x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)/g)]
      .filter((m) => Number(m[1]) >= 580)
      .map((m) => ({ y: Number(m[2]), text: m[3]! }));
    const target = legend.find((t) => t.text.startsWith('target p99'));
    expect(target).toBeDefined();
    for (const t of legend)
      if (t !== target) expect(Math.abs(t.y - target!.y), t.text).toBeGreaterThanOrEqual(12);
    expect(svg).toMatch(/fill="#d62728">effects after 2 \/ 1</);
    // Every text fits inside the chart: sans-serif is at most ~0.6 of its size a character (the
    // effects note ran ~60 px past the right edge of a real drill's chart).
    const width = Number(/<svg [^>]*width="(\d+)"/.exec(svg)![1]);
    for (const m of svg.matchAll(/<text x="([\d.]+)" y="[\d.]+"([^>]*)>([^<]*)/g)) {
      if (m[2]!.includes('text-anchor')) continue;
      const size = Number(/font-size="(\d+)"/.exec(m[2]!)?.[1] ?? 11);
      expect(Number(m[1]) + m[3]!.length * size * 0.6, m[3]).toBeLessThanOrEqual(width);
    }
  });
});
