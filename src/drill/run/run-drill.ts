import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlPlaneClient } from '../../client/control-plane-client.js';
import { InvalidOptionError } from '../../errors.js';
import { foldLedgerEvents, parseLedgerEvent } from '../../ledger/side-effect-ledger.js';
import {
  formatSelector,
  levelOf,
  normalizeSelector,
  selectorMatches,
  type Selector,
} from '../../model/selector.js';
import type { FlipAnswer, WorkersAnswer } from '../../protocol/answers.js';
import { ApiPath } from '../../protocol/paths.js';
import { checkTargets } from '../measure/check-targets.js';
import type {
  DrillReport,
  LedgerCheck,
  LeverResult,
  WorkerStop,
  WorkerSummary,
} from '../report/drill-report.js';
import { startEffectSink, type EffectSink, type SinkEffect } from '../servers/effect-sink.js';
import { drillNow } from '../drill-clock.js';
import { WorkerVariant, type QueueDepth, type WorkerEvent } from '../internal/protocol.js';
import { WorkerFleet } from './worker-fleet.js';
import {
  checkLedger,
  measureCancelled,
  measureEffects,
  measureSchedules,
  percentile,
  stopTimes,
  type HaltWindow,
  type LedgerView,
} from '../measure/measure.js';
import { writeDrillReport, type WrittenReport } from '../report/report-writer.js';
import { leverTarget, workerIdOf, type Lever, type Scenario } from '../scenario.js';
import { startSlowLlmServer, type SlowLlmServer } from '../servers/slow-llm-server.js';

/** The drill scope against a fleet the drill did not start (DESIGN section 8). */
export interface DrillScope {
  /** A drill tenant: the tenant lever halts it; the capability lever narrows to it. */
  readonly tenant?: string;
  /** A canary capability for the capability lever. */
  readonly capability?: string;
  /** A drill run for the run lever. */
  readonly runId?: string;
  /** A drill feature for the feature lever. */
  readonly feature?: string;
}

/** Options of {@link runDrill}. */
export interface RunDrillOptions {
  readonly scenario: Scenario;
  /** Where the report goes; nothing is written when absent. */
  readonly outDir?: string;
  /** Progress lines. @default silent */
  readonly log?: (line: string) => void;
  /**
   * A control plane to use instead of starting one. With `expectWorkers` the drill runs in fleet
   * mode: it starts no workers and pulls levers on `scope` only.
   */
  readonly url?: string;
  readonly token?: string;
  /** Fleet mode: the workers that must be connected and fresh (a count or a list of ids). */
  readonly expectWorkers?: number | readonly string[];
  /** Fleet mode: the drill scope. */
  readonly scope?: DrillScope;
  /** Fleet mode: also pull the global lever (stops the whole fleet). @default false */
  readonly allowGlobal?: boolean;
  /** Fleet mode: a drill sink to read effects from (`GET /effects`). */
  readonly sinkUrl?: string;
  /** Fleet mode: ledger files (JSON lines) to check after the drill. */
  readonly ledgerPaths?: readonly string[];
  /** Test-only: plant a negative-control variant in some workers (workerId -> variant). */
  readonly variants?: Readonly<Record<string, WorkerVariant>>;
  /** Worker entry script. @default `worker.js` next to this module */
  readonly workerScript?: string;
  /** Embedded control plane entry script. @default `control-plane-process.js` next to this module */
  readonly controlPlaneScript?: string;
  /** Workers' lease and heartbeat, ms. @default 3000 and 1000 */
  readonly staleAfterMs?: number;
  readonly heartbeatMs?: number;
  /** Keep the temporary data directory (flip log, ledgers). @default false */
  readonly keepData?: boolean;
}

/** What {@link runDrill} returns. */
export interface DrillOutcome {
  readonly report: DrillReport;
  readonly written?: WrittenReport;
  /** 0 pass, 1 a target was missed. */
  readonly exitCode: 0 | 1;
}

