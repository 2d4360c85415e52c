/**
 * bench/postgres/fleet-renew: the part of a replicated stop-complete that the shared fleet adds
 * (KS-6.6, KS-8.8.2): a worker's acknowledgement on replica B is committed to PostgreSQL
 * (`renew`, which B waits for before answering the worker) and reaches replica A as a fleet
 * event (NOTIFY), which is when A can count it. Two fleet channels on one fresh schema, B renews
 * a batch of `--workers` acknowledgements `--rounds` times one after the other; per round: the
 * time until `renew` resolved and until A received the event. Medians and p90, the load average,
 * and a final JSON line. Compare builds in one session by running each build's copy in turn.
 *
 * Usage: node dist/bench/postgres/fleet-renew.js [--rounds 300] [--workers 4] [--pg postgres://…]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import type { FleetEvent } from '../../src/store/fleet-channel.js';
import { median, quantile, round } from '../internal/stats.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '300' },
    workers: { type: 'string', default: '4' },
    pg: {
      type: 'string',
      default: process.env['KS_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test',
    },
  },
});
const rounds = Number(values.rounds);
const workers = Number(values.workers);
const schema = `ks_bench_renew_${process.pid}`;

const store = new PostgresFlipLogStore({
  connectionString: values.pg,
  schema,
  logger: { warn() {} },
});
await store.open();
let waiting: { resolve: () => void; round: number } | undefined;
const a = await store.openFleetChannel({
  replicaId: 'r-a',
  url: 'http://a',
  beatMs: 250,
  onEvent: (e: FleetEvent) => {
    if (e.kind === 'acks' && waiting !== undefined) {
      const w = waiting;
      if (e.acks.some((x) => x.seq === w.round)) {
        waiting = undefined;
        w.resolve();
      }
    }
  },
});
const b = await store.openFleetChannel({
  replicaId: 'r-b',
  url: 'http://b',
  beatMs: 250,
  onEvent: () => {},
});

const renewMs: number[] = [];
const seenMs: number[] = [];
const load = loadavg()[0]!;
for (let r = 1; r <= rounds; r++) {
  const seen = new Promise<void>((resolve) => (waiting = { resolve, round: r }));
  const t0 = performance.now();
  await b.renew(
    Array.from({ length: workers }, (_, i) => ({ workerId: `w-${i}`, seq: r, connections: 1 })),
  );
  const t1 = performance.now();
  await seen;
  const t2 = performance.now();
  if (r > 10) {
    renewMs.push(t1 - t0);
    seenMs.push(t2 - t0);
  }
}
await a.close();
await b.close();
await store.close();
const admin = new pg.Client({ connectionString: values.pg });
await admin.connect();
await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
await admin.end();

renewMs.sort((x, y) => x - y);
seenMs.sort((x, y) => x - y);
const out = {
  bench: 'postgres-fleet-renew',
  rounds: renewMs.length,
  workers,
  loadAvg1m: round(load),
  loadAvg1mAfter: round(loadavg()[0]!),
  renewMedianMs: round(median(renewMs), 3),
  renewP90Ms: round(quantile(renewMs, 0.9), 3),
  seenByOtherMedianMs: round(median(seenMs), 3),
  seenByOtherP90Ms: round(quantile(seenMs, 0.9), 3),
};
console.log(
  `renew ${workers} acks: median ${out.renewMedianMs} ms (p90 ${out.renewP90Ms}) | seen by the other replica: median ${out.seenByOtherMedianMs} ms (p90 ${out.seenByOtherP90Ms}) | load ${out.loadAvg1m} -> ${out.loadAvg1mAfter}`,
);
console.log(JSON.stringify(out));
