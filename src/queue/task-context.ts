import { ValidationError } from '../errors.js';
import { lineageOfContext, type Lineage } from '../lineage/lineage.js';
import { normalizeSelector, runPathProblem, type KillContext } from '../model/selector.js';

/**
 * The context a queued task keeps: the four selector attributes in canonical order, plus the
 * run path when the task belongs to a child run (so a halt on any ancestor reaches it in the
 * queue). KS-7.4.1
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed run path (the producer is told;
 *   nothing is queued that would later fail closed for a reason nobody saw)
 */
export function taskContext(ctx: KillContext): KillContext {
  const base = normalizeSelector(ctx);
  if (ctx.runPath === undefined) return base;
  const problem = runPathProblem(ctx);
  if (problem !== undefined) {
    throw new ValidationError('task context', [{ path: ['runPath'], message: problem }]);
  }
  return Object.freeze({ ...base, runPath: Object.freeze([...ctx.runPath]) });
}

/**
 * The portable lineage of a task's context (what travels in job data as `lineage`), or undefined
 * when the task names no run or its ids are not lineage ids.
 */
export function taskLineage(ctx: KillContext): Lineage | undefined {
  if (ctx.runId === undefined && ctx.runPath === undefined) return undefined;
  try {
    return lineageOfContext(ctx);
  } catch (err) {
    if (err instanceof ValidationError) return undefined;
    throw err;
  }
}

/** A stable key of a context, run path included (one watch and one evaluation per key). */
export function contextKey(ctx: KillContext): string {
  const k = `${ctx.tenant ?? '\u0001'}\u0000${ctx.feature ?? '\u0001'}\u0000${ctx.runId ?? '\u0001'}\u0000${ctx.capability ?? '\u0001'}`;
  return ctx.runPath === undefined ? k : `${k}\u0000${ctx.runPath.join(',')}`;
}
