import { systemClock, type Clock } from '../internal/clock.js';
import { ErrorCode, HaltedError, InvalidOptionError } from '../errors.js';
import { HaltCause } from '../model/halt-cause.js';
import { scopedEffect, type EffectBody, type GuardedEffect } from '../guard/effect-guard.js';
import { EffectStatus, effectKey, type SideEffectLedger } from '../ledger/side-effect-ledger.js';
import { normalizeSelector, type KillContext } from '../model/selector.js';
import type { GuardRunner } from '../telemetry/guard-runner.js';
import type { WriteRateTripwire } from './write-rate-tripwire.js';

/** Options of {@link TripwireGuard}. */
export interface TripwireGuardOptions {
  /** The guard (or a wrapper of it) that runs admitted effects. */
  readonly guard: GuardRunner;
  /** One or more tripwires; an effect is admitted only when none refuses it. */
  readonly tripwires: readonly WriteRateTripwire[];
  /**
   * Where refusals by a tripwire are recorded (status `refused`, with the trip in `detail`); pass
   * the guard's ledger so the recovery report sees them. @default not recorded
   */
  readonly ledger?: SideEffectLedger;
  /** Clock: its wall reading stamps ledger times. @default systemClock */
  readonly clock?: Clock;
}

/**
 * Puts write-rate tripwires in front of an effect guard (KS-11.4.1): each effect is admitted by
 * every tripwire before the guard runs it; the effect that crosses a limit, and the scope's
 * effects after it until the halt is in force, are refused with {@link HaltedError} `KS_HALTED`
 * and nothing is dispatched (KS-11.4.3). An effect the guard itself refuses is not counted
 * towards the rate (it did not leave).
 *
 * @example
 * ```ts
 * const guarded = new TripwireGuard({ guard, ledger, tripwires: [perCapability, perTenant] });
 * await guarded.run(effect, (signal) => send(signal));
 * ```
 */
export class TripwireGuard implements GuardRunner {
  readonly #guard: GuardRunner;
  readonly #tripwires: readonly WriteRateTripwire[];
  readonly #ledger: SideEffectLedger | undefined;
  readonly #clock: Clock;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: TripwireGuardOptions) {
    if (typeof options?.guard?.run !== 'function') {
      throw new InvalidOptionError('guard', 'a guard with run(effect, body)', options?.guard);
    }
    if (
      !Array.isArray(options.tripwires) ||
      options.tripwires.some((t) => typeof t?.admit !== 'function')
    ) {
      throw new InvalidOptionError('tripwires', 'an array of WriteRateTripwire', options.tripwires);
    }
    if (options.ledger !== undefined && typeof options.ledger.append !== 'function') {
      throw new InvalidOptionError('ledger', 'a SideEffectLedger', options.ledger);
    }
    this.#guard = options.guard;
    this.#tripwires = [...options.tripwires];
    this.#ledger = options.ledger;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Admits the effect through every tripwire, then runs it through the guard.
   *
   * @throws {HaltedError} `KS_HALTED` when a tripwire refuses it, and whatever the guard throws
   */
  async run<T>(given: GuardedEffect<T>, body: EffectBody<T>): Promise<T> {
    // KS-4.9.2: inside a run scope the effect's run and context come from the scope.
    const effect = scopedEffect(given);
    const selector = normalizeSelector({
      ...(effect.context ?? {}),
      runId: effect.runId,
      capability: effect.capability,
    });
    const ctx: KillContext =
      effect.context.runPath === undefined
        ? selector
        : { ...selector, runPath: effect.context.runPath };
    const admitted: WriteRateTripwire[] = [];
    for (const t of this.#tripwires) {
      const v = t.admit(ctx);
      if (!v.tripped) {
        admitted.push(t);
        continue;
      }
      for (const a of admitted) a.release(ctx);
      const key = effect.key ?? effectKey(effect.runId, effect.step);
      const err = new HaltedError(
        ErrorCode.HALTED,
        `effect ${key} refused: ${v.reason} (flip ${v.flipId})`,
        HaltCause.HALTED,
        undefined,
      );
      await this.#record(effect, ctx, key, err.message);
      throw err;
    }
    try {
      return await this.#guard.run(effect, body);
    } catch (err) {
      if (err instanceof HaltedError && err.code === ErrorCode.HALTED) {
        for (const a of admitted) a.release(ctx);
      }
      throw err;
    }
  }

  async #record(
    effect: GuardedEffect<unknown> & { readonly runId: string },
    ctx: KillContext,
    key: string,
    detail: string,
  ): Promise<void> {
    if (this.#ledger === undefined) return;
    try {
      await this.#ledger.append({
        key,
        status: EffectStatus.REFUSED,
        at: new Date(this.#clock.wallNow()).toISOString(),
        runId: effect.runId,
        step: effect.step,
        capability: effect.capability,
        context: ctx,
        detail: detail.slice(0, 4096),
      });
    } catch {
      // The refusal stands whether or not it could be recorded (nothing was dispatched).
    }
  }
}
