import type { SigningKey } from '../integrity/signing-key.js';
import { snapshotStatement } from '../integrity/statements.js';
import { encodeSnapshotEvent, type SnapshotData } from '../protocol/stream-events.js';

/**
 * The snapshot event every stream opening at one seq receives, encoded once and shared
 * (KS-17.8.2): a stream's first write references this buffer instead of holding its own copy, so
 * N streams opening on a large kill state cost one encoding, not N (the issue measured 212 MiB for
 * 30 non-reading streams on a 7 MB snapshot). Kept per read view (`key`), dropped when the seq
 * moves on. With a signing key, each encoding is signed once too (KS-17.7.9).
 */
export class SharedSnapshot {
  #seq = -1;
  readonly #byKey = new Map<string, Buffer>();
  readonly #sign: ((json: string) => string) | undefined;

  /** @param signingKey - signs each snapshot (a `sig` event before it) when given */
  constructor(signingKey?: SigningKey) {
    this.#sign =
      signingKey === undefined
        ? undefined
        : (json: string) => signingKey.sign(snapshotStatement(json));
  }

  /** The encoded snapshot event for `seq` and view `key`, encoding it only the first time. */
  get(seq: number, key: string, snapshot: () => SnapshotData): Buffer {
    if (seq !== this.#seq) {
      this.#byKey.clear();
      this.#seq = seq;
    }
    let buf = this.#byKey.get(key);
    if (buf === undefined) {
      buf = encodeSnapshotEvent(snapshot(), this.#sign);
      this.#byKey.set(key, buf);
    }
    return buf;
  }
}
