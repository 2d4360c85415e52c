import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import { fastLedgerEvent } from './internal/fast-ledger-event.js';
import type { KillContext } from '../model/selector.js';
import { stripUndefined } from '../internal/strip-undefined.js';

/**
 * What happened to an effect. One key collects several events over its life. KS-4.4.1
 *
 * - `intent`: about to be dispatched; durable before the effect leaves (one per dispatch attempt);
 * - `landed`: the effect's body resolved;
 * - `failed`: the body rejected (no halt involved);
 * - `aborted`: a matching halt arrived while it ran; the caller was freed, the body was signalled.
 *   The effect may still land: it stays in doubt until a later event says otherwise;
 * - `refused`: a halt (or a fail-closed answer) stopped it before dispatch, nothing left;
 * - `landed-after-halt`: the body of an aborted effect resolved anyway (it ignored the signal);
 * - `cancelled`: work was cancelled by a halt before it ran (retries, timers, queued tasks). An
 *   aborted effect whose body then rejects stays `aborted` (in doubt): its request may have left.
 */
export const EffectStatus = {
  INTENT: 'intent',
  LANDED: 'landed',
  FAILED: 'failed',
  ABORTED: 'aborted',
  REFUSED: 'refused',
  LANDED_AFTER_HALT: 'landed-after-halt',
  CANCELLED: 'cancelled',
} as const;
/** One of {@link EffectStatus}'s values. */
export type EffectStatus = (typeof EffectStatus)[keyof typeof EffectStatus];

/** Every status, in declaration order. */
export const EFFECT_STATUSES: readonly EffectStatus[] = Object.values(EffectStatus);

/** A compensating action an effect declares with its intent, for the recovery report. KS-4.4.6 */
export interface Compensation {
  /** What to do to undo the effect, e.g. `payments.refund`. */
  readonly action: string;
  /** Arguments for the action; must be JSON-serialisable. */
  readonly args?: unknown;
}

/**
 * One event of the ledger. Events are appended, never changed; an entry is the fold of the events
 * with the same `key`. KS-4.4.2
 */
export interface LedgerEvent {
  /** The effect's idempotency key, stable across attempts and workers ({@link effectKey}). */
  readonly key: string;
  readonly status: EffectStatus;
  /** ISO 8601 UTC instant the event was recorded. */
  readonly at: string;
  readonly runId?: string;
  readonly step?: string;
  readonly capability?: string;
  /** The kill context the guard evaluated for this effect. */
  readonly context: KillContext;
  /** The flip that refused or aborted the effect, when the provider named one. */
  readonly flipSeq?: number;
  /** Free text for people: an error message, why it failed closed. */
  readonly detail?: string;
  /** Declared with the intent. */
  readonly compensation?: Compensation;
  /** 1 for the first dispatch of a key, 2 for a retry after `failed`, ... (on `intent`). */
  readonly attempt?: number;
  /** A JSON value the caller asked to record with `landed` (returned on a replay). */
  readonly result?: unknown;
}

/**
 * The fold of one key's events. KS-4.4.3
 */
export interface LedgerEntry {
  readonly key: string;
  readonly runId?: string;
  readonly step?: string;
  readonly capability?: string;
  readonly context: KillContext;
  /** The first `intent` event (absent when the effect was only ever refused). */
  readonly intent?: LedgerEvent;
  /** The first event of the key. */
  readonly first: LedgerEvent;
  /** The last event of the key. */
  readonly last: LedgerEvent;
  /** The last status. */
  readonly status: EffectStatus;
  /** Every event of the key, in append order. */
  readonly history: readonly LedgerEvent[];
  /** True once any `landed` or `landed-after-halt` event exists: the effect left. */
  readonly landed: boolean;
  /** True when an aborted effect landed anyway. */
  readonly landedAfterHalt: boolean;
  /** True when the effect may or may not have landed: last status `intent` or `aborted`. */
  readonly inDoubt: boolean;
  /** Number of `intent` events (dispatch attempts). */
  readonly attempts: number;
  /** The compensation declared with the latest intent, if any. */
  readonly compensation?: Compensation;
  /** The result recorded with the first `landed` event, if any. */
  readonly result?: unknown;
}

