import { systemClock, type Clock } from '../internal/clock.js';
import type { Client } from '@openfeature/server-sdk';
import type { HaltedError } from '../errors.js';
import {
  ErrorCode,
  InvalidOptionError,
  KillSwitchError,
  ValidationError,
  type ValidationIssue,
} from '../errors.js';
import { HaltCause } from '../model/halt-cause.js';
import {
  EffectStatus,
  effectKey,
  type Compensation,
  type LedgerEntry,
  type LedgerEvent,
  type SideEffectLedger,
} from '../ledger/side-effect-ledger.js';
import { normalizeSelector, type KillContext } from '../model/selector.js';
import { currentRunScope, inheritContext } from '../scope/run-scope.js';
import { DrainPermit, drainPermits } from './drain-permit.js';
import { DuplicateEffectError, DuplicateState } from './duplicate-effect-error.js';
import { HaltWatcher } from './halt-watcher.js';
import { haltedErrorOf, type KillDecision } from './kill-decision.js';
import { OperationState, StoppableOperation, type LateOutcome } from './stoppable-operation.js';

/** Turns a result into JSON for the ledger and back, so a replayed effect can return it. */
export interface ResultCodec<T> {
  /** Called with the body's result; the return value is stored with `landed` (JSON-serialisable). */
  encode(value: T): unknown;
  /** Called with the stored value when the key already landed. */
  decode(stored: unknown): T;
}

/** One side effect the guard decides on, records and runs. */
export interface GuardedEffect<T = unknown> {
  /**
   * The kill attributes; `runId` and `capability` default to the fields below, and inside a run
   * scope tenant, feature and `runPath` default to the scope's (KS-4.9.2). @default {}
   */
  readonly context?: KillContext;
  /**
   * The run the effect belongs to (stable across a resume). Required outside a run scope.
   * @default the run scope's run id
   */
  readonly runId?: string;
  /** The step within the run (stable across attempts and a resume). */
  readonly step: string;
  /** The capability the effect uses, e.g. `payments.refund`. */
  readonly capability: string;
  /** The idempotency key. @default effectKey(runId, step) */
  readonly key?: string;
  /** How to undo the effect, stored with the intent for the recovery report. KS-4.4.6 */
  readonly compensation?: Compensation;
  /**
   * The effect's target deduplicates by key, so an in-doubt key may be dispatched again.
   * @default false (an in-doubt key is refused with `KS_DUPLICATE_EFFECT`)
   */
  readonly idempotent?: boolean;
  /** Record the result with `landed` and return it when the key is run again after it landed. */
  readonly result?: ResultCodec<T>;
  /**
   * The permit of the queued task this effect belongs to (the third argument of a
   * `QueueController.work` handler). With it the effect may dispatch while every matching halt
   * is a `drain` halt appended after the task was admitted; anything else still refuses. KS-4.8
   * @default none (every matching halt refuses)
   */
  readonly drainPermit?: DrainPermit;
}

/** What the body learns besides its signal: the key to send downstream, and the attempt number. */
export interface EffectInfo {
  readonly key: string;
  readonly attempt: number;
}

/** The effect itself; it should pass `signal` to every I/O call (fetch, SDK calls). */
export type EffectBody<T> = (signal: AbortSignal, info: EffectInfo) => Promise<T>;

/** What an {@link OperationBody} gets: the effect's operation, its signal created on first read. */
export type EffectOperation = Pick<StoppableOperation, 'signal' | 'stopped' | 'onStop'>;

/** The body `guard[RUN_WITH_OPERATION]` runs: as {@link EffectBody}, with the operation. */
export type OperationBody<T> = (op: EffectOperation, info: EffectInfo) => Promise<T>;

/** The key of {@link EffectGuard}'s internal run for the adapters (not exported by the package). */
export const RUN_WITH_OPERATION: unique symbol = Symbol('openfeature-kill-switch.runWithOperation');

