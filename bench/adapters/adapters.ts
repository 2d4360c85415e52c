/**
 * What each framework adapter adds per tool call (KS-14.1.1): one no-op tool call through the
 * framework's tool entry point, bare vs guarded by the adapter, in the same run, with the
 * in-memory ledger and KillSwitchProvider over an in-memory flip log (one unrelated halt active):
 *   - AI SDK: the tool's `execute` (as `generateText` calls it) vs the adapter's `tools()` wrapper,
 *   - OpenAI Agents: the `FunctionTool.invoke` the runner calls vs the adapter's clone,
 *   - MCP: `Client.callTool` to a real `McpServer` over the SDK's in-memory transport vs
 *     `guardMcpClient(...).callTool`,
 *   - LangGraph: the tool call `createAgent` makes (`tool.invoke(toolCall)`) vs the same through
 *     the kill-switch middleware's `wrapToolCall`; and `langgraph-toolnode`, the call with the
 *     config and per-call merged signal `createAgent`'s ToolNode passes (closer to a real agent),
 *   - Mastra: a `createTool` tool's `execute(input, context)` as the agent loop calls it (the
 *     context carrying `agent.toolCallId`) vs the adapter's `tools()` copy.
 * Every call is timed on its own. Within a round, bare and guarded calls alternate in blocks of
 * `--block` calls (50 by default; the first block's side alternates), so a change in the machine's
 * load during the round falls on both sides alike; p50/p99 are medians over rounds, and the added
 * time is guarded - bare within each round, at p50 and at p99 (median over rounds). CPU time per
 * call (process.cpuUsage over each block, user + system) is printed too: on a loaded machine it
 * moves less than wall time. The target (issue 16) is p50 <= 50 µs added. A first row,
 * `guard.run` alone around a no-op, shows how much of that is the guard itself (two evaluations,
 * intent and outcome in the ledger).
 *
 * It also measures how long a halt takes to abort a tool in flight (KS-14.1.3, target < 5 ms):
 * from the flip reaching the provider (its configuration-changed event) to the tool's signal.
 *
 * Run: npm run bench:adapters [-- --rounds 5 --calls 2000 --block 50 --aborts 50 --cases ai-sdk,mcp]
 * Ends with one JSON line: {"bench":"adapters",...}.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { RunContext, tool as openaiTool, type FunctionTool } from '@openai/agents';
import { OpenFeature, ProviderEvents, type Client as OFClient } from '@openfeature/server-sdk';
import { createTool } from '@mastra/core/tools';
import { jsonSchema, tool as aiTool, type ToolSet } from 'ai';
import { tool as lcTool } from 'langchain';
import { z } from 'zod';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { guardRun as guardAiSdk } from '../../src/adapters/ai-sdk/index.js';
import { killSwitch } from '../../src/adapters/langgraph/index.js';
import { guardRun as guardMastra } from '../../src/adapters/mastra/index.js';
import { guardMcpClient } from '../../src/adapters/mcp/index.js';
import { guardRun as guardOpenAI } from '../../src/adapters/openai-agents/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import { median, quantile, round } from '../internal/stats.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
const ROUNDS = arg('rounds', 5);
const CALLS = arg('calls', 2_000);
const ABORTS = arg('aborts', 50);
/** Calls per block: bare and guarded blocks alternate within a round. */
const BLOCK = Math.min(arg('block', 50), CALLS);
/** `--cases ai-sdk,mcp`: only these frameworks (for profiling one adapter); all by default. */
const ONLY = ((i) => (i >= 0 ? process.argv[i + 1]?.split(',') : undefined))(
  process.argv.indexOf('--cases'),
);
const TARGET_ADDED_P50_US = 50;

const us = (ns: bigint) => Number(ns) / 1000;

/** The 1, 5 and 15 minute load averages (`/proc/loadavg`), or 'unknown' off Linux. */
function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

/** One framework: a bare tool call, and a factory of guarded calls for a fresh run. */
interface Case {
  readonly name: string;
  bare(i: number): Promise<unknown>;
  guarded(runId: string): (i: number) => Promise<unknown>;
  close?(): Promise<void>;
}

async function time(n: number, call: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await call(i);
    out.push(us(process.hrtime.bigint() - t0));
  }
  return out.sort((a, b) => a - b);
}

/** One side of a round: every call's wall time (µs) and the CPU time its blocks took (µs). */
interface Side {
  readonly times: number[];
  cpuUs: number;
}

/** Times calls `from`..`from + n - 1` into `side`, adding the block's CPU time. */
async function block(
  side: Side,
  from: number,
  n: number,
  call: (i: number) => Promise<unknown>,
): Promise<void> {
  const c0 = process.cpuUsage();
  for (let i = from; i < from + n; i++) {
    const t0 = process.hrtime.bigint();
    await call(i);
    side.times.push(us(process.hrtime.bigint() - t0));
  }
  const c = process.cpuUsage(c0);
  side.cpuUs += c.user + c.system;
}

