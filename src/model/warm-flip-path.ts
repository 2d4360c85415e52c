import { canonicalJson } from './canonical-json.js';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  parseFlipRecord,
  verifyRecordHash,
  type FlipRecord,
} from './flip-record.js';
import { flagsChangedBy } from './flags.js';
import { KillState } from './kill-state.js';
import { levelOf, type Selector } from './selector.js';

/**
 * The halt path, run on a private state so it stays warm. A worker applies its first flip after
 * hours or weeks of idle; by then V8 may have flushed the bytecode of functions it has not run
 * (bytecode flushing ages unused functions on each major GC) and dropped their optimised code, so
 * the first halt would compile on the way to stopping. Running the same steps on records and a
 * {@link KillState} nobody else sees (parse the event's JSON, check the record, check its hash,
 * apply a halt at every level, match contexts against it, resume) keeps that code compiled.
 * Touches nothing shared; a few tens of microseconds.
 *
 * @returns how many records it applied (so the work cannot be optimised away)
 */
export function exerciseFlipPath(): number {
  const state = KillState.empty();
  let applied = 0;
  for (const data of wireRecords()) {
    const record = parseFlipRecord(JSON.parse(data));
    if (!verifyRecordHash(record)) throw new Error('warm-up record does not verify');
    const change = state.apply(record);
    flagsChangedBy(change.level);
    state.match(CONTEXT);
    applied++;
  }
  return applied;
}

const CONTEXT = Object.freeze({
  tenant: 'warm-up',
  feature: 'warm-up',
  runId: 'warm-up',
  capability: 'warm-up',
});

let cached: readonly string[] | undefined;

/**
 * A private log for warming a stream client: a halt at each level, then the resumes lifting
 * them, chained from genesis (seq 1, 2, ...), each as the `data` of a `flip` event carries it.
 * Nothing in it names a real tenant, run or capability (`warm-up` everywhere).
 *
 * @returns the records' canonical JSON, in seq order (the same frozen array on every call)
 */
export function warmUpWireRecords(): readonly string[] {
  return wireRecords();
}

/** A halt at each level and the resumes lifting them, as the wire carries them. */
function wireRecords(): readonly string[] {
  if (cached !== undefined) return cached;
  const selectors: Selector[] = [
    { capability: 'warm-up' },
    { runId: 'warm-up' },
    { tenant: 'warm-up' },
    { feature: 'warm-up' },
    {},
  ];
  const out: string[] = [];
  let head = { seq: 0, hash: GENESIS_HASH };
  const at = new Date(0);
  const push = (action: 'halt' | 'resume', selector: Selector): void => {
    const r: FlipRecord = chainRecord(
      parseFlipInput({
        actor: 'warm-up',
        action,
        selector,
        reason: `warm-up ${levelOf(selector)}`,
      }),
      head,
      at,
    );
    out.push(canonicalJson(r));
    head = r;
  };
  for (const s of selectors) push('halt', s);
  for (const s of selectors) push('resume', s);
  cached = Object.freeze(out);
  return cached;
}
