/**
 * When a drill gateway stopped for a flip (KS-9.2.4), read at the events that can make it so, not
 * when the drill looks.
 *
 * A gateway has stopped for flip `seq` once it applied `seq` (or later) and holds no call of a
 * flip up to `seq` unenforced (KS-6.5). Whether a halt leaves holds is known only after the
 * microtasks that follow its apply (the guard cuts the matching calls there and a seam takes a
 * hold for each it cannot cut itself), so the drill member looks in the check phase. But the
 * gateway's positive acknowledgement is sent from the check phase too, and a look taken after it
 * (a process descheduled between the two on a loaded host) would stamp the stop after the control
 * plane reported the stop complete: the report would say the fleet stopped before this member did.
 *
 * So each event is stamped when it happens, synchronously (a flip applied: from the provider's
 * configuration-changed event, emitted before the source queues its acknowledgement; the last
 * hold on a flip released: from the gateway's enforced listener, called right after it queued
 * the withdrawal's acknowledgement), and the stop is dated at the event that completed it: the
 * later of the first apply that reached the seq and the last release of a hold on a flip up to
 * it. Both come before any acknowledgement that vouches for the stop, and neither is earlier than
 * the stop itself.
 */
export class StopStamps {
  /** Applies seen, in increasing seq: [seq, at]. */
  readonly #applied: [number, number][] = [];
  /** Flips whose last hold was released, since last taken: seq -> at (the latest). */
  readonly #enforced = new Map<number, number>();

  /** The gateway applied flips up to `seq` at `at` (ignored unless it moved forward). */
  applied(seq: number, at: number): void {
    const last = this.#applied[this.#applied.length - 1];
    if (last !== undefined && seq <= last[0]) return;
    this.#applied.push([seq, at]);
  }

  /** The last hold on flip `seq` was released at `at`. */
  enforced(seq: number, at: number): void {
    this.#enforced.set(seq, Math.max(at, this.#enforced.get(seq) ?? at));
  }

  /**
   * The time the stop for flips up to `upTo` was reached, and forgets what it covers. `now` when
   * no apply reaching `upTo` was seen (a state taken without the event, e.g. at start).
   */
  take(upTo: number, now: number): number {
    const first = this.#applied.find(([seq]) => seq >= upTo);
    let at = first === undefined ? now : first[1];
    for (const [seq, t] of this.#enforced) {
      if (seq > upTo) continue;
      if (t > at) at = t;
      this.#enforced.delete(seq);
    }
    // An apply beyond upTo stays: a later take may need the first that reached its seq.
    while (this.#applied.length > 0 && this.#applied[0]![0] <= upTo) this.#applied.shift();
    return Math.min(at, now);
  }
}