/**
 * One round of a case: `calls` bare and `calls` guarded calls (one run), alternating in blocks;
 * `bareFirst` says which side opens each pair of blocks.
 */
async function round1(
  c: Case,
  runId: string,
  calls: number,
  bareFirst: boolean,
): Promise<{ bare: Side; guarded: Side }> {
  const bare: Side = { times: [], cpuUs: 0 };
  const guarded: Side = { times: [], cpuUs: 0 };
  const g = c.guarded(runId);
  const b = (i: number) => c.bare(i);
  for (let from = 0; from < calls; from += BLOCK) {
    const n = Math.min(BLOCK, calls - from);
    if (bareFirst) {
      await block(bare, from, n, b);
      await block(guarded, from, n, g);
    } else {
      await block(guarded, from, n, g);
      await block(bare, from, n, b);
    }
  }
  bare.times.sort((x, y) => x - y);
  guarded.times.sort((x, y) => x - y);
  return { bare, guarded };
}

/** The guard alone around a no-op effect: what every adapter pays at least (bench:guard). */
function guardCase(guard: EffectGuard): Case {
  const noop = async (): Promise<number> => 1;
  return {
    name: 'guard.run alone',
    bare: () => noop(),
    guarded(runId) {
      return (i) =>
        guard.run({ context: { tenant: 'acme' }, runId, step: `c${i}`, capability: 'noop' }, noop);
    },
  };
}

async function aiSdkCase(guard: EffectGuard): Promise<Case> {
  const tools = {
    noop: aiTool({
      inputSchema: jsonSchema<{ a: number }>({
        type: 'object',
        properties: { a: { type: 'number' } },
      }),
      execute: async () => 1,
    }),
  } as unknown as ToolSet;
  const opts = (i: number) => ({ toolCallId: `c${i}`, messages: [], context: undefined });
  return {
    name: 'ai-sdk',
    bare: (i) => tools['noop']!.execute!({ a: 1 }, opts(i)) as Promise<unknown>,
    guarded(runId) {
      const t = guardAiSdk(guard, { runId, tenant: 'acme' }).tools(tools);
      return (i) => t['noop']!.execute!({ a: 1 }, opts(i)) as Promise<unknown>;
    },
  };
}

async function openAiCase(guard: EffectGuard): Promise<Case> {
  const noop = openaiTool({
    name: 'noop',
    description: 'no-op',
    parameters: z.object({ a: z.number() }),
    execute: async () => 1,
  }) as unknown as FunctionTool;
  const ctx = new RunContext({});
  const details = (i: number) => ({
    toolCall: {
      type: 'function_call' as const,
      callId: `c${i}`,
      name: 'noop',
      arguments: '{"a":1}',
    },
  });
  return {
    name: 'openai-agents',
    bare: (i) => noop.invoke(ctx, '{"a":1}', details(i)),
    guarded(runId) {
      const t = guardOpenAI(guard, { runId, tenant: 'acme' }).tool(noop);
      return (i) => t.invoke(ctx, '{"a":1}', details(i));
    },
  };
}

async function mcpCase(guard: EffectGuard): Promise<Case> {
  const server = new McpServer({ name: 'bench', version: '1.0.0' });
  server.registerTool('noop', { description: 'no-op' }, async () => ({
    content: [{ type: 'text', text: '1' }],
  }));
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(b);
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(a);
  return {
    name: 'mcp',
    bare: () => client.callTool({ name: 'noop', arguments: {} }),
    guarded(runId) {
      const mcp = guardMcpClient(client, guard, { runId, tenant: 'acme' });
      return (i) => mcp.callTool({ name: 'noop', arguments: {} }, undefined, { callId: `c${i}` });
    },
    async close() {
      await client.close();
      await server.close();
    },
  };
}

async function langGraphCase(guard: EffectGuard): Promise<Case> {
  const noop = lcTool(async () => '1', {
    name: 'noop',
    description: 'no-op',
    schema: z.object({ a: z.number() }),
  });
  const ks = killSwitch(guard, { tenant: 'acme' });
  const wrap = ks.middleware.wrapToolCall!;
  // What createAgent's tool node does for one call: invoke the tool with the tool call.
  const handler = (req: { tool: unknown; toolCall: unknown }) =>
    (req.tool as typeof noop).invoke(req.toolCall as never) as never;
  const request = (i: number, threadId: string) => ({
    toolCall: { id: `c${i}`, name: 'noop', args: { a: 1 }, type: 'tool_call' as const },
    tool: noop,
    state: { messages: [] },
    runtime: { configurable: { thread_id: threadId } },
  });
  return {
    name: 'langgraph',
    bare: (i) => handler(request(i, 'bare')),
    guarded(runId) {
      return (i) => wrap(request(i, runId) as never, handler as never) as Promise<unknown>;
    },
  };
}

