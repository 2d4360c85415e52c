import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import { MAX_LINEAGE_ID_LENGTH, MAX_RUN_DEPTH } from '../lineage/lineage.js';
import { hasControlCharacters, isIdText } from '../protocol/text.js';

export {
  SELECTOR_KEYS,
  type SelectorKey,
  type Selector,
  type KillContext,
} from './kill-context.js';
import {
  SELECTOR_KEYS,
  type KillContext,
  type Selector,
  type SelectorKey,
} from './kill-context.js';

/**
 * What is wrong with a context's `runPath`, or undefined when it is absent or well formed: an
 * array of 1 to {@link MAX_RUN_DEPTH} run ids (the lineage id rules: 1 to 128 characters of the
 * id alphabet), ending with `runId` when the context names one. Evaluation fails closed with
 * this text as the reason (KS-1.5.4); the check allocates nothing on the good path.
 *
 * @param ctx - an evaluation context (any object; only `runId` and `runPath` are read)
 */
export function runPathProblem(ctx: Readonly<Record<string, unknown>>): string | undefined {
  const rp = ctx.runPath;
  if (rp === undefined) return undefined;
  if (!Array.isArray(rp)) return 'context attribute runPath is not an array';
  const n = rp.length;
  if (n === 0) return 'context attribute runPath is empty';
  if (n > MAX_RUN_DEPTH) {
    return `context attribute runPath is ${n} run ids deep (at most ${MAX_RUN_DEPTH})`;
  }
  for (let i = 0; i < n; i++) {
    if (!isIdText(rp[i], MAX_LINEAGE_ID_LENGTH)) {
      return `context attribute runPath[${i}] is not a run id (1 to ${MAX_LINEAGE_ID_LENGTH} of letters, digits and ._:@/+=-)`;
    }
  }
  const runId = ctx.runId;
  if (runId !== undefined && rp[n - 1] !== runId) {
    return 'context attribute runPath does not end with runId';
  }
  return undefined;
}

/** The four buttons; tenant and feature are one button with two flags. KS-1.2.1 */
export const Level = {
  CAPABILITY: 'capability',
  RUN: 'run',
  TENANT: 'tenant',
  FEATURE: 'feature',
  GLOBAL: 'global',
} as const;
export type Level = (typeof Level)[keyof typeof Level];
/** Every level, narrowest first. */
export const LEVELS: readonly Level[] = ['capability', 'run', 'tenant', 'feature', 'global'];

const selectorValue = z
  .string()
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters')
  .refine((s) => s.trim() === s, 'must not start or end with white space')
  .refine((s) => !hasControlCharacters(s), 'must not contain control characters');

/** zod schema of a selector: only the four known keys, each a non-empty string. KS-1.1.2 */
export const selectorSchema = z.strictObject({
  tenant: selectorValue.optional(),
  feature: selectorValue.optional(),
  runId: selectorValue.optional(),
  capability: selectorValue.optional(),
});

/**
 * Validates and normalises a selector (drops keys whose value is undefined).
 *
 * @param input - anything, usually parsed JSON or CLI flags
 * @returns a frozen selector with keys in canonical order
 * @throws {ValidationError} `KS_INVALID_INPUT` for unknown keys or bad values
 * @example parseSelector({ tenant: 'acme' })
 */
export function parseSelector(input: unknown): Selector {
  const r = selectorSchema.safeParse(input);
  if (!r.success) throw new ValidationError('selector', toIssues(r.error));
  return normalizeSelector(r.data);
}

/** Canonical key order and no undefined values; assumes the input is already valid. */
export function normalizeSelector(s: {
  readonly [K in SelectorKey]?: string | undefined;
}): Selector {
  const out: { [K in SelectorKey]?: string } = {};
  for (const k of SELECTOR_KEYS) {
    const v = s[k];
    if (v !== undefined) out[k] = v;
  }
  return Object.freeze(out);
}

/**
 * The level a selector belongs to. A capability halt stays a capability halt when narrowed to a
 * tenant; a run halt is a run halt whatever else it names. KS-1.2.2
 */
export function levelOf(selector: Selector): Level {
  if (selector.capability !== undefined) return Level.CAPABILITY;
  if (selector.runId !== undefined) return Level.RUN;
  if (selector.tenant !== undefined) return Level.TENANT;
  if (selector.feature !== undefined) return Level.FEATURE;
  return Level.GLOBAL;
}

/**
 * True when every attribute the selector names equals the context's; a selector's `runId`
 * matches when the context's `runPath` contains it (the run itself or any ancestor).
 * KS-1.1.3, KS-1.5.2
 */
export function selectorMatches(selector: Selector, ctx: KillContext): boolean {
  for (const k of SELECTOR_KEYS) {
    const v = selector[k];
    if (v === undefined) continue;
    if (k === 'runId' && ctx.runPath !== undefined) {
      // A path that cannot be read could belong to any tree: it matches (fail closed), as its
      // evaluation answers halted (KS-1.5.4).
      if (Array.isArray(ctx.runPath) && !ctx.runPath.includes(v)) return false;
    } else if (ctx[k] !== v) return false;
  }
  return true;
}

/** Two selectors name exactly the same attributes with the same values. KS-1.3.2 */
export function selectorEquals(a: Selector, b: Selector): boolean {
  for (const k of SELECTOR_KEYS) if (a[k] !== b[k]) return false;
  return true;
}

/** A bit per key: which attributes a selector names (its shape). */
export function shapeOf(selector: KillContext): number {
  let m = 0;
  for (let i = 0; i < SELECTOR_KEYS.length; i++) {
    if (selector[SELECTOR_KEYS[i]!] !== undefined) m |= 1 << i;
  }
  return m;
}

/**
 * A string key for a selector, unique per selector: the values of the named attributes joined
 * with a separator that cannot occur in JSON-escaped text. Only the shape's keys are read, so the
 * same function keys a context projected onto a shape.
 */
export function keyFor(shape: number, ctx: KillContext): string {
  let key = '';
  for (let i = 0; i < SELECTOR_KEYS.length; i++) {
    if (shape & (1 << i)) key += ctx[SELECTOR_KEYS[i]!]! + '\u0000';
  }
  return key;
}

/**
 * What a halt on this selector stops, in words for operators (the flip answer, the CLI, the
 * console): a run halt says it covers the run's descendants. KS-1.5.6
 *
 * @example haltCoverage({ runId: 'r1' }) // 'run r1 and every run it spawned, at any depth, in any process'
 */
export function haltCoverage(selector: Selector): string {
  const narrow = (['tenant', 'feature', 'capability'] as const)
    .filter((k) => selector[k] !== undefined)
    .map((k) => `${k} ${selector[k]}`);
  if (selector.runId !== undefined) {
    return (
      `run ${selector.runId} and every run it spawned, at any depth, in any process` +
      (narrow.length > 0 ? ` (only effects of ${narrow.join(', ')})` : '')
    );
  }
  if (selector.capability !== undefined) {
    const rest = narrow.filter((n) => !n.startsWith('capability '));
    return `capability ${selector.capability} in every run${rest.length > 0 ? ` of ${rest.join(', ')}` : ''}`;
  }
  if (narrow.length > 0) return `every run of ${narrow.join(', ')}`;
  return 'every run and every effect (global)';
}

/** Human-readable form, e.g. `{tenant=acme}` or `{}` for global. */
export function formatSelector(selector: Selector): string {
  const parts = SELECTOR_KEYS.filter((k) => selector[k] !== undefined).map(
    (k) => `${k}=${selector[k]}`,
  );
  return `{${parts.join(', ')}}`;
}
