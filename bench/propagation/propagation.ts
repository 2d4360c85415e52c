/**
 * bench/propagation: how long from a flip being accepted (the `POST /v1/flips` answer arriving)
 * until every subscriber applied it, for 1, 100 and 1,000 RemoteFlipSource subscribers spread
 * over a few child processes; and, in the same run and the same child processes, the floor: a
 * bare node:http server writing the same event bytes to as many raw HTTP connections. Per round:
 * the median subscriber and the slowest; reported: medians over rounds, and the ratio to the
 * floor (target: within 1.5x at every size), and the median over rounds of each round's own
 * ratio (`paired…`: ours and the floor of one round run within ~100 ms of each other, so a drift
 * of the machine's load between rounds cancels). The flip is posted over a raw socket whose answer
 * is read only after the round (postFlipDeferred): the requester's parsing is not the fan-out's.
 * Then the time from flip to stop-complete that the server reports (`wait`) with 8 worker
 * processes.
 *
 * Reference (`--package`, on by default): the `eventsource` package alone (KS-6.3.1 requires it),
 * as many bare EventSource clients over the same transport RemoteFlipSource uses, fed the same
 * bytes by a second bare server: the least any subscriber built on the package pays, before
 * parsing, checking, applying or acknowledging anything.
 *
 * Clocks: each child reports `performance.now()`; the parent measures each child's offset by
 * IPC ping (the exchange with the smallest round trip wins; error <= rtt/2, ~0.1 ms) and maps
 * child times onto its own clock.
 *
 * Replicated case (KS-12.6.2): two control planes on one PostgreSQL log, subscribers on replica B,
 * flips posted to replica A; p50 and p99 over every subscriber of every round, from the POST to A
 * being sent and from A's answer. Skipped (and said so in the JSON) when PostgreSQL is unreachable.
 *
 * Replicated stop-complete (`--cases replicated-stop`, KS-6.6): the fleet's answer across
 * replicas. Replicas A and B on one PostgreSQL schema, workers split evenly over them, flips with
 * `wait` posted to A; the stop-complete time A reports (`completeAfterMs`), and the time from the
 * POST sent to its answer, for 8 worker processes (one source each) and for 100 subscribers (4
 * processes); against the same workers all on one replica alone on its own schema, in the same run
 * (target: replicated within 2x of one replica). [--replicated-stop-sizes 8x8,100x4]
 *
 * First flip (`--cases first`): see firstFlipCase; [--first-size 100] [--first-rounds 5]
 * [--first-idle 3000] [--first-warm 5].
 *
 * Usage: node dist/bench/propagation/propagation.js [--sizes 1,100,1000] [--rounds 9] [--procs 4]
 *   [--cases fanout,stop,replicated,first] [--replicated-sizes 1,100] [--pg postgres://…] [--package 0]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { encodeFlipEvent } from '../../src/protocol/stream-events.js';
import { startControlPlane } from '../../src/server/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import type { FlipRecord } from '../../src/model/index.js';
import type { FromWorker, Kind, ToWorker } from './subscriber-worker.js';
import type { Client as PgClient } from 'pg';

const TOKEN = 'bench-propagation-admin-token-0123456789';
const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const CASES = new Set(arg('cases', 'fanout,stop,replicated').split(','));
const SIZES = CASES.has('fanout') ? arg('sizes', '1,100,1000').split(',').map(Number) : [];
const REPLICATED_SIZES = arg('replicated-sizes', '1,100').split(',').map(Number);
const ROUNDS = Number(arg('rounds', '9'));
const PROCS = Number(arg('procs', '4'));
const PACKAGE = arg('package', '1') !== '0';
const STALE_MS = 3000;
const HEARTBEAT_MS = 1000;

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** One child process and its clock offset (child time - parent time). */
class Child {
  /** Every child started, so a failing run can end them all. */
  static readonly all = new Set<Child>();
  readonly proc: ChildProcess;
  offset = 0;
  readonly #waiters = new Map<string, (m: FromWorker) => void>();
  #pending: FromWorker[] = [];

