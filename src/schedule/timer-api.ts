/**
 * The timer functions the scheduler uses, injectable so tests run on a manual clock instead of
 * sleeping (CONVENTIONS: clocks and timers come in through small injected types). KS-7.1.12
 */
export interface TimerApi {
  /** Calls `fn` once after `ms` milliseconds; returns a handle for {@link TimerApi.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer set by {@link TimerApi.setTimeout}; a no-op for a timer that already ran. */
  clearTimeout(handle: unknown): void;
  /** Milliseconds since the epoch, on the same clock as the timers. */
  now(): number;
}

/** The process's own timers and clock. */
export const systemTimers: TimerApi = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};
