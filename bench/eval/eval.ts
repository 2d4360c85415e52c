/**
 * Evaluation cost of the kill switch (KS-3.2.5, KS-1.4.2).
 *
 * (a) One `getBooleanValue('kill-switch', true, ctx)` through an OpenFeature client bound to
 *     KillSwitchProvider vs one bound to the SDK's InMemoryProvider with an equivalent flag
 *     (halted for one tenant, running otherwise). Interleaved rounds, medians, ratio.
 * (b) A raw KillState.match lookup with 10 and with 100,000 active run halts.
 *
 * Run: npm run build && node dist/bench/eval/eval.js [--rounds 7] [--iterations 50000] [--lookups 1000000]
 * Ends with one JSON line: {"bench":"eval",...}.
 */
import { InMemoryProvider, OpenFeature, type Client } from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { KillState } from '../../src/model/kill-state.js';
import type { KillContext } from '../../src/model/selector.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const ROUNDS = arg('rounds', 7);
const ITERATIONS = arg('iterations', 50_000);
const LOOKUPS = arg('lookups', 1_000_000);
/** Evaluations per interleaved block. */
const BLOCK = 2_000;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timeEvaluations(client: Client, n: number): Promise<number> {
  const ctx = { tenant: 'acme', runId: 'r1', capability: 'email.send' };
  let halted = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    if (await client.getBooleanValue('kill-switch', true, ctx)) halted++;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  if (halted !== 0) throw new Error(`expected running answers, got ${halted} halted`);
  return ns / n / 1000; // µs per evaluation
}

async function untilFresh(p: KillSwitchProvider): Promise<void> {
  for (let i = 0; i < 10_000 && p.failure !== undefined; i++) {
    await new Promise((r) => setImmediate(r));
  }
  if (p.failure !== undefined) throw new Error(`provider not fresh: ${p.failure.detail}`);
}

async function providerRatio() {
  const store = new MemoryFlipLogStore();
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { tenant: 'globex' },
    reason: 'bench',
  });
  const ks = KillSwitchProvider.fromStore(store);
  await OpenFeature.setProviderAndWait('bench-kill-switch', ks);
  await untilFresh(ks);
  await OpenFeature.setProviderAndWait(
    'bench-in-memory',
    new InMemoryProvider({
      'kill-switch': {
        variants: { halted: true, running: false },
        defaultVariant: 'running',
        disabled: false,
        contextEvaluator: (ctx) => (ctx.tenant === 'globex' ? 'halted' : 'running'),
      },
    }),
  );
  const clients = {
    killSwitch: OpenFeature.getClient('bench-kill-switch'),
    inMemory: OpenFeature.getClient('bench-in-memory'),
  };
  // Warm up both paths (JIT) before measuring.
  await timeEvaluations(clients.killSwitch, 20_000);
  await timeEvaluations(clients.inMemory, 20_000);
  const ksRounds: number[] = [];
  const imRounds: number[] = [];
  const ratios: number[] = [];
  const blocks = Math.max(1, Math.round(ITERATIONS / BLOCK));
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate short blocks (and their order) so load drift on a shared machine hits both sides.
    let a = 0;
    let b = 0;
    for (let k = 0; k < blocks; k++) {
      if ((k + r) % 2 === 0) {
        a += await timeEvaluations(clients.killSwitch, BLOCK);
        b += await timeEvaluations(clients.inMemory, BLOCK);
      } else {
        b += await timeEvaluations(clients.inMemory, BLOCK);
        a += await timeEvaluations(clients.killSwitch, BLOCK);
      }
    }
    a /= blocks;
    b /= blocks;
    ksRounds.push(a);
    imRounds.push(b);
    ratios.push(a / b);
    console.log(
      `round ${r + 1}: kill-switch ${a.toFixed(3)} µs/eval, in-memory ${b.toFixed(3)} µs/eval, ratio ${(a / b).toFixed(3)}`,
    );
  }
  await OpenFeature.clearProviders();
  await store.close();
  return {
    killSwitchUs: median(ksRounds),
    inMemoryUs: median(imRounds),
    ratio: median(ratios),
  };
}

