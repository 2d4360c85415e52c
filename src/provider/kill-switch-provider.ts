import {
  FlagNotFoundError,
  OpenFeatureEventEmitter,
  ProviderEvents,
  StandardResolutionReasons,
  TypeMismatchError,
  type EvaluationContext,
  type FlagMetadata,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { KILL_FLAG_KEYS, flagsChangedBy, levelOfFlag } from '../model/flags.js';
import type { FlipRecord } from '../model/flip-record.js';
import { KillState, type KillSnapshot } from '../model/kill-state.js';
import {
  LEVELS,
  SELECTOR_KEYS,
  levelOf,
  runPathProblem,
  type KillContext,
  type Level,
} from '../model/selector.js';
import { SourceStatus, type FlipSource, type FlipSourceListener } from '../source/flip-source.js';
import { StoreFlipSource } from '../source/store-flip-source.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { RESOLVE_BOOLEAN_NOW } from '../internal/synchronous-resolution.js';

/** Where the provider reports staleness, gaps and source errors. */
export interface KillSwitchProviderLogger {
  warn(message: string): void;
  error?(message: string): void;
}

/** Options of {@link KillSwitchProvider}. */
export interface KillSwitchProviderOptions {
  /** Where the kill state comes from (a local store, or a control plane). Required. */
  readonly source: FlipSource;
  /** Receives staleness, gap and error reports. @default console */
  readonly logger?: KillSwitchProviderLogger;
}

/** Options of {@link KillSwitchProvider.fromStore}. */
export interface KillSwitchProviderFromStoreOptions {
  /** @default console */
  readonly logger?: KillSwitchProviderLogger;
  /** Wait between attempts when reading the store fails. @default 500 ms */
  readonly retryMs?: number;
}

/** Why the provider is answering halted without looking at the kill state. */
export interface FailClosedState {
  /** `STALE`: no fresh state (before the first snapshot, stale or closed source); `ERROR`: a gap, a corrupt record, a bad snapshot, a failed start. */
  readonly reason: 'STALE' | 'ERROR';
  readonly detail: string;
}

/** The variants the provider answers with. */
export const KillVariant = {
  HALTED: 'halted',
  RUNNING: 'running',
  FAIL_CLOSED: 'fail-closed',
} as const;
export type KillVariant = (typeof KillVariant)[keyof typeof KillVariant];

type Answer = ResolutionDetails<boolean>;

/** A frozen fail-closed answer: `true`, no errorCode (the SDK would drop the value). KS-3.2.1 */
function failClosedAnswer(reason: 'STALE' | 'ERROR', detail: string): Answer {
  return Object.freeze({
    value: true,
    variant: KillVariant.FAIL_CLOSED,
    reason,
    flagMetadata: Object.freeze({ failClosed: detail }),
  });
}

/** Fail-closed answers for a context attribute of the wrong type, built once per attribute. */
const BAD_CONTEXT: Readonly<Record<string, Answer>> = Object.freeze(
  Object.fromEntries(
    SELECTOR_KEYS.map((k) => [
      k,
      failClosedAnswer('ERROR', `context attribute ${k} is not a string`),
    ]),
  ),
);

/**
 * The real setImmediate, captured at load: tests that fake timers must not be able to hold the
 * provider's status events back forever.
 */
const realSetImmediate = globalThis.setImmediate;

const defaultLogger: KillSwitchProviderLogger = {
  warn: (m) => console.warn(`[kill-switch] ${m}`),
  error: (m) => console.error(`[kill-switch] ${m}`),
};

/**
 * The OpenFeature server provider of the kill switch. It answers `kill-switch` (halted if any
 * active halt matches the context) and `kill-switch.<level>` from a {@link FlipSource}, and fails
 * closed everywhere else: before its first snapshot, while the source is not `open`, after a gap
 * or a corrupt record, and for a context attribute of the wrong type. KS-3.1, KS-3.2
 *
 * It is READY as soon as it is registered (it never makes the SDK serve the caller's default while
 * it waits), it never reports FATAL (a FATAL provider makes the SDK return the caller's default),
 * and a fail-closed answer carries no `errorCode` (the SDK drops the value of a resolution that
 * has one). KS-3.2.2, KS-3.2.3
 *
 * @example
 * ```ts
 * await OpenFeature.setProviderAndWait(KillSwitchProvider.fromStore(store));
 * const halted = await OpenFeature.getClient().getBooleanValue('kill-switch', true, { tenant: 'acme' });
 * ```
 */
export class KillSwitchProvider implements Provider {
  readonly runsOn = 'server';
  readonly metadata: { readonly name: string };
  /** PROVIDER_CONFIGURATION_CHANGED (with `flagsChanged`), PROVIDER_STALE, PROVIDER_ERROR, PROVIDER_READY. KS-3.4 */
  readonly events = new OpenFeatureEventEmitter();

  readonly #source: FlipSource;
  readonly #logger: KillSwitchProviderLogger;
  #state: KillState | undefined;
  #sourceStatus: SourceStatus = SourceStatus.CONNECTING;
  #statusDetail: string | undefined;
  /** Set by a gap, a corrupt record, a bad snapshot or a failed start; cleared by the next good snapshot. */
  #broken: string | undefined;
  #closed = false;
  /** Bumped on each start, so callbacks of a source from an earlier start are ignored. */
  #generation = 0;
  /** The answer for every kill flag while not live; undefined when live. The hot path reads only this. */
  #failClosed: Answer | undefined;
  #failure: FailClosedState | undefined;
  /** The answer when no halt matches; rebuilt on each state change, not per call. */
  #running: Answer = failClosedAnswer('STALE', 'no snapshot yet');
  /** Halted answers, built once per matching record. */
  #halted = new WeakMap<FlipRecord, Answer>();
  /** Halted `kill-switch` answers of drain halts: [drainOnly false, drainOnly true]. */
  #drainHalted = new WeakMap<FlipRecord, readonly [Answer, Answer]>();
  /** What events last told the SDK, so fresh-again is announced exactly once. */
  #announced: 'ready' | 'stale' | 'error' = 'ready';
  /**
   * False from initialize until the SDK has surely marked us READY: the SDK sets READY when
   * initialize resolves, which would overwrite a STALE or ERROR announced before. Status events
   * are held back until then and the latest one is sent.
   */
  #settled = true;
  /** Callers of {@link waitUntilFresh} still waiting. */
  readonly #freshWaiters = new Set<{ fresh(): void; closed(): void }>();

  /**
   * @param options - see {@link KillSwitchProviderOptions}
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` when `source` is not a FlipSource or `logger` has no `warn`
   */
  constructor(options: KillSwitchProviderOptions) {
    const source = (options as Partial<KillSwitchProviderOptions> | undefined)?.source;
    if (
      typeof source !== 'object' ||
      source === null ||
      typeof source.start !== 'function' ||
      typeof source.stop !== 'function'
    ) {
      throw new InvalidOptionError('source', 'a FlipSource (start and stop functions)', source);
    }
    const logger = options.logger;
    if (
      logger !== undefined &&
      typeof (logger as Partial<KillSwitchProviderLogger>).warn !== 'function'
    ) {
      throw new InvalidOptionError('logger', 'an object with a warn(message) function', logger);
    }
    this.#source = source;
    this.#logger = logger ?? defaultLogger;
    this.metadata = Object.freeze({ name: `kill-switch (${String(source.name)})` });
    this.#recompute();
  }

  /**
   * A provider that follows a store in this process (through {@link StoreFlipSource}).
   *
   * @param store - an opened or unopened flip-log store
   * @param options - logger and store retry interval
   * @example KillSwitchProvider.fromStore(new MemoryFlipLogStore())
   */
  static fromStore(
    store: FlipLogStore,
    options: KillSwitchProviderFromStoreOptions = {},
  ): KillSwitchProvider {
    const source = new StoreFlipSource(
      store,
      options.retryMs !== undefined ? { retryMs: options.retryMs } : {},
    );
    return new KillSwitchProvider({
      source,
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    });
  }

  /** The status the source last reported. Only `open` (with a snapshot applied) means fresh. */
  get sourceStatus(): SourceStatus {
    return this.#sourceStatus;
  }

  /** Why answers are failing closed now, or undefined when the provider answers from live state. */
  get failure(): FailClosedState | undefined {
    return this.#failure;
  }

  /**
   * Resolves once the provider answers from live state (a snapshot applied, the source open):
   * from then on a `false` is a real "not halted". Until then every answer is halted (failing
   * closed), so a worker that starts its work at once has its first effects refused. Call it
   * after `setProviderAndWait`, before taking work. KS-16.3.1
   *
   * @param options.timeoutMs - give up after this long @default 10000
   * @param options.signal - give up when aborted
   * @throws {KillSwitchError} `KS_STALE` when not fresh in time (the message says why it is not,
   *   in the source's words: a refused token, a refused connection...), when the signal aborts, or
   *   when the provider is closed meanwhile
   * @example
   * ```ts
   * await OpenFeature.setProviderAndWait(provider);
   * await provider.waitUntilFresh({ timeoutMs: 5000 });
   * ```
   */
  waitUntilFresh(
    options: { readonly timeoutMs?: number; readonly signal?: AbortSignal } = {},
  ): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0)
      throw new InvalidOptionError('timeoutMs', 'a positive integer (ms)', options.timeoutMs);
    if (this.#failClosed === undefined) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const notFresh = (why: string) =>
        new KillSwitchError(
          ErrorCode.STALE,
          `kill switch not fresh ${why}: ${this.#failure?.detail ?? 'unknown'}`,
        );
      const done = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.#freshWaiters.delete(waiter);
      };
      const waiter = {
        fresh: () => {
          done();
          resolve();
        },
        closed: () => {
          done();
          reject(new KillSwitchError(ErrorCode.STALE, 'kill switch provider closed while waiting'));
        },
      };
      const onAbort = () => {
        done();
        reject(notFresh('(wait aborted)'));
      };
      const timer = setTimeout(() => {
        done();
        reject(notFresh(`within ${timeoutMs} ms`));
      }, timeoutMs);
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.#freshWaiters.add(waiter);
    });
  }

  /**
   * The kill state the provider holds, as it travels; undefined when it holds none it trusts
   * (before the first snapshot, or after a gap until the next snapshot).
   */
  snapshot(): KillSnapshot | undefined {
    return this.#state?.toSnapshot();
  }

  /**
   * Starts the source and resolves at once: the provider is READY and answers fail-closed until
   * the first snapshot arrives and the source is open. Never rejects (a rejected initialize puts
   * the SDK in ERROR or FATAL; FATAL serves the caller's default). KS-3.2.2
   */
  async initialize(): Promise<void> {
    this.#closed = false;
    const generation = ++this.#generation;
    const listener = this.#makeListener(generation);
    this.#sourceStatus = SourceStatus.CONNECTING;
    this.#statusDetail = undefined;
    // The SDK marks the provider READY when this resolves.
    this.#announced = 'ready';
    this.#settled = false;
    // Nothing it held before a close is trusted again: wait for a fresh snapshot.
    this.#state = undefined;
    this.#broken = undefined;
    realSetImmediate(() => {
      if (generation !== this.#generation) return;
      this.#settled = true;
      if (this.#announced !== 'ready') this.#emitStatus(this.#announced);
    }).unref();
    this.#recompute();
    let started: Promise<void>;
    try {
      started = Promise.resolve(this.#source.start(listener));
    } catch (err) {
      started = Promise.reject(err);
    }
    // Not awaited: waiting for freshness would leave the SDK NOT_READY, serving caller defaults.
    started.catch((err: unknown) => {
      if (generation !== this.#generation || this.#closed) return;
      this.#fail(`source ${this.#source.name} failed to start: ${messageOf(err)}`);
    });
  }

  /** Stops the source; answers fail closed from now on. KS-3.5.1 */
  async onClose(): Promise<void> {
    this.#closed = true;
    this.#generation++;
    this.#sourceStatus = SourceStatus.CLOSED;
    this.#recompute();
    for (const w of [...this.#freshWaiters]) w.closed();
    await this.#source.stop();
  }

  /**
   * The hot path: one map probe per selector shape in use, no allocation beyond the promise.
   * KS-3.1.1, KS-3.1.2, KS-3.1.3, KS-3.2.4
   *
   * @throws {FlagNotFoundError} for a key that is not a kill flag
   */
  async resolveBooleanEvaluation(
    flagKey: string,
    _defaultValue: boolean,
    context: EvaluationContext,
  ): Promise<ResolutionDetails<boolean>> {
    return this[RESOLVE_BOOLEAN_NOW](flagKey, context);
  }

  /**
   * The same resolution, synchronously: the guard's evaluation fast path calls it when the SDK
   * would run no hook around it (KS-4.7.2). It reads `context` and never changes it.
   *
   * @throws {FlagNotFoundError} for a key that is not a kill flag
   */
  [RESOLVE_BOOLEAN_NOW](flagKey: string, context: EvaluationContext): ResolutionDetails<boolean> {
    const level = levelOfFlag(flagKey);
    if (level === undefined) throw new FlagNotFoundError(`flag ${flagKey} is not a kill flag`);
    const failClosed = this.#failClosed;
    if (failClosed !== undefined) return failClosed;
    // KS-3.2.4: a wrong-typed attribute could hide a match; fail closed instead of ignoring it.
    if (context !== undefined && context !== null) {
      for (let i = 0; i < SELECTOR_KEYS.length; i++) {
        const k = SELECTOR_KEYS[i]!;
        const v = context[k];
        if (v !== undefined && typeof v !== 'string') return BAD_CONTEXT[k]!;
      }
      // KS-1.5.4: a run path that cannot be read could hide an ancestor's halt.
      if (context.runPath !== undefined) {
        const problem = runPathProblem(context);
        if (problem !== undefined) return failClosedAnswer('ERROR', problem);
      }
    }
    const ctx = (context ?? {}) as KillContext;
    const hit = level === 'any' ? this.#state!.match(ctx) : this.#state!.match(ctx, level);
    if (hit === undefined) return this.#running;
    // KS-4.8.3: `kill-switch` says whether every matching halt is a drain halt (the guard lets a
    // task admitted before them finish, KS-4.8); only then is the set of matches looked at.
    if (level === 'any' && hit.mode === 'drain') {
      const drainOnly = this.#state!.matchAll(ctx).every((r) => r.mode === 'drain');
      return this.#drainAnswer(hit, drainOnly);
    }
    return this.#haltedAnswer(hit);
  }

  /** @throws {TypeMismatchError} kill flags are boolean; {@link FlagNotFoundError} for other keys. KS-3.1.4 */
  async resolveStringEvaluation(flagKey: string): Promise<ResolutionDetails<string>> {
    throw notBoolean(flagKey);
  }

  /** @throws {TypeMismatchError} kill flags are boolean; {@link FlagNotFoundError} for other keys. KS-3.1.4 */
  async resolveNumberEvaluation(flagKey: string): Promise<ResolutionDetails<number>> {
    throw notBoolean(flagKey);
  }

  /** @throws {TypeMismatchError} kill flags are boolean; {@link FlagNotFoundError} for other keys. KS-3.1.4 */
  async resolveObjectEvaluation<T extends JsonValue>(
    flagKey: string,
  ): Promise<ResolutionDetails<T>> {
    throw notBoolean(flagKey);
  }

  /** A halted `kill-switch` answer for a drain halt, with `drainOnly`, built once per record and flag value. */
  #drainAnswer(record: FlipRecord, drainOnly: boolean): Answer {
    let pair = this.#drainHalted.get(record);
    if (pair === undefined) {
      const base = this.#haltedAnswer(record);
      const make = (v: boolean): Answer =>
        Object.freeze({
          ...base,
          flagMetadata: Object.freeze({ ...base.flagMetadata, drainOnly: v }),
        });
      pair = [make(false), make(true)];
      this.#drainHalted.set(record, pair);
    }
    return pair[drainOnly ? 1 : 0];
  }

  #haltedAnswer(record: FlipRecord): Answer {
    let a = this.#halted.get(record);
    if (a === undefined) {
      // KS-3.1.3: the keys src/guard/kill-decision.ts reads.
      const metadata: FlagMetadata = {
        seq: record.seq,
        id: record.id,
        actor: record.actor,
        reason: record.reason,
        level: levelOf(record.selector),
        at: record.at,
        selector: JSON.stringify(record.selector),
      };
      if (record.mode !== undefined) metadata.mode = record.mode;
      // KS-1.5.2: which run's halt matched: the run itself or one of its ancestors.
      if (record.selector.runId !== undefined) metadata.haltedRunId = record.selector.runId;
      a = Object.freeze({
        value: true,
        variant: KillVariant.HALTED,
        reason: StandardResolutionReasons.TARGETING_MATCH,
        flagMetadata: Object.freeze(metadata),
      });
      this.#halted.set(record, a);
    }
    return a;
  }

  #makeListener(generation: number): FlipSourceListener {
    const current = () => generation === this.#generation && !this.#closed;
    return {
      onSnapshot: (snapshot) => {
        if (current()) this.#onSnapshot(snapshot);
      },
      onFlip: (record) => {
        if (current()) this.#onFlip(record);
      },
      onStatus: (status, detail) => {
        if (current()) this.#onStatus(status, detail);
      },
    };
  }

  /** KS-3.3.2: a snapshot replaces the state and clears a gap. */
  #onSnapshot(snapshot: KillSnapshot): void {
    let next: KillState;
    try {
      next = KillState.fromSnapshot(snapshot);
    } catch (err) {
      this.#state = undefined;
      this.#fail(`invalid snapshot from ${this.#source.name}: ${messageOf(err)}`);
      return;
    }
    const before = this.#state;
    if (before !== undefined && next.seq < before.seq) {
      this.#logger.warn(
        `snapshot from ${this.#source.name} at seq ${next.seq} is older than the state at seq ${before.seq}; applying it`,
      );
    }
    const wasLive = this.#failClosed === undefined;
    this.#state = next;
    this.#broken = undefined;
    this.#halted = new WeakMap();
    this.#drainHalted = new WeakMap();
    this.#recompute();
    if (wasLive && this.#failClosed === undefined && before !== undefined) {
      const levels = changedLevels(before, next);
      if (levels.size > 0) this.#emitChanged(flagsForLevels(levels));
    }
  }

  /** KS-3.3.3: strictly in seq order; a gap or a broken chain fails closed until the next snapshot. */
  #onFlip(record: FlipRecord): void {
    const state = this.#state;
    if (state === undefined) return; // waiting for a snapshot; it will include this record
    if (record.seq <= state.seq) {
      // A replayed record (reconnect overlap). The head must be the one we hold; older ones are
      // already folded in.
      if (record.seq === state.seq && record.hash !== state.hash) {
        this.#state = undefined;
        this.#fail(`record ${record.seq} from ${this.#source.name} differs from the one applied`);
      }
      return;
    }
    let level: Level;
    let changed: boolean;
    try {
      const change = state.apply(record);
      level = change.level;
      changed = change.changed;
    } catch (err) {
      // Never serve a state with a hole: drop it entirely.
      this.#state = undefined;
      const code = err instanceof KillSwitchError ? `${err.code}: ` : '';
      this.#fail(
        `cannot apply record ${record.seq} from ${this.#source.name}: ${code}${messageOf(err)}`,
      );
      return;
    }
    const wasLive = this.#failClosed === undefined;
    this.#recompute();
    if (wasLive && this.#failClosed === undefined && changed)
      this.#emitChanged(flagsChangedBy(level));
  }

  #onStatus(status: SourceStatus, detail: string | undefined): void {
    // A new reason in the same status is not logged again (the source logs its own causes).
    const changed = status !== this.#sourceStatus;
    this.#sourceStatus = status;
    this.#statusDetail = detail;
    if (!changed) {
      // only the reason changed
    } else if (status === SourceStatus.STALE) {
      this.#logger.warn(
        `source ${this.#source.name} is stale${detail ? `: ${detail}` : ''}; failing closed`,
      );
    } else if (status === SourceStatus.CLOSED) {
      this.#logger.warn(
        `source ${this.#source.name} closed${detail ? `: ${detail}` : ''}; failing closed`,
      );
    }
    this.#recompute();
  }

  #fail(detail: string): void {
    this.#broken = detail;
    (this.#logger.error ?? this.#logger.warn).call(this.#logger, `${detail}; failing closed`);
    this.#recompute();
  }

  /**
   * Derives the answer mode from (state, source status, broken, closed) and announces changes:
   * STALE or ERROR when answers start failing closed, READY and a change of every kill flag when
   * they are live again. KS-3.4.2, KS-3.4.3
   */
  #recompute(): void {
    const wasLive = this.#failClosed === undefined;
    const status = this.#sourceStatus;
    const detail = this.#statusDetail ? `: ${this.#statusDetail}` : '';
    let failure: FailClosedState | undefined;
    /** Whether to announce this failure (the first wait for a snapshot and a close are expected). */
    let announce = true;
    if (this.#broken !== undefined) failure = { reason: 'ERROR', detail: this.#broken };
    else if (this.#closed) {
      failure = { reason: 'STALE', detail: 'provider closed' };
      announce = false;
    } else if (status === SourceStatus.STALE || status === SourceStatus.CLOSED) {
      failure = { reason: 'STALE', detail: `source ${status}${detail}` };
    } else if (this.#state === undefined) {
      // KS-16.2.2: a source that cannot connect says why.
      failure = {
        reason: 'STALE',
        detail: this.#statusDetail ? `no snapshot yet (${this.#statusDetail})` : 'no snapshot yet',
      };
      announce = false;
    } else if (status !== SourceStatus.OPEN) {
      failure = { reason: 'STALE', detail: `source ${status}${detail}` };
    }
    if (failure === undefined) {
      this.#running = Object.freeze({
        value: false,
        variant: KillVariant.RUNNING,
        reason: StandardResolutionReasons.DEFAULT,
        flagMetadata: Object.freeze({ stateSeq: this.#state!.seq }),
      });
      this.#failClosed = undefined;
      this.#failure = undefined;
      for (const w of [...this.#freshWaiters]) w.fresh();
      if (!wasLive) {
        if (this.#announced !== 'ready') {
          this.#announced = 'ready';
          this.events.emit(ProviderEvents.Ready, {
            message: `source ${this.#source.name} is fresh`,
          });
        }
        this.#emitChanged([...KILL_FLAG_KEYS]);
      }
      return;
    }
    const prev = this.#failure;
    if (prev === undefined || prev.reason !== failure.reason || prev.detail !== failure.detail) {
      this.#failure = failure;
      this.#failClosed = failClosedAnswer(failure.reason, failure.detail);
    }
    if (!announce) return;
    if (failure.reason === 'ERROR' && this.#announced !== 'error') {
      this.#announced = 'error';
      this.#emitStatus('error');
    } else if (failure.reason === 'STALE' && this.#announced !== 'stale') {
      this.#announced = 'stale';
      this.#emitStatus('stale');
    }
  }

  #emitStatus(what: 'ready' | 'stale' | 'error'): void {
    if (!this.#settled) return;
    const message = this.#failure?.detail ?? `source ${this.#source.name} is fresh`;
    if (what === 'ready') this.events.emit(ProviderEvents.Ready, { message });
    else if (what === 'stale') this.events.emit(ProviderEvents.Stale, { message });
    // Never PROVIDER_FATAL: the SDK would stop calling us and return callers' defaults. KS-3.2.2
    else this.events.emit(ProviderEvents.Error, { message });
  }

  #emitChanged(flagsChanged: string[]): void {
    this.events.emit(ProviderEvents.ConfigurationChanged, {
      flagsChanged,
      message: `kill state at seq ${this.#state?.seq ?? 0}`,
    });
  }
}

function notBoolean(flagKey: string): Error {
  if (levelOfFlag(flagKey) === undefined) {
    return new FlagNotFoundError(`flag ${flagKey} is not a kill flag`);
  }
  return new TypeMismatchError(`kill flag ${flagKey} is boolean`);
}

/** Levels whose set of active halts differs between two states (by record hash). */
function changedLevels(a: KillState, b: KillState): Set<Level> {
  const out = new Set<Level>();
  const ah = new Map(a.activeHalts().map((r) => [r.hash, r] as const));
  const bh = new Map(b.activeHalts().map((r) => [r.hash, r] as const));
  for (const [h, r] of ah) if (!bh.has(h)) out.add(levelOf(r.selector));
  for (const [h, r] of bh) if (!ah.has(h)) out.add(levelOf(r.selector));
  return out;
}

function flagsForLevels(levels: ReadonlySet<Level>): string[] {
  const out = new Set<string>();
  for (const l of LEVELS) if (levels.has(l)) for (const k of flagsChangedBy(l)) out.add(k);
  return [...out];
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
