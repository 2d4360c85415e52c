import { ErrorCode, KillSwitchError } from '../errors.js';
import type { KillContext } from '../model/selector.js';
import { watchUnlessDrained, type DrainPermit } from './drain-permit.js';
import type { HaltWatcher } from './halt-watcher.js';
import type { KillDecision } from './kill-decision.js';

/**
 * The life of one stoppable operation: a guarded effect, a retry loop, a timer, a queued task.
 *
 * ```
 *            check          start          body settles
 * watching ───────> checking ─────> running ─────────────> settled
 *    │                 │  └──── nothing to run ───────────────^
 *    │                 │               │  └── body fails, the owner retries ──> watching
 *  halt: cancelled  halt: refused   halt: aborted
 *  refuse: refused  refuse: refused                   (any live state: cancel -> cancelled)
 * ```
 *
 * - `watching`: waiting for its turn (a timer not due, a retry's back-off, a task not yet taken);
 *   the watch is already armed. A halt cancels it at once.
 * - `checking`: the checks before dispatch run (ledger, evaluation, intent). A halt refuses it:
 *   nothing was dispatched, and the owner's next step sees it stopped.
 * - `running`: the body runs with {@link StoppableOperation.signal}. A halt aborts the signal and
 *   frees the caller at once, whether or not the body listens. KS-4.2.4
 * - `settled`, `refused`, `aborted`, `cancelled`: final; a later halt does nothing.
 */
export const OperationState = {
  WATCHING: 'watching',
  CHECKING: 'checking',
  RUNNING: 'running',
  SETTLED: 'settled',
  REFUSED: 'refused',
  ABORTED: 'aborted',
  CANCELLED: 'cancelled',
} as const;
export type OperationState = (typeof OperationState)[keyof typeof OperationState];

/** The states an operation is stopped in (not settled by its body). */
export type StoppedState =
  typeof OperationState.REFUSED | typeof OperationState.ABORTED | typeof OperationState.CANCELLED;

/**
 * Who stopped an operation: a halt that arrived (through the watch, or an owner's
 * {@link StoppableOperation.halt}), the owner's own check that answered halted
 * ({@link StoppableOperation.refuse}), or the owner ({@link StoppableOperation.cancel}).
 */
export type StoppedBy = 'halt' | 'check' | 'owner';

/** A stop by a halt, as the error factory learns it. */
export interface HaltStop {
  /** The state it stops in. */
  readonly state: StoppedState;
  /** The live state it was in. */
  readonly from: OperationState;
  readonly by: Exclude<StoppedBy, 'owner'>;
  /** The halt. */
  readonly decision: KillDecision;
}

/** How an operation was stopped, as its stop listeners learn it. */
export interface OperationStop {
  /** The state it stopped in. */
  readonly state: StoppedState;
  /** The live state it was in when stopped. */
  readonly from: OperationState;
  readonly by: StoppedBy;
  /** The halt that stopped it; undefined when its owner cancelled it. */
  readonly decision: KillDecision | undefined;
  /** What the caller is rejected with and the signal aborted with. */
  readonly error: unknown;
}

/** What a body's settling, after the operation had stopped, turned out to be. */
export type LateOutcome =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** Options of {@link StoppableOperation}. */
export interface StoppableOperationOptions {
  /** Where halts come from. */
  readonly watcher: HaltWatcher;
  /** The context watched for a halt. */
  readonly context: KillContext;
  /** A queued task's permit: the drain halts it covers do not stop the operation. KS-4.8.4 */
  readonly permit?: DrainPermit;
  /**
   * The error a halt stops the operation with (the owner's words: "effect k refused: ...").
   * Called once, when it stops.
   */
  readonly haltError: (stop: HaltStop) => unknown;
}

/** Options of {@link StoppableOperation.run}. */
export interface RunOptions {
  /**
   * Called when the body rejects while running: true sends the operation back to `watching`
   * (the owner will try again) instead of `settled`. A throw settles it and rejects with that.
   * @default never again
   */
  readonly again?: (error: unknown) => boolean;
  /** Told how a body that was still running when the operation stopped finally settled. */
  readonly onLate?: (outcome: LateOutcome) => void;
}

