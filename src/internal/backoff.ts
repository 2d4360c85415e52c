/**
 * The one backoff of the project: the remote source's reconnects and resynchronisations, its
 * acknowledgement stream's retries, the PostgreSQL store's LISTEN reconnects and fleet channel, the
 * scheduler's retries and the MCP gateway's cancel retries all wait `delay(attempt, curve)`. (The console's browser script, which
 * cannot import it, keeps its own doubling from 500 ms to 8 s.)
 */
export interface BackoffCurve {
  /** The wait before the first retry (attempt 0), in ms. */
  readonly initialMs: number;
  /** Growth per further attempt (>= 1). */
  readonly factor: number;
  /** Upper bound of one wait, in ms. */
  readonly maxMs: number;
  /**
   * Share of each wait that is random, from 0 (none) to 1 ("full jitter"): the wait is
   * `base * (1 - jitter * random())`, so jitter only ever shortens it.
   */
  readonly jitter: number;
}

/** Past this many attempts the curve is flat (at `maxMs` for any factor > 1 worth having). */
const MAX_EXPONENT = 60;

/**
 * The wait before retry number `attempt` (0 for the first retry): `initialMs * factor^attempt`,
 * capped at `maxMs`, minus up to `jitter` of it at random, rounded to whole ms.
 *
 * @param attempt - retries already waited for (0-based); negative counts as 0
 * @param random - a source of numbers in [0, 1) (clamped). @default Math.random
 * @returns the wait in ms, never negative and never above `maxMs`
 */
export function delay(
  attempt: number,
  curve: BackoffCurve,
  random: () => number = Math.random,
): number {
  const { initialMs, factor, maxMs, jitter } = curve;
  const n = Math.min(Math.max(0, Math.floor(attempt)), MAX_EXPONENT);
  const base = Math.min(maxMs, initialMs * factor ** n);
  const r = jitter === 0 ? 0 : Math.min(1, Math.max(0, random()));
  return Math.max(0, Math.round(base * (1 - jitter * r)));
}
