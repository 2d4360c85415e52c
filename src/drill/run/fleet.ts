import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { ControlPlaneClient } from '../../client/control-plane-client.js';
import { InvalidOptionError } from '../../errors.js';
import { levelOf, normalizeSelector, type Selector } from '../../model/selector.js';
import type { WorkersAnswer } from '../../protocol/answers.js';
import type { LedgerCheck, WorkerSummary } from '../report/drill-report.js';
import type { SinkEffect } from '../servers/effect-sink.js';
import { systemClock } from '../../internal/clock.js';
import { checkLedger } from '../measure/measure.js';
import type { Lever } from '../scenario.js';
import type { DrillOutcome, DrillScope, RunDrillOptions } from './run-drill-options.js';
import { completeLever } from './complete-lever.js';
import { whyNotFresh } from './fleet-check.js';
import { pullLever, type RawLever } from './pull-lever.js';
import { readLedgers } from './read-ledgers.js';
import { finishDrill } from './finish-drill.js';
import { round } from '../internal/round.js';

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

/**
 * The fleet drill (KS-9.5): against a control plane and workers the drill did not start, pulls
 * levers on the drill scope only and measures from the acknowledgements, a sink and ledgers if given.
 */
export async function runFleetDrill(options: RunDrillOptions): Promise<DrillOutcome> {
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
    const now = systemClock.now();
    const fresh = answer.workers.filter(
      (w) => whyNotFresh(w, s.timings.freshWithinMs, now) === undefined,
    );
    for (const w of fresh) seen.add(w.id);
    if (typeof expect === 'number') {
      if (fresh.length < expect) {
        const id = `(${expect - fresh.length} of ${expect} expected)`;
        if (!notConnected.has(id))
          log(`! only ${fresh.length} of ${expect} expected workers are connected and fresh`);
        notConnected.add(id);
      }
    } else {
      const byId = new Map(answer.workers.map((w) => [w.id, w]));
      for (const id of expect) {
        const w = byId.get(id);
        const why =
          w === undefined
            ? 'never connected to this control plane'
            : whyNotFresh(w, s.timings.freshWithinMs, now);
        if (why === undefined) continue;
        if (!notConnected.has(id)) log(`! worker ${id} is not connected and fresh here: ${why}`);
        notConnected.add(id);
      }
    }
  };
  const sinkStart = systemClock.now();
  const raws: RawLever[] = [];
  const runTag = randomUUID().slice(0, 8);
  for (let i = 0; i < levers.length; i++) {
    await check();
    raws.push(
      await pullLever({
        client,
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
  return finishDrill(
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

/** Reads what a drill sink it did not start received (`GET /effects?since=`). */
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
