/**
 * bench/backends: what each kill-flag backend does, measured on this machine (loopback, one
 * process). KS-12.6.1
 *
 * - `killswitch-sse`: KillSwitchProvider over RemoteFlipSource (SSE + acks + lease). Flip-to-visible
 *   = from the store accepting the record to the provider's PROVIDER_CONFIGURATION_CHANGED.
 * - `ofrep-eval`: the official OFREP server provider, one POST per evaluation (no cache): a flip is
 *   visible to the next evaluation; the figure is the cost of that evaluation (round trip).
 * - `ofrep-poll-1s`: the same provider with a HaltPoller at 1000 ms re-checking an effect in
 *   flight: flip to abort.
 * - `ofrep-bulk-poll-1s`: a bulk client polling `POST /ofrep/v1/evaluate/flags` with If-None-Match
 *   every 1000 ms (what the OFREP web provider does): flip to the 200 that carries the halt.
 * - `launchdarkly-local-stream`: the LaunchDarkly OpenFeature provider on a local SSE stream
 *   (test/fixtures/ld-stream-server.ts): patch written to PROVIDER_CONFIGURATION_CHANGED.
 *
 * Then each backend's server is taken down and a halt is made meanwhile (where it can be): what the
 * worker answers and when (if ever) it fails closed on its own.
 *
 * Usage: node dist/bench/backends/backends.js [--rounds 20] [--poll-rounds 10]
 */
import { cpus, loadavg } from 'node:os';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature, ProviderEvents, type Client, type Provider } from '@openfeature/server-sdk';
import { LaunchDarklyProvider } from '@launchdarkly/openfeature-node-server';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { HaltPoller } from '../../src/ofrep/halt-poller.js';
import { OFREP_PATHS } from '../../src/ofrep/ofrep-routes.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { LdStreamServer } from '../../test/fixtures/ld-stream-server.js';

const TOKEN = 'bench-backends-admin-token-0123456789';
const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const ROUNDS = Number(arg('rounds', '20'));
const POLL_ROUNDS = Number(arg('poll-rounds', '10'));
const STALE_MS = 3000;
const DOWN_OBSERVE_MS = 5000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r2 = (x: number) => Math.round(x * 100) / 100;
function pct(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}
const stats = (xs: readonly number[]) => ({
  n: xs.length,
  p50Ms: r2(pct(xs, 0.5)),
  p99Ms: r2(pct(xs, 0.99)),
  maxMs: r2(Math.max(...xs)),
});
let domainN = 0;
async function bind(p: Provider): Promise<Client> {
  const d = `bench-${++domainN}`;
  await OpenFeature.setProviderAndWait(d, p).catch(() => undefined);
  return OpenFeature.getClient(d);
}
async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await cond()) return performance.now() - t0;
    await sleep(2);
  }
  return null;
}
function nextEvent(client: Client, ms = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no change event')), ms);
    const h = () => {
      clearTimeout(t);
      client.removeHandler(ProviderEvents.ConfigurationChanged, h);
      resolve(performance.now());
    };
    client.addHandler(ProviderEvents.ConfigurationChanged, h);
  });
}

interface Plane {
  cp: ControlPlane;
  store: MemoryFlipLogStore;
  acceptedAt: Map<number, number>;
}
async function plane(port = 0): Promise<Plane> {
  const store = new MemoryFlipLogStore();
  const acceptedAt = new Map<number, number>();
  store.subscribe((r) => acceptedAt.set(r.seq, performance.now()));
  const cp = await startControlPlane({
    store,
    port,
    // A benchmark floods flips: lift the per-token rate limit (KS-17.8.3), measured apart.
    maxFlipsPerSecond: 1_000_000,
    staleAfterMs: STALE_MS,
    auth: new TokenAuthenticator({ tokens: [{ name: 'bench', token: TOKEN, role: 'admin' }] }),
    logger: { info() {}, warn() {}, error() {} },
  });
  return { cp, store, acceptedAt };
}
let tenantN = 0;
async function flip(p: Plane, tenant: string): Promise<number> {
  const res = await fetch(`${p.cp.url}/v1/flips`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ action: 'halt', selector: { tenant }, reason: 'backends bench' }),
  });
  const body = (await res.json()) as { flip: { seq: number } };
  return p.acceptedAt.get(body.flip.seq)!;
}

