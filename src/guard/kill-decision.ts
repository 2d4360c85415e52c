import {
  type Client,
  type EvaluationContext,
  type EvaluationDetails,
} from '@openfeature/server-sdk';
import { ErrorCode, HaltedError } from '../errors.js';
import { HaltCause, type FlipSummary } from '../model/halt-cause.js';
import { evaluateKillFlagNow, evaluateKillFlagThroughSdk } from '../hooks/evaluate-kill-flag.js';
import { KILL_SWITCH_FLAG } from '../model/flags.js';
import { formatSelector, type KillContext, type Selector } from '../model/selector.js';

/**
 * The answer to "may an effect with this context leave now?", read from any OpenFeature client.
 * `halted` is true unless the flag resolved to exactly `false` without an error.
 */
export interface KillDecision {
  readonly halted: boolean;
  /** Why it is halted: a matching halt, a stale source, or an error (each fails closed). */
  readonly cause?: HaltCause;
  /** The matching flip, when the provider named one in `flagMetadata`. */
  readonly flip?: FlipSummary;
  /** The resolution's reason and variant, for logs. */
  readonly reason?: string;
  readonly variant?: string;
  /**
   * The seq of the kill state the answer was read from, when the provider names it
   * (KillSwitchProvider's `stateSeq`). A queue records it at enqueue as the task's admission
   * point. KS-4.8.2
   */
  readonly stateSeq?: number;
  /**
   * True only when the provider says every matching halt is a `drain` halt (KillSwitchProvider's
   * `drainOnly` on `kill-switch`); false or absent means it did not say so. KS-4.8.3
   */
  readonly drainOnly?: boolean;
  /**
   * Why the answer failed closed, when it did: the provider's `failClosed` metadata (a source
   * that cannot connect says why there), else the SDK's error message. KS-16.2.2
   */
  readonly failClosed?: string;
}

/**
 * Why a decision halted, in the words every refusal uses: the flip that matched, or why the answer
 * failed closed. Never names a flip it does not have. KS-16.2.2
 *
 * @example describeHalt(d) // 'halted by flip #3 tenant=acme (id f-3, by ada: incident 42)'
 */
export function describeHalt(d: KillDecision): string {
  const cause = d.cause ?? HaltCause.HALTED;
  if (d.flip !== undefined) {
    const f = d.flip;
    return `halted by flip #${f.seq} ${formatSelector(f.selector)} (id ${f.id}, by ${f.actor}: ${f.reason})`;
  }
  const why = d.failClosed ?? (cause === HaltCause.ERROR ? d.reason : undefined);
  if (cause === HaltCause.STALE)
    return `the kill state is stale (failed closed${why ? `: ${why}` : ''})`;
  if (cause === HaltCause.ERROR)
    return `the kill switch could not be evaluated (failed closed${why ? `: ${why}` : ''})`;
  return `kill-switch answered halted${d.variant ? ` (variant ${d.variant})` : ''}`;
}

/**
 * The {@link HaltedError} of a decision: `${subject} refused: <why>` (`KS_HALTED`) or
 * `${subject} aborted: <why>` (`KS_ABORTED`), `when` after the verb, carrying the cause, the
 * flip and why it failed closed.
 */
export function haltedErrorOf(
  code: typeof ErrorCode.HALTED | typeof ErrorCode.ABORTED,
  subject: string,
  d: KillDecision,
  when = '',
): HaltedError {
  const verb = code === ErrorCode.HALTED ? 'refused' : 'aborted';
  return new HaltedError(
    code,
    `${subject} ${verb}${when}: ${describeHalt(d)}`,
    d.cause ?? HaltCause.HALTED,
    d.flip,
    d.failClosed,
  );
}

/** The evaluation context the kill switch reads: the four attributes, `runId` as targeting key. */
export function toEvaluationContext(ctx: KillContext): EvaluationContext {
  const out: Record<string, string | string[]> = {};
  if (ctx.tenant !== undefined) out.tenant = ctx.tenant;
  if (ctx.feature !== undefined) out.feature = ctx.feature;
  if (ctx.runId !== undefined) {
    out.runId = ctx.runId;
    out.targetingKey = ctx.runId;
  }
  if (ctx.capability !== undefined) out.capability = ctx.capability;
  // KS-1.5.1: an ordinary array attribute, so any backend can target a run's ancestors. The
  // array is passed as is (not copied): a malformed one must reach the provider and fail closed.
  if (ctx.runPath !== undefined) out.runPath = ctx.runPath as string[];
  return out;
}

/**
 * Reads a flip summary out of `flagMetadata` (the keys KillSwitchProvider writes: `seq`, `id`,
 * `actor`, `reason`, `mode`, `selector` as JSON). Other providers may name nothing.
 */
