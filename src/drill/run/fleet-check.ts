import type { ControlPlaneClient } from '../../client/control-plane-client.js';
import type { WorkerInfo, WorkersAnswer } from '../../protocol/answers.js';
import { systemClock, type Clock } from '../../internal/clock.js';
import { sleep } from '../internal/sleep.js';

/** Polls `GET /v1/workers` until every id is connected and fresh, or the timeout. */
export async function waitConnected(
  client: ControlPlaneClient,
  ids: readonly string[],
  timeoutMs: number,
  log: (l: string) => void,
): Promise<void> {
  const until = systemClock.now() + timeoutMs;
  let missing: { id: string; why: string }[] = [];
  while (systemClock.now() < until) {
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
 * Why a worker listed by `GET /v1/workers` is not connected and fresh, or undefined when it is:
 * an open stream, an unexpired lease, and an acknowledgement received within `freshWithinMs`
 * (the scenario's `timings.freshWithinMs`). A worker whose lease has not run out yet but that
 * has not acknowledged for longer than that is starved or cut off: a lever pulled now would
 * measure its lease, not its stop. `now` must be on the control plane's clock (the embedded one
 * runs on the drill clock; for another one, the same machine or NTP-synced hosts). KS-9.3.1
 */
export function whyNotFresh(w: WorkerInfo, freshWithinMs: number, now: number): string | undefined {
  if (!w.connected) return 'no open stream';
  if (w.stale) return 'its lease ran out (stale)';
  if (w.lastAckAt === null) return 'it never acknowledged';
  const age = now - Date.parse(w.lastAckAt);
  if (age > freshWithinMs) {
    return `its last acknowledgement is ${Math.round(age)} ms old (freshWithinMs ${freshWithinMs})`;
  }
  return undefined;
}

/**
 * Which expected workers are not connected and fresh on this control plane: a worker missing
 * from `GET /v1/workers` reads another control plane or none at all; see {@link whyNotFresh}
 * for the rest. KS-9.3.1
 */
export async function checkFleet(
  client: ControlPlaneClient,
  ids: readonly string[],
  freshWithinMs: number,
  clock: Clock = systemClock,
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
    const why =
      w === undefined
        ? 'never connected to this control plane'
        : whyNotFresh(w, freshWithinMs, clock.now());
    if (why !== undefined) out.push({ id, why });
  }
  return out;
}
