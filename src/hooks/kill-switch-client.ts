import type { Client, EvaluationContext, FlagEvaluationOptions } from '@openfeature/server-sdk';
import { isKillFlag } from '../model/flags.js';
import { evaluateKillFlag } from './evaluate-kill-flag.js';

/**
 * Wraps an OpenFeature client so that `getBooleanValue` and `getBooleanDetails` of kill flags go
 * through {@link evaluateKillFlag}: the caller's default is ignored (always `true`), and every
 * abnormal path answers halted. Other flags and every other method pass through unchanged.
 * KS-3.6.2
 *
 * @param client - any OpenFeature server client
 * @returns a client with the same interface
 * @example
 * ```ts
 * const client = killSwitchClient(OpenFeature.getClient());
 * await client.getBooleanValue('kill-switch', false, { tenant: 'acme' }); // false only when cleanly running
 * ```
 */
export function killSwitchClient(client: Client): Client {
  const getBooleanDetails = (
    flagKey: string,
    defaultValue: boolean,
    context?: EvaluationContext,
    options?: FlagEvaluationOptions,
  ) =>
    isKillFlag(flagKey)
      ? evaluateKillFlag(client, flagKey, context, options)
      : client.getBooleanDetails(flagKey, defaultValue, context, options);
  const getBooleanValue = async (
    flagKey: string,
    defaultValue: boolean,
    context?: EvaluationContext,
    options?: FlagEvaluationOptions,
  ) => (await getBooleanDetails(flagKey, defaultValue, context, options)).value;
  const proxy: Client = new Proxy(client, {
    get(target, prop) {
      if (prop === 'getBooleanDetails') return getBooleanDetails;
      if (prop === 'getBooleanValue') return getBooleanValue;
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      // Fluent methods (addHooks, setContext, ...) return the client: keep callers on the wrapper.
      return (...args: unknown[]) => {
        const r: unknown = (v as (...a: unknown[]) => unknown).apply(target, args);
        return r === target ? proxy : r;
      };
    },
  });
  return proxy;
}
