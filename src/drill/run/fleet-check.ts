import type { ControlPlaneClient } from '../../client/control-plane-client.js';
import type { WorkersAnswer } from '../../protocol/answers.js';
import { drillNow } from '../drill-clock.js';
import { sleep } from '../internal/sleep.js';

/** Polls `GET /v1/workers` until every id is connected and fresh, or the timeout. */
export async function waitConnected(
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
export async function checkFleet(
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
