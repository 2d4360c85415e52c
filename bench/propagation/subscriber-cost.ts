/**
 * bench/propagation/subscriber-cost: what RemoteFlipSource adds to the `eventsource` package per
 * subscriber and flip, in one process, without sockets or other processes (so the machine's load
 * hardly moves it). N sources and N bare EventSource clients (the package alone) get their
 * stream from an injected fetch whose bodies this process feeds: a snapshot, then per round the
 * same `flip` event bytes to every body, after an idle pause like a worker's between flips. Per
 * round, for each kind: the time from the first byte fed to the last subscriber applying
 * (dispatching) it, and the CPU spent meanwhile; reported: medians over rounds, per subscriber,
 * ours minus the package (`added`). Kinds alternate first from round to round. The first round
 * of each kind is reported apart (`first`): the first flip these sources ever apply.
 *
 * Usage: node dist/bench/propagation/subscriber-cost.js [--subscribers 250] [--rounds 31]
 *   [--idle 20]
 * With SUBSCRIBER_COST_WINDOWS=1 each round's window (first byte fed, last subscriber applied,
 * the end of the 15 ms after) goes to stderr on the clock of a
 * `node --cpu-prof` profile (µs), to read what one flip cost in the profile.
 */
import { loadavg } from 'node:os';
import { EventSource } from 'eventsource';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  type FlipRecord,
} from '../../src/model/flip-record.js';
import { KillState } from '../../src/model/kill-state.js';
import { encodeFlipEvent } from '../../src/protocol/stream-events.js';
import { median, round } from '../internal/stats.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const N = Number(arg('subscribers', '250'));
const ROUNDS = Number(arg('rounds', '31'));
const IDLE_MS = Number(arg('idle', '20'));
const LOG_ID = 'subscriber-cost';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The chained records of the bench's log (halts of distinct tenants). */
const records: FlipRecord[] = [];
function recordAt(seq: number): FlipRecord {
  while (records.length < seq) {
    const prev = records.at(-1) ?? { seq: 0, hash: GENESIS_HASH };
    records.push(
      chainRecord(
        parseFlipInput({
          actor: 'bench',
          action: 'halt',
          selector: { tenant: `cost-${records.length + 1}` },
          reason: 'subscriber cost bench',
        }),
        prev,
        new Date(),
      ),
    );
  }
  return records[seq - 1]!;
}

