import { randomUUID } from 'node:crypto';
import {
  ErrorCode,
  HaltCause,
  HaltedError,
  InvalidOptionError,
  KillSwitchError,
} from '../errors.js';
import { inheritContext } from '../scope/run-scope.js';
import type { HaltWatcher } from '../guard/halt-watcher.js';
import type { KillDecision } from '../guard/kill-decision.js';
import { EffectStatus, type SideEffectLedger } from '../ledger/side-effect-ledger.js';
import {
  formatSelector,
  selectorMatches,
  type KillContext,
  type Selector,
} from '../model/selector.js';
import {
  backoffDelay,
  resolveRetryPolicy,
  type ResolvedRetryPolicy,
  type RetryPolicy,
} from './retry-policy.js';
import { systemClock, type Clock } from '../internal/clock.js';

/** Where the scheduler writes warnings (a failed ledger write). */
export interface SchedulerLogger {
  warn(message: string): void;
}

/** Options of {@link Scheduler}. */
export interface SchedulerOptions {
  /** Tells the scheduler when a context becomes halted; usually `guard.watcher`. */
  readonly watcher: HaltWatcher;
  /** Where cancellations by a halt are recorded (status `cancelled`, `refused`, `aborted`). */
  readonly ledger: SideEffectLedger;
  /**
   * Clock and timers: waits and due times on its monotonic `now()`, ledger times from its wall
   * clock. @default the process's own ({@link systemClock})
   */
  readonly clock?: Clock;
  /** Source of jitter, numbers in [0, 1). @default Math.random */
  readonly random?: () => number;
  /** @default console */
  readonly logger?: SchedulerLogger;
}

/** Per-call options of {@link Scheduler.retry}. */
export interface RetryOptions {
  /** Ledger key of this retry loop. @default `<runId>/<step>#retry` when both are known, else a random key */
  readonly key?: string;
  /** The step's name, recorded in the ledger. */
  readonly step?: string;
  /**
   * Whether a failed attempt may be retried. A halt error (`KS_HALTED`, `KS_ABORTED`) thrown by an
   * attempt is never retried, whatever this says. @default every other error is retried
   */
  readonly retryOn?: (error: unknown, attempt: number) => boolean;
}

/** Per-call options of {@link Scheduler.schedule}. */
export interface ScheduleOptions {
  /** Ledger key of this timer. @default `<runId>/<step>#timer` when both are known, else a random key */
  readonly key?: string;
  readonly step?: string;
}

/**
 * The life of a timer (an explicit state machine): `pending` -> `checking` (the kill flag is
 * evaluated again) -> `running` -> `fired` | `failed`; `pending` or `checking` -> `cancelled`;
 * `running` -> `aborted` when a matching halt arrives while the callback runs.
 */
export const TimerState = {
  PENDING: 'pending',
  CHECKING: 'checking',
  RUNNING: 'running',
  FIRED: 'fired',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  ABORTED: 'aborted',
} as const;
export type TimerState = (typeof TimerState)[keyof typeof TimerState];

/** A timer set with {@link Scheduler.schedule}. */
export interface ScheduledTimer<T> {
  readonly id: string;
  readonly key: string;
  readonly context: KillContext;
  /** When the callback is due, ms on the scheduler's monotonic clock (`Clock.now()`). */
  readonly dueAt: number;
  readonly state: TimerState;
  /**
   * Settles with the callback's result; rejects with {@link HaltedError} `KS_ABORTED` when a halt
   * cancelled or aborted it, `KS_CANCELLED` when {@link ScheduledTimer.cancel} did. Never an
   * unhandled rejection: a timer nobody awaits does not crash the process.
   */
  readonly done: Promise<T>;
  /** Cancels the timer if it has not started; returns false when it already ran or stopped. */
  cancel(): boolean;
}

/** What kind of pending item a halt stopped. */
type Kind = 'retry' | 'timer';