async function killswitchSse() {
  const p = await plane();
  const provider = new KillSwitchProvider({
    source: new RemoteFlipSource({
      urls: [p.cp.url],
      token: TOKEN,
      workerId: 'bench-sse',
      staleAfterMs: STALE_MS,
      heartbeatMs: 1000,
    }),
    logger: { warn() {} },
  });
  const client = await bind(provider);
  await until(() => provider.sourceStatus === 'open', 10_000);
  const lat: number[] = [];
  for (let i = 0; i < ROUNDS + 1; i++) {
    const tenant = `sse-${tenantN++}`;
    const seen = nextEvent(client);
    const t0 = await flip(p, tenant);
    const t1 = await seen;
    if (!(await evaluateKill(client, { tenant })).halted) throw new Error('sse: not halted');
    if (i > 0) lat.push(t1 - t0);
    await sleep(20);
  }
  // Down: the control plane goes away; the worker's lease runs out and it fails closed.
  await p.cp.close();
  const failClosedAfter = await until(
    async () => (await evaluateKill(client, { tenant: 'untouched' })).halted,
    STALE_MS + DOWN_OBSERVE_MS,
  );
  const d = await client.getBooleanDetails('kill-switch', false, { tenant: 'untouched' });
  await OpenFeature.clearProviders();
  return {
    push: true,
    flipToVisible: stats(lat),
    down: {
      failsClosedAfterMs: failClosedAfter === null ? null : Math.round(failClosedAfter),
      answerToDefaultFalseCaller: { value: d.value, variant: d.variant, reason: d.reason },
      staleAfterMs: STALE_MS,
    },
  };
}

