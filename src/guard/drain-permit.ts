import { InvalidOptionError } from '../errors.js';
import { HaltCause } from '../model/halt-cause.js';
import { QueueMode } from '../model/flip-record.js';
import {
  normalizeSelector,
  selectorMatches,
  type KillContext,
  type Selector,
} from '../model/selector.js';
import type { HaltWatcher } from './halt-watcher.js';
import type { KillDecision } from './kill-decision.js';

/**
 * Proof that a queued task was admitted (enqueued) at a known point of the flip log, so its
 * effects may still dispatch while the only halts stopping them are `drain` halts appended after
 * that point (DESIGN section 1.2: "drain: no new intake; what was queued runs to completion").
 * KS-4.8
 *
 * `QueueController.work` hands one to its handler for each task it runs; pass it on as
 * `drainPermit` of every `guard.run` the task makes. A permit is good only while the task runs
 * (the controller revokes it when the handler settles) and only for effects whose context the
 * task's context matches (the task's own tenant, run, ...). It never lets an effect through a
 * `discard` or `hold` halt, a fail-closed answer, or a drain halt older than the task.
 *
 * @example
 * ```ts
 * await controller.work(async (task, signal, permit) =>
 *   guard.run({ context: task.context, runId, step, capability, drainPermit: permit }, body));
 * ```
 */
export class DrainPermit {
  /**
   * The seq of the kill state the task's enqueue check read (every matching halt with a higher
   * seq was appended after the task was admitted); undefined when the provider named none, and
   * then the permit allows nothing.
   */
  readonly admittedSeq: number | undefined;
  /** The task's kill context; the permit covers only effects whose context it matches. */
  readonly context: Selector;
  /** The task, for messages. */
  readonly taskId: string;
  #revoked = false;

  /**
   * @param init.admittedSeq - the task's admission point (non-negative integer), or undefined
   * @param init.context - the task's kill context
   * @param init.taskId - the task's id
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a malformed admission point or context
   */
  constructor(init: {
    readonly admittedSeq: number | undefined;
    readonly context: KillContext;
    readonly taskId: string;
  }) {
    const seq = init?.admittedSeq;
    if (seq !== undefined && !(Number.isSafeInteger(seq) && seq >= 0)) {
      throw new InvalidOptionError('admittedSeq', 'a non-negative integer or undefined', seq);
    }
    if (init.context === null || typeof init.context !== 'object') {
      throw new InvalidOptionError('context', 'a kill context', init.context);
    }
    this.admittedSeq = seq;
    this.context = normalizeSelector(init.context);
    this.taskId = String(init.taskId);
  }

  /** False once revoked (the task's handler settled); a revoked permit allows nothing. */
  get active(): boolean {
    return !this.#revoked;
  }

  /** Ends the permit; called by the queue controller when the task's handler settles. */
  revoke(): void {
    this.#revoked = true;
  }
}

/**
 * Whether a permit lets an effect with context `ctx` pass a halted decision. KS-4.8.1 It does only
 * when all of these hold, and refuses on anything unknown (fail closed):
 * - the permit is a live {@link DrainPermit} with a known `admittedSeq`, and the task's context
 *   matches `ctx` (the effect belongs to the task);
 * - the decision is a halt (`cause: 'halted'`, not STALE or ERROR) naming a flip whose `mode` is
 *   `drain`, and the provider says every matching halt is a drain halt (`drainOnly: true`);
 * - the flip's seq (the lowest seq among the matching halts) is above `admittedSeq`, so every
 *   matching halt was appended after the task was admitted.
 *
 * A decision that is not halted is not this function's business: it answers false for it.
 *
 * @param d - the kill decision for the effect's context
 * @param permit - the task's permit, if any
 * @param ctx - the effect's context
 */
export function drainPermits(
  d: KillDecision,
  permit: DrainPermit | undefined,
  ctx: KillContext,
): boolean {
  if (!(permit instanceof DrainPermit) || !permit.active) return false;
  const admitted = permit.admittedSeq;
  if (admitted === undefined) return false;
  if (!selectorMatches(permit.context, ctx)) return false;
  if (!d.halted || (d.cause ?? HaltCause.HALTED) !== HaltCause.HALTED) return false;
  const flip = d.flip;
  if (flip === undefined || flip.mode !== QueueMode.DRAIN || d.drainOnly !== true) return false;
  return Number.isSafeInteger(flip.seq) && flip.seq > admitted;
}

/**
 * Watches `ctx` like {@link HaltWatcher.watch}, but a halt the permit covers does not fire: the
 * watch is armed again and the context evaluated once more (a change that lands while re-arming
 * is then not missed). Fires at most once, for the first decision the permit does not cover.
 * Without a permit this is `watcher.watch`.
 *
 * @returns a function that removes the watch
 */
export function watchUnlessDrained(
  watcher: HaltWatcher,
  ctx: KillContext,
  permit: DrainPermit | undefined,
  listener: (d: KillDecision) => void,
): () => void {
  if (permit === undefined) return watcher.watch(ctx, listener);
  let done = false;
  let unwatch: () => void = () => undefined;
  const fire = (d: KillDecision): void => {
    if (done) return;
    done = true;
    unwatch();
    listener(d);
  };
  const arm = (): void => {
    unwatch = watcher.watch(ctx, (d) => {
      if (done) return;
      if (!drainPermits(d, permit, ctx)) {
        fire(d);
        return;
      }
      // The watcher fires once per watch: arm again first, then look again, so a discard or
      // hold halt that lands meanwhile is seen either by the new watch or by this evaluation.
      arm();
      void watcher.evaluate(ctx).then(
        (again) => {
          if (again.halted && !drainPermits(again, permit, ctx)) fire(again);
        },
        () => fire({ halted: true, cause: HaltCause.ERROR, reason: 'evaluation failed' }),
      );
    });
  };
  arm();
  return () => {
    done = true;
    unwatch();
  };
}
