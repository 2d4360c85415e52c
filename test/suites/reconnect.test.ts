/**
 * KS-13.3 Reconnect suite: a fast-check property. Per run, a fresh control plane applies 1,000
 * flips (concurrent batches of 10) while fast-check's schedule cuts the connections of five
 * remote flip sources at random moments: a reset, a FIN, or a cut at a random byte of the next
 * chunk (inside an event, inside HTTP chunk framing, inside the response head), each through the
 * client's own proxy, stream and acknowledgements alike. Every client must end with every flip
 * applied once and in order (none missed, duplicated or reordered; a skip is allowed only across
 * a snapshot resynchronisation, KS-6.3.10, which the run counts and prints), with the log's
 * hashes and the log's final state.
 *
 * `KS_RECONNECT_RUNS` (default 3) sets the number of runs; fast-check prints the seed and the
 * shrunk schedule on failure (replay with KS_SUITE_SEED).
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { FaultProxy, type CutMode } from '../wire/fault-proxy.js';
import { RecordingListener } from './support/recording-listener.js';
import {
  SUITE_TOKENS,
  SUITE_TOKEN_SPECS,
  httpJson,
  suiteSeed,
  waitFor,
} from './support/serve-process.js';

const FLIPS = 1000;
const BATCH = 10;
const CLIENTS = 5;
const RUNS = Number(process.env['KS_RECONNECT_RUNS'] ?? 3);

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

interface Cut {
  /** Before the batch that starts with this flip index. */
  readonly batch: number;
  /** Which client, or every client at once. */
  readonly client: number | 'all';
  readonly mode: CutMode;
  readonly fraction: number;
  /** Pause after this batch, letting a reconnect land in the middle of the next ones. */
  readonly pauseMs: number;
}

const cutArb: fc.Arbitrary<Cut> = fc.record({
  batch: fc.integer({ min: 0, max: FLIPS / BATCH - 1 }),
  client: fc.oneof(fc.integer({ min: 0, max: CLIENTS - 1 }), fc.constant('all' as const)),
  mode: fc.constantFrom<CutMode>('reset', 'mid', 'fin'),
  fraction: fc.double({ min: 0, max: 1, noNaN: true }),
  pauseMs: fc.integer({ min: 0, max: 40 }),
});

async function runSchedule(cuts: readonly Cut[]): Promise<void> {
  const store = new MemoryFlipLogStore();
  const cp: ControlPlane = await startControlPlane({
    store,
    port: 0,
    heartbeatMs: 200,
    staleAfterMs: 2000,
    // 1,000 flips as fast as they go: not what the flip rate limit (KS-17.8.3) is for.
    maxFlipsPerSecond: 100_000,
    auth: new TokenAuthenticator({ tokens: SUITE_TOKEN_SPECS }),
    logger: { info: () => {}, warn: () => {}, error: (m) => console.error(m) },
  });
  cleanup.push(() => cp.close());
  const proxies: FaultProxy[] = [];
  const sources: RemoteFlipSource[] = [];
  const listeners: RecordingListener[] = [];
  for (let c = 0; c < CLIENTS; c++) {
    const proxy = await FaultProxy.start(cp.port);
    cleanup.push(() => proxy.close());
    const source = new RemoteFlipSource({
      urls: [proxy.url],
      token: SUITE_TOKENS.worker,
      workerId: `reconnect-${c}`,
      staleAfterMs: 2000,
      heartbeatMs: 200,
      backoff: { initialMs: 10, maxMs: 100 },
    });
    const l = new RecordingListener();
    await source.start(l);
    cleanup.push(() => source.stop());
    proxies.push(proxy);
    sources.push(source);
    listeners.push(l);
  }
  await waitFor(() => sources.every((s) => s.status === 'open'), 15_000, 'clients open');

  const byBatch = new Map<number, Cut[]>();
  for (const c of cuts) byBatch.set(c.batch, [...(byBatch.get(c.batch) ?? []), c]);
  for (let b = 0; b < FLIPS / BATCH; b++) {
    let pause = 0;
    for (const cut of byBatch.get(b) ?? []) {
      const targets = cut.client === 'all' ? proxies : [proxies[cut.client]!];
      for (const p of targets) p.cut(cut.mode, cut.fraction);
      pause = Math.max(pause, cut.pauseMs);
    }
    // One batch: ten tenants, all halted on even batches and resumed on odd ones, concurrently
    // (the control plane serialises them; the order among them is the log's).
    const answers = await Promise.all(
      Array.from({ length: BATCH }, (_, k) =>
        httpJson(`${cp.url}/v1/flips`, 'POST', {
          token: SUITE_TOKENS.admin,
          body: {
            action: b % 2 === 0 ? 'halt' : 'resume',
            selector: { tenant: `t${k}` },
            reason: `reconnect suite batch ${b}`,
          },
        }),
      ),
    );
    for (const a of answers) expect(a.status).toBe(201);
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  }
  const log = await store.read();
  expect(log.length).toBe(FLIPS);
  await waitFor(
    () => sources.every((s) => s.appliedSeq >= FLIPS),
    30_000,
    `every client at seq ${FLIPS} (at ${sources.map((s) => s.appliedSeq).join(', ')})`,
  );
  for (const [i, l] of listeners.entries()) {
    expect(l.judge(log), `client ${i}`).toBeUndefined();
  }
  const cutCount = proxies.map((p) => p.cutsByMode.reset + p.cutsByMode.mid + p.cutsByMode.fin);
  const resyncs = listeners.map((l) => l.snapshots - 1);
  console.log(
    `[reconnect] ${cuts.length} scheduled cuts; connections cut per client ${cutCount.join(', ')}; ` +
      `connections opened ${proxies.map((p) => p.accepted).join(', ')}; snapshot resyncs ${resyncs.join(', ')}`,
  );
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
}

describe('KS-13.3.1 connections cut at random while 1,000 flips are applied: no client misses, duplicates or reorders a flip', () => {
  it(`${RUNS} fast-check runs of ${FLIPS} flips, ${CLIENTS} clients, random resets, FINs and mid-chunk cuts`, async () => {
    const seed = suiteSeed('reconnect');
    await fc.assert(
      fc.asyncProperty(fc.array(cutArb, { minLength: 20, maxLength: 60 }), async (cuts) => {
        await runSchedule(cuts);
      }),
      { numRuns: RUNS, seed, verbose: 1, endOnFailure: true },
    );
  }, 300_000);
});
