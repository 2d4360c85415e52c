import { Counter, type Registry } from 'prom-client';
import { ErrorCode, HaltedError, InvalidOptionError } from '../errors.js';
import type { GuardedEffect } from '../guard/effect-guard.js';
import type { GuardRunner } from '../telemetry/guard-runner.js';

/** Options of {@link GuardMetrics}. */
export interface GuardMetricsOptions {
  /** The worker's own registry (never prom-client's global one unless you pass it). */
  readonly registry: Registry;
}

/**
 * Worker-side counters of the effect guard (KS-11.2.3), registered in a registry the worker
 * owns and exposes with its own metrics:
 *
 * - `killswitch_effects_refused_total{capability, cause}`: effects refused before dispatch
 *   (`KS_HALTED`; nothing left);
 * - `killswitch_effects_aborted_total{capability, cause}`: effects aborted while running
 *   (`KS_ABORTED`).
 *
 * `cause` is `halted` (a matching halt), `stale` or `error` (the answer failed closed). The
 * `capability` label assumes capabilities are a bounded set of tool names, as they should be.
 *
 * @example
 * ```ts
 * const registry = new Registry();
 * const metrics = new GuardMetrics({ registry });
 * const guarded = metrics.wrap(new EffectGuard({ client, ledger }));
 * ```
 */
export class GuardMetrics {
  readonly #refused: Counter<'capability' | 'cause'>;
  readonly #aborted: Counter<'capability' | 'cause'>;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` without a registry */
  constructor(options: GuardMetricsOptions) {
    const registry = options?.registry;
    if (registry === undefined || typeof registry.registerMetric !== 'function') {
      throw new InvalidOptionError('registry', 'a prom-client Registry', registry);
    }
    this.#refused = new Counter({
      name: 'killswitch_effects_refused_total',
      help: 'Effects the guard refused before dispatch (KS_HALTED), by capability and cause.',
      labelNames: ['capability', 'cause'],
      registers: [registry],
    });
    this.#aborted = new Counter({
      name: 'killswitch_effects_aborted_total',
      help: 'Effects the guard aborted while they ran (KS_ABORTED), by capability and cause.',
      labelNames: ['capability', 'cause'],
      registers: [registry],
    });
  }

  /**
   * Counts an error thrown by a guarded run, if it is a refusal or an abort.
   *
   * @returns `refused`, `aborted`, or undefined for any other error
   */
  record(
    effect: Pick<GuardedEffect, 'capability'>,
    err: unknown,
  ): 'refused' | 'aborted' | undefined {
    if (!(err instanceof HaltedError)) return undefined;
    const labels = { capability: effect.capability, cause: err.haltCause };
    if (err.code === ErrorCode.ABORTED) {
      this.#aborted.inc(labels);
      return 'aborted';
    }
    this.#refused.inc(labels);
    return 'refused';
  }

  /** Wraps a guard: every refusal and abort it throws is counted, then rethrown unchanged. */
  wrap(inner: GuardRunner): GuardRunner {
    const run: GuardRunner['run'] = async (effect, body) => {
      try {
        return await inner.run(effect, body);
      } catch (err) {
        this.record(effect, err);
        throw err;
      }
    };
    return { run };
  }
}
