import { randomUUID } from 'node:crypto';
import { ErrorCode, HaltedError, InvalidOptionError, KillSwitchError } from '../errors.js';
import { HaltCause } from '../model/halt-cause.js';
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
import {
  OperationState,
  StoppableOperation,
  type StoppedBy,
  type StoppedState,
} from '../guard/stoppable-operation.js';

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
    const p = this.#track('retry', ctx, this.#keyFor('retry', ctx, options), options.step);
    const op = p.op;
    const again = (n: number) => (failure: unknown) =>
      // KS-7.1.5: a refusal from the guard inside the attempt means halted; never retry it.
      !isHaltError(failure) &&
      n < resolved.maxAttempts &&
      (options.retryOn === undefined || options.retryOn(failure, n));
    try {
      for (let n = 1; ; n++) {
        p.attempt = n;
        op.check();
        // KS-7.1.3: a halt whose event was missed still stops the next attempt.
        const d = await this.#watcher.evaluate(ctx);
        op.throwIfStopped();
        if (d.halted) throw op.refuse(d);
        try {
          return await op.run((signal) => attempt(signal, n), { again: again(n) });
        } catch (err) {
          // Settled (out of attempts, not retryable) or stopped; back to watching means try again.
          if (op.state !== OperationState.WATCHING) throw err;
        }
        const delay = backoffDelay(resolved, n, this.#random);
        p.attempt = n + 1;
        p.dueAt = this.#clock.now() + delay;
        await this.#sleep(p, delay);
      }
    } finally {
      this.#pending.delete(p);
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
    const p = this.#track('timer', ctx, this.#keyFor('timer', ctx, options), options.step);
    const op = p.op;
    p.dueAt = this.#clock.now() + delayMs;
    let fired: boolean | undefined;
    let resolveDone!: (v: T) => void;
    let rejectDone!: (e: unknown) => void;
    const done = new Promise<T>((resolve, reject) => {
      resolveDone = resolve;
      rejectDone = reject;
    });
    // A timer nobody awaits must not become an unhandled rejection when a halt cancels it.
    done.catch(() => undefined);
    op.onStop((stop) => rejectDone(stop.error));
    const fire = async (): Promise<void> => {
      if (op.stopped !== undefined) return;
      op.check();
      const d = await this.#watcher.evaluate(ctx);
      if (op.state !== OperationState.CHECKING) return;
      if (d.halted) {
        // KS-7.1.3: the event was missed (or raced the firing); the callback still never runs.
        op.refuse(d);
        return;
      }
      try {
        const value = await op.run((signal) => Promise.resolve().then(() => fn(signal)));
        fired = true;
        this.#pending.delete(p);
        resolveDone(value);
      } catch (err) {
        // Stopped while it ran: the stop already rejected `done`.
        if (op.stopped !== undefined) return;
        fired = false;
        this.#pending.delete(p);
        rejectDone(err);
      }
    };
    const handle = this.#clock.setTimeout(() => void fire(), delayMs);
    op.onStop(() => this.#clock.clearTimeout(handle));
    // KS-7.1.7: a context already halted when the timer is set is refused, not left to fail later.
    void this.#watcher.evaluate(ctx).then((d) => {
      if (d.halted && op.state === OperationState.WATCHING) op.refuse(d);
    });
    return {
      id: p.id,
      key: p.key,
      context: ctx,
      dueAt: p.dueAt,
      get state() {
        return timerState(op, fired);
      },
      done,
      cancel: () => {
        if (op.state !== OperationState.WATCHING && op.state !== OperationState.CHECKING)
          return false;
        this.#cancelByOwner(p, 'timer cancelled by its owner');
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
    for (const p of this.#pending) {
      const state = p.op.state;
      if (
        p.id === timer &&
        p.kind === 'timer' &&
        (state === OperationState.WATCHING || state === OperationState.CHECKING)
      ) {
        this.#cancelByOwner(p, 'timer cancelled by its owner');
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
    for (const p of this.#pending) {
      if (!selectorMatches(selector, p.ctx)) continue;
      if (p.kind === 'retry') retries++;
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
    for (const p of [...this.#pending]) this.#cancelByOwner(p, 'scheduler closed');
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
    const id = `${kind}-${this.#prefix}-${this.#nextId++}`;
    // KS-7.1.1: the operation watches from here, before the first check.
    const p = new Pending(id, kind, ctx, key, step, this.#watcher);
    p.op.onStop((s) => {
      this.#pending.delete(p);
      // A halt stopped it: record why (an owner's cancel is not a halt and writes nothing).
      if (s.decision !== undefined && s.by !== 'owner') {
        const status = statusOf(p, s);
        const dueAt =
          s.from === OperationState.WATCHING
            ? ` due at ${new Date(this.#clock.wallNow() + p.dueAt - this.#clock.now()).toISOString()}`
            : '';
        this.#record(
          p,
          status,
          `${p.what} ${VERB[status]}${dueAt}: ${haltedBy(s.decision)}`,
          s.decision.flip?.seq,
        );
      }
    });
    this.#pending.add(p);
    return p;
  }

  #cancelByOwner(p: Pending, why: string): void {
    p.op.cancel(new KillSwitchError(ErrorCode.CANCELLED, why));
    this.#pending.delete(p);
  }

  #record(p: Pending, status: EffectStatus, detail: string, flipSeq: number | undefined): void {
    const ctx = p.ctx;
    const context: Record<string, string | readonly string[]> = {};
    for (const k of ['tenant', 'feature', 'runId', 'capability'] as const) {
      const v = ctx[k];
      if (v !== undefined) context[k] = v;
    }
    if (ctx.runPath !== undefined) context.runPath = ctx.runPath;
    const write = this.#ledger
      .append({
        key: p.key,
        status,
        at: new Date(this.#clock.wallNow()).toISOString(),
        context,
        detail,
        ...(ctx.runId !== undefined ? { runId: ctx.runId } : {}),
        ...(p.step !== undefined ? { step: p.step } : {}),
        ...(ctx.capability !== undefined ? { capability: ctx.capability } : {}),
        ...(flipSeq !== undefined ? { flipSeq } : {}),
      })
      .catch((err: unknown) => {
        // The cancellation already happened (nothing fires); only the record is missing.
        this.#writeError ??= err;
        this.#logger.warn(`scheduler: could not record ${status} for ${p.key}: ${String(err)}`);
      });
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
  }

  /** A back-off sleep that a halt (or close) clears at once. KS-7.1.2 */
  #sleep(p: Pending, ms: number): Promise<void> {
    let off: () => void = () => undefined;
    return p.op.race(
      new Promise<void>((resolve) => {
        const handle = this.#clock.setTimeout(() => {
          off();
          resolve();
        }, ms);
        off = p.op.onStop(() => this.#clock.clearTimeout(handle));
      }),
    );
  }
}

/** One pending retry loop or timer: a stoppable operation, and what the ledger says of it. */
class Pending {
  readonly op: StoppableOperation;
  /** The attempt a retry is at (from 1). */
  attempt = 1;
  /** When the sleep or timer is due, on the clock's monotonic scale. */
  dueAt = 0;

  constructor(
    readonly id: string,
    readonly kind: Kind,
    readonly ctx: KillContext,
    readonly key: string,
    readonly step: string | undefined,
    watcher: HaltWatcher,
  ) {
    this.op = new StoppableOperation({
      watcher,
      context: ctx,
      haltError: (s) => {
        const status = statusOf(this, s);
        const d = s.decision;
        return new HaltedError(
          status === EffectStatus.REFUSED ? ErrorCode.HALTED : ErrorCode.ABORTED,
          `${this.what} ${VERB[status]} by ${haltedBy(d)}`,
          d.cause ?? HaltCause.HALTED,
          d.flip,
          d.failClosed,
        );
      },
    });
  }

  /** What it is, in messages. */
  get what(): string {
    return this.kind === 'retry' ? `retry attempt ${this.attempt}` : 'timer';
  }
}

/**
 * What the ledger calls a stop by a halt: `refused` before a retry's first attempt or when a timer
 * is set (KS-7.1.7), `aborted` while an attempt or callback runs (KS-7.1.4), `cancelled` otherwise
 * (a sleep, a timer pending or checking when it fell due, a later attempt's check). KS-7.1.1
 */
function statusOf(
  p: Pending,
  s: { state: StoppedState; from: OperationState; by: StoppedBy },
): EffectStatus {
  if (s.state === OperationState.ABORTED) return EffectStatus.ABORTED;
  if (s.state === OperationState.REFUSED && s.by === 'check') {
    const first = p.kind === 'retry' ? p.attempt === 1 : s.from === OperationState.WATCHING;
    if (first) return EffectStatus.REFUSED;
  }
  return EffectStatus.CANCELLED;
}

const VERB: Readonly<Record<string, string>> = {
  [EffectStatus.REFUSED]: 'refused',
  [EffectStatus.ABORTED]: 'aborted',
  [EffectStatus.CANCELLED]: 'cancelled',
};

function haltedBy(d: KillDecision): string {
  return d.flip
    ? `halt #${d.flip.seq} on ${formatSelector(d.flip.selector)}`
    : `kill switch (${d.cause ?? HaltCause.HALTED}${d.failClosed ? `: ${d.failClosed}` : ''})`;
}

/** A timer's public state, read from its operation. */
function timerState(op: StoppableOperation, fired: boolean | undefined): TimerState {
  switch (op.state) {
    case OperationState.WATCHING:
      return TimerState.PENDING;
    case OperationState.CHECKING:
      return TimerState.CHECKING;
    case OperationState.RUNNING:
      return TimerState.RUNNING;
    case OperationState.SETTLED:
      // Settled a moment before the scheduler learnt how: still running, as far as anyone knows.
      return fired === undefined
        ? TimerState.RUNNING
        : fired
          ? TimerState.FIRED
          : TimerState.FAILED;
    case OperationState.ABORTED:
      return TimerState.ABORTED;
    default:
      // Stopped while its callback ran (the scheduler closed): aborted; otherwise cancelled.
      return op.stopped?.from === OperationState.RUNNING
        ? TimerState.ABORTED
        : TimerState.CANCELLED;
  }
}

function isHaltError(err: unknown): boolean {
  return (
    err instanceof KillSwitchError &&
    (err.code === ErrorCode.HALTED || err.code === ErrorCode.ABORTED)
  );
}
