/**
 * bench:gateway (KS-15): what the kill-switch gateway adds and how fast it stops, in one run on
 * loopback, everything in this process (control plane, upstreams, gateway, clients):
 *   - LLM: added latency of a non-streamed chat completion, and of the time to the first streamed
 *     token, direct to the upstream vs through the gateway (same keep-alive client);
 *   - MCP: added latency of one `tools/call` (the MCP SDK client to a Streamable HTTP upstream,
 *     direct vs through the gateway's /mcp);
 *   - halt -> upstream cancel: a tenant halt while an MCP call is in flight, from the flip
 *     reaching the gateway (its provider's change event) to the upstream tool's signal aborting,
 *     and from the flip request to the same;
 *   - 200 concurrent streams: throughput (tokens/s) and memory (RSS, heap) sampled while they run,
 *     then one global halt and the time until every stream was cut.
 * Calls interleave direct and through in each round; p50/p99 per round, medians over rounds. The
 * ledger is the in-memory one (a file ledger adds an fdatasync per intent and per outcome). Targets
 * (issue 17): added p50 <= 1 ms, halt -> upstream cancel p99 <= 10 ms, flat memory.
 *
 * Run: npm run bench:gateway [-- --rounds 5 --calls 300 --halts 40 --streams 200]
 * Ends with one JSON line: {"bench":"gateway",...}.
 */
