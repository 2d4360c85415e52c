import type { FlipRecord } from '../model/flip-record.js';

/**
 * The last records of the log as encoded `flip` events, for `Last-Event-ID` replay (KS-6.1.4,
 * KS-6.1.6), with each record's hash, so a record read again at a seq already applied can be
 * compared with the one applied (KS-6.4.4). Holds between `max` and `2 x max` records: trimming
 * in bulk keeps an append O(1) amortised.
 */
export class ReplayRing {
  readonly #max: number;
  /** #events[i] and #hashes[i] hold seq #first + i. */
  #events: Buffer[] = [];
  #hashes: string[] = [];
  #first = 1;

  /** @param max - records kept at least (the `maxReplay` option) */
  constructor(max: number) {
    this.#max = max;
  }

  /** The oldest seq held (head + 1 when empty). */
  get first(): number {
    return this.#first;
  }

  /**
   * Starts over from the records at the end of a log whose head is `head`.
   *
   * @param encode - encodes one record as its `flip` event
   */
  load(records: readonly FlipRecord[], head: number, encode: (r: FlipRecord) => Buffer): void {
    const tail = records.slice(-this.#max);
    this.#first = tail[0]?.seq ?? head + 1;
    this.#events = tail.map(encode);
    this.#hashes = tail.map((r) => r.hash);
  }

  /** Appends the next record (seq = last + 1) and its encoded event. */
  push(record: FlipRecord, event: Buffer): void {
    this.#events.push(event);
    this.#hashes.push(record.hash);
    if (this.#events.length > this.#max * 2) {
      const cut = this.#events.length - this.#max;
      this.#events = this.#events.slice(cut);
      this.#hashes = this.#hashes.slice(cut);
      this.#first += cut;
    }
  }

  /**
   * The events after `seq` up to `head`, or undefined when that is out of reach (older than the
   * ring, or beyond the head).
   */
  since(seq: number, head: number): Buffer[] | undefined {
    if (seq > head || seq + 1 < this.#first) return undefined;
    return this.#events.slice(seq + 1 - this.#first);
  }

  /** The hash of the record at `seq` when the ring holds it. */
  hashAt(seq: number): string | undefined {
    if (seq < this.#first) return undefined;
    return this.#hashes[seq - this.#first];
  }
}
