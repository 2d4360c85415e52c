import { hash as oneShotHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import { hasControlCharacters, idText, isIdText } from '../protocol/text.js';
import { canonicalJson } from './canonical-json.js';
import { normalizeSelector, selectorSchema, type Selector } from './selector.js';

export { QueueMode, DEFAULT_QUEUE_MODE } from './queue-mode.js';
import { DEFAULT_QUEUE_MODE, type QueueMode } from './queue-mode.js';
import { stripUndefined } from '../internal/strip-undefined.js';

/** What a flip does: add a halt, or lift one. */
export const FlipAction = { HALT: 'halt', RESUME: 'resume' } as const;
export type FlipAction = (typeof FlipAction)[keyof typeof FlipAction];

/** The hash that the first record's `prev` names. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * One record of the append-only flip log. KS-2.1.1
 *
 * `seq` is dense from 1; `id` is the caller's idempotency key; `prev` is the previous record's
 * `hash` ({@link GENESIS_HASH} for seq 1); `hash` is SHA-256 over the canonical JSON of every
 * other field.
 */
export interface FlipRecord {
  readonly seq: number;
  readonly id: string;
  /** ISO 8601 UTC time the store accepted the flip. */
  readonly at: string;
  readonly actor: string;
  readonly action: FlipAction;
  readonly selector: Selector;
  readonly reason: string;
  /** Queue policy; present on every halt, absent on resumes. */
  readonly mode?: QueueMode;
  /** On a resume: the release it resumes on (the release gate checks it). */
  readonly release?: string;
  /** Who pulled the lever: `operator`, `tripwire`, `alertmanager`, `drill`, ... */
  readonly source?: string;
  readonly prev: string;
  readonly hash: string;
}

const text = (max: number) =>
  z
    .string()
    .max(max, `must be at most ${max} characters`)
    .refine((s) => s.trim().length > 0, 'must not be empty');

const idSchema = idText(128);

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

const isoInstant = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'must be an ISO 8601 UTC instant')
  .refine((s) => !Number.isNaN(Date.parse(s)), 'must be a valid date');

/**
 * The fields of a flip as a caller gives them. The wire's request schema
 * (`src/protocol/flip-request.ts`) is built from the same fields (without the actor, which is the
 * token's name), so a request is validated once, by these rules.
 */
export const flipInputShape = {
  id: idSchema.optional(),
  actor: text(200),
  action: z.enum(['halt', 'resume']),
  selector: selectorSchema,
  reason: text(2000),
  mode: z.enum(['discard', 'hold', 'drain']).optional(),
  release: text(200).optional(),
  source: text(64).optional(),
};

/** The rule across fields of a flip input: a resume takes no queue mode. */
export function refineFlipInput(
  v: { readonly action: string; readonly mode?: string | undefined },
  ctx: z.RefinementCtx,
): void {
  if (v.action === 'resume' && v.mode !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['mode'], message: 'a resume takes no queue mode' });
  }
}

/** zod schema of what a caller asks for: a flip before the store assigns seq, time and hash. */
export const flipInputSchema = z.strictObject(flipInputShape).superRefine(refineFlipInput);

/** zod schema of a stored record (every field, as read back from a store or the wire). */
export const flipRecordSchema = z
  .strictObject({
    seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    id: idSchema,
    at: isoInstant,
    actor: text(200),
    action: z.enum(['halt', 'resume']),
    selector: selectorSchema,
    reason: text(2000),
    mode: z.enum(['discard', 'hold', 'drain']).optional(),
    release: text(200).optional(),
    source: text(64).optional(),
    prev: hex64,
    hash: hex64,
  })
  .superRefine((v, ctx) => {
    if (v.action === 'halt' && v.mode === undefined) {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'a halt must carry its queue mode' });
    }
    if (v.action === 'resume' && v.mode !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'a resume takes no queue mode' });
    }
  });

/** A flip as a caller gives it; the store assigns `seq`, `at`, `prev` and `hash`. */
export interface FlipInput {
  /** Idempotency key: a retried flip with the same id is one flip. Default: a random UUID. */
  readonly id?: string;
  readonly actor: string;
  readonly action: FlipAction;
  readonly selector: Selector;
  readonly reason: string;
  /** Queue policy of a halt. @default 'discard' */
  readonly mode?: QueueMode;
  readonly release?: string;
  readonly source?: string;
}

/** A validated input with defaults applied: everything but seq, at, prev and hash. */
export type NormalizedFlip = Omit<FlipRecord, 'seq' | 'at' | 'prev' | 'hash'>;