/** Stream bodies this process feeds, and an in-memory control plane for the acknowledgements. */
const bodies: ReadableStreamDefaultController<Uint8Array>[] = [];
const enc = new TextEncoder();
const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
  const url = new URL(String(input instanceof Request ? input.url : input));
  if (url.pathname !== '/v1/stream') {
    const head = records.length;
    const body = JSON.stringify({
      head,
      serverTime: new Date().toISOString(),
      staleAfterMs: 60_000,
      logId: LOG_ID,
      hash: head === 0 ? GENESIS_HASH : records[head - 1]!.hash,
    });
    return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
  }
  const snapshot = { ...KillState.empty().toSnapshot(), logId: LOG_ID };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(enc.encode(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`));
      bodies.push(controller);
      init?.signal?.addEventListener('abort', () => controller.close());
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}) as typeof globalThis.fetch;

type Kind = 'remote' | 'package';
/** Resolved when every subscriber of the kind applied seq. */
const waiting = new Map<string, { left: number; done: (t: number) => void }>();
function applied(kind: Kind, seq: number): void {
  const w = waiting.get(`${kind}:${seq}`);
  if (w !== undefined && --w.left === 0) {
    waiting.delete(`${kind}:${seq}`);
    w.done(performance.now());
  }
}

async function main(): Promise<void> {
  const remoteBodies: ReadableStreamDefaultController<Uint8Array>[] = [];
  const packageBodies: ReadableStreamDefaultController<Uint8Array>[] = [];
  const sources: RemoteFlipSource[] = [];
  const opened: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    const source = new RemoteFlipSource({
      urls: ['http://subscriber-cost.invalid'],
      workerId: `cost-${i}`,
      fetch,
      staleAfterMs: 60_000,
      heartbeatMs: 30_000,
      logger: { warn: () => undefined },
    });
    let open!: () => void;
    opened.push(new Promise<void>((r) => (open = r)));
    await source.start({
      onSnapshot: () => undefined,
      onFlip: (r) => applied('remote', r.seq),
      onStatus: (s) => {
        if (s === 'open') open();
      },
    });
    sources.push(source);
  }
  await Promise.all(opened);
  remoteBodies.push(...bodies.splice(0));
  const clients: EventSource[] = [];
  for (let i = 0; i < N; i++) {
    const es = new EventSource('http://subscriber-cost.invalid/v1/stream', { fetch });
    opened.push(new Promise<void>((r) => es.addEventListener('open', () => r(), { once: true })));
    es.addEventListener('flip', (ev) => applied('package', Number(ev.lastEventId)));
    clients.push(es);
  }
  await Promise.all(opened);
  await sleep(200);
  packageBodies.push(...bodies.splice(0));

  const feed = async (kind: Kind, seq: number) => {
    const bytes = encodeFlipEvent(recordAt(seq));
    const targets = kind === 'remote' ? remoteBodies : packageBodies;
    await sleep(IDLE_MS);
    const done = new Promise<number>((resolve) =>
      waiting.set(`${kind}:${seq}`, { left: N, done: resolve }),
    );
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const h0 = process.hrtime.bigint() / 1000n;
    // The package's clients see the remote round's record again: only the id matters to them.
    for (const c of targets) c.enqueue(bytes);
    const t1 = await done;
    const h1 = process.hrtime.bigint() / 1000n;
    const cpu = process.cpuUsage(cpu0);
    // Everything the flip costs the process, the acknowledgement and its answer included (the
    // batch is held ACK_HOLD_MS at most; the in-memory control plane answers at once).
    await sleep(15);
    const all = process.cpuUsage(cpu0);
    if (process.env['SUBSCRIBER_COST_WINDOWS'])
      console.error(`window ${kind} ${seq} ${h0} ${h1} ${process.hrtime.bigint() / 1000n}`);
    return {
      ms: t1 - t0,
      cpuMs: (cpu.user + cpu.system) / 1000,
      allCpuMs: (all.user + all.system) / 1000,
    };
  };
  const rows: Record<Kind, { ms: number; cpuMs: number; allCpuMs: number }[]> = {
    remote: [],
    package: [],
  };
  let first: Record<Kind, { ms: number; cpuMs: number; allCpuMs: number }> | undefined;
  for (let r = 0; r < ROUNDS + 1; r++) {
    const seq = r + 1;
    const order: Kind[] = r % 2 === 0 ? ['remote', 'package'] : ['package', 'remote'];
    const got = {} as Record<Kind, { ms: number; cpuMs: number; allCpuMs: number }>;
    for (const kind of order) got[kind] = await feed(kind, seq);
    if (r === 0) first = got;
    else for (const kind of order) rows[kind].push(got[kind]);
    await sleep(20);
  }
  const us = (kind: Kind, key: 'ms' | 'cpuMs' | 'allCpuMs') =>
    round((median(rows[kind].map((x) => x[key])) * 1000) / N, 2);
  const out = {
    bench: 'propagation-subscriber-cost',
    subscribers: N,
    rounds: ROUNDS,
    idleMs: IDLE_MS,
    load: loadavg().map((l) => round(l, 2)),
    remoteUsPerSubscriber: us('remote', 'ms'),
    packageUsPerSubscriber: us('package', 'ms'),
    remoteCpuUsPerSubscriber: us('remote', 'cpuMs'),
    packageCpuUsPerSubscriber: us('package', 'cpuMs'),
    addedUsPerSubscriber: round(us('remote', 'ms') - us('package', 'ms'), 2),
    addedCpuUsPerSubscriber: round(us('remote', 'cpuMs') - us('package', 'cpuMs'), 2),
    /** The CPU of the flip from the first byte until 15 ms after the last subscriber applied it. */
    remoteAllCpuUsPerSubscriber: us('remote', 'allCpuMs'),
    packageAllCpuUsPerSubscriber: us('package', 'allCpuMs'),
    firstRemoteUsPerSubscriber: round((first!.remote.ms * 1000) / N, 2),
    firstPackageUsPerSubscriber: round((first!.package.ms * 1000) / N, 2),
  };
  console.log(
    `${N} subscribers, ${ROUNDS} rounds, ${IDLE_MS} ms idle: ours ${out.remoteUsPerSubscriber} µs (CPU ${out.remoteCpuUsPerSubscriber}), eventsource alone ${out.packageUsPerSubscriber} µs (CPU ${out.packageCpuUsPerSubscriber}) per subscriber and flip: added ${out.addedUsPerSubscriber} µs (CPU ${out.addedCpuUsPerSubscriber}); CPU with the acknowledgement ${out.remoteAllCpuUsPerSubscriber} vs ${out.packageAllCpuUsPerSubscriber} µs; first flip ours ${out.firstRemoteUsPerSubscriber} µs, package ${out.firstPackageUsPerSubscriber} µs | load ${out.load[0]}`,
  );
  console.log(JSON.stringify(out));
  for (const s of sources) await s.stop();
  for (const es of clients) es.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
