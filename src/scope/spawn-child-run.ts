import { ErrorCode, KillSwitchError, ValidationError, type HaltedError } from '../errors.js';
import type { EffectGuard } from '../guard/effect-guard.js';
import { haltedErrorOf, type KillDecision } from '../guard/kill-decision.js';
import { parseLineage, type Lineage } from '../lineage/lineage.js';
import type { KillContext } from '../model/selector.js';
import {
  childLineage,
  currentRunScope,
  runInScope,
  scopeContext,
  type RunScope,
} from './run-scope.js';

/** The capability a spawn is guarded as, so `{capability: 'run.spawn'}` freezes all spawning. */
export const SPAWN_CAPABILITY = 'run.spawn';

/** What the child's function receives. */
export interface ChildRun {
  /** The child's run id, derived from the parent's and the step. */
  readonly runId: string;
  /** Run ids from the root to the child. */
  readonly runPath: readonly string[];
  /** The portable token to send with the child's work to another process. */
  readonly lineage: Lineage;
  /** The child's evaluation context (tenant, feature, runId, runPath). */
  readonly context: KillContext;
  /** Aborts the moment the child, its parent or any ancestor is halted. */
  readonly signal: AbortSignal;
}

/** Options of {@link spawnChildRun}. */
export interface SpawnChildRunOptions {
  /** The parent's lineage. @default the current run scope */
  readonly parent?: Lineage;
  /** The capability the spawn is guarded as. @default {@link SPAWN_CAPABILITY} */
  readonly capability?: string;
}

/** Child runs executing in this process, so one child never runs twice at once. */
const running = new Set<string>();

/**
 * Spawns a child run: derives its id from the parent's and `step` (a resumed parent derives the
 * same child), guards the spawn as an effect of the parent (step `spawn:<step>`, capability
 * `run.spawn`, recorded in the ledger; refused with `KS_HALTED` while the child, the parent or any
 * ancestor is halted, also when a resumed parent spawns a child it spawned before), then runs `fn`
 * inside the child's run scope, so everything `fn` guards, retries, schedules and enqueues carries
 * the child's lineage. A halt on the child or any ancestor while `fn` runs aborts `child.signal`
 * and rejects at once with `KS_ABORTED`; effects `fn` still attempts are refused by the guard.
 * DESIGN section 2. KS-4.9.4
 *
 * @param guard - the effect guard of this worker
 * @param step - the parent's step that spawns the child (stable across a resume)
 * @param fn - the child's work
 * @returns what `fn` returns
 * @throws {HaltedError} `KS_HALTED` (refused before `fn` ran) or `KS_ABORTED` (halted while it ran)
 * @throws {ValidationError} `KS_INVALID_INPUT` outside a run scope without `parent`, for a bad
 *   step, or a child deeper than 64 runs
 * @throws {KillSwitchError} `KS_RUN_CONFLICT` when the same child already runs in this process
 * @example
 * ```ts
 * await runInScope({ tenant: 'acme', runPath: ['run-42'] }, () =>
 *   Promise.all(topics.map((t, i) =>
 *     spawnChildRun(guard, `research-${i}`, (child) => research(t, child.signal)))));
 * ```
 */
export async function spawnChildRun<T>(
  guard: EffectGuard,
  step: string,
  fn: (child: ChildRun) => T | Promise<T>,
  options: SpawnChildRunOptions = {},
): Promise<T> {
  const parent: RunScope | undefined =
    options.parent !== undefined ? scopeOfLineage(options.parent) : currentRunScope();
  if (parent === undefined) {
    throw new ValidationError('spawn', [
      { path: [], message: 'must run inside a run scope (runInScope) or name options.parent' },
    ]);
  }
  if (typeof fn !== 'function') {
    throw new ValidationError('spawn', [{ path: ['fn'], message: 'must be a function' }]);
  }
  const capability = options.capability ?? SPAWN_CAPABILITY;
  const lineage = childLineage(parent.lineage, step);
  const childId = lineage.runPath[lineage.runPath.length - 1]!;
  const context: KillContext = {
    ...(lineage.tenant !== undefined ? { tenant: lineage.tenant } : {}),
    ...(lineage.feature !== undefined ? { feature: lineage.feature } : {}),
    runId: childId,
    runPath: lineage.runPath,
  };
  if (running.has(childId)) {
    throw new KillSwitchError(
      ErrorCode.RUN_CONFLICT,
      `child run ${childId} (step ${step} of run ${parent.runId}) is already running in this process`,
    );
  }
  running.add(childId);
  const controller = new AbortController();
  let halt: KillDecision | undefined;
  // Watch first, so a halt that lands between the check and `fn` is not missed.
  const unwatch = guard.watcher.watch(context, (d) => {
    halt ??= d;
    controller.abort(haltedErrorOf(ErrorCode.ABORTED, `child run ${childId}`, d));
  });
  try {
    // The child's context holds the whole path: one evaluation covers the child and every
    // ancestor. Done even when the spawn already landed (a resumed parent), since the guard
    // answers a landed key from the ledger without evaluating.
    const d = await guard.check({ ...context, capability });
    if (d.halted || halt !== undefined) {
      throw haltedErrorOf(ErrorCode.HALTED, `spawn of child run ${childId}`, halt ?? d);
    }
    await guard.run(
      {
        context: scopeContext(parent),
        runId: parent.runId,
        step: `spawn:${step}`,
        capability,
        // Spawning again is harmless: the child's id is the same and its effects are keyed by it.
        idempotent: true,
        result: { encode: () => childId, decode: () => childId },
      },
      async () => childId,
    );
    if (halt !== undefined) {
      throw haltedErrorOf(ErrorCode.HALTED, `spawn of child run ${childId}`, halt);
    }
    const child: ChildRun = {
      runId: childId,
      runPath: lineage.runPath,
      lineage,
      context,
      signal: controller.signal,
    };
    const work = runInScope(lineage, () => Promise.resolve().then(() => fn(child)));
    return await raceAbort(work, controller.signal);
  } finally {
    unwatch();
    running.delete(childId);
  }
}

function scopeOfLineage(l: Lineage): RunScope {
  const parsed = parseLineage(l);
  // runInScope validates and freezes; reading the scope back keeps one definition of a scope.
  return runInScope(parsed, () => currentRunScope()!);
}

/** Settles with `work`, or rejects with the signal's reason the moment it aborts. */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason as HaltedError);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as HaltedError);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
