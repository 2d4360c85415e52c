/**
 * Child process of the propagation benchmark: holds many RemoteFlipSource subscribers, as many
 * raw node:http clients of the floor server and, when asked, as many bare `eventsource` clients
 * of a second bare server (the package alone, over the transport RemoteFlipSource uses), and
 * reports over IPC the `performance.now()` at which each one applied (the floor: received; the
 * package: dispatched) a given seq. The parent maps these times onto its own clock with the
 * offset it measured by ping (see propagation.ts).
 */
import { request } from 'node:http';
import { EventSource } from 'eventsource';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { nodeStreamFetch } from '../../providers/remote/node-stream-fetch.js';
import type { FlipSourceListener } from '../../src/source/index.js';

/** Messages from the parent. */
export type ToWorker =
  | {
      readonly type: 'init';
      readonly url: string;
      /** A bare server for raw node:http clients (the floor); none: no floor clients. */
      readonly floorUrl?: string;
      /** A bare server for `eventsource` clients with nothing of ours on top; none: not measured. */
      readonly packageUrl?: string;
      readonly token: string;
      readonly count: number;
      readonly prefix: string;
      readonly staleAfterMs: number;
      readonly heartbeatMs: number;
    }
  | { readonly type: 'ping'; readonly id: number }
  /** Take the CPU baseline for the next round now (off its critical path). */
  | { readonly type: 'mark' }
  | { readonly type: 'stop' };

/** Messages to the parent. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'pong'; readonly id: number; readonly t: number }
  | { readonly type: 'marked' }
  | {
      readonly type: 'applied';
      readonly kind: Kind;
      readonly seq: number;
      readonly times: number[];
      /** CPU time (user + system) this process spent from the round's mark to the last subscriber. */
      readonly cpuMs: number;
    }
  | { readonly type: 'stopped' }
  | { readonly type: 'error'; readonly message: string };

/** remote: RemoteFlipSource; floor: raw node:http client; package: the eventsource package alone. */
export type Kind = 'remote' | 'floor' | 'package';

const send = (m: FromWorker) => process.send!(m);

const sources: RemoteFlipSource[] = [];
const rawRequests: { destroy(): void }[] = [];
const packageClients: EventSource[] = [];
/** kind:seq -> times of each subscriber that has it */
const seen = new Map<string, number[]>();
/**
 * Process CPU usage when the parent marked the start of the round. Taken on the parent's request
 * before the round starts, not when the first subscriber receives it: process.cpuUsage() costs
 * 15 us to 0.5 ms on these machines and would delay every later subscriber of the process.
 */
let cpuAtMark: NodeJS.CpuUsage = process.cpuUsage();
let count = 0;

function record(kind: Kind, seq: number, t: number): void {
  const key = `${kind}:${seq}`;
  let times = seen.get(key);
  if (!times) seen.set(key, (times = []));
  times.push(t);
  if (times.length === count) {
    seen.delete(key);
    const cpu = process.cpuUsage(cpuAtMark);
    send({ type: 'applied', kind, seq, times, cpuMs: (cpu.user + cpu.system) / 1000 });
  }
}

async function init(m: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  count = m.count;
  const opened: Promise<void>[] = [];
  for (let i = 0; i < m.count; i++) {
    const source = new RemoteFlipSource({
      urls: [m.url],
      token: m.token,
      workerId: `${m.prefix}-${i}`,
      release: 'bench',
      staleAfterMs: m.staleAfterMs,
      heartbeatMs: m.heartbeatMs,
    });
    let resolveOpen!: () => void;
    opened.push(new Promise<void>((r) => (resolveOpen = r)));
    const listener: FlipSourceListener = {
      onSnapshot: () => {},
      onFlip: (r) => record('remote', r.seq, performance.now()),
      onStatus: (s) => {
        if (s === 'open') resolveOpen();
      },
    };
    sources.push(source);
    await source.start(listener);
  }
  // The floor: a raw HTTP client that only looks for the event id in what arrives.
  for (let i = 0; m.floorUrl !== undefined && i < m.count; i++) {
    opened.push(
      new Promise<void>((resolve, reject) => {
        const req = request(m.floorUrl!, { agent: false }, (res) => {
          resolve();
          res.on('data', (chunk: Buffer) => {
            const t = performance.now();
            const s = chunk.toString('latin1');
            for (const match of s.matchAll(/\nid: (\d+)\n/g)) record('floor', Number(match[1]), t);
          });
        });
        req.on('error', reject);
        req.end();
        rawRequests.push(req);
      }),
    );
  }
  // The package alone: what any subscriber built on `eventsource` pays before its own code runs.
  if (m.packageUrl !== undefined) {
    for (let i = 0; i < m.count; i++) {
      opened.push(
        new Promise<void>((resolve) => {
          const es = new EventSource(m.packageUrl!, {
            fetch: (input, init) => nodeStreamFetch(input, init, () => {}),
          });
          es.addEventListener('open', () => resolve(), { once: true });
          es.addEventListener('flip', (ev) =>
            record('package', Number(ev.lastEventId), performance.now()),
          );
          packageClients.push(es);
        }),
      );
    }
  }
  let done = 0;
  for (const p of opened) void p.then(() => done++);
  const progress = setInterval(() => {
    if (process.env['PROPAGATION_DEBUG'])
      console.log(`${m.prefix}: ${done}/${opened.length} connected`);
  }, 5000);
  await Promise.all(opened);
  clearInterval(progress);
  send({ type: 'ready' });
}

// The parent is gone (it failed or was killed): nothing to report to, so do not linger.
process.on('disconnect', () => process.exit(0));

process.on('message', (m: ToWorker) => {
  if (m.type === 'ping') send({ type: 'pong', id: m.id, t: performance.now() });
  else if (m.type === 'mark') {
    cpuAtMark = process.cpuUsage();
    send({ type: 'marked' });
  } else if (m.type === 'init')
    init(m).catch((err: unknown) => send({ type: 'error', message: String(err) }));
  else if (m.type === 'stop') {
    void Promise.all(sources.map((s) => s.stop())).then(() => {
      for (const r of rawRequests) r.destroy();
      for (const es of packageClients) es.close();
      send({ type: 'stopped' });
      process.disconnect();
    });
  }
});