/**
 * Flips this module validated: frozen (their selector too), so they cannot have changed since.
 * A store handed one of these does not validate it again (see {@link isValidatedFlip}).
 */
const validated = new WeakSet<object>();

/**
 * Validates a flip request and applies defaults (`id`, a halt's `mode`). The result is frozen
 * and remembered as validated, so a store it is handed to does not check it again.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every issue
 */
export function parseFlipInput(input: unknown): NormalizedFlip {
  const fast = tryParseFlipInput(input);
  if (fast !== undefined) return fast;
  const r = flipInputSchema.safeParse(input);
  if (!r.success) throw new ValidationError('flip', toIssues(r.error));
  return normalizeFlip(r.data);
}

/**
 * {@link parseFlipInput} without the error: the flip, or undefined when the input is not valid
 * (or is something only zod can decide, such as an object with a prototype of its own; call
 * {@link parseFlipInput} for the verdict and the reasons).
 *
 * A hand-written check, at least as strict as {@link flipInputSchema} and about ten times
 * cheaper (every flip request goes through it); zod runs only to explain a refusal.
 * test/model/fast-flip-input.test.ts checks the two agree.
 */
export function tryParseFlipInput(input: unknown): NormalizedFlip | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return undefined;
  if (Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!INPUT_KEYS.has(k)) return undefined;
  return checkedFlip(o, o['actor']);
}

/**
 * {@link tryParseFlipInput} of `{ ...fields, actor }` less the member `extra`, without building
 * that copy: for a request body that carries the flip's fields and one more member of its own
 * (`wait`), the actor being the token's name. Undefined when `fields` names an actor, has a
 * member outside the flip's and `extra`, or is not a valid flip.
 */
export function tryParseFlipFields(
  fields: unknown,
  actor: string,
  extra: string,
): NormalizedFlip | undefined {
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) return undefined;
  if (Object.getPrototypeOf(fields) !== Object.prototype) return undefined;
  const o = fields as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (k === 'actor' || (!INPUT_KEYS.has(k) && k !== extra)) return undefined;
  return checkedFlip(o, actor);
}

/** The checks of {@link tryParseFlipInput} on `o`'s fields (keys already checked) and `actor`. */
function checkedFlip(o: Record<string, unknown>, actor: unknown): NormalizedFlip | undefined {
  const { id, action, selector, reason, mode, release, source } = o;
  if (id !== undefined && !isIdText(id, 128)) return undefined;
  if (!isText(actor, 200) || !isText(reason, 2000)) return undefined;
  if (action !== 'halt' && action !== 'resume') return undefined;
  if (mode !== undefined && (!MODES.has(mode as string) || action === 'resume')) return undefined;
  if (release !== undefined && !isText(release, 200)) return undefined;
  if (source !== undefined && !isText(source, 64)) return undefined;
  if (!isSelector(selector)) return undefined;
  return normalizeFlip({
    id,
    actor,
    action,
    selector,
    reason,
    mode: mode as QueueMode | undefined,
    release,
    source,
  });
}

/** True for a flip {@link parseFlipInput} returned (validated, frozen). */
export function isValidatedFlip(input: unknown): input is NormalizedFlip {
  return typeof input === 'object' && input !== null && validated.has(input);
}

function normalizeFlip(v: {
  readonly id?: string | undefined;
  readonly actor: string;
  readonly action: FlipAction;
  readonly selector: { readonly [K in keyof Selector]?: string | undefined };
  readonly reason: string;
  readonly mode?: QueueMode | undefined;
  readonly release?: string | undefined;
  readonly source?: string | undefined;
}): NormalizedFlip {
  // Optional fields only when present (as stripUndefined would leave them), without its copy.
  const f: Record<string, unknown> = {
    id: v.id ?? randomUUID(),
    actor: v.actor,
    action: v.action,
    selector: normalizeSelector(v.selector),
    reason: v.reason,
  };
  if (v.action === 'halt') f['mode'] = v.mode ?? DEFAULT_QUEUE_MODE;
  if (v.release !== undefined) f['release'] = v.release;
  if (v.source !== undefined) f['source'] = v.source;
  const flip = Object.freeze(f) as unknown as NormalizedFlip;
  validated.add(flip);
  return flip;
}

/**
 * Validates a stored record's shape (not its hash; see {@link verifyRecordHash}).
 *
 * @throws {ValidationError} `KS_INVALID_INPUT`
 */
