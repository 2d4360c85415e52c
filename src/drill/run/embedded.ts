import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createToken } from '../../auth/token-hash.js';
import { SigningKey } from '../../integrity/signing-key.js';
import { ControlPlaneClient } from '../../client/control-plane-client.js';
import { formatSelector, selectorMatches, type Selector } from '../../model/selector.js';
import type { LeverResult, WorkerSummary } from '../report/drill-report.js';
import { startEffectSink, type EffectSink } from '../servers/effect-sink.js';
import { systemClock } from '../../internal/clock.js';
import { WorkerVariant, type WorkerEvent } from '../internal/protocol.js';
import { WorkerFleet } from './worker-fleet.js';
import { checkLedger } from '../measure/measure.js';
import { isTreeLever, leverTarget, workerIdOf, type Scenario } from '../scenario.js';
import { startSlowLlmServer } from '../servers/slow-llm-server.js';
import type { DrillOutcome, RunDrillOptions } from './run-drill-options.js';
import { forkControlPlane } from './fork-control-plane.js';
import { baselineOf, completeLever } from './complete-lever.js';
import { checkFleet, waitConnected } from './fleet-check.js';
import { pullLever } from './pull-lever.js';
import { readLedgers } from './read-ledgers.js';
import { finishDrill } from './finish-drill.js';
import { sleep } from '../internal/sleep.js';
import { round } from '../internal/round.js';
import { DrillInterruptedError } from './drill-interrupted.js';

/**
 * The embedded drill: starts the control plane (its own process), the effect sink, the slow LLM
 * and the worker processes, pulls each lever in turn, then folds what the sink, the workers and
 * their ledgers recorded into the report.
 */
