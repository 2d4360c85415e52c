/**
 * PostgreSQL flip-log benchmark (KS-8.3.1, KS-8.5.2): appends per second and p50/p99 append
 * latency (call to acknowledgement, i.e. after COMMIT) with 1 writer, with 8 concurrent writers
 * sharing one store (one pool; its group commit batches them, KS-8.3.4), and with 8 stores writing
 * at once (8 replicas, each its own pool, serialised by the advisory lock); and the delivery lag from one store's acknowledged append to a subscriber of another
 * store (NOTIFY, then the catch-up read). All in the same run, so ratios compare like with like.
 * Uses its own schema in KS_PG_URL (default postgres://postgres@127.0.0.1:5432/test), dropped after.
 *
 * usage: node dist/bench/postgres/append.js [--runs 3] [--appends 400]
 * Ends with one JSON line.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import { median, quantile, round } from '../internal/stats.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, appends: { type: 'string', default: '400' } },
});
const RUNS = Number(values.runs);
const APPENDS = Number(values.appends);
const URL = process.env['KS_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `ks_bench_append_${process.pid}`;

interface Result {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

function newStore(poolSize: number): PostgresFlipLogStore {
  return new PostgresFlipLogStore({ connectionString: URL, schema: SCHEMA, poolSize });
}

/** `writers` concurrent loops over `stores` (round robin) until APPENDS appends are acknowledged. */
async function measure(
  name: string,
  stores: PostgresFlipLogStore[],
  writers: number,
): Promise<Result> {
  await Promise.all(stores.map((s) => s.open()));
  const latencies: number[] = [];
  let next = 0;
  const started = nowMs();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const store = stores[w % stores.length]!;
      while (next < APPENDS) {
        const i = next++;
        const t0 = nowMs();
        await store.append({
          id: `${name}-${i}`,
          actor: 'bench',
          action: i % 2 === 0 ? 'halt' : 'resume',
          selector: { tenant: `t${w}`, capability: 'payments.refund' },
          reason: `benchmark append ${i}`,
        });
        latencies.push(nowMs() - t0);
      }
    }),
  );
  const seconds = (nowMs() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    perSecond: APPENDS / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}

/** Ack on store A to delivery on a subscriber of store B, for sequential appends. */
async function deliveryLag(name: string): Promise<Result> {
  const a = newStore(2);
  const b = newStore(2);
  try {
    await Promise.all([a.open(), b.open()]);
    const acked = new Map<number, number>();
    const lags: number[] = [];
    let waiting: (() => void) | undefined;
    b.subscribe((r) => {
      const t = nowMs();
      const at = acked.get(r.seq);
      if (at !== undefined) lags.push(t - at);
      waiting?.();
    });
    const n = Math.min(APPENDS, 200);
    const started = nowMs();
    for (let i = 0; i < n; i++) {
      const delivered = new Promise<void>((r) => (waiting = r));
      // The ack time is taken when append resolves; delivery to B can only come after COMMIT.
      const t0 = nowMs();
      const { record } = await a.append({
        id: `${name}-${i}`,
        actor: 'bench',
        action: 'halt',
        selector: { runId: `run-${i}` },
        reason: 'delivery lag',
      });
      acked.set(record.seq, Math.min(nowMs(), t0 + 1e9));
      await delivered;
    }
    const seconds = (nowMs() - started) / 1000;
    // Deliveries that beat the ack's bookkeeping count from the ack (never negative).
    const sorted = lags.map((x) => Math.max(0, x)).sort((x, y) => x - y);
    return { perSecond: n / seconds, p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99) };
  } finally {
    await a.close();
    await b.close();
  }
}

const samples: Record<string, Result[]> = {};
const ratios: number[] = [];
const replicaRatios: number[] = [];
const admin = new pg.Client({ connectionString: URL });
await admin.connect();
try {
  for (let run = 0; run < RUNS; run++) {
    const byKey: Record<string, Result> = {};
    const cases: [string, () => Promise<Result>][] = [
      ['w1', async () => one(`w1-${run}`, [newStore(2)], 1)],
      ['w8', async () => one(`w8-${run}`, [newStore(8)], 8)],
      [
        'w8Replicas',
        async () =>
          one(
            `w8r-${run}`,
            Array.from({ length: 8 }, () => newStore(2)),
            8,
          ),
      ],
      ['deliveryToOtherStore', () => deliveryLag(`lag-${run}`)],
    ];
    for (const [key, fn] of cases) {
      const r = await fn();
      byKey[key] = r;
      (samples[key] ??= []).push(r);
      console.log(
        `run ${run + 1} ${key.padEnd(21)} ${round(r.perSecond, 0).toString().padStart(6)} /s  p50 ${round(r.p50Ms)} ms  p99 ${round(r.p99Ms)} ms`,
      );
    }
    ratios.push(byKey['w8']!.perSecond / byKey['w1']!.perSecond);
    replicaRatios.push(byKey['w8Replicas']!.perSecond / byKey['w1']!.perSecond);
  }
} finally {
  await admin.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
  await admin.end();
}

async function one(name: string, stores: PostgresFlipLogStore[], writers: number): Promise<Result> {
  try {
    return await measure(name, stores, writers);
  } finally {
    for (const s of stores) await s.close();
  }
}

const summary: Record<string, unknown> = {
  bench: 'postgres/append',
  runs: RUNS,
  appendsPerRun: APPENDS,
};
for (const [key, s] of Object.entries(samples)) {
  summary[key] = {
    perSecond: round(median(s.map((x) => x.perSecond)), 0),
    p50Ms: round(median(s.map((x) => x.p50Ms))),
    p99Ms: round(median(s.map((x) => x.p99Ms))),
  };
}
summary['throughputRatio8vs1'] = round(median(ratios));
summary['throughputRatio8Replicasvs1'] = round(median(replicaRatios));
console.log('medians of %d runs; ratios are per run, then the median', RUNS);
console.log(JSON.stringify(summary));