export function parseFlipRecord(input: unknown): FlipRecord {
  // Every record a worker applies is validated; the hand-written check below is at least as
  // strict as flipRecordSchema and about forty times cheaper, so zod runs only to explain a
  // rejection (or to accept what the fast check was too strict for). test/model/fast-record
  // checks the two agree.
  const fast = fastFlipRecord(input);
  if (fast !== undefined) return fast;
  const r = flipRecordSchema.safeParse(input);
  if (!r.success) throw new ValidationError('flip record', toIssues(r.error));
  const v = r.data;
  return Object.freeze(
    stripUndefined<FlipRecord>({ ...v, selector: normalizeSelector(v.selector) }),
  );
}

const RECORD_KEYS = new Set([
  'seq',
  'id',
  'at',
  'actor',
  'action',
  'selector',
  'reason',
  'mode',
  'release',
  'source',
  'prev',
  'hash',
]);
const INPUT_KEYS = new Set([
  'id',
  'actor',
  'action',
  'selector',
  'reason',
  'mode',
  'release',
  'source',
]);
const SELECTOR_KEY_SET = new Set(['tenant', 'feature', 'runId', 'capability']);
const HEX64_RE = /^[0-9a-f]{64}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const MODES = new Set(['discard', 'hold', 'drain']);

const isText = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length <= max && v.trim().length > 0;
const isSelectorValue = (v: unknown): v is string =>
  typeof v === 'string' &&
  v.length >= 1 &&
  v.length <= 256 &&
  v.trim() === v &&
  !hasControlCharacters(v);

/** A plain object of the selector's keys, each absent, undefined or a valid value. */
function isSelector(selector: unknown): selector is Record<string, string | undefined> {
  if (typeof selector !== 'object' || selector === null || Array.isArray(selector)) return false;
  if (Object.getPrototypeOf(selector) !== Object.prototype) return false;
  const sel = selector as Record<string, unknown>;
  for (const k of Object.keys(sel)) {
    if (!SELECTOR_KEY_SET.has(k)) return false;
    if (sel[k] !== undefined && !isSelectorValue(sel[k])) return false;
  }
  return true;
}

/**
 * The fast path of {@link parseFlipRecord}: the record when it certainly satisfies
 * {@link flipRecordSchema}, else undefined (zod then decides and explains). Never accepts what
 * the schema refuses.
 */
function fastFlipRecord(input: unknown): FlipRecord | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return undefined;
  if (Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!RECORD_KEYS.has(k)) return undefined;
  const { seq, id, at, actor, action, selector, reason, mode, release, source, prev, hash } = o;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return undefined;
  if (!isIdText(id, 128)) return undefined;
  if (typeof at !== 'string' || !ISO_RE.test(at) || Number.isNaN(Date.parse(at))) return undefined;
  if (!isText(actor, 200) || !isText(reason, 2000)) return undefined;
  if (action !== 'halt' && action !== 'resume') return undefined;
  if (action === 'halt' ? !MODES.has(mode as string) : mode !== undefined) return undefined;
  if (release !== undefined && !isText(release, 200)) return undefined;
  if (source !== undefined && !isText(source, 64)) return undefined;
  if (typeof prev !== 'string' || !HEX64_RE.test(prev)) return undefined;
  if (typeof hash !== 'string' || !HEX64_RE.test(hash)) return undefined;
  if (!isSelector(selector)) return undefined;
  // Optional fields only when present (as stripUndefined would leave them), without its copy.
  const r: Record<string, unknown> = {
    seq,
    id,
    at,
    actor,
    action,
    selector: normalizeSelector(selector as Selector),
    reason,
  };
  if (mode !== undefined) r['mode'] = mode;
  if (release !== undefined) r['release'] = release;
  if (source !== undefined) r['source'] = source;
  r['prev'] = prev;
  r['hash'] = hash;
  return Object.freeze(r) as unknown as FlipRecord;
}

/**
 * SHA-256 (hex) of the canonical JSON of a record without its `hash`. KS-2.3.2
 *
 * `crypto.hash`, the one-shot form: for a few hundred bytes it is about ten times cheaper than
 * `createHash().update().digest()`, and every worker runs it on every flip.
 */
export function computeHash(record: Omit<FlipRecord, 'hash'>): string {
  return oneShotHash('sha256', recordCanonicalJson(record, true), 'hex');
}

/**
 * The fields a record may have, in canonical (UTF-16 code unit) order, each with its bit. A
 * record's key set is fixed, so its canonical encoding needs no sort: see recordCanonicalJson.
 */
