/**
 * File flip-log store append benchmark (KS-2.4.1, KS-2.4.7): appends per second and p50/p99
 * append latency (call to acknowledgement, i.e. after fsync) with 1 writer and with 16
 * concurrent writers, with group commit on (default) and off (`maxBatchRecords: 1`), in the same
 * run so the ratios compare like with like. Files go to a temporary directory on the same file
 * system as os.tmpdir() (set TMPDIR to measure another disk).
 *
 * usage: node dist/bench/file-store/append.js [--runs 3] [--appends 600]
 * Ends with one JSON line.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { median, quantile, round } from '../internal/stats.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, appends: { type: 'string', default: '600' } },
});
const RUNS = Number(values.runs);
const APPENDS = Number(values.appends);

interface Result {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

async function measure(
  dir: string,
  name: string,
  writers: number,
  maxBatchRecords: number,
): Promise<Result> {
  const store = new FileFlipLogStore({ path: join(dir, `${name}.jsonl`), maxBatchRecords });
  await store.open();
  const latencies: number[] = [];
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      while (next < APPENDS) {
        const i = next++;
        const t0 = process.hrtime.bigint();
        await store.append({
          id: `${name}-${i}`,
          actor: 'bench',
          action: i % 2 === 0 ? 'halt' : 'resume',
          selector: { tenant: `t${w}`, capability: 'payments.refund' },
          reason: `benchmark append ${i}`,
        });
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await store.close();
  latencies.sort((a, b) => a - b);
  return {
    perSecond: APPENDS / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}

const configs = [
  { key: 'w1', writers: 1, maxBatchRecords: 256 },
  { key: 'w16', writers: 16, maxBatchRecords: 256 },
  { key: 'w16NoGroupCommit', writers: 16, maxBatchRecords: 1 },
] as const;

const dir = await mkdtemp(join(tmpdir(), 'ks-bench-file-'));
const samples: Record<string, Result[]> = {};
const ratios: number[] = [];
const noGcRatios: number[] = [];
try {
  for (let run = 0; run < RUNS; run++) {
    const byKey: Record<string, Result> = {};
    for (const c of configs) {
      const r = await measure(dir, `${c.key}-${run}`, c.writers, c.maxBatchRecords);
      byKey[c.key] = r;
      (samples[c.key] ??= []).push(r);
      console.log(
        `run ${run + 1} ${c.key.padEnd(17)} ${round(r.perSecond, 0).toString().padStart(6)} appends/s  p50 ${round(r.p50Ms)} ms  p99 ${round(r.p99Ms)} ms`,
      );
    }
    ratios.push(byKey['w16']!.perSecond / byKey['w1']!.perSecond);
    noGcRatios.push(byKey['w16']!.perSecond / byKey['w16NoGroupCommit']!.perSecond);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}

const summary: Record<string, unknown> = {
  bench: 'file-store/append',
  runs: RUNS,
  appendsPerRun: APPENDS,
};
for (const c of configs) {
  const s = samples[c.key]!;
  summary[c.key] = {
    writers: c.writers,
    maxBatchRecords: c.maxBatchRecords,
    appendsPerSecond: round(median(s.map((x) => x.perSecond)), 0),
    p50Ms: round(median(s.map((x) => x.p50Ms))),
    p99Ms: round(median(s.map((x) => x.p99Ms))),
  };
}
summary['throughputRatio16vs1'] = round(median(ratios));
summary['groupCommitGain16Writers'] = round(median(noGcRatios));
console.log('medians of %d runs; ratios are per run, then the median', RUNS);
console.log(JSON.stringify(summary));
