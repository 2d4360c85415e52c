import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { systemClock, type Clock } from '../internal/clock.js';
import { authorize, Role, type Principal } from './principal.js';

/** Options of {@link WorkerClaims}. Times in milliseconds from the injected clock. */
export interface WorkerClaimsOptions {
  /**
   * How long a claim outlives its holder's last acknowledgement or stream: the control plane
   * passes `staleAfterMs + leaseMarginMs`, the window in which it still counts the holder's lease.
   */
  readonly ttlMs: number;
  /**
   * @deprecated Ignored since KS-17.2.1: only tokens bound to worker ids (and admins) act as
   * workers, so no unbound token remains to keep away from bound ids.
   */
  readonly reserved?: (workerId: string) => boolean;
  /** Clock: a claim's time to live runs on its monotonic reading. @default systemClock */
  readonly clock?: Clock;
  /**
   * Live claims kept at most; beyond it a new id is refused (a live claim is never evicted, or
   * flooding ids would free a victim's). @default 100000
   */
  readonly maxClaims?: number;
}

interface Claim {
  holder: string;
  streams: number;
  /** Last acknowledgement or stream close by the holder. */
  lastAt: number;
}

/**
 * Which token acts as which worker id, so a leaked token cannot acknowledge for a worker it is not
 * (an ack makes a flip look complete). KS-5.2.9, KS-17.2.1. The rules, checked before anything is
 * recorded:
 *
 * - an admin may act as any worker id, and claims nothing;
 * - a worker credential (the `worker` role, or a viewer or operator with a `workers` binding) may
 *   act only as ids its binding matches, and only while no other token holds the id;
 * - anyone else may not act as a worker at all;
 * - acting as an id (an acknowledgement, or a stream opened with `?worker=`) makes the token its
 *   holder; the claim lasts while the holder has a stream open as that id and `ttlMs` after its
 *   last acknowledgement or stream close. Two tokens whose bindings overlap cannot take each
 *   other's live ids.
 *
 * A claim lapses with the holder's lease: a worker whose lease ran out already counts as stopped
 * and fails closed on its own, so a later claimant cannot make its stop look complete. Claims
 * live in memory: after a control-plane restart the first token to act as an id holds it again.
 *
 * @example
 * ```ts
 * const claims = new WorkerClaims({ ttlMs: 3100 });
 * claims.check(principal, 'w-1'); // throws KS_FORBIDDEN
 * claims.touch(principal, 'w-1');
 * ```
 */
export class WorkerClaims {
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #max: number;
  readonly #claims = new Map<string, Claim>();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad `ttlMs`, `maxClaims` or `reserved` */
  constructor(options: WorkerClaimsOptions) {
    const ttl = options?.ttlMs;
    if (!Number.isSafeInteger(ttl) || ttl < 0) {
      throw new InvalidOptionError('ttlMs', 'a non-negative integer (ms)', ttl);
    }
    const max = options.maxClaims ?? 100_000;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new InvalidOptionError('maxClaims', 'a positive integer', max);
    }
    if (options.reserved !== undefined && typeof options.reserved !== 'function') {
      throw new InvalidOptionError('reserved', 'a function', options.reserved);
    }
    this.#ttlMs = ttl;
    this.#max = max;
    const clock = options.clock ?? systemClock;
    this.#now = () => clock.now();
  }

  /**
   * Refuses a principal that may not act as a worker id now. Records nothing.
   *
   * @throws {KillSwitchError} `KS_FORBIDDEN` naming the token and the id
   */
  check(principal: Principal, workerId: string): void {
    // The credential and its binding: KS-5.2.9, KS-17.2.1
    authorize(principal, { kind: 'ack', workerId });
    if (principal.role === Role.ADMIN) return;
    const c = this.#claims.get(workerId);
    if (c !== undefined && c.holder !== principal.name && this.#live(c)) {
      throw new KillSwitchError(
        ErrorCode.FORBIDDEN,
        `token '${principal.name}' may not act as worker '${workerId}': another token acts as it`,
      );
    }
    if (c === undefined && this.#claims.size >= this.#max) {
      this.#prune();
      if (this.#claims.size >= this.#max) {
        throw new KillSwitchError(
          ErrorCode.FORBIDDEN,
          `token '${principal.name}' may not act as a new worker '${workerId}': ${this.#max} worker ids are held`,
        );
      }
    }
  }

  /** Records an acknowledgement as `workerId` (after {@link WorkerClaims.check} passed). */
  touch(principal: Principal, workerId: string): void {
    const c = this.#claim(principal, workerId);
    if (c !== undefined) c.lastAt = this.#now();
  }

  /**
   * Records a stream opened as `workerId` (after {@link WorkerClaims.check} passed).
   *
   * @returns the function to call when the stream closes
   */
  open(principal: Principal, workerId: string): () => void {
    const c = this.#claim(principal, workerId);
    if (c === undefined) return () => undefined;
    c.streams++;
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      c.streams--;
      c.lastAt = this.#now();
    };
  }

  /** Who holds a worker id now (undefined when nobody does). */
  holder(workerId: string): string | undefined {
    const c = this.#claims.get(workerId);
    return c !== undefined && this.#live(c) ? c.holder : undefined;
  }

  #live(c: Claim): boolean {
    return c.streams > 0 || this.#now() - c.lastAt < this.#ttlMs;
  }

  /** The principal's claim on the id (a lapsed one of another token is replaced). */
  #claim(principal: Principal, workerId: string): Claim | undefined {
    if (principal.role === Role.ADMIN) return undefined;
    let c = this.#claims.get(workerId);
    if (c === undefined || (c.holder !== principal.name && !this.#live(c))) {
      c = { holder: principal.name, streams: 0, lastAt: this.#now() };
      this.#claims.set(workerId, c);
    }
    return c;
  }

  /** Drops lapsed claims. */
  #prune(): void {
    for (const [id, c] of this.#claims) if (!this.#live(c)) this.#claims.delete(id);
  }
}
