import { systemClock, type Clock } from '../internal/clock.js';
import {
  ErrorCode,
  HaltedError,
  InvalidOptionError,
  KillSwitchError,
  ValidationError,
} from '../errors.js';
import { DuplicateEffectError, DuplicateState } from '../guard/duplicate-effect-error.js';
import type { EffectBody, EffectGuard } from '../guard/effect-guard.js';
import { haltedErrorOf, type KillDecision } from '../guard/kill-decision.js';
import { effectKey, type Compensation } from '../ledger/side-effect-ledger.js';
import {
  formatSelector,
  normalizeSelector,
  runPathProblem,
  type KillContext,
} from '../model/selector.js';
import { taskLineage } from '../queue/task-context.js';
import {
  currentRunScope,
  inheritContext,
  runInScope,
  runOutsideScope,
} from '../scope/run-scope.js';
import type { RunJournal } from './run-journal.js';
import {
  RunStatus,
  type RunEndStatus,
  type RunEndedRecord,
  type RunRecord,
  type RunState,
} from './run-record.js';

/** How a step's effect is described to the guard. */
export interface StepOptions {
  /** The capability the step's effect uses, e.g. `payments.refund`. */
  readonly capability: string;
  /** How to undo it, stored with the intent for the recovery report. KS-4.4.6 */
  readonly compensation?: Compensation;
  /**
   * The target deduplicates by the key the body receives, so a step left in doubt by a dead
   * worker may be dispatched again with the same key. @default false (the run stops in doubt)
   */
  readonly idempotent?: boolean;
}

/** What a run function gets: its id, input and context, and `step` to run each effect. */
export interface RunHandle<I = unknown> {
  readonly runId: string;
  readonly input: I;
  /** The run's kill context (tenant, feature, runId). */
  readonly context: KillContext;
  /** 1 on the first execution, 2 on the first resume, ... */
  readonly execution: number;
  /**
   * Runs one effect of the run through the guard, or returns its recorded result when an earlier
   * execution already landed it (from the journal, or from the ledger when the worker died
   * between the two). Step names must be unique within a run and the same on every execution.
   * KS-10.2.3
   *
   * @param name - the step's name; with the run id it forms the idempotency key
   * @param options - capability, compensation, idempotent
   * @param body - the effect; results must be JSON values (they are recorded and replayed)
   * @throws {HaltedError} `KS_HALTED` / `KS_ABORTED`; {@link DuplicateEffectError} `KS_DUPLICATE_EFFECT`
   *   (in doubt); {@link KillSwitchError} `KS_RUN_CONFLICT` for a step name used twice
   */
  step<T>(name: string, options: StepOptions, body: EffectBody<T>): Promise<T>;
}

/** The body of a durable run. It is executed again from the top on resume: keep it deterministic. */
export type RunFunction<I, R> = (run: RunHandle<I>) => Promise<R>;

/** What a new run is. */
export interface RunSpec<I> {
  readonly runId: string;
  /**
   * The run's kill attributes besides `runId`: tenant, feature, and for a child run its
   * `runPath` (root first, ending with `runId`; e.g. `child.runPath` from `spawnChildRun`).
   * Inside a run scope whose run is this one, they default to the scope's. KS-10.1.7
   */
  readonly context?: {
    readonly tenant?: string;
    readonly feature?: string;
    readonly runPath?: readonly string[];
  };
  /** The run's input; recorded in the journal so another worker can resume it (JSON). */
  readonly input?: I;
}

/** Options of {@link DurableRunner}. */
export interface DurableRunnerOptions {
  /** The guard every step goes through; its ledger is what makes a repeat impossible. */
  readonly guard: EffectGuard;
  /** Where progress is recorded (shared by the workers that may resume a run). */
  readonly journal: RunJournal;
  /** This worker's id, written on every record. */
  readonly workerId: string;
  /** Clock: its wall reading stamps record times. @default systemClock */
  readonly clock?: Clock;
}

/**
 * Executes durable runs: each run's steps go through the {@link EffectGuard} (so its ledger keys
 * make a repeated effect impossible) and each landed step is recorded in a {@link RunJournal}, so a
 * run whose worker died is resumed, on any worker, from where it stopped. KS-10.2
 *
 * Every execution (start and resume) first evaluates the kill switch for the run's context and
 * refuses while a matching halt is active, before the run function is called: the halt is durable
 * state in the flip log, not state of the dead worker. KS-10.2.2
 *
 * @example
 * ```ts
 * const runner = new DurableRunner({ guard, journal: new FileRunJournal({ path }), workerId: 'w2' });
 * const loop: RunFunction<{ to: string }, void> = async (run) => {
 *   const draft = await run.step('draft', { capability: 'llm.generate' }, (signal) => llm(signal));
 *   await run.step('send', { capability: 'email.send', compensation: { action: 'email.recall' } },
 *     (signal, { key }) => send(run.input.to, draft, { signal, idempotencyKey: key }));
 * };
 * await runner.start({ runId: 'run-1', context: { tenant: 'acme' }, input: { to } }, loop);
 * // after a crash, on another worker:
 * await runner.resume('run-1', loop);
 * ```
 */