/** Which entries {@link SideEffectLedger.entries} returns; every given field must match. */
export interface LedgerFilter {
  /** Exactly this key. */
  readonly key?: string;
  readonly runId?: string;
  /** The entry's last status is this one (or one of these). */
  readonly status?: EffectStatus | readonly EffectStatus[];
  readonly capability?: string;
  /** The entry's last event is at or after this instant. */
  readonly since?: Date | string;
}

/**
 * The side-effect ledger: an append-only record of every guarded effect. KS-4.4
 *
 * A backend implements three methods; everything else (in-doubt lists, recovery reports) is built
 * on {@link SideEffectLedger.entries}. To implement one (e.g. PostgreSQL):
 * - `append` MUST validate the event ({@link parseLedgerEvent}) and resolve only once it is
 *   durable (fsync, commit): the guard dispatches an effect only after its intent's append
 *   resolved; it MUST reject when the event was not stored, and MUST keep the order of appends made
 *   one after another for the same key;
 * - `entries` MUST return the fold of each key's events exactly as {@link foldLedgerEvents} does
 *   (use it), filtered by {@link matchesFilter}, in order of each key's first event; `{ key }`
 *   is on the guard's hot path and SHOULD be an index lookup;
 * - `close` releases resources; later calls reject with `KS_STORE_CLOSED`.
 * Run `describeLedgerConformance` from test/ledger to check an implementation.
 */
export interface SideEffectLedger {
  /**
   * Appends an event once it is durable.
   *
   * @throws {ValidationError} `KS_INVALID_INPUT`
   * @throws {KillSwitchError} `KS_STORE_CLOSED`, `KS_STORE_UNAVAILABLE`
   */
  append(event: LedgerEvent): Promise<void>;
  /** Entries folded per key, filtered. */
  entries(filter?: LedgerFilter): Promise<LedgerEntry[]>;
  /** Closes the ledger. */
  close(): Promise<void>;
}

/**
 * The idempotency key of a run's step: stable across attempts, restarts and workers, and
 * injective (each part is percent-encoded, so `/` only ever separates). KS-4.4.4
 *
 * @param runId - the run's id
 * @param step - the step's name within the run (stable across a resume)
 * @returns e.g. `run-1/charge%2Fcard`
 * @throws {ValidationError} `KS_INVALID_INPUT` when a part is empty or not well-formed Unicode
 * @example effectKey('run-1', 'send-email') // 'run-1/send-email'
 */
export function effectKey(runId: string, step: string): string {
  const issues = [];
  for (const [name, v] of [
    ['runId', runId],
    ['step', step],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0)
      issues.push({ path: [name], message: 'must be a non-empty string' });
    else if (!wellFormed(v)) issues.push({ path: [name], message: 'must be well-formed Unicode' });
  }
  if (issues.length > 0) throw new ValidationError('effect key', issues);
  return `${encodeURIComponent(runId)}/${encodeURIComponent(step)}`;
}

/** No lone surrogates (encodeURIComponent throws on them; String#isWellFormed is ES2024). */
function wellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

const isoInstant = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'must be an ISO 8601 UTC instant')
  .refine((s) => !Number.isNaN(Date.parse(s)), 'must be a valid date');
const name = z.string().min(1, 'must not be empty').max(1024, 'must be at most 1024 characters');
const ctxValue = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');

/** zod schema of a {@link LedgerEvent}. KS-4.4.2 */
export const ledgerEventSchema = z.strictObject({
  key: name,
  status: z.enum(EFFECT_STATUSES as [EffectStatus, ...EffectStatus[]]),
  at: isoInstant,
  runId: name.optional(),
  step: name.optional(),
  capability: name.optional(),
  context: z.strictObject({
    tenant: ctxValue.optional(),
    feature: ctxValue.optional(),
    runId: ctxValue.optional(),
    capability: ctxValue.optional(),
    // KS-1.5.1: the run's ancestry, root first, so a report on a run covers its whole tree.
    runPath: z.array(ctxValue).min(1).max(64).optional(),
  }),
  flipSeq: z.number().int().min(1).optional(),
  detail: z.string().max(4096).optional(),
  compensation: z.strictObject({ action: name, args: z.unknown().optional() }).optional(),
  attempt: z.number().int().min(1).optional(),
  result: z.unknown().optional(),
});

