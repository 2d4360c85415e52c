/**
 * File flip-log store append benchmark (KS-2.4.1, KS-2.4.7): appends per second and p50/p99
 * append latency (call to acknowledgement, i.e. after fsync) with 1 writer and with 16
 * concurrent writers, with group commit on (default) and off (`maxBatchRecords: 1`), in the same
 * run so the ratios compare like with like. Files go to a temporary directory on the same file
 * system as os.tmpdir() (set TMPDIR to measure another disk).
 *
 * Then the lone append, as a flip in an incident meets the disk (issue 19): one append after
 * `--idle-ms` of idle, against a bare write of the same bytes on an O_DSYNC descriptor after the
 * same idle, the two interleaved (`idle`: the store's cost over the disk's, and the disk's cost
 * after idle against back to back: a resume is streamed only once durable, KS-2.4.9, so it pays
 * this write on flip -> seen).
 *
 * usage: node dist/bench/file-store/append.js [--runs 3] [--appends 600] [--idle-ms 20]
 *   [--idle-appends 100]
 * Ends with one JSON line.
 */
import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { median, quantile, round } from '../internal/stats.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    appends: { type: 'string', default: '600' },
    'idle-ms': { type: 'string', default: '20' },
    'idle-appends': { type: 'string', default: '100' },
  },
});
const RUNS = Number(values.runs);
const APPENDS = Number(values.appends);
const IDLE_MS = Number(values['idle-ms']);
const IDLE_APPENDS = Number(values['idle-appends']);

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

/**
 * Lone appends after `IDLE_MS` of idle against bare O_DSYNC writes of the same bytes after the
 * same idle, alternating which goes first: latencies in ms, ascending.
 */
async function measureIdle(dir: string, name: string): Promise<{ store: number[]; raw: number[] }> {
  const store = new FileFlipLogStore({ path: join(dir, `${name}.jsonl`) });
  await store.open();
  const dsync = (fsConstants as { O_DSYNC?: number }).O_DSYNC ?? 0;
  const fd = openSync(
    join(dir, `${name}-raw.jsonl`),
    fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | dsync,
    0o600,
  );
  const storeMs: number[] = [];
  const rawMs: number[] = [];
  try {
    for (let i = 0; i < IDLE_APPENDS; i++) {
      const flip = {
        id: `${name}-${i}`,
        actor: 'bench',
        action: i % 2 === 0 ? ('halt' as const) : ('resume' as const),
        selector: { tenant: 'idle', capability: 'payments.refund' },
        reason: `benchmark lone append ${i}`,
      };
      for (const which of i % 2 === 0 ? ['store', 'raw'] : ['raw', 'store']) {
        await new Promise((r) => setTimeout(r, IDLE_MS));
        const t0 = process.hrtime.bigint();
        if (which === 'store') await store.append(flip);
        else writeSync(fd, Buffer.from(`${JSON.stringify(flip)}\n`));
        (which === 'store' ? storeMs : rawMs).push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }
  } finally {
    closeSync(fd);
    await store.close();
  }
  return { store: storeMs.sort((a, b) => a - b), raw: rawMs.sort((a, b) => a - b) };
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
let idleRuns: { store: number[]; raw: number[] }[] | undefined;
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
    const idle = await measureIdle(dir, `idle-${run}`);
    (idleRuns ??= []).push(idle);
    console.log(
      `run ${run + 1} lone after ${IDLE_MS} ms idle: store append p50 ${round(quantile(idle.store, 0.5))} ms  p99 ${round(quantile(idle.store, 0.99))} ms; bare O_DSYNC write p50 ${round(quantile(idle.raw, 0.5))} ms  p99 ${round(quantile(idle.raw, 0.99))} ms`,
    );
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
if (idleRuns !== undefined) {
  const of = (pick: (r: { store: number[]; raw: number[] }) => number[], q: number) =>
    round(median(idleRuns!.map((r) => quantile(pick(r), q))));
  summary['loneAfterIdle'] = {
    idleMs: IDLE_MS,
    appends: IDLE_APPENDS,
    storeP50Ms: of((r) => r.store, 0.5),
    storeP99Ms: of((r) => r.store, 0.99),
    bareWriteP50Ms: of((r) => r.raw, 0.5),
    bareWriteP99Ms: of((r) => r.raw, 0.99),
  };
}
summary['throughputRatio16vs1'] = round(median(ratios));
summary['groupCommitGain16Writers'] = round(median(noGcRatios));
console.log('medians of %d runs; ratios are per run, then the median', RUNS);
console.log(JSON.stringify(summary));
