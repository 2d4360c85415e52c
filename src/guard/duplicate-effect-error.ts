import { ErrorCode, KillSwitchError } from '../errors.js';
import type { LedgerEntry } from '../ledger/side-effect-ledger.js';

/** Why a key was not dispatched again. */
export const DuplicateState = {
  /** The ledger says the effect already landed (a resumed or retried run reached it again). */
  LANDED: 'landed',
  /** The ledger has an intent (or an abort) with no outcome: it may have landed. */
  IN_DOUBT: 'in-doubt',
  /** The same key is running in this guard right now. */
  IN_FLIGHT: 'in-flight',
} as const;
export type DuplicateState = (typeof DuplicateState)[keyof typeof DuplicateState];

/**
 * The guard did not dispatch an effect because its idempotency key is already landed, in doubt or
 * in flight; nothing was dispatched. KS-4.3.1, KS-4.3.2, KS-4.3.3
 *
 * @example
 * ```ts
 * try { await guard.run(effect, body); }
 * catch (e) { if (e instanceof DuplicateEffectError && e.state === 'landed') { // already done } }
 * ```
 */
export class DuplicateEffectError extends KillSwitchError {
  readonly key: string;
  readonly state: DuplicateState;
  /** The ledger entry that made the decision (absent for `in-flight`). */
  readonly entry: LedgerEntry | undefined;

  constructor(key: string, state: DuplicateState, entry: LedgerEntry | undefined) {
    const why =
      state === DuplicateState.LANDED
        ? 'already landed'
        : state === DuplicateState.IN_DOUBT
          ? `in doubt (last status ${entry?.status ?? 'unknown'}; it may have landed; declare the effect idempotent to dispatch it again)`
          : 'already running in this guard';
    super(ErrorCode.DUPLICATE_EFFECT, `effect ${key} not dispatched: ${why}`);
    this.name = 'DuplicateEffectError';
    this.key = key;
    this.state = state;
    this.entry = entry;
  }
}