/**
 * Runs a drill (DESIGN section 8, issue 5): a fleet of worker processes on synthetic traffic (or
 * a fleet it did not start), each lever of the scenario pulled in turn, everything measured, the
 * targets checked and the report written. Every expected worker must be connected and fresh
 * before each lever; one that is not fails the drill instead of hiding. KS-9.3.1, KS-9.3.4
 *
 * @returns the report and the exit code (non-zero on any violation)
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for contradicting options
 * @example
 * ```ts
 * const { exitCode } = await runDrill({ scenario: await loadScenario('spec/drills/ci.json'), outDir: 'reports/drill' });
 * ```
 */
export async function runDrill(options: RunDrillOptions): Promise<DrillOutcome> {
  if (options.expectWorkers !== undefined && options.url === undefined) {
    throw new InvalidOptionError(
      'expectWorkers',
      'a control plane url with it (fleet mode)',
      options.expectWorkers,
    );
  }
  return options.expectWorkers !== undefined ? runFleetDrill(options) : runEmbeddedDrill(options);
}

// ---- embedded: the drill starts everything ------------------------------------------------

async function runEmbeddedDrill(options: RunDrillOptions): Promise<DrillOutcome> {
  const s = options.scenario;
  const log = options.log ?? (() => undefined);
  const startedAt = new Date().toISOString();
  const loadStart = round(loadavg()[0] ?? 0);
  const staleAfterMs = options.staleAfterMs ?? 3_000;
  const heartbeatMs = options.heartbeatMs ?? 1_000;
  const dataDir = await mkdtemp(join(tmpdir(), 'killswitch-drill-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  const fleet = new WorkerFleet();
  try {
    let url = options.url;
    if (url === undefined) {
      // Its own process, as in production: the sink and LLM share this event loop.
      const cpScript =
        options.controlPlaneScript ??
        fileURLToPath(new URL('../servers/control-plane-process.js', import.meta.url));
      const cp = await forkControlPlane(cpScript, { dataDir, staleAfterMs, heartbeatMs });
      cleanups.push(() => cp.stop());
      url = cp.url;
      log(`control plane ${url} (embedded, own process pid ${cp.pid}, file log in ${dataDir})`);
    } else {
      log(`control plane ${url} (given)`);
    }
    const client = new ControlPlaneClient({
      url,
      ...(options.token ? { token: options.token } : {}),
    });
    const sink = await startEffectSink();
    cleanups.unshift(() => sink.close());
    const llm = await startSlowLlmServer({
      tokens: s.traffic.llm.tokens,
      tokenIntervalMs: s.traffic.llm.tokenIntervalMs,
    });
    cleanups.unshift(() => llm.close());
    log(`effect sink ${sink.url}, slow LLM ${llm.url}`);

    const script =
      options.workerScript ?? fileURLToPath(new URL('../worker/worker.js', import.meta.url));
    const release = `drill-${s.name}`;
    const ids = Array.from({ length: s.workers }, (_, i) => workerIdOf(i + 1));
    for (const workerId of ids) {
      fleet.spawn(script, {
        workerId,
        release,
        urls: [url],
        ...(options.token ? { token: options.token } : {}),
        sinkUrl: sink.url,
        llmUrl: llm.url,
        ledgerPath: join(dataDir, `ledger-${workerId}.jsonl`),
        traffic: s.traffic,
        seed: s.seed,
        variant: options.variants?.[workerId] ?? WorkerVariant.NORMAL,
        staleAfterMs,
        heartbeatMs,
      });
    }
    log(
      `${ids.length} worker(s) started: ${fleet.members.map((m) => `${m.workerId}${m.variant !== 'normal' ? ` (${m.variant})` : ''} pid ${m.child.pid}`).join(', ')}`,
    );

    const notConnected = new Set<string>();
    await waitConnected(client, ids, s.timings.connectTimeoutMs, log);
    await sleep(s.timings.warmupMs);

    const levers: LeverResult[] = [];
    const runTag = randomUUID().slice(0, 8);
    for (let i = 0; i < s.levers.length; i++) {
      const lever = s.levers[i]!;
      // A lever with no matching traffic flowing would measure nothing and pass by luck: wait
      // for some (bounded), and the target check fails the lever if there was none.
      await waitForTraffic(
        sink,
        leverTarget(lever).selector,
        baselineOf(s),
        s.timings.connectTimeoutMs,
        log,
      );
      const missing = await checkFleet(client, ids, s.timings.freshWithinMs);
      for (const m of missing) {
        if (!notConnected.has(m.id))
          log(`! worker ${m.id} is not connected and fresh here: ${m.why}`);
        notConnected.add(m.id);
      }
      levers.push(
        await pullLever({
          client,
          url,
          ...(options.token ? { token: options.token } : {}),
          lever,
          index: i,
          total: s.levers.length,
          runTag,
          scenario: s,
          log,
          queueDepth: (sel) => fleet.queueDepth(sel),
        }),
      );
      await fleet.collect();
    }

    await fleet.collect();
    const llmStats = llm.stats();
    log('stopping workers; reading the ledgers');
    await fleet.stop();
    for (const m of fleet.members) {
      if (m.fatal) log(`! worker ${m.workerId} failed: ${m.fatal.split('\n')[0]}`);
    }
    const events = new Map<string, readonly WorkerEvent[]>(
      fleet.members.map((m) => [m.workerId, m.events]),
    );
    const effects = [...sink.effects];
    const measured = levers.map((l) => completeLever(l, s, effects, events, ids));
    const { views, unreadable } = await readLedgers(
      fleet.members.map((m) => ({
        workerId: m.workerId,
        path: join(dataDir, `ledger-${m.workerId}.jsonl`),
      })),
    );
    const ledger = checkLedger(effects, views, unreadable);
    const workers: WorkerSummary[] = fleet.members.map((m) => ({
      workerId: m.workerId,
      variant: m.variant,
      everFresh: m.events.some((e) => e.t === 'status' && e.status === 'open'),
      connected: !notConnected.has(m.workerId) && m.fatal === undefined,
      ...(m.counters ? { counters: m.counters } : {}),
      ...(m.fatal !== undefined
        ? { crashed: m.fatal.split('\n')[0]! }
        : m.exitedEarly
          ? {
              crashed: `exited (code ${m.exitedEarly.code}, signal ${m.exitedEarly.signal}): ${m.stderr.trim().split('\n').slice(-1)[0] ?? ''}`,
            }
          : {}),
      effectsAtSink: effects.filter((e) => e.workerId === m.workerId).length,
    }));
    return await finish(
      {
        scenario: s,
        mode: 'embedded',
        controlPlane: url,
        startedAt,
        workers,
        levers: measured,
        ledger,
        llm: {
          started: llmStats.started,
          completed: llmStats.completed,
          cancelled: llmStats.cancelled,
        },
        loadStart,
      },
      options,
      log,
    );
  } finally {
    fleet.kill();
    for (const c of cleanups) await c().catch(() => undefined);
    if (!options.keepData)
      await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
    else log(`data kept in ${dataDir}`);
  }
}

/** Forks the embedded control plane and waits for its URL. */
async function forkControlPlane(
  script: string,
  config: { dataDir: string; staleAfterMs: number; heartbeatMs: number },
): Promise<{ url: string; pid: number | undefined; stop(): Promise<void> }> {
  const child = fork(script, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`embedded control plane did not start: ${stderr}`)),
      30_000,
    );
    child.on('message', (m: { type?: string; url?: string; message?: string }) => {
      if (m.type === 'ready' && typeof m.url === 'string') {
        clearTimeout(timer);
        resolve(m.url);
      } else if (m.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(`embedded control plane failed: ${m.message ?? ''}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`embedded control plane exited (${code}): ${stderr}`));
    });
    child.send({ type: 'start', ...config });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return {
    url,
    pid: child.pid,
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The baseline window before a flip, ms: matching traffic must flow in it. */
function baselineOf(s: Scenario): number {
  return Math.max(250, s.timings.warmupMs);
}

/** Waits until the sink saw a matching effect dispatched within the last `windowMs`. */
async function waitForTraffic(
  sink: EffectSink,
  selector: Selector,
  windowMs: number,
  timeoutMs: number,
  log: (l: string) => void,
): Promise<void> {
  const until = drillNow() + timeoutMs;
  for (;;) {
    const now = drillNow();
    const effects = sink.effects;
    for (let i = effects.length - 1; i >= 0; i--) {
      const e = effects[i]!;
      if (e.at < now - windowMs - 1_000) break;
      if ((e.sentAt ?? e.at) >= now - windowMs && selectorMatches(selector, e.context)) return;
    }
    if (now >= until) {
      log(`! no traffic matching ${formatSelector(selector)} within ${timeoutMs} ms`);
      return;
    }
    await sleep(25);
  }
}

/** Polls `GET /v1/workers` until every id is connected and fresh, or the timeout. */
async function waitConnected(
  client: ControlPlaneClient,
  ids: readonly string[],
  timeoutMs: number,
  log: (l: string) => void,
): Promise<void> {
  const until = drillNow() + timeoutMs;
  let missing: { id: string; why: string }[] = [];
  while (drillNow() < until) {
    missing = await checkFleet(client, ids, Number.POSITIVE_INFINITY).catch(() =>
      ids.map((id) => ({ id, why: 'unreachable' })),
    );
    if (missing.length === 0) {
      log(`all ${ids.length} worker(s) connected and fresh`);
      return;
    }
    await sleep(50);
  }
  log(
    `! after ${timeoutMs} ms still not connected and fresh: ${missing.map((m) => m.id).join(', ')}`,
  );
}

/**
 * Which expected workers are not connected and fresh on this control plane: a worker missing
 * from `GET /v1/workers` reads another control plane or none at all. KS-9.3.1
 */
async function checkFleet(
  client: ControlPlaneClient,
  ids: readonly string[],
  _freshWithinMs: number,
): Promise<{ id: string; why: string }[]> {
  let answer: WorkersAnswer;
  try {
    answer = await client.workers();
  } catch (err) {
    return ids.map((id) => ({ id, why: `GET /v1/workers failed: ${(err as Error).message}` }));
  }
  const byId = new Map(answer.workers.map((w) => [w.id, w]));
  const out: { id: string; why: string }[] = [];
  for (const id of ids) {
    const w = byId.get(id);
    if (w === undefined) out.push({ id, why: 'never connected to this control plane' });
    else if (!w.connected) out.push({ id, why: 'no open stream' });
    else if (w.stale) out.push({ id, why: 'its lease ran out (stale)' });
  }
  return out;
}

interface PullContext {
  readonly client: ControlPlaneClient;
  /** For the release route, which the typed client does not cover. */
  readonly url: string;
  readonly token?: string;
  readonly lever: Lever;
  readonly index: number;
  readonly total: number;
  readonly runTag: string;
  readonly scenario: Scenario;
  readonly log: (l: string) => void;
  readonly queueDepth?: (selector: Selector) => Promise<(QueueDepth & { workerId: string })[]>;
  /** Fleet mode: skip the warm-up wait after the resume (nothing of ours to recover). */
  readonly fleetMode?: boolean;
}

/** A lever's raw measurements before the sink and worker data are folded in. */
interface RawLever extends LeverResult {
  readonly endAt?: number;
  readonly resumeFrom?: number;
  readonly resumeTo?: number;
  readonly fleetStops?: readonly WorkerStop[];
}

/** Pulls one lever: halt with wait, queue depth at T+0 and T+N, resume, recovery window. */
async function pullLever(p: PullContext): Promise<RawLever> {
  const { selector, level, label } = leverTarget(p.lever);
  const s = p.scenario;
  const mode = p.lever.mode ?? s.queueMode;
  const flipId = `drill-${p.runTag}-${p.index + 1}-${label}`;
  const errors: string[] = [];
  const head = `[${p.index + 1}/${p.total}] ${label} ${formatSelector(selector)}`;
  p.log(`${head}: halting (mode ${mode})`);
  let answer: FlipAnswer;
  try {
    answer = await p.client.flip({
      action: 'halt',
      selector,
      reason: `drill ${s.name}: ${label} lever`,
      mode,
      id: `${flipId}-halt`,
      source: 'drill',
      wait: s.timings.waitMs,
    });
  } catch (err) {
    const msg = `halt failed: ${(err as Error).message}`;
    p.log(`! ${head}: ${msg}`);
    return { label, level, selector, mode, flipId, stops: [], timeToStop: {}, errors: [msg] };
  }
  const fleet = answer.fleet;
  const acceptedAt = fleet?.appendedAt ?? Date.parse(answer.flip.at);
  const completeAt = fleet?.completeAt ?? undefined;
  const t0 = p.queueDepth ? await p.queueDepth(selector) : undefined;
  p.log(
    `${head}: seq ${answer.flip.seq} accepted; ${
      completeAt !== undefined
        ? `stop complete after ${(completeAt - acceptedAt).toFixed(2)} ms (${fleet?.applied ?? 0} acknowledged)`
        : `stop NOT complete within ${s.timings.waitMs} ms`
    }`,
  );
  await sleep(s.timings.observeMs);
  const tN = p.queueDepth ? await p.queueDepth(selector) : undefined;
  const endAt = drillNow();
  let resume: LeverResult['resume'];
  let resumeFrom: number | undefined;
  if (p.lever.resume !== false) {
    const release = p.lever.resume.release;
    try {
      // A gated resume names a release; mark it green first (KS-9.1.3). A control plane without
      // the release gate has no such route, and then the resume is not gated.
      if (release !== undefined) await markGreen(p, release, s.name);
      const r = await p.client.flip({
        action: 'resume',
        selector,
        reason: `drill ${s.name}: ${label} lever resumed`,
        id: `${flipId}-resume`,
        source: 'drill',
        wait: s.timings.waitMs,
        ...(release !== undefined ? { release } : {}),
      });
      resume = { seq: r.flip.seq, ...(release !== undefined ? { release } : {}), ok: true };
      resumeFrom = r.fleet?.completeAt ?? r.fleet?.appendedAt ?? drillNow();
      p.log(`${head}: resumed (seq ${r.flip.seq})`);
    } catch (err) {
      resume = {
        ...(release !== undefined ? { release } : {}),
        ok: false,
        detail: (err as Error).message,
      };
      p.log(`! ${head}: resume failed: ${(err as Error).message}`);
    }
  }
  // Recovery window: traffic flows again, and the next lever's baseline is taken in it.
  if (!p.fleetMode || p.index < p.total - 1) await sleep(s.timings.warmupMs);
  const resumeTo = drillNow();
  const fleetStops: WorkerStop[] = (fleet?.acknowledged ?? []).map((a) => ({
    workerId: a.workerId,
    appliedAt: a.at,
    timeToStopMs: a.latencyMs,
    fromAck: true,
  }));
  for (const l of fleet?.laggards ?? []) fleetStops.push({ workerId: l.workerId });
  return {
    label,
    level,
    selector,
    mode,
    flipId,
    seq: answer.flip.seq,
    acceptedAt,
    ...(completeAt !== undefined
      ? { completeAt, stopCompleteMs: round(completeAt - acceptedAt) }
      : {}),
    answer: {
      applied: fleet?.applied ?? null,
      laggards: fleet?.laggards.map((l) => l.workerId) ?? [],
      alreadyStale: fleet?.alreadyStale.map((w) => w.workerId) ?? [],
      complete: fleet?.complete ?? false,
      completeAfterMs: fleet?.completeAfterMs ?? null,
    },
    stops: [],
    timeToStop: {},
    ...(t0 && tN ? { queue: { t0, tN, discarded: 0 } } : {}),
    ...(resume ? { resume } : {}),
    errors,
    endAt,
    ...(resumeFrom !== undefined ? { resumeFrom, resumeTo } : {}),
    fleetStops,
  };
}

/**
 * Marks a release green (`POST /v1/releases`) so a gated resume on it may pass. A 404 or 405 means
 * the control plane has no release gate: nothing to do. Any other refusal throws (the resume
 * then fails and the lever reports it).
 */
async function markGreen(
  p: { readonly url: string; readonly token?: string },
  release: string,
  scenario: string,
): Promise<void> {
  const res = await fetch(`${p.url.replace(/\/+$/, '')}${ApiPath.RELEASES}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(p.token !== undefined ? { authorization: `Bearer ${p.token}` } : {}),
    },
    body: JSON.stringify({ release, status: 'green', reason: `drill ${scenario}: resume gate` }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.ok || res.status === 404 || res.status === 405) return;
  throw new Error(
    `marking release ${release} green failed: HTTP ${res.status} ${text.slice(0, 300)}`,
  );
}

/** Folds the sink's effects and the workers' events into a lever. */
function completeLever(
  raw: RawLever,
  s: Scenario,
  effects: readonly SinkEffect[],
  events: ReadonlyMap<string, readonly WorkerEvent[]> | undefined,
  ids: readonly string[],
): LeverResult {
  const { endAt, resumeFrom, resumeTo, fleetStops, ...lever } = raw;
  if (lever.acceptedAt === undefined || lever.seq === undefined || endAt === undefined)
    return lever;
  const acks = new Map((fleetStops ?? []).map((x) => [x.workerId, x.timeToStopMs]));
  const stops: WorkerStop[] = events
    ? stopTimes(ids, events, lever.seq, lever.acceptedAt).map((x) => {
        const ack = acks.get(x.workerId);
        return ack === undefined ? x : { ...x, ackMs: ack };
      })
    : [...(fleetStops ?? [])].map((x) =>
        x.timeToStopMs === undefined ? x : { ...x, ackMs: x.timeToStopMs },
      );
  const ackTimes = stops.flatMap((x) => (x.ackMs === undefined ? [] : [x.ackMs]));
  const ttl = stops.flatMap((x) => (x.timeToStopMs === undefined ? [] : [x.timeToStopMs]));
  const window: HaltWindow = {
    selector: lever.selector,
    acceptedAt: lever.acceptedAt,
    completeAt: lever.completeAt,
    endAt,
    baselineMs: baselineOf(s),
    ...(resumeFrom !== undefined && resumeTo !== undefined && resumeTo > resumeFrom
      ? { resume: { from: resumeFrom, to: resumeTo } }
      : {}),
  };
  const applied = new Map<string, number>();
  for (const x of stops)
    if (x.appliedAt !== undefined && !x.fromAck) applied.set(x.workerId, x.appliedAt);
  const ev = events ?? new Map<string, readonly WorkerEvent[]>();
  let discarded = 0;
  for (const list of ev.values()) {
    for (const e of list)
      if (e.t === 'discard' && e.at >= lever.acceptedAt && e.at < endAt) discarded += e.count;
  }
  // The first event-loop figure each worker took after the lever ended covers the lever.
  let loopP99: number | undefined;
  let loopMax: number | undefined;
  for (const list of ev.values()) {
    const l = list.find((e) => e.t === 'loop' && e.at >= endAt);
    if (l?.t === 'loop') {
      loopP99 = Math.max(loopP99 ?? 0, l.p99);
      loopMax = Math.max(loopMax ?? 0, l.max);
    }
  }
  return {
    ...lever,
    stops,
    ...(loopP99 !== undefined && loopMax !== undefined
      ? { workerLoopDelay: { p99: loopP99, max: loopMax } }
      : {}),
    timeToAck: {
      p50: percentile(ackTimes, 50),
      p99: percentile(ackTimes, 99),
      max: percentile(ackTimes, 100),
    } as LeverResult['timeToStop'],
    timeToStop: {
      p50: percentile(ttl, 50),
      p99: percentile(ttl, 99),
      max: percentile(ttl, 100),
    } as LeverResult['timeToStop'],
    ...(events || effects.length > 0
      ? { effects: measureEffects(window, effects, applied, ev) }
      : {}),
    ...(events
      ? {
          inFlightCancelled: measureCancelled(window, ev),
          schedules: measureSchedules(window, applied, ev),
        }
      : {}),
    ...(lever.queue ? { queue: { ...lever.queue, discarded } } : {}),
  };
}

/**
 * Reads worker ledgers as {@link LedgerView}s, read-only: a live worker may still be appending
 * (fleet mode), so the file is never opened for writing (opening a FileSideEffectLedger would cut
 * a torn tail under the writer). A last line without its newline is being written and is skipped;
 * any other bad line makes the ledger unreadable, which fails the check.
 */
async function readLedgers(
  files: readonly { workerId: string; path: string }[],
): Promise<{ views: LedgerView[]; unreadable: string[] }> {
  const views: LedgerView[] = [];
  const unreadable: string[] = [];
  for (const f of files) {
    try {
      const text = await readFile(f.path, 'utf8');
      const complete = text.slice(0, text.lastIndexOf('\n') + 1);
      const events = complete
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l, i) => {
          try {
            return parseLedgerEvent(JSON.parse(l));
          } catch (err) {
            throw new Error(`line ${i + 1}: ${(err as Error).message}`);
          }
        });
      for (const e of foldLedgerEvents(events)) {
        views.push({
          key: e.key,
          workerId: f.workerId,
          statuses: e.history.map((h) => h.status),
          context: e.context,
        });
      }
    } catch (err) {
      unreadable.push(`${f.path}: ${(err as Error).message}`);
    }
  }
  return { views, unreadable };
}

async function finish(
  data: {
    scenario: Scenario;
    mode: 'embedded' | 'fleet';
    controlPlane: string;
    startedAt: string;
    workers: WorkerSummary[];
    levers: LeverResult[];
    ledger?: LedgerCheck;
    llm?: DrillReport['llm'];
    loadStart: number;
  },
  options: RunDrillOptions,
  log: (l: string) => void,
): Promise<DrillOutcome> {
  const violations = checkTargets(
    {
      levers: data.levers,
      workers: data.workers,
      mode: data.mode,
      ...(data.ledger ? { ledger: data.ledger } : {}),
    },
    data.scenario.targets,
  );
  const report: DrillReport = {
    scenario: data.scenario.name,
    mode: data.mode,
    controlPlane: data.controlPlane,
    startedAt: data.startedAt,
    finishedAt: new Date().toISOString(),
    workers: data.workers,
    levers: data.levers,
    ...(data.ledger ? { ledger: data.ledger } : {}),
    ...(data.llm ? { llm: data.llm } : {}),
    targets: { ...data.scenario.targets },
    environment: {
      node: process.version,
      cpus: availableParallelism(),
      loadStart: data.loadStart,
      loadEnd: round(loadavg()[0] ?? 0),
    },
    violations,
    passed: violations.length === 0,
  };
  for (const l of report.levers) {
    log(
      `${l.label} ${formatSelector(l.selector)}: time-to-stop p50 ${fmt(l.timeToStop.p50)} p99 ${fmt(l.timeToStop.p99)} max ${fmt(l.timeToStop.max)} ms; stop complete ${fmt(l.stopCompleteMs)} ms; matching effects after accepted ${l.effects?.matchingAfterAccepted ?? 'n/a'}, after complete ${l.effects?.matchingAfterComplete ?? 'n/a'}; other cohorts ${l.effects?.otherRateBefore ?? 'n/a'}/s -> ${l.effects?.otherRateDuring ?? 'n/a'}/s`,
    );
  }
  let written: WrittenReport | undefined;
  if (options.outDir !== undefined) {
    written = await writeDrillReport(report, options.outDir);
    log(`report: ${written.json}, ${written.markdown}, ${written.svg}`);
  }
  for (const v of violations) log(`VIOLATION ${v.code}: ${v.message}`);
  log(
    report.passed
      ? `drill ${report.scenario} PASSED`
      : `drill ${report.scenario} FAILED (${violations.length} violation(s))`,
  );
  return { report, ...(written ? { written } : {}), exitCode: report.passed ? 0 : 1 };
}

// ---- fleet mode: a fleet the drill did not start ------------------------------------------

/** The levers of a fleet drill, on the operator's drill scope only. KS-9.5.1 */
export function fleetLevers(scope: DrillScope, allowGlobal: boolean): Lever[] {
  const out: Lever[] = [];
  const add = (label: string, selector: Selector) =>
    out.push({ label, selector: normalizeSelector(selector), resume: {} } as Lever);
  if (scope.capability !== undefined) {
    add('capability', {
      capability: scope.capability,
      ...(scope.tenant !== undefined ? { tenant: scope.tenant } : {}),
    });
  }
  if (scope.runId !== undefined) add('run', { runId: scope.runId });
  if (scope.tenant !== undefined) add('tenant', { tenant: scope.tenant });
  if (scope.feature !== undefined) add('feature', { feature: scope.feature });
  if (allowGlobal) add('global', {});
  return out;
}

async function runFleetDrill(options: RunDrillOptions): Promise<DrillOutcome> {
  const s = options.scenario;
  const log = options.log ?? (() => undefined);
  const startedAt = new Date().toISOString();
  const loadStart = round(loadavg()[0] ?? 0);
  const url = options.url!;
  const client = new ControlPlaneClient({
    url,
    ...(options.token ? { token: options.token } : {}),
  });
  const levers = fleetLevers(options.scope ?? {}, options.allowGlobal ?? false);
  if (levers.length === 0) {
    throw new InvalidOptionError(
      'scope',
      'at least one of --scope-tenant, --scope-capability, --scope-run, --scope-feature',
      options.scope,
    );
  }
  for (const l of levers) {
    if (levelOf(normalizeSelector(l.selector)) === 'global')
      log('! the global lever stops the whole fleet (--allow-global)');
  }
  const expect = options.expectWorkers!;
  const notConnected = new Set<string>();
  const seen = new Set<string>();
  const check = async (): Promise<void> => {
    let answer: WorkersAnswer;
    try {
      answer = await client.workers();
    } catch (err) {
      notConnected.add(`(control plane: ${(err as Error).message})`);
      return;
    }
    const fresh = answer.workers.filter((w) => w.connected && !w.stale);
    for (const w of fresh) seen.add(w.id);
    if (typeof expect === 'number') {
      if (fresh.length < expect) {
        const id = `(${expect - fresh.length} of ${expect} expected)`;
        if (!notConnected.has(id))
          log(`! only ${fresh.length} of ${expect} expected workers are connected and fresh`);
        notConnected.add(id);
      }
    } else {
      const ok = new Set(fresh.map((w) => w.id));
      for (const id of expect) {
        if (!ok.has(id) && !notConnected.has(id))
          log(`! worker ${id} is not connected and fresh here`);
        if (!ok.has(id)) notConnected.add(id);
      }
    }
  };
  const sinkStart = drillNow();
  const raws: RawLever[] = [];
  const runTag = randomUUID().slice(0, 8);
  for (let i = 0; i < levers.length; i++) {
    await check();
    raws.push(
      await pullLever({
        client,
        url,
        ...(options.token ? { token: options.token } : {}),
        lever: levers[i]!,
        index: i,
        total: levers.length,
        runTag,
        scenario: s,
        log,
        fleetMode: true,
      }),
    );
  }
  let effects: SinkEffect[] = [];
  if (options.sinkUrl !== undefined)
    effects = await readRemoteSink(options.sinkUrl, sinkStart - 60_000, log);
  const measured = raws.map((r) => completeLever(r, s, effects, undefined, []));
  let ledger: LedgerCheck | undefined;
  if (options.ledgerPaths !== undefined && options.ledgerPaths.length > 0) {
    const { views, unreadable } = await readLedgers(
      options.ledgerPaths.map((path, i) => ({ workerId: `ledger-${i + 1}`, path })),
    );
    ledger = checkLedger(effects, views, unreadable);
  }
  const ids = typeof expect === 'number' ? [...seen] : [...expect];
  const workers: WorkerSummary[] = ids.map((id) => ({
    workerId: id,
    connected: !notConnected.has(id),
    effectsAtSink: effects.filter((e) => e.workerId === id).length,
  }));
  for (const id of notConnected) {
    if (!ids.includes(id)) workers.push({ workerId: id, connected: false, effectsAtSink: 0 });
  }
  return finish(
    {
      scenario: s,
      mode: 'fleet',
      controlPlane: url,
      startedAt,
      workers,
      levers: measured,
      ...(ledger ? { ledger } : {}),
      loadStart,
    },
    options,
    log,
  );
}

async function readRemoteSink(
  url: string,
  since: number,
  log: (l: string) => void,
): Promise<SinkEffect[]> {
  try {
    const res = await fetch(`${url.replace(/\/+$/, '')}/effects?since=${since}`, {
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as { effects?: SinkEffect[] };
    return body.effects ?? [];
  } catch (err) {
    log(`! cannot read the sink at ${url}: ${(err as Error).message}`);
    return [];
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function fmt(n: number | undefined): string {
  return n === undefined ? 'n/a' : n.toFixed(2);
}

/** Re-exported for tests: the sink and LLM server types the drill starts. */
export type { EffectSink, SlowLlmServer };