  constructor() {
    Child.all.add(this);
    const profileDir = process.env['PROPAGATION_CPU_PROF'];
    this.proc = fork(new URL('./subscriber-worker.js', import.meta.url), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // PROPAGATION_CPU_PROF=<dir>: each child writes a V8 CPU profile there.
      execArgv:
        profileDir !== undefined
          ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', '100']
          : [],
    });
    this.proc.on('message', (m: FromWorker) => {
      const key = m.type === 'applied' ? `${m.kind}:${m.seq}` : m.type;
      const w = this.#waiters.get(key);
      if (w) {
        this.#waiters.delete(key);
        w(m);
      } else if (m.type === 'error') {
        console.error(`child error: ${m.message}`);
        process.exitCode = 1;
      } else this.#pending.push(m);
    });
  }

  send(m: ToWorker): void {
    this.proc.send(m);
  }

  /** Resolves with the next message under `key` (`ready`, `pong`, `remote:<seq>`, ...). */
  next(key: string, timeoutMs = 60_000): Promise<FromWorker> {
    const i = this.#pending.findIndex(
      (m) => (m.type === 'applied' ? `${m.kind}:${m.seq}` : m.type) === key,
    );
    if (i >= 0) return Promise.resolve(this.#pending.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiters.delete(key);
        reject(new Error(`child timed out waiting for ${key}`));
      }, timeoutMs);
      this.#waiters.set(key, (m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
  }

  async sync(): Promise<void> {
    let best = Infinity;
    for (let id = 0; id < 25; id++) {
      const t0 = performance.now();
      this.send({ type: 'ping', id });
      const m = (await this.next('pong')) as Extract<FromWorker, { type: 'pong' }>;
      const t1 = performance.now();
      if (t1 - t0 < best) {
        best = t1 - t0;
        this.offset = m.t - (t0 + t1) / 2;
      }
    }
  }

  /** Has the child take its CPU baseline for the next round, and waits until it did. */
  async mark(): Promise<void> {
    this.send({ type: 'mark' });
    await this.next('marked');
  }

  async stop(): Promise<void> {
    this.send({ type: 'stop' });
    await this.next('stopped').catch(() => undefined);
    // The child exits by itself once disconnected; give it a moment (it may be writing a
    // --cpu-prof profile) before ending it.
    if (this.proc.exitCode === null) {
      const exited = new Promise<void>((r) => this.proc.once('exit', () => r()));
      await Promise.race([exited, sleep(2000)]);
    }
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

/** How long the subscriber processes sit idle before each round's event. */
const IDLE_BEFORE_ROUND_MS = 20;

/**
 * Takes each child's CPU baseline, then leaves them idle: the mark's IPC wakes them, and an event
 * written right after it (the floor's) found a just-woken process while ours, behind the flip's
 * POST, found one that had gone back to sleep: on these VMs that alone moved the data's arrival
 * at one subscriber from ~0.15 ms to ~0.8 ms in about a third of the rounds. After the pause,
 * both kinds meet a process that has been idle, as a worker is when a real flip comes.
 */
async function markThenIdle(children: readonly Child[]): Promise<void> {
  await Promise.all(children.map((c) => c.mark()));
  await sleep(IDLE_BEFORE_ROUND_MS);
}

interface RoundStats {
  readonly median: number;
  readonly slowest: number;
  readonly missing: number;
  /** CPU the subscriber processes spent from the round's start to their last subscriber (summed). */
  readonly childCpuMs: number;
  /**
   * The median gap between two subscribers of one process applying (receiving), in µs: what one
   * more subscriber costs a process, hardly moved by when the round started or by the wake-up.
   */
  readonly stepUs: number;
  /** The median over processes of their first subscriber's latency (ms): the wake-up and the server. */
  readonly firstMs: number;
}

async function collect(
  children: readonly Child[],
  kind: Kind,
  seq: number,
  t0: number,
): Promise<RoundStats> {
  const lat: number[] = [];
  const gaps: number[] = [];
  const firsts: number[] = [];
  let missing = 0;
  let childCpuMs = 0;
  await Promise.all(
    children.map(async (c) => {
      try {
        const m = (await c.next(`${kind}:${seq}`, 20_000)) as Extract<
          FromWorker,
          { type: 'applied' }
        >;
        for (const t of m.times) lat.push(t - c.offset - t0);
        for (let i = 1; i < m.times.length; i++) gaps.push((m.times[i]! - m.times[i - 1]!) * 1000);
        if (m.times.length > 0) firsts.push(Math.min(...m.times) - c.offset - t0);
        childCpuMs += m.cpuMs;
      } catch {
        missing++;
      }
    }),
  );
  if (process.env['PROPAGATION_DEBUG']) {
    const sorted = [...lat].sort((a, b) => a - b);
    console.log(
      `${kind} ${seq}: ${[0.1, 0.5, 0.9, 0.99, 1].map((q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(2)).join(' ')}`,
    );
  }
  return {
    median: median(lat),
    slowest: Math.max(...lat),
    missing,
    childCpuMs,
    stepUs: median(gaps),
    firstMs: median(firsts),
  };
}

async function postFlip(
  url: string,
  body: object,
): Promise<{ flip: FlipRecord } & Record<string, unknown>> {
  const res = await fetch(`${url}/v1/flips`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST /v1/flips ${res.status}: ${text}`);
  return JSON.parse(text) as { flip: FlipRecord };
}

/**
 * Posts a flip over a raw socket that reads nothing until `answer()` is called: the answer stays
 * in the kernel meanwhile. The fan-out rounds use it so that this process, which also hosts the
 * control plane and the floor's server, does not parse the flip's answer (an HTTP client's work:
 * in production the operator's CLI, on another machine) on the two shared cores while the
 * subscribers are still receiving; the floor's rounds have no request at all. The control plane
 * still builds and writes its answer in the window, as it does in production.
 */
function postFlipDeferred(
  url: string,
  body: object,
): { answer(): Promise<{ flip: FlipRecord } & Record<string, unknown>> } {
  const target = new URL(`${url}/v1/flips`);
  const text = JSON.stringify(body);
  const socket = connect(Number(target.port), target.hostname);
  socket.setNoDelay(true);
  socket.pause();
  socket.write(
    `POST /v1/flips HTTP/1.1\r\nhost: ${target.host}\r\nauthorization: Bearer ${TOKEN}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
  const chunks: Buffer[] = [];
  const ended = new Promise<string>((resolve, reject) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', reject);
  });
  return {
    answer: async () => {
      socket.resume();
      const raw = await ended;
      const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
      let rest = raw.slice(head.length + 4);
      if (/transfer-encoding: chunked/i.test(head)) {
        let out = '';
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const size = parseInt(rest.slice(0, nl), 16);
          if (!(size > 0)) break;
          out += rest.slice(nl + 2, nl + 2 + size);
          rest = rest.slice(nl + 2 + size + 2);
        }
        rest = out;
      }
      if (!/^HTTP\/1\.1 20\d/.test(head)) throw new Error(`POST /v1/flips: ${head} ${rest}`);
      return JSON.parse(rest) as { flip: FlipRecord };
    },
  };
}

