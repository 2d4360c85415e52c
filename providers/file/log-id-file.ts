import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, KillSwitchError } from '../../src/errors.js';
import { MAX_LOG_ID_LENGTH } from '../../src/protocol/log-position.js';
import { isIdText } from '../../src/protocol/text.js';
import { logIdFor } from '../../src/store/log-id.js';

/** Where a file log keeps its identity: beside it, `<path>.logid`. KS-2.7.2 */
export function logIdPath(logPath: string): string {
  return `${logPath}.logid`;
}

/**
 * Reads the identity of the file log at `logPath` from `<path>.logid` (`{"logId":"..."}`), or
 * gives the log one when the file is missing: at genesis (an empty log) a random id; for a log
 * written before identities (records but no `.logid`) the id derived from its first record
 * (KS-2.7.1), with a warning, so the upgrade is visible. The file is written whole (temporary
 * name, fsync, rename, directory fsync) with mode 0600. Called with the log's lock held.
 * KS-2.7.2
 *
 * @param firstHash - the hash of the log's seq 1, or undefined when it is empty
 * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when `.logid` exists but is not a valid
 *   identity (never guessed over: a wrong identity would let workers apply another log)
 */
export async function readOrCreateLogId(
  logPath: string,
  firstHash: string | undefined,
  warn: (message: string) => void,
): Promise<string> {
  const path = logIdPath(logPath);
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    let logId: unknown;
    try {
      logId = (JSON.parse(text) as { logId?: unknown }).logId;
    } catch {
      logId = undefined;
    }
    if (!isIdText(logId, MAX_LOG_ID_LENGTH)) {
      throw new KillSwitchError(
        ErrorCode.STORE_UNAVAILABLE,
        `${path} does not hold a valid log identity ({"logId":"..."}); refusing to guess one`,
      );
    }
    return logId;
  }
  const logId = logIdFor(firstHash);
  if (firstHash !== undefined) {
    warn(
      `killswitch: ${logPath} has no identity yet (written before log identities): gave it ${logId}, derived from its first record, in ${path}; keep that file with the log`,
    );
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify({ logId })}\n`, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const d = await open(dirname(path), 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return logId;
}