/**
 * LangGraph as `createAgent`'s ToolNode calls a tool (langchain 1.5): the tool call with
 * `type: 'tool_call'` and the node's config with its `toolCallId` and a signal merged per call by
 * `AbortSignal.any` from the graph's signal, which LangGraph always gives a node. The same call,
 * bare and through the middleware (whose tool view then merges that signal with the guard's).
 */
async function langGraphToolNodeCase(guard: EffectGuard): Promise<Case> {
  const noop = lcTool(async () => '1', {
    name: 'noop',
    description: 'no-op',
    schema: z.object({ a: z.number() }),
  });
  const ks = killSwitch(guard, { tenant: 'acme' });
  const wrap = ks.middleware.wrapToolCall!;
  const graphSignal = new AbortController().signal;
  type Req = { tool: unknown; toolCall: { id: string }; runtime: Record<string, unknown> };
  // ToolNode's base handler: invoke the request's tool with the node's config.
  const handler = (req: Req) =>
    (req.tool as typeof noop).invoke({ ...req.toolCall, type: 'tool_call' } as never, {
      ...req.runtime,
      config: req.runtime,
      toolCallId: req.toolCall.id,
      signal: AbortSignal.any([graphSignal]),
    }) as never;
  const request = (i: number, threadId: string) => ({
    toolCall: { id: `c${i}`, name: 'noop', args: { a: 1 }, type: 'tool_call' as const },
    tool: noop,
    state: { messages: [] },
    runtime: { configurable: { thread_id: threadId }, signal: graphSignal },
  });
  return {
    name: 'langgraph-toolnode',
    bare: (i) => handler(request(i, 'bare')),
    guarded(runId) {
      return (i) => wrap(request(i, runId) as never, handler as never) as Promise<unknown>;
    },
  };
}

async function mastraCase(guard: EffectGuard): Promise<Case> {
  const tools = {
    noop: createTool({
      id: 'noop',
      description: 'no-op',
      inputSchema: z.object({ a: z.number() }),
      execute: async () => 1,
    }),
  };
  type Execute = (input: unknown, context: unknown) => Promise<unknown>;
  // What the agent loop hands a tool: its id under `agent`, the run's signal.
  const signal = new AbortController().signal;
  const context = (i: number) => ({ agent: { toolCallId: `c${i}` }, abortSignal: signal });
  const bare = tools.noop.execute as unknown as Execute;
  return {
    name: 'mastra',
    bare: (i) => bare({ a: 1 }, context(i)),
    guarded(runId) {
      const t = guardMastra(guard, { runId, tenant: 'acme' }).tools(tools);
      const execute = t.noop.execute as unknown as Execute;
      return (i) => execute({ a: 1 }, context(i));
    },
  };
}

