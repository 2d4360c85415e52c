import { LogCorruptError, ValidationError } from '../errors.js';
import {
  GENESIS_HASH,
  parseFlipRecord,
  verifyRecordHash,
  type FlipRecord,
} from '../model/flip-record.js';
import type { LogHead } from './flip-log-store.js';

/**
 * Verifies that raw records form one chain: each parses, seq is dense, `prev` names the hash
 * before, `hash` matches the content, ids are unique. KS-2.3.3
 *
 * @param records - parsed JSON values, in log order
 * @param start - the head the first record follows
 * @returns the validated records
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
 */
export function verifyChain(
  records: Iterable<unknown>,
  start: LogHead = { seq: 0, hash: GENESIS_HASH },
): FlipRecord[] {
  const out: FlipRecord[] = [];
  const ids = new Set<string>();
  let head = start;
  for (const raw of records) {
    const expected = head.seq + 1;
    let r: FlipRecord;
    try {
      r = parseFlipRecord(raw);
    } catch (err) {
      const detail = err instanceof ValidationError ? err.message : String(err);
      throw new LogCorruptError(expected, `malformed record (${detail})`);
    }
    if (r.seq !== expected) {
      throw new LogCorruptError(expected, `found seq ${r.seq} where seq ${expected} belongs`);
    }
    if (r.prev !== head.hash)
      throw new LogCorruptError(r.seq, 'prev does not match the hash of the record before');
    if (!verifyRecordHash(r)) throw new LogCorruptError(r.seq, 'hash does not match the record');
    if (ids.has(r.id)) throw new LogCorruptError(r.seq, `duplicate id ${r.id}`);
    ids.add(r.id);
    out.push(r);
    head = r;
  }
  return out;
}