const RECORD_FIELDS = [
  'action',
  'actor',
  'at',
  'hash',
  'id',
  'mode',
  'prev',
  'reason',
  'release',
  'selector',
  'seq',
  'source',
] as const;
const RECORD_BIT = new Map<string, number>(RECORD_FIELDS.map((k, i) => [k, 1 << i]));
const HASH_BIT = RECORD_BIT.get('hash')!;
/** The selector's keys in canonical order, each with its bit. */
const SELECTOR_FIELDS = ['capability', 'feature', 'runId', 'tenant'] as const;
const SELECTOR_BIT = new Map<string, number>(SELECTOR_FIELDS.map((k, i) => [k, 1 << i]));

/**
 * Bits of the own enumerable keys of `o` (what canonicalJson encodes), or -1 when `o` is not a
 * plain non-array object or has a key outside `bits`.
 */
function fieldBits(o: unknown, bits: ReadonlyMap<string, number>): number {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return -1;
  let mask = 0;
  for (const k of Object.keys(o)) {
    const bit = bits.get(k);
    if (bit === undefined) return -1;
    mask |= bit;
  }
  return mask;
}

/** One member's value as canonicalJson encodes it (a string, the common case, directly). */
const valueJson = (v: unknown): string =>
  typeof v === 'string' ? JSON.stringify(v) : canonicalJson(v);

/** The selector's canonical JSON without a sort; anything else goes to canonicalJson. */
function selectorJson(v: unknown): string {
  const mask = fieldBits(v, SELECTOR_BIT);
  if (mask < 0) return canonicalJson(v);
  const o = v as Record<string, unknown>;
  let out = '{';
  for (let i = 0; i < SELECTOR_FIELDS.length; i++) {
    if ((mask & (1 << i)) === 0) continue;
    const k = SELECTOR_FIELDS[i]!;
    const x = o[k];
    if (x === undefined) continue;
    out += `${out.length === 1 ? '' : ','}"${k}":${valueJson(x)}`;
  }
  return `${out}}`;
}

/**
 * Exactly `canonicalJson(record)` (without its `hash` member when `withoutHash`), for anything:
 * an object whose own keys are a record's is encoded field by field in the fixed canonical order
 * (no key list sorted, no copy without `hash`); anything else goes to canonicalJson. Every flip is
 * encoded here on the server (its hash, its line) and on every worker (the hash check).
 * test/model/record-canonical-json.test.ts checks the two agree on arbitrary objects.
 */
export function recordCanonicalJson(record: unknown, withoutHash = false): string {
  let mask = fieldBits(record, RECORD_BIT);
  if (mask < 0) {
    if (!withoutHash || typeof record !== 'object' || record === null || Array.isArray(record))
      return canonicalJson(record);
    const { hash: _ignored, ...rest } = record as Record<string, unknown>;
    return canonicalJson(rest);
  }
  if (withoutHash) mask &= ~HASH_BIT;
  const o = record as Record<string, unknown>;
  const flat = flatRecordJson(o, mask);
  if (flat !== undefined) return flat;
  let out = '{';
  for (let i = 0; i < RECORD_FIELDS.length; i++) {
    if ((mask & (1 << i)) === 0) continue;
    const k = RECORD_FIELDS[i]!;
    const v = o[k];
    if (v === undefined) continue;
    out += `${out.length === 1 ? '' : ','}"${k}":${k === 'selector' ? selectorJson(v) : valueJson(v)}`;
  }
  return `${out}}`;
}

/** `o`'s member RECORD_FIELDS[i] when its bit is in `mask` (an own enumerable key), else undefined. */
const member = (o: Record<string, unknown>, mask: number, i: number): unknown =>
  (mask & (1 << i)) === 0 ? undefined : o[RECORD_FIELDS[i]!];

/**
 * Absent, or a member canonicalJson encodes exactly as JSON.stringify does: a string or a finite
 * number.
 */
const isFlat = (v: unknown): boolean =>
  v === undefined || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));

/**
 * The common case of {@link recordCanonicalJson} in one native `JSON.stringify`: every member in
 * `mask` a string or a finite number (encoded by canonicalJson exactly as JSON.stringify encodes
 * them), the selector a plain object of its keys with string values. The object handed to
 * JSON.stringify is built with its keys in canonical order (none is an array index, so the
 * insertion order is the order written) and `undefined` for what is absent (left out by both).
 * Undefined for anything else (the field-by-field loop decides). One string and one object per
 * record, where the loop built one string per member and concatenated them (about 2 KB of garbage
 * per record, on the server and on every worker's hash check).
 */