/** Flip-to-abort latency of a tool in flight, through the AI SDK wrapper (the guard's watcher). */
async function abortLatency(
  guard: EffectGuard,
  client: OFClient,
  store: MemoryFlipLogStore,
  n: number,
): Promise<number[]> {
  let arrivedAt = 0;
  client.addHandler(ProviderEvents.ConfigurationChanged, () => (arrivedAt = performance.now()));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const runId = `abort-${i}`;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    let abortedAt = 0;
    const tools = {
      wait: aiTool({
        inputSchema: jsonSchema<{ a: number }>({ type: 'object' }),
        execute: (_i, o) =>
          new Promise((_, reject) => {
            o.abortSignal!.addEventListener('abort', () => {
              abortedAt = performance.now();
              reject(o.abortSignal!.reason as Error);
            });
            started();
          }),
      }),
    } as unknown as ToolSet;
    const t = guardAiSdk(guard, { runId }).tools(tools);
    const p = (
      t['wait']!.execute!(
        { a: 1 },
        { toolCallId: 'c', messages: [], context: undefined },
      ) as Promise<unknown>
    ).catch(() => undefined);
    await running;
    await store.append({
      action: 'halt',
      selector: { runId },
      actor: 'bench',
      reason: 'abort latency',
    });
    await p;
    out.push(abortedAt - arrivedAt);
  }
  return out.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const store = new MemoryFlipLogStore();
  await store.append({
    actor: 'bench',
    action: 'halt',
    selector: { tenant: 'globex' },
    reason: 'bench',
  });
  const provider = KillSwitchProvider.fromStore(store);
  await OpenFeature.setProviderAndWait('bench-adapters', provider);
  for (let i = 0; i < 10_000 && provider.failure !== undefined; i++)
    await new Promise((r) => setImmediate(r));
  if (provider.failure !== undefined)
    throw new Error(`provider not fresh: ${provider.failure.detail}`);
  const client = OpenFeature.getClient('bench-adapters');
  const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger() });

  const cases = [
    guardCase(guard),
    await aiSdkCase(guard),
    await openAiCase(guard),
    await mcpCase(guard),
    await langGraphCase(guard),
    await langGraphToolNodeCase(guard),
    await mastraCase(guard),
  ].filter((c) => ONLY === undefined || ONLY.includes(c.name));
  let runs = 0;
  // Warm up (JIT) every path once.
  for (const c of cases) {
    await time(Math.min(CALLS, 500), (i) => c.bare(i));
    await time(Math.min(CALLS, 500), c.guarded(`warm-${++runs}`));
  }
  interface Row {
    bare: number[][];
    guarded: number[][];
    added: number[];
    addedP99: number[];
    cpu: number[][];
  }
  const rows: Record<string, Row> = {};
  for (const c of cases) rows[c.name] = { bare: [], guarded: [], added: [], addedP99: [], cpu: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cases) {
      const row = rows[c.name]!;
      // Alternate which side opens, so drift in the machine's load falls on both.
      const { bare, guarded } = await round1(c, `round-${r}-${++runs}`, CALLS, r % 2 === 0);
      const b = bare.times;
      const g = guarded.times;
      row.bare.push([quantile(b, 0.5), quantile(b, 0.99)]);
      row.guarded.push([quantile(g, 0.5), quantile(g, 0.99)]);
      row.added.push(quantile(g, 0.5) - quantile(b, 0.5));
      row.addedP99.push(quantile(g, 0.99) - quantile(b, 0.99));
      row.cpu.push([bare.cpuUs / b.length, guarded.cpuUs / g.length]);
    }
  }
  const aborts = await abortLatency(guard, client, store, ABORTS);
  for (const c of cases) await c.close?.();
  await guard.close();
  await OpenFeature.close();

  const summary = Object.fromEntries(
    Object.entries(rows).map(([name, row]) => [
      name,
      {
        bareP50Us: round(median(row.bare.map((x) => x[0]!))),
        bareP99Us: round(median(row.bare.map((x) => x[1]!))),
        guardedP50Us: round(median(row.guarded.map((x) => x[0]!))),
        guardedP99Us: round(median(row.guarded.map((x) => x[1]!))),
        addedP50Us: round(median(row.added)),
        addedP99Us: round(median(row.addedP99)),
        bareCpuUsPerCall: round(median(row.cpu.map((x) => x[0]!))),
        guardedCpuUsPerCall: round(median(row.cpu.map((x) => x[1]!))),
        addedCpuUsPerCall: round(median(row.cpu.map((x) => x[1]! - x[0]!))),
      },
    ]),
  );
  const load = loadAverage();
  console.log(
    `One no-op tool call through each framework, bare vs guarded (${ROUNDS} rounds x ${CALLS} calls, blocks of ${BLOCK} alternating; medians of rounds; memory ledger; load ${load})`,
  );
  for (const [name, s] of Object.entries(summary)) {
    console.log(
      `  ${name.padEnd(19)} bare p50 ${s.bareP50Us.toFixed(2).padStart(8)} µs  p99 ${s.bareP99Us.toFixed(2).padStart(8)} µs   guarded p50 ${s.guardedP50Us.toFixed(2).padStart(8)} µs  p99 ${s.guardedP99Us.toFixed(2).padStart(8)} µs   added p50 ${s.addedP50Us.toFixed(2).padStart(7)} µs  p99 ${s.addedP99Us.toFixed(2).padStart(8)} µs  cpu ${s.addedCpuUsPerCall.toFixed(2).padStart(7)} µs/call ${s.addedP50Us <= TARGET_ADDED_P50_US ? '(<= 50 µs target)' : '(OVER the 50 µs target)'}`,
    );
  }
  const abortP50 = quantile(aborts, 0.5);
  const abortP99 = quantile(aborts, 0.99);
  console.log(
    `  flip reaching the provider -> tool signal aborted (${ABORTS} halts): p50 ${abortP50.toFixed(3)} ms, p99 ${abortP99.toFixed(3)} ms, max ${aborts.at(-1)!.toFixed(3)} ms (target < 5 ms)`,
  );
  console.log(
    JSON.stringify({
      bench: 'adapters',
      rounds: ROUNDS,
      calls: CALLS,
      block: BLOCK,
      load,
      targetAddedP50Us: TARGET_ADDED_P50_US,
      ...summary,
      abortLatencyMs: {
        n: ABORTS,
        p50: round(abortP50, 3),
        p99: round(abortP99, 3),
        max: round(aborts.at(-1)!, 3),
      },
    }),
  );
}

await main();