/** Resolves with the seq of the next record the store announces (set up before the flip). */
function nextAccepted(store: MemoryFlipLogStore): Promise<number> {
  return new Promise((resolve) => {
    const off = store.subscribe((r) => {
      off();
      resolve(r.seq);
    });
  });
}

/** A bare server that keeps every GET open as an event stream and writes nothing of its own. */
async function bareServer(): Promise<{
  url: string;
  clients: Set<ServerResponse>;
  close(): Promise<void>;
}> {
  const clients = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write('retry: 1000\n\n');
    clients.add(res);
    req.on('close', () => clients.delete(res));
  });
  server.keepAliveTimeout = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    clients,
    close: async () => {
      for (const res of clients) res.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function main(): Promise<void> {
  const store = new MemoryFlipLogStore();
  // Accepted = the store announcing the durable record. Subscribed before the control plane, so
  // this listener runs just before the server writes the event to its subscribers.
  const acceptedAt = new Map<number, number>();
  store.subscribe((r) => acceptedAt.set(r.seq, performance.now()));
  const plane = await startControlPlane({
    store,
    host: '127.0.0.1',
    port: 0,
    // A benchmark floods flips: lift the per-token rate limit (KS-17.8.3), measured apart.
    maxFlipsPerSecond: 1_000_000,
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    auth: new TokenAuthenticator({ tokens: [{ name: 'bench', token: TOKEN, role: 'admin' }] }),
  });

  // The floor, and the package reference: bare servers that keep every GET open as a stream.
  const floor = await bareServer();
  const floorUrl = floor.url;
  const pkg = await bareServer();

  const results: Record<string, unknown>[] = [];
  let tenant = 0;
  for (const size of SIZES) {
    const procs = Math.min(PROCS, size);
    const children = Array.from({ length: procs }, () => new Child());
    const per = Array.from(
      { length: procs },
      (_, i) => Math.floor(size / procs) + (i < size % procs ? 1 : 0),
    );
    children.forEach((c, i) =>
      c.send({
        type: 'init',
        url: plane.url,
        floorUrl,
        token: TOKEN,
        count: per[i]!,
        prefix: `s${size}-p${i}`,
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
        ...(PACKAGE ? { packageUrl: pkg.url } : {}),
      }),
    );
    await Promise.all(children.map((c) => c.next('ready', 300_000)));
    await sleep(500); // let the initial acks settle
    const remote: RoundStats[] = [];
    const floorRounds: RoundStats[] = [];
    const packageRounds: RoundStats[] = [];
    const fromSend: number[] = [];
    /** Per round, ours ÷ the floor of the same round (adjacent in time: a drift of load cancels). */
    const pairedMedian: number[] = [];
    const pairedSlowest: number[] = [];
    let lastRecord: FlipRecord | undefined;
    for (let round = 0; round < ROUNDS + 1; round++) {
      await Promise.all(children.map((c) => c.sync()));
      // Alternate which goes first, so neither always runs on a just-woken process.
      const floorFirst = round % 2 === 1 && lastRecord !== undefined;
      let fs: RoundStats | undefined;
      let ps: RoundStats | undefined;
      const bareRound = async (record: FlipRecord, kind: 'floor' | 'package') => {
        // The same event bytes the control plane sends (only the id differs, to tell rounds apart).
        const id = (kind === 'floor' ? 1_000_000 : 2_000_000) + round;
        const bytes = encodeFlipEvent({ ...record, seq: id });
        await markThenIdle(children);
        const t0 = performance.now();
        for (const res of (kind === 'floor' ? floor : pkg).clients) res.write(bytes);
        return collect(children, kind, id, t0);
      };
      // The bare rounds: the floor, then (a pause later) the package reference.
      const bareRounds = async (record: FlipRecord) => {
        fs = await bareRound(record, 'floor');
        if (PACKAGE) {
          await sleep(50);
          ps = await bareRound(record, 'package');
        }
      };
      if (floorFirst) {
        await bareRounds(lastRecord!);
        await sleep(50);
      }
      await markThenIdle(children);
      const sent = performance.now();
      const seqNext = nextAccepted(store);
      const posted = postFlipDeferred(plane.url, {
        action: 'halt',
        selector: { tenant: `bench-${tenant++}` },
        reason: 'propagation bench',
      });
      const seq = await seqNext;
      const acceptedInServer = acceptedAt.get(seq)!;
      const rs = await collect(children, 'remote', seq, acceptedInServer);
      const answer = await posted.answer();
      if (answer.flip.seq !== seq) throw new Error(`answer for seq ${answer.flip.seq}, not ${seq}`);
      lastRecord = answer.flip;
      // Fairness: the remote round's acknowledgements must not spill into the floor's round
      // (they would slow the floor and flatter the ratio). Wait until every subscriber's ack
      // arrived (stop complete), at most 2 s, then let the processes settle.
      for (let t = 0; t < 200 && plane.tracker.status(answer.flip.seq)?.complete !== true; t++) {
        await sleep(10);
      }
      if (!floorFirst) {
        await sleep(50);
        await bareRounds(answer.flip);
      }
      if (round === 0) continue; // warm-up
      remote.push(rs);
      floorRounds.push(fs!);
      if (ps) packageRounds.push(ps);
      fromSend.push(rs.slowest + (acceptedInServer - sent));
      pairedMedian.push(rs.median / fs!.median);
      pairedSlowest.push(rs.slowest / fs!.slowest);
      await sleep(100);
    }
    await Promise.all(children.map((c) => c.stop()));
    const row = {
      subscribers: size,
      processes: procs,
      rounds: ROUNDS,
      // The machine is shared: the 1-minute load average when this size finished.
      loadAvg1m: r3(loadavg()[0]!),
      remoteMedianMs: r3(median(remote.map((r) => r.median))),
      remoteSlowestMs: r3(median(remote.map((r) => r.slowest))),
      floorMedianMs: r3(median(floorRounds.map((r) => r.median))),
      floorSlowestMs: r3(median(floorRounds.map((r) => r.slowest))),
      remoteChildCpuMs: r3(median(remote.map((r) => r.childCpuMs))),
      floorChildCpuMs: r3(median(floorRounds.map((r) => r.childCpuMs))),
      remoteStepUs: r3(median(remote.map((r) => r.stepUs))),
      floorStepUs: r3(median(floorRounds.map((r) => r.stepUs))),
      remoteFirstMs: r3(median(remote.map((r) => r.firstMs))),
      floorFirstMs: r3(median(floorRounds.map((r) => r.firstMs))),
      ...(PACKAGE
        ? {
            packageMedianMs: r3(median(packageRounds.map((r) => r.median))),
            packageSlowestMs: r3(median(packageRounds.map((r) => r.slowest))),
            packageChildCpuMs: r3(median(packageRounds.map((r) => r.childCpuMs))),
            packageStepUs: r3(median(packageRounds.map((r) => r.stepUs))),
            packageFirstMs: r3(median(packageRounds.map((r) => r.firstMs))),
          }
        : {}),
      remoteSlowestFromSendMs: r3(median(fromSend)),
      missing: [...remote, ...floorRounds, ...packageRounds].reduce((a, r) => a + r.missing, 0),
    };
    const ratios = {
      medianRatio: r3(row.remoteMedianMs / row.floorMedianMs),
      slowestRatio: r3(row.remoteSlowestMs / row.floorSlowestMs),
      ...(row.packageMedianMs !== undefined && row.packageSlowestMs !== undefined
        ? {
            packageMedianRatio: r3(row.packageMedianMs / row.floorMedianMs),
            packageSlowestRatio: r3(row.packageSlowestMs / row.floorSlowestMs),
          }
        : {}),
      pairedMedianRatio: r3(median(pairedMedian)),
      pairedSlowestRatio: r3(median(pairedSlowest)),
      pairedMedianRatioRange: [r3(Math.min(...pairedMedian)), r3(Math.max(...pairedMedian))],
    };
    results.push({ ...row, ...ratios });
    console.log(
      `${String(size).padStart(5)} subscribers / ${procs} procs: remote median ${row.remoteMedianMs} ms, slowest ${row.remoteSlowestMs} ms` +
        ` | floor median ${row.floorMedianMs} ms, slowest ${row.floorSlowestMs} ms | ratio median ${ratios.medianRatio}x, slowest ${ratios.slowestRatio}x` +
        ` (paired by round ${ratios.pairedMedianRatio}x, ${ratios.pairedSlowestRatio}x)` +
        (ratios.packageMedianRatio !== undefined
          ? ` | eventsource alone median ${row.packageMedianMs} ms, slowest ${row.packageSlowestMs} ms (${ratios.packageMedianRatio}x, ${ratios.packageSlowestRatio}x)`
          : '') +
        ` | subscriber CPU ${row.remoteChildCpuMs} vs ${row.floorChildCpuMs}${row.packageChildCpuMs !== undefined ? ` (package ${row.packageChildCpuMs})` : ''} ms` +
        (size > PROCS
          ? ` | per subscriber ${row.remoteStepUs} vs ${row.floorStepUs}${row.packageStepUs !== undefined ? ` (package ${row.packageStepUs})` : ''} µs, first of each process ${row.remoteFirstMs} vs ${row.floorFirstMs}${row.packageFirstMs !== undefined ? ` (package ${row.packageFirstMs})` : ''} ms`
          : '') +
        ` | load ${row.loadAvg1m}` +
        ` | slowest from POST sent ${row.remoteSlowestFromSendMs} ms`,
    );
  }

  let firstFlip: Record<string, unknown> | undefined;
  if (CASES.has('first')) firstFlip = await firstFlipCase(plane, floor, store, acceptedAt);

  let stopComplete: Record<string, unknown> | undefined;
  if (CASES.has('stop')) {
    // Stop-complete as the server reports it (`wait`), 8 worker processes with one source each.
    const workers = Array.from({ length: 8 }, () => new Child());
    workers.forEach((c, i) =>
      c.send({
        type: 'init',
        url: plane.url,
        floorUrl,
        token: TOKEN,
        count: 1,
        prefix: `wait-${i}`,
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
      }),
    );
    await Promise.all(workers.map((c) => c.next('ready', 60_000)));
    await sleep(1500); // every worker has acknowledged the head at least once
    const completes: number[] = [];
    let lastAnswer: unknown;
    for (let round = 0; round < ROUNDS + 1; round++) {
      const answer = await postFlip(plane.url, {
        action: 'halt',
        selector: { tenant: `wait-${tenant++}` },
        reason: 'wait bench',
        wait: 5000,
      });
      lastAnswer = answer;
      const fleet = (answer['fleet'] ?? answer) as {
        completeAfterMs?: number | null;
        complete?: boolean;
      };
      if (round > 0 && typeof fleet.completeAfterMs === 'number')
        completes.push(fleet.completeAfterMs);
      await sleep(100);
    }
    await Promise.all(workers.map((c) => c.stop()));
    stopComplete = {
      workers: 8,
      rounds: completes.length,
      stopCompleteMedianMs: r3(median(completes)),
      stopCompleteMaxMs: r3(Math.max(...completes)),
    };
    if (completes.length === 0)
      console.log(`no completeAfterMs in the answer: ${JSON.stringify(lastAnswer).slice(0, 400)}`);
    console.log(
      `stop-complete with 8 worker processes: median ${stopComplete.stopCompleteMedianMs} ms, max ${stopComplete.stopCompleteMaxMs} ms`,
    );
  }

  await floor.close();
  await pkg.close();
  await plane.close();
  const replicatedResult = CASES.has('replicated')
    ? await replicated(REPLICATED_SIZES)
    : { skipped: 'not in --cases' };
  const replicatedStop = CASES.has('replicated-stop')
    ? await replicatedStopComplete()
    : { skipped: 'not in --cases' };
  const ok = results.every(
    (r) => (r['medianRatio'] as number) <= 1.5 && (r['slowestRatio'] as number) <= 1.5,
  );
  const okPaired = results.every(
    (r) => (r['pairedMedianRatio'] as number) <= 1.5 && (r['pairedSlowestRatio'] as number) <= 1.5,
  );
  console.log(
    JSON.stringify({
      bench: 'propagation',
      target: 'within 1.5x of the bare node:http floor',
      ok,
      okPaired,
      sizes: results,
      stopComplete: stopComplete ?? { skipped: 'not in --cases' },
      firstFlip: firstFlip ?? { skipped: 'not in --cases' },
      replicated: replicatedResult,
      replicatedStop,
    }),
  );
}

// --- the first flip: subscribers that ran traffic but never applied a flip -------------------

/**
 * The cold first flip (issue 19). Each round starts fresh subscriber processes, lets them run
 * ordinary traffic (snapshot, heartbeats, lease acknowledgements) for `--first-idle` ms without
 * a single flip, then posts the first flip they ever apply, then `--first-warm` more flips after
 * the same 20 ms idle as the fan-out rounds. Per round: the first flip's median and slowest
 * subscriber, and the median over the warm flips of their median and slowest; reported: medians
 * over rounds and first ÷ warm (target: the first as fast as a warm one, within 1.5x of the floor
 * like the warm ones), plus the floor measured on the same processes after the warm flips.
 */
async function firstFlipCase(
  plane: Awaited<ReturnType<typeof startControlPlane>>,
  floor: Awaited<ReturnType<typeof bareServer>>,
  _store: MemoryFlipLogStore,
  acceptedAt: Map<number, number>,
): Promise<Record<string, unknown>> {
  const size = Number(arg('first-size', '100'));
  const rounds = Number(arg('first-rounds', '5'));
  const idleMs = Number(arg('first-idle', '3000'));
  const warmFlips = Number(arg('first-warm', '5'));
  const procs = Math.min(PROCS, size);
  const first: RoundStats[] = [];
  const warm: { median: number; slowest: number; childCpuMs: number }[] = [];
  const floors: RoundStats[] = [];
  let n = 0;
  let last: FlipRecord | undefined;
  for (let round = 0; round < rounds; round++) {
    const children = Array.from({ length: procs }, () => new Child());
    children.forEach((c, i) =>
      c.send({
        type: 'init',
        url: plane.url,
        floorUrl: floor.url,
        token: TOKEN,
        count: Math.floor(size / procs) + (i < size % procs ? 1 : 0),
        prefix: `first${round}-p${i}`,
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
      }),
    );
    await Promise.all(children.map((c) => c.next('ready', 300_000)));
    await sleep(idleMs);
    const flipOnce = async (): Promise<RoundStats> => {
      await Promise.all(children.map((c) => c.sync()));
      await markThenIdle(children);
      const answer = await postFlip(plane.url, {
        action: 'halt',
        selector: { tenant: `first-${round}-${n++}` },
        reason: 'first flip bench',
      });
      last = answer.flip;
      const rs = await collect(
        children,
        'remote',
        answer.flip.seq,
        acceptedAt.get(answer.flip.seq)!,
      );
      for (let t = 0; t < 200 && plane.tracker.status(answer.flip.seq)?.complete !== true; t++) {
        await sleep(10);
      }
      await sleep(50);
      return rs;
    };
    first.push(await flipOnce());
    const w: RoundStats[] = [];
    for (let i = 0; i < warmFlips; i++) w.push(await flipOnce());
    warm.push({
      median: median(w.map((r) => r.median)),
      slowest: median(w.map((r) => r.slowest)),
      childCpuMs: median(w.map((r) => r.childCpuMs)),
    });
    // The floor on the same processes, warm.
    const f: RoundStats[] = [];
    for (let i = 0; i < 3; i++) {
      await Promise.all(children.map((c) => c.sync()));
      const id = 3_000_000 + round * 10 + i;
      const bytes = encodeFlipEvent({ ...last!, seq: id });
      await markThenIdle(children);
      const t0 = performance.now();
      for (const res of floor.clients) res.write(bytes);
      f.push(await collect(children, 'floor', id, t0));
      await sleep(50);
    }
    floors.push({
      median: median(f.map((r) => r.median)),
      slowest: median(f.map((r) => r.slowest)),
      missing: 0,
      childCpuMs: 0,
      stepUs: NaN,
      firstMs: NaN,
    });
    await Promise.all(children.map((c) => c.stop()));
    console.log(
      `first flip round ${round}: first ${r3(first.at(-1)!.median)} / ${r3(first.at(-1)!.slowest)} ms, warm ${r3(warm.at(-1)!.median)} / ${r3(warm.at(-1)!.slowest)} ms, floor ${r3(floors.at(-1)!.median)} / ${r3(floors.at(-1)!.slowest)} ms (median / slowest subscriber); subscriber CPU first ${r3(first.at(-1)!.childCpuMs)} ms, warm ${r3(warm.at(-1)!.childCpuMs)} ms | load ${r3(loadavg()[0]!)}`,
    );
  }
  const row = {
    subscribers: size,
    processes: procs,
    rounds,
    idleBeforeFirstMs: idleMs,
    loadAvg1m: r3(loadavg()[0]!),
    firstMedianMs: r3(median(first.map((r) => r.median))),
    firstSlowestMs: r3(median(first.map((r) => r.slowest))),
    warmMedianMs: r3(median(warm.map((r) => r.median))),
    warmSlowestMs: r3(median(warm.map((r) => r.slowest))),
    floorMedianMs: r3(median(floors.map((r) => r.median))),
    floorSlowestMs: r3(median(floors.map((r) => r.slowest))),
    // CPU of all subscriber processes from the flip's round mark to their last subscriber
    // applying it (summed over processes): a figure the machine's load hardly moves.
    firstChildCpuMs: r3(median(first.map((r) => r.childCpuMs))),
    warmChildCpuMs: r3(median(warm.map((r) => r.childCpuMs))),
  };
  const out = {
    ...row,
    firstOverWarmMedian: r3(row.firstMedianMs / row.warmMedianMs),
    firstOverWarmSlowest: r3(row.firstSlowestMs / row.warmSlowestMs),
    firstOverFloorMedian: r3(row.firstMedianMs / row.floorMedianMs),
    firstOverFloorSlowest: r3(row.firstSlowestMs / row.floorSlowestMs),
    firstOverWarmCpu: r3(row.firstChildCpuMs / row.warmChildCpuMs),
    missing: first.reduce((a, r) => a + r.missing, 0),
  };
  console.log(
    `first flip, ${size} subscribers / ${procs} procs after ${idleMs} ms of traffic: first ${out.firstMedianMs} / ${out.firstSlowestMs} ms, warm ${out.warmMedianMs} / ${out.warmSlowestMs} ms (first ÷ warm ${out.firstOverWarmMedian}x / ${out.firstOverWarmSlowest}x), floor ${out.floorMedianMs} / ${out.floorSlowestMs} ms; subscriber CPU first ${out.firstChildCpuMs} ms, warm ${out.warmChildCpuMs} ms (${out.firstOverWarmCpu}x)`,
  );
  return out;
}

// --- replicated: a flip on replica A applied by subscribers of replica B (one PostgreSQL log) ---

/** Every subscriber's apply time for one seq (parent clock), or what is missing. */
async function collectAll(
  children: readonly Child[],
  seq: number,
  t0: number,
): Promise<{ lat: number[]; missing: number }> {
  const lat: number[] = [];
  let missing = 0;
  await Promise.all(
    children.map(async (c) => {
      try {
        const m = (await c.next(`remote:${seq}`, 20_000)) as Extract<
          FromWorker,
          { type: 'applied' }
        >;
        for (const t of m.times) lat.push(t - c.offset - t0);
      } catch {
        missing++;
      }
    }),
  );
  return { lat, missing };
}

const quantile = (xs: readonly number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

/**
 * The PostgreSQL the replicated cases run on (`--pg`, `KS_PG_URL`), with one client for setup and
 * cleanup; a case is reported skipped, with the reason, when it cannot connect.
 */
async function openPostgresProbe(): Promise<
  { pgUrl: string; probe: PgClient } | { skipped: string }
> {
  const pgUrl = arg('pg', process.env['KS_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test');
  const pg = (await import('pg')).default;
  const probe = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 2000 });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
  } catch (err) {
    return {
      skipped: `PostgreSQL unreachable at ${new URL(pgUrl).host}: ${(err as Error).message}`,
    };
  }
  return { pgUrl, probe };
}

