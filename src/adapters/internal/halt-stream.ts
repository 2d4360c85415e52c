/**
 * A pass-through stream that errors with the signal's reason the moment it aborts, and at its
 * end if it aborted (providers end their streams silently on abort). `done` runs once it ends.
 */
export function haltStream<T>(signal: AbortSignal, done: () => void): TransformStream<T, T> {
  let onAbort: (() => void) | undefined;
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    done();
  };
  return new TransformStream<T, T>({
    start(controller) {
      if (signal.aborted) {
        controller.error(signal.reason);
        end();
        return;
      }
      onAbort = () => {
        controller.error(signal.reason);
        end();
      };
      signal.addEventListener('abort', onAbort, { once: true });
    },
    transform(chunk, controller) {
      controller.enqueue(chunk);
    },
    flush(controller) {
      if (signal.aborted) controller.error(signal.reason);
      end();
    },
  });
}
