import {
  ErrorCode as OpenFeatureErrorCode,
  ProviderStatus,
  StandardResolutionReasons,
  type Client,
  type EvaluationContext,
  type EvaluationDetails,
  type FlagEvaluationOptions,
} from '@openfeature/server-sdk';

/**
 * Evaluates a kill flag so that every abnormal path answers halted, whatever the provider:
 * `true` is passed as the default (the SDK returns the caller's default when no provider is
 * bound, while `initialize()` is pending, when the provider is FATAL, when a hook or the
 * resolver throws, and for any resolution with an `errorCode`), and the answer is `false`
 * (running) only when the resolution is exactly `false`, carries no `errorCode`, its reason is
 * neither ERROR nor STALE, and the client's provider was READY before and after the call.
 * Anything else (a non-boolean value, an error, a rejected promise, a provider in ERROR, STALE,
 * NOT_READY or FATAL) is answered `{ value: true, variant: 'fail-closed', reason: 'ERROR' | 'STALE' }`.
 * Never rejects. KS-3.6.1, KS-3.6.2
 *
 * A hook cannot give this guarantee (KS-3.6.3): in the OpenFeature spec hooks do not choose the
 * returned value, and the SDK replaces the value with the caller's default on every error.
 *
 * @param client - any OpenFeature server client (kill flags may come from any backend)
 * @param flagKey - `kill-switch` or `kill-switch.<level>`
 * @param context - the evaluation context (`tenant`, `feature`, `runId`, `capability`)
 * @param options - hooks and hints for this evaluation
 * @returns the SDK's details, with `value` forced to `true` unless it is a clean `false`
 * @example
 * ```ts
 * const { value: halted } = await evaluateKillFlag(client, 'kill-switch', { tenant: 'acme' });
 * ```
 */
export function evaluateKillFlag(
  client: Client,
  flagKey: string,
  context?: EvaluationContext,
  options?: FlagEvaluationOptions,
): Promise<EvaluationDetails<boolean>> {
  // Promise chains, not an async function: this runs twice per guarded effect, and with async
  // hooks on (AsyncLocalStorage) every await allocates promises the hooks then visit.
  let statusBefore: string;
  let pending: Promise<EvaluationDetails<boolean>>;
  try {
    statusBefore = client.providerStatus;
    pending = Promise.resolve(client.getBooleanDetails(flagKey, true, context, options));
  } catch (err) {
    return Promise.resolve(threw(flagKey, err));
  }
  return pending.then(
    (details) => judge(client, flagKey, statusBefore, details),
    // The SDK does not reject, but a custom client can.
    (err: unknown) => threw(flagKey, err),
  );
}

/** The fail-closed answer when evaluating threw. */
function threw(flagKey: string, err: unknown): EvaluationDetails<boolean> {
  // The SDK does not throw from evaluations, but a provider's metadata getter, a context
  // propagator or a custom client can.
  return {
    flagKey,
    value: true,
    variant: FAIL_CLOSED,
    reason: StandardResolutionReasons.ERROR,
    errorCode: OpenFeatureErrorCode.GENERAL,
    errorMessage: `evaluation threw: ${err instanceof Error ? err.message : String(err)}`,
    flagMetadata: {},
  };
}

/** The SDK's answer, passed on only when it is a clean running answer or a halt. */
function judge(
  client: Client,
  flagKey: string,
  statusBefore: string,
  details: EvaluationDetails<boolean>,
): EvaluationDetails<boolean> {
  let statusAfter: string;
  try {
    statusAfter = client.providerStatus;
  } catch {
    statusAfter = 'UNKNOWN';
  }
  const ok = typeof details === 'object' && details !== null;
  const clean =
    ok && details.errorCode === undefined && details.reason !== StandardResolutionReasons.ERROR;
  // A halt is a halt whatever the provider's status.
  if (clean && details.value === true) return details;
  const ready = statusBefore === ProviderStatus.READY && statusAfter === ProviderStatus.READY;
  if (
    clean &&
    ready &&
    details.value === false &&
    details.reason !== StandardResolutionReasons.STALE
  ) {
    return details;
  }
  const why: string[] = [];
  if (!ok) why.push('no details');
  else if (details.errorCode !== undefined) why.push(`error ${details.errorCode}`);
  else if (details.reason === StandardResolutionReasons.ERROR) why.push('reason ERROR');
  else if (typeof details.value !== 'boolean')
    why.push(`non-boolean value (${typeof details.value})`);
  if (details?.reason === StandardResolutionReasons.STALE) why.push('reason STALE');
  if (!ready) why.push(`provider status ${statusBefore}/${statusAfter}`);
  const stale =
    clean &&
    typeof details.value === 'boolean' &&
    (details.reason === StandardResolutionReasons.STALE ||
      statusBefore === ProviderStatus.STALE ||
      statusAfter === ProviderStatus.STALE);
  return {
    ...(ok ? details : {}),
    flagKey,
    value: true,
    variant: FAIL_CLOSED,
    reason: stale ? StandardResolutionReasons.STALE : StandardResolutionReasons.ERROR,
    flagMetadata: (ok ? details.flagMetadata : undefined) ?? {},
    ...(ok && details.errorMessage !== undefined
      ? {}
      : { errorMessage: `failed closed: ${why.join(', ')}` }),
  };
}

const FAIL_CLOSED = 'fail-closed';