/**
 * KS-12.6.2 Two control planes (A and B, in this process, each with its own PostgreSQL store and
 * connections) on one schema; subscribers (child processes) connect to B; flips are posted to A.
 * Latency per subscriber from the POST to A being sent (and from A's answer) to the subscriber
 * applying the flip; p50 and p99 over every subscriber of every round.
 */
async function replicated(sizes: readonly number[]): Promise<Record<string, unknown>> {
  const opened = await openPostgresProbe();
  if ('skipped' in opened) return opened;
  const { pgUrl, probe } = opened;
  const { PostgresFlipLogStore } = await import('../../providers/postgres/index.js');
  const schema = `ks_bench_repl_${process.pid}`;
  const storeA = new PostgresFlipLogStore({ connectionString: pgUrl, schema });
  const storeB = new PostgresFlipLogStore({ connectionString: pgUrl, schema });
  const auth = new TokenAuthenticator({ tokens: [{ name: 'bench', token: TOKEN, role: 'admin' }] });
  const quiet = { info() {}, warn() {}, error: (m: string) => console.error(m) };
  const common = {
    host: '127.0.0.1',
    port: 0,
    // A benchmark floods flips: lift the per-token rate limit (KS-17.8.3), measured apart.
    maxFlipsPerSecond: 1_000_000,
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    auth,
    logger: quiet,
  };
  const a = await startControlPlane({ ...common, store: storeA });
  const b = await startControlPlane({ ...common, store: storeB });
  // B's own view: when its store delivered the record (NOTIFY + read by seq).
  const atB = new Map<number, number>();
  storeB.subscribe((r) => atB.set(r.seq, performance.now()));
  // The children also open raw connections to a floor server; here one that only holds them.
  const holder = await bareServer();
  const holderUrl = holder.url;
  const rows: Record<string, unknown>[] = [];
  try {
    let tenant = 0;
    for (const size of sizes) {
      const procs = Math.min(PROCS, size);
      const children = Array.from({ length: procs }, () => new Child());
      children.forEach((c, i) =>
        c.send({
          type: 'init',
          url: b.url,
          floorUrl: holderUrl,
          token: TOKEN,
          count: Math.floor(size / procs) + (i < size % procs ? 1 : 0),
          prefix: `repl${size}-p${i}`,
          staleAfterMs: STALE_MS,
          heartbeatMs: HEARTBEAT_MS,
        }),
      );
      await Promise.all(children.map((c) => c.next('ready', 300_000)));
      await sleep(500);
      const fromSend: number[] = [];
      const fromAnswer: number[] = [];
      const storeLag: number[] = [];
      let missing = 0;
      for (let round = 0; round < ROUNDS + 1; round++) {
        await Promise.all(children.map((c) => c.sync()));
        const sent = performance.now();
        const answer = await postFlip(a.url, {
          action: 'halt',
          selector: { tenant: `repl-${tenant++}` },
          reason: 'replicated propagation bench',
        });
        const answered = performance.now();
        const got = await collectAll(children, answer.flip.seq, sent);
        if (round === 0) continue; // warm-up
        missing += got.missing;
        fromSend.push(...got.lat);
        fromAnswer.push(...got.lat.map((x) => x - (answered - sent)));
        const b0 = atB.get(answer.flip.seq);
        if (b0 !== undefined) storeLag.push(b0 - sent);
        await sleep(100);
      }
      await Promise.all(children.map((c) => c.stop()));
      const row = {
        subscribersOnB: size,
        processes: procs,
        rounds: ROUNDS,
        samples: fromSend.length,
        fromPostSentP50Ms: r3(quantile(fromSend, 0.5)),
        fromPostSentP99Ms: r3(quantile(fromSend, 0.99)),
        fromAnswerOfAP50Ms: r3(quantile(fromAnswer, 0.5)),
        fromAnswerOfAP99Ms: r3(quantile(fromAnswer, 0.99)),
        storeBDeliveredP50Ms: r3(quantile(storeLag, 0.5)),
        missing,
      };
      rows.push(row);
      console.log(
        `replicated, ${size} subscribers on B / ${procs} procs: from POST to A sent p50 ${row.fromPostSentP50Ms} ms, p99 ${row.fromPostSentP99Ms} ms` +
          ` | from A's answer p50 ${row.fromAnswerOfAP50Ms} ms, p99 ${row.fromAnswerOfAP99Ms} ms | B's store delivered p50 ${row.storeBDeliveredP50Ms} ms`,
      );
    }
  } finally {
    await holder.close();
    await a.close();
    await b.close();
    await storeA.close();
    await storeB.close();
    await probe.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await probe.end().catch(() => undefined);
  }
  return { store: 'postgresql', rows };
}

