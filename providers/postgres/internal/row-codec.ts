import { LogCorruptError } from '../../../src/errors.js';
import { canonicalJson } from '../../../src/model/canonical-json.js';
import type { FlipRecord } from '../../../src/model/flip-record.js';
import type { LogHead } from '../../../src/store/flip-log-store.js';
import { verifyChain } from '../../../src/store/verify-chain.js';

/** One row of `flips` as `pg` returns it for {@link RECORD_COLUMNS} (seq comes back as text). */
export interface FlipRow {
  readonly seq: string;
  readonly id: string;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly selector: unknown;
  readonly reason: string;
  readonly mode: string | null;
  readonly release: string | null;
  readonly source: string | null;
  readonly prev: string;
  readonly hash: string;
  readonly body: string;
  /** The record's signature (KS-17.7.2, schema version 5); null when it is not signed. */
  readonly sig: string | null;
}

/**
 * The text a PostgreSQL `text` column holds for a string: PostgreSQL cannot store U+0000 and the
 * driver sends a lone surrogate as U+FFFD, so both become U+FFFD. The column copies are for people
 * and SQL queries; `body` (where JSON escapes both) stays exact and is what the hash covers.
 */
export function columnText(s: string): string {
  return s.replace(LONE_SURROGATE, '\uFFFD').replaceAll('\u0000', '\uFFFD');
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function columnSelector(selector: FlipRecord['selector']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(selector)) if (v !== undefined) out[k] = columnText(v);
  return out;
}

/** The canonical JSON the hash covers: the record without `hash`. KS-2.3.1 */
export function bodyOf(record: FlipRecord): string {
  const { hash: _hash, ...rest } = record;
  return canonicalJson(rest);
}

/**
 * The parameters of `append_flip` for a record and its signature (null: unsigned), in the
 * column order of the INSERT statement. KS-8.2.1, KS-17.7.2
 */
export function insertParams(record: FlipRecord, sig: string | undefined): unknown[] {
  return [
    String(record.seq),
    record.id,
    record.at,
    columnText(record.actor),
    record.action,
    JSON.stringify(columnSelector(record.selector)),
    columnText(record.reason),
    record.mode ?? null,
    record.release === undefined ? null : columnText(record.release),
    record.source === undefined ? null : columnText(record.source),
    record.prev,
    record.hash,
    bodyOf(record),
    sig ?? null,
  ];
}

/** The seq column as a number, refusing what a JavaScript number cannot hold exactly. */
export function seqOf(text: string, fallback: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new LogCorruptError(fallback, `seq column ${JSON.stringify(text)} is not a usable seq`);
  }
  return n;
}

/**
 * Decodes rows read in seq order and verifies them: each body parses and is exactly the canonical
 * JSON of its record, the chain is dense from `start` and linked, every hash matches, and every
 * column agrees with the body. KS-8.4.1, KS-8.4.2
 *
 * @param rows - rows ordered by seq
 * @param start - the head the first row follows; its `hash` is taken from the first row's `prev`
 *   when `undefined` (a read that starts mid-log can check linkage only inside the batch)
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
 */
export function decodeRows(
  rows: readonly FlipRow[],
  start: { readonly seq: number; readonly hash: string | undefined },
): FlipRecord[] {
  if (rows.length === 0) return [];
  const raws = rows.map((row, i) => {
    const expected = start.seq + i + 1;
    let body: unknown;
    try {
      body = JSON.parse(row.body);
    } catch {
      throw new LogCorruptError(expected, 'body is not JSON');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new LogCorruptError(expected, 'body is not a JSON object');
    }
    return { ...(body as Record<string, unknown>), hash: row.hash };
  });
  const head: LogHead = { seq: start.seq, hash: start.hash ?? rows[0]?.prev ?? '' };
  const records = verifyChain(raws, head);
  records.forEach((record, i) => checkColumns(rows[i] as FlipRow, record));
  return records;
}

/** Refuses a row whose body is not byte-exact canonical JSON or whose columns were edited. */
function checkColumns(row: FlipRow, r: FlipRecord): void {
  const bad = (what: string): never => {
    throw new LogCorruptError(r.seq, `${what} disagrees with the record's canonical JSON`);
  };
  if (row.body !== bodyOf(r)) bad('body (not byte-exact canonical JSON)');
  if (row.seq !== String(r.seq)) bad('seq column');
  if (row.id !== r.id) bad('id column');
  if (row.at !== r.at) bad('at column');
  if (row.actor !== columnText(r.actor)) bad('actor column');
  if (row.action !== r.action) bad('action column');
  if (canonicalJson(row.selector) !== canonicalJson(columnSelector(r.selector)))
    bad('selector column');
  if (row.reason !== columnText(r.reason)) bad('reason column');
  if (row.mode !== (r.mode ?? null)) bad('mode column');
  if (row.release !== (r.release === undefined ? null : columnText(r.release)))
    bad('release column');
  if (row.source !== (r.source === undefined ? null : columnText(r.source))) bad('source column');
  if (row.prev !== r.prev) bad('prev column');
}