/** Options of {@link EffectGuard}. */
export interface EffectGuardOptions {
  /** An OpenFeature client; `kill-switch` may come from any provider bound to its domain. */
  readonly client: Client;
  /** Where intents and outcomes go. The guard never closes it. */
  readonly ledger: SideEffectLedger;
  /** Told when an outcome could not be recorded. @default console */
  readonly logger?: { warn(message: string): void };
  /** Clock: its wall reading stamps ledger times; how late an aborted effect landed is measured on its monotonic reading. @default systemClock */
  readonly clock?: Clock;
  /**
   * A watcher to share with retries, timers and queues on the same client; the guard then does
   * not close it. @default a watcher of its own on `client`
   */
  readonly watcher?: HaltWatcher;
  /**
   * Evaluate `kill-switch` once more after the intent is durable, just before dispatch, so a halt
   * that arrived during the intent write is honoured even from a provider that emits no change
   * events. Costs one evaluation per effect. KS-4.1.5
   * @default true
   */
  readonly recheckBeforeDispatch?: boolean;
}

const CLOSED_DECISION: KillDecision = {
  halted: true,
  cause: HaltCause.ERROR,
  reason: 'guard closed',
};

/**
 * The one place every side effect passes (DESIGN section 6). Each effect is one
 * {@link StoppableOperation} (KS-4.10), and `run` reads as its named stages:
 * 1. `#watch`: watches the effect's context for a halt, before anything else, so none is missed;
 *    KS-4.1.3
 * 2. the ledger's entry and `replay`: returns the recorded result, or refuses, when the key already
 *    landed or is in doubt; KS-4.3
 * 3. `#decide`: evaluates `kill-switch` with `true` (halted) as the default; halted means `refused`
 *    is recorded and the call rejects with {@link HaltedError} `KS_HALTED` naming the flip; KS-4.1.1
 * 4. `#recordIntent`: records `intent` and waits until it is durable; if that fails nothing is
 *    dispatched; KS-4.2.2
 * 5. `#checkAgain`: evaluates once more, so a halt that arrived during the intent write refuses;
 *    KS-4.1.5
 * 6. `#dispatch`: runs the body with the operation's AbortSignal; a matching halt aborts it and
 *    rejects the call at once with `KS_ABORTED`, even if the body ignores the signal (KS-4.2.4);
 *    records `landed`, `failed`, `aborted` (in doubt) or `landed-after-halt`. KS-4.2.5
 *
 * @example
 * ```ts
 * const guard = new EffectGuard({ client: OpenFeature.getClient(), ledger });
 * await guard.run(
 *   { context: { tenant: 'acme' }, runId, step: 'refund-1', capability: 'payments.refund',
 *     compensation: { action: 'payments.charge', args: { amount } } },
 *   (signal, { key }) => fetch(url, { method: 'POST', signal, headers: { 'idempotency-key': key } }),
 * );
 * ```
 */
export class EffectGuard {
  /** The guard's halt watcher; retries, timers and queues may hang off it too. */
  readonly watcher: HaltWatcher;
  readonly #ledger: SideEffectLedger;
  readonly #logger: { warn(message: string): void };
  readonly #clock: Clock;
  readonly #ownsWatcher: boolean;
  readonly #recheck: boolean;
  /** Keys being checked or dispatched by this guard whose body has not settled. */
  readonly #inFlight = new Map<string, StoppableOperation>();
  readonly #pending = new Set<Promise<void>>();
  #atMs = Number.NaN;
  #atText = '';
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing client or ledger */
  constructor(options: EffectGuardOptions) {
    const { client, ledger } = options ?? {};
    if (
      client === null ||
      typeof client !== 'object' ||
      typeof client.getBooleanDetails !== 'function'
    ) {
      throw new InvalidOptionError('client', 'an OpenFeature Client', client);
    }
    if (
      ledger === null ||
      typeof ledger !== 'object' ||
      typeof ledger.append !== 'function' ||
      typeof ledger.entries !== 'function'
    ) {
      throw new InvalidOptionError('ledger', 'a SideEffectLedger', ledger);
    }
    if (
      options.recheckBeforeDispatch !== undefined &&
      typeof options.recheckBeforeDispatch !== 'boolean'
    ) {
      throw new InvalidOptionError(
        'recheckBeforeDispatch',
        'a boolean',
        options.recheckBeforeDispatch,
      );
    }
    this.#ledger = ledger;
    this.#logger = options.logger ?? console;
    this.#clock = options.clock ?? systemClock;
    this.#recheck = options.recheckBeforeDispatch ?? true;
    this.#ownsWatcher = options.watcher === undefined;
    this.watcher = options.watcher ?? new HaltWatcher(client);
  }

