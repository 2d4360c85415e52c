// Side by side with the peers (issue 8): for each flag system, on loopback, in one go,
//   1. time from a flip (the moment the flip request is sent) to a worker seeing the new value,
//      over several flips (p50 / p99 / max), and
//   2. what a running worker answers while the flag server is down (killed with SIGKILL), and
//      after how long that answer changes; plus what a worker started during the outage answers.
// Every server is a child process of this one on 127.0.0.1, killed by its pid; every worker is an
// SDK client in this process. A peer that cannot start gets a row saying why; the rest still run.
// Output: progress on stderr, one Markdown table and one JSON line on stdout.
//
// Usage (after `npm run build` at the repository root):
//   cd bench/peers && npm ci && npm run compare
// Environment (all optional):
//   PEERS_ONLY=ks,ofrep,ld,unleash   which rows to run
//   PEERS_FLIPS=30                   flips for the streaming rows (ks, ld) and OFREP
//   PEERS_UNLEASH_FAST_FLIPS=10      flips for Unleash at 1 s refresh
//   PEERS_UNLEASH_DEFAULT_FLIPS=4    flips for Unleash at its default 15 s refresh
//   PEERS_OUTAGE_MS=8000             how long each outage is watched
//   PEERS_RUNS=3                     whole runs; flips are pooled, each run's p50 is shown
//   PEERS_PAIRED_FLIPS=0             also: this many flips each on this project's SSE and on
//                                    LaunchDarkly, both up at once, flip by flip in turn (the
//                                    order swapped every pair), so both meet the same moment of
//                                    the machine; prints the two p50s, per kind, and their ratio
//   PEERS_PG_URL=postgres://postgres@127.0.0.1:5432/postgres   where Unleash's database is made
/* global fetch, AbortSignal */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const DIST = join(ROOT, 'dist');

const intEnv = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
};

const CONFIG = {
  only: (process.env.PEERS_ONLY || 'ks,ofrep,ld,unleash').split(',').map((s) => s.trim()),
  flips: intEnv('PEERS_FLIPS', 30),
  unleashFastFlips: intEnv('PEERS_UNLEASH_FAST_FLIPS', 10),
  unleashDefaultFlips: intEnv('PEERS_UNLEASH_DEFAULT_FLIPS', 4),
  outageMs: intEnv('PEERS_OUTAGE_MS', 8000),
  runs: Math.max(1, intEnv('PEERS_RUNS', 3)),
  pairedFlips: intEnv('PEERS_PAIRED_FLIPS', 0),
  pgUrl: process.env.PEERS_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
  /** A worker started during the outage is given this long to come up before it is asked. */
  newWorkerWaitMs: 3000,
  /** The whole run is cut off after this long (every child killed), so it always ends. */
  hardLimitMs: 30 * 60_000,
};

