import type { FlipRecord, KillSnapshot } from '../../src/model/index.js';
import { SourceStatus, type FlipSource, type FlipSourceListener } from '../../src/source/index.js';

/**
 * A FlipSource the test drives: it delivers exactly what the test tells it, when it tells it.
 * `start` resolves at once unless `startWith` says otherwise.
 */
export class ControlledFlipSource implements FlipSource {
  readonly name = 'controlled';
  listener: FlipSourceListener | undefined;
  starts = 0;
  stops = 0;
  startWith: 'resolve' | 'reject' | 'hang' = 'resolve';

  async start(listener: FlipSourceListener): Promise<void> {
    this.starts++;
    this.listener = listener;
    listener.onStatus(SourceStatus.CONNECTING);
    if (this.startWith === 'reject') throw new Error('cannot reach the flip source');
    if (this.startWith === 'hang') await new Promise<never>(() => {});
  }

  async stop(): Promise<void> {
    this.stops++;
    const l = this.listener;
    this.listener = undefined;
    l?.onStatus(SourceStatus.CLOSED);
  }

  snapshot(s: KillSnapshot): void {
    this.#l().onSnapshot(s);
  }

  flip(r: FlipRecord): void {
    this.#l().onFlip(r);
  }

  status(s: SourceStatus, detail?: string): void {
    this.#l().onStatus(s, detail);
  }

  /** Snapshot then open: what a healthy source does first. */
  open(s: KillSnapshot): void {
    this.snapshot(s);
    this.status(SourceStatus.OPEN);
  }

  #l(): FlipSourceListener {
    if (!this.listener) throw new Error('source not started');
    return this.listener;
  }
}
