import {
  foldLedgerEvent,
  matchesFilter,
  type LedgerEntry,
  type LedgerEvent,
  type LedgerFilter,
} from '../side-effect-ledger.js';

/** The folded entries of a ledger, kept up to date per event; `{ key }` is a map lookup. */
export class LedgerIndex {
  readonly #byKey = new Map<string, LedgerEntry>();

  apply(e: LedgerEvent): void {
    this.#byKey.set(e.key, foldLedgerEvent(this.#byKey.get(e.key), e));
  }

  entries(filter?: LedgerFilter): LedgerEntry[] {
    if (filter?.key !== undefined) {
      const e = this.#byKey.get(filter.key);
      return e && matchesFilter(e, filter) ? [e] : [];
    }
    const out: LedgerEntry[] = [];
    for (const e of this.#byKey.values()) if (matchesFilter(e, filter)) out.push(e);
    return out;
  }

  clear(): void {
    this.#byKey.clear();
  }
}