/**
 * Validates an event and returns it without undefined fields.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every issue
 */
export function parseLedgerEvent(input: unknown): LedgerEvent {
  const fast = fastLedgerEvent(input);
  if (fast !== undefined) return fast;
  const r = ledgerEventSchema.safeParse(input);
  if (!r.success) throw new ValidationError('ledger event', toIssues(r.error));
  // The context is stripped too: a ledger line never carries an undefined context attribute.
  return stripUndefined<LedgerEvent>({ ...r.data, context: stripUndefined(r.data.context) });
}

/** Statuses after which nothing more is expected, unless the effect is dispatched again. */
const IN_DOUBT: ReadonlySet<EffectStatus> = new Set([EffectStatus.INTENT, EffectStatus.ABORTED]);

/**
 * Folds one more event into a key's entry (or starts one). Pure; every backend uses it so they all
 * answer alike. KS-4.4.3
 */
export function foldLedgerEvent(entry: LedgerEntry | undefined, e: LedgerEvent): LedgerEntry {
  const history = entry ? [...entry.history, e] : [e];
  const isIntent = e.status === EffectStatus.INTENT;
  const landedNow = e.status === EffectStatus.LANDED || e.status === EffectStatus.LANDED_AFTER_HALT;
  const intent = entry?.intent ?? (isIntent ? e : undefined);
  const compensation = isIntent ? e.compensation : entry?.compensation;
  const result = entry && 'result' in entry ? entry.result : landedNow ? e.result : undefined;
  const runId = entry?.runId ?? e.runId;
  const step = entry?.step ?? e.step;
  const capability = entry?.capability ?? e.capability;
  return {
    key: e.key,
    ...(runId !== undefined ? { runId } : {}),
    ...(step !== undefined ? { step } : {}),
    ...(capability !== undefined ? { capability } : {}),
    context: entry?.context ?? e.context,
    ...(intent ? { intent } : {}),
    first: entry?.first ?? e,
    last: e,
    status: e.status,
    history,
    landed: (entry?.landed ?? false) || landedNow,
    landedAfterHalt:
      (entry?.landedAfterHalt ?? false) || e.status === EffectStatus.LANDED_AFTER_HALT,
    inDoubt: IN_DOUBT.has(e.status),
    attempts: (entry?.attempts ?? 0) + (isIntent ? 1 : 0),
    ...(compensation !== undefined ? { compensation } : {}),
    ...(result !== undefined ? { result } : {}),
  };
}

/** Folds a list of events into entries, in order of each key's first event. */
export function foldLedgerEvents(events: Iterable<LedgerEvent>): LedgerEntry[] {
  const byKey = new Map<string, LedgerEntry>();
  for (const e of events) byKey.set(e.key, foldLedgerEvent(byKey.get(e.key), e));
  return [...byKey.values()];
}

/** True when an entry passes every field of the filter. */
export function matchesFilter(entry: LedgerEntry, filter: LedgerFilter | undefined): boolean {
  if (filter === undefined) return true;
  if (filter.key !== undefined && entry.key !== filter.key) return false;
  if (filter.runId !== undefined && entry.runId !== filter.runId) return false;
  if (filter.capability !== undefined && entry.capability !== filter.capability) return false;
  if (filter.status !== undefined) {
    const ok =
      typeof filter.status === 'string'
        ? entry.status === filter.status
        : filter.status.includes(entry.status);
    if (!ok) return false;
  }
  if (filter.since !== undefined) {
    const since =
      typeof filter.since === 'string' ? Date.parse(filter.since) : filter.since.getTime();
    if (Date.parse(entry.last.at) < since) return false;
  }
  return true;
}

/**
 * Effects in doubt: dispatched (or aborted) with no outcome recorded after. They may or may not
 * have landed; the recovery report lists them. KS-4.4.5
 */
export async function inDoubt(
  ledger: SideEffectLedger,
  filter?: LedgerFilter,
): Promise<LedgerEntry[]> {
  return (await ledger.entries(filter)).filter((e) => e.inDoubt);
}
