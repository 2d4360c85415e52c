import { readFile } from 'node:fs/promises';
import { LogCorruptError } from '../../src/errors.js';
import { GENESIS_HASH, type FlipRecord } from '../../src/model/flip-record.js';
import type { LogHead } from '../../src/store/flip-log-store.js';
import { verifyChain } from '../../src/store/verify-chain.js';

/** What a flip-log file holds once checked: the verified records and where the good part ends. */
export interface FlipLogFileContents {
  /** The verified records, in seq order. */
  readonly records: readonly FlipRecord[];
  /** The last verified record's seq and hash (0 and the genesis hash when empty). */
  readonly head: LogHead;
  /** Length in bytes of the verified prefix (every complete, valid line). */
  readonly goodBytes: number;
  /**
   * Bytes after the verified prefix that a crash in the middle of a write left behind (a last
   * line with no newline); 0 when there are none. The file store cuts them on open. KS-2.4.2,
   * KS-17.7.5
   */
  readonly tornBytes: number;
  /**
   * The signature stored beside each record (KS-17.7.2), index for index with `records`;
   * undefined for an unsigned record.
   */
  readonly sigs: readonly (string | undefined)[];
}

const NEWLINE = 0x0a;

/**
 * Checks the bytes of a JSON-lines flip log (one record per line, each line ending in `\n`):
 * every line parses, and the records form one hash chain (dense seq, `prev`, `hash`, unique ids).
 * Only a last line without its newline may be torn; it is reported in `tornBytes`, not treated as
 * corruption, because the newline is the last byte of every append and an append is acknowledged
 * only after the fsync of its whole line. A complete last line (ending in a newline) that does not
 * parse or is not a valid next record is corruption: deleting bytes inside an acknowledged record
 * must never turn it into a cut torn tail. KS-2.3.3, KS-2.4.2, KS-17.7.5
 *
 * A line may carry a `sig` field beside the record (KS-17.7.2); it is not part of the hash and
 * is returned in `sigs`. Checking it needs the log id and keys: see `checkRecordSignatures`.
 *
 * @param bytes - the whole file
 * @returns the verified records and the length of the good prefix
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
 */
export function parseFlipLog(bytes: Uint8Array): FlipLogFileContents {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values: unknown[] = [];
  const ends: number[] = []; // ends[i]: offset just past line i's newline
  const sigs: (string | undefined)[] = [];
  let start = 0;
  let tornBytes = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(NEWLINE, start);
    if (nl === -1) {
      // No newline: the write of this line never finished. KS-2.4.2
      tornBytes = buf.length - start;
      break;
    }
    const text = buf.toString('utf8', start, nl);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // KS-17.7.5: a complete line was written whole and fsynced before it was acknowledged.
      throw new LogCorruptError(values.length + 1, `line ${values.length + 1} is not valid JSON`);
    }
    if (typeof value === 'object' && value !== null && 'sig' in value) {
      const { sig, ...record } = value as Record<string, unknown>;
      if (typeof sig !== 'string' || sig.length > 200) {
        throw new LogCorruptError(values.length + 1, 'its sig is not a signature');
      }
      value = record;
      sigs[values.length] = sig;
    }
    values.push(value);
    ends.push(nl + 1);
    start = nl + 1;
  }
  const records = verifyChain(values);
  const last = records.at(-1);
  return {
    records,
    head: last ? { seq: last.seq, hash: last.hash } : { seq: 0, hash: GENESIS_HASH },
    goodBytes: ends.at(-1) ?? 0,
    tornBytes,
    sigs: records.map((_, i) => sigs[i]),
  };
}

/**
 * Reads and checks a flip-log file without opening it as a store: no lock is taken and nothing is
 * written, so it is safe on a live log (a write in progress shows up as `tornBytes`). This is what
 * `killswitch verify` runs. KS-2.3.3
 *
 * @param path - the JSON-lines log file
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
 * @throws the file system's error (ENOENT, EACCES, ...) when the file cannot be read
 * @example
 * ```ts
 * const { head } = await readFlipLogFile('/var/lib/killswitch/flips.jsonl');
 * ```
 */
export async function readFlipLogFile(path: string): Promise<FlipLogFileContents> {
  return parseFlipLog(await readFile(path));
}
