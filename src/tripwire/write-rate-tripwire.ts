import { createHash } from 'node:crypto';
import { InvalidOptionError } from '../errors.js';
import { DEFAULT_QUEUE_MODE, type QueueMode } from '../model/flip-record.js';
import { formatSelector, type KillContext, type Selector } from '../model/selector.js';
import { systemClock, type Clock } from '../internal/clock.js';
import type { TripwireFlip, TripwireFlipRequest } from './tripwire-flip.js';
import { intOption } from '../internal/int-option.js';

/** The context attribute a write-rate tripwire counts by. */
export const TripwireScope = { CAPABILITY: 'capability', TENANT: 'tenant' } as const;
export type TripwireScope = (typeof TripwireScope)[keyof typeof TripwireScope];

/** Options of {@link WriteRateTripwire}. Times in milliseconds. */
export interface WriteRateTripwireOptions {
  /** Count effects per capability or per tenant. */
  readonly by: TripwireScope;
  /** Trip when more than this many effects of one scope value fall within `windowMs`. */
  readonly limit: number;
  /** The sliding window. */
  readonly windowMs: number;
  /** Pulls the lever: appends the halt (over the control plane's API, or to a store). */
  readonly flip: TripwireFlip;
  /** Queue mode of the halt. @default 'discard' */
  readonly mode?: QueueMode;
  /**
   * How long after the halt was acknowledged the tripwire keeps refusing the scope on its own.
   * It covers the time the halt takes to reach this process's flag source; make it at least the
   * source's `staleAfterMs` plus one heartbeat, after which a source that has not applied the
   * halt fails closed anyway. @default 10000
   */
  readonly latchMs?: number;
  /** Retry a flip that failed after this long (the scope stays refused meanwhile). @default 1000 */
  readonly retryMs?: number;
  /** Most scope values tracked at once; beyond, the least recently seen is forgotten. @default 10000 */
  readonly maxScopes?: number;
  /**
   * Clock and timers: windows and latches on its monotonic `now()`, the times in a trip's reason
   * and id from its wall clock. @default the process's ({@link systemClock})
   */
  readonly clock?: Clock;
  /** Told when a flip fails (it is retried). @default console */
  readonly logger?: { warn(message: string): void };
}

/** What {@link WriteRateTripwire.admit} decided for one effect. */
export type TripwireVerdict =
  | { readonly tripped: false }
  | {
      readonly tripped: true;
      readonly selector: Selector;
      /** The halt's reason, with the figures. */
      readonly reason: string;
      /** The flip id of the halt this trip appends. */
      readonly flipId: string;
    };

/** The state of one tripped scope. */
const LatchState = {
  /** The flip is being appended (or retried). */
  FLIPPING: 'flipping',
  /** The flip is in the log; refusing until `until`. */
  HELD: 'held',
} as const;
type LatchState = (typeof LatchState)[keyof typeof LatchState];

interface Latch {
  state: LatchState;
  until: number;
  readonly request: TripwireFlipRequest;
  timer: unknown;
}

interface Scope {
  /** Admission times in the window, oldest first (at most limit + 1 kept). */
  times: number[];
  latch: Latch | undefined;
}

const NOT_TRIPPED: TripwireVerdict = Object.freeze({ tripped: false });

/**
 * A write-rate tripwire (DESIGN section 7, KS-11.4): more than `limit` effects of one capability
 * (or tenant) within `windowMs` halts that capability (or tenant) through the flip log, with
 * source `tripwire` and the figures in the reason. One reason is enough: it does not wait for a
 * second signal.
 *
 * The effect that crosses the limit is refused, and so is every later effect of that scope, by
 * the tripwire itself, from the trip until `latchMs` after the halt was appended: the halt takes
 * time to come back through the flag source, and nothing of the scope may leave meanwhile
 * (KS-11.4.3). A flip that fails is retried with the same id (one trip is one flip, KS-11.4.2)
 * and the scope stays refused until it succeeds: the tripwire fails closed.
 *
 * Use it through {@link TripwireGuard}, which admits each effect before the guard runs it.
 *
 * @example
 * ```ts
 * const tripwire = new WriteRateTripwire({
 *   by: 'capability', limit: 100, windowMs: 10_000,
 *   flip: controlPlaneTripwireFlip(new ControlPlaneClient({ url, token })),
 * });
 * ```
 */
