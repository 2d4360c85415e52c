/**
 * bench:gateway (KS-15): what the kill-switch gateway adds and how fast it stops, in one run on
 * loopback: the control plane and the MCP upstream in processes of their own (as in production:
 * neither shares the gateway's event loop; times across processes on the system clock (epoch ms, sub-ms)), the LLM
 * upstream, the gateway and the clients in this one:
 *   - LLM: added latency of a non-streamed chat completion, and of the time to the first streamed
 *     token, direct to the upstream vs through the gateway (same keep-alive client);
 *   - MCP: added latency of one `tools/call` (the MCP SDK client to a Streamable HTTP upstream,
 *     direct vs through the gateway's /mcp), to the upstream in its own process (`mcp`) and to
 *     the same server in this process (`mcpLocal`), and this process's CPU time per call on each
 *     path (through - direct: the gateway's per-call work, little inflated by load);
 *   - halt -> upstream cancel: a tenant halt while an MCP call is in flight, from the flip
 *     reaching the gateway (its provider's change event) to the upstream tool's signal aborting,
 *     and from the flip request to the same; p50/p90/p99/max of each component (SSE parser ->
 *     applied -> guard abort -> cancel handed to node:http -> written to the socket -> upstream
 *     HTTP server -> upstream SDK aborts the tool), this process's CPU in the gateway's share,
 *     the slowest halts one by one with the largest event-loop stall and GC pause in each
 *     (use --halts 200 for a p99 that is not the maximum);
 *   - 200 concurrent streams: throughput (tokens/s) and memory (RSS, heap) sampled while they run,
 *     then one global halt and the time until every stream was cut.
 * Calls interleave direct and through in each round; p50/p99 per round, medians over rounds. The
 * ledger is the in-memory one (a file ledger adds an fdatasync per intent and per outcome). Targets
 * (issue 17): added p50 <= 1 ms, halt -> upstream cancel p99 <= 10 ms, flat memory.
 *
 * Run: npm run bench:gateway [-- --rounds 5 --calls 300 --halts 40 --streams 200]
 * Ends with one JSON line: {"bench":"gateway",...}.
 */
