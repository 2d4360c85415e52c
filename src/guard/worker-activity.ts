import {
  SELECTOR_KEYS,
  selectorMatches,
  type KillContext,
  type Selector,
} from '../model/selector.js';

/**
 * What this process is doing, as far as a halt can touch it: the contexts its halt watchers
 * watch (guarded effects and runs in flight, queued tasks, pending retries) and the distinct
 * contexts it evaluated recently. A flip source asks it, when it applies a halt, what the halt
 * matched, and reports that with its acknowledgement, so an operator learns when a halt matched
 * nothing anywhere (`--tenant ACME` while the tenant is `acme`). KS-16.4.1
 */

/** What a watch is for. */
export type ActivityKind = 'in-flight' | 'queued';

/** Something that holds watched contexts (a HaltWatcher). */
export interface ActivitySource {
  /** Calls `visit` for each context watched now. */
  forEachWatched(visit: (ctx: KillContext, kind: ActivityKind) => void): void;
}

/** What a halt matched in this process. */
export interface ActivityMatch {
  readonly inFlight: number;
  readonly queued: number;
  readonly recent: number;
  /** When nothing matched: values seen that are close to the halt's (at most 3). */
  readonly similar?: string[];
}

/** Distinct contexts remembered. */
const RECENT_MAX = 1000;
/** How long an evaluated context counts as recent. */
export const RECENT_WINDOW_MS = 10 * 60_000;
const SIMILAR_MAX = 3;

const sources = new Set<ActivitySource>();
/** Recently evaluated contexts by key, oldest first (re-inserted on each sighting). */
const recent = new Map<string, { readonly ctx: KillContext; at: number }>();
let everActive = false;
let lastNoted: KillContext | undefined;
let lastNotedAt = 0;

/** Registers a source of watched contexts; returns the function that removes it. */
export function registerActivitySource(source: ActivitySource): () => void {
  sources.add(source);
  everActive = true;
  return () => void sources.delete(source);
}

/** Notes a context this process evaluated (the guard, queues and runs evaluate through here). */
export function noteContext(ctx: KillContext, now: number = Date.now()): void {
  // The guard evaluates one context object twice per effect (before and after the intent): the
  // second sighting within a second changes nothing worth a key.
  if (ctx === lastNoted && now >= lastNotedAt && now - lastNotedAt < 1000) return;
  lastNoted = ctx;
  lastNotedAt = now;
  let key = '';
  let empty = true;
  for (let i = 0; i < SELECTOR_KEYS.length; i++) {
    const v = ctx[SELECTOR_KEYS[i]!];
    if (v !== undefined) empty = false;
    key += `${v ?? '\u0001'}\u0000`;
  }
  if (empty) return;
  const hit = recent.get(key);
  if (hit !== undefined) {
    recent.delete(key);
    hit.at = now;
    recent.set(key, hit);
    return;
  }
  recent.set(key, { ctx, at: now });
  if (recent.size > RECENT_MAX) recent.delete(recent.keys().next().value!);
}

/**
 * What a halt on `selector` matches in this process now: watched contexts by kind, and distinct
 * contexts evaluated within {@link RECENT_WINDOW_MS}; when nothing matched, values seen that are
 * close to the selector's. Undefined when this process never watched anything (it cannot say).
 */
export function matchActivity(
  selector: Selector,
  now: number = Date.now(),
): ActivityMatch | undefined {
  if (!everActive && recent.size === 0) return undefined;
  let inFlight = 0;
  let queued = 0;
  let matchedRecent = 0;
  const seen: KillContext[] = [];
  for (const s of sources) {
    s.forEachWatched((ctx, kind) => {
      seen.push(ctx);
      if (!selectorMatches(selector, ctx)) return;
      if (kind === 'queued') queued++;
      else inFlight++;
    });
  }
  for (const { ctx, at } of recent.values()) {
    if (now - at > RECENT_WINDOW_MS) continue;
    seen.push(ctx);
    if (selectorMatches(selector, ctx)) matchedRecent++;
  }
  if (inFlight + queued + matchedRecent > 0) return { inFlight, queued, recent: matchedRecent };
  const similar = similarValues(selector, seen);
  return { inFlight, queued, recent: 0, ...(similar.length > 0 ? { similar } : {}) };
}

/** Values of the selector's attributes among `seen` that look like a slip (case, a typo). */
function similarValues(selector: Selector, seen: readonly KillContext[]): string[] {
  const out = new Set<string>();
  for (const k of SELECTOR_KEYS) {
    const want = selector[k];
    if (want === undefined) continue;
    for (const ctx of seen) {
      const got = ctx[k];
      if (got === undefined || got === want || out.has(got)) continue;
      if (looksLike(want, got)) out.add(got);
      if (out.size >= SIMILAR_MAX) return [...out];
    }
  }
  return [...out];
}

/** Equal but for case, or within a small edit distance (1 per 4 characters, at least 1). */
export function looksLike(a: string, b: string): boolean {
  if (a.toLowerCase() === b.toLowerCase()) return true;
  if (a.length > 64 || b.length > 64) return false;
  const limit = Math.max(1, Math.floor(Math.min(a.length, b.length) / 4));
  if (Math.abs(a.length - b.length) > limit) return false;
  return editDistance(a.toLowerCase(), b.toLowerCase()) <= limit;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        prev[j]! + 1,
        cur[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** For tests: forget every source and recent context. */
export function resetActivity(): void {
  sources.clear();
  recent.clear();
  everActive = false;
  lastNoted = undefined;
}
