/** A signal that follows several others, and how to let go of them. */
export interface MergedSignal {
  /** Aborts, with the first one's reason, as soon as any of the signals aborts. */
  readonly signal: AbortSignal;
  /** Removes the listeners from the sources (call it when the call that used the signal ends). */
  dispose(): void;
}

const NOTHING = (): void => undefined;

/**
 * Something that stops once, with an error, without an AbortSignal of its own until one is asked
 * for: the guard's operation for one effect (its `signal` is created on first read, and an
 * `AbortController` is the largest cost an adapter adds to a no-op tool call). A link to it is a
 * stop listener, called synchronously when it stops, where a link to a signal is an `abort`
 * listener.
 */
export interface StopSource {
  /** Set once it stopped; `error` is what a signal of it aborts with. */
  readonly stopped: { readonly error: unknown } | undefined;
  /** Its own signal (created on first read). */
  readonly signal: AbortSignal;
  /** Calls `listener` when it stops (at once when it already has); returns how to remove it. */
  onStop(listener: (stop: { readonly error: unknown }) => void): () => void;
}

/** A source a call follows: a signal, or a {@link StopSource}. */
export type SignalSource = AbortSignal | StopSource;

function isSignal(s: SignalSource): s is AbortSignal {
  return s instanceof AbortSignal;
}

/**
 * Aborts `target` as soon as any of `sources` aborts, with `reason` of that source's reason, and
 * returns how to remove the listeners (call it when the call that used the target ends). A source
 * already aborted aborts the target at once.
 *
 * @param target - the controller to abort (its signal is the call's one signal)
 * @param sources - the signals to follow; undefined entries are skipped
 * @param reason - what the target aborts with, from the source's reason @default the same reason
 */
export function linkSignals(
  target: AbortController,
  sources: readonly (SignalSource | undefined)[],
  reason?: (sourceReason: unknown) => unknown,
): () => void {
  for (const s of sources) {
    if (s === undefined) continue;
    const already = isSignal(s)
      ? s.aborted
        ? { error: s.reason as unknown }
        : undefined
      : s.stopped;
    if (already !== undefined) {
      target.abort(reason === undefined ? already.error : reason(already.error));
      return NOTHING;
    }
  }
  const abort = (sourceReason: unknown): void => {
    dispose();
    target.abort(reason === undefined ? sourceReason : reason(sourceReason));
  };
  const onAbort = function (this: AbortSignal): void {
    abort(this.reason);
  };
  let offs: (() => void)[] | undefined;
  const dispose = (): void => {
    for (const s of sources)
      if (s !== undefined && isSignal(s)) s.removeEventListener('abort', onAbort);
    if (offs !== undefined) for (const off of offs) off();
  };
  for (const s of sources) {
    if (s === undefined) continue;
    if (isSignal(s)) s.addEventListener('abort', onAbort);
    else (offs ??= []).push(s.onStop((stop) => abort(stop.error)));
  }
  return dispose;
}

/**
 * `AbortSignal.any` for one call, without its cost: on Node 20 `AbortSignal.any` takes tens of
 * microseconds per call (measured ~50 µs, more than the whole guard), because it tracks the
 * composed signal with weak references; here each source gets one listener that `dispose`
 * removes. A single signal is returned as it is.
 *
 * @param signals - the sources; undefined entries are skipped
 */
export function mergeSignals(...signals: readonly (SignalSource | undefined)[]): MergedSignal {
  const sources = signals.filter((s): s is SignalSource => s !== undefined);
  if (sources.length === 1) {
    const only = sources[0]!;
    return { signal: isSignal(only) ? only : only.signal, dispose: NOTHING };
  }
  const controller = new AbortController();
  return { signal: controller.signal, dispose: linkSignals(controller, sources) };
}

/**
 * The signals one guarded call follows (the guard's, the run's, the framework's), merged only
 * when someone asks. Creating an `AbortController` is the largest cost an adapter adds to a tool
 * call (measured: several microseconds each on Node 20, plus the collector's share), and most
 * calls end before anyone reads the signal, or hand it to code that takes one signal anyway: so
 * {@link CallSignal.signal} merges on first read, and {@link CallSignal.link} feeds a controller
 * the caller needs anyway (an upstream request's), instead of a merged one in between. Every
 * listener is removed by {@link CallSignal.dispose}, when the call settles.
 */
export class CallSignal {
  readonly #given: readonly (SignalSource | (() => AbortSignal) | undefined)[];
  #merged: MergedSignal | undefined;
  #links: (() => void)[] | undefined;
  #disposed = false;

  /**
   * @param sources - the guard's signal (or its operation, a {@link StopSource}) first, then the
   *   others; undefined entries are skipped, and a function is called for its signal only when
   *   the signals are merged or linked (a run's own signal, created on first use)
   */
  constructor(...sources: readonly (SignalSource | (() => AbortSignal) | undefined)[]) {
    this.#given = sources;
  }

  get #sources(): (SignalSource | undefined)[] {
    return this.#given.map((s) => (typeof s === 'function' ? s() : s));
  }

  /**
   * One signal that aborts when any source does, merged on first read. Read after the call
   * settled, it is the first source (the guard's, which no longer aborts for this call).
   */
  get signal(): AbortSignal {
    if (this.#merged === undefined) {
      if (this.#disposed) {
        const first = this.#sources.find((s) => s !== undefined)!;
        return isSignal(first) ? first : first.signal;
      }
      this.#merged = mergeSignals(...this.#sources);
    }
    return this.#merged.signal;
  }

  /**
   * Aborts `target` when any source, or any of `also`, aborts (with `reason` of its reason), until
   * {@link CallSignal.dispose}.
   *
   * @param target - a controller the caller creates anyway (an upstream request's)
   * @param options - `reason`: what the target aborts with @default the source's reason; `also`:
   *   more signals to follow (the framework's own, given to the call later)
   */
  link(
    target: AbortController,
    options: {
      readonly reason?: (sourceReason: unknown) => unknown;
      readonly also?: AbortSignal;
    } = {},
  ): void {
    const sources = this.#disposed ? [] : [...this.#sources, options.also];
    (this.#links ??= []).push(linkSignals(target, sources, options.reason));
  }

  /** Removes every listener from the sources: the call has settled. */
  dispose(): void {
    this.#disposed = true;
    this.#merged?.dispose();
    if (this.#links !== undefined) for (const off of this.#links) off();
  }
}
