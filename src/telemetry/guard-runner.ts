import type { EffectGuard } from '../guard/effect-guard.js';

/**
 * Anything that runs guarded effects like {@link EffectGuard.run}: the guard itself, or a wrapper
 * around it (tracing, metrics, a tripwire). Wrappers take and return this type, so they compose:
 * `traceGuard(metrics.wrap(new TripwireGuard({ guard, tripwire })))`.
 */
export type GuardRunner = Pick<EffectGuard, 'run'>;
