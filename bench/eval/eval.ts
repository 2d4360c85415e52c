/**
 * Evaluation cost of the kill switch (KS-3.2.5, KS-1.4.2).
 *
 * (a) One `getBooleanValue('kill-switch', true, ctx)` through an OpenFeature client bound to
 *     KillSwitchProvider vs one bound to the SDK's InMemoryProvider with an equivalent flag
 *     (halted for one tenant, running otherwise). Interleaved rounds, medians, ratio.
 * (b) A raw KillState.match lookup with 10 and with 100,000 active run halts.
 * (c) Run trees (KS-1.5.3): (a) again with contexts carrying a `runPath` of depth 1, 4 and 16
 *     (the InMemoryProvider's flag is the array rule another backend would use: halted when
 *     `runPath` holds a halted run), and (b) with `runPath` depth 1, 4 and 16 over 100,000
 *     active run halts (one probe per ancestor; half the contexts have a halted root, half miss).
 *     Targets: ratio <= 1.15 at depth 4; lookup < 1 µs at depth 16.
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

const FLAT_CTX = { tenant: 'acme', runId: 'r1', capability: 'email.send' };

/** A context `depth` runs deep (root first), none of them halted. */
function treeContext(depth: number): {
  tenant: string;
  runId: string;
  capability: string;
  runPath: string[];
} {
  const runPath = Array.from({ length: depth }, (_, i) => `run-${i}.0123456789abcdef01234567`);
  return { tenant: 'acme', runId: runPath[depth - 1]!, capability: 'email.send', runPath };
}

async function timeEvaluations(
  client: Client,
  n: number,
  ctx: Record<string, string | string[]> = FLAT_CTX,
): Promise<number> {
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

async function providerRatio(ctx: Record<string, string | string[]> = FLAT_CTX, label = 'flat') {
  const store = new MemoryFlipLogStore();
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { tenant: 'globex' },
    reason: 'bench',
  });
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { runId: 'halted-run' },
    reason: 'bench',
  });
  const ks = KillSwitchProvider.fromStore(store);
  await OpenFeature.setProviderAndWait(`bench-kill-switch-${label}`, ks);
  await untilFresh(ks);
  await OpenFeature.setProviderAndWait(
    `bench-in-memory-${label}`,
    new InMemoryProvider({
      'kill-switch': {
        variants: { halted: true, running: false },
        defaultVariant: 'running',
        disabled: false,
        // The rule a team writes on another backend: tenant, or a halted run in runPath.
        contextEvaluator: (c) =>
          c.tenant === 'globex' || (Array.isArray(c.runPath) && c.runPath.includes('halted-run'))
            ? 'halted'
            : 'running',
      },
    }),
  );
  const clients = {
    killSwitch: OpenFeature.getClient(`bench-kill-switch-${label}`),
    inMemory: OpenFeature.getClient(`bench-in-memory-${label}`),
  };
  // Warm up both paths (JIT) before measuring.
  await timeEvaluations(clients.killSwitch, 20_000, ctx);
  await timeEvaluations(clients.inMemory, 20_000, ctx);
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
        a += await timeEvaluations(clients.killSwitch, BLOCK, ctx);
        b += await timeEvaluations(clients.inMemory, BLOCK, ctx);
      } else {
        b += await timeEvaluations(clients.inMemory, BLOCK, ctx);
        a += await timeEvaluations(clients.killSwitch, BLOCK, ctx);
      }
    }
    a /= blocks;
    b /= blocks;
    ksRounds.push(a);
    imRounds.push(b);
    ratios.push(a / b);
    console.log(
      `${label} round ${r + 1}: kill-switch ${a.toFixed(3)} µs/eval, in-memory ${b.toFixed(3)} µs/eval, ratio ${(a / b).toFixed(3)}`,
    );
  }
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

