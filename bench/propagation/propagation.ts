/**
 * bench/propagation: how long from a flip being accepted (the `POST /v1/flips` answer arriving)
 * until every subscriber applied it, for 1, 100 and 1,000 RemoteFlipSource subscribers spread
 * over a few child processes; and, in the same run and the same child processes, the floor: a
 * bare node:http server writing the same event bytes to as many raw HTTP connections. Per round:
 * the median subscriber and the slowest; reported: medians over rounds, and the ratio to the
 * floor (target: within 1.5x at every size). Then the time from flip to stop-complete that the
 * server reports (`wait`) with 8 worker processes.
 *
 * Clocks: each child reports `performance.now()`; the parent measures each child's offset by
 * IPC ping (the exchange with the smallest round trip wins; error <= rtt/2, ~0.1 ms) and maps
 * child times onto its own clock.
 *
 * Usage: node dist/bench/propagation/propagation.js [--sizes 1,100,1000] [--rounds 9] [--procs 4]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { startControlPlane } from '../../src/server/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import type { FlipRecord } from '../../src/model/index.js';
import type { FromWorker, ToWorker } from './subscriber-worker.js';

const TOKEN = 'bench-propagation-admin-token-0123456789';
const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const SIZES = arg('sizes', '1,100,1000').split(',').map(Number);
const ROUNDS = Number(arg('rounds', '9'));
const PROCS = Number(arg('procs', '4'));
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
    this.proc = fork(new URL('./subscriber-worker.js', import.meta.url), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
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

  async stop(): Promise<void> {
    this.send({ type: 'stop' });
    await this.next('stopped').catch(() => undefined);
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

interface RoundStats {
  readonly median: number;
  readonly slowest: number;
  readonly missing: number;
  /** CPU the subscriber processes spent between their first and last subscriber (summed). */
  readonly childCpuMs: number;
}

async function collect(
  children: readonly Child[],
  kind: 'remote' | 'floor',
  seq: number,
  t0: number,
): Promise<RoundStats> {
  const lat: number[] = [];
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
  return { median: median(lat), slowest: Math.max(...lat), missing, childCpuMs };
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

function encodeEvent(event: string, data: unknown, id: number): Buffer {
  return Buffer.from(`event: ${event}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`, 'utf8');
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
    heartbeatMs: HEARTBEAT_MS,
    staleAfterMs: STALE_MS,
    auth: new TokenAuthenticator({ tokens: [{ name: 'bench', token: TOKEN, role: 'admin' }] }),
  });

  // The floor: a bare server that keeps every GET open as an event stream.
  const floorClients = new Set<ServerResponse>();
  const floor = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write('retry: 1000\n\n');
    floorClients.add(res);
    req.on('close', () => floorClients.delete(res));
  });
  floor.keepAliveTimeout = 0;
  await new Promise<void>((r) => floor.listen(0, '127.0.0.1', r));
  const floorUrl = `http://127.0.0.1:${(floor.address() as AddressInfo).port}/`;

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
      }),
    );
    await Promise.all(children.map((c) => c.next('ready', 300_000)));
    await sleep(500); // let the initial acks settle
    const remote: RoundStats[] = [];
    const floorRounds: RoundStats[] = [];
    const fromSend: number[] = [];
    const fromAnswer: number[] = [];
    let lastRecord: FlipRecord | undefined;
    for (let round = 0; round < ROUNDS + 1; round++) {
      await Promise.all(children.map((c) => c.sync()));
      // Alternate which goes first, so neither always runs on a just-woken process.
      const floorFirst = round % 2 === 1 && lastRecord !== undefined;
      let fs: RoundStats | undefined;
      const floorRound = async (record: FlipRecord) => {
        // The same event bytes the control plane sends (only the id differs, to tell rounds apart).
        const id = 1_000_000 + round;
        const bytes = encodeEvent('flip', record, id);
        const t0 = performance.now();
        for (const res of floorClients) res.write(bytes);
        return collect(children, 'floor', id, t0);
      };
      if (floorFirst) {
        fs = await floorRound(lastRecord!);
        await sleep(50);
      }
      const sent = performance.now();
      const answer = await postFlip(plane.url, {
        action: 'halt',
        selector: { tenant: `bench-${tenant++}` },
        reason: 'propagation bench',
      });
      const accepted = performance.now();
      const acceptedInServer = acceptedAt.get(answer.flip.seq)!;
      const rs = await collect(children, 'remote', answer.flip.seq, acceptedInServer);
      lastRecord = answer.flip;
      if (!floorFirst) {
        await sleep(50);
        fs = await floorRound(answer.flip);
      }
      if (round === 0) continue; // warm-up
      remote.push(rs);
      floorRounds.push(fs!);
      fromSend.push(rs.slowest + (acceptedInServer - sent));
      fromAnswer.push(rs.slowest + (acceptedInServer - accepted));
      await sleep(100);
    }
    await Promise.all(children.map((c) => c.stop()));
    const row = {
      subscribers: size,
      processes: procs,
      rounds: ROUNDS,
      remoteMedianMs: r3(median(remote.map((r) => r.median))),
      remoteSlowestMs: r3(median(remote.map((r) => r.slowest))),
      floorMedianMs: r3(median(floorRounds.map((r) => r.median))),
      floorSlowestMs: r3(median(floorRounds.map((r) => r.slowest))),
      remoteChildCpuMs: r3(median(remote.map((r) => r.childCpuMs))),
      floorChildCpuMs: r3(median(floorRounds.map((r) => r.childCpuMs))),
      remoteSlowestFromSendMs: r3(median(fromSend)),
      remoteSlowestFromAnswerMs: r3(median(fromAnswer)),
      missing:
        remote.reduce((a, r) => a + r.missing, 0) + floorRounds.reduce((a, r) => a + r.missing, 0),
    };
    const ratios = {
      medianRatio: r3(row.remoteMedianMs / row.floorMedianMs),
      slowestRatio: r3(row.remoteSlowestMs / row.floorSlowestMs),
    };
    results.push({ ...row, ...ratios });
    console.log(
      `${String(size).padStart(5)} subscribers / ${procs} procs: remote median ${row.remoteMedianMs} ms, slowest ${row.remoteSlowestMs} ms` +
        ` | floor median ${row.floorMedianMs} ms, slowest ${row.floorSlowestMs} ms | ratio median ${ratios.medianRatio}x, slowest ${ratios.slowestRatio}x` +
        ` | subscriber CPU ${row.remoteChildCpuMs} vs ${row.floorChildCpuMs} ms` +
        ` | slowest from POST sent ${row.remoteSlowestFromSendMs} ms, from POST answer ${row.remoteSlowestFromAnswerMs} ms`,
    );
  }

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
  const stopComplete = {
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

  for (const res of floorClients) res.destroy();
  await new Promise<void>((r) => floor.close(() => r()));
  await plane.close();
  const ok = results.every(
    (r) => (r['medianRatio'] as number) <= 1.5 && (r['slowestRatio'] as number) <= 1.5,
  );
  console.log(
    JSON.stringify({
      bench: 'propagation',
      target: 'within 1.5x of the bare node:http floor',
      ok,
      sizes: results,
      stopComplete,
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  for (const c of Child.all) if (c.proc.exitCode === null) c.proc.kill();
  process.exit(1);
});
