import { ErrorCode, HaltedError, InvalidOptionError } from '../../errors.js';
import {
  RUN_WITH_OPERATION,
  type EffectGuard,
  type EffectInfo,
  type ResultCodec,
} from '../../guard/effect-guard.js';
import { haltedErrorOf, type KillDecision } from '../../guard/kill-decision.js';
import type { Lineage } from '../../lineage/lineage.js';
import type { KillContext } from '../../model/selector.js';
import {
  currentRunScope,
  runInRunScope,
  runScopeOf,
  type RunScope,
} from '../../scope/run-scope.js';
import { spawnChildRun, type ChildRun } from '../../scope/spawn-child-run.js';
import { jsonCopy } from './json-copy.js';
import {
  CallSignal,
  mergeSignals,
  type MergedSignal,
  type SignalSource,
  type StopSource,
} from './merge-signals.js';

/** Options every adapter takes for one run of an agent. */
export interface AgentRunOptions {
  /**
   * The run's id (stable across a resume: the ledger keys derive from it). Inside a run scope
   * (`runInScope`, a child run's function) it defaults to the scope's run; a different id there
   * makes the run a child of the scope's run (its run path one deeper, tenant and feature
   * inherited), so a halt on any ancestor stops it. @default the run scope's run id (required
   * outside a run scope)
   */
  readonly runId?: string;
  /** The tenant the run acts for; a tenant halt stops it. @default the run scope's, else none */
  readonly tenant?: string;
  /** The feature the run belongs to; a feature halt stops it. @default the run scope's, else none */
  readonly feature?: string;
  /**
   * The capability a tool call uses, from the tool's name (e.g. to namespace tools of one
   * server as `crm.<name>`). @default the tool's name
   */
  readonly capability?: (toolName: string) => string;
  /** The capability a model call uses; halting it stops every run's model calls. @default 'llm' */
  readonly modelCapability?: string;
  /**
   * The caller's own signal: aborting it cancels the run as the framework's abort does (it is
   * not a halt, so the caller gets the framework's own error). @default none
   */
  readonly signal?: AbortSignal;
}

/**
 * The body of a guarded call: it should pass `call.signal` to every I/O call (or `call.link` a
 * controller it creates anyway), so the guard's halt, the run's stop and the framework's abort
 * all reach it.
 */
export type CallBody<T> = (call: CallSignal, info: { readonly key: string }) => Promise<T> | T;

/**
 * A result codec that stores a tool's JSON-serialisable output with `landed`, so a resumed run
 * that replays the same tool call gets the recorded output instead of dispatching it again.
 * An output that is not JSON is not recorded; a replay of it is refused as a duplicate.
 */
const JSON_RESULT: ResultCodec<unknown> = {
  // The JSON round trip's answer, copied without the text for plain data (jsonCopy).
  encode: (value) => (value === undefined ? undefined : jsonCopy(value)),
  decode: (stored) => stored,
};

/**
 * One run of an agent under the kill switch: the core every framework adapter shares. It holds the
 * run's kill context and its own signal, and turns each tool call into a guarded effect and each
 * model call into a checked, abortable call. DESIGN section 6: a halt stops the whole run, so
 * any refused or aborted effect aborts the run's signal, and the halt is read from that signal,
 * never from the error a framework rewrote on the way. KS-14.1.2
 */