const LIVE: ReadonlySet<OperationState> = new Set([
  OperationState.WATCHING,
  OperationState.CHECKING,
  OperationState.RUNNING,
]);

/** What a halt does in each live state (CONVENTIONS: one stoppable operation). */
const HALT_TO: Readonly<Record<string, StoppedState>> = {
  [OperationState.WATCHING]: OperationState.CANCELLED,
  [OperationState.CHECKING]: OperationState.REFUSED,
  [OperationState.RUNNING]: OperationState.ABORTED,
};

/**
 * One operation a halt must stop, whichever part of the runtime owns it: the effect guard's
 * effects, the scheduler's retries and timers, the queue controller's tasks. It watches its
 * context from construction (before any check, so a halt between the check and the dispatch is
 * not missed, KS-4.1.3), moves through named states ({@link OperationState}), and hands a halt to
 * whatever it is doing in exactly one way: cancel the wait, refuse the dispatch, or abort the
 * body's signal and free the caller. Every transition not in the diagram is refused: from a
 * stopped state with the stop's error, from any other with `KS_INTERNAL`.
 *
 * Internal: owners wrap it; it is not part of the public API.
 */
export class StoppableOperation {
  readonly #unwatch: () => void;
  readonly #haltError: StoppableOperationOptions['haltError'];
  #state: OperationState = OperationState.WATCHING;
  #stop: OperationStop | undefined;
  #controller: AbortController | undefined;
  #listeners: ((stop: OperationStop) => void)[] = [];

