import { InvalidOptionError } from '../errors.js';
import type { HaltWatcher } from '../guard/halt-watcher.js';
import { systemClock, type Clock } from '../internal/clock.js';

/** Options of {@link HaltPoller}. */
export interface HaltPollerOptions {
  /** The watcher to re-check (`guard.watcher`). Required. */
  readonly watcher: HaltWatcher;
  /** Time between re-checks; the longest an in-flight effect runs on after its halt. @default 1000 ms */
  readonly intervalMs?: number;
  /** Timers and clock. @default the process's own */
  readonly clock?: Clock;
}

/**
 * Re-evaluates every watched context on a fixed interval, for backends that never tell the SDK
 * that a flag changed (the OFREP server provider evaluates remotely per call and emits no events).
 * Without it a guard over such a backend still refuses every new effect after a flip, but never
 * aborts one already running: that needs a push. With it an in-flight effect is aborted within
 * `intervalMs` (plus one evaluation round trip) of the flip. KS-12.2.3
 *
 * Each round waits for the previous one (a slow server never stacks evaluations).
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing watcher or a bad interval
 * @example
 * ```ts
 * const poller = new HaltPoller({ watcher: guard.watcher, intervalMs: 1000 });
 * poller.start();
 * // ...
 * poller.stop();
 * ```
 */
export class HaltPoller {
  readonly #watcher: HaltWatcher;
  readonly #intervalMs: number;
  readonly #clock: Clock;
  #handle: unknown;
  #running = false;

  constructor(options: HaltPollerOptions) {
    const watcher = options?.watcher;
    if (watcher === undefined || typeof watcher.recheck !== 'function') {
      throw new InvalidOptionError('watcher', 'a HaltWatcher', watcher);
    }
    const intervalMs = options.intervalMs ?? 1000;
    if (!Number.isSafeInteger(intervalMs) || intervalMs < 1) {
      throw new InvalidOptionError('intervalMs', 'a positive integer (ms)', intervalMs);
    }
    this.#watcher = watcher;
    this.#intervalMs = intervalMs;
    this.#clock = options.clock ?? systemClock;
  }

  /** True between {@link start} and {@link stop}. */
  get running(): boolean {
    return this.#running;
  }

  /** Starts polling (idempotent). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  /** Stops polling; a round in progress finishes but schedules nothing. */
  stop(): void {
    this.#running = false;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  #schedule(): void {
    this.#handle = this.#clock.setTimeout(() => {
      this.#handle = undefined;
      void this.#watcher
        .recheck()
        .catch(() => {
          // recheck evaluates failing closed and never rejects; keep polling regardless.
        })
        .finally(() => {
          if (this.#running) this.#schedule();
        });
    }, this.#intervalMs);
    (this.#handle as { unref?: () => void } | undefined)?.unref?.();
  }
}
