import type { EvaluationContext, ResolutionDetails } from '@openfeature/server-sdk';

/**
 * The key of a provider's synchronous boolean resolution, for the guard's evaluation fast path
 * (src/hooks/evaluate-kill-flag.ts). A provider that has one answers from memory and never
 * awaits; the fast path then resolves the flag without the SDK's promise chain, but only where the
 * SDK would do nothing else (no hooks anywhere, the provider READY before and after). KS-4.7.2
 *
 * `Symbol.for`, so two copies of this package agree on it.
 */
export const RESOLVE_BOOLEAN_NOW: unique symbol = Symbol.for(
  'openfeature-kill-switch.resolveBooleanNow',
) as never;

/** A provider with a synchronous boolean resolution. */
export interface SynchronousBooleanResolver {
  /**
   * Resolves a boolean flag at once. Must return exactly what the provider's
   * `resolveBooleanEvaluation` resolves to for the same arguments, must not mutate `context` (it
   * is not frozen or copied on this path), and may throw where that method rejects.
   */
  [RESOLVE_BOOLEAN_NOW](flagKey: string, context: EvaluationContext): ResolutionDetails<boolean>;
}

/** Whether a provider offers {@link RESOLVE_BOOLEAN_NOW}. */
export function hasSynchronousResolution(
  provider: unknown,
): provider is SynchronousBooleanResolver {
  return (
    typeof provider === 'object' &&
    provider !== null &&
    typeof (provider as Partial<SynchronousBooleanResolver>)[RESOLVE_BOOLEAN_NOW] === 'function'
  );
}