export class AgentRun implements StopSource {
  /** The kill attributes of the run (tenant, feature, runId, and runPath for a child run). */
  readonly context: KillContext;
  /** The run's lineage: what crosses to another process with its work (MCP `_meta`, headers). */
  readonly lineage: Lineage;
  readonly #scope: RunScope;
  readonly #guard: EffectGuard;
  readonly #options: AgentRunOptions;
  /** Created on first use: a run made per hook call (LangGraph's middleware alone) may never need it. */
  #ctl: AbortController | undefined;
  /** The halt that stopped the run before anyone asked for its signal. */
  #stoppedBy: HaltedError | undefined;
  readonly #capability: (toolName: string) => string;
  readonly #modelCapability: string;
  readonly #callerSignal: AbortSignal | undefined;
  /** Open calls of `settle`; the run watches its context while at least one is open. */
  #open = 0;
  #unwatch: (() => void) | undefined;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option */
  constructor(guard: EffectGuard, options: AgentRunOptions) {
    if (guard === null || typeof guard !== 'object' || typeof guard.run !== 'function')
      throw new InvalidOptionError('guard', 'an EffectGuard', guard);
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', 'an object', options);
    for (const k of ['runId', 'tenant', 'feature', 'modelCapability'] as const) {
      const v = options[k];
      if (v !== undefined && (typeof v !== 'string' || v.length === 0))
        throw new InvalidOptionError(k, 'a non-empty string', v);
    }
    if (options.capability !== undefined && typeof options.capability !== 'function')
      throw new InvalidOptionError('capability', 'a function of the tool name', options.capability);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
      throw new InvalidOptionError('signal', 'an AbortSignal', options.signal);
    this.#guard = guard;
    this.#options = options;
    this.#scope = scopeOf(lineageOf(options, currentRunScope()));
    const { tenant, feature, runId, runPath } = this.#scope;
    this.lineage = this.#scope.lineage;
    this.context = Object.freeze({
      ...(tenant !== undefined ? { tenant } : {}),
      ...(feature !== undefined ? { feature } : {}),
      runId,
      // Always the (frozen) path: the guard then takes the context as it is inside the run's
      // scope, and the flip state answers a frozen path from its cache.
      runPath,
    });
    this.#capability = options.capability ?? ((name) => name);
    this.#modelCapability = options.modelCapability ?? 'llm';
    this.#callerSignal = options.signal;
  }

  /** The run's id. */
  get runId(): string {
    return this.#scope.runId;
  }