/**
 * Owns retries and timers so a halt can cancel them (DESIGN section 1.3 and 6): every pending
 * retry sleep and timer watches its context, and a matching halt clears it at once, frees the
 * caller with {@link HaltedError} `KS_ABORTED` and records it as `cancelled` in the ledger. Before
 * each attempt and before a timer's callback runs, the kill flag is evaluated again, so a halt
 * whose event was missed still stops it. KS-7.1
 *
 * Clients that retry on their own with a sleep nobody can abort (the OpenAI SDK's back-off, for
 * one) must be configured with `maxRetries: 0` and retried through {@link Scheduler.retry}. KS-7.1.6
 *
 * @example
 * ```ts
 * const scheduler = new Scheduler({ watcher: guard.watcher, ledger });
 * const reply = await scheduler.retry(
 *   { tenant: 'acme', runId: 'r1' },
 *   (signal) => openai.chat.completions.create(body, { signal, maxRetries: 0 }),
 *   { maxAttempts: 4, backoff: { baseMs: 500, factor: 2, maxMs: 8_000, jitter: 0.5 } },
 * );
 * const t = scheduler.schedule({ runId: 'r1' }, 60_000, () => sendReminder());
 * ```
 */
export class Scheduler {
  readonly #watcher: HaltWatcher;
  readonly #ledger: SideEffectLedger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #logger: SchedulerLogger;
  readonly #prefix = randomUUID().slice(0, 8);
  readonly #pending = new Set<Pending>();
  readonly #writes = new Set<Promise<void>>();
  #writeError: unknown;
  #nextId = 1;
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` when `watcher` or `ledger` is missing */
  constructor(options: SchedulerOptions) {
    if (options?.watcher === undefined || typeof options.watcher.watch !== 'function') {
      throw new InvalidOptionError('watcher', 'a HaltWatcher', options?.watcher);
    }
    if (options.ledger === undefined || typeof options.ledger.append !== 'function') {
      throw new InvalidOptionError('ledger', 'a SideEffectLedger', options.ledger);
    }
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new InvalidOptionError('random', 'a function returning [0, 1)', options.random);
    }
    this.#watcher = options.watcher;
    this.#ledger = options.ledger;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#logger = options.logger ?? console;
  }

  /**
   * Runs `attempt` until it succeeds, the policy gives up, or a matching halt stops it.
   *
   * - Before each attempt the kill flag is evaluated: halted before the first attempt rejects with
   *   `KS_HALTED` (ledger `refused`); later, with `KS_ABORTED` (ledger `cancelled`). KS-7.1.3
   * - A halt during a back-off sleep clears the timer at once and rejects with `KS_ABORTED`
   *   (ledger `cancelled`); the next attempt never runs. KS-7.1.1, KS-7.1.2
   * - A halt during an attempt aborts its signal and rejects at once with `KS_ABORTED` (ledger
   *   `aborted`), without waiting for the attempt to settle. KS-7.1.4
   * - An attempt that throws a halt error is not retried. KS-7.1.5
   *
   * @param ctx - the kill context the retried effect runs under
   * @param attempt - one try; `signal` aborts on a matching halt, `n` counts from 1
   * @param policy - attempts and back-off (validated; defaults in {@link RetryPolicy})
   * @returns the first successful attempt's result
   * @throws {HaltedError} `KS_HALTED` or `KS_ABORTED`
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad policy
   * @throws the last attempt's error when the attempts run out or `retryOn` says no
   */
  async retry<T>(
    ctx: KillContext,
    attempt: (signal: AbortSignal, n: number) => Promise<T>,
    policy: RetryPolicy = {},
    options: RetryOptions = {},
  ): Promise<T> {
    const resolved: ResolvedRetryPolicy = resolveRetryPolicy(policy);
    this.#assertOpen();
    // KS-4.9.2: inside a run scope the retry carries the run's tenant, feature and run path.
    ctx = inheritContext(ctx);
    const op = this.#track('retry', ctx, this.#keyFor('retry', ctx, options), options.step);
    try {
      for (let n = 1; ; n++) {
        op.phase = 'checking';
        op.attempt = n;
        // KS-7.1.3: a halt whose event was missed still stops the next attempt.
        const d = await this.#watcher.evaluate(ctx);
        op.throwIfStopped();
        if (d.halted) {
          this.#stop(op, d, n === 1 ? EffectStatus.REFUSED : EffectStatus.CANCELLED);
          op.throwIfStopped();
        }
        op.phase = 'attempting';
        let failure: unknown;
        try {
          return await raceStop(attempt(op.signal, n), op);
        } catch (err) {
          op.throwIfStopped();
          failure = err;
        }
        // KS-7.1.5: a refusal from the guard inside the attempt means halted; never retry it.
        if (isHaltError(failure) || n >= resolved.maxAttempts) throw failure;
        if (options.retryOn !== undefined && !options.retryOn(failure, n)) throw failure;
        const delay = backoffDelay(resolved, n, this.#random);
        op.phase = 'sleeping';
        op.attempt = n + 1;
        op.dueAt = this.#clock.now() + delay;
        await this.#sleep(op, delay);
      }
    } finally {
      op.finish();
      this.#pending.delete(op);
    }
  }

  /**
   * Calls `fn` after `delayMs`, unless a matching halt comes first. A halt while the timer is
   * pending clears it at once (ledger `cancelled`, `done` rejects with `KS_ABORTED`); when it
   * falls due the kill flag is evaluated again before `fn` runs; a context already halted when
   * the timer is set is refused (ledger `refused`). KS-7.1.1, KS-7.1.3, KS-7.1.7
   *
   * @param ctx - the kill context of the work the timer does
   * @param delayMs - wait in ms (finite, >= 0)
   * @param fn - the callback; `signal` aborts on a matching halt while it runs
   * @returns a handle with `done`, `state` and `cancel()`
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad delay
   * @throws {KillSwitchError} `KS_CANCELLED` when the scheduler is closed
   */
  schedule<T>(
    ctx: KillContext,
    delayMs: number,
    fn: (signal: AbortSignal) => T | Promise<T>,
    options: ScheduleOptions = {},
  ): ScheduledTimer<T> {
    if (!Number.isFinite(delayMs) || delayMs < 0) {
      throw new InvalidOptionError('delayMs', 'a finite number of ms >= 0', delayMs);
    }
    this.#assertOpen();
    ctx = inheritContext(ctx);
    const op = this.#track('timer', ctx, this.#keyFor('timer', ctx, options), options.step);
    op.phase = 'sleeping';
    op.dueAt = this.#clock.now() + delayMs;
    let state: TimerState = TimerState.PENDING;
    let resolveDone!: (v: T) => void;
    let rejectDone!: (e: unknown) => void;
    const done = new Promise<T>((resolve, reject) => {
      resolveDone = resolve;
      rejectDone = reject;
    });
    // A timer nobody awaits must not become an unhandled rejection when a halt cancels it.
    done.catch(() => undefined);
    const end = (next: TimerState, outcome: { value: T } | { error: unknown }): void => {
      state = next;
      op.finish();
      this.#pending.delete(op);
      if ('value' in outcome) resolveDone(outcome.value);
      else rejectDone(outcome.error);
    };
    op.onStop = (error) => {
      end(state === TimerState.RUNNING ? TimerState.ABORTED : TimerState.CANCELLED, { error });
    };
    const fire = async (): Promise<void> => {
      op.handle = undefined;
      if (op.stopped) return;
      state = TimerState.CHECKING;
      op.phase = 'checking';
      const d = await this.#watcher.evaluate(ctx);
      if (op.stopped) return;
      if (d.halted) {
        // KS-7.1.3: the event was missed (or raced the firing); the callback still never runs.
        this.#stop(op, d, EffectStatus.CANCELLED);
        return;
      }
      state = TimerState.RUNNING;
      op.phase = 'attempting';
      try {
        const value = await raceStop(
          Promise.resolve().then(() => fn(op.signal)),
          op,
        );
        if (!op.stopped) end(TimerState.FIRED, { value });
      } catch (err) {
        if (!op.stopped) end(TimerState.FAILED, { error: err });
      }
    };
    op.handle = this.#clock.setTimeout(() => void fire(), delayMs);
    // KS-7.1.7: a context already halted when the timer is set is refused, not left to fail later.
    void this.#watcher.evaluate(ctx).then((d) => {
      if (d.halted && !op.stopped && state === TimerState.PENDING) {
        this.#stop(op, d, EffectStatus.REFUSED);
      }
    });
    return {
      id: op.id,
      key: op.key,
      context: ctx,
      dueAt: op.dueAt,
      get state() {
        return state;
      },
      done,
      cancel: () => {
        if (op.stopped || (state !== TimerState.PENDING && state !== TimerState.CHECKING))
          return false;
        this.#cancelByOwner(op, 'timer cancelled by its owner');
        return true;
      },
    };
  }

  /**
   * Cancels a timer by handle or id (not a halt: nothing is written to the ledger).
   *
   * @returns true when a pending timer was cancelled
   */
  cancel(timer: ScheduledTimer<unknown> | string): boolean {
    if (typeof timer !== 'string') return timer.cancel();
    for (const op of this.#pending) {
      if (op.id === timer && op.kind === 'timer' && op.phase !== 'attempting') {
        this.#cancelByOwner(op, 'timer cancelled by its owner');
        return true;
      }
    }
    return false;
  }

  /**
   * Pending retries and timers (sleeping, checking or running) whose context a selector matches,
   * for the drill and for dashboards.
   *
   * @param selector - which contexts to count. @default every one
   */
  pending(selector: Selector = {}): { retries: number; timers: number } {
    let retries = 0;
    let timers = 0;
    for (const op of this.#pending) {
      if (!selectorMatches(selector, op.ctx)) continue;
      if (op.kind === 'retry') retries++;
      else timers++;
    }
    return { retries, timers };
  }

  /**
   * Resolves once every ledger write started so far is done.
   *
   * @throws the first ledger write error since the last call (the cancellation itself happened)
   */
  async flush(): Promise<void> {
    while (this.#writes.size > 0) await Promise.all([...this.#writes]);
    const err = this.#writeError;
    this.#writeError = undefined;
    if (err !== undefined) throw err;
  }

  /**
   * Cancels every pending retry and timer (rejecting with `KS_CANCELLED`), then waits for the
   * ledger writes. Later calls to `retry`/`schedule` throw `KS_CANCELLED`.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const op of [...this.#pending]) this.#cancelByOwner(op, 'scheduler closed');
    await this.flush().catch(() => undefined);
  }

  #assertOpen(): void {
    if (this.#closed) throw new KillSwitchError(ErrorCode.CANCELLED, 'scheduler is closed');
  }

  #keyFor(kind: Kind, ctx: KillContext, options: { key?: string; step?: string }): string {
    if (options.key !== undefined) return options.key;
    if (ctx.runId !== undefined && options.step !== undefined) {
      return `${encodeURIComponent(ctx.runId)}/${encodeURIComponent(options.step)}#${kind}`;
    }
    return `${kind}:${this.#prefix}:${this.#nextId}`;
  }

  #track(kind: Kind, ctx: KillContext, key: string, step: string | undefined): Pending {
    const op = new Pending(`${kind}-${this.#prefix}-${this.#nextId++}`, kind, ctx, key, step);
    this.#pending.add(op);
    // KS-7.1.1: watch before the first check, so a halt between the two is not missed.
    op.unwatch = this.#watcher.watch(ctx, (d) => {
      if (op.stopped) return;
      const status = op.phase === 'attempting' ? EffectStatus.ABORTED : EffectStatus.CANCELLED;
      this.#stop(op, d, status);
    });
    return op;
  }

  /** Stops an item because of a halt: clear its timer, free the caller, then record it. */
  #stop(op: Pending, d: KillDecision, status: EffectStatus): void {
    if (op.stopped) return;
    const code = status === EffectStatus.REFUSED ? ErrorCode.HALTED : ErrorCode.ABORTED;
    const what = op.kind === 'retry' ? `retry attempt ${op.attempt}` : 'timer';
    const verb =
      status === EffectStatus.REFUSED
        ? 'refused'
        : status === EffectStatus.ABORTED
          ? 'aborted'
          : 'cancelled';
    const by = d.flip
      ? `halt #${d.flip.seq} on ${formatSelector(d.flip.selector)}`
      : `kill switch (${d.cause ?? HaltCause.HALTED}${d.failClosed ? `: ${d.failClosed}` : ''})`;
    const error = new HaltedError(
      code,
      `${what} ${verb} by ${by}`,
      d.cause ?? HaltCause.HALTED,
      d.flip,
      d.failClosed,
    );
    op.stop(error, this.#clock);
    const dueAt =
      op.phase === 'sleeping'
        ? ` due at ${new Date(this.#clock.wallNow() + op.dueAt - this.#clock.now()).toISOString()}`
        : '';
    this.#record(op, status, `${what} ${verb}${dueAt}: ${by}`, d.flip?.seq);
  }

  #cancelByOwner(op: Pending, why: string): void {
    op.stop(new KillSwitchError(ErrorCode.CANCELLED, why), this.#clock);
    this.#pending.delete(op);
  }

  #record(op: Pending, status: EffectStatus, detail: string, flipSeq: number | undefined): void {
    const ctx = op.ctx;
    const context: Record<string, string | readonly string[]> = {};
    for (const k of ['tenant', 'feature', 'runId', 'capability'] as const) {
      const v = ctx[k];
      if (v !== undefined) context[k] = v;
    }
    if (ctx.runPath !== undefined) context.runPath = ctx.runPath;
    const write = this.#ledger
      .append({
        key: op.key,
        status,
        at: new Date(this.#clock.wallNow()).toISOString(),
        context,
        detail,
        ...(ctx.runId !== undefined ? { runId: ctx.runId } : {}),
        ...(op.step !== undefined ? { step: op.step } : {}),
        ...(ctx.capability !== undefined ? { capability: ctx.capability } : {}),
        ...(flipSeq !== undefined ? { flipSeq } : {}),
      })
      .catch((err: unknown) => {
        // The cancellation already happened (nothing fires); only the record is missing.
        this.#writeError ??= err;
        this.#logger.warn(`scheduler: could not record ${status} for ${op.key}: ${String(err)}`);
      });
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
  }

  /** A back-off sleep that a halt (or close) clears at once. KS-7.1.2 */
  #sleep(op: Pending, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      op.sleepReject = reject;
      op.handle = this.#clock.setTimeout(() => {
        op.handle = undefined;
        op.sleepReject = undefined;
        resolve();
      }, ms);
    });
  }
}

