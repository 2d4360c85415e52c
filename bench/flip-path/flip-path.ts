/**
 * bench/flip-path: what one `POST /v1/flips` costs the control plane, with 0, 100 and 1,000
 * connected workers (RemoteFlipSource subscribers in child processes that apply and acknowledge
 * every flip, as in production), on the memory store and on the file store (fsync on, a temp
 * directory), against a write + fdatasync of the same bytes (the record's line) to a file in the
 * same directory, measured interleaved with the flips in the same run.
 *
 * Server-side cost = from Node parsing the request head (`http.server.request.start`) to the
 * answer's last byte handed to the socket (`http.server.response.finish`), both from
 * node:diagnostics_channel in the server process: body read, authentication, validation, the
 * durable append, the fold, the broadcast to every subscriber, the fleet answer and its JSON. The
 * client is a keep-alive node:http agent in the same process (its own work is not inside that
 * window). Between flips the bench waits until every worker acknowledged (stop complete), so one
 * flip's acknowledgements do not land inside the next flip's window.
 *
 * The HTTP floor: a bare node:http server answering the same POST with the same record, measured
 * in the same window, so what is ours is the difference.
 *
 * Targets (issue 19): memory store p50 <= 0.25 ms; file store p50 <= memory p50 + one fdatasync
 * p50 (same run). With workers connected the window also holds one socket write per worker; the
 * bench measures, in the same run, a bare node:http server writing the same event to as many
 * connections held by the same children (the fan-out floor) and adds it to the memory bound.
 *
 * Usage: node dist/bench/flip-path/flip-path.js [--workers 0,100,1000] [--stores memory,file]
 *   [--flips 200] [--warmup 30] [--procs 4] [--gap 0]
 *   --gap: idle milliseconds before each flip (0: the next flip as soon as the last completed).
 * Profile one flip end to end: `--profile <dir>` starts the children with --cpu-prof there; run
 * the parent itself under `node --cpu-prof --cpu-prof-dir <dir>`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { canonicalJson } from '../../src/model/canonical-json.js';
import type { FlipRecord } from '../../src/model/index.js';
import { encodeFlipEvent } from '../../src/protocol/stream-events.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import type { FlipLogStore } from '../../src/store/index.js';
import type { FromWorker, ToWorker } from '../propagation/subscriber-worker.js';
import { quantile, round } from '../internal/stats.js';

const TOKEN = 'bench-flip-path-admin-token-0123456789';
const args = process.argv.slice(2);
const arg = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const WORKERS = arg('workers', '0,100,1000').split(',').map(Number);
const STORES = arg('stores', 'memory,file').split(',') as ('memory' | 'file')[];
const FLIPS = Number(arg('flips', '200'));
const WARMUP = Number(arg('warmup', '30'));
const PROCS = Number(arg('procs', '4'));
const GAP_MS = Number(arg('gap', '0'));
const PROFILE_DIR = args.includes('--profile') ? arg('profile', '') : undefined;
const STALE_MS = 3000;
const HEARTBEAT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms3 = (x: number) => round(x, 3);

/** Server-side time of each request, by its IncomingMessage. */
const started = new WeakMap<IncomingMessage, { t: number; cpu: NodeJS.CpuUsage }>();
let lastFlip: { ms: number; cpuMs: number } | undefined;
const onStart = (m: unknown): void => {
  const { request: req } = m as { request: IncomingMessage };
  if (req.method === 'POST' && req.url === '/v1/flips')
    started.set(req, { cpu: process.cpuUsage(), t: performance.now() });
};
const onFinish = (m: unknown): void => {
  const t1 = performance.now();
  const { request: req } = m as { request: IncomingMessage; response: ServerResponse };
  const s = started.get(req);
  if (s === undefined) return;
  const cpu = process.cpuUsage(s.cpu);
  lastFlip = { ms: t1 - s.t, cpuMs: (cpu.user + cpu.system) / 1000 };
};

class Child {
  readonly proc: ChildProcess;
  readonly #waiters = new Map<string, (m: FromWorker) => void>();