import { randomUUID } from 'node:crypto';
import { createServer, request, Agent, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ProviderEvents } from '@openfeature/server-sdk';
import { z } from 'zod';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { startSlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import { Gateway } from '../../src/gateway/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { startControlPlane } from '../../src/server/index.js';
import { median, quantile, round } from '../internal/stats.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
const ROUNDS = arg('rounds', 5);
const CALLS = arg('calls', 300);
const HALTS = arg('halts', 40);
const STREAMS = arg('streams', 200);
const ADMIN = 'bench-admin-token-0123456789';
const WORKER = 'bench-worker-token-0123456789';

const agent = new Agent({ keepAlive: true, maxSockets: 512 });

/** POSTs JSON; resolves at the first body byte (`firstByte`) and at the end (`end`), in ms. */
function post(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; firstByte: number; end: number; text: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
      },
      (res: IncomingMessage) => {
        let first = 0;
        let text = '';
        res.on('data', (c: Buffer) => {
          if (first === 0) first = performance.now() - t0;
          text += c.toString();
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            firstByte: first,
            end: performance.now() - t0,
            text,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A Streamable HTTP MCP upstream with a no-op tool and a slow tool that reports its cancel time. */
async function mcpUpstream(onCancel: (at: number) => void) {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const make = () => {
    const s = new McpServer({ name: 'bench-upstream', version: '1.0.0' });
    s.registerTool('noop', { inputSchema: { i: z.number() } }, async ({ i }) => ({
      content: [{ type: 'text', text: String(i) }],
    }));
    s.registerTool('wait', { inputSchema: { ms: z.number() } }, async ({ ms }, extra) => {
      await new Promise<void>((res) => {
        const t = setTimeout(res, ms);
        extra.signal.addEventListener('abort', () => {
          onCancel(performance.now());
          clearTimeout(t);
          res();
        });
      });
      return { content: [{ type: 'text', text: 'done' }] };
    });
    return s;
  };
  const http = createServer(async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    let t = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (t === undefined) {
      const nt: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, nt);
        },
      });
      await make().connect(nt);
      t = nt;
    }
    await t.handleRequest(req, res);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    async close() {
      for (const t of transports.values()) await t.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
}

async function main(): Promise<void> {
  const load0 = loadavg()[0]!;
  const cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    host: '127.0.0.1',
    port: 0,
    maxFlipsPerSecond: 1_000_000,
    heartbeatMs: 500,
    staleAfterMs: 3000,
    auth: new TokenAuthenticator({
      tokens: [
        { name: 'admin', token: ADMIN, role: 'admin' },
        { name: 'gw', token: WORKER, role: 'worker', workers: ['*'] },
      ],
    }),
    logger: { info() {}, warn() {}, error: (m) => console.error(m) },
  });
  const llm = await startSlowLlmServer({ tokens: 1, tokenIntervalMs: 0 });
  let cancelAt = 0;
  const upstream = await mcpUpstream((at) => (cancelAt = at));
  const gw = await Gateway.start({
    config: {
      workerId: 'bench-gateway',
      controlPlane: { urls: [cp.url], token: WORKER, staleAfterMs: 3000, heartbeatMs: 500 },
      listen: { port: 0 },
      llm: { openai: llm.url },
      mcp: { upstreams: { up: { url: upstream.url } } },
    },
    ledger: new MemorySideEffectLedger(),
    logger: { info() {}, warn: (m) => console.error(m) },
  });
  await gw.waitFresh();
  const flip = async (selector: Record<string, string>, reason: string) => {
    const r = await fetch(`${cp.url}/v1/flips`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'halt', selector, reason }),
    });
    if (r.status !== 201) throw new Error(`flip ${r.status}`);
  };
  const direct = new Client({ name: 'bench', version: '1' });
  await direct.connect(new StreamableHTTPClientTransport(new URL(upstream.url)));
  const through = new Client({ name: 'bench', version: '1' });
  await through.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`)));

  const chat = JSON.stringify({ model: 'm', messages: [], max_tokens: 1 });
  const chatStream = JSON.stringify({ model: 'm', messages: [], max_tokens: 1, stream: true });
  const rows: Record<string, { direct: number[][]; through: number[][] }> = {
    llm: { direct: [], through: [] },
    ttft: { direct: [], through: [] },
    mcp: { direct: [], through: [] },
  };
  // Warm-up: JIT, sockets, sessions.
  for (let i = 0; i < 100; i++) {
    await post(`${llm.url}/v1/chat/completions`, chat);
    await post(`${gw.url}/v1/chat/completions`, chat);
    await direct.callTool({ name: 'noop', arguments: { i } });
    await through.callTool({ name: 'up__noop', arguments: { i } });
  }
  for (let r = 0; r < ROUNDS; r++) {
    const cur = {
      llm: { direct: [] as number[], through: [] as number[] },
      ttft: { direct: [] as number[], through: [] as number[] },
      mcp: { direct: [] as number[], through: [] as number[] },
    };
    for (let i = 0; i < CALLS; i++) {
      cur.llm.direct.push((await post(`${llm.url}/v1/chat/completions`, chat)).end);
      cur.llm.through.push((await post(`${gw.url}/v1/chat/completions`, chat)).end);
      cur.ttft.direct.push((await post(`${llm.url}/v1/chat/completions`, chatStream)).firstByte);
      cur.ttft.through.push((await post(`${gw.url}/v1/chat/completions`, chatStream)).firstByte);
      let t = performance.now();
      await direct.callTool({ name: 'noop', arguments: { i } });
      cur.mcp.direct.push(performance.now() - t);
      t = performance.now();
      await through.callTool({ name: 'up__noop', arguments: { i } });
      cur.mcp.through.push(performance.now() - t);
    }
    for (const k of Object.keys(rows)) {
      rows[k]!.direct.push(cur[k as keyof typeof cur].direct);
      rows[k]!.through.push(cur[k as keyof typeof cur].through);
    }
  }
  const latency: Record<string, Record<string, number>> = {};
  for (const [k, v] of Object.entries(rows)) {
    const d = v.direct.map(stats);
    const t = v.through.map(stats);
    const added = d.map((x, i) => t[i]!.p50 - x.p50);
    latency[k] = {
      directP50Ms: round(median(d.map((x) => x.p50)), 3),
      directP99Ms: round(median(d.map((x) => x.p99)), 3),
      throughP50Ms: round(median(t.map((x) => x.p50)), 3),
      throughP99Ms: round(median(t.map((x) => x.p99)), 3),
      addedP50Ms: round(median(added), 3),
      addedP99Ms: round(median(d.map((x, i) => t[i]!.p99 - x.p99)), 3),
    };
    console.log(
      `${k.padEnd(5)} direct p50 ${latency[k]!.directP50Ms} ms p99 ${latency[k]!.directP99Ms} ms | through p50 ${latency[k]!.throughP50Ms} ms p99 ${latency[k]!.throughP99Ms} ms | added p50 ${latency[k]!.addedP50Ms} ms`,
    );
  }

  // Halt -> upstream cancel.
  let appliedAt = 0;
  gw.provider.events.addHandler(
    ProviderEvents.ConfigurationChanged,
    () => (appliedAt = performance.now()),
  );
  const fromApplied: number[] = [];
  const fromRequest: number[] = [];
  for (let i = 0; i < HALTS; i++) {
    cancelAt = 0;
    appliedAt = 0;
    const tenant = `bench-${i}`;
    const call = through
      .callTool({
        name: 'up__wait',
        arguments: { ms: 10_000 },
        _meta: { 'dev.killswitch/lineage': { tenant, runPath: [] } },
      })
      .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20)); // the call reaches the upstream
    const sent = performance.now();
    await flip({ tenant }, 'bench halt');
    await call;
    for (let w = 0; w < 200 && cancelAt === 0; w++) await new Promise((r) => setTimeout(r, 1));
    if (cancelAt === 0 || appliedAt === 0) throw new Error('the upstream never saw the cancel');
    fromApplied.push(cancelAt - appliedAt);
    fromRequest.push(cancelAt - sent);
  }
  const fa = stats(fromApplied);
  const fr = stats(fromRequest);
  console.log(
    `halt -> upstream cancel: from the gateway applying the flip p50 ${round(fa.p50, 3)} ms p99 ${round(fa.p99, 3)} ms; from the flip request p50 ${round(fr.p50, 2)} ms p99 ${round(fr.p99, 2)} ms (${HALTS} halts)`,
  );

  // 200 concurrent streams.
  await llm.close();
  const slow = await startSlowLlmServer({ tokens: 400, tokenIntervalMs: 10 });
  await gw.close();
  const gw2 = await Gateway.start({
    config: {
      workerId: 'bench-gateway-2',
      controlPlane: { urls: [cp.url], token: WORKER, staleAfterMs: 3000, heartbeatMs: 500 },
      listen: { port: 0 },
      llm: { openai: slow.url },
    },
    ledger: new MemorySideEffectLedger(),
    logger: { info() {}, warn: (m) => console.error(m) },
  });
  await gw2.waitFresh();
  global.gc?.();
  const mem0 = process.memoryUsage();
  const samples: { rss: number; heap: number }[] = [];
  let bytes = 0;
  let ended = 0;
  let cutAt = 0;
  const streamsDone = Array.from(
    { length: STREAMS },
    () =>
      new Promise<void>((resolve) => {
        const req = request(
          `${gw2.url}/v1/chat/completions`,
          {
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', 'x-killswitch-tenant': 'streams' },
          },
          (res) => {
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => {
              ended++;
              if (ended === STREAMS) cutAt = performance.now();
              resolve();
            });
          },
        );
        req.on('error', () => resolve());
        req.end(JSON.stringify({ model: 'm', messages: [], max_tokens: 400, stream: true }));
      }),
  );
  const t0 = performance.now();
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    samples.push({ rss: m.rss, heap: m.heapUsed });
  }, 250);
  await new Promise((r) => setTimeout(r, 3000));
  const tokensPerSecond = bytes / 120 / ((performance.now() - t0) / 1000); // ~120 bytes per token event
  const haltSent = performance.now();
  await flip({ tenant: 'streams' }, 'cut 200 streams');
  await Promise.all(streamsDone);
  clearInterval(sampler);
  const cutMs = cutAt - haltSent;
  const mb = (x: number) => round(x / 1024 / 1024, 1);
  const firstHalf = samples.slice(0, Math.max(1, samples.length >> 1));
  const secondHalf = samples.slice(samples.length >> 1);
  const memory = {
    rssBeforeMb: mb(mem0.rss),
    heapBeforeMb: mb(mem0.heapUsed),
    rssFirstHalfMedianMb: mb(median(firstHalf.map((s) => s.rss))),
    rssSecondHalfMedianMb: mb(median(secondHalf.map((s) => s.rss))),
    heapFirstHalfMedianMb: mb(median(firstHalf.map((s) => s.heap))),
    heapSecondHalfMedianMb: mb(median(secondHalf.map((s) => s.heap))),
    samples: samples.length,
  };
  console.log(
    `${STREAMS} concurrent streams: ~${round(tokensPerSecond, 0)} token events/s through the gateway; RSS ${memory.rssBeforeMb} -> ${memory.rssFirstHalfMedianMb} -> ${memory.rssSecondHalfMedianMb} MB, heap ${memory.heapBeforeMb} -> ${memory.heapFirstHalfMedianMb} -> ${memory.heapSecondHalfMedianMb} MB; one halt cut all ${STREAMS} in ${round(cutMs, 1)} ms (from the flip request)`,
  );
  const load1 = loadavg()[0]!;
  console.log(
    `load average (1 min): ${round(load0, 2)} at start, ${round(load1, 2)} at end; 2 cores shared with other work`,
  );

  await direct.close();
  await through.close();
  await gw2.close();
  await slow.close();
  await upstream.close();
  await cp.close();
  agent.destroy();
  console.log(
    JSON.stringify({
      bench: 'gateway',
      at: new Date().toISOString(),
      load1: [round(load0, 2), round(load1, 2)],
      rounds: ROUNDS,
      calls: CALLS,
      ledger: 'memory',
      latency,
      haltToUpstreamCancel: {
        fromAppliedP50Ms: round(fa.p50, 3),
        fromAppliedP99Ms: round(fa.p99, 3),
        fromRequestP50Ms: round(fr.p50, 2),
        fromRequestP99Ms: round(fr.p99, 2),
        halts: HALTS,
      },
      streams: {
        count: STREAMS,
        tokenEventsPerSecond: round(tokensPerSecond, 0),
        cutAllMs: round(cutMs, 1),
        memory,
      },
      targets: { addedP50Ms: 1, haltToCancelP99Ms: 10 },
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