async function stateWithRunHalts(n: number): Promise<KillState> {
  const store = new MemoryFlipLogStore();
  for (let i = 0; i < n; i++) {
    await store.append({
      actor: 'bench',
      action: 'halt',
      selector: { runId: `run-${i}` },
      reason: 'bench',
    });
  }
  // A few other shapes, as a real fleet would have.
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { tenant: 't-1' },
    reason: 'bench',
  });
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { capability: 'c-1', tenant: 't-2' },
    reason: 'bench',
  });
  const state = KillState.fold(await store.read());
  await store.close();
  return state;
}

function timeLookups(state: KillState, n: number, halts: number): number {
  const ctxs: KillContext[] = [];
  for (let i = 0; i < 1024; i++) {
    // Half hit an active run halt, half miss.
    const run = i % 2 === 0 ? `run-${(i * 7919) % halts}` : `other-${i}`;
    ctxs.push({
      tenant: `tenant-${i % 17}`,
      feature: 'auto-reply',
      runId: run,
      capability: 'email.send',
    });
  }
  let hits = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (state.match(ctxs[i & 1023]!) !== undefined) hits++;
  const ns = Number(process.hrtime.bigint() - t0);
  if (hits === 0) throw new Error('no lookup hit');
  return ns / n; // ns per lookup
}

/** Baseline on the same machine and moment: one Map.get of a string key in a 100k-entry map. */
function timeMapGet(n: number): number {
  const m = new Map<string, number>();
  for (let i = 0; i < 100_000; i++) m.set(`run-${i}`, i);
  const keys: string[] = [];
  for (let i = 0; i < 1024; i++)
    keys.push(i % 2 === 0 ? `run-${(i * 7919) % 100_000}` : `other-${i}`);
  let hits = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (m.get(keys[i & 1023]!) !== undefined) hits++;
  const ns = Number(process.hrtime.bigint() - t0);
  if (hits === 0) throw new Error('no map hit');
  return ns / n;
}

async function lookupCost() {
  const out: Record<string, number> = {};
  timeMapGet(LOOKUPS);
  const base: number[] = [];
  for (let r = 0; r < ROUNDS; r++) base.push(timeMapGet(LOOKUPS));
  out.base = median(base);
  console.log(`baseline Map.get (100k string keys): median ${out.base.toFixed(1)} ns/lookup`);
  for (const n of [10, 100_000]) {
    const state = await stateWithRunHalts(n);
    timeLookups(state, LOOKUPS, n); // warm-up
    const rounds: number[] = [];
    for (let r = 0; r < ROUNDS; r++) rounds.push(timeLookups(state, LOOKUPS, n));
    out[n] = median(rounds);
    console.log(
      `KillState.match with ${n} active run halts (${state.size} in all): median ${median(rounds).toFixed(1)} ns/lookup over ${ROUNDS} rounds of ${LOOKUPS}`,
    );
  }
  return { ns10: out[10]!, ns100k: out[100_000]!, base: out.base };
}

const evalFigures = await providerRatio();
console.log(
  `getBooleanValue median: kill-switch ${evalFigures.killSwitchUs.toFixed(3)} µs, in-memory ${evalFigures.inMemoryUs.toFixed(3)} µs, ratio ${evalFigures.ratio.toFixed(3)} (target <= 1.15)`,
);
const lookup = await lookupCost();
console.log(
  JSON.stringify({
    bench: 'eval',
    node: process.version,
    rounds: ROUNDS,
    iterations: ITERATIONS,
    killSwitchUsPerEval: round(evalFigures.killSwitchUs),
    inMemoryUsPerEval: round(evalFigures.inMemoryUs),
    ratio: round(evalFigures.ratio),
    ratioTarget: 1.15,
    ratioOk: evalFigures.ratio <= 1.15,
    matchNsWith10Halts: round(lookup.ns10),
    matchNsWith100kHalts: round(lookup.ns100k),
    mapGetBaselineNs: round(lookup.base),
    matchTargetNs: 1000,
    matchOk: lookup.ns10 <= 1000 && lookup.ns100k <= 1000,
  }),
);

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