  constructor() {
    this.proc = fork(new URL('../propagation/subscriber-worker.js', import.meta.url), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: PROFILE_DIR !== undefined ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] : [],
    });
    this.proc.on('message', (m: FromWorker) => {
      if (m.type === 'error') {
        console.error(`child error: ${m.message}`);
        process.exitCode = 1;
      }
      this.#waiters.get(m.type)?.(m);
    });
  }

  send(m: ToWorker): void {
    this.proc.send(m);
  }

  next(type: string, timeoutMs: number): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`child timed out waiting for ${type}`)),
        timeoutMs,
      );
      this.#waiters.set(type, (m) => {
        clearTimeout(t);
        this.#waiters.delete(type);
        resolve(m);
      });
    });
  }

  async stop(): Promise<void> {
    this.send({ type: 'stop' });
    await this.next('stopped', 10_000).catch(() => undefined);
    if (this.proc.exitCode === null) {
      await Promise.race([new Promise((r) => this.proc.once('exit', r)), sleep(3000)]);
    }
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const floorAgent = new Agent({ keepAlive: true, maxSockets: 1 });

/**
 * The HTTP floor: a bare node:http server answering `POST /v1/flips` as cheaply as a JSON API
 * can (read the body, JSON.parse, answer the last record as JSON with a content length). What
 * node:http alone costs per request on this machine at this moment, measured in the same window.
 */
async function httpFloorServer(): Promise<{
  url: string;
  answer: { flip: FlipRecord | undefined };
  close(): Promise<void>;
}> {
  const answer: { flip: FlipRecord | undefined } = { flip: undefined };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const text = JSON.stringify({ flip: answer.flip, duplicate: false, fleet: null });
      res.writeHead(201, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answer,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function postFlip(url: string, body: object, via: Agent = agent): Promise<{ flip: FlipRecord }> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/flips`,
      {
        method: 'POST',
        agent: via,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) >= 300) reject(new Error(`POST ${res.statusCode}: ${text}`));
          else resolve(JSON.parse(text) as { flip: FlipRecord });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/**
 * The fan-out floor: a bare node:http server whose responses stay open as event streams (the
 * children hold one raw connection per worker to it). Writing one event to all of them, as the
 * control plane's broadcast does (write, uncork), is what any server pays per subscriber.
 */
async function floorServer(): Promise<{
  url: string;
  fanOut(bytes: Buffer): number;
  close(): Promise<void>;
}> {
  const clients = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    req.socket.setNoDelay(true);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write('retry: 1000\n\n');
    clients.add(res);
    req.on('close', () => clients.delete(res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    fanOut(bytes) {
      const t0 = performance.now();
      for (const res of clients) {
        res.write(bytes);
        res.socket?.uncork();
      }
      return performance.now() - t0;
    },
    close: async () => {
      for (const res of clients) res.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface CaseResult {
  readonly store: 'memory' | 'file';
  readonly workers: number;
  readonly flips: number;
  readonly loadAvg1m: number;
  readonly flipP50Ms: number;
  readonly flipP90Ms: number;
  readonly flipP99Ms: number;
  /**
   * Process CPU (user + system, every thread) inside the same window: what the flip costs when
   * the cores are shared (the wall time then also holds waiting for a core).
   */
  readonly flipCpuP50Ms: number;
  readonly fdatasyncP50Ms: number;
  readonly fdatasyncP99Ms: number;
  /** Writing the same event to as many bare connections (0 without workers). */
  readonly fanOutFloorP50Ms: number;
  /** A bare node:http JSON POST of the same body and answer, same window, same run. */
  readonly httpFloorP50Ms: number;
  /** Server-process CPU per flip (the whole process: server, client, the workers' acks). */
  readonly processCpuPerFlipMs: number;
  readonly answerBytes: number;
}

async function runCase(
  storeKind: 'memory' | 'file',
  workers: number,
  dir: string,
  caseNo: number,
): Promise<CaseResult> {
  const store: FlipLogStore =
    storeKind === 'memory'
      ? new MemoryFlipLogStore()
      : new FileFlipLogStore({ path: join(dir, `flips-${caseNo}.jsonl`) });
  await store.open();
  const plane: ControlPlane = await startControlPlane({
    store,
    host: '127.0.0.1',
    port: 0,
    // A benchmark floods flips: lift the per-token rate limit (KS-17.8.3), measured apart.
    maxFlipsPerSecond: 1_000_000,
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    auth: new TokenAuthenticator({ tokens: [{ name: 'bench', token: TOKEN, role: 'admin' }] }),
    logger: { info() {}, warn: (m) => console.error(m), error: (m) => console.error(m) },
  });
  // The baseline: the same bytes, written and fdatasynced to a file in the same directory.
  const base = await open(join(dir, `baseline-${caseNo}.jsonl`), 'a', 0o600);
  const floor = await floorServer();
  const httpFloor = await httpFloorServer();
  const procs = Math.min(PROCS, workers);
  const children = Array.from({ length: procs }, () => new Child());
  try {
    children.forEach((c, i) =>
      c.send({
        type: 'init',
        url: plane.url,
        floorUrl: floor.url,
        token: TOKEN,
        count: Math.floor(workers / procs) + (i < workers % procs ? 1 : 0),
        prefix: `fp${caseNo}-p${i}`,
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
      }),
    );
    await Promise.all(children.map((c) => c.next('ready', 300_000)));
    await sleep(300);
    const flipMs: number[] = [];
    const syncMs: number[] = [];
    const flipCpuMs: number[] = [];
    const fanMs: number[] = [];
    const httpMs: number[] = [];
    let answerBytes = 0;
    let cpu: NodeJS.CpuUsage | undefined;
    for (let i = 0; i < WARMUP + FLIPS; i++) {
      if (i === WARMUP) cpu = process.cpuUsage();
      if (GAP_MS > 0) await sleep(GAP_MS);
      lastFlip = undefined;
      const answer = await postFlip(plane.url, {
        action: 'halt',
        selector: { tenant: `fp-${caseNo}-${i}` },
        reason: 'flip-path bench',
      });
      const took = lastFlip as { ms: number; cpuMs: number } | undefined;
      if (took === undefined) throw new Error('no server-side time for the flip');
      // Every worker applied and acknowledged it (at most 2 s) before anything else happens.
      for (let t = 0; t < 2000 && plane.tracker.status(answer.flip.seq)?.complete !== true; t++) {
        await sleep(1);
      }
      const bytes = Buffer.from(`${canonicalJson(answer.flip)}\n`, 'utf8');
      const s0 = performance.now();
      await base.write(bytes);
      await base.datasync();
      const s1 = performance.now();
      // The HTTP floor, the same body, the same answer.
      httpFloor.answer.flip = answer.flip;
      lastFlip = undefined;
      await postFlip(
        httpFloor.url,
        { action: 'halt', selector: { tenant: `fp-${caseNo}-${i}` }, reason: 'flip-path bench' },
        floorAgent,
      );
      const floorTook = lastFlip as { ms: number; cpuMs: number } | undefined;
      if (floorTook === undefined) throw new Error('no server-side time for the HTTP floor');
      await sleep(1);
      const fan = floor.fanOut(encodeFlipEvent(answer.flip));
      await sleep(1);
      if (i < WARMUP) continue;
      fanMs.push(fan);
      httpMs.push(floorTook.ms);
      flipMs.push(took.ms);
      flipCpuMs.push(took.cpuMs);
      syncMs.push(s1 - s0);
      answerBytes = Buffer.byteLength(JSON.stringify(answer));
    }
    const used = process.cpuUsage(cpu);
    flipMs.sort((a, b) => a - b);
    syncMs.sort((a, b) => a - b);
    flipCpuMs.sort((a, b) => a - b);
    fanMs.sort((a, b) => a - b);
    httpMs.sort((a, b) => a - b);
    return {
      store: storeKind,
      workers,
      flips: FLIPS,
      loadAvg1m: round(loadavg()[0]!, 2),
      flipP50Ms: ms3(quantile(flipMs, 0.5)),
      flipP90Ms: ms3(quantile(flipMs, 0.9)),
      flipP99Ms: ms3(quantile(flipMs, 0.99)),
      flipCpuP50Ms: ms3(quantile(flipCpuMs, 0.5)),
      fdatasyncP50Ms: ms3(quantile(syncMs, 0.5)),
      fdatasyncP99Ms: ms3(quantile(syncMs, 0.99)),
      fanOutFloorP50Ms: ms3(quantile(fanMs, 0.5)),
      httpFloorP50Ms: ms3(quantile(httpMs, 0.5)),
      processCpuPerFlipMs: ms3((used.user + used.system) / 1000 / FLIPS),
      answerBytes,
    };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await base.close();
    await floor.close();
    await httpFloor.close();
    await plane.close();
    await store.close();
  }
}

async function main(): Promise<void> {
  subscribe('http.server.request.start', onStart);
  subscribe('http.server.response.finish', onFinish);
  const dir = await mkdtemp(join(tmpdir(), 'ks-flip-path-'));
  const loadStart = round(loadavg()[0]!, 2);
  const results: CaseResult[] = [];
  let caseNo = 0;
  try {
    for (const workers of WORKERS) {
      for (const store of STORES) {
        const r = await runCase(store, workers, dir, caseNo++);
        results.push(r);
        console.log(
          `${store.padEnd(6)} ${String(workers).padStart(5)} workers: flip p50 ${r.flipP50Ms} ms, p90 ${r.flipP90Ms}, p99 ${r.flipP99Ms}, CPU p50 ${r.flipCpuP50Ms}` +
            ` | write+fdatasync p50 ${r.fdatasyncP50Ms} ms, p99 ${r.fdatasyncP99Ms}` +
            ` | bare fan-out p50 ${r.fanOutFloorP50Ms} ms | bare HTTP POST p50 ${r.httpFloorP50Ms} ms` +
            ` | process CPU/flip ${r.processCpuPerFlipMs} ms | answer ${r.answerBytes} B | load ${r.loadAvg1m}`,
        );
      }
    }
  } finally {
    unsubscribe('http.server.request.start', onStart);
    unsubscribe('http.server.response.finish', onFinish);
    agent.destroy();
    floorAgent.destroy();
    await rm(dir, { recursive: true, force: true });
  }
  // With workers connected, the broadcast's one socket write per worker is in the window too:
  // the memory bound is 0.25 ms plus what the bare server took to write the same event to as
  // many connections in the same run.
  const targets = WORKERS.map((workers) => {
    const mem = results.find((r) => r.store === 'memory' && r.workers === workers);
    const file = results.find((r) => r.store === 'file' && r.workers === workers);
    const memBound = mem ? ms3(0.25 + mem.fanOutFloorP50Ms) : undefined;
    return {
      workers,
      memoryP50Ms: mem?.flipP50Ms,
      memoryBoundMs: memBound,
      memoryOverHttpFloorMs: mem ? ms3(mem.flipP50Ms - mem.httpFloorP50Ms) : undefined,
      memoryOk: mem === undefined ? undefined : mem.flipP50Ms <= memBound!,
      fileP50Ms: file?.flipP50Ms,
      fileBoundMs: mem && file ? ms3(mem.flipP50Ms + file.fdatasyncP50Ms) : undefined,
      fileOk: mem && file ? file.flipP50Ms <= mem.flipP50Ms + file.fdatasyncP50Ms : undefined,
    };
  });
  console.log(
    JSON.stringify({
      bench: 'flip-path',
      date: new Date().toISOString(),
      loadAvg1mStart: loadStart,
      loadAvg1mEnd: round(loadavg()[0]!, 2),
      gapMs: GAP_MS,
      target:
        'memory p50 <= 0.25 ms (+ the bare fan-out to as many connections); file p50 <= memory p50 + fdatasync p50',
      ok: targets.every((t) => t.memoryOk !== false && t.fileOk !== false),
      targets,
      cases: results,
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
