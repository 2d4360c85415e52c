/**
 * The one clock type of the project: every lease, deadline, wait, timer and time label comes in
 * through it, so tests drive time without sleeping (CONVENTIONS: clocks and timers come in through
 * small injected types) and a step of the wall clock cannot move a lease (DESIGN section 5: leases
 * and waits run on a monotonic clock).
 *
 * Two readings, kept apart on purpose:
 * - {@link Clock.now} is monotonic: it never goes back and is not stepped when the system time is
 *   set (NTP, an operator, a restored VM). Only differences between two readings mean anything.
 *   Leases, stale detection, deadlines, backoffs and waits use it. The system clock anchors it to
 *   the wall clock once, at process start (`performance.timeOrigin + performance.now()`), so its
 *   readings are epoch-like and processes started on one machine agree to well under a
 *   millisecond (the drill relies on this), but it does not follow later steps of the wall clock.
 * - {@link Clock.wallNow} is the wall clock (ms since the epoch). It may jump either way at any
 *   moment, so it is used only for labels a human or another process reads (`at` fields, ISO
 *   strings, token expiry dates set by a human), never to measure how long something took.
 *
 * Timers set with {@link Clock.setTimeout} run on the monotonic scale, as Node's timers do.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (only differences are meaningful). */
  now(): number;
  /** Milliseconds since the epoch on the wall clock: for labels only, it may step either way. */
  wallNow(): number;
  /** Calls `fn` once after `ms` milliseconds; returns a handle for {@link Clock.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer set by {@link Clock.setTimeout}; a no-op for one that already ran. */
  clearTimeout(handle: unknown): void;
}

/**
 * The process's clock: `performance.timeOrigin + performance.now()` (monotonic, anchored to the
 * wall clock at process start), `Date.now()` (wall) and the global timers.
 */
export const systemClock: Clock = Object.freeze({
  now: () => performance.timeOrigin + performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms),
  clearTimeout: (handle: unknown) => clearTimeout(handle as ReturnType<typeof setTimeout>),
});

/** Whether `value` has the shape of a {@link Clock} (for option checks). */
export function isClock(value: unknown): value is Clock {
  if (value === null || typeof value !== 'object') return false;
  const c = value as Record<string, unknown>;
  return (
    typeof c['now'] === 'function' &&
    typeof c['wallNow'] === 'function' &&
    typeof c['setTimeout'] === 'function' &&
    typeof c['clearTimeout'] === 'function'
  );
}

interface ManualTimer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/** Where a {@link ManualClock} starts. */
export interface ManualClockOptions {
  /** The first monotonic reading. @default 0 (ms) */
  readonly now?: number;
  /** The first wall-clock reading. @default 1_767_225_600_000 (2026-01-01T00:00:00Z, ms) */
  readonly wall?: number;
}

/**
 * A clock that moves only when told to, for tests. Its timers fire in due order inside
 * {@link ManualClock.advance} (which lets the promise chains they start run between firings) or
 * {@link ManualClock.advanceSync} (which does not wait for anything). Both readings move together
 * when time advances; {@link ManualClock.stepWall} moves the wall clock alone, as an NTP step or
 * an operator's `date -s` would, and leaves the monotonic reading and every timer where they are.
 *
 * @example
 * ```ts
 * const clock = new ManualClock();
 * const scheduler = new Scheduler({ watcher, ledger, clock });
 * await clock.advance(1_000); // fires every timer due in the next second
 * clock.stepWall(-600_000); // the wall clock jumps back 10 minutes; leases do not move
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #wallOffset: number;
  #nextId = 1;
  readonly #timers = new Map<number, ManualTimer>();

  constructor(options: ManualClockOptions = {}) {
    this.#now = options.now ?? 0;
    this.#wallOffset = (options.wall ?? 1_767_225_600_000) - this.#now;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#now + this.#wallOffset;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === 'number') this.#timers.delete(handle);
  }

  /** Timers set and neither fired nor cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Due times of the pending timers (monotonic scale), earliest first. */
  dueTimes(): number[] {
    return [...this.#timers.values()].map((t) => t.at).sort((a, b) => a - b);
  }

  /** Steps the wall clock by `ms` (either sign) without moving monotonic time or any timer. */
  stepWall(ms: number): void {
    this.#wallOffset += ms;
  }

  /**
   * Moves time forward by `ms`, firing each timer that falls due in order (timers set while
   * advancing fire too when they fall inside the window), and lets promise chains settle after
   * each firing.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + Math.max(0, ms);
    await settle();
    for (let next = this.#nextDue(target); next; next = this.#nextDue(target)) {
      this.#fire(next);
      await settle();
    }
    this.#now = target;
    await settle();
  }

  /** As {@link ManualClock.advance}, synchronously: nothing else runs between firings. */
  advanceSync(ms: number): void {
    const target = this.#now + Math.max(0, ms);
    for (let next = this.#nextDue(target); next; next = this.#nextDue(target)) this.#fire(next);
    this.#now = target;
  }

  #nextDue(target: number): ManualTimer | undefined {
    let next: ManualTimer | undefined;
    for (const t of this.#timers.values()) {
      if (
        t.at <= target &&
        (next === undefined || t.at < next.at || (t.at === next.at && t.id < next.id))
      )
        next = t;
    }
    return next;
  }

  #fire(timer: ManualTimer): void {
    this.#timers.delete(timer.id);
    this.#now = Math.max(this.#now, timer.at);
    timer.fn();
  }
}

/** Lets pending promise callbacks (and I/O callbacks already queued) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
