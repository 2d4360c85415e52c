import { ErrorCode } from '../errors.js';
import type { Vouch } from '../ofrep/ofrep-routes.js';
import type { Clock } from '../internal/clock.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { HttpError } from './internal/http-io.js';

/** Options of {@link VouchState}. */
export interface VouchStateOptions {
  readonly store: FlipLogStore;
  /** Not vouching when the store's last catch-up is older than this (ms). */
  readonly storeStaleAfterMs: number;
  /**
   * The control plane's clock: staleness is measured on its monotonic reading (KS-12.5.4); the
   * wall clock is read only for a store that reports nothing but its `caughtUpAt` label.
   */
  readonly clock: Clock;
  readonly log: { warn(message: string): void; error(message: string): void };
  /** Called each time the control plane finds it does not vouch: it ends the streams. */
  readonly onNotVouching: () => void;
}

/** The part of a store's `followStatus()` (KS-8.5.6) read here. */
interface FollowStatusLike {
  readonly state: string;
  readonly caughtUpAt: string | undefined;
  /** Ms since the last catch-up on the store's monotonic clock (KS-12.5.4), when it says. */
  readonly caughtUpAgeMs?: number | undefined;
  /** Why a `failed` store failed (KS-8.5.6). */
  readonly failure?: string;
}

const VOUCHED: Vouch = Object.freeze({ ok: true });

/**
 * Whether a control plane vouches for its state (KS-12.5, KS-6.4.4): not once closed, not once
 * the log it follows diverged or could not be followed (for good), and not while its store's
 * follow status is failed or older than `storeStaleAfterMs`. Logs each change once each way.
 */
export class VouchState {
  readonly #store: FlipLogStore;
  readonly #storeStaleAfterMs: number;
  readonly #clock: Clock;
  readonly #log: VouchStateOptions['log'];
  readonly #onNotVouching: () => void;
  #startedAt = 0;
  #closed = false;
  #broken: string | undefined;
  /** False while not vouching, so the change is logged once each way. */
  #vouching = true;

  constructor(o: VouchStateOptions) {
    this.#store = o.store;
    this.#storeStaleAfterMs = o.storeStaleAfterMs;
    this.#clock = o.clock;
    this.#log = o.log;
    this.#onNotVouching = o.onNotVouching;
  }

  /** Why the control plane stopped vouching for good, or undefined. */
  get broken(): string | undefined {
    return this.#broken;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The start time a store that never caught up is measured from. */
  start(): void {
    this.#startedAt = this.#clock.now();
  }

  close(): void {
    this.#closed = true;
  }

  /** Stops vouching for good, saying why (KS-6.4.4). */
  breakFor(reason: string): void {
    this.#broken = reason;
  }

  /** KS-12.5.1 the verdict now. */
  check(): Vouch {
    if (this.#closed) return { ok: false, reason: 'ERROR', detail: 'the control plane is closed' };
    if (this.#broken !== undefined) return { ok: false, reason: 'ERROR', detail: this.#broken };
    // Optional: a store that follows a log others write (PostgreSQL) says how; others always are.
    const store = this.#store as FlipLogStore & { followStatus?: () => FollowStatusLike };
    if (typeof store.followStatus !== 'function') return VOUCHED;
    let st: FollowStatusLike;
    try {
      st = store.followStatus();
    } catch (err) {
      return { ok: false, reason: 'ERROR', detail: `followStatus() failed: ${String(err)}` };
    }
    if (st.state === 'failed' || st.state === 'closed') {
      return {
        ok: false,
        reason: 'ERROR',
        detail: `the store's follow state is ${st.state}${st.failure === undefined ? '' : `: ${st.failure}`}`,
      };
    }
    // KS-12.5.4 the age on a monotonic clock: a step of the wall clock neither makes a stale store
    // look caught up nor a caught-up one stale. Only a store that reports no age (one written
    // before it did) is judged by its wall-clock label.
    const age =
      typeof st.caughtUpAgeMs === 'number'
        ? st.caughtUpAgeMs
        : st.caughtUpAt === undefined
          ? this.#clock.now() - this.#startedAt
          : this.#clock.wallNow() - Date.parse(st.caughtUpAt);
    // NaN (an unreadable time) fails closed too.
    if (!(age <= this.#storeStaleAfterMs)) {
      return {
        ok: false,
        reason: 'STALE',
        detail: `the store last caught up with the log ${Math.round(age)} ms ago (bound ${this.#storeStaleAfterMs} ms)`,
      };
    }
    return VOUCHED;
  }

  /** KS-12.5.2 on each heartbeat: true when vouching (and says so after a spell without). */
  beat(): boolean {
    const v = this.check();
    if (!v.ok) {
      this.#notVouching(v.detail);
      return false;
    }
    if (!this.#vouching) {
      this.#vouching = true;
      this.#log.warn('the store caught up with the log again; vouching for the state again');
    }
    return true;
  }

  /**
   * Throws 503 unless vouching: acks answered 503 renew no lease, so every worker fails closed on
   * its own (KS-12.5.2).
   *
   * @throws {HttpError} 503 `KS_STORE_UNAVAILABLE`
   */
  require(): void {
    if (this.#broken !== undefined) {
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `the control plane does not vouch for its state: ${this.#broken}`,
      );
    }
    const v = this.check();
    if (!v.ok) {
      this.#notVouching(v.detail);
      throw new HttpError(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        `the control plane cannot vouch for its state: ${v.detail}`,
      );
    }
  }

  #notVouching(detail: string): void {
    if (this.#vouching) {
      this.#vouching = false;
      this.#log.error(`not vouching for the state (${detail}): ending streams, refusing acks`);
    }
    this.#onNotVouching();
  }
}