import { fork } from 'node:child_process';
import { request, Agent, ClientRequest, type IncomingMessage } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { EventSource } from 'eventsource';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ProviderEvents } from '@openfeature/server-sdk';
import { startSlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import { Gateway } from '../../src/gateway/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { systemClock } from '../../src/internal/clock.js';
import { forkControlPlane } from '../../src/drill/run/fork-control-plane.js';
import { startBenchMcpUpstream } from './mcp-upstream-process.js';
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

/** The MCP upstream in its own process (bench/gateway/mcp-upstream-process.ts). */
async function forkMcpUpstream() {
  const child = fork(fileURLToPath(new URL('./mcp-upstream-process.js', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [],
  });
  const seen = { started: 0, cancelled: 0, postAt: 0 };
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the MCP upstream exited (${code})`)));
    child.on('message', (m: { type: string; url?: string; at?: number; postAt?: number }) => {
      if (m.type === 'ready') resolve(m.url!);
      else if (m.type === 'started') seen.started = m.at!;
      else if (m.type === 'cancelled') {
        seen.cancelled = m.at!;
        seen.postAt = m.postAt!;
      }
    });
  });
  return {
    url,
    seen,
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.send({ type: 'stop' });
      await exited;
    },
  };
}

/** The in-memory ledger, noting when the gateway recorded a call aborted (its halt fired). */
class TimedLedger extends MemorySideEffectLedger {
  abortedAt = 0;
  override append(event: Parameters<MemorySideEffectLedger['append']>[0]): Promise<void> {
    if (event.status === 'aborted' && this.abortedAt === 0) this.abortedAt = systemClock.now();
    return super.append(event);
  }
}

/** Polls (every ms) until `ready()`; false after `ms`. */
async function waitFor(ready: () => boolean, ms: number): Promise<boolean> {
  const end = systemClock.now() + ms;
  while (!ready()) {
    if (systemClock.now() > end) return false;
    await new Promise((r) => setTimeout(r, 1));
  }
  return true;
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
}

async function main(): Promise<void> {
  const load0 = loadavg()[0]!;
  // The control plane runs in a process of its own, as in production (the drill does the same):
  // its work on a flip (answering the request, fanning out, taking acknowledgements) does not
  // share the gateway's event loop, so the halt path measures the gateway.
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-gateway-'));
  const cp = await forkControlPlane(
    fileURLToPath(new URL('../../src/drill/servers/control-plane-process.js', import.meta.url)),
    {
      dataDir,
      staleAfterMs: 3000,
      heartbeatMs: 500,
      tokens: [
        { name: 'admin', token: ADMIN, role: 'admin' },
        { name: 'gw', token: WORKER, role: 'worker', workers: ['*'] },
      ],
    },
  );
  const llm = await startSlowLlmServer({ tokens: 1, tokenIntervalMs: 0 });
  const upstream = await forkMcpUpstream();
  const seen = upstream.seen;
  // The same upstream server in this process too: the floor and the added time with the upstream
  // sharing the client's and the gateway's event loop (as before 7e60dde) in the same run, next
  // to the upstream in its own process.
  const local = await startBenchMcpUpstream(() => undefined);
  const ledger = new TimedLedger();
  const gw = await Gateway.start({
    config: {
      workerId: 'bench-gateway',
      controlPlane: { urls: [cp.url], token: WORKER, staleAfterMs: 3000, heartbeatMs: 500 },
      listen: { port: 0 },
      llm: { openai: llm.url },
      mcp: { upstreams: { up: { url: upstream.url }, local: { url: local.url } } },
    },
    ledger,
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
  const directLocal = new Client({ name: 'bench', version: '1' });
  await directLocal.connect(new StreamableHTTPClientTransport(new URL(local.url)));

  const chat = JSON.stringify({ model: 'm', messages: [], max_tokens: 1 });
  const chatStream = JSON.stringify({ model: 'm', messages: [], max_tokens: 1, stream: true });
  const rows: Record<string, { direct: number[][]; through: number[][] }> = {
    llm: { direct: [], through: [] },
    ttft: { direct: [], through: [] },
    mcp: { direct: [], through: [] },
    mcpLocal: { direct: [], through: [] },
  };
  // CPU time of this process per call (client, and through: the gateway too), microseconds: the
  // gateway's per-call work is through - direct, which a loaded machine inflates far less than
  // wall time (it is not time spent waiting to be scheduled).
  const cpu: Record<string, { direct: number; through: number; n: number }> = {
    mcp: { direct: 0, through: 0, n: 0 },
    mcpLocal: { direct: 0, through: 0, n: 0 },
  };
  const timed = async (
    key: 'mcp' | 'mcpLocal',
    path: 'direct' | 'through',
    out: number[],
    fn: () => Promise<unknown>,
  ): Promise<void> => {
    const c = process.cpuUsage();
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
    const d = process.cpuUsage(c);
    cpu[key]![path] += d.user + d.system;
  };
  // Warm-up: JIT, sockets, sessions.
  for (let i = 0; i < 100; i++) {
    await post(`${llm.url}/v1/chat/completions`, chat);
    await post(`${gw.url}/v1/chat/completions`, chat);
    await direct.callTool({ name: 'noop', arguments: { i } });
    await through.callTool({ name: 'up__noop', arguments: { i } });
    await directLocal.callTool({ name: 'noop', arguments: { i } });
    await through.callTool({ name: 'local__noop', arguments: { i } });
  }
  for (let r = 0; r < ROUNDS; r++) {
    const cur = {
      llm: { direct: [] as number[], through: [] as number[] },
      ttft: { direct: [] as number[], through: [] as number[] },
      mcp: { direct: [] as number[], through: [] as number[] },
      mcpLocal: { direct: [] as number[], through: [] as number[] },
    };
    for (let i = 0; i < CALLS; i++) {
      cur.llm.direct.push((await post(`${llm.url}/v1/chat/completions`, chat)).end);
      cur.llm.through.push((await post(`${gw.url}/v1/chat/completions`, chat)).end);
      cur.ttft.direct.push((await post(`${llm.url}/v1/chat/completions`, chatStream)).firstByte);
      cur.ttft.through.push((await post(`${gw.url}/v1/chat/completions`, chatStream)).firstByte);
      await timed('mcp', 'direct', cur.mcp.direct, () =>
        direct.callTool({ name: 'noop', arguments: { i } }),
      );
      await timed('mcp', 'through', cur.mcp.through, () =>
        through.callTool({ name: 'up__noop', arguments: { i } }),
      );
      await timed('mcpLocal', 'direct', cur.mcpLocal.direct, () =>
        directLocal.callTool({ name: 'noop', arguments: { i } }),
      );
      await timed('mcpLocal', 'through', cur.mcpLocal.through, () =>
        through.callTool({ name: 'local__noop', arguments: { i } }),
      );
      cpu['mcp']!.n++;
      cpu['mcpLocal']!.n++;
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
      `${k.padEnd(8)} direct p50 ${latency[k]!.directP50Ms} ms p99 ${latency[k]!.directP99Ms} ms | through p50 ${latency[k]!.throughP50Ms} ms p99 ${latency[k]!.throughP99Ms} ms | added p50 ${latency[k]!.addedP50Ms} ms`,
    );
  }
  const cpuPerCall: Record<string, Record<string, number>> = {};
  for (const [k, c] of Object.entries(cpu)) {
    cpuPerCall[k] = {
      directUs: round(c.direct / c.n, 1),
      throughUs: round(c.through / c.n, 1),
      addedUs: round((c.through - c.direct) / c.n, 1),
    };
    console.log(
      `${k.padEnd(8)} CPU of this process per call: direct ${cpuPerCall[k]!.directUs} us, through ${cpuPerCall[k]!.throughUs} us: the gateway adds ${cpuPerCall[k]!.addedUs} us`,
    );
  }

  // Halt -> upstream cancel, by component, each on the system clock (epoch ms, sub-ms, agreeing
  // across processes): the SSE parser hands the gateway's flip source the `flip` event
  // (`received`); the source applies it (the provider's change event, `applied`); the guard's
  // watch aborts the call (the ledger's `aborted` row); the gateway hands the cancel's POST to
  // node:http (`cancelSent`) and node:http writes it to the socket (`cancelWritten`); the
  // upstream's HTTP server starts the request (`postAt`); the upstream SDK aborts the tool. With
  // the largest event-loop stall of this process in each halt's window (a 1 ms ticker) and the GC
  // pauses that overlapped it, so a slow halt says where its time went.
  const probe = {
    receivedAt: 0,
    appliedAt: 0,
    cancelSentAt: 0,
    cancelWrittenAt: 0,
    cancelReused: true,
    /** This process's CPU time (user + system, µs) at `applied` and when the cancel was written. */
    cpuAtApplied: 0,
    cpuAtWritten: 0,
  };
  const cpuNow = () => {
    const c = process.cpuUsage();
    return c.user + c.system;
  };
  const dispatch = EventSource.prototype.dispatchEvent;
  EventSource.prototype.dispatchEvent = function (this: EventSource, ev: Event): boolean {
    if (ev.type === 'flip' && probe.receivedAt === 0) probe.receivedAt = systemClock.now();
    return dispatch.call(this, ev);
  };
  const end = ClientRequest.prototype.end;
  ClientRequest.prototype.end = function (this: ClientRequest, ...args: unknown[]) {
    if (
      typeof args[0] === 'string' &&
      args[0].includes('"notifications/cancelled"') &&
      probe.cancelSentAt === 0
    ) {
      probe.cancelSentAt = systemClock.now();
      // node:http writes the request to its socket right after this event, in the same tick
      // ('finish' comes later, after whatever else that tick runs: not the time it was written).
      this.once('socket', (s) => {
        probe.cancelWrittenAt = systemClock.now();
        probe.cpuAtWritten = cpuNow();
        probe.cancelReused = !s.connecting;
      });
    }
    return (end as (...a: unknown[]) => ClientRequest).apply(this, args);
  } as typeof ClientRequest.prototype.end;
  gw.provider.events.addHandler(ProviderEvents.ConfigurationChanged, () => {
    if (probe.appliedAt !== 0) return;
    probe.appliedAt = systemClock.now();
    probe.cpuAtApplied = cpuNow();
  });
  const gcs: { start: number; ms: number }[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gcs.push({ start: performance.timeOrigin + e.startTime, ms: e.duration });
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const ticks: number[] = [];
  const ticker = setInterval(() => ticks.push(systemClock.now()), 1);
  const rowsOfHalts: {
    fromRequest: number;
    receivedToApplied: number;
    appliedToAborted: number;
    abortedToCancelSent: number;
    appliedToCancelSent: number;
    cancelSentToWritten: number;
    appliedToWritten: number;
    appliedToUpstream: number;
    cpuAppliedToWrittenMs: number;
    writtenToUpstream: number;
    upstreamToToolAborted: number;
    fromApplied: number;
    fromReceived: number;
    stallMs: number;
    gcMs: number;
    reused: boolean;
  }[] = [];
  let missed = 0;
  // How late this process's event loop ran meanwhile: on a loaded machine the OS, not the
  // gateway, decides when the gateway's process runs.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  for (let i = 0; i < HALTS; i++) {
    seen.started = 0;
    seen.cancelled = 0;
    seen.postAt = 0;
    ledger.abortedAt = 0;
    Object.assign(probe, {
      receivedAt: 0,
      appliedAt: 0,
      cancelSentAt: 0,
      cancelWrittenAt: 0,
      cancelReused: true,
      cpuAtApplied: 0,
      cpuAtWritten: 0,
    });
    const tenant = `bench-${i}`;
    const call = through
      .callTool({
        name: 'up__wait',
        arguments: { ms: 10_000 },
        _meta: { 'dev.killswitch/lineage': { tenant, runPath: [] } },
      })
      .catch(() => undefined);
    // The call runs upstream before the halt (a loaded machine can take a while to get there).
    if (!(await waitFor(() => seen.started !== 0, 5000)))
      throw new Error('the slow tool never started upstream');
    await new Promise((r) => setTimeout(r, 2));
    const sent = systemClock.now();
    await flip({ tenant }, 'bench halt');
    await call;
    if (
      !(await waitFor(
        () => seen.cancelled !== 0 && probe.appliedAt !== 0 && probe.cancelWrittenAt !== 0,
        5000,
      ))
    ) {
      missed++;
      continue;
    }
    const from = probe.receivedAt || probe.appliedAt;
    const to = seen.cancelled;
    let stall = 0;
    for (let k = 1; k < ticks.length; k++) {
      if (ticks[k]! < from) continue;
      stall = Math.max(stall, ticks[k]! - ticks[k - 1]!);
      if (ticks[k - 1]! > to) break;
    }
    ticks.length = 0;
    const gcMs = gcs
      .filter((g) => g.start < to && g.start + g.ms > from)
      .reduce((a, g) => a + g.ms, 0);
    gcs.length = 0;
    rowsOfHalts.push({
      fromRequest: seen.cancelled - sent,
      receivedToApplied: probe.appliedAt - from,
      appliedToAborted: ledger.abortedAt - probe.appliedAt,
      abortedToCancelSent: probe.cancelSentAt - ledger.abortedAt,
      appliedToCancelSent: probe.cancelSentAt - probe.appliedAt,
      cancelSentToWritten: probe.cancelWrittenAt - probe.cancelSentAt,
      appliedToWritten: probe.cancelWrittenAt - probe.appliedAt,
      appliedToUpstream: seen.postAt - probe.appliedAt,
      cpuAppliedToWrittenMs: (probe.cpuAtWritten - probe.cpuAtApplied) / 1000,
      writtenToUpstream: seen.postAt - probe.cancelWrittenAt,
      upstreamToToolAborted: seen.cancelled - seen.postAt,
      fromApplied: seen.cancelled - probe.appliedAt,
      fromReceived: seen.cancelled - from,
      stallMs: stall,
      gcMs,
      reused: probe.cancelReused,
    });
  }
  loop.disable();
  clearInterval(ticker);
  gcObserver.disconnect();
  EventSource.prototype.dispatchEvent = dispatch;
  ClientRequest.prototype.end = end;
  const loopDelay = {
    p50Ms: round(loop.percentile(50) / 1e6, 2),
    p99Ms: round(loop.percentile(99) / 1e6, 2),
    maxMs: round(loop.max / 1e6, 2),
  };
  if (rowsOfHalts.length === 0) throw new Error('the upstream never saw a cancel');
  const dist = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return {
      p50Ms: round(quantile(s, 0.5), 3),
      p90Ms: round(quantile(s, 0.9), 3),
      p99Ms: round(quantile(s, 0.99), 3),
      maxMs: round(s[s.length - 1]!, 3),
    };
  };
  const col = (k: keyof (typeof rowsOfHalts)[number]) => rowsOfHalts.map((r) => Number(r[k]));
  const fa = stats(col('fromApplied'));
  const fr = stats(col('fromRequest'));
  const components = {
    receivedToApplied: dist(col('receivedToApplied')),
    appliedToAborted: dist(col('appliedToAborted')),
    abortedToCancelSent: dist(col('abortedToCancelSent')),
    appliedToCancelSent: dist(col('appliedToCancelSent')),
    cancelSentToWritten: dist(col('cancelSentToWritten')),
    writtenToUpstream: dist(col('writtenToUpstream')),
    upstreamToToolAborted: dist(col('upstreamToToolAborted')),
    // The gateway's whole share (flip applied -> cancel on the wire), and this process's CPU in it.
    appliedToWritten: dist(col('appliedToWritten')),
    cpuAppliedToWritten: dist(col('cpuAppliedToWrittenMs')),
    // Up to the upstream's HTTP server: what is left is the upstream's own (its SDK).
    appliedToUpstream: dist(col('appliedToUpstream')),
  };
  const fromReceived = dist(col('fromReceived'));
  const fromAppliedDist = dist(col('fromApplied'));
  console.log(
    `halt -> upstream cancel (${rowsOfHalts.length} halts${missed > 0 ? `, ${missed} not seen upstream` : ''}): from the gateway applying the flip p50/p90/p99/max ${Object.values(fromAppliedDist).join('/')} ms; from the SSE parser's flip event ${Object.values(fromReceived).join('/')} ms; from the flip request p50 ${round(fr.p50, 2)} ms p99 ${round(fr.p99, 2)} ms`,
  );
  for (const [k, v] of Object.entries(components))
    console.log(`  ${k.padEnd(22)} p50/p90/p99/max ${Object.values(v).join('/')} ms`);
  const slowest = [...rowsOfHalts].sort((a, b) => b.fromReceived - a.fromReceived).slice(0, 5);
  for (const r of slowest)
    console.log(
      `  slow halt ${round(r.fromReceived, 2)} ms: received->applied ${round(r.receivedToApplied, 2)}, ->aborted ${round(r.appliedToAborted, 2)}, ->cancel sent ${round(r.abortedToCancelSent, 2)}, ->written ${round(r.cancelSentToWritten, 2)} [CPU applied->written ${round(r.cpuAppliedToWrittenMs, 2)}] (${r.reused ? 'open connection' : 'new connection'}), ->upstream ${round(r.writtenToUpstream, 2)}, ->tool aborted ${round(r.upstreamToToolAborted, 2)}; largest stall of this process ${round(r.stallMs, 1)} ms, GC ${round(r.gcMs, 2)} ms`,
    );
  const stalled = rowsOfHalts.filter((r) => r.stallMs > 5).length;
  const newConnections = rowsOfHalts.filter((r) => !r.reused).length;
  console.log(
    `  halts with a stall > 5 ms in this process: ${stalled}; with GC in the window: ${rowsOfHalts.filter((r) => r.gcMs > 0).length}; cancels on a new connection: ${newConnections}; event-loop delay meanwhile p50/p99/max ${loopDelay.p50Ms}/${loopDelay.p99Ms}/${loopDelay.maxMs} ms`,
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
  await directLocal.close();
  await through.close();
  await gw2.close();
  await slow.close();
  await upstream.close();
  await local.close();
  await cp.stop();
  await rm(dataDir, { recursive: true, force: true });
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
      cpuPerCall,
      haltToUpstreamCancel: {
        fromAppliedP50Ms: round(fa.p50, 3),
        fromAppliedP99Ms: round(fa.p99, 3),
        fromApplied: fromAppliedDist,
        fromReceived,
        fromRequestP50Ms: round(fr.p50, 2),
        fromRequestP99Ms: round(fr.p99, 2),
        halts: rowsOfHalts.length,
        missed,
        components,
        stalledHalts: stalled,
        newConnections,
        loopDelay,
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
