/**
 * Effects that land after a halt, with BullMQ under steady traffic (KS-7.3, DESIGN section 10).
 *
 * A producer enqueues jobs for tenants `acme` and `beta` at a steady rate (faster than the
 * workers drain, so a backlog builds); workers run each job as a "tool call" of `--work` ms whose
 * effect lands at its end. Then `acme` is halted (mode discard) and we count `acme` effects that
 * land after the flip was acknowledged:
 *
 * (a) cancel-without-pause: the usual script. Producers check the flag (same as (b)); at the flip
 *     the waiting `acme` jobs are listed and removed one by one while the workers keep taking
 *     jobs; running jobs are not signalled; nothing is journaled.
 * (b) controller: QueueController on the BullMqTaskQueue adapter: workers evaluate the flag per
 *     job before running it, running jobs get an AbortSignal, waiting jobs are journaled then
 *     removed.
 *
 * Variants alternate per round on fresh Redis keys; medians over rounds.
 * Run: npm run build && node dist/bench/queue/stop.js [--rounds 5] [--rate 400] [--work 20]
 *      [--concurrency 4] [--warmup 1000] [--after 1000]
 * Needs Redis at 127.0.0.1:6379. Ends with one JSON line: {"bench":"queue-stop",...}.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { OpenFeature } from '@openfeature/server-sdk';
import { BullMqTaskQueue } from '../../providers/bullmq/index.js';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { HaltWatcher } from '../../src/guard/halt-watcher.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import { FileQueueJournal } from '../../src/queue/file-queue-journal.js';
import { QueueController } from '../../src/queue/queue-controller.js';
import type { QueueDepth, TaskConsumer } from '../../src/queue/task-queue.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const ROUNDS = arg('rounds', 5);
const RATE = arg('rate', 400); // jobs per second, both tenants
const WORK_MS = arg('work', 20);
const CONCURRENCY = arg('concurrency', 4);
const WARMUP_MS = arg('warmup', 1_000);
const AFTER_MS = arg('after', 1_000);
const CONNECTION = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null } as const;

type Variant = 'cancel-without-pause' | 'controller';

interface RoundResult {
  readonly variant: Variant;
  /** acme effects that landed after the flip was acknowledged. */
  readonly landedAfterFlip: number;
  /** acme jobs removed with no record (cannot be resumed). */
  readonly orphans: number;
  readonly journaled: number;
  readonly depthT0: QueueDepth;
  readonly depthTN: QueueDepth;
  /** beta effects after the flip (the other tenant keeps flowing). */
  readonly betaAfterFlip: number;
  /** ms from the flip until acme's queued depth reached 0. */
  readonly msToEmpty: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function round(variant: Variant): Promise<RoundResult> {
  const store = new MemoryFlipLogStore();
  const provider = KillSwitchProvider.fromStore(store, { logger: { warn: () => undefined } });
  const domain = `bench-${randomUUID()}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  for (let i = 0; i < 10_000 && provider.failure !== undefined; i++)
    await new Promise((r) => setImmediate(r));
  const client = OpenFeature.getClient(domain);
  const watcher = new HaltWatcher(client);
  const dir = await mkdtemp(join(tmpdir(), 'ks-bench-queue-'));
  const prefix = `ks-bench-${randomUUID().slice(0, 8)}`;
  const queue = new BullMqTaskQueue<{ n: number }>({
    name: 'stop',
    prefix,
    connection: CONNECTION,
    logger: { warn: () => undefined },
  });
  const journal = new FileQueueJournal({ path: join(dir, 'journal.jsonl') });
  const controller = new QueueController({
    queue,
    watcher,
    journal,
    logger: { warn: () => undefined },
  });
  const effects: { tenant: string; at: number }[] = [];
  const run = async (tenant: string, signal?: AbortSignal) => {
    await sleep(WORK_MS, signal);
    effects.push({ tenant, at: performance.now() });
  };
  let consumer: TaskConsumer;
  if (variant === 'controller') {
    await controller.start();
    consumer = await controller.work((task, signal) => run(task.context.tenant!, signal), {
      concurrency: CONCURRENCY,
    });
  } else {
    // No admission, no signal: what a worker without the kill switch does.
    consumer = await queue.consume({
      concurrency: CONCURRENCY,
      admit: async () => ({ action: 'run' }),
      handler: (task) => run(task.context.tenant!),
    });
  }
  let producing = true;
  let n = 0;
  const interval = 1_000 / RATE;
  const producer = (async () => {
    const start = performance.now();
    while (producing) {
      const tenant = n % 2 === 0 ? 'acme' : 'beta';
      const ctx = { tenant, runId: `r${n}` };
      n++;
      // Both variants gate producers the same way: a halted context is not enqueued.
      if (variant === 'controller') await controller.enqueue(ctx, { n }).catch(() => undefined);
      else if (!(await watcher.evaluate(ctx)).halted)
        await queue.add({ name: 'job', payload: { n }, context: ctx });
      const due = start + n * interval;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
  })();
  await sleep(WARMUP_MS);
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { tenant: 'acme' },
    reason: 'bench',
    mode: 'discard',
  });
  const flipAt = performance.now();
  const depthT0 = await queue.depth({ tenant: 'acme' });
  let orphans = 0;
  if (variant === 'cancel-without-pause') {
    for (const t of await queue.list({ tenant: 'acme' })) {
      if (t.state === 'active') continue;
      if ((await queue.bullQueue.remove(t.id)) === 1) orphans++;
    }
  }
  let msToEmpty = Number.NaN;
  const deadline = flipAt + AFTER_MS;
  while (performance.now() < deadline) {
    const d = await queue.depth({ tenant: 'acme' });
    if (Number.isNaN(msToEmpty) && d.waiting + d.active === 0)
      msToEmpty = performance.now() - flipAt;
    await sleep(10);
  }
  const depthTN = await queue.depth({ tenant: 'acme' });
  producing = false;
  await producer;
  await consumer.close();
  await controller.close();
  const journaled = variant === 'controller' ? (await controller.discarded()).length : 0;
  await queue.bullQueue.obliterate({ force: true });
  await queue.close();
  await journal.close();
  watcher.close();
  await OpenFeature.clearProviders().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
  return {
    variant,
    landedAfterFlip: effects.filter((e) => e.tenant === 'acme' && e.at > flipAt).length,
    orphans,
    journaled,
    depthT0,
    depthTN,
    betaAfterFlip: effects.filter((e) => e.tenant === 'beta' && e.at > flipAt).length,
    msToEmpty: Math.round(msToEmpty * 10) / 10,
  };
}

const results: RoundResult[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const order: Variant[] =
    r % 2 === 0 ? ['cancel-without-pause', 'controller'] : ['controller', 'cancel-without-pause'];
  for (const v of order) {
    const res = await round(v);
    results.push(res);
    console.log(
      `round ${r + 1} ${v.padEnd(21)} acme effects after flip ${String(res.landedAfterFlip).padStart(3)}  orphans ${String(res.orphans).padStart(3)}  journaled ${String(res.journaled).padStart(3)}  depth T+0 ${res.depthT0.total} T+N ${res.depthTN.total}  beta after flip ${res.betaAfterFlip}  acme queue empty after ${res.msToEmpty} ms`,
    );
  }
}

const summary = (v: Variant) => {
  const rs = results.filter((r) => r.variant === v);
  return {
    landedAfterFlipMedian: median(rs.map((r) => r.landedAfterFlip)),
    landedAfterFlip: rs.map((r) => r.landedAfterFlip),
    orphansMedian: median(rs.map((r) => r.orphans)),
    journaledMedian: median(rs.map((r) => r.journaled)),
    depthT0Median: median(rs.map((r) => r.depthT0.total)),
    depthTNMedian: median(rs.map((r) => r.depthTN.total)),
    betaAfterFlipMedian: median(rs.map((r) => r.betaAfterFlip)),
    msToEmptyMedian: median(rs.map((r) => r.msToEmpty)),
  };
};
const a = summary('cancel-without-pause');
const b = summary('controller');
console.log(
  `median acme effects after the flip: cancel-without-pause ${a.landedAfterFlipMedian}, controller ${b.landedAfterFlipMedian}; orphans ${a.orphansMedian} vs ${b.orphansMedian}`,
);
console.log(
  JSON.stringify({
    bench: 'queue-stop',
    rounds: ROUNDS,
    rate: RATE,
    workMs: WORK_MS,
    concurrency: CONCURRENCY,
    warmupMs: WARMUP_MS,
    afterMs: AFTER_MS,
    cancelWithoutPause: a,
    controller: b,
  }),
);
process.exit(0);