/** The context every worker evaluates with; the flag means "halted" (true = stop the agent). */
const TENANT = 'bench-peers';
const RELEASE = 'bench-peers-r1';
const log = (msg) => process.stderr.write(`[peers] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Child processes: started here, killed here by pid, never by name.

const children = new Set();

/**
 * Starts `node <args>` and resolves with the first JSON line on stdout that has `url` or `port`.
 * Rejects (with the tail of stderr) when the child exits first or `readyMs` passes.
 */
function startChild(label, args, { env = {}, cwd = HERE, readyMs = 60_000 } = {}) {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  exited.then(() => children.delete(child));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${label} not ready after ${readyMs} ms; stderr: ${tail(stderr)}`));
    }, readyMs);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      let parsed;
      try {
        parsed = JSON.parse(line);
      } catch {
        return;
      }
      if (parsed && (typeof parsed.url === 'string' || typeof parsed.port === 'number')) {
        clearTimeout(timer);
        resolve(parsed);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(`${label} exited (code ${code}, signal ${signal}); stderr: ${tail(stderr)}`),
      );
    });
  });
  // Keep reading stdout so a chatty child never blocks on a full pipe.
  child.stdout.resume();
  return {
    child,
    ready,
    exited,
    /** SIGKILL by pid, and wait until the process is gone. */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

const tail = (s) => s.trim().split('\n').slice(-6).join(' | ').slice(-800) || '(empty)';

function killAllChildrenNow() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
process.on('exit', killAllChildrenNow);

/**
 * An SDK may emit an 'error' nobody listens to after it was closed (unleash-client's repository
 * does when a fetch started before destroy() fails after it). That must not end the comparison of
 * the others: it is logged and counted in the JSON line instead.
 */
const stray = [];
process.on('uncaughtException', (err) => {
  const message = `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : String(err)}`;
  stray.push(message);
  log(`stray error from an SDK (ignored): ${message}`);
});
process.on('unhandledRejection', (err) => {
  const message = `unhandled rejection: ${err && err.message ? err.message : String(err)}`;
  stray.push(message);
  log(`stray rejection from an SDK (ignored): ${message}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAllChildrenNow();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/**
 * Resolves with the time (performance.now) at which `worker.read()` first answers `target`, or
 * undefined at `deadline`. It reads every `pollMs` and at once when the SDK announces a change,
 * so an SDK with change events is timed at the event, one without to within `pollMs`.
 */
async function waitForValue(worker, target, deadline, pollMs) {
  let pending = false;
  let wake;
  const off = worker.onChange(() => {
    pending = true;
    wake?.();
  });
  try {
    while (performance.now() < deadline) {
      pending = false;
      const { value } = await worker.read();
      if (value === target) return performance.now();
      if (pending) continue;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    return undefined;
  } finally {
    off();
  }
}

/**
 * Flips `count` times (alternating halted / running, starting from what the worker sees) and
 * returns each flip's time to seen in ms, with what each flip was (`halts[i]`: true for a halt).
 * `gapMs()` is waited before each flip, so a polling client is caught at a random phase of its
 * poll. Ends on `false` (running) when `count` is even.
 */
async function measureFlips(label, worker, flip, { count, gapMs, timeoutMs, pollMs }) {
  const latencies = [];
  const answered = [];
  const halts = [];
  let current = (await worker.read()).value;
  for (let i = 0; i < count; i++) {
    await sleep(gapMs());
    const target = !current;
    const t0 = performance.now();
    const seen = waitForValue(worker, target, t0 + timeoutMs, pollMs);
    await flip(target);
    answered.push(performance.now() - t0);
    const at = await seen;
    if (at === undefined)
      throw new Error(`${label}: flip ${i + 1} to ${target} not seen within ${timeoutMs} ms`);
    latencies.push(at - t0);
    halts.push(target);
    current = target;
    log(
      `${label}: flip ${i + 1}/${count} -> ${target} answered after ${fmtMs(answered[i])}, seen after ${fmtMs(at - t0)}`,
    );
  }
  return { latencies, answered, halts };
}

/** Waits until the worker's answer label satisfies `ok`; false after `ms`. */
async function waitForLabel(worker, ok, ms) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (ok((await worker.read()).label)) return true;
    await sleep(10);
  }
  return false;
}

/** Makes sure every worker sees `false` (running) before an outage. */
async function settleRunning(label, workers, flip, timeoutMs) {
  const states = await Promise.all(workers.map((w) => w.read()));
  if (states.every((s) => s.value === false)) return;
  const t0 = performance.now();
  const seen = Promise.all(workers.map((w) => waitForValue(w, false, t0 + timeoutMs, 5)));
  await flip(false);
  if ((await seen).some((at) => at === undefined))
    throw new Error(`${label}: could not settle on running`);
}

/**
 * Kills the server and samples every worker's answer for `outageMs`; returns, per worker, the
 * answers it gave in order with the time (since the kill) at which each began.
 */
async function measureOutage(workers, kill, outageMs) {
  const t0 = performance.now();
  await kill();
  const timelines = workers.map(() => []);
  while (performance.now() - t0 < outageMs) {
    const answers = await Promise.all(workers.map((w) => w.read()));
    const at = performance.now() - t0;
    answers.forEach((a, i) => {
      const line = timelines[i];
      const last = line[line.length - 1];
      if (!last || last.label !== a.label) line.push({ atMs: at, value: a.value, label: a.label });
    });
    await sleep(5);
  }
  return timelines;
}

/**
 * "false (last value) from 0 s; true (fail-closed STALE) from 3.05 s", and the verdict.
 *
 * @param leaseMs - a worker that holds its last value for a bounded lease after its last contact
 *   (this project's RemoteFlipSource: staleAfterMs) and fails closed when it runs out. An outage
 *   watched for less than that cannot show the fail-closed answer: holding the last value then is
 *   the design, not fail open, and the verdict says so instead of calling it fail open.
 */
function describeOutage(timeline, outageMs, { leaseMs } = {}) {
  const text = timeline
    .map((s, i) => `${s.label}${i === 0 ? '' : ` from ${fmtS(s.atMs)}`}`)
    .join(', then ');
  const last = timeline[timeline.length - 1];
  const closedAt = timeline.find(
    (s, i) => s.value === true && timeline.slice(i).every((x) => x.value),
  );
  let verdict;
  if (last === undefined) verdict = 'unknown';
  else if (last.value === true && closedAt && closedAt.atMs < 50) verdict = 'fail closed at once';
  else if (last.value === true && closedAt) verdict = `fail closed after ${fmtS(closedAt.atMs)}`;
  else if (leaseMs !== undefined && outageMs <= leaseMs)
    verdict = `last value held for all ${fmtS(outageMs)}, within its ${fmtS(leaseMs)} lease (by design: it fails closed when the lease runs out; watch longer than ${fmtS(leaseMs)} to see it)`;
  else verdict = `stale: last value for all ${fmtS(outageMs)} (fail open)`;
  return { text, verdict, failClosedAfterMs: closedAt ? round(closedAt.atMs) : null };
}

const percentile = (sorted, p) =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const round = (n) => Math.round(n * 100) / 100;
const fmtMs = (ms) =>
  !Number.isFinite(ms)
    ? 'n/a'
    : ms >= 1000
      ? `${(ms / 1000).toFixed(2)} s`
      : ms >= 10
        ? `${ms.toFixed(1)} ms`
        : `${ms.toFixed(2)} ms`;
const fmtS = (ms) => `${(ms / 1000).toFixed(2)} s`;

/**
 * Seen: p50/p99/max from the flip request; answered: p50 of the flip request's own answer. With
 * `halts` (what each flip was), seen is also split into halts and resumes: this project streams a
 * halt while its write is in flight (KS-2.4.9) and a resume only once durable, so the pooled
 * figure mixes two paths.
 */
function stats({ latencies, answered, halts }) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const acks = [...answered].sort((a, b) => a - b);
  // Propagation alone: each flip's seen time after its own answer (the write's cost left out).
  const after = latencies.map((l, i) => l - answered[i]).sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? NaN),
    answeredP50: round(percentile(acks, 50)),
    afterAnswerP50: round(percentile(after, 50)),
    afterAnswerP99: round(percentile(after, 99)),
    samples: latencies.map(round),
    answeredSamples: answered.map(round),
    ...(halts?.length === latencies.length
      ? {
          halts: kindStats(latencies.filter((_, i) => halts[i])),
          resumes: kindStats(latencies.filter((_, i) => !halts[i])),
          sampleHalts: halts,
        }
      : {}),
  };
}

/** p50 / p99 of one kind of flip (halts or resumes). */
function kindStats(latencies) {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
  };
}

/** Runs `fn` with a time limit; the peer's own cleanup runs in its finally either way. */
async function withLimit(label, ms, fn) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: gave up after ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([fn(), limit]);
  } finally {
    clearTimeout(timer);
  }
}

async function httpJson(method, url, { headers = {}, body, timeoutMs = 10_000 } = {}) {
  const res = await fetch(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** RemoteFlipSource's default lease (staleAfterMs), the one the bench's SSE worker runs with. */
const KS_STALE_AFTER_MS = 3000;

const quietLogger = { debug() {}, info() {}, warn() {}, error() {} };

// ---------------------------------------------------------------------------------------------
// This project: `killswitch serve` + KillSwitchProvider(RemoteFlipSource) over SSE, and OFREP.

const OFREP_ROW = "this project's OFREP endpoint + @openfeature/ofrep-provider 0.1.3";

async function loadOpenFeature() {
  const sdk = await import('@openfeature/server-sdk');
  return sdk;
}

/**
 * Starts `killswitch serve` on a fresh data directory (file flip log, fsync on). With `ofrepPlane`
 * it starts servers/ks-ofrep-plane.mjs instead: the same control plane with src/ofrep's routes
 * mounted, for a build whose `serve` does not mount them.
 */
async function startKillSwitch(label, { ofrepPlane = false } = {}) {
  const cli = join(DIST, 'src', 'cli', 'main.js');
  if (!existsSync(cli))
    throw new Error(`${cli} is missing: run \`npm run build\` at the repository root first`);
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-peers-ks-'));
  const token = randomBytes(24).toString('hex');
  const args = ofrepPlane
    ? [join(HERE, 'servers', 'ks-ofrep-plane.mjs'), DIST, dataDir]
    : [cli, 'serve', '--port', '0', '--data-dir', dataDir, '--json'];
  const proc = startChild(label, args, {
    env: { KILLSWITCH_ADMIN_TOKEN: token },
    cwd: dataDir,
    readyMs: 30_000,
  });
  const cleanup = async () => {
    await proc.kill();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const { url } = await proc.ready;
    const auth = { authorization: `Bearer ${token}` };
    // `serve` gates resumes on a release marked green (KS-10.5): mark the bench's release once,
    // and name it on every resume.
    const marked = await httpJson('POST', `${url}/v1/releases`, {
      headers: auth,
      body: { release: RELEASE, status: 'green', reason: 'bench/peers' },
    });
    if (marked.status !== 201 && marked.status !== 200 && marked.status !== 404)
      throw new Error(
        `marking release ${RELEASE} green answered ${marked.status}: ${marked.text.slice(0, 300)}`,
      );
    const flip = async (halted) => {
      const r = await httpJson('POST', `${url}/v1/flips`, {
        headers: auth,
        body: {
          action: halted ? 'halt' : 'resume',
          selector: { tenant: TENANT },
          reason: 'bench/peers flip',
          ...(halted ? {} : { release: RELEASE }),
        },
      });
      if (r.status !== 201 && r.status !== 200)
        throw new Error(`flip answered ${r.status}: ${r.text.slice(0, 300)}`);
    };
    return { url, token, auth, flip, proc, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function ksLabel(details) {
  if (details.variant === 'fail-closed') return `${details.value} (fail-closed ${details.reason})`;
  if (details.errorCode) return `${details.value} (default, ${details.errorCode})`;
  return details.value ? 'true (halted)' : 'false (running)';
}

async function ksWorker(OF, url, token, domain) {
  const remote = await import(pathToFileURL(join(DIST, 'providers', 'remote', 'index.js')).href);
  const prov = await import(pathToFileURL(join(DIST, 'src', 'provider', 'index.js')).href);
  const source = new remote.RemoteFlipSource({
    urls: [url],
    token,
    workerId: `${domain}-${process.pid}`,
    staleAfterMs: KS_STALE_AFTER_MS,
    logger: quietLogger,
  });
  const provider = new prov.KillSwitchProvider({ source, logger: quietLogger });
  const client = OF.OpenFeature.getClient(domain);
  const listeners = new Set();
  client.addHandler(OF.ProviderEvents.ConfigurationChanged, () => listeners.forEach((l) => l()));
  client.addHandler(OF.ProviderEvents.Stale, () => listeners.forEach((l) => l()));
  // A worker started while the server is down must not wait forever for READY.
  await Promise.race([
    OF.OpenFeature.setProviderAndWait(domain, provider).catch(() => {}),
    sleep(CONFIG.newWorkerWaitMs),
  ]);
  return {
    async read() {
      const d = await client.getBooleanDetails('kill-switch', true, { tenant: TENANT });
      return { value: d.value, label: ksLabel(d) };
    },
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      await provider.onClose?.();
    },
  };
}

async function runKillSwitch(OF) {
  const server = await startKillSwitch('killswitch serve');
  const workers = [];
  try {
    const worker = await ksWorker(OF, server.url, server.token, 'bench-ks');
    workers.push(worker);
    // setProviderAndWait resolves once the source started; the first snapshot comes after.
    const live = await waitForLabel(worker, (l) => !l.includes('fail-closed'), 15_000);
    if (!live)
      throw new Error(`worker did not get a snapshot in 15 s: ${(await worker.read()).label}`);
    const latencies = await measureFlips('kill-switch SSE', worker, server.flip, {
      count: CONFIG.flips,
      gapMs: () => 20 + Math.random() * 80,
      timeoutMs: 10_000,
      pollMs: 1,
    });
    await settleRunning('kill-switch SSE', [worker], server.flip, 10_000);
    log('kill-switch SSE: killing the control plane');
    const [timeline] = await measureOutage([worker], () => server.proc.kill(), CONFIG.outageMs);
    const fresh = await ksWorker(OF, server.url, server.token, 'bench-ks-new');
    workers.push(fresh);
    const freshAnswer = (await fresh.read()).label;
    return {
      name: 'this project, SSE (killswitch serve + KillSwitchProvider/RemoteFlipSource)',
      transport: `SSE push, ack-renewed lease (staleAfterMs ${KS_STALE_AFTER_MS})`,
      ...stats(latencies),
      outage: describeOutage(timeline, CONFIG.outageMs, { leaseMs: KS_STALE_AFTER_MS }),
      caveat: 'halted whatever default the caller passes (the provider answers fail-closed itself)',
      newWorker: freshAnswer,
    };
  } finally {
    for (const w of workers) await w.close().catch(() => {});
    await server.cleanup();
  }
}

function ofrepLabel(d) {
  if (d.errorCode) return `${d.value} (default, ${d.errorCode})`;
  if (d.variant === 'fail-closed') return `${d.value} (fail-closed ${d.reason})`;
  return d.value ? 'true (halted)' : 'false (running)';
}

const probeOfrep = (server) =>
  httpJson('POST', `${server.url}/ofrep/v1/evaluate/flags/kill-switch`, {
    headers: server.auth,
    body: { context: { tenant: TENANT } },
  });

async function runOfrep(OF) {
  let server = await startKillSwitch('killswitch serve (OFREP)');
  let mountedBy = 'killswitch serve';
  try {
    let probe = await probeOfrep(server);
    if (probe.status === 404 || probe.status === 405) {
      // `serve` does not mount OFREP in this build: mount src/ofrep's routes on the same control
      // plane ourselves, if this build has them at all.
      await server.cleanup();
      server = undefined;
      if (!existsSync(join(DIST, 'src', 'ofrep', 'index.js'))) {
        return {
          name: OFREP_ROW,
          skipped: `not measured: this build has no OFREP endpoint (serve answered ${probe.status}, no dist/src/ofrep)`,
        };
      }
      server = await startKillSwitch('control plane + src/ofrep routes', { ofrepPlane: true });
      mountedBy = 'startControlPlane + ofrepRoutes (serve does not mount OFREP yet)';
      probe = await probeOfrep(server);
      if (probe.status !== 200)
        throw new Error(`OFREP probe answered ${probe.status}: ${probe.text.slice(0, 300)}`);
    }
    const { OFREPProvider } = await import('@openfeature/ofrep-provider');
    const provider = new OFREPProvider({
      baseUrl: server.url,
      headers: { Authorization: `Bearer ${server.token}` },
    });
    const domain = 'bench-ofrep';
    await OF.OpenFeature.setProviderAndWait(domain, provider);
    const client = OF.OpenFeature.getClient(domain);
    const worker = {
      async read() {
        const d = await client.getBooleanDetails('kill-switch', true, {
          tenant: TENANT,
          targetingKey: 'bench',
        });
        return { value: d.value, label: ofrepLabel(d) };
      },
      onChange: () => () => {},
    };
    const first = await worker.read();
    if (first.label.includes('default'))
      throw new Error(`OFREP evaluation failed before any flip: ${first.label}`);
    // The server provider asks the control plane on every evaluation (no cache, no push): the
    // worker here evaluates back to back, the best case for a worker that evaluates per request.
    const latencies = await measureFlips('OFREP', worker, server.flip, {
      count: CONFIG.flips,
      gapMs: () => 20 + Math.random() * 80,
      timeoutMs: 10_000,
      pollMs: 0,
    });
    await settleRunning('OFREP', [worker], server.flip, 10_000);
    log('OFREP: killing the control plane');
    const [timeline] = await measureOutage([worker], () => server.proc.kill(), CONFIG.outageMs);
    // A new OFREP worker is the same stateless client: it asks and gets the same answer.
    const freshProvider = new OFREPProvider({
      baseUrl: server.url,
      headers: { Authorization: `Bearer ${server.token}` },
    });
    await Promise.race([
      OF.OpenFeature.setProviderAndWait('bench-ofrep-new', freshProvider).catch(() => {}),
      sleep(CONFIG.newWorkerWaitMs),
    ]);
    const fresh = await OF.OpenFeature.getClient('bench-ofrep-new').getBooleanDetails(
      'kill-switch',
      true,
      { tenant: TENANT, targetingKey: 'bench' },
    );
    return {
      name: OFREP_ROW,
      transport: `HTTP request per evaluation, evaluated back to back (routes: ${mountedBy})`,
      ...stats(latencies),
      outage: describeOutage(timeline, CONFIG.outageMs),
      caveat:
        'only because the caller passes true as the default: the provider answers errors, the SDK serves the default',
      newWorker: ofrepLabel(fresh),
    };
  } finally {
    await server?.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// LaunchDarkly Node server SDK against servers/ld-stream-server.mjs (no network beyond loopback).

async function ldWorker(ld, base) {
  const client = ld.init('sdk-bench-peers', {
    streamUri: base,
    baseUri: base,
    eventsUri: base,
    stream: true,
    sendEvents: false,
    diagnosticOptOut: true,
    logger: ld.basicLogger({ level: 'none' }),
  });
  const listeners = new Set();
  client.on('update:agent-halted', () => listeners.forEach((l) => l()));
  client.on('error', () => {});
  await client.waitForInitialization({ timeout: CONFIG.newWorkerWaitMs / 1000 }).catch(() => {});
  const context = { kind: 'user', key: 'bench' };
  return {
    async read() {
      const d = await client.variationDetail('agent-halted', context, true);
      const kind = d.reason?.kind;
      const label =
        kind === 'ERROR'
          ? `${d.value} (default, ${d.reason.errorKind})`
          : `${d.value}${d.value ? ' (halted)' : ' (running)'}`;
      return { value: d.value, label };
    },
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      client.close();
    },
  };
}

async function runLaunchDarkly() {
  const ld = await import('@launchdarkly/node-server-sdk');
  const proc = startChild(
    'LaunchDarkly stream server',
    [join(HERE, 'servers', 'ld-stream-server.mjs')],
    { readyMs: 20_000 },
  );
  const workers = [];
  try {
    const { port } = await proc.ready;
    const base = `http://127.0.0.1:${port}`;
    const worker = await ldWorker(ld, base);
    workers.push(worker);
    if ((await worker.read()).label.includes('default'))
      throw new Error('the SDK did not initialise from the local stream');
    const flip = async (halted) => {
      const r = await httpJson('POST', `${base}/bench/flag`, { body: { halted } });
      if (r.status !== 200) throw new Error(`flag change answered ${r.status}`);
    };
    const latencies = await measureFlips('LaunchDarkly', worker, flip, {
      count: CONFIG.flips,
      gapMs: () => 20 + Math.random() * 80,
      timeoutMs: 10_000,
      pollMs: 1,
    });
    await settleRunning('LaunchDarkly', [worker], flip, 10_000);
    log('LaunchDarkly: killing the stream server');
    const [timeline] = await measureOutage([worker], () => proc.kill(), CONFIG.outageMs);
    const fresh = await ldWorker(ld, base);
    workers.push(fresh);
    return {
      name: 'LaunchDarkly Node server SDK 9.13.7 (local stream server)',
      transport: 'SSE push (put/patch), no event ids',
      ...stats(latencies),
      outage: describeOutage(timeline, CONFIG.outageMs),
      caveat: 'the SDK stays initialised and reports no error to the caller',
      newWorker: (await fresh.read()).label,
    };
  } finally {
    for (const w of workers) await w.close().catch(() => {});
    await proc.kill();
  }
}

/**
 * PEERS_PAIRED_FLIPS: this project's SSE and LaunchDarkly both up at once, flipped in turn (the
 * order swapped every pair, the same random gap before each flip), so each pair of flips meets
 * the same moment of a shared machine; run-to-run drift cancels in the ratio of the two p50s.
 */
async function runPaired(OF) {
  const ld = await import('@launchdarkly/node-server-sdk');
  const ks = await startKillSwitch('killswitch serve (paired)');
  const ldProc = startChild(
    'LaunchDarkly stream server (paired)',
    [join(HERE, 'servers', 'ld-stream-server.mjs')],
    { readyMs: 20_000 },
  );
  const workers = [];
  try {
    const { port } = await ldProc.ready;
    const ldBase = `http://127.0.0.1:${port}`;
    const ksW = await ksWorker(OF, ks.url, ks.token, 'bench-ks-paired');
    workers.push(ksW);
    const ldW = await ldWorker(ld, ldBase);
    workers.push(ldW);
    if (!(await waitForLabel(ksW, (l) => !l.includes('fail-closed'), 15_000)))
      throw new Error('paired: the kill-switch worker did not get a snapshot in 15 s');
    if ((await ldW.read()).label.includes('default'))
      throw new Error('paired: the LaunchDarkly SDK did not initialise from the local stream');
    const ldFlip = async (halted) => {
      const r = await httpJson('POST', `${ldBase}/bench/flag`, { body: { halted } });
      if (r.status !== 200) throw new Error(`flag change answered ${r.status}`);
    };
    const sides = {
      ks: { worker: ksW, flip: ks.flip, lat: [], answered: [], halts: [], current: false },
      ld: { worker: ldW, flip: ldFlip, lat: [], answered: [], halts: [], current: false },
    };
    for (const s of Object.values(sides)) s.current = (await s.worker.read()).value;
    for (let i = 0; i < CONFIG.pairedFlips; i++) {
      for (const id of i % 2 === 0 ? ['ks', 'ld'] : ['ld', 'ks']) {
        const s = sides[id];
        await sleep(20 + Math.random() * 80);
        const target = !s.current;
        const t0 = performance.now();
        const seen = waitForValue(s.worker, target, t0 + 10_000, 1);
        await s.flip(target);
        s.answered.push(performance.now() - t0);
        const at = await seen;
        if (at === undefined) throw new Error(`paired ${id}: flip ${i + 1} not seen within 10 s`);
        s.lat.push(at - t0);
        s.halts.push(target);
        s.current = target;
      }
    }
    const k = stats({
      latencies: sides.ks.lat,
      answered: sides.ks.answered,
      halts: sides.ks.halts,
    });
    const l = stats({
      latencies: sides.ld.lat,
      answered: sides.ld.answered,
      halts: sides.ld.halts,
    });
    const ratio = (a, b) => round(a / b);
    return {
      flips: CONFIG.pairedFlips,
      ks: { p50: k.p50, p99: k.p99, halts: k.halts, resumes: k.resumes },
      ld: { p50: l.p50, p99: l.p99, halts: l.halts, resumes: l.resumes },
      ratioP50: ratio(k.p50, l.p50),
      ratioP99: ratio(k.p99, l.p99),
      ratioHaltsP50: ratio(k.halts.p50, l.halts.p50),
      ratioResumesP50: ratio(k.resumes.p50, l.resumes.p50),
    };
  } finally {
    for (const w of workers) await w.close().catch(() => {});
    await ldProc.kill();
    await ks.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Unleash OSS 7.5.1 (servers/unleash-server.mjs, its own PostgreSQL database) + unleash-client.

async function unleashWorker(Unleash, base, clientToken, refreshInterval, backupPath) {
  const client = new Unleash({
    url: `${base}/api/`,
    appName: 'bench-peers',
    instanceId: `bench-peers-${refreshInterval}-${randomBytes(4).toString('hex')}`,
    refreshInterval,
    disableMetrics: true,
    customHeaders: { Authorization: clientToken },
    backupPath,
    skipInstanceCountWarning: true,
    timeout: 5000,
  });
  client.on('error', () => {});
  client.on('warn', () => {});
  const listeners = new Set();
  client.on('changed', () => listeners.forEach((l) => l()));
  await Promise.race([
    new Promise((resolve) => client.once('synchronized', resolve)),
    new Promise((resolve) => client.once('ready', resolve)),
    sleep(CONFIG.newWorkerWaitMs),
  ]);
  return {
    read() {
      // The third argument is what isEnabled answers for a toggle it does not know: halted.
      const value = client.isEnabled('agent-halted', {}, true);
      return Promise.resolve({ value, label: `${value}${value ? ' (halted)' : ' (running)'}` });
    },
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      client.destroy();
    },
  };
}

async function runUnleash() {
  const pgMod = await import('pg');
  const pg = pgMod.default ?? pgMod;
  const { Unleash } = (await import('unleash-client')).default ?? (await import('unleash-client'));
  const dbName = `bench_peers_unleash_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: CONFIG.pgUrl });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(
      `PostgreSQL at ${CONFIG.pgUrl} is not reachable (${err.message}); Unleash needs it`,
    );
  }
  const backupDir = await mkdtemp(join(tmpdir(), 'bench-peers-unleash-'));
  const workers = [];
  let proc;
  try {
    await admin.query(`CREATE DATABASE ${dbName}`);
    const dbUrl = new URL(CONFIG.pgUrl);
    dbUrl.pathname = `/${dbName}`;
    const adminToken = `*:*.${randomBytes(16).toString('hex')}`;
    const clientToken = `default:development.${randomBytes(16).toString('hex')}`;
    log('Unleash: starting (database migrations take a while)');
    const started = performance.now();
    proc = startChild('Unleash', [join(HERE, 'servers', 'unleash-server.mjs')], {
      env: {
        BENCH_UNLEASH_DATABASE_URL: dbUrl.href,
        INIT_ADMIN_API_TOKENS: adminToken,
        INIT_BACKEND_API_TOKENS: clientToken,
      },
      readyMs: 240_000,
    });
    const { port } = await proc.ready;
    log(`Unleash: up after ${fmtS(performance.now() - started)}`);
    const base = `http://127.0.0.1:${port}`;
    const auth = { authorization: adminToken };
    const feature = `${base}/api/admin/projects/default/features`;
    const created = await httpJson('POST', feature, {
      headers: auth,
      body: { name: 'agent-halted' },
    });
    if (created.status !== 200 && created.status !== 201)
      throw new Error(
        `creating the toggle answered ${created.status}: ${created.text.slice(0, 300)}`,
      );
    const flip = async (halted) => {
      const r = await httpJson(
        'POST',
        `${feature}/agent-halted/environments/development/${halted ? 'on' : 'off'}`,
        { headers: auth },
      );
      if (r.status !== 200)
        throw new Error(`toggling answered ${r.status}: ${r.text.slice(0, 300)}`);
    };
    // Enabling once adds the default strategy (100% rollout); then back to off = running.
    await flip(true);
    await flip(false);
    const fast = await unleashWorker(Unleash, base, clientToken, 1000, backupDir);
    workers.push(fast);
    const slow = await unleashWorker(Unleash, base, clientToken, 15_000, backupDir);
    workers.push(slow);
    for (const w of workers) {
      const r = await w.read();
      if (r.value !== false) throw new Error('unleash-client did not load the toggle');
    }
    const fastLat = await measureFlips('Unleash 1 s', fast, flip, {
      count: CONFIG.unleashFastFlips,
      gapMs: () => Math.random() * 1000,
      timeoutMs: 10_000,
      pollMs: 5,
    });
    await settleRunning('Unleash', [fast, slow], flip, 20_000);
    const slowLat = await measureFlips('Unleash 15 s', slow, flip, {
      count: CONFIG.unleashDefaultFlips,
      gapMs: () => Math.random() * 15_000,
      timeoutMs: 25_000,
      pollMs: 5,
    });
    await settleRunning('Unleash', [fast, slow], flip, 20_000);
    log('Unleash: killing the server');
    const [fastLine, slowLine] = await measureOutage(
      [fast, slow],
      () => proc.kill(),
      CONFIG.outageMs,
    );
    const fresh = await unleashWorker(Unleash, base, clientToken, 1000, backupDir);
    workers.push(fresh);
    // It cannot reach the server; answering false (not the fallback true) means it read the
    // backup file the earlier clients wrote to backupPath.
    const freshRead = await fresh.read();
    const freshAnswer = `${freshRead.label}${freshRead.value === false ? ' (from the backup file on disk)' : ''}`;
    return [
      {
        name: 'Unleash OSS 7.5.1 + unleash-client 6.12.1, default refresh 15 s',
        transport: 'polling every 15 s (ETag)',
        ...stats(slowLat),
        outage: describeOutage(slowLine, CONFIG.outageMs),
        newWorker: freshAnswer,
      },
      {
        name: 'Unleash OSS 7.5.1 + unleash-client 6.12.1, refresh 1 s',
        transport: 'polling every 1 s (ETag)',
        ...stats(fastLat),
        outage: describeOutage(fastLine, CONFIG.outageMs),
        newWorker: freshAnswer,
      },
    ];
  } finally {
    for (const w of workers) await w.close().catch(() => {});
    if (proc) await proc.kill();
    await admin
      .query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
      .catch((err) => log(`could not drop ${dbName}: ${err.message}`));
    await admin.end().catch(() => {});
    await rm(backupDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// One table.

function machine() {
  return {
    date: new Date().toISOString(),
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    loadavg: loadavg().map((n) => round(n)),
  };
}

/**
 * Folds the rows of several runs into one row per system: flips pooled across runs (p50 / p99 /
 * max over all of them), each run's p50 kept, and the outage verdict of every run.
 */
function aggregate(runs) {
  const byName = new Map();
  for (const run of runs) {
    for (const row of run) {
      if (!byName.has(row.name)) byName.set(row.name, []);
      byName.get(row.name).push(row);
    }
  }
  const rows = [];
  for (const [name, all] of byName) {
    const ok = all.filter((r) => Array.isArray(r.samples));
    const failed = all.filter((r) => r.error);
    if (ok.length === 0) {
      rows.push({
        name,
        ...(all[0].skipped ? { skipped: all[0].skipped } : { error: all[0].error }),
      });
      continue;
    }
    const pooled = stats({
      latencies: ok.flatMap((r) => r.samples),
      answered: ok.flatMap((r) => r.answeredSamples),
      ...(ok.every((r) => Array.isArray(r.sampleHalts))
        ? { halts: ok.flatMap((r) => r.sampleHalts) }
        : {}),
    });
    const closedAt = ok.map((r) => r.outage.failClosedAfterMs);
    let verdict;
    if (closedAt.every((t) => t !== null)) {
      const sorted = [...closedAt].sort((a, b) => a - b);
      const median = percentile(sorted, 50);
      verdict = `${median < 50 ? 'fail closed at once' : `fail closed after ${fmtS(median)}`}${ok.length > 1 ? ` (median; runs: ${closedAt.map((t) => (t / 1000).toFixed(2)).join(', ')} s)` : ''}`;
    } else if (closedAt.every((t) => t === null)) {
      verdict = ok[0].outage.verdict + (ok.length > 1 ? ` (all ${ok.length} runs)` : '');
    } else {
      verdict = ok.map((r) => r.outage.verdict).join('; ');
    }
    rows.push({
      name,
      transport: ok[0].transport,
      ...pooled,
      runs: ok.length,
      runP50s: ok.map((r) => r.p50),
      outage: {
        text: ok[0].outage.text,
        verdict: ok[0].caveat ? `${verdict}; ${ok[0].caveat}` : verdict,
        failClosedAfterMs: closedAt,
      },
      newWorker: [...new Set(ok.map((r) => r.newWorker))].join(' / '),
      ...(failed.length > 0 ? { failedRuns: failed.map((r) => r.error) } : {}),
    });
  }
  return rows;
}

function printTable(rows, before, after) {
  const out = [];
  out.push('');
  out.push(
    `Measured ${before.date} on ${before.nproc} CPUs (${before.cpu}), Node ${before.node}, load average ${before.loadavg.join(' / ')} at start, ${after.loadavg.join(' / ')} at end; loopback.`,
  );
  out.push(
    `Flip = the flip request is sent; seen = the worker's evaluation answers the new value. Outage = server killed with SIGKILL, watched ${fmtS(CONFIG.outageMs)}; the flag means "halted", the last value before the outage was false (running), and every worker asks with default true.`,
  );
  out.push('');
  out.push(
    '| system | updates | flips | flip→seen p50 | p99 | max | halts / resumes p50 (p99) | flip answered p50 | seen after the answer p50 / p99 | running worker while the server is down | verdict | new worker started while down |',
  );
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    if (r.error || r.skipped) {
      out.push(
        `| ${r.name} | — | — | — | — | — | — | — | — | ${r.skipped ?? `did not run: ${r.error}`} | — | — |`,
      );
      continue;
    }
    out.push(
      `| ${r.name}${r.failedRuns ? ` (failed in ${r.failedRuns.length} run(s): ${r.failedRuns[0]})` : ''} | ${r.transport} | ${r.n}${r.runs > 1 ? ` (${r.runs} runs; run p50s ${r.runP50s.map(fmtMs).join(', ')})` : ''} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtMs(r.max)} | ${r.halts ? `${fmtMs(r.halts.p50)} / ${fmtMs(r.resumes.p50)} (${fmtMs(r.halts.p99)} / ${fmtMs(r.resumes.p99)})` : '—'} | ${fmtMs(r.answeredP50)} | ${fmtMs(r.afterAnswerP50)} / ${fmtMs(r.afterAnswerP99)} | ${r.outage.text} | ${r.outage.verdict} | ${r.newWorker} |`,
    );
  }
  out.push('');
  process.stdout.write(out.join('\n') + '\n');
}

async function main() {
  const before = machine();
  log(`machine: ${JSON.stringify(before)}`);
  const runs = [];
  const hardStop = setTimeout(() => {
    log(`hard limit of ${CONFIG.hardLimitMs / 60_000} min reached: killing children and exiting`);
    killAllChildrenNow();
    // Whatever finished is still worth a table.
    printTable(aggregate(runs), before, machine());
    process.exit(1);
  }, CONFIG.hardLimitMs);
  hardStop.unref();
  let OF;
  try {
    OF = await loadOpenFeature();
  } catch (err) {
    log(`@openfeature/server-sdk not loadable: ${err.message}`);
  }
  const peers = [
    [
      'ks',
      'this project, SSE (killswitch serve + KillSwitchProvider/RemoteFlipSource)',
      () => runKillSwitch(OF),
      120_000,
    ],
    ['ofrep', OFREP_ROW, () => runOfrep(OF), 120_000],
    [
      'ld',
      'LaunchDarkly Node server SDK 9.13.7 (local stream server)',
      () => runLaunchDarkly(),
      120_000,
    ],
    ['unleash', 'Unleash OSS 7.5.1 + unleash-client 6.12.1', () => runUnleash(), 600_000],
  ];
  for (let i = 1; i <= CONFIG.runs; i++) {
    const rows = [];
    for (const [id, name, run, limitMs] of peers) {
      if (!CONFIG.only.includes(id)) continue;
      log(`--- run ${i}/${CONFIG.runs}: ${name}`);
      try {
        if (!OF && (id === 'ks' || id === 'ofrep'))
          throw new Error('@openfeature/server-sdk is not installed (npm ci in bench/peers)');
        const result = await withLimit(name, limitMs, run);
        rows.push(...(Array.isArray(result) ? result : [result]));
      } catch (err) {
        const message = (err && err.message ? err.message : String(err))
          .replace(/\|/g, '/')
          .replace(/\s+/g, ' ');
        log(`${name}: ${message}`);
        rows.push({ name, error: message });
      }
      killAllChildrenNow();
    }
    runs.push(rows);
    log(`run ${i} rows: ${JSON.stringify(rows)}`);
  }
  let paired;
  if (CONFIG.pairedFlips > 0 && OF) {
    log(`--- paired: ${CONFIG.pairedFlips} flips each, this project and LaunchDarkly in turn`);
    try {
      paired = await withLimit('paired', 300_000, () => runPaired(OF));
    } catch (err) {
      paired = { error: err && err.message ? err.message : String(err) };
      log(`paired: ${paired.error}`);
    }
    killAllChildrenNow();
  }
  const rows = aggregate(runs);
  const after = machine();
  printTable(rows, before, after);
  if (paired !== undefined && paired.error === undefined) {
    process.stdout.write(
      `Paired (PEERS_PAIRED_FLIPS=${paired.flips}: both up at once, flipped in turn): this project ${fmtMs(paired.ks.p50)} / ${fmtMs(paired.ks.p99)} p50 / p99 (halts ${fmtMs(paired.ks.halts.p50)}, resumes ${fmtMs(paired.ks.resumes.p50)}), LaunchDarkly ${fmtMs(paired.ld.p50)} / ${fmtMs(paired.ld.p99)} (halts ${fmtMs(paired.ld.halts.p50)}, resumes ${fmtMs(paired.ld.resumes.p50)}); ours ÷ LaunchDarkly p50 ${paired.ratioP50}×, p99 ${paired.ratioP99}× (halts ${paired.ratioHaltsP50}×, resumes ${paired.ratioResumesP50}×).\n\n`,
    );
  } else if (paired !== undefined) process.stdout.write(`Paired: did not run: ${paired.error}\n\n`);
  process.stdout.write(
    JSON.stringify({
      bench: 'peers',
      machine: before,
      loadavgAtEnd: after.loadavg,
      config: CONFIG,
      rows,
      runs,
      ...(paired === undefined ? {} : { paired }),
      strayErrors: stray,
    }) + '\n',
  );
  await OF?.OpenFeature.close().catch(() => {});
  clearTimeout(hardStop);
  // SDK clients keep timers (reconnect backoff, polling); the figures are out, so leave now.
  process.exit(0);
}

await main();
