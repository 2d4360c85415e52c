import { mayRead, readsAll, type Principal } from '../auth/principal.js';
import { canonicalJson } from '../model/canonical-json.js';
import type { FlipRecord } from '../model/flip-record.js';
import type { KillSnapshot } from '../model/kill-state.js';
import type { Selector } from '../model/selector.js';
import type { FlipLogStore } from '../store/flip-log-store.js';

/**
 * What one scoped reader may see (KS-17.4.1): an operator, or a viewer given `scopes`, reads only
 * flips and halts whose selector {@link mayRead} lets it. Readers with the same scopes share a
 * `key` (the stream encodes one snapshot per key, KS-17.8.2).
 */
export interface ReadView {
  /** Identifies the scopes: equal for every reader with the same ones. */
  readonly key: string;
  /** Whether this reader may read a flip or halt of this selector. */
  readonly mayRead: (selector: Selector) => boolean;
}

/**
 * The read view of a principal, or undefined when it reads everything (admins, workers, viewers
 * without scopes, the anonymous admin of `auth: 'none'`). KS-17.4.1
 */
export function readViewOf(principal: Principal | undefined): ReadView | undefined {
  if (principal === undefined || readsAll(principal)) return undefined;
  const scopes = principal.scopes.map((s) => canonicalJson(s)).sort();
  return {
    key: `scopes:${scopes.join('|')}`,
    mayRead: (selector) => mayRead(principal, selector),
  };
}

/** The kill state as a reader sees it: the same seq and hash, only the halts it may read. */
export function snapshotFor(snapshot: KillSnapshot, view: ReadView | undefined): KillSnapshot {
  if (view === undefined) return snapshot;
  return { ...snapshot, halts: snapshot.halts.filter((h) => view.mayRead(h.selector)) };
}

/** Records examined at most for one page of a filtered log (KS-17.4.2). */
export const MAX_SCAN = 10_000;
/** Records read from the store at a time while filtering. */
const SCAN_BATCH = 500;

/** One page of the log as a reader sees it (KS-17.4.2). */
export interface LogPage {
  readonly flips: FlipRecord[];
  /** The log's head seq (every reader sees the same head). */
  readonly head: number;
  /** The seq the next page starts after, or null when this page reached the head. */
  readonly next: number | null;
}

/**
 * A page of the log for a reader (KS-17.4.2): up to `limit` flips it may read after `after`.
 * `next` is a position in the log, not in the reader's view: the seq of the last record examined.
 * A scoped reader's page examines at most {@link MAX_SCAN} records, so it may hold fewer than
 * `limit` flips (none, even) while `next` is not null; a reader pages until `next` is null.
 */
export async function readLogPage(
  store: Pick<FlipLogStore, 'read' | 'head'>,
  after: number,
  limit: number,
  view: ReadView | undefined,
): Promise<LogPage> {
  if (view === undefined) {
    const flips = await store.read({ after, limit });
    const head = (await store.head()).seq;
    const last = flips.at(-1)?.seq;
    return { flips, head, next: last !== undefined && last < head ? last : null };
  }
  const head = (await store.head()).seq;
  const flips: FlipRecord[] = [];
  let examined = after;
  let scanned = 0;
  while (flips.length < limit && examined < head && scanned < MAX_SCAN) {
    const batch = await store.read({
      after: examined,
      limit: Math.min(SCAN_BATCH, MAX_SCAN - scanned),
    });
    if (batch.length === 0) break;
    for (const r of batch) {
      examined = r.seq;
      scanned++;
      if (view.mayRead(r.selector)) {
        flips.push(r);
        if (flips.length === limit) break;
      }
    }
  }
  return { flips, head, next: examined < head ? examined : null };
}
