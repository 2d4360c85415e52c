/** A signal that follows several others, and how to let go of them. */
export interface MergedSignal {
  /** Aborts, with the first one's reason, as soon as any of the signals aborts. */
  readonly signal: AbortSignal;
  /** Removes the listeners from the sources (call it when the call that used the signal ends). */
  dispose(): void;
}

const NOTHING = (): void => undefined;

/**
 * `AbortSignal.any` for one call, without its cost: on Node 20 `AbortSignal.any` takes tens of
 * microseconds per call (measured ~50 µs, more than the whole guard), because it tracks the
 * composed signal with weak references; here each source gets one listener that `dispose`
 * removes. A single signal is returned as it is.
 *
 * @param signals - the sources; undefined entries are skipped
 */
export function mergeSignals(...signals: readonly (AbortSignal | undefined)[]): MergedSignal {
  const sources = signals.filter((s): s is AbortSignal => s !== undefined);
  if (sources.length === 1) return { signal: sources[0]!, dispose: NOTHING };
  const controller = new AbortController();
  for (const s of sources) {
    if (s.aborted) {
      controller.abort(s.reason);
      return { signal: controller.signal, dispose: NOTHING };
    }
  }
  const onAbort = function (this: AbortSignal): void {
    dispose();
    controller.abort(this.reason);
  };
  const dispose = (): void => {
    for (const s of sources) s.removeEventListener('abort', onAbort);
  };
  for (const s of sources) s.addEventListener('abort', onAbort);
  return { signal: controller.signal, dispose };
}