  /**
   * Evaluates `kill-switch` for a context, failing closed, without recording anything. KS-4.1.9
   *
   * @returns the decision; `halted` is true unless the flag answered exactly `false`
   */
  check(ctx: KillContext): Promise<KillDecision> {
    return this.watcher.evaluate(ctx);
  }

  /**
   * Runs one side effect under the kill switch and records it in the ledger.
   *
   * @param effect - what the effect is: context, run, step, capability, key, compensation
   * @param body - the effect; receives an AbortSignal that aborts when a matching halt arrives
   * @returns the body's result (or the recorded result of a key that already landed)
   * @throws {HaltedError} `KS_HALTED` when refused before dispatch (nothing left), `KS_ABORTED`
   *   when a halt arrived while it ran (the call rejects at once; the body was signalled)
   * @throws {DuplicateEffectError} `KS_DUPLICATE_EFFECT` when the key landed (and no result codec
   *   was given), is in doubt (and the effect is not idempotent) or is in flight
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the intent could not be recorded (nothing
   *   dispatched); `KS_STORE_CLOSED` when the guard is closed
   * @throws {ValidationError} `KS_INVALID_INPUT` for a bad effect description
   * @throws the body's own error when it rejects (recorded as `failed`)
   */
  run<T>(effect: GuardedEffect<T>, body: EffectBody<T>): Promise<T> {
    return this.#runEffect(effect, body, false);
  }

  /**
   * Internal (the framework adapters): {@link run}, handing the body its operation instead of
   * its signal, so a body that links to the operation's stop, or reads its signal only when it
   * needs one, costs no `AbortController`. Everything else is `run`'s. KS-14.1.3
   */
  [RUN_WITH_OPERATION]<T>(effect: GuardedEffect<T>, body: OperationBody<T>): Promise<T> {
    return this.#runEffect(effect, body, true);
  }

