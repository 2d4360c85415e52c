import { ErrorCode, HaltedError, InvalidOptionError } from '../errors.js';
import type { GuardedEffect } from '../guard/effect-guard.js';
import { effectKey } from '../ledger/side-effect-ledger.js';
import { currentRunScope } from '../scope/run-scope.js';
import type { GuardRunner } from './guard-runner.js';
import {
  activeSpan,
  loadOpenTelemetryApi,
  type OpenTelemetryApiLike,
  type SpanAttributeValue,
} from './load-opentelemetry.js';

/** Span event names the traced guard records. */
export const GuardSpanEvent = {
  REFUSED: 'killswitch.effect.refused',
  ABORTED: 'killswitch.effect.aborted',
} as const;

/** Options of {@link traceGuard}. */
export interface TraceGuardOptions {
  /** The OpenTelemetry API. @default `@opentelemetry/api` when installed, else no events */
  readonly api?: OpenTelemetryApiLike;
}

/**
 * Wraps a guard so that each refused effect (`KS_HALTED`) and each aborted one (`KS_ABORTED`) is
 * recorded as a span event on the span that was active when `run` was called (KS-11.3.3). The span
 * is taken at the call, not when the error surfaces: an abort is triggered by the flip arriving on
 * the stream, in another async context. Errors are rethrown unchanged; other outcomes add nothing.
 *
 * Attributes: `killswitch.effect.key`, `killswitch.run_id`, `killswitch.step`,
 * `killswitch.capability`, `killswitch.tenant` and `killswitch.feature` (when in the context),
 * `killswitch.cause` (`halted`, `stale`, `error`), `killswitch.flip.seq` and `killswitch.flip.id`
 * (when a flip is named), `error.type` (the code).
 *
 * @example
 * ```ts
 * const guarded = traceGuard(new EffectGuard({ client, ledger }));
 * await guarded.run(effect, (signal) => fetch(url, { signal }));
 * ```
 */
export function traceGuard(inner: GuardRunner, options: TraceGuardOptions = {}): GuardRunner {
  if (inner === null || typeof inner !== 'object' || typeof inner.run !== 'function') {
    throw new InvalidOptionError('inner', 'a guard with run(effect, body)', inner);
  }
  if (options.api !== undefined && typeof options.api?.trace?.getActiveSpan !== 'function') {
    throw new InvalidOptionError('api', 'the @opentelemetry/api module', options.api);
  }
  const api = options.api ?? loadOpenTelemetryApi();
  const run: GuardRunner['run'] = async (effect, body) => {
    const span = activeSpan(api);
    try {
      return await inner.run(effect, body);
    } catch (err) {
      if (span !== undefined && err instanceof HaltedError) {
        try {
          span.addEvent(
            err.code === ErrorCode.ABORTED ? GuardSpanEvent.ABORTED : GuardSpanEvent.REFUSED,
            haltAttributes(effect, err),
          );
        } catch {
          // Telemetry never changes the outcome.
        }
      }
      throw err;
    }
  };
  return { run };
}

function haltAttributes(
  effect: GuardedEffect<unknown>,
  err: HaltedError,
): Record<string, SpanAttributeValue> {
  const runId = effect.runId ?? currentRunScope()?.runId ?? '';
  const out: Record<string, SpanAttributeValue> = {
    'killswitch.effect.key': effect.key ?? (runId === '' ? '' : effectKey(runId, effect.step)),
    'killswitch.run_id': runId,
    'killswitch.step': effect.step,
    'killswitch.capability': effect.capability,
    'killswitch.cause': err.haltCause,
    'error.type': err.code,
  };
  if (typeof effect.context?.tenant === 'string') out['killswitch.tenant'] = effect.context.tenant;
  if (typeof effect.context?.feature === 'string')
    out['killswitch.feature'] = effect.context.feature;
  if (err.flip !== undefined) {
    out['killswitch.flip.seq'] = err.flip.seq;
    out['killswitch.flip.id'] = err.flip.id;
  }
  return out;
}