type Phase = 'checking' | 'attempting' | 'sleeping';

/** One pending retry loop or timer. */
class Pending {
  readonly controller = new AbortController();
  phase: Phase = 'checking';
  attempt = 1;
  dueAt = 0;
  handle: unknown;
  unwatch: (() => void) | undefined;
  sleepReject: ((e: unknown) => void) | undefined;
  onStop: ((e: unknown) => void) | undefined;
  stopListeners = new Set<(e: unknown) => void>();
  error: unknown;
  stopped = false;

  constructor(
    readonly id: string,
    readonly kind: Kind,
    readonly ctx: KillContext,
    readonly key: string,
    readonly step: string | undefined,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  stop(error: unknown, timers: Clock): void {
    if (this.stopped) return;
    this.stopped = true;
    this.error = error;
    if (this.handle !== undefined) timers.clearTimeout(this.handle);
    this.handle = undefined;
    this.unwatch?.();
    this.controller.abort(error);
    this.sleepReject?.(error);
    this.sleepReject = undefined;
    for (const l of this.stopListeners) l(error);
    this.onStop?.(error);
  }

  throwIfStopped(): void {
    if (this.stopped) throw this.error;
  }

  finish(): void {
    this.unwatch?.();
  }
}

/** Settles with `p`, or rejects with the stop error the moment the item is stopped. */
function raceStop<T>(p: Promise<T>, op: Pending): Promise<T> {
  if (op.stopped) {
    p.catch(() => undefined);
    return Promise.reject(op.error);
  }
  return new Promise<T>((resolve, reject) => {
    const onStop = (e: unknown): void => reject(e);
    op.stopListeners.add(onStop);
    p.then(
      (v) => {
        op.stopListeners.delete(onStop);
        resolve(v);
      },
      (e: unknown) => {
        op.stopListeners.delete(onStop);
        reject(e);
      },
    );
  });
}

function isHaltError(err: unknown): boolean {
  return (
    err instanceof KillSwitchError &&
    (err.code === ErrorCode.HALTED || err.code === ErrorCode.ABORTED)
  );
}
