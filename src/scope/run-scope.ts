import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { ValidationError } from '../errors.js';
import { MAX_RUN_DEPTH, parseLineage, type Lineage } from '../lineage/lineage.js';
import type { KillContext } from '../model/selector.js';
import { isSafeText } from '../protocol/text.js';

/**
 * The run a piece of code belongs to: its tenant, feature and run path (root first, its own id
 * last). Held in an `AsyncLocalStorage`, so every guarded effect, retry, timer and enqueue started
 * inside inherits it without passing it by hand (DESIGN section 2). KS-4.9.1
 */
export interface RunScope {
  readonly tenant?: string;
  readonly feature?: string;
  /** This run's id: the last element of {@link RunScope.runPath}. */
  readonly runId: string;
  /** Run ids from the root run to this one. */
  readonly runPath: readonly string[];
  /** The same, as the portable token that crosses processes (queue job data, headers, `_meta`). */
  readonly lineage: Lineage;
}

// `null` marks code explicitly run outside any scope (a queue task without lineage, started from
// inside some other run's scope): it must not inherit that run.
const storage = new AsyncLocalStorage<RunScope | null>();
/** Scopes built (validated and frozen) by {@link runScopeOf}; only these may be entered as they are. */
const built = new WeakSet<RunScope>();

/**
 * The run scope of a lineage, validated and frozen once, for code that enters the same scope on
 * every call (an adapter's tool calls) without validating the lineage each time.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed lineage or an empty run path
 */
export function runScopeOf(lineage: Lineage): RunScope {
  return scopeOf(lineage);
}

/**
 * Runs `fn` inside a scope built by {@link runScopeOf} (no validation per call; a no-op when the
 * caller is in that scope already).
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a scope not built by {@link runScopeOf}
 */
export function runInRunScope<T>(scope: RunScope, fn: () => T): T {
  if (storage.getStore() === scope) return fn();
  if (!built.has(scope)) {
    throw new ValidationError('run scope', [
      { path: [], message: 'must be built by runScopeOf (or use runInScope with a lineage)' },
    ]);
  }
  return storage.run(scope, fn);
}

function scopeOf(lineage: Lineage): RunScope {
  const l = parseLineage(lineage);
  const n = l.runPath.length;
  if (n === 0) {
    throw new ValidationError('run scope', [
      { path: ['runPath'], message: 'must name at least the run itself' },
    ]);
  }
  const scope: RunScope = Object.freeze({
    ...(l.tenant !== undefined ? { tenant: l.tenant } : {}),
    ...(l.feature !== undefined ? { feature: l.feature } : {}),
    runId: l.runPath[n - 1]!,
    runPath: l.runPath,
    lineage: l,
  });
  built.add(scope);
  return scope;
}

/**
 * Runs `fn` inside a run scope: a root run (`{ runPath: ['r1'] }`) or a run whose lineage arrived
 * from another process (queue job data, headers, MCP `_meta`).
 *
 * @param lineage - tenant, feature and the run path (at least the run's own id)
 * @returns what `fn` returns
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed lineage or an empty run path
 * @example runInScope({ tenant: 'acme', runPath: ['run-42'] }, () => agent.run(input))
 */
export function runInScope<T>(lineage: Lineage, fn: () => T): T {
  return storage.run(scopeOf(lineage), fn);
}

/** Runs `fn` outside any run scope (nothing inside inherits the caller's run). */
export function runOutsideScope<T>(fn: () => T): T {
  return storage.run(null, fn);
}

/** The run scope the caller is in, or undefined outside any. */
export function currentRunScope(): RunScope | undefined {
  return storage.getStore() ?? undefined;
}

/**
 * A context completed from the current run scope: `tenant`, `feature`, `runId` and `runPath`
 * come from the scope when the context does not name them. A context that names its own
 * `runPath` is taken as it is. Outside a scope the context is returned unchanged. KS-4.9.2
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` when the context names another run, tenant or
 *   feature than the scope (an effect of another run inside this one would escape this run's
 *   halts: give it lineage with {@link spawnChildRun})
 */
export function inheritContext<C extends KillContext>(ctx: C): C {
  const s = storage.getStore();
  if (s === undefined || s === null || ctx.runPath !== undefined) return ctx;
  const issues: { path: string[]; message: string }[] = [];
  if (ctx.runId !== undefined && ctx.runId !== s.runId) {
    issues.push({
      path: ['runId'],
      message: `names run ${ctx.runId} inside the scope of run ${s.runId} (spawn a child run to give it lineage)`,
    });
  }
  for (const k of ['tenant', 'feature'] as const) {
    const mine = ctx[k];
    const theirs = s[k];
    if (mine !== undefined && theirs !== undefined && mine !== theirs) {
      issues.push({ path: [k], message: `is ${mine}, the run scope's is ${theirs}` });
    }
  }
  if (issues.length > 0) throw new ValidationError('context', issues);
  return {
    ...ctx,
    ...(s.tenant !== undefined ? { tenant: s.tenant } : {}),
    ...(s.feature !== undefined ? { feature: s.feature } : {}),
    runId: s.runId,
    runPath: s.runPath,
  };
}

/** The characters a step keeps in a child run id; the rest become `-`. */
const NOT_ID = /[^A-Za-z0-9._:@+=-]+/g;

/**
 * The run id of a parent's child for a step: deterministic (a resumed parent derives the same
 * children), unique per (parent, step) with 96 bits of SHA-256, readable (the step leads), and
 * always a valid lineage id (at most 73 characters). KS-4.9.3
 *
 * @param parentRunId - the parent run's id
 * @param step - the step of the parent that spawns the child (e.g. `research-0`)
 * @throws {ValidationError} `KS_INVALID_INPUT` for an empty step, one over 256 characters or with
 *   control characters
 * @example childRunId('run-42', 'research-0') // 'research-0.5f1c…' (24 hex digits)
 */
export function childRunId(parentRunId: string, step: string): string {
  if (!isSafeText(step, 256)) {
    throw new ValidationError('step', [
      { path: [], message: 'must be 1 to 256 characters without control characters' },
    ]);
  }
  const hash = createHash('sha256').update(`${parentRunId}\n${step}`).digest('hex').slice(0, 24);
  const slug = step.replace(NOT_ID, '-').slice(0, 48) || 'run';
  return `${slug}.${hash}`;
}

/** The lineage of a parent's child: the parent's tenant and feature, the path one deeper. */
export function childLineage(parent: Lineage, step: string): Lineage {
  const n = parent.runPath.length;
  if (n === 0) {
    throw new ValidationError('run scope', [
      { path: ['runPath'], message: 'a child needs a parent run' },
    ]);
  }
  if (n >= MAX_RUN_DEPTH) {
    throw new ValidationError('run scope', [
      {
        path: ['runPath'],
        message: `a child of run ${parent.runPath[n - 1]} would be ${n + 1} runs deep (at most ${MAX_RUN_DEPTH})`,
      },
    ]);
  }
  return parseLineage({
    ...(parent.tenant !== undefined ? { tenant: parent.tenant } : {}),
    ...(parent.feature !== undefined ? { feature: parent.feature } : {}),
    runPath: [...parent.runPath, childRunId(parent.runPath[n - 1]!, step)],
  });
}

/** The evaluation context of a scope: tenant, feature, runId and runPath. */
export function scopeContext(scope: RunScope): KillContext {
  return {
    ...(scope.tenant !== undefined ? { tenant: scope.tenant } : {}),
    ...(scope.feature !== undefined ? { feature: scope.feature } : {}),
    runId: scope.runId,
    runPath: scope.runPath,
  };
}