/** ns per lookup for contexts `depth` runs deep; even contexts have a halted root, odd miss. */
function timeTreeLookups(
  state: KillState,
  n: number,
  halts: number,
  depth: number,
  frozen: boolean,
): number {
  const ctxs: KillContext[] = [];
  for (let i = 0; i < 1024; i++) {
    const root = i % 2 === 0 ? `run-${(i * 7919) % halts}` : `other-${i}`;
    const runPath = [root];
    for (let d = 1; d < depth; d++) runPath.push(`child-${i}-${d}.0123456789abcdef01234567`);
    ctxs.push({
      tenant: `tenant-${i % 17}`,
      feature: 'auto-reply',
      runId: runPath[depth - 1]!,
      capability: 'email.send',
      // A run scope hands every effect of its run the same frozen array (cached per state
      // version); a caller that builds a fresh array per call pays one probe per ancestor.
      runPath: frozen ? Object.freeze(runPath) : runPath,
    });
  }
  let hits = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (state.match(ctxs[i & 1023]!) !== undefined) hits++;
  const ns = Number(process.hrtime.bigint() - t0);
  if (hits !== n / 2) throw new Error(`expected half the lookups to hit, got ${hits} of ${n}`);
  return ns / n;
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
  const state = await stateWithRunHalts(100_000);
  const depths: Record<string, number> = {};
  for (const frozen of [false, true]) {
    for (const depth of [1, 4, 16]) {
      const n = LOOKUPS - (LOOKUPS % 2);
      timeTreeLookups(state, n, 100_000, depth, frozen); // warm-up
      const rounds: number[] = [];
      for (let r = 0; r < ROUNDS; r++)
        rounds.push(timeTreeLookups(state, n, 100_000, depth, frozen));
      depths[`${frozen ? 'scope' : 'fresh'}${depth}`] = median(rounds);
      console.log(
        `KillState.match, runPath depth ${depth} (${frozen ? 'frozen, as a run scope gives it' : 'a fresh array per call'}), 100,000 active run halts: median ${median(rounds).toFixed(1)} ns/lookup (target < 1000 at depth 16)`,
      );
    }
  }
  return { ns10: out[10]!, ns100k: out[100_000]!, base: out.base, depths };
}

const evalFigures = await providerRatio();
console.log(
  `getBooleanValue median: kill-switch ${evalFigures.killSwitchUs.toFixed(3)} µs, in-memory ${evalFigures.inMemoryUs.toFixed(3)} µs, ratio ${evalFigures.ratio.toFixed(3)} (target <= 1.15)`,
);
const tree: Record<number, Awaited<ReturnType<typeof providerRatio>>> = {};
for (const depth of [1, 4, 16]) {
  tree[depth] = await providerRatio(treeContext(depth), `depth-${depth}`);
  console.log(
    `runPath depth ${depth}: kill-switch ${tree[depth].killSwitchUs.toFixed(3)} µs, in-memory (array rule) ${tree[depth].inMemoryUs.toFixed(3)} µs, ratio ${tree[depth].ratio.toFixed(3)}${depth === 4 ? ' (target <= 1.15)' : ''}`,
  );
}
await OpenFeature.clearProviders();
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
    treeRatioDepth1: round(tree[1]!.ratio),
    treeRatioDepth4: round(tree[4]!.ratio),
    treeRatioDepth16: round(tree[16]!.ratio),
    treeUsPerEvalDepth4: round(tree[4]!.killSwitchUs),
    treeRatioDepth4Ok: tree[4]!.ratio <= 1.15,
    treeMatchNsDepth1: round(lookup.depths['scope1']!),
    treeMatchNsDepth4: round(lookup.depths['scope4']!),
    treeMatchNsDepth16: round(lookup.depths['scope16']!),
    treeMatchDepth16Ok: lookup.depths['scope16']! < 1000,
    treeMatchNsFreshArrayDepth1: round(lookup.depths['fresh1']!),
    treeMatchNsFreshArrayDepth4: round(lookup.depths['fresh4']!),
    treeMatchNsFreshArrayDepth16: round(lookup.depths['fresh16']!),
    loadavg: (await import('node:os')).loadavg().map(round),
  }),
);

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
