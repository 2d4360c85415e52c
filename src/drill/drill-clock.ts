/**
 * One time basis for every drill process: epoch milliseconds with sub-millisecond precision.
 *
 * `performance.timeOrigin + performance.now()` ticks with the monotonic clock and is anchored to
 * the wall clock once, at process start; processes started on the same machine within seconds of
 * each other agree to well under a millisecond, which `Date.now()` (1 ms steps) cannot give.
 */
export type DrillClock = () => number;

/** The default {@link DrillClock}. */
export const drillNow: DrillClock = () => performance.timeOrigin + performance.now();
