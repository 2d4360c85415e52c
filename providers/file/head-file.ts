import { open, readFile, rename } from 'node:fs/promises';
import { LogCorruptError } from '../../src/errors.js';
import { checkpointVerifies } from '../../src/integrity/record-signatures.js';
import type { PublicKeyRing } from '../../src/integrity/signing-key.js';
import { parseExpectedHead, type Checkpoint } from '../../src/integrity/statements.js';
import type { FlipRecord } from '../../src/model/flip-record.js';

/** Where a file log keeps its last acknowledged head: beside it, `<path>.head`. KS-17.7.5 */
export function headPath(logPath: string): string {
  return `${logPath}.head`;
}

/**
 * Reads `<path>.head` (a checkpoint: `{ logId, seq, hash, at, sig? }`), or undefined when there is
 * none (a log from before head files, or a new one).
 *
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` when it exists but is not a checkpoint
 */
export async function readHeadFile(logPath: string): Promise<Checkpoint | undefined> {
  let text: string;
  try {
    text = await readFile(headPath(logPath), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const h = parseExpectedHead(text);
    if (h.checkpoint === undefined) throw new Error('not a checkpoint');
    return h.checkpoint;
  } catch {
    throw new LogCorruptError(
      0,
      `the head file ${headPath(logPath)} is not a checkpoint { logId, seq, hash, at, sig? }; ` +
        'it is written whole by rename, so something else changed it (remove it only once the log is known to be complete)',
    );
  }
}

/**
 * Writes the head file whole: a temporary file, fsync, rename over the old one. A crash before
 * the rename (or a rename lost with the power) leaves the older head, which the log still holds:
 * the head file may trail the log, never lead it. KS-17.7.5
 */
export async function writeHeadFile(logPath: string, head: Checkpoint): Promise<void> {
  const tmp = `${headPath(logPath)}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(head)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, headPath(logPath));
}

/**
 * Why the log does not agree with its acknowledged head, or undefined when it does: the head
 * file belongs to this log, its signature (when keys are known and it has one, or the log is
 * signed) verifies, and the log holds the record it names. KS-17.7.5
 */
export function headFileMismatch(
  head: Checkpoint,
  logId: string,
  records: readonly FlipRecord[],
  ring: PublicKeyRing | undefined,
  logIsSigned: boolean,
): LogCorruptError | undefined {
  if (head.logId !== logId) {
    return new LogCorruptError(
      head.seq,
      `the head file names log ${head.logId}, but this log is ${logId}: the log or its head file was replaced`,
    );
  }
  if (ring !== undefined && (head.sig !== undefined || logIsSigned)) {
    if (!checkpointVerifies(head, ring)) {
      return new LogCorruptError(
        head.seq,
        `the head file's signature ${head.sig === undefined ? 'is missing' : 'does not verify'} (KS-17.7.5)`,
      );
    }
  }
  const last = records.at(-1)?.seq ?? 0;
  if (last < head.seq) {
    return new LogCorruptError(
      head.seq,
      `acknowledged records missing: the log ends at seq ${last}, but seq ${head.seq} was acknowledged (head file); ` +
        'records were cut from its end or it was replaced by an older copy (KS-17.7.5)',
    );
  }
  if (head.seq > 0 && records[head.seq - 1]?.hash !== head.hash) {
    return new LogCorruptError(
      head.seq,
      `acknowledged records missing: the record at seq ${head.seq} is not the one acknowledged (head file hash ${head.hash}); history was rewritten (KS-17.7.5)`,
    );
  }
  return undefined;
}
