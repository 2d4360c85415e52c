/**
 * Cost of the effect guard (KS-4.7.1): `guard.run` around a no-op effect vs calling the effect
 * directly, through an OpenFeature client bound to KillSwitchProvider (in-memory flip log, one
 * unrelated halt active), with
 *   - the in-memory ledger (default: re-evaluates after the intent, KS-4.1.5),
 *   - the in-memory ledger with `recheckBeforeDispatch: false`,
 *   - the file ledger with fsync (the default: two fdatasyncs per effect, intent and landed),
 *   - the file ledger without fsync (for scale only; not crash-safe).
 * Every call is timed on its own; rounds interleave the variants; p50/p99 per variant are medians
 * over rounds. Ratios and overheads are computed within the same run.
 *
 * Run: npm run build && node dist/bench/guard/guard.js [--rounds 5] [--calls 5000] [--fsync-calls 300]
 * Ends with one JSON line: {"bench":"guard",...}.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenFeature, type Client } from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import {
  FileSideEffectLedger,
  MemorySideEffectLedger,
  type SideEffectLedger,
} from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
const ROUNDS = arg('rounds', 5);
const CALLS = arg('calls', 5_000);
const FSYNC_CALLS = arg('fsync-calls', 300);

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const us = (ns: bigint) => Number(ns) / 1000;

const noop = async (_signal: AbortSignal): Promise<number> => 1;

async function timeDirect(n: number): Promise<number[]> {
  const out: number[] = [];
  const signal = new AbortController().signal;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await noop(signal);
    out.push(us(process.hrtime.bigint() - t0));
  }
  return out;
}

let run = 0;
async function timeGuard(
  client: Client,
  ledger: SideEffectLedger,
  n: number,
  recheck: boolean,
): Promise<number[]> {
  const guard = new EffectGuard({ client, ledger, recheckBeforeDispatch: recheck });
  const runId = `run-${++run}`;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await guard.run(
      { context: { tenant: 'acme' }, runId, step: `s${i}`, capability: 'email.send' },
      noop,
    );
    out.push(us(process.hrtime.bigint() - t0));
  }
  await guard.close();
  return out;
}

async function main() {
  const store = new MemoryFlipLogStore();
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { tenant: 'globex' },
    reason: 'bench',
  });
  const provider = KillSwitchProvider.fromStore(store);
  await OpenFeature.setProviderAndWait('bench-guard', provider);
  for (let i = 0; i < 10_000 && provider.failure !== undefined; i++)
    await new Promise((r) => setImmediate(r));
  if (provider.failure !== undefined)
    throw new Error(`provider not fresh: ${provider.failure.detail}`);
  const client = OpenFeature.getClient('bench-guard');
  const dir = await mkdtemp(join(tmpdir(), 'ks-bench-guard-'));

  const variants = {
    direct: async (n: number) => timeDirect(n),
    memory: async (n: number) => timeGuard(client, new MemorySideEffectLedger(), n, true),
    memoryNoRecheck: async (n: number) => timeGuard(client, new MemorySideEffectLedger(), n, false),
    fileFsync: async (n: number, r: number) => {
      const l = new FileSideEffectLedger({ path: join(dir, `fsync-${r}.jsonl`) });
      try {
        return await timeGuard(client, l, n, true);
      } finally {
        await l.close();
      }
    },
    fileNoFsync: async (n: number, r: number) => {
      const l = new FileSideEffectLedger({ path: join(dir, `nofsync-${r}.jsonl`), fsync: false });
      try {
        return await timeGuard(client, l, n, true);
      } finally {
        await l.close();
      }
    },
  } as const;
  type V = keyof typeof variants;
  const calls = (v: V) => (v === 'fileFsync' ? FSYNC_CALLS : CALLS);

  // Warm up (JIT) every path once.
  for (const v of Object.keys(variants) as V[]) await variants[v](Math.min(calls(v), 1000), -1);

  const p50: Record<V, number[]> = {
    direct: [],
    memory: [],
    memoryNoRecheck: [],
    fileFsync: [],
    fileNoFsync: [],
  };
  const p99: Record<V, number[]> = {
    direct: [],
    memory: [],
    memoryNoRecheck: [],
    fileFsync: [],
    fileNoFsync: [],
  };
  const overheadMemory: number[] = [];
  const overheadFsync: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = (Object.keys(variants) as V[]).sort(() => (r % 2 ? 1 : -1)); // alternate order per round
    const round = {} as Record<V, number>;
    for (const v of order) {
      const xs = await variants[v](calls(v), r);
      round[v] = quantile(xs, 0.5);
      p50[v].push(round[v]);
      p99[v].push(quantile(xs, 0.99));
    }
    overheadMemory.push(round.memory - round.direct);
    overheadFsync.push(round.fileFsync - round.direct);
  }
  await rm(dir, { recursive: true, force: true });
  await OpenFeature.close();

  const summary = Object.fromEntries(
    (Object.keys(variants) as V[]).map((v) => [
      v,
      { p50Us: +median(p50[v]).toFixed(2), p99Us: +median(p99[v]).toFixed(2) },
    ]),
  ) as Record<V, { p50Us: number; p99Us: number }>;
  console.log(
    `guard.run around a no-op effect (${ROUNDS} rounds; ${CALLS} calls, ${FSYNC_CALLS} with fsync; medians of rounds)`,
  );
  for (const [v, s] of Object.entries(summary)) {
    console.log(
      `  ${v.padEnd(16)} p50 ${s.p50Us.toFixed(2).padStart(9)} µs   p99 ${s.p99Us.toFixed(2).padStart(9)} µs`,
    );
  }
  const result = {
    bench: 'guard',
    rounds: ROUNDS,
    calls: CALLS,
    fsyncCalls: FSYNC_CALLS,
    ...summary,
    overheadP50Us: {
      memory: +median(overheadMemory).toFixed(2),
      fileFsync: +median(overheadFsync).toFixed(2),
    },
    ratioP50: {
      memoryVsDirect: +(summary.memory.p50Us / summary.direct.p50Us).toFixed(1),
      recheckCost: +(summary.memory.p50Us / summary.memoryNoRecheck.p50Us).toFixed(2),
      fsyncVsMemory: +(summary.fileFsync.p50Us / summary.memory.p50Us).toFixed(1),
    },
  };
  console.log(
    `  guard overhead p50: memory ledger ${result.overheadP50Us.memory} µs, file ledger with fsync ${result.overheadP50Us.fileFsync} µs`,
  );
  console.log(JSON.stringify(result));
}

await main();