export async function runEmbeddedDrill(options: RunDrillOptions): Promise<DrillOutcome> {
  const s = options.scenario;
  const log = options.log ?? (() => undefined);
  const startedAt = new Date().toISOString();
  const loadStart = round(loadavg()[0] ?? 0);
  const staleAfterMs = options.staleAfterMs ?? 3_000;
  const heartbeatMs = options.heartbeatMs ?? 1_000;
  const dataDir = await mkdtemp(join(tmpdir(), 'killswitch-drill-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  const fleet = new WorkerFleet();
  // Stops every process the drill started and removes its data, once (at the end, or when the
  // caller's signal interrupts it: Ctrl-C must not leave workers or a data directory behind).
  let teardown: Promise<void> | undefined;
  const tearDown = (): Promise<void> =>
    (teardown ??= (async () => {
      fleet.kill();
      for (const c of cleanups) await c().catch(() => undefined);
      if (!options.keepData)
        await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
      else log(`data kept in ${dataDir}`);
    })());
  const interrupted = new Promise<never>((_, reject) => {
    const onAbort = (): void =>
      void tearDown().then(() =>
        reject(
          new DrillInterruptedError(
            `the drill was interrupted: its workers and control plane were stopped${options.keepData ? `, data kept in ${dataDir}` : ', its data removed'}`,
          ),
        ),
      );
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
  interrupted.catch(() => undefined);
  try {
    return await Promise.race([interrupted, drill()]);
  } finally {
    await tearDown();
  }

  async function drill(): Promise<DrillOutcome> {
    let url = options.url;
    // The lever's token and the workers' token: the caller's for a given control plane.
    let leverToken = options.token;
    let workerToken = options.token;
    // The key the workers check the control plane's signatures with: the caller's for a given
    // control plane, a fresh one for the embedded one (which then signs, KS-9.2.5).
    let publicKeys = options.publicKeys;
    if (url === undefined) {
      // KS-17.9.3 the embedded control plane has tokens too: an admin one for the levers, a worker
      // one (any id) for the fleet, both fresh per drill and handed over the IPC channel only.
      leverToken = createToken();
      workerToken = createToken();
      const key = SigningKey.generate();
      publicKeys = key.publicKeyPem;
      // Its own process, as in production: the sink and LLM share this event loop.
      const cpScript =
        options.controlPlaneScript ??
        fileURLToPath(new URL('../servers/control-plane-process.js', import.meta.url));
      const cp = await forkControlPlane(cpScript, {
        dataDir,
        staleAfterMs,
        heartbeatMs,
        tokens: [
          { name: 'drill', token: leverToken, role: 'admin' },
          { name: 'drill-fleet', token: workerToken, role: 'worker', workers: ['*'] },
        ],
        signingKeyPem: key.toPem(),
      });
      cleanups.push(() => cp.stop());
      url = cp.url;
      log(`control plane ${url} (embedded, own process pid ${cp.pid}, file log in ${dataDir})`);
      log(`control plane signs with a fresh key; workers check its signatures (key ${key.kid})`);
    } else {
      log(`control plane ${url} (given)`);
      if (publicKeys !== undefined)
        log('workers check its signatures with the given public key(s)');
    }
    const client = new ControlPlaneClient({
      url,
      ...(leverToken ? { token: leverToken } : {}),
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
        ...(workerToken ? { token: workerToken } : {}),
        ...(publicKeys !== undefined ? { publicKeys } : {}),
        sinkUrl: sink.url,
        llmUrl: llm.url,
        ledgerPath: join(dataDir, `ledger-${workerId}.jsonl`),
        traffic: s.traffic,
        seed: s.seed,
        variant: options.variants?.[workerId] ?? WorkerVariant.NORMAL,
        staleAfterMs,
        heartbeatMs,
        fleet: ids,
      });
    }
    // KS-9.7 the gateway path: one more member, counted like a worker (not in the run tree).
    const members = [...ids];
    if (s.gateway !== undefined) {
      const workerId = s.gateway.workerId;
      members.push(workerId);
      fleet.spawn(options.gatewayScript ?? join(dirname(script), 'gateway-worker.js'), {
        workerId,
        release,
        urls: [url],
        ...(workerToken ? { token: workerToken } : {}),
        ...(publicKeys !== undefined ? { publicKeys } : {}),
        sinkUrl: sink.url,
        llmUrl: llm.url,
        ledgerPath: join(dataDir, `ledger-${workerId}.jsonl`),
        traffic: s.traffic,
        seed: s.seed,
        variant: WorkerVariant.NORMAL,
        staleAfterMs,
        heartbeatMs,
      });
    }
    log(
      `${fleet.members.length} worker(s) started: ${fleet.members.map((m) => `${m.workerId}${m.variant !== 'normal' ? ` (${m.variant})` : ''} pid ${m.child.pid}`).join(', ')}`,
    );

    const notConnected = new Set<string>();
    await waitConnected(client, members, s.timings.connectTimeoutMs, log);
    log(`workers connected; ${s.timings.warmupMs} ms of traffic before the first lever`);
    await sleep(s.timings.warmupMs);
    // Each worker's event-loop figure covers the time since the previous collect: without this
    // one, the first lever's covered the workers' start (module loading, start-up GCs) and read
    // as a loop held up during the first halt (issue 19: "306 ms in the first window").
    await fleet.collect();

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
      // A run-tree lever on a tree still spreading out would measure a small one: wait until it
      // has the shape the targets ask for (bounded; the target check fails a tree short of it).
      if (isTreeLever(lever, s)) await waitForTree(fleet, s, ids, log);
      // A worker whose tool ignores its abort (KS-9.4.3) is caught only by a call in flight at
      // the flip: wait until it holds every such call open, so catching it is not left to timing.
      await waitForHeldCalls(fleet, s.timings.connectTimeoutMs, log);
      const missing = await checkFleet(client, members, s.timings.freshWithinMs);
      for (const m of missing) {
        if (!notConnected.has(m.id))
          log(`! worker ${m.id} is not connected and fresh here: ${m.why}`);
        notConnected.add(m.id);
      }
      levers.push(
        await pullLever({
          client,
          lever,
          index: i,
          total: s.levers.length,
          runTag,
          scenario: s,
          log,
          queueDepth: (sel) => fleet.queueDepth(sel),
          ...(isTreeLever(lever, s) ? { treeShape: () => fleet.treeShape() } : {}),
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
    const measured = levers.map((l) => completeLever(l, s, effects, events, members));
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
      ...(m.workerId === s.gateway?.workerId ? { gateway: true } : {}),
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
    return await finishDrill(
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
  }
}

/**
 * Waits until the run tree is big, on every worker, with children running, queued and waiting, and
 * at its full depth: when children spawn grandchildren, every worker holds one (the descendants a
 * spawner's dropped lineage would set loose are grandchildren, KS-9.4.5; a lever pulled before they
 * exist measures a shallower tree than the scenario names). Bounded; the target check fails a tree
 * short of its shape.
 */
async function waitForTree(
  fleet: WorkerFleet,
  s: Scenario,
  agents: readonly string[],
  log: (l: string) => void,
): Promise<void> {
  const until = systemClock.now() + s.timings.connectTimeoutMs;
  const deep = (s.traffic.tree?.grandchildEvery ?? 0) > 0;
  for (;;) {
    const shape = await fleet.treeShape();
    const sum = (k: 'running' | 'queued' | 'waiting') => shape.reduce((a, x) => a + x[k], 0);
    const spread = shape.filter((x) => x.running + x.queued > 0).length;
    const shallow = deep
      ? agents.filter((id) => !shape.some((x) => x.workerId === id && x.grandchildren > 0))
      : [];
    if (
      sum('running') + sum('queued') >= s.targets.minTreeRuns &&
      spread >= agents.length &&
      sum('queued') > 0 &&
      sum('waiting') > 0 &&
      shallow.length === 0
    )
      return;
    if (systemClock.now() >= until) {
      log(
        `! the run tree did not reach its shape within ${s.timings.connectTimeoutMs} ms${shallow.length > 0 ? ` (no grandchild on ${shallow.join(', ')})` : ''}`,
      );
      return;
    }
    await sleep(25);
  }
}

/** Waits until every worker holds open all the tool calls it holds across flips (bounded). */
async function waitForHeldCalls(
  fleet: WorkerFleet,
  timeoutMs: number,
  log: (l: string) => void,
): Promise<void> {
  const until = systemClock.now() + timeoutMs;
  for (;;) {
    const short = (await fleet.heldCalls()).filter((h) => h.open < h.total);
    if (short.length === 0) return;
    if (systemClock.now() >= until) {
      log(
        `! held tool calls not all open within ${timeoutMs} ms: ${short.map((h) => `${h.workerId} ${h.open} of ${h.total}`).join(', ')}`,
      );
      return;
    }
    await sleep(25);
  }
}

/** Waits until the sink saw a matching effect dispatched within the last `windowMs`. */
async function waitForTraffic(
  sink: EffectSink,
  selector: Selector,
  windowMs: number,
  timeoutMs: number,
  log: (l: string) => void,
): Promise<void> {
  const until = systemClock.now() + timeoutMs;
  for (;;) {
    const now = systemClock.now();
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