  async #runEffect<T>(
    effect: GuardedEffect<T>,
    body: EffectBody<T> | OperationBody<T>,
    lazy: boolean,
  ): Promise<T> {
    if (this.#closed) throw new KillSwitchError(ErrorCode.STORE_CLOSED, 'effect guard is closed');
    const ctx = effectContext(effect);
    const key = effect.key ?? effectKey(ctx.runId!, effect.step);
    if (typeof body !== 'function')
      throw new ValidationError('effect', [{ path: ['body'], message: 'must be a function' }]);
    // KS-4.3.3 the same key twice at once in one guard would dispatch twice.
    if (this.#inFlight.has(key))
      throw new DuplicateEffectError(key, DuplicateState.IN_FLIGHT, undefined);
    const permit = effect.drainPermit;
    if (permit !== undefined && !(permit instanceof DrainPermit)) {
      throw new ValidationError('effect', [
        { path: ['drainPermit'], message: 'must be a DrainPermit from QueueController.work' },
      ]);
    }
    const base: EffectBase = {
      key,
      runId: ctx.runId!,
      step: effect.step,
      capability: effect.capability,
      context: ctx,
    };
    const op = this.#watch(base, permit);
    // The stages await here and nowhere else: with AsyncLocalStorage active (every adapter, and
    // LangChain), each extra await or async frame allocates promises the async hooks then visit.
    try {
      // Stage 2, what the ledger already knows of the key.
      let prior: LedgerEntry | undefined;
      try {
        prior = (await this.#ledger.entries({ key }))[0];
      } catch (err) {
        throw new KillSwitchError(
          ErrorCode.STORE_UNAVAILABLE,
          `effect ${key} not dispatched: cannot read the ledger`,
          { cause: err },
        );
      }
      const replayed = replay(effect, key, prior);
      if (replayed !== undefined) {
        if (op.state === OperationState.CHECKING) op.settle();
        this.#inFlight.delete(key);
        return replayed.value;
      }
      // KS-4.7.2 answered at once from a synchronous provider; awaited otherwise.
      let first = this.watcher.evaluateEager(ctx);
      if (first instanceof Promise) first = await first;
      const drain = this.#decide(op, base, permit, first);
      if (op.state !== OperationState.CHECKING) throw await this.#refused(op, base);
      const attempt = (prior?.attempts ?? 0) + 1;
      try {
        await this.#recordIntent(base, effect, attempt, drain, permit);
      } catch (err) {
        // KS-4.2.3 fail closed: no record, no dispatch.
        throw new KillSwitchError(
          ErrorCode.STORE_UNAVAILABLE,
          `effect ${key} not dispatched: its intent could not be recorded (${(err as Error)?.message ?? String(err)})`,
          { cause: err },
        );
      }
      if (this.#recheck && op.state === OperationState.CHECKING) {
        let again = this.watcher.evaluateEager(ctx);
        if (again instanceof Promise) again = await again;
        this.#checkAgain(op, base, permit, again);
      }
      if (this.#closed && op.state === OperationState.CHECKING) op.refuse(CLOSED_DECISION);
      if (op.state !== OperationState.CHECKING) throw await this.#refused(op, base);
      return await this.#dispatch(op, base, attempt, effect, body, lazy);
    } catch (err) {
      // A check that failed or refused leaves nothing running: the watch and the key go. (A body
      // that failed settled the operation; an aborted one keeps its key until it settles.)
      op.cancel(err);
      if (op.state === OperationState.CANCELLED || op.state === OperationState.REFUSED)
        this.#inFlight.delete(key);
      throw err;
    }
  }

  /**
   * Stage 1, watch (before anything else, so no halt is missed; KS-4.1.3). A drain halt the
   * permit covers neither refuses nor aborts; any other halt does (KS-4.8.4).
   */
  #watch(base: EffectBase, permit: DrainPermit | undefined): StoppableOperation {
    const op = new StoppableOperation({
      watcher: this.watcher,
      context: base.context,
      ...(permit !== undefined ? { permit } : {}),
      haltError: (s) =>
        haltedError(
          s.state === OperationState.REFUSED ? ErrorCode.HALTED : ErrorCode.ABORTED,
          base.key,
          s.decision,
        ),
    });
    op.check();
    this.#inFlight.set(base.key, op);
    return op;
  }

  /**
   * Stage 3, decide on the evaluation of `kill-switch` (halted as the default, KS-4.1.1): halted
   * refuses the operation, and so did a halt that arrived since the watch.
   *
   * @returns the drain halt the effect dispatches under, when its permit covers one (KS-4.8.1)
   */
  #decide(
    op: StoppableOperation,
    base: EffectBase,
    permit: DrainPermit | undefined,
    decision: KillDecision,
  ): KillDecision | undefined {
    if (!decision.halted) return undefined;
    if (drainPermits(decision, permit, base.context)) return decision;
    if (op.state === OperationState.CHECKING) op.refuse(decision);
    return undefined;
  }

  /**
   * Stage 4, the intent, durable before the effect leaves (KS-4.2.2); `run` turns a failure
   * (thrown or rejected) into `KS_STORE_UNAVAILABLE` and dispatches nothing (KS-4.2.3).
   */
  #recordIntent(
    base: EffectBase,
    effect: GuardedEffect<unknown>,
    attempt: number,
    drain: KillDecision | undefined,
    permit: DrainPermit | undefined,
  ): Promise<void> {
    // Built field by field (no spreads): this object is on every effect's path.
    const intent: { -readonly [K in keyof LedgerEvent]: LedgerEvent[K] } = {
      key: base.key,
      runId: base.runId,
      step: base.step,
      capability: base.capability,
      context: base.context,
      status: EffectStatus.INTENT,
      at: this.#at(),
      attempt,
    };
    if (effect.compensation !== undefined) intent.compensation = effect.compensation;
    // KS-4.8.5 the ledger says which effects left under a drain halt, and why they could.
    if (drain?.flip !== undefined && permit !== undefined) {
      intent.flipSeq = drain.flip.seq;
      intent.detail = `dispatched under drain halt #${drain.flip.seq}: task ${permit.taskId} was admitted at seq ${permit.admittedSeq}`;
    }
    return this.#ledger.append(intent);
  }

  /**
   * Stage 5, recheck once the intent is durable (KS-4.1.5): a halt that arrived during the intent
   * write refuses, and the intent is closed as refused.
   */
  #checkAgain(
    op: StoppableOperation,
    base: EffectBase,
    permit: DrainPermit | undefined,
    again: KillDecision,
  ): void {
    if (
      again.halted &&
      !drainPermits(again, permit, base.context) &&
      op.state === OperationState.CHECKING
    )
      op.refuse(again);
  }

  /**
   * Stage 6, dispatch: run the body with the operation's signal; a halt aborts it and rejects at
   * once (KS-4.2.4); the outcome is recorded before the caller learns it (KS-4.2.5), and a body
   * that settles after the abort is recorded as such (KS-4.2.6).
   */
  #dispatch<T>(
    op: StoppableOperation,
    base: EffectBase,
    attempt: number,
    effect: GuardedEffect<T>,
    body: EffectBody<T> | OperationBody<T>,
    lazy: boolean,
  ): Promise<T> {
    const key = base.key;
    let haltedAt = 0;
    // The outcomes of one dispatch are written one after another, so every backend stores them in
    // order (aborted before landed-after-halt) even though the abort is not awaited.
    let writes: Promise<void> | undefined;
    const write = (e: Omit<LedgerEvent, 'at'>): Promise<void> => {
      const p = writes === undefined ? this.#record(e) : writes.then(() => this.#record(e));
      writes = p;
      this.#track(p);
      return p;
    };
    op.onStop((s) => {
      haltedAt = this.#clock.now();
      void write({
        ...base,
        status: EffectStatus.ABORTED,
        ...flipFields(s.decision ?? CLOSED_DECISION, s.error as Error),
      });
    });
    const onLate = (late: LateOutcome): void => {
      this.#inFlight.delete(key);
      if (late.ok) {
        // KS-4.2.6 the body ignored the signal and the effect left anyway: say so, with when.
        const ms = Math.round(this.#clock.now() - haltedAt);
        void write({
          ...base,
          status: EffectStatus.LANDED_AFTER_HALT,
          detail: `landed ${ms} ms after the halt aborted it`,
          // Its result too: a durable run resumed later replays the step instead of stopping on
          // a landed effect whose result it cannot know (KS-4.3.1).
          ...this.#encode(effect, key, late.value as T),
        });
      } else {
        // A body that rejects after the abort proves nothing about the effect: its request
        // may already have reached the other side. It stays in doubt (KS-4.4.5), so the
        // recovery report lists it and a resumed run does not repeat it blindly.
        void write({
          ...base,
          status: EffectStatus.ABORTED,
          detail: `body rejected after the abort, may have landed: ${describeError(late.error)}`,
        });
      }
    };
    const running = lazy
      ? op.runLazily((o) => (body as OperationBody<T>)(o, { key, attempt }), { onLate })
      : op.run((signal) => (body as EffectBody<T>)(signal, { key, attempt }), { onLate });
    return running.then(
      (value) => {
        this.#inFlight.delete(key);
        const landed = {
          ...base,
          status: EffectStatus.LANDED,
          ...this.#encode(effect, key, value),
        };
        return write(landed).then(() => value);
      },
      (err: unknown) => {
        // Aborted: the stop listener recorded it and the late outcome will follow.
        if (op.state === OperationState.ABORTED) throw err;
        this.#inFlight.delete(key);
        return write({ ...base, status: EffectStatus.FAILED, detail: describeError(err) }).then(
          () => {
            throw err;
          },
        );
      },
    );
  }

  #encode<T>(effect: GuardedEffect<T>, key: string, value: T): { result?: unknown } {
    if (effect.result === undefined) return {};
    try {
      const result = effect.result.encode(value);
      return result !== undefined ? { result } : {};
    } catch (err) {
      this.#logger.warn(
        `effect ${key}: result not recorded, encode failed: ${(err as Error)?.message}`,
      );
      return {};
    }
  }

  /** Records a refused operation (KS-4.1.8: failing to record it does not let it through). */
  async #refused(op: StoppableOperation, base: EffectBase): Promise<unknown> {
    const s = op.stopped!;
    await this.#record({
      ...base,
      status: EffectStatus.REFUSED,
      ...flipFields(s.decision ?? CLOSED_DECISION, s.error as Error),
    });
    return s.error;
  }

  /**
   * Appends an outcome; a failure is logged, never thrown (the outcome already happened). A chain,
   * not an async function: it runs for every outcome, and each await costs promises the async
   * hooks visit when an AsyncLocalStorage is active.
   */
  #record(e: Omit<LedgerEvent, 'at'>): Promise<void> {
    const lost = (err: unknown): void =>
      this.#logger.warn(
        `effect ${e.key}: could not record ${e.status}: ${(err as Error)?.message ?? String(err)}`,
      );
    return this.#append({ ...e, at: this.#at() } as LedgerEvent).then(undefined, (err: unknown) => {
      // A result the ledger cannot store (not JSON, too big) must not cost the landed record.
      if (!('result' in e)) return lost(err);
      const { result: _dropped, ...rest } = e;
      this.#logger.warn(
        `effect ${e.key}: result not recorded: ${(err as Error)?.message ?? String(err)}`,
      );
      return this.#append({ ...rest, at: this.#at() } as LedgerEvent).then(undefined, lost);
    });
  }

  /** The ledger's append as a promise, whatever it does (a throw becomes a rejection). */
  #append(e: LedgerEvent): Promise<void> {
    try {
      return Promise.resolve(this.#ledger.append(e));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Tracks a write for {@link EffectGuard.flush}; `#record` never rejects. */
  #track(p: Promise<void>): void {
    this.#pending.add(p);
    void p.then(() => this.#pending.delete(p));
  }

  /** The wall-clock label of a ledger event; formatted once per millisecond. */
  #at(): string {
    const ms = this.#clock.wallNow();
    if (ms !== this.#atMs) {
      this.#atText = new Date(ms).toISOString();
      this.#atMs = ms;
    }
    return this.#atText;
  }

  /** Number of effects dispatched and not yet settled (including aborted bodies still running). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Resolves once every ledger write started so far in the background has finished. */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /**
   * Stops the guard: later `run` calls reject with `KS_STORE_CLOSED`, effects still running are
   * aborted (`KS_ABORTED`, failing closed: nothing would watch them any more), and pending ledger
   * writes are awaited. Does not close the ledger. KS-4.1.6
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const op of [...this.#inFlight.values()]) op.halt(CLOSED_DECISION);
    if (this.#ownsWatcher) this.watcher.close();
    await this.flush();
  }
}

/** What every ledger event of one effect carries. */
type EffectBase = Omit<LedgerEvent, 'status' | 'at'> & {
  readonly key: string;
  readonly runId: string;
  readonly step: string;
  readonly capability: string;
  readonly context: KillContext;
};

/**
 * A key the ledger already knows (KS-4.3): its recorded result when it landed and the effect has
 * a codec; undefined when it may be dispatched.
 *
 * @throws {DuplicateEffectError} when it landed without a codec (KS-4.3.1), or is in doubt and
 *   the effect is not idempotent (KS-4.3.2)
 */
function replay<T>(
  effect: GuardedEffect<T>,
  key: string,
  prior: LedgerEntry | undefined,
): { value: T } | undefined {
  // KS-4.3.1 an effect that landed is never dispatched again.
  if (prior?.landed) {
    if (effect.result !== undefined && 'result' in prior)
      return { value: effect.result.decode(prior.result) };
    throw new DuplicateEffectError(key, DuplicateState.LANDED, prior);
  }
  // KS-4.3.2 an intent with no outcome may have landed.
  if (prior?.inDoubt && effect.idempotent !== true)
    throw new DuplicateEffectError(key, DuplicateState.IN_DOUBT, prior);
  return undefined;
}

/**
 * The effect with its run id and context completed from the run scope (what the guard itself
 * evaluates), for wrappers that read `runId` or the context before the guard does. KS-4.9.2
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for an effect without a run id outside a run scope,
 *   or one that names another run, tenant or feature than its scope
 */
export function scopedEffect<T>(
  effect: GuardedEffect<T>,
): GuardedEffect<T> & { readonly runId: string; readonly context: KillContext } {
  const ctx = effectContext(effect);
  const { capability: _c, ...context } = ctx;
  return { ...effect, runId: ctx.runId!, context };
}

/**
 * The context the guard evaluates: the effect's, with its run and capability filled in, and
 * tenant, feature, run id and run path inherited from the run scope (KS-4.9.2).
 */
function effectContext(effect: GuardedEffect<unknown>): KillContext {
  const issues: ValidationIssue[] = [];
  if (effect === null || typeof effect !== 'object')
    throw new ValidationError('effect', [{ path: [], message: 'must be an object' }]);
  const runId = effect.runId ?? currentRunScope()?.runId;
  if (typeof runId !== 'string' || runId.length === 0) {
    issues.push({
      path: ['runId'],
      message:
        effect.runId === undefined
          ? 'must be given outside a run scope'
          : 'must be a non-empty string',
    });
  }
  for (const k of ['step', 'capability'] as const) {
    if (typeof effect[k] !== 'string' || effect[k].length === 0)
      issues.push({ path: [k], message: 'must be a non-empty string' });
  }
  if (effect.key !== undefined && (typeof effect.key !== 'string' || effect.key.length === 0)) {
    issues.push({ path: ['key'], message: 'must be a non-empty string' });
  }
  const c = effect.context ?? {};
  if (c === null || typeof c !== 'object')
    issues.push({ path: ['context'], message: 'must be an object' });
  else {
    // A context naming another run or capability than the effect would be checked against the wrong halts.
    if (c.runId !== undefined && c.runId !== runId)
      issues.push({ path: ['context', 'runId'], message: 'must equal runId' });
    if (c.capability !== undefined && c.capability !== effect.capability) {
      issues.push({ path: ['context', 'capability'], message: 'must equal capability' });
    }
  }
  if (issues.length > 0) throw new ValidationError('effect', issues);
  // A frozen context with its run path and run id (an adapter run's, the same object for every
  // tool call of the run) derives the same context for a capability every time: the run scope is
  // not read when a path is given, and the derived context holds the same path array (a path
  // changed in place is seen either way). Derived once, frozen, and shared by its effects.
  const cacheable =
    effect.context !== undefined &&
    c.runId === runId &&
    Array.isArray(c.runPath) &&
    Object.isFrozen(c);
  if (cacheable) {
    const known = derivedContexts.get(c)?.get(effect.capability);
    if (known !== undefined) return known;
  }
  const inherited = inheritContext({ ...c, runId: runId! });
  const ctx = normalizeSelector({ ...inherited, capability: effect.capability });
  // KS-1.5.1: the run's ancestry travels with every evaluation, so an ancestor's halt matches.
  // A malformed path is not refused here: evaluation answers fail-closed and says why (KS-1.5.4).
  const out = inherited.runPath === undefined ? ctx : { ...ctx, runPath: inherited.runPath };
  if (cacheable) {
    let byCapability = derivedContexts.get(c);
    if (byCapability === undefined) derivedContexts.set(c, (byCapability = new Map()));
    if (byCapability.size >= MAX_DERIVED_PER_CONTEXT) byCapability.clear();
    byCapability.set(effect.capability, Object.freeze(out));
  }
  return out;
}

/**
 * The contexts {@link effectContext} derived from a frozen effect context (see there), by
 * capability; a run's entry goes with its context object.
 */
const derivedContexts = new WeakMap<KillContext, Map<string, KillContext>>();
/** Capabilities kept per context (a run's distinct tools); past it the run's entry starts over. */
const MAX_DERIVED_PER_CONTEXT = 64;

function haltedError(
  code: typeof ErrorCode.HALTED | typeof ErrorCode.ABORTED,
  key: string,
  d: KillDecision,
): HaltedError {
  return haltedErrorOf(code, `effect ${key}`, d);
}

function flipFields(d: KillDecision, err: Error): { flipSeq?: number; detail: string } {
  return {
    ...(d.flip !== undefined ? { flipSeq: d.flip.seq } : {}),
    detail: err.message.slice(0, 4096),
  };
}

function describeError(err: unknown): string {
  const s = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return s.slice(0, 4096);
}
