import type { Principal } from '../auth/principal.js';

/**
 * The credential each open stream was opened with, so a stream ends when its token is revoked,
 * rotated or expires (KS-17.6.1): the control plane sweeps on every heartbeat and right after a
 * token reload. A worker's stream that ends this way stops renewing its lease, and the worker
 * fails closed on its own as after any lost stream.
 *
 * @example
 * ```ts
 * const release = streams.hold(principal, () => res.end());
 * res.once('close', release);
 * streams.sweep((p) => auth.isCurrent(p)); // ends the streams of revoked or expired tokens
 * ```
 */
export class StreamCredentials {
  readonly #open = new Map<Principal, Set<() => void>>();

  /** Records an open stream of `principal`; `end` ends it. @returns the release (idempotent) */
  hold(principal: Principal, end: () => void): () => void {
    let set = this.#open.get(principal);
    if (set === undefined) this.#open.set(principal, (set = new Set()));
    set.add(end);
    return () => {
      const s = this.#open.get(principal);
      if (s === undefined) return;
      s.delete(end);
      if (s.size === 0) this.#open.delete(principal);
    };
  }

  /**
   * Ends every stream whose principal is no longer current.
   *
   * @returns the names of the tokens whose streams were ended, one per principal
   */
  sweep(isCurrent: (p: Principal) => boolean): string[] {
    const ended: string[] = [];
    for (const [p, ends] of this.#open) {
      if (isCurrent(p)) continue;
      this.#open.delete(p);
      ended.push(p.name);
      for (const end of ends) end();
    }
    return ended;
  }
}
