import { createEvaluationEvent } from '@openfeature/core';
import type { EvaluationDetails, FlagValue, Hook, HookContext } from '@openfeature/server-sdk';
import { InvalidOptionError } from '../errors.js';
import { isKillFlag } from '../model/flags.js';
import {
  activeSpan,
  loadOpenTelemetryApi,
  type OpenTelemetryApiLike,
  type SpanAttributeValue,
} from './load-opentelemetry.js';

/** Options of {@link FeatureFlagSpanHook}. */
export interface FeatureFlagSpanHookOptions {
  /** The OpenTelemetry API. @default `@opentelemetry/api` when installed, else the hook does nothing */
  readonly api?: OpenTelemetryApiLike;
  /** Record every flag, not only kill flags (`kill-switch`, `kill-switch.<level>`). @default false */
  readonly allFlags?: boolean;
}

/** Name of the span event, per OpenTelemetry's feature-flag semantic conventions. */
export const FEATURE_FLAG_EVALUATION_EVENT = 'feature_flag.evaluation';

/**
 * An OpenFeature hook that records each kill-flag evaluation as a `feature_flag.evaluation`
 * event on the active span, with OpenTelemetry's `feature_flag.*` attributes (KS-11.3.2):
 * `feature_flag.key`, `feature_flag.provider.name`, `feature_flag.result.variant`,
 * `feature_flag.result.reason`, `feature_flag.result.value`, `feature_flag.context.id` (the
 * targeting key, else the context's `runId`) and `error.type` on errors; plus, when the answer
 * names a flip, `killswitch.flip.seq`, `killswitch.flip.id` and `killswitch.level`.
 *
 * It runs in `finally`, so failed evaluations are recorded too, and it never throws (a throwing
 * hook would make the SDK answer the caller's default). Without `@opentelemetry/api`, or without
 * an active recording span, it does nothing.
 *
 * @example
 * ```ts
 * OpenFeature.addHooks(new KillSwitchHook(), new FeatureFlagSpanHook());
 * ```
 */
export class FeatureFlagSpanHook implements Hook {
  readonly #api: OpenTelemetryApiLike | undefined;
  readonly #all: boolean;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for an api without `trace.getActiveSpan` */
  constructor(options: FeatureFlagSpanHookOptions = {}) {
    if (options.api !== undefined && typeof options.api?.trace?.getActiveSpan !== 'function') {
      throw new InvalidOptionError('api', 'the @opentelemetry/api module', options.api);
    }
    if (options.allFlags !== undefined && typeof options.allFlags !== 'boolean') {
      throw new InvalidOptionError('allFlags', 'a boolean', options.allFlags);
    }
    this.#api = options.api ?? loadOpenTelemetryApi();
    this.#all = options.allFlags ?? false;
  }

  finally(hookContext: Readonly<HookContext>, details: EvaluationDetails<FlagValue>): void {
    if (!this.#all && !isKillFlag(hookContext.flagKey)) return;
    const span = activeSpan(this.#api);
    if (span === undefined) return;
    try {
      span.addEvent(FEATURE_FLAG_EVALUATION_EVENT, evaluationAttributes(hookContext, details));
    } catch {
      // Telemetry must never change an evaluation's outcome.
    }
  }
}

/** The event's attributes: OpenFeature's mapping (appendix D) plus the kill switch's own. */
export function evaluationAttributes(
  hookContext: Readonly<HookContext>,
  details: EvaluationDetails<FlagValue>,
): Record<string, SpanAttributeValue> {
  const out: Record<string, SpanAttributeValue> = {};
  for (const [k, v] of Object.entries(createEvaluationEvent(hookContext, details).attributes)) {
    if (v !== undefined) out[k] = v;
  }
  if (out['feature_flag.context.id'] === undefined) {
    // Kill-flag contexts rarely carry a targeting key; the run is what identifies them.
    const runId = hookContext.context['runId'];
    if (typeof runId === 'string' && runId !== '') out['feature_flag.context.id'] = runId;
  }
  const meta = details.flagMetadata ?? {};
  if (typeof meta['seq'] === 'number') out['killswitch.flip.seq'] = meta['seq'];
  if (typeof meta['id'] === 'string') out['killswitch.flip.id'] = meta['id'];
  if (typeof meta['level'] === 'string') out['killswitch.level'] = meta['level'];
  return out;
}
