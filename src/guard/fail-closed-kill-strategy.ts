import {
  ErrorCode as OFErrorCode,
  FirstMatchStrategy,
  ProviderStatus,
  type EvaluationContext,
  type FinalResult,
  type FlagValue,
  type ProviderResolutionResult,
  type ProviderResolutionSuccessResult,
  type StrategyPerProviderContext,
} from '@openfeature/server-sdk';
import { isKillFlag } from '../model/flags.js';

/** Provider states in which an answer about a kill flag cannot be trusted. */
const UNTRUSTED: ReadonlySet<ProviderStatus> = new Set([
  ProviderStatus.NOT_READY,
  ProviderStatus.FATAL,
  ProviderStatus.ERROR,
  ProviderStatus.STALE,
]);

/**
 * A MultiProvider strategy under which kill flags fail closed; other flags keep FirstMatch. KS-4.6.2
 *
 * The SDK's strategies are not safe for kill flags (test/guard/multi-provider.test.ts shows each):
 * - `FirstMatchStrategy` (the default) skips a NOT_READY or FATAL provider and asks the next one,
 *   and a provider without the flag falls through to the next: any later provider that defines
 *   `kill-switch` as `false` turns a sick or silent kill provider into "run";
 * - `FirstSuccessfulStrategy` skips a provider whose resolver errors: the same fall-through on
 *   every error;
 * - `ComparisonStrategy` fails closed on errors but on disagreement returns the fallback
 *   provider's answer, which may be `false`.
 *
 * Under this strategy a kill flag (`kill-switch`, `kill-switch.<level>`) is halted when any
 * provider answers anything but `false`, when any provider errors (other than FLAG_NOT_FOUND),
 * when any provider is NOT_READY, FATAL, ERROR or STALE, and when no provider defines the flag.
 * The answer is then `{ value: true, variant: 'fail-closed', reason: 'ERROR' }` (no `errorCode`,
 * so even a caller with default `false` reads halted) or the first provider's halted answer
 * (keeping its `flagMetadata`, which names the flip).
 *
 * @example
 * ```ts
 * await OpenFeature.setProviderAndWait(
 *   new MultiProvider([{ provider: killProvider }, { provider: launchDarkly }], new FailClosedKillStrategy()),
 * );
 * ```
 */
export class FailClosedKillStrategy extends FirstMatchStrategy {
  /** Evaluation contexts (one object per evaluation) for which a provider was not trusted. */
  readonly #untrusted = new WeakMap<EvaluationContext, string>();

  override shouldEvaluateThisProvider(
    strategyContext: StrategyPerProviderContext,
    evalContext?: EvaluationContext,
  ): boolean {
    if (
      evalContext !== undefined &&
      isKillFlag(strategyContext.flagKey) &&
      UNTRUSTED.has(strategyContext.providerStatus)
    ) {
      this.#untrusted.set(
        evalContext,
        `provider ${strategyContext.providerName} is ${strategyContext.providerStatus}`,
      );
      return false;
    }
    return super.shouldEvaluateThisProvider(strategyContext, evalContext);
  }

  override shouldEvaluateNextProvider<T extends FlagValue>(
    strategyContext: StrategyPerProviderContext,
    context: EvaluationContext,
    result: ProviderResolutionResult<T>,
  ): boolean {
    // Every provider gets a say on a kill flag: any halted answer wins.
    if (isKillFlag(strategyContext.flagKey)) return true;
    return super.shouldEvaluateNextProvider(strategyContext, context, result);
  }

  override determineFinalResult<T extends FlagValue>(
    strategyContext: StrategyPerProviderContext,
    context: EvaluationContext,
    resolutions: ProviderResolutionResult<T>[],
  ): FinalResult<T> {
    if (!isKillFlag(strategyContext.flagKey))
      return super.determineFinalResult(strategyContext, context, resolutions);
    const untrusted = this.#untrusted.get(context);
    this.#untrusted.delete(context);
    if (untrusted !== undefined) return failClosed<T>(untrusted);
    // KS-4.8.7 `drainOnly` and `stateSeq` speak for one provider's flip log; beside another
    // provider's answer they prove nothing (its halt may be a discard, its seqs count another
    // log), so they are dropped and a drain permit then refuses.
    const answering = resolutions.filter(
      (r) => !this.hasErrorWithCode(r, OFErrorCode.FLAG_NOT_FOUND),
    ).length;
    const final = (r: ProviderResolutionSuccessResult<T>): FinalResult<T> => {
      const out = this.resolutionToFinalResult(r);
      return answering > 1 ? withoutLogFacts(out) : out;
    };
    let firstFalse: FinalResult<T> | undefined;
    for (const r of resolutions) {
      if (this.hasErrorWithCode(r, OFErrorCode.FLAG_NOT_FOUND)) continue;
      if (this.hasError(r)) return failClosed<T>(`provider ${r.providerName} failed`);
      if ('details' in r) {
        if (r.details.value !== false) return final(r);
        firstFalse ??= final(r);
      }
    }
    return firstFalse ?? failClosed<T>('no provider defines the flag');
  }
}

/** The result without the keys that only one provider's log can vouch for. */
function withoutLogFacts<T extends FlagValue>(r: FinalResult<T>): FinalResult<T> {
  const m = r.details?.flagMetadata;
  if (r.details === undefined || m === undefined || !('drainOnly' in m || 'stateSeq' in m)) {
    return r;
  }
  const { drainOnly: _d, stateSeq: _s, ...rest } = m;
  return { ...r, details: { ...r.details, flagMetadata: rest } };
}

function failClosed<T extends FlagValue>(why: string): FinalResult<T> {
  return {
    details: {
      value: true as T,
      variant: 'fail-closed',
      reason: 'ERROR',
      flagMetadata: { failClosed: why },
    },
  };
}