function flatRecordJson(o: Record<string, unknown>, mask: number): string | undefined {
  let selector: Record<string, string> | undefined;
  const sel = member(o, mask, 9);
  if (sel !== undefined) {
    const smask = fieldBits(sel, SELECTOR_BIT);
    if (smask < 0) return undefined;
    const s = sel as Record<string, unknown>;
    selector = {};
    for (let i = 0; i < SELECTOR_FIELDS.length; i++) {
      if ((smask & (1 << i)) === 0) continue;
      const k = SELECTOR_FIELDS[i]!;
      const v = s[k];
      if (v === undefined) continue;
      if (typeof v !== 'string') return undefined;
      selector[k] = v;
    }
  }
  const action = member(o, mask, 0);
  const actor = member(o, mask, 1);
  const at = member(o, mask, 2);
  const hash = member(o, mask, 3);
  const id = member(o, mask, 4);
  const mode = member(o, mask, 5);
  const prev = member(o, mask, 6);
  const reason = member(o, mask, 7);
  const release = member(o, mask, 8);
  const seq = member(o, mask, 10);
  const source = member(o, mask, 11);
  if (
    !isFlat(action) ||
    !isFlat(actor) ||
    !isFlat(at) ||
    !isFlat(hash) ||
    !isFlat(id) ||
    !isFlat(mode) ||
    !isFlat(prev) ||
    !isFlat(reason) ||
    !isFlat(release) ||
    !isFlat(seq) ||
    !isFlat(source)
  )
    return undefined;
  // RECORD_FIELDS order, which is the canonical one.
  return JSON.stringify({
    action,
    actor,
    at,
    hash,
    id,
    mode,
    prev,
    reason,
    release,
    selector,
    seq,
    source,
  });
}

/** Canonical encodings of records built here (chained, or returned by recordJson). */
const encoded = new WeakMap<FlipRecord, string>();

/**
 * The record's canonical JSON (every field, `hash` included): its line in the file store and the
 * data of its stream event. Computed once per frozen record and kept beside it, so an append
 * encodes a flip once however many places write it.
 */
export function recordJson(record: FlipRecord): string {
  let json = encoded.get(record);
  if (json === undefined) {
    json = recordCanonicalJson(record);
    if (Object.isFrozen(record) && Object.isFrozen(record.selector)) encoded.set(record, json);
  }
  return json;
}

/** True when the record's `hash` matches its content. */
export function verifyRecordHash(record: FlipRecord): boolean {
  return computeHash(record) === record.hash;
}

/** Builds the record that follows `prev` (seq, prev hash) for a validated flip. KS-2.2.1 */
export function chainRecord(
  flip: NormalizedFlip,
  head: { readonly seq: number; readonly hash: string },
  at: Date,
): FlipRecord {
  // Built in place, in the key order records always had (seq, id, ..., prev, hash), optional
  // fields only when present, and frozen once its hash is in: no stripped copy, no spread.
  const r: Record<string, unknown> = {
    seq: head.seq + 1,
    id: flip.id,
    at: at.toISOString(),
    actor: flip.actor,
    action: flip.action,
    selector: flip.selector,
    reason: flip.reason,
  };
  if (flip.mode !== undefined) r['mode'] = flip.mode;
  if (flip.release !== undefined) r['release'] = flip.release;
  if (flip.source !== undefined) r['source'] = flip.source;
  r['prev'] = head.hash;
  // The body is encoded once: its hash, and (with the hash in its sorted place) the record's own
  // canonical JSON, its line in the file and the data of its stream event (recordJson).
  const bodyJson = recordCanonicalJson(r, true);
  const hash = oneShotHash('sha256', bodyJson, 'hex');
  r['hash'] = hash;
  const record = Object.freeze(r) as unknown as FlipRecord;
  // Keys sort as action, actor, at, hash, id, ...: the three before `hash` are always present.
  const before = `{"action":${JSON.stringify(record.action)},"actor":${JSON.stringify(record.actor)},"at":${JSON.stringify(record.at)}`;
  if (bodyJson.startsWith(`${before},"id":`) && Object.isFrozen(record.selector))
    encoded.set(record, `${before},"hash":"${hash}"${bodyJson.slice(before.length)}`);
  return record;
}

/**
 * True when a retried flip asks for the same thing as the stored record with its id (the
 * store then answers with the stored record instead of appending). KS-2.2.3
 */
export function sameFlip(record: FlipRecord, flip: NormalizedFlip): boolean {
  return canonicalJson(pickFlip(record)) === canonicalJson(pickFlip(flip as FlipRecord));
}

function pickFlip(r: FlipRecord): NormalizedFlip {
  return stripUndefined<NormalizedFlip>({
    id: r.id,
    actor: r.actor,
    action: r.action,
    selector: r.selector,
    reason: r.reason,
    mode: r.mode,
    release: r.release,
    source: r.source,
  });
}