export class WriteRateTripwire {
  readonly by: TripwireScope;
  readonly limit: number;
  readonly windowMs: number;
  readonly #flip: TripwireFlip;
  readonly #mode: QueueMode;
  readonly #latchMs: number;
  readonly #retryMs: number;
  readonly #maxScopes: number;
  readonly #clock: Clock;
  readonly #logger: { warn(message: string): void };
  /** Scope value -> state; Map order is least recently seen first. */
  readonly #scopes = new Map<string, Scope>();
  #trips = 0;
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` naming the bad option */
  constructor(options: WriteRateTripwireOptions) {
    const o = options ?? ({} as WriteRateTripwireOptions);
    if (o.by !== 'capability' && o.by !== 'tenant') {
      throw new InvalidOptionError('by', "'capability' or 'tenant'", o.by);
    }
    if (typeof o.flip !== 'function') throw new InvalidOptionError('flip', 'a function', o.flip);
    if (o.mode !== undefined && !['discard', 'hold', 'drain'].includes(o.mode)) {
      throw new InvalidOptionError('mode', "'discard', 'hold' or 'drain'", o.mode);
    }
    this.by = o.by;
    this.limit = intOption('limit', o.limit, 1);
    this.windowMs = intOption('windowMs', o.windowMs, 1);
    this.#latchMs = intOption('latchMs', o.latchMs ?? 10_000, 0);
    this.#retryMs = intOption('retryMs', o.retryMs ?? 1000, 1);
    this.#maxScopes = intOption('maxScopes', o.maxScopes ?? 10_000, 1);
    this.#flip = o.flip;
    this.#mode = o.mode ?? DEFAULT_QUEUE_MODE;
    this.#clock = o.clock ?? systemClock;
    this.#logger = o.logger ?? console;
  }

  /** How many times the tripwire tripped since it was built. */
  get trips(): number {
    return this.#trips;
  }

  /**
   * Admits one effect about to be dispatched, and counts it. Effects whose context lacks the
   * scope attribute are not counted.
   *
   * @returns `{ tripped: false }` to let it through, or the trip that refuses it
   */
  admit(ctx: KillContext): TripwireVerdict {
    const value = ctx[this.by];
    if (typeof value !== 'string' || value === '') return NOT_TRIPPED;
    const now = this.#clock.now();
    const scope = this.#scope(value);
    const latch = scope.latch;
    if (latch !== undefined) {
      if (latch.state === LatchState.FLIPPING || now < latch.until) return verdict(latch.request);
      // The latch ran out: the halt is in this process's kill state by now (or it fails closed).
      scope.latch = undefined;
      scope.times = [];
    }
    if (this.#closed) return NOT_TRIPPED;
    const from = now - this.windowMs;
    let drop = 0;
    while (drop < scope.times.length && scope.times[drop]! <= from) drop++;
    if (drop > 0) scope.times.splice(0, drop);
    scope.times.push(now);
    if (scope.times.length <= this.limit) return NOT_TRIPPED;
    return verdict(this.#trip(value, scope, now));
  }

  /**
   * Takes back an admission: the effect was refused by the guard (it did not leave), so it does
   * not count towards the rate. Without this, callers retrying against an active halt would trip
   * the tripwire again and again.
   */
  release(ctx: KillContext): void {
    const value = ctx[this.by];
    if (typeof value !== 'string') return;
    const scope = this.#scopes.get(value);
    if (scope === undefined || scope.latch !== undefined) return;
    scope.times.pop();
  }

  /** Stops retrying flips and stops tripping (latched scopes stay refused). */
  close(): void {
    this.#closed = true;
    for (const s of this.#scopes.values()) {
      if (s.latch?.timer !== undefined) this.#clock.clearTimeout(s.latch.timer);
    }
  }

  #scope(value: string): Scope {
    let scope = this.#scopes.get(value);
    if (scope !== undefined) {
      // Most recently seen goes last.
      this.#scopes.delete(value);
      this.#scopes.set(value, scope);
      return scope;
    }
    scope = { times: [], latch: undefined };
    this.#scopes.set(value, scope);
    if (this.#scopes.size > this.#maxScopes) {
      for (const [k, s] of this.#scopes) {
        // A latched scope is never forgotten: forgetting it would let its effects through.
        if (s.latch === undefined) {
          this.#scopes.delete(k);
          break;
        }
      }
    }
    return scope;
  }

  #trip(value: string, scope: Scope, now: number): TripwireFlipRequest {
    this.#trips++;
    const count = scope.times.length;
    const first = scope.times[0]!;
    // Windows run on the monotonic clock; the id and the reason carry wall-clock times.
    const wall = Math.round(this.#clock.wallNow());
    const firstWall = Math.round(wall - (now - first));
    const selector: Selector = { [this.by]: value };
    const request: TripwireFlipRequest = {
      // KS-11.4.2 one trip, one id: a retried flip is the same flip.
      id: `tripwire-${this.by}-${createHash('sha256').update(value).digest('hex').slice(0, 16)}-${wall}`,
      selector,
      reason:
        `write-rate tripwire: ${count} effects on ${formatSelector(selector)} within ${this.windowMs} ms ` +
        `(limit ${this.limit}; first at ${new Date(firstWall).toISOString()}, tripped at ${new Date(wall).toISOString()})`,
      mode: this.#mode,
      source: 'tripwire',
    };
    scope.times = [];
    const latch: Latch = { state: LatchState.FLIPPING, until: Infinity, request, timer: undefined };
    scope.latch = latch;
    this.#attempt(value, latch, 1);
    return request;
  }

  #attempt(value: string, latch: Latch, attempt: number): void {
    let p: Promise<void>;
    try {
      p = Promise.resolve(this.#flip(latch.request));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        latch.state = LatchState.HELD;
        latch.until = this.#clock.now() + this.#latchMs;
      },
      (err: unknown) => {
        this.#logger.warn(
          `write-rate tripwire: halting ${formatSelector(latch.request.selector)} failed (attempt ${attempt}): ${
            (err as Error)?.message ?? String(err)
          }; the scope stays refused here and the flip is retried in ${this.#retryMs} ms`,
        );
        if (this.#closed) return;
        latch.timer = this.#clock.setTimeout(() => {
          latch.timer = undefined;
          if (!this.#closed && this.#scopes.get(value)?.latch === latch) {
            this.#attempt(value, latch, attempt + 1);
          }
        }, this.#retryMs);
      },
    );
  }
}

function verdict(r: TripwireFlipRequest): TripwireVerdict {
  return { tripped: true, selector: r.selector, reason: r.reason, flipId: r.id };
}
