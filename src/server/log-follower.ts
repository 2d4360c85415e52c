import { ErrorCode, KillSwitchError } from '../errors.js';
import type { FlipRecord } from '../model/flip-record.js';
import { KillState } from '../model/kill-state.js';
import { Divergence, LogDivergedError, type LogPosition } from '../protocol/log-position.js';
import { encodeFlipEvent } from '../protocol/stream-events.js';
import { selectorEquals } from '../model/selector.js';
import {
  hasPendingWrites,
  type FlipLogStore,
  type PendingWritesStore,
} from '../store/flip-log-store.js';
import { ReplayRing } from './replay-ring.js';

/**
 * Where a {@link LogFollower} is in its life:
 *
 * - `starting`: subscribed, reading and folding the log; records that arrive wait in a buffer;
 * - `following`: each record is applied as it arrives, in seq order;
 * - `resyncing`: a record arrived out of order, the missing ones are read from the store; records
 *   that arrive meanwhile wait in the buffer;
 * - `broken`: the log moved backwards, forked or could not be followed; nothing is applied any
 *   more and the control plane stops vouching for good (KS-6.4.4);
 * - `closed`: unsubscribed.
 */
export const FollowerPhase = {
  STARTING: 'starting',
  FOLLOWING: 'following',
  RESYNCING: 'resyncing',
  BROKEN: 'broken',
  CLOSED: 'closed',
} as const;
/** One of {@link FollowerPhase}'s values. */
export type FollowerPhase = (typeof FollowerPhase)[keyof typeof FollowerPhase];

/** What a {@link LogFollower} reads: the part of a {@link FlipLogStore} it uses. */
export type FollowedLog = Pick<FlipLogStore, 'kind' | 'read' | 'subscribe'> &
  Partial<PendingWritesStore>;

/** Options of {@link LogFollower}. */
export interface LogFollowerOptions {
  /** The log to follow (the control plane's store). */
  readonly log: FollowedLog;
  /** Records kept for replay and for comparing hashes at seqs already applied (KS-6.1.6). */
  readonly maxReplay: number;
  /**
   * Called once per record applied, in seq order, in the same synchronous step as the apply: it
   * broadcasts the record's encoded `flip` event and does the bookkeeping. @default nothing
   */
  readonly onApplied?: (record: FlipRecord, event: Buffer) => void;
  /**
   * KS-2.4.9 called with each halt streamed before it is durable (a store with one exclusive
   * writer tells its writes early), in seq order: it broadcasts the event. The same record comes
   * to `onApplied` once durable (the hub sends it only to subscribers that have not had it), or
   * the follower breaks. Without it nothing is streamed early. @default nothing streamed early
   */
  readonly onEarly?: (record: FlipRecord, event: Buffer) => void;
  /** Called once when the follower breaks, with why (it stops vouching for good). */
  readonly onBroken?: (reason: string) => void;
  readonly logger: { warn(message: string): void; error(message: string): void };
}

/**
 * Follows a flip log into a {@link KillState}: applies records in seq order, re-reads the store on
 * a gap, compares the hash of a record seen again at a seq already applied with the one applied
 * (another one means the log moved backwards or forked: `broken`, KS-6.4.4), and lets a caller
 * wait until a seq is applied (KS-6.4.5). Its phases are {@link FollowerPhase}.
 *
 * @example
 * ```ts
 * const follower = new LogFollower({ log: store, maxReplay: 10_000, logger: console });
 * await follower.start(await store.logId());
 * await follower.waitApplied(5, hash, 5000); // true once seq 5 is applied with that hash
 * ```
 */