  constructor(options: StoppableOperationOptions) {
    this.#haltError = options.haltError;
    // KS-4.1.3 watch first; KS-4.8.4 a drain halt the permit covers does not fire.
    this.#unwatch = watchUnlessDrained(options.watcher, options.context, options.permit, (d) =>
      this.halt(d),
    );
  }

  /** Where the operation is. */
  get state(): OperationState {
    return this.#state;
  }

  /** How it was stopped, once it is `refused`, `aborted` or `cancelled`. */
  get stopped(): OperationStop | undefined {
    return this.#stop;
  }

  /** Aborts (with the stop's error) when the operation stops. Created on first use. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#stop !== undefined) this.#controller.abort(this.#stop.error);
    }
    return this.#controller.signal;
  }

  /**
   * A matching halt (the watcher calls this; owners call it to stop an operation as a halt
   * would, e.g. when a guard closes): `watching` is cancelled, `checking` refused, `running`
   * aborted. Does nothing once settled or stopped.
   *
   * @returns whether it stopped the operation
   */
  halt(d: KillDecision): boolean {
    const state = HALT_TO[this.#state];
    if (state === undefined) return false;
    this.#stopByHalt({ state, from: this.#state, by: 'halt', decision: d });
    return true;
  }

  /**
   * The owner cancels it (not a halt): any live state becomes `cancelled`, with `error`.
   *
   * @returns whether it stopped the operation
   */
  cancel(error: unknown): boolean {
    if (!LIVE.has(this.#state)) return false;
    this.#stopWith({
      state: OperationState.CANCELLED,
      from: this.#state,
      by: 'owner',
      decision: undefined,
      error,
    });
    return true;
  }

  /** `watching` -> `checking`: its turn came; the checks before dispatch start. */
  check(): void {
    this.#move(OperationState.CHECKING, OperationState.WATCHING, 'check');
  }

  /**
   * `watching` or `checking` -> `refused`: the owner's own evaluation answered halted.
   *
   * @returns the stop's error, for the owner to record and throw
   */
  refuse(d: KillDecision): unknown {
    if (this.#state !== OperationState.WATCHING && this.#state !== OperationState.CHECKING)
      this.#illegal('refuse');
    return this.#stopByHalt({
      state: OperationState.REFUSED,
      from: this.#state,
      by: 'check',
      decision: d,
    });
  }

  /** `checking` -> `running`, for a body the owner runs itself with {@link signal}. */
  start(): void {
    this.#move(OperationState.RUNNING, OperationState.CHECKING, 'start');
  }

  /**
   * `running` -> `settled`: the body the owner ran itself finished; or `checking` -> `settled`:
   * there was nothing to run (the effect had already landed and its result is replayed).
   */
  settle(): void {
    if (this.#state !== OperationState.RUNNING && this.#state !== OperationState.CHECKING)
      this.#illegal('settle');
    this.#finish(OperationState.SETTLED);
  }

  /**
   * `checking` -> `running`, then runs `body` with the signal. Settles with the body (the state is
   * `settled` before the caller learns it, or `watching` when `again` says so), or rejects with
   * the stop's error the moment the operation stops, without waiting for the body. KS-4.2.4
   *
   * @throws synchronously, as {@link start} does, when it is not `checking`
   */
  run<T>(body: (signal: AbortSignal) => T | Promise<T>, options: RunOptions = {}): Promise<T> {
    return this.#run(() => body(this.signal), options);
  }

  /**
   * {@link run}, handing the body the operation itself instead of its signal: a body that links
   * to it with {@link onStop} (or reads {@link signal} only when it needs one) costs no
   * `AbortController` (the adapters' tool calls, KS-14.1.3). The stop reaches the body the same
   * way, synchronously, before the caller is rejected.
   */
  runLazily<T>(body: (op: this) => T | Promise<T>, options: RunOptions = {}): Promise<T> {
    return this.#run(() => body(this), options);
  }

  #run<T>(call: () => T | Promise<T>, options: RunOptions): Promise<T> {
    this.#move(OperationState.RUNNING, OperationState.CHECKING, 'run');
    let p: Promise<T>;
    try {
      p = Promise.resolve(call());
    } catch (err) {
      p = Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) => {
      const off = this.onStop((s) => reject(s.error));
      p.then(
        (value) => {
          off();
          if (this.#state !== OperationState.RUNNING) {
            options.onLate?.({ ok: true, value });
            return;
          }
          this.#finish(OperationState.SETTLED);
          resolve(value);
        },
        (error: unknown) => {
          off();
          if (this.#state !== OperationState.RUNNING) {
            options.onLate?.({ ok: false, error });
            return;
          }
          let next: OperationState = OperationState.SETTLED;
          let why = error;
          try {
            if (options.again?.(error) === true) next = OperationState.WATCHING;
          } catch (err) {
            why = err;
          }
          if (next === OperationState.WATCHING) this.#state = next;
          else this.#finish(OperationState.SETTLED);
          reject(why);
        },
      );
    });
  }

  /** Settles with `p`, or rejects with the stop's error the moment the operation stops. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.#stop !== undefined) {
      p.catch(() => undefined);
      return Promise.reject(this.#stop.error);
    }
    return new Promise<T>((resolve, reject) => {
      const off = this.onStop((s) => reject(s.error));
      p.then(
        (v) => {
          off();
          resolve(v);
        },
        (e: unknown) => {
          off();
          reject(e);
        },
      );
    });
  }

  /**
   * Calls `listener` once when the operation stops (at once, synchronously, after the signal
   * aborted). A listener added after it stopped is called at once.
   *
   * @returns a function that removes the listener
   */
  onStop(listener: (stop: OperationStop) => void): () => void {
    if (this.#stop !== undefined) {
      listener(this.#stop);
      return () => undefined;
    }
    if (this.#state === OperationState.SETTLED) return () => undefined;
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Throws the stop's error when the operation stopped. */
  throwIfStopped(): void {
    if (this.#stop !== undefined) throw this.#stop.error;
  }

  #move(to: OperationState, from: OperationState, verb: string): void {
    if (this.#state !== from) this.#illegal(verb);
    this.#state = to;
  }

  #illegal(verb: string): never {
    this.throwIfStopped();
    throw new KillSwitchError(
      ErrorCode.INTERNAL,
      `stoppable operation: cannot ${verb} while ${this.#state}`,
    );
  }

  #finish(to: OperationState): void {
    this.#state = to;
    this.#unwatch();
    this.#listeners = [];
  }

  #stopByHalt(h: HaltStop): unknown {
    const error = this.#haltError(h);
    this.#stopWith({ ...h, error });
    return error;
  }

  #stopWith(stop: OperationStop): void {
    this.#stop = stop;
    this.#state = stop.state;
    this.#unwatch();
    this.#controller?.abort(stop.error);
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const l of listeners) l(stop);
  }
}
