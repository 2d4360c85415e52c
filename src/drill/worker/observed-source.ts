import type { FlipRecord } from '../../model/flip-record.js';
import type { KillSnapshot } from '../../model/kill-state.js';
import type { FlipSource, FlipSourceListener, SourceStatus } from '../../source/flip-source.js';

/** Called after the consumer applied a state up to `seq`. */
export type AppliedListener = (seq: number) => void;

/**
 * Wraps a flip source to learn the moment the provider applied each flip: the wrapped listener
 * calls the provider's first, so the time taken after it returns is "the worker applied it"
 * (the same moment the remote source acknowledges). KS-9.2.3
 */
export class ObservedFlipSource implements FlipSource {
  readonly name: string;
  readonly #inner: FlipSource;
  readonly #onApplied: AppliedListener;
  readonly #onStatus: (status: SourceStatus, detail?: string) => void;

  constructor(
    inner: FlipSource,
    onApplied: AppliedListener,
    onStatus: (status: SourceStatus, detail?: string) => void,
  ) {
    this.#inner = inner;
    this.name = inner.name;
    this.#onApplied = onApplied;
    this.#onStatus = onStatus;
  }

  start(listener: FlipSourceListener): Promise<void> {
    return this.#inner.start({
      onSnapshot: (snapshot: KillSnapshot) => {
        listener.onSnapshot(snapshot);
        this.#onApplied(snapshot.seq);
      },
      onFlip: (record: FlipRecord) => {
        listener.onFlip(record);
        this.#onApplied(record.seq);
      },
      onStatus: (status: SourceStatus, detail?: string) => {
        listener.onStatus(status, detail);
        this.#onStatus(status, detail);
      },
    });
  }

  stop(): Promise<void> {
    return this.#inner.stop();
  }
}
