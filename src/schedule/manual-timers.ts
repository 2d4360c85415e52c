import type { TimerApi } from './timer-api.js';

interface ManualTimer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/**
 * A clock that moves only when told to: timers fire in due order inside {@link ManualTimers.advance},
 * and the promise chains they start get to run between firings. For tests of code that takes a
 * {@link TimerApi}; nothing here sleeps.
 *
 * @example
 * ```ts
 * const timers = new ManualTimers();
 * const scheduler = new Scheduler({ watcher, ledger, timers });
 * await timers.advance(1_000); // fires every timer due in the next second
 * ```
 */
export class ManualTimers implements TimerApi {
  #now: number;
  #nextId = 1;
  readonly #timers = new Map<number, ManualTimer>();

  /** @param start - the clock's first reading, ms since the epoch. @default 0 */
  constructor(start = 0) {
    this.#now = start;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === 'number') this.#timers.delete(handle);
  }

  now(): number {
    return this.#now;
  }

  /** Timers set and neither fired nor cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Due times of the pending timers, earliest first. */
  dueTimes(): number[] {
    return [...this.#timers.values()].map((t) => t.at).sort((a, b) => a - b);
  }

  /**
   * Moves the clock forward by `ms`, firing each timer that falls due in order (timers set while
   * advancing fire too when they fall inside the window), and lets promise chains settle after
   * each firing.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.#timers.values()) {
        if (
          t.at <= target &&
          (next === undefined || t.at < next.at || (t.at === next.at && t.id < next.id))
        )
          next = t;
      }
      if (next === undefined) break;
      this.#timers.delete(next.id);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }
}

/** Lets pending promise callbacks (and I/O callbacks already queued) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
