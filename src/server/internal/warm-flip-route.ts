import { authorize } from '../../auth/principal.js';
import { GENESIS_HASH, chainRecord, recordJson, type FlipRecord } from '../../model/flip-record.js';
import { haltCoverage } from '../../model/selector.js';
import {
  flipQuerySchema,
  flipRequestSchema,
  parseFlipRequest,
} from '../../protocol/flip-request.js';
import { encodeFlipEvent, encodeSkipEvent } from '../../protocol/stream-events.js';
import type { RecordListener } from '../../store/flip-log-store.js';
import { FleetTracker } from '../fleet-tracker.js';
import { LogFollower } from '../log-follower.js';
import { ANONYMOUS, parseQuery } from '../routes/route-support.js';

const QUERIES = [
  new URL('http://warm-up.invalid/v1/flips'),
  new URL('http://warm-up.invalid/v1/flips?wait=0'),
];
const BODIES = [
  { action: 'halt', selector: { capability: 'warm-up' }, reason: 'warm-up' },
  { action: 'resume', selector: { capability: 'warm-up' }, reason: 'warm-up', release: 'warm-up' },
  { action: 'halt', selector: { tenant: 'warm-up', runId: 'warm-up' }, reason: 'warm-up' },
  { action: 'resume', selector: { tenant: 'warm-up', runId: 'warm-up' }, reason: 'warm-up' },
];
const WORKERS = ['warm-up-1', 'warm-up-2', 'warm-up-3'];

/**
 * The control plane's side of a flip, run on private objects so the first real flip does not
 * compile it (issue 19, the first flip is the one that matters). A server that has answered
 * heartbeats and acknowledgements for weeks has never run its flip code: measured on a fresh
 * control plane, the first flip's validation, chaining and hashing took about 4 ms of CPU against
 * a few tens of microseconds warm (lazy compilation, zod compiling the query schema on its first
 * parse, the hash's first call), and the first flip of each peers-bench run was its slowest.
 *
 * Runs what `POST /v1/flips` runs between reading the body and writing the answer: the query and
 * body checks (fast path and zod), authorisation, chaining onto a private head, a private
 * {@link LogFollower} applying the records (fold, encoded event, replay ring, wait), a private
 * {@link FleetTracker} with a few acknowledging workers (its fleet answer and the answer's JSON),
 * and a scoped reader's skip event. Touches no store, no socket, no shared state.
 *
 * @returns how many records the private follower applied (so the work cannot be dropped)
 */
export async function exerciseFlipRoute(): Promise<number> {
  for (const url of QUERIES) parseQuery(flipQuerySchema, url, 'flip query');
  // zod decides the bodies the fast path leaves to it (an override, an unknown field).
  flipRequestSchema.safeParse(BODIES[1]);
  const records: FlipRecord[] = [];
  const listeners = new Set<RecordListener>();
  const follower = new LogFollower({
    log: {
      kind: 'memory',
      read: async () => [],
      subscribe: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    },
    maxReplay: 16,
    logger: { warn: () => undefined, error: () => undefined },
  });
  await follower.start('warm-up');
  const tracker = new FleetTracker();
  let head: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH };
  const at = new Date(0);
  for (const body of BODIES) {
    const { flip } = parseFlipRequest(body, 'warm-up');
    authorize(ANONYMOUS, { kind: flip.action, selector: flip.selector });
    follower.hasId(flip.id);
    follower.state.get(flip.selector);
    const record = chainRecord(flip, head, at);
    head = record;
    records.push(record);
    for (const l of listeners) l(record);
    await follower.waitApplied(record.seq, record.hash, 1000);
    recordJson(record);
    encodeFlipEvent(record);
    encodeSkipEvent(record);
    for (const w of WORKERS) tracker.ack({ workerId: w, release: 'warm-up', seq: record.seq - 1 });
    tracker.flipAppended(record.seq);
    tracker.ack({ workerId: WORKERS[0]!, release: 'warm-up', seq: record.seq });
    tracker.statusJson(record.seq);
    const fleet = tracker.status(record.seq) ?? null;
    const rest = { duplicate: false, fleet, covers: haltCoverage(record.selector) };
    JSON.stringify(rest);
  }
  const applied = follower.state.seq;
  follower.close();
  return applied;
}