  /**
   * Runs `fn` inside this run's scope, so everything it guards, retries, schedules, enqueues or
   * spawns carries the run's lineage. KS-14.1.6
   */
  inScope<T>(fn: () => T): T {
    return runInRunScope(this.#scope, fn);
  }

  /**
   * Runs a child of this run (a sub-agent, an agent used as a tool, a fanned-out task) through
   * `spawnChildRun`: the spawn is a guarded effect of this run (refused while this run or any
   * ancestor is halted), the child's id derives from this run's id and `step` (a resumed run
   * derives the same child), and `fn` gets an {@link AgentRun} of the child, in the child's scope,
   * whose signal also follows the child's (a halt on this run or any ancestor aborts it).
   * KS-14.1.6
   *
   * @param step - the step of this run that spawns the child (e.g. the tool-call id)
   * @param fn - the child's work, given the child's run
   * @throws {HaltedError} `KS_HALTED` when the spawn is refused, `KS_ABORTED` when the child was
   *   halted while it ran
   */
  child<T>(step: string, fn: (run: AgentRun, child: ChildRun) => Promise<T> | T): Promise<T> {
    const stopped = this.halted;
    if (stopped !== undefined) return Promise.reject(stopped);
    const { runId: _own, signal: _signal, tenant: _t, feature: _f, ...rest } = this.#options;
    return spawnChildRun(
      this.#guard,
      step,
      (child) => fn(new AgentRun(this.#guard, { ...rest, signal: child.signal }), child),
      { parent: this.lineage },
    );
  }

  /**
   * The run's own signal: it aborts, with a {@link HaltedError} as its reason, when a halt
   * matches the run (while a `settle` is open) or any of its effects is refused or aborted.
   */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get #controller(): AbortController {
    if (this.#ctl === undefined) {
      this.#ctl = new AbortController();
      if (this.#stoppedBy !== undefined) this.#ctl.abort(this.#stoppedBy);
    }
    return this.#ctl;
  }

  /** The halt that stopped the run, if any. */
  get halted(): HaltedError | undefined {
    if (this.#ctl === undefined) return this.#stoppedBy;
    return this.#ctl.signal.aborted ? (this.#ctl.signal.reason as HaltedError) : undefined;
  }

  /** The signal to hand the framework: the run's own, and the caller's if given. */
  get frameworkSignal(): AbortSignal {
    return this.#callerSignal === undefined
      ? this.#controller.signal
      : AbortSignal.any([this.#controller.signal, this.#callerSignal]);
  }

  /** Stops the run: aborts its signal with `err` (the first stop wins). */
  stop(err: HaltedError): void {
    if (this.#ctl === undefined) this.#stoppedBy ??= err;
    else if (!this.#ctl.signal.aborted) this.#ctl.abort(err);
    const listeners = this.#stopListeners;
    if (listeners !== undefined) {
      this.#stopListeners = undefined;
      const stop = { error: this.halted };
      for (const l of listeners) l(stop);
    }
    this.#continues?.stop(err);
  }

  /** The run's stop as a {@link StopSource}: set once it is stopped. */
  get stopped(): { readonly error: unknown } | undefined {
    const h = this.halted;
    return h === undefined ? undefined : { error: h };
  }

  /**
   * Calls `listener` synchronously when the run stops (at once when it has), as an `abort`
   * listener on {@link AgentRun.signal} would be, without an `EventTarget` listener on a signal
   * that lives as long as the run: each tool call links its own signal to the run's stop, and
   * adding and removing a listener on the run's signal per call cost more than the rest of the
   * link (the {@link StopSource} a tool call's {@link CallSignal} follows).
   *
   * @returns a function that removes the listener
   */
  onStop(listener: (stop: { readonly error: unknown }) => void): () => void {
    const h = this.halted;
    if (h !== undefined) {
      listener({ error: h });
      return NO_OP;
    }
    const listeners = (this.#stopListeners ??= []);
    listeners.push(listener);
    return () => {
      if (this.#stopListeners !== listeners) return;
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
    };
  }

  /** Listeners of {@link AgentRun.onStop}; dropped when the run stops. */
  #stopListeners: ((stop: { readonly error: unknown }) => void)[] | undefined;

  /** The run this one continues (a handoff's run continues the run that handed off). */
  #continues: AgentRun | undefined;

  /**
   * A child run that continues this run's framework call rather than running one of its own (an
   * OpenAI Agents handoff: the same runner goes on with another agent): its effects are keyed and
   * evaluated under the child's id and path, and it shares the stop both ways (a halt of the
   * child ends this run's call; this run's stop refuses the child's next effect). The spawn is
   * guarded like {@link AgentRun.child}. KS-14.1.6
   *
   * @param step - the step of this run that spawns the child (e.g. `handoff:billing`)
   * @throws {HaltedError} `KS_HALTED` when the spawn is refused (this run is stopped with it)
   */
  async continuation(step: string): Promise<AgentRun> {
    const stopped = this.halted;
    if (stopped !== undefined) throw stopped;
    const { signal: _s, tenant: _t, feature: _f, ...rest } = this.#options;
    let next: AgentRun | undefined;
    try {
      await spawnChildRun(
        this.#guard,
        step,
        () => {
          next = new AgentRun(this.#guard, { ...rest, runId: currentRunScope()!.runId });
        },
        { parent: this.lineage },
      );
    } catch (err) {
      if (err instanceof HaltedError) this.stop(err);
      throw this.halted ?? err;
    }
    const child = next!;
    child.#continues = this;
    const mine = this.#controller.signal;
    if (mine.aborted) child.stop(mine.reason as HaltedError);
    else
      mine.addEventListener('abort', () => child.stop(mine.reason as HaltedError), { once: true });
    return child;
  }

  /**
   * Runs one tool call as a guarded effect: capability from the tool's name, key from the run and
   * the framework's tool-call id, the body's signal aborted by a matching halt or a stop of the
   * run. A refusal or abort stops the run before the error reaches the framework. KS-14.1.1,
   * KS-14.1.3
   *
   * @param toolName - the tool's name (the capability, through the `capability` option)
   * @param callId - the framework's tool-call id (the step)
   * @param body - the tool's own call
   * @param frameworkSignal - the signal the framework gave the tool, if any
   * @param result - how the tool's output is recorded and replayed @default JSON as is
   * @throws {HaltedError} when the run is stopped, or the guard refuses or aborts the call
   */
  async tool<T>(
    toolName: string,
    callId: string,
    body: CallBody<T>,
    frameworkSignal?: AbortSignal,
    result: ResultCodec<T> = JSON_RESULT as ResultCodec<T>,
  ): Promise<T> {
    const stopped = this.halted;
    if (stopped !== undefined) throw stopped;
    const capability = this.#capability(toolName);
    const effect = {
      context: this.context,
      runId: this.runId,
      step: callId,
      capability,
      result,
    };
    // Merged only if the body reads it (CallSignal): most no-op-sized calls never do. Given the
    // guard's operation rather than its signal, a call that never reads a signal creates none.
    // A chain, not an async function: with AsyncLocalStorage active each await costs promises
    // the async hooks visit, on every tool call.
    const guarded = (source: SignalSource, info: EffectInfo): Promise<T> => {
      const call = new CallSignal(source, this, frameworkSignal);
      let running: Promise<T>;
      try {
        running = Promise.resolve(runInRunScope(this.#scope, () => body(call, info)));
      } catch (err) {
        call.dispose();
        return Promise.reject(err as Error);
      }
      return running.then(
        (value) => {
          call.dispose();
          return value;
        },
        (err: unknown) => {
          call.dispose();
          throw err;
        },
      );
    };
    const guard = this.#guard;
    try {
      return typeof guard[RUN_WITH_OPERATION] === 'function'
        ? await guard[RUN_WITH_OPERATION](effect, guarded)
        : await guard.run(effect, guarded);
    } catch (err) {
      // The guard's own error, before any framework sees it: a refusal or abort stops the run.
      if (err instanceof HaltedError) this.stop(err);
      throw this.halted ?? err;
    }
  }

  /**
   * Runs one model call: evaluated before it starts (capability `modelCapability`) and aborted the
   * moment a matching halt arrives or the run stops. Model calls are not side effects, so nothing
   * is recorded in the ledger. KS-14.1.4
   *
   * @param call - the model call; it must pass the signal to the provider
   * @param frameworkSignal - the signal the framework gave the model call, if any
   * @returns the call's result, and a function to call when the caller is done with it (a stream
   *   keeps watching until then)
   * @throws {HaltedError} when the run is stopped or the model capability is halted
   */
  async model<T>(
    call: (signal: AbortSignal) => PromiseLike<T>,
    frameworkSignal?: AbortSignal,
  ): Promise<{ readonly value: T; readonly signal: AbortSignal; readonly done: () => void }> {
    const stopped = this.halted;
    if (stopped !== undefined) throw stopped;
    const ctx: KillContext = { ...this.context, capability: this.#modelCapability };
    const controller = new AbortController();
    const what = `model call of run ${this.runId}`;
    let merged: MergedSignal | undefined;
    // Watch before the check, so a halt landing between the two is not missed.
    const unwatch = this.#guard.watcher.watch(ctx, (d) => {
      const err = haltError(ErrorCode.ABORTED, what, d);
      this.stop(err);
      controller.abort(err);
    });
    try {
      const decision = await this.#guard.check(ctx);
      if (decision.halted) {
        const err = haltError(ErrorCode.HALTED, what, decision);
        this.stop(err);
        throw err;
      }
      if (this.halted !== undefined) throw this.halted;
      merged = mergeSignals(controller.signal, this.#controller.signal, frameworkSignal);
      const signal = merged.signal;
      const value = await raceSignal(Promise.resolve(call(signal)), signal);
      const m = merged;
      return {
        value,
        signal,
        done: () => {
          unwatch();
          m.dispose();
        },
      };
    } catch (err) {
      unwatch();
      merged?.dispose();
      throw this.halted ?? err;
    }
  }

  /**
   * Runs the framework's call for this run and settles it by the run's own signal: while it runs,
   * a halt matching the run aborts the run's signal (the framework stops at once); when the run
   * was stopped, the caller receives the {@link HaltedError} naming the flip, whatever the
   * framework made of it (a rewritten error, a stream that ended silently, a result), at once,
   * even when the call ignores the signal (it runs on; its outcome is dropped). KS-14.1.2
   *
   * @param call - calls the framework with the run's signal
   * @throws {HaltedError} when the run was stopped before the call settled
   */
  async settle<T>(call: (signal: AbortSignal) => Promise<T> | T): Promise<T> {
    const checked = this.#enter();
    try {
      // KS-14.5.3 a run started (or a thread resumed) under a halt never reaches the framework:
      // the halt is evaluated before its first step, whatever that step is.
      if (checked !== undefined) await checked;
      const stopped = this.halted;
      if (stopped !== undefined) throw stopped;
      let value: T;
      const signal = this.frameworkSignal;
      // KS-14.1.2 freed the moment the run stops, as a tool's caller is (KS-14.1.3, KS-4.2.4):
      // a framework call that ignores its signal runs on, but its caller has the HaltedError.
      let onAbort: (() => void) | undefined;
      const stopping = new Promise<never>((_, reject) => {
        onAbort = () => {
          const h = this.halted;
          if (h !== undefined) reject(h);
        };
        signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        let running: Promise<T>;
        try {
          running = Promise.resolve(runInRunScope(this.#scope, () => call(signal)));
        } catch (err) {
          running = Promise.reject(err as Error);
        }
        value = (await Promise.race([running, stopping])) as T;
      } catch (err) {
        throw this.halted ?? err;
      } finally {
        signal.removeEventListener('abort', onAbort!);
      }
      const late = this.halted;
      if (late !== undefined) throw late;
      return value;
    } finally {
      this.#leave();
    }
  }

  /**
   * Opens a watch on the run's context; {@link AgentRun.settle} pairs it with `#leave`.
   *
   * @returns for the first open, the evaluation of a halt that arrived before the watch
   */
  #enter(): Promise<void> | undefined {
    if (this.#open++ > 0) return undefined;
    const what = `run ${this.runId}`;
    this.#unwatch = this.#guard.watcher.watch(this.context, (d) =>
      this.stop(haltError(ErrorCode.ABORTED, what, d)),
    );
    // A halt that arrived before the watch: evaluate once, so the run does not start under it.
    return this.#guard.check(this.context).then((d) => {
      if (d.halted && this.#open > 0) this.stop(haltError(ErrorCode.HALTED, what, d));
    });
  }

  #leave(): void {
    if (--this.#open > 0) return;
    this.#unwatch?.();
    this.#unwatch = undefined;
  }
}

const NO_OP = (): void => undefined;

/** Validated run scopes by lineage (immutable, so shared); cleared when it grows past its bound. */
const scopes = new Map<string, RunScope>();
const MAX_CACHED_SCOPES = 4096;

/**
 * The run scope of a lineage, validated once per distinct lineage: a LangGraph middleware without
 * `ks.invoke` builds a run per hook call, and validating the lineage each time cost more than the
 * guard itself.
 */
function scopeOf(l: Lineage): RunScope {
  // JSON: unambiguous for any input, so an invalid id never maps onto a valid cached lineage.
  const key = JSON.stringify([l.tenant ?? null, l.feature ?? null, l.runPath]);
  let scope = scopes.get(key);
  if (scope === undefined) {
    scope = runScopeOf(l);
    if (scopes.size >= MAX_CACHED_SCOPES) scopes.clear();
    scopes.set(key, scope);
  }
  return scope;
}

/**
 * The lineage of a run from its options and the run scope it is created in: outside a scope a
 * root run of `runId`; inside one the scope's run (no `runId`, or the scope's), or a child of it
 * (another `runId`). Tenant and feature come from the scope and may not contradict it (a run
 * inside a tenant's scope cannot escape that tenant's halts).
 */
function lineageOf(options: AgentRunOptions, scope: RunScope | undefined): Lineage {
  const { runId, tenant, feature } = options;
  if (scope === undefined) {
    if (runId === undefined)
      throw new InvalidOptionError(
        'runId',
        'a non-empty string (or create the run inside runInScope or a child run)',
        runId,
      );
    return {
      ...(tenant !== undefined ? { tenant } : {}),
      ...(feature !== undefined ? { feature } : {}),
      runPath: [runId],
    };
  }
  for (const [k, mine, theirs] of [
    ['tenant', tenant, scope.tenant],
    ['feature', feature, scope.feature],
  ] as const) {
    if (mine !== undefined && theirs !== undefined && mine !== theirs)
      throw new InvalidOptionError(k, `the run scope's ${k} ${theirs} (or none)`, mine);
  }
  const t = scope.tenant ?? tenant;
  const f = scope.feature ?? feature;
  return {
    ...(t !== undefined ? { tenant: t } : {}),
    ...(f !== undefined ? { feature: f } : {}),
    runPath:
      runId === undefined || runId === scope.runId ? scope.runPath : [...scope.runPath, runId],
  };
}

/** Rejects with the signal's reason the moment it aborts, even if the call ignores it. */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason as unknown);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as unknown);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
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

/**
 * A {@link HaltedError} for something the guard did not run itself (a run, a model call), worded
 * like the guard's own refusals.
 */
export function haltError(
  code: typeof ErrorCode.HALTED | typeof ErrorCode.ABORTED,
  what: string,
  d: KillDecision,
): HaltedError {
  return haltedErrorOf(code, what, d);
}