export function flipFromMetadata(
  metadata: Readonly<Record<string, string | number | boolean>> | undefined,
): FlipSummary | undefined {
  if (metadata === undefined || typeof metadata.seq !== 'number') return undefined;
  let selector: Selector = {};
  if (typeof metadata.selector === 'string') {
    try {
      selector = JSON.parse(metadata.selector) as Selector;
    } catch {
      selector = {};
    }
  }
  const mode = metadata.mode;
  return {
    seq: metadata.seq,
    id: typeof metadata.id === 'string' ? metadata.id : '',
    actor: typeof metadata.actor === 'string' ? metadata.actor : '',
    reason: typeof metadata.reason === 'string' ? metadata.reason : '',
    selector,
    ...(mode === 'discard' || mode === 'hold' || mode === 'drain' ? { mode } : {}),
  };
}

/**
 * Interprets a resolution of a kill flag, failing closed: anything but a clean `false` is halted.
 * KS-4.1.2
 */
export function decide(details: EvaluationDetails<boolean>): KillDecision {
  const stateSeq = details.flagMetadata?.stateSeq;
  if (details.value === false && details.errorCode === undefined) {
    // The answer of almost every evaluation, built without spreads: it is on the guard's hot path.
    const running: { -readonly [K in keyof KillDecision]: KillDecision[K] } = { halted: false };
    if (details.reason !== undefined) running.reason = details.reason;
    if (details.variant !== undefined) running.variant = details.variant;
    if (typeof stateSeq === 'number' && Number.isSafeInteger(stateSeq) && stateSeq >= 0)
      running.stateSeq = stateSeq;
    return running;
  }
  const flip = flipFromMetadata(details.flagMetadata);
  const base = {
    ...(details.reason !== undefined ? { reason: details.reason } : {}),
    ...(details.variant !== undefined ? { variant: details.variant } : {}),
    ...(typeof stateSeq === 'number' && Number.isSafeInteger(stateSeq) && stateSeq >= 0
      ? { stateSeq }
      : {}),
  };
  let cause: HaltCause = HaltCause.HALTED;
  if (details.errorCode !== undefined || details.reason === 'ERROR') cause = HaltCause.ERROR;
  else if (details.reason === 'STALE') cause = HaltCause.STALE;
  else if (typeof details.value !== 'boolean') cause = HaltCause.ERROR;
  // KS-4.8.3 drainOnly counts only beside the flip it qualifies, and only as exactly `true`.
  const drainOnly = flip !== undefined && details.flagMetadata?.drainOnly === true;
  const failClosed =
    typeof details.flagMetadata?.failClosed === 'string'
      ? details.flagMetadata.failClosed
      : flip === undefined
        ? details.errorMessage
        : undefined;
  return {
    halted: true,
    cause,
    ...(flip ? { flip } : {}),
    ...(drainOnly ? { drainOnly } : {}),
    ...(failClosed !== undefined && failClosed !== '' ? { failClosed } : {}),
    ...base,
  };
}

/**
 * Evaluates `kill-switch` for a context with `true` (halted) as the default, so every abnormal
 * path of the SDK (no provider, not ready, fatal, a throwing hook) answers halted. KS-4.1.1
 *
 * @param client - any OpenFeature client; kill flags may come from any provider
 * @param ctx - the effect's kill attributes
 */
export function evaluateKill(client: Client, ctx: KillContext): Promise<KillDecision> {
  // It never rejects (a `then`, not an async function: with async hooks on, each await costs
  // promises on the guard's hot path).
  try {
    const d = evaluateKillEager(client, ctx);
    return d instanceof Promise ? d : Promise.resolve(d);
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/**
 * {@link evaluateKill}, answered at once when the client's evaluation can be made without the
 * SDK's promise chain (a READY provider with a synchronous resolution and no hook anywhere,
 * `evaluateKillFlagNow`, KS-4.7.2), else its promise. The same decision either way; the guard
 * awaits only a promise.
 */
export function evaluateKillEager(
  client: Client,
  ctx: KillContext,
): KillDecision | Promise<KillDecision> {
  // KS-4.1.10 one fail-closed evaluation for the hook helpers and the guard: it also reads the
  // provider's status before and after the call (a provider in STALE or ERROR still answers, and
  // one can go STALE while the evaluation is in flight).
  const context = toEvaluationContext(ctx);
  const now = evaluateKillFlagNow(client, KILL_SWITCH_FLAG, context);
  if (now !== undefined) return decide(now);
  return evaluateKillFlagThroughSdk(client, KILL_SWITCH_FLAG, context).then(decide);
}
