import {
  ErrorCode as OpenFeatureErrorCode,
  OpenFeature,
  ProviderStatus,
  StandardResolutionReasons,
  type Client,
  type EvaluationContext,
  type EvaluationDetails,
  type FlagEvaluationOptions,
} from '@openfeature/server-sdk';
import {
  RESOLVE_BOOLEAN_NOW,
  hasSynchronousResolution,
} from '../internal/synchronous-resolution.js';

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
  const now = evaluateKillFlagNow(client, flagKey, context, options);
  return now !== undefined
    ? Promise.resolve(now)
    : evaluateKillFlagThroughSdk(client, flagKey, context, options);
}

/** {@link evaluateKillFlag} without the fast path: always through the SDK's `evaluate`. */
export function evaluateKillFlagThroughSdk(
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

/**
 * {@link evaluateKillFlag}'s answer computed at once, without the SDK's promise chain, where that
 * changes nothing the caller could observe; undefined where it could (the caller then takes the
 * SDK's path). KS-4.7.2
 *
 * The SDK's `evaluate` (1.23), for a client of its own with no hook anywhere, merges the contexts
 * (API, transaction, client, invocation), short-circuits a provider that is not ready, calls the
 * resolver and copies its answer with `flagKey` and frozen `flagMetadata`; everything else in it
 * is running hooks, each behind awaits (about 11 promises per evaluation, which Node 20 hands to
 * the async hooks whenever an AsyncLocalStorage is active). This does the same synchronously,
 * and only when:
 * - `client` is the SDK's own client, its evaluation methods not replaced,
 * - no hook is registered on the API, the client, the provider or this call,
 * - the provider bound to the client's domain resolves synchronously ({@link RESOLVE_BOOLEAN_NOW},
 *   which {@link KillSwitchProvider} offers) and is READY,
 * - the resolution returns without throwing and without an `errorCode`.
 * Anything else (an error, a provider in any other status, a hook) goes the SDK's way, so every
 * abnormal path answers exactly as it did. The answer is judged like the SDK's (the status is
 * read again after the call; KS-3.6.2).
 *
 * @returns the details (`value` forced to `true` unless a clean `false`), or undefined
 */
export function evaluateKillFlagNow(
  client: Client,
  flagKey: string,
  context?: EvaluationContext,
  options?: FlagEvaluationOptions,
): EvaluationDetails<boolean> | undefined {
  try {
    if (options?.hooks !== undefined && options.hooks.length > 0) return undefined;
    if (!isPlainSdkClient(client)) return undefined;
    if (client.providerStatus !== ProviderStatus.READY) return undefined;
    if (OpenFeature.getHooks().length > 0 || client.getHooks().length > 0) return undefined;
    const provider = OpenFeature.getProvider(domainOf(client));
    if (!hasSynchronousResolution(provider)) return undefined;
    if (provider.hooks !== undefined && provider.hooks.length > 0) return undefined;
    const resolution = provider[RESOLVE_BOOLEAN_NOW](flagKey, mergedContext(client, context));
    if (typeof resolution !== 'object' || resolution === null) return undefined;
    if (resolution.errorCode !== undefined) return undefined;
    const details: EvaluationDetails<boolean> = {
      ...resolution,
      flagMetadata: Object.freeze(resolution.flagMetadata ?? {}),
      flagKey,
    };
    return judge(client, flagKey, ProviderStatus.READY, details);
  } catch {
    // Whatever threw here throws again on the SDK's path, which turns it into its error details.
    return undefined;
  }
}

/** The SDK client's prototype and its evaluation methods, read once from a client it makes. */
let sdkClient:
  { readonly proto: object; readonly details: unknown; readonly evaluate: unknown } | undefined;

function isPlainSdkClient(client: Client): boolean {
  if (sdkClient === undefined) {
    const probe = OpenFeature.getClient();
    const proto = Object.getPrototypeOf(probe) as Record<string, unknown>;
    sdkClient = { proto, details: proto.getBooleanDetails, evaluate: proto.evaluate };
  }
  // A wrapped client, a spy on one client or a client of another SDK copy takes the SDK's path.
  return (
    typeof client === 'object' &&
    client !== null &&
    Object.getPrototypeOf(client) === sdkClient.proto &&
    client.getBooleanDetails === sdkClient.details &&
    (client as unknown as Record<string, unknown>).evaluate === sdkClient.evaluate
  );
}

/** A client's domain; it is fixed at `getClient`, so it is read once per client. */
const domains = new WeakMap<Client, string | undefined>();

function domainOf(client: Client): string | undefined {
  if (domains.has(client)) return domains.get(client);
  const domain = client.metadata.domain;
  domains.set(client, domain);
  return domain;
}

/** The SDK's context merge (API, transaction, client, invocation); no copy when only one is set. */
function mergedContext(
  client: Client,
  invocation: EvaluationContext | undefined,
): EvaluationContext {
  const api = OpenFeature.getContext();
  const transaction = OpenFeature.getTransactionContext();
  const own = client.getContext();
  if (isEmpty(api) && isEmpty(transaction) && isEmpty(own)) return invocation ?? {};
  return { ...api, ...transaction, ...own, ...invocation };
}

function isEmpty(ctx: EvaluationContext | undefined): boolean {
  if (ctx === undefined || ctx === null) return true;
  for (const _ in ctx) return false;
  return true;
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
