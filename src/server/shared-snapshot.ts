import type { KillSnapshot } from '../model/kill-state.js';
import { encodeEvent, StreamEvent } from '../protocol/stream-events.js';

/**
 * The snapshot event every stream opening at one seq receives, encoded once and shared
 * (KS-17.8.2): a stream's first write references this buffer instead of holding its own copy, so
 * N streams opening on a large kill state cost one encoding, not N (the issue measured 212 MiB for
 * 30 non-reading streams on a 7 MB snapshot). Kept per read view (`key`), dropped when the seq
 * moves on.
 */
export class SharedSnapshot {
  #seq = -1;
  readonly #byKey = new Map<string, Buffer>();

  /** The encoded snapshot event for `seq` and view `key`, encoding it only the first time. */
  get(seq: number, key: string, snapshot: () => KillSnapshot): Buffer {
    if (seq !== this.#seq) {
      this.#byKey.clear();
      this.#seq = seq;
    }
    let buf = this.#byKey.get(key);
    if (buf === undefined) {
      buf = encodeEvent(StreamEvent.SNAPSHOT, snapshot(), seq);
      this.#byKey.set(key, buf);
    }
    return buf;
  }
}