/**
 * KS-6.6 stop-complete across replicas: see the header. Each configuration runs twice, one
 * replica and two, alternating round by round so load on the machine falls on both alike.
 */
async function replicatedStopComplete(): Promise<Record<string, unknown>> {
  const opened = await openPostgresProbe();
  if ('skipped' in opened) return opened;
  const { pgUrl, probe } = opened;
  const { PostgresFlipLogStore } = await import('../../providers/postgres/index.js');
  const auth = new TokenAuthenticator({ tokens: [{ name: 'bench', token: TOKEN, role: 'admin' }] });
  const quiet = { info() {}, warn() {}, error: (m: string) => console.error(m) };
  const common = {
    host: '127.0.0.1',
    port: 0,
    maxFlipsPerSecond: 1_000_000,
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    auth,
    logger: quiet,
  };
  const sizes = arg('replicated-stop-sizes', '8x8,100x4')
    .split(',')
    .map((x) => x.split('x').map(Number) as [number, number]);
  const schemaSingle = `ks_bench_rs1_${process.pid}`;
  const schemaPair = `ks_bench_rs2_${process.pid}`;
  const stores = [schemaSingle, schemaPair, schemaPair].map(
    (schema) => new PostgresFlipLogStore({ connectionString: pgUrl, schema }),
  );
  const [single, a, b] = await Promise.all(
    stores.map((store) => startControlPlane({ ...common, store })),
  );
  const holder = await bareServer();
  const rows: Record<string, unknown>[] = [];
  let tenant = 0;
  try {
    for (const [size, procs] of sizes) {
      const start = async (urls: readonly string[], tag: string) => {
        const children = Array.from({ length: procs }, () => new Child());
        children.forEach((c, i) =>
          c.send({
            type: 'init',
            url: urls[i % urls.length]!,
            floorUrl: holder.url,
            token: TOKEN,
            count: Math.floor(size / procs) + (i < size % procs ? 1 : 0),
            prefix: `${tag}${size}-p${i}`,
            staleAfterMs: STALE_MS,
            heartbeatMs: HEARTBEAT_MS,
          }),
        );
        await Promise.all(children.map((c) => c.next('ready', 300_000)));
        return children;
      };
      // The processes alternate between A and B (8x8: one worker per process, four on each).
      const oneChildren = await start([single!.url], 'one');
      const twoChildren = await start([a!.url, b!.url], 'two');
      await sleep(1500); // every worker acknowledged the head at least once, on every replica
      const one: { complete: number[]; answer: number[] } = { complete: [], answer: [] };
      const two: { complete: number[]; answer: number[] } = { complete: [], answer: [] };
      let incomplete = 0;
      for (let round = 0; round < ROUNDS + 1; round++) {
        for (const [url, out] of [
          [single!.url, one],
          [a!.url, two],
        ] as const) {
          const sent = performance.now();
          const answer = await postFlip(url, {
            action: 'halt',
            selector: { tenant: `rs-${tenant++}` },
            reason: 'replicated stop-complete bench',
            wait: 5000,
          });
          const answered = performance.now();
          const fleet = answer['fleet'] as { completeAfterMs: number | null; applied: number };
          if (round === 0) continue; // warm-up
          if (fleet.completeAfterMs === null || fleet.applied !== size) {
            incomplete++;
            continue;
          }
          out.complete.push(fleet.completeAfterMs);
          out.answer.push(answered - sent);
          await sleep(100);
        }
      }
      await Promise.all([...oneChildren, ...twoChildren].map((c) => c.stop()));
      const row = {
        workers: size,
        processes: procs,
        rounds: ROUNDS,
        loadAvg1m: r3(loadavg()[0]!),
        oneReplicaCompleteMedianMs: r3(median(one.complete)),
        twoReplicasCompleteMedianMs: r3(median(two.complete)),
        oneReplicaAnswerMedianMs: r3(median(one.answer)),
        twoReplicasAnswerMedianMs: r3(median(two.answer)),
        completeRatio: r3(median(two.complete) / median(one.complete)),
        answerRatio: r3(median(two.answer) / median(one.answer)),
        incomplete,
      };
      rows.push(row);
      console.log(
        `stop-complete, ${size} workers / ${procs} procs: one replica ${row.oneReplicaCompleteMedianMs} ms (answer ${row.oneReplicaAnswerMedianMs} ms)` +
          ` | A+B, posted to A ${row.twoReplicasCompleteMedianMs} ms (answer ${row.twoReplicasAnswerMedianMs} ms)` +
          ` | ratio ${row.completeRatio}x (answer ${row.answerRatio}x) | incomplete ${incomplete} | load ${row.loadAvg1m}`,
      );
    }
  } finally {
    await holder.close();
    for (const cp of [single, a, b]) await cp!.close();
    for (const st of stores) await st.close();
    await probe
      .query(`DROP SCHEMA IF EXISTS "${schemaSingle}", "${schemaPair}" CASCADE`)
      .catch(() => undefined);
    await probe.end().catch(() => undefined);
  }
  const ok = rows.every((r) => (r['completeRatio'] as number) <= 2);
  return { store: 'postgresql', target: 'replicated within 2x of one replica', ok, rows };
}

main().catch((err: unknown) => {
  console.error(err);
  for (const c of Child.all) if (c.proc.exitCode === null) c.proc.kill();
  process.exit(1);
});