async function ofrep() {
  const p = await plane();
  const provider = new OFREPProvider({
    baseUrl: p.cp.url,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const client = await bind(provider);
  // Cost of one evaluation (= staleness of a per-evaluation client: the next one sees the flip).
  const evalLat: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    await evaluateKill(client, { tenant: 'x', runId: 'r' });
    if (i >= 20) evalLat.push(performance.now() - t0);
  }
  // Visible to the next evaluation after the flip.
  const nextEval: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const tenant = `ofrep-${tenantN++}`;
    const t0 = await flip(p, tenant);
    if (!(await evaluateKill(client, { tenant })).halted) throw new Error('ofrep: not halted');
    nextEval.push(performance.now() - t0);
  }
  // In flight, HaltPoller at 1000 ms.
  const guard = new EffectGuard({
    client,
    ledger: new MemorySideEffectLedger(),
    logger: { warn() {} },
  });
  const poller = new HaltPoller({ watcher: guard.watcher, intervalMs: 1000 });
  poller.start();
  const abortLat: number[] = [];
  for (let i = 0; i < POLL_ROUNDS; i++) {
    const tenant = `poll-${tenantN++}`;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    let abortedAt = 0;
    const done = guard
      .run({ context: { tenant }, runId: `r${i}`, step: 's', capability: 'c' }, (signal) => {
        started();
        return new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            abortedAt = performance.now();
            reject(signal.reason);
          }),
        );
      })
      .catch(() => undefined);
    await running;
    await sleep(Math.random() * 1000); // flip at a random phase of the poll
    const t0 = await flip(p, tenant);
    await done;
    abortLat.push(abortedAt - t0);
  }
  poller.stop();
  await guard.close();
  // Bulk polling with ETag at 1000 ms.
  const bulkLat: number[] = [];
  let notModified = 0;
  let full = 0;
  for (let i = 0; i < POLL_ROUNDS; i++) {
    const tenant = `bulk-${tenantN++}`;
    let etag: string | undefined;
    let flipAt: number | undefined;
    const flipper = sleep(500 + Math.random() * 1000).then(async () => {
      flipAt = await flip(p, tenant);
    });
    for (;;) {
      const res = await fetch(`${p.cp.url}${OFREP_PATHS.bulk}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/json',
          ...(etag ? { 'if-none-match': etag } : {}),
        },
        body: JSON.stringify({ context: { tenant } }),
      });
      if (res.status === 304) {
        notModified++;
      } else {
        full++;
        etag = res.headers.get('etag') ?? undefined;
        const body = (await res.json()) as { flags: { key: string; value: boolean }[] };
        if (body.flags.find((f) => f.key === 'kill-switch')?.value === true) {
          bulkLat.push(performance.now() - flipAt!);
          break;
        }
      }
      await sleep(1000);
    }
    await flipper;
  }
  // Down.
  await p.cp.close();
  const t0 = performance.now();
  const withTrue = await evaluateKill(client, { tenant: 'untouched' });
  const firstAnswerMs = performance.now() - t0;
  const withFalse = await client.getBooleanDetails('kill-switch', false, { tenant: 'untouched' });
  const status = client.providerStatus;
  await OpenFeature.clearProviders();
  return {
    perEvaluation: {
      push: false,
      evaluationRoundTrip: stats(evalLat),
      flipToNextEvaluation: stats(nextEval),
    },
    poll1s: { push: false, flipToAbortInFlight: stats(abortLat) },
    bulkPoll1s: { push: false, flipToVisible: stats(bulkLat), notModified, full },
    down: {
      guardDefaultTrue: { halted: withTrue.halted, cause: withTrue.cause },
      guardAnswerMs: r2(firstAnswerMs),
      defaultFalseCaller: { value: withFalse.value, errorCode: withFalse.errorCode },
      providerStatus: status,
    },
  };
}

async function launchDarkly() {
  const ld = new LdStreamServer();
  await ld.start();
  const port = Number(new URL(ld.url).port);
  const provider = new LaunchDarklyProvider(
    'sdk-local-bench-key',
    {
      streamUri: ld.url,
      baseUri: ld.url,
      eventsUri: ld.url,
      sendEvents: false,
      diagnosticOptOut: true,
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    },
    5,
  );
  const client = await bind(provider);
  const lat: number[] = [];
  for (let i = 0; i < ROUNDS + 1; i++) {
    const tenant = `ld-${tenantN++}`;
    const seen = nextEvent(client);
    const t0 = performance.now();
    ld.halt({ tenant });
    const t1 = await seen;
    if (!(await evaluateKill(client, { tenant, runId: 'r' })).halted)
      throw new Error('ld: not halted');
    if (i > 0) lat.push(t1 - t0);
    await sleep(20);
  }
  await ld.stop();
  ld.halt({ tenant: 'made-while-down' });
  const failClosed = await until(
    async () => (await evaluateKill(client, { tenant: 'made-while-down', runId: 'r' })).halted,
    DOWN_OBSERVE_MS,
  );
  const d = await client.getBooleanDetails('kill-switch', true, {
    tenant: 'made-while-down',
    targetingKey: 'r',
  });
  const status = client.providerStatus;
  // Back on the same port: the SDK reconnects and gets the full state.
  await ld.start(port);
  const recovered = await until(
    async () => (await evaluateKill(client, { tenant: 'made-while-down', runId: 'r' })).halted,
    30_000,
  );
  await ld.stop();
  await OpenFeature.clearProviders();
  return {
    push: true,
    flipToVisible: stats(lat),
    down: {
      observedMs: DOWN_OBSERVE_MS,
      failsClosed: failClosed !== null,
      haltMadeWhileDown: { value: d.value, reason: d.reason },
      providerStatus: status,
      seenAfterStreamBackMs: recovered === null ? null : Math.round(recovered),
    },
  };
}

async function main(): Promise<void> {
  const sse = await killswitchSse();
  console.log(
    `killswitch SSE: flip to visible p50 ${sse.flipToVisible.p50Ms} ms p99 ${sse.flipToVisible.p99Ms} ms; down -> fails closed after ${sse.down.failsClosedAfterMs} ms`,
  );
  const o = await ofrep();
  console.log(
    `OFREP per evaluation: round trip p50 ${o.perEvaluation.evaluationRoundTrip.p50Ms} ms; poll 1 s: flip to abort p50 ${o.poll1s.flipToAbortInFlight.p50Ms} ms p99 ${o.poll1s.flipToAbortInFlight.p99Ms} ms; bulk poll 1 s p50 ${o.bulkPoll1s.flipToVisible.p50Ms} ms; down -> guard ${JSON.stringify(o.down.guardDefaultTrue)}, default-false caller ${JSON.stringify(o.down.defaultFalseCaller)}, status ${o.down.providerStatus}`,
  );
  const l = await launchDarkly();
  console.log(
    `LaunchDarkly local stream: flip to visible p50 ${l.flipToVisible.p50Ms} ms p99 ${l.flipToVisible.p99Ms} ms; down ${l.down.observedMs} ms -> fails closed: ${l.down.failsClosed}, status ${l.down.providerStatus}, halt made while down answered ${JSON.stringify(l.down.haltMadeWhileDown)}; seen ${l.down.seenAfterStreamBackMs} ms after the stream came back`,
  );
  console.log(
    JSON.stringify({
      bench: 'backends',
      at: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      loadavg: loadavg().map(r2),
      rounds: ROUNDS,
      pollRounds: POLL_ROUNDS,
      killswitchSse: sse,
      ofrep: o,
      launchDarklyLocalStream: l,
    }),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