export class DurableRunner {
  readonly workerId: string;
  readonly #guard: EffectGuard;
  readonly #journal: RunJournal;
  readonly #clock: Clock;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: DurableRunnerOptions) {
    const { guard, journal, workerId } = options ?? {};
    if (guard === null || typeof guard !== 'object' || typeof guard.run !== 'function')
      throw new InvalidOptionError('guard', 'an EffectGuard', guard);
    if (journal === null || typeof journal !== 'object' || typeof journal.append !== 'function')
      throw new InvalidOptionError('journal', 'a RunJournal', journal);
    if (typeof workerId !== 'string' || workerId.length === 0 || workerId.length > 1024)
      throw new InvalidOptionError('workerId', 'a non-empty string', workerId);
    this.#guard = guard;
    this.#journal = journal;
    this.workerId = workerId;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Starts a new run and executes it.
   *
   * @returns the run function's result
   * @throws {KillSwitchError} `KS_RUN_CONFLICT` when the run id is already in the journal
   * @throws {HaltedError} `KS_HALTED` when a halt matches the run before its first effect
   *   (recorded as `refused`; the run function is not called) or refuses a step; `KS_ABORTED`
   * @throws whatever the run function throws (recorded as `failed`)
   */
  async start<I, R>(spec: RunSpec<I>, fn: RunFunction<I, R>): Promise<R> {
    if (spec === null || typeof spec !== 'object' || typeof spec.runId !== 'string')
      throw new InvalidOptionError('spec.runId', 'a non-empty string', spec?.runId);
    effectKey(spec.runId, 'start'); // validates the id the same way the keys will
    if ((await this.#journal.run(spec.runId)) !== undefined) {
      throw new KillSwitchError(
        ErrorCode.RUN_CONFLICT,
        `run ${spec.runId} already exists in the journal; resume it instead`,
      );
    }
    const scope = currentRunScope();
    const given =
      scope !== undefined && scope.runId === spec.runId && spec.context?.runPath === undefined
        ? inheritContext({ ...spec.context, runId: spec.runId })
        : spec.context;
    const context: { tenant?: string; feature?: string; runPath?: readonly string[] } = {};
    if (given?.tenant !== undefined) context.tenant = given.tenant;
    if (given?.feature !== undefined) context.feature = given.feature;
    if (given?.runPath !== undefined) {
      // KS-10.1.7 a malformed path is refused before anything is journaled.
      const problem = runPathProblem({ runPath: given.runPath, runId: spec.runId });
      if (problem !== undefined) {
        throw new ValidationError('run spec', [{ path: ['context', 'runPath'], message: problem }]);
      }
      if (given.runPath.length > 1) context.runPath = [...given.runPath];
    }
    await this.#journal.append({
      type: 'started',
      runId: spec.runId,
      at: this.#at(),
      workerId: this.workerId,
      context,
      ...(spec.input !== undefined ? { input: spec.input } : {}),
    });
    const state = await this.#journal.run(spec.runId);
    if (state === undefined) throw conflict(`run ${spec.runId} vanished from the journal`);
    return this.#execute(state, fn);
  }

  /**
   * Executes an existing run again (after its worker died, after a halt was lifted, on any
   * worker): refuses while halted, then continues from the journal; no effect is repeated.
   * A completed run is not executed again: its recorded output is returned. KS-10.2.3
   *
   * @throws {KillSwitchError} `KS_RUN_CONFLICT` for an unknown run; `KS_STORE_UNAVAILABLE` when
   *   another live worker holds the journal
   * @throws {HaltedError} `KS_HALTED` while a halt matches the run (recorded as `refused`)
   */
  async resume<I, R>(runId: string, fn: RunFunction<I, R>): Promise<R> {
    // Become the journal's writer first, so the state read below includes what the dead worker
    // wrote last, and a live worker still executing the run refuses us (its lock).
    const acquire = (this.#journal as { acquire?: () => Promise<void> }).acquire;
    if (typeof acquire === 'function') await acquire.call(this.#journal);
    const before = await this.#journal.run(runId);
    if (before === undefined) throw conflict(`run ${runId} is not in the journal; start it`);
    if (before.status === RunStatus.COMPLETED) return before.output as R;
    await this.#journal.append({
      type: 'resumed',
      runId,
      at: this.#at(),
      workerId: this.workerId,
    });
    const state = await this.#journal.run(runId);
    if (state === undefined) throw conflict(`run ${runId} vanished from the journal`);
    return this.#execute(state, fn);
  }

  /** The run's state as the journal has it (undefined when unknown). */
  state(runId: string): Promise<RunState | undefined> {
    return this.#journal.run(runId);
  }

  async #execute<I, R>(state: RunState, fn: RunFunction<I, R>): Promise<R> {
    const runId = state.runId;
    const context: KillContext = { ...state.context, runId };
    // KS-10.2.2 the halt is checked before anything of the run executes.
    const decision = await this.#guard.check(context);
    if (decision.halted) {
      const err = refusedError(runId, context, decision);
      await this.#end(runId, RunStatus.REFUSED, {
        ...(decision.flip !== undefined ? { flipSeq: decision.flip.seq } : {}),
        code: err.code,
        detail: err.message,
      });
      throw err;
    }
    const used = new Set<string>();
    const landed = new Map(Object.entries(state.steps));
    let current: string | undefined;
    const handle: RunHandle<I> = {
      runId,
      input: state.input as I,
      context,
      execution: state.executions,
      step: async <T>(name: string, options: StepOptions, body: EffectBody<T>): Promise<T> => {
        if (typeof name !== 'string' || name.length === 0)
          throw conflict(`run ${runId}: a step needs a non-empty name`);
        // KS-10.2.6 one name, one key: a reused name would collide with the first one's key.
        if (used.has(name)) throw conflict(`run ${runId}: step '${name}' used twice`);
        used.add(name);
        const recorded = landed.get(name);
        // KS-10.2.3 landed in an earlier execution: return its result, dispatch nothing.
        if (recorded !== undefined) return recorded.result as T;
        current = name;
        const key = effectKey(runId, name);
        let fromLedger = false;
        const value = await this.#guard.run<T>(
          {
            context,
            runId,
            step: name,
            capability: options.capability,
            key,
            ...(options.compensation !== undefined ? { compensation: options.compensation } : {}),
            ...(options.idempotent !== undefined ? { idempotent: options.idempotent } : {}),
            // Wrapped, so a step that returns nothing still records a result and replays.
            result: {
              encode: (v: T) => ({ v: v === undefined ? null : v, u: v === undefined }),
              decode: (s: unknown) => {
                fromLedger = true;
                const r = s as { v?: unknown; u?: boolean } | null;
                return (r?.u === true ? undefined : r?.v) as T;
              },
            },
          },
          body,
        );
        await this.#journal.append({
          type: 'step',
          runId,
          at: this.#at(),
          workerId: this.workerId,
          step: name,
          key,
          ...(value !== undefined ? { result: value } : {}),
          ...(fromLedger ? { fromLedger } : {}),
        });
        landed.set(name, {
          key,
          ...(value !== undefined ? { result: value } : {}),
          at: this.#at(),
          workerId: this.workerId,
        });
        current = undefined;
        return value;
      },
    };
    let output: R;
    try {
      // KS-10.1.7 the run function runs in the run's own scope: its steps, spawns, retries and
      // enqueues carry its lineage, whatever scope the caller was in.
      const lineage = taskLineage(context);
      output = await (lineage !== undefined
        ? runInScope(lineage, () => fn(handle))
        : runOutsideScope(() => fn(handle)));
    } catch (err) {
      await this.#end(runId, endStatusOf(err), {
        ...(current !== undefined ? { step: current } : {}),
        ...flipSeqOf(err),
        ...(err instanceof KillSwitchError ? { code: err.code } : {}),
        detail: describe(err),
      }).catch(() => undefined);
      throw err;
    }
    await this.#end(runId, RunStatus.COMPLETED, output !== undefined ? { output } : {});
    return output;
  }

  async #end(
    runId: string,
    status: RunEndStatus,
    extra: Omit<RunEndedRecord, 'type' | 'runId' | 'at' | 'workerId' | 'status'>,
  ): Promise<void> {
    const record: RunRecord = {
      type: 'ended',
      runId,
      at: this.#at(),
      workerId: this.workerId,
      status,
      ...extra,
    };
    await this.#journal.append(record);
  }

  #at(): string {
    return new Date(this.#clock.wallNow()).toISOString();
  }
}

function endStatusOf(err: unknown): RunEndStatus {
  if (err instanceof HaltedError) return RunStatus.HALTED;
  if (err instanceof DuplicateEffectError && err.state === DuplicateState.IN_DOUBT)
    return RunStatus.IN_DOUBT;
  return RunStatus.FAILED;
}

function flipSeqOf(err: unknown): { flipSeq?: number } {
  return err instanceof HaltedError && err.flip !== undefined ? { flipSeq: err.flip.seq } : {};
}

function refusedError(runId: string, ctx: KillContext, d: KillDecision): HaltedError {
  return haltedErrorOf(
    ErrorCode.HALTED,
    `run ${runId} ${formatSelector(normalizeSelector(ctx))}`,
    d,
    ' before its first effect',
  );
}

function conflict(message: string): KillSwitchError {
  return new KillSwitchError(ErrorCode.RUN_CONFLICT, message);
}

function describe(err: unknown): string {
  return (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(0, 4096);
}