export class LogFollower {
  readonly #log: FollowedLog;
  readonly #onApplied: (record: FlipRecord, event: Buffer) => void;
  readonly #onBroken: (reason: string) => void;
  readonly #onEarly: ((record: FlipRecord, event: Buffer) => void) | undefined;
  /** KS-2.4.9 halts streamed early, not durable yet, in seq order, with their encoded events. */
  #early: { readonly record: FlipRecord; readonly event: Buffer }[] = [];
  readonly #logger: LogFollowerOptions['logger'];
  /** Encoded flip events for replay, with their hashes. */
  readonly #ring: ReplayRing;
  readonly #ids = new Set<string>();
  readonly #waiters = new Map<number, Set<() => void>>();
  #phase: FollowerPhase = FollowerPhase.STARTING;
  #state = KillState.empty();
  #logId = '';
  #buffered: FlipRecord[] = [];
  #broken: string | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(o: LogFollowerOptions) {
    this.#log = o.log;
    this.#ring = new ReplayRing(o.maxReplay);
    this.#onApplied = o.onApplied ?? (() => {});
    this.#onBroken = o.onBroken ?? (() => {});
    this.#onEarly = o.onEarly;
    this.#logger = o.logger;
  }

  /** Where the follower is now. */
  get phase(): FollowerPhase {
    return this.#phase;
  }

  /** The kill state: the fold of every record applied. */
  get state(): KillState {
    return this.#state;
  }

  /** Why the follower broke, or undefined. */
  get broken(): string | undefined {
    return this.#broken;
  }

  /** The identity of the log followed (KS-2.7), once started. */
  get logId(): string {
    return this.#logId;
  }

  /** This follower's position: its log, head seq and the head's hash. KS-6.4.1 */
  position(): LogPosition {
    return { logId: this.#logId, seq: this.#state.seq, hash: this.#state.hash };
  }

  /**
   * KS-2.4.9 the seq of the last halt streamed early and not durable yet, or undefined when none
   * is: the stream's position runs ahead of the state's by these records meanwhile.
   */
  get earlyHead(): number | undefined {
    return this.#early.at(-1)?.record.seq;
  }

  /** Whether the record with `hash` at `seq` was streamed early and is not durable yet. */
  isEarly(seq: number, hash: string | undefined): boolean {
    const e = this.#early.find((x) => x.record.seq === seq);
    return e !== undefined && (hash === undefined || e.record.hash === hash);
  }

  /** Whether a record with this idempotency key was applied. */
  hasId(id: string): boolean {
    return this.#ids.has(id);
  }

  /**
   * The encoded `flip` events after `seq` up to `head`, or undefined when out of reach of the
   * replay ring (KS-6.1.4, KS-6.1.6).
   */
  replaySince(seq: number, head: number): Buffer[] | undefined {
    return this.#ring.since(seq, head);
  }

  /** The hash of the record applied at `seq`, when the follower still knows it. */
  appliedHash(seq: number): string | undefined {
    if (seq === this.#state.seq) return this.#state.hash;
    return seq > this.#state.seq ? undefined : this.#ring.hashAt(seq);
  }

  /**
   * Subscribes, then reads and folds the whole log; records delivered meanwhile are applied after
   * it, in order. Resolves in `following`.
   *
   * @param logId - the identity of the log (the store's `logId()`)
   */
  async start(logId: string): Promise<void> {
    this.#logId = logId;
    this.#unsubscribe = this.#log.subscribe((r) => this.#receive(r));
    if (this.#onEarly !== undefined && hasPendingWrites(this.#log)) {
      const unsubscribe = this.#unsubscribe;
      const unpending = this.#log.subscribePending({
        pending: (records) => this.#pending(records),
        failed: (err) => this.#pendingFailed(err),
      });
      this.#unsubscribe = () => {
        unsubscribe();
        unpending();
      };
    }
    const records = await this.#log.read();
    this.#state = KillState.fold(records);
    for (const r of records) this.#ids.add(r.id);
    this.#ring.load(records, this.#state.seq, (r) => encodeFlipEvent(r));
    if (this.#phase !== FollowerPhase.STARTING) return;
    this.#phase = FollowerPhase.FOLLOWING;
    this.#drainBuffered();
  }

  /**
   * Takes one record from the log. Exposed for tests that inject records; the store's
   * subscription calls it.
   */
  receive(record: FlipRecord): void {
    this.#receive(record);
  }

  /**
   * KS-6.4.4 the log moved backwards or forked: stop applying for good and say why. Only a
   * restart on a log that continues what the workers applied, or a new log they are moved to,
   * ends it.
   */
  diverge(err: LogDivergedError): void {
    this.#break(err.message, `${err.message}; not vouching for the state any more`);
  }

  /**
   * Whether the record with `hash` is applied at `seq` (any record there when `hash` is
   * undefined), waiting up to `ms` for it. False once broken or closed. KS-6.4.5
   */
  waitApplied(seq: number, hash: string | undefined, ms: number): Promise<boolean> {
    const applied = (): boolean => {
      if (this.#broken !== undefined || this.#state.seq < seq) return false;
      if (hash === undefined) return true;
      const known = this.appliedHash(seq);
      // Beyond the ring only when more than 2 x maxReplay records followed it, in order.
      return known === undefined || known === hash;
    };
    if (
      this.#state.seq >= seq ||
      this.#broken !== undefined ||
      this.#phase === FollowerPhase.CLOSED
    )
      return Promise.resolve(applied());
    return new Promise((resolve) => {
      let set = this.#waiters.get(seq);
      if (!set) this.#waiters.set(seq, (set = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        resolve(applied());
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  /** Unsubscribes; pending waits answer now. */
  close(): void {
    if (this.#phase !== FollowerPhase.BROKEN) this.#phase = FollowerPhase.CLOSED;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#wakeAll();
  }

  #receive(r: FlipRecord): void {
    switch (this.#phase) {
      case FollowerPhase.STARTING:
      case FollowerPhase.RESYNCING:
        this.#buffered.push(r);
        return;
      case FollowerPhase.FOLLOWING:
        this.#apply(r);
        return;
      default:
        return;
    }
  }

  #drainBuffered(): void {
    while (this.#buffered.length > 0 && this.#phase === FollowerPhase.FOLLOWING) {
      this.#apply(this.#buffered.shift()!);
    }
  }

  /** One record in the `following` phase. */
  #apply(r: FlipRecord): void {
    if (r.seq <= this.#state.seq) {
      this.#checkSeen(r);
      return;
    }
    if (r.seq !== this.#state.seq + 1) {
      void this.#resync(`expected seq ${this.#state.seq + 1}, received ${r.seq}`);
      return;
    }
    try {
      this.#state.apply(r);
    } catch (err) {
      void this.#resync((err as Error).message);
      return;
    }
    this.#applied(r);
  }

  /**
   * KS-2.4.9 the records of a write that is not durable yet: the leading halts that can only stop
   * more (a halt with a new selector, or one that keeps the mode of the halt it replaces: a mode
   * change such as hold -> drain lets queued work run) are streamed now; the rest waits for
   * durability. Only while following and when nothing else is pending.
   */
  #pending(records: readonly FlipRecord[]): void {
    if (this.#phase !== FollowerPhase.FOLLOWING || this.#early.length > 0) return;
    let seq = this.#state.seq;
    let hash = this.#state.hash;
    for (const r of records) {
      if (r.action !== 'halt' || r.seq !== seq + 1 || r.prev !== hash) return;
      const replaced = this.#state.get(r.selector);
      if (replaced !== undefined && replaced.mode !== r.mode) return;
      if (this.#early.some((e) => selectorEquals(e.record.selector, r.selector))) return;
      const event = encodeFlipEvent(r);
      this.#early.push({ record: r, event });
      this.#onEarly!(r, event);
      seq = r.seq;
      hash = r.hash;
    }
  }

  /**
   * KS-2.4.9 a write whose halts were streamed early failed: workers hold a halt the log may not
   * have, so this control plane stops vouching for good (streams end, acks 503, OFREP fails
   * closed); the workers' leases run out and they stay halted.
   */
  #pendingFailed(err: Error): void {
    const first = this.#early[0]?.record.seq;
    if (first === undefined) return;
    const last = this.#early.at(-1)!.record.seq;
    this.#early = [];
    const reason = `halt${first === last ? ` seq ${first}` : `s seq ${first}..${last}`} streamed to workers before it was durable, and its write failed (${err.message}); the workers may hold a halt the log does not`;
    this.#break(reason, `${reason}; not vouching for the state any more`);
  }

  /** The bookkeeping after a record was applied to the state. */
  #applied(r: FlipRecord): void {
    let event: Buffer;
    const early = this.#early[0];
    if (early !== undefined && early.record.seq === r.seq) {
      this.#early.shift();
      if (early.record.hash !== r.hash) {
        // One writer: cannot happen; if it did, workers applied another record than the log's.
        this.#early = [];
        this.diverge(
          new LogDivergedError(
            Divergence.FORKED,
            { logId: this.#logId, seq: r.seq, hash: early.record.hash },
            { logId: this.#logId, seq: r.seq, hash: r.hash },
            {
              applied: 'this control plane streamed early',
              seen: `the ${this.#log.kind} store holds`,
            },
          ),
        );
        return;
      }
      event = early.event;
    } else event = encodeFlipEvent(r);
    this.#onApplied(r, event);
    this.#ids.add(r.id);
    this.#ring.push(r, event);
    const waiters = this.#waiters.get(r.seq);
    if (waiters) {
      this.#waiters.delete(r.seq);
      for (const w of waiters) w();
    }
  }

  /**
   * KS-6.4.4 a record at a seq already applied (a store delivering again, a re-read) must be the
   * record applied there; another one means the log forked under us.
   */
  #checkSeen(r: FlipRecord): void {
    const known = this.appliedHash(r.seq);
    if (known === undefined || known === r.hash) return;
    this.diverge(
      new LogDivergedError(
        Divergence.FORKED,
        { logId: this.#logId, seq: r.seq, hash: known },
        { logId: this.#logId, seq: r.seq, hash: r.hash },
        { applied: 'this control plane applied', seen: `the ${this.#log.kind} store now holds` },
      ),
    );
  }

  /**
   * A record arrived out of order: read what is missing from the store and apply it in order,
   * then what arrived meanwhile. A store that cannot be read, or answers records that do not
   * follow the state, breaks the follower (fail closed: workers go stale and halt).
   */
  async #resync(why: string): Promise<void> {
    if (this.#phase !== FollowerPhase.FOLLOWING) return;
    this.#phase = FollowerPhase.RESYNCING;
    this.#logger.warn(
      `stream out of order (${why}); re-reading the log after seq ${this.#state.seq}`,
    );
    try {
      const missing = await this.#log.read({ after: this.#state.seq });
      if (this.#phase !== FollowerPhase.RESYNCING) return;
      for (const r of missing) {
        if (r.seq !== this.#state.seq + 1)
          throw new KillSwitchError(ErrorCode.SEQ_GAP, `store returned seq ${r.seq}`);
        this.#state.apply(r);
        this.#applied(r);
        if (this.#phase !== FollowerPhase.RESYNCING) return;
      }
    } catch (err) {
      const reason = `cannot follow the flip log: ${(err as Error).message}`;
      this.#break(reason, reason);
      return;
    }
    this.#phase = FollowerPhase.FOLLOWING;
    this.#drainBuffered();
  }

  #break(reason: string, logLine: string): void {
    if (this.#broken !== undefined || this.#phase === FollowerPhase.CLOSED) return;
    this.#broken = reason;
    this.#phase = FollowerPhase.BROKEN;
    this.#buffered = [];
    this.#early = [];
    this.#logger.error(logLine);
    this.#onBroken(reason);
    this.#wakeAll();
  }

  #wakeAll(): void {
    for (const set of [...this.#waiters.values()]) for (const w of [...set]) w();
  }
}
