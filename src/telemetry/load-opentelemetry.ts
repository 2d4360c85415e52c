import { createRequire } from 'node:module';

/** Attribute values OpenTelemetry accepts. */
export type SpanAttributeValue = string | number | boolean | string[] | number[] | boolean[];

/** The part of an OpenTelemetry span the kill switch writes to. */
export interface SpanLike {
  addEvent(name: string, attributes?: Record<string, SpanAttributeValue | undefined>): unknown;
  isRecording?(): boolean;
}

/**
 * The part of `@opentelemetry/api` the kill switch uses: the active span. Declared here rather
 * than imported, so this package's types do not require `@opentelemetry/api` either.
 */
export interface OpenTelemetryApiLike {
  readonly trace: { getActiveSpan(): SpanLike | undefined };
}

let cached: OpenTelemetryApiLike | null | undefined;

/**
 * Loads `@opentelemetry/api` if the application has it installed (an optional peer dependency),
 * once per process; undefined when it is absent. Synchronous (`require`), so hooks and guards
 * can be built without awaiting; the API keeps its state on a process-wide global, so the copy
 * loaded here sees the tracer provider and context manager the application registered with its
 * own import. KS-11.3.1
 *
 * @returns the API, or undefined when it is not installed
 */
export function loadOpenTelemetryApi(): OpenTelemetryApiLike | undefined {
  if (cached !== undefined) return cached ?? undefined;
  try {
    const require = createRequire(import.meta.url);
    const api = require('@opentelemetry/api') as OpenTelemetryApiLike;
    cached = typeof api?.trace?.getActiveSpan === 'function' ? api : null;
  } catch {
    // Not installed: telemetry is off, nothing else changes.
    cached = null;
  }
  return cached ?? undefined;
}

/** The span to write to: the active one, if it records. */
export function activeSpan(api: OpenTelemetryApiLike | undefined): SpanLike | undefined {
  if (api === undefined) return undefined;
  try {
    const span = api.trace.getActiveSpan();
    if (span === undefined || (span.isRecording !== undefined && !span.isRecording()))
      return undefined;
    return span;
  } catch {
    return undefined;
  }
}
