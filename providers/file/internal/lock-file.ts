import { randomUUID } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ErrorCode, KillSwitchError } from '../../../src/errors.js';

/** Who holds a lock file: written once, atomically, when the lock is taken. */
interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly token: string;
  readonly at: string;
}

/**
 * An exclusive lock file next to a flip log, so two processes (or two stores in one process)
 * never append to the same file. KS-2.4.5
 *
 * The lock file is written in full under a temporary name and then hard-linked into place, so
 * it is never seen half-written: `link` fails with EEXIST when the lock is held. A lock whose
 * holder ran on this host and whose pid no longer exists (a process that crashed or was
 * SIGKILLed) is stale and taken over; the take-over renames the stale file aside and checks that
 * it moved the very file it judged stale, so two processes racing to take over one stale lock
 * cannot both win. Anything doubtful (another host, an unreadable lock file, a live pid, a pid
 * that cannot be probed) counts as held: the store refuses to open rather than risk two writers.
 */
export class LockFile {
  readonly path: string;
  readonly #token: string;

  private constructor(path: string, token: string) {
    this.path = path;
    this.#token = token;
  }

  /**
   * Takes the lock or fails.
   *
   * @param path - the lock file's path (the log's path plus `.lock`)
   * @param warn - told when a stale lock is taken over
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the lock is held or cannot be written
   */
  static async acquire(path: string, warn: (msg: string) => void): Promise<LockFile> {
    const holder: LockHolder = {
      pid: process.pid,
      host: hostname(),
      token: randomUUID(),
      at: new Date().toISOString(),
    };
    const text = JSON.stringify(holder) + '\n';
    const temp = `${path}.${process.pid}.${holder.token}.tmp`;
    const fh = await open(temp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      // Three tries: a stale lock taken over (or vanishing) between our steps costs one retry.
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await link(temp, path);
          return new LockFile(path, holder.token);
        } catch (err) {
          if (codeOf(err) !== 'EEXIST') throw unavailable(path, 'cannot create the lock file', err);
        }
        let seen: string;
        try {
          seen = await readFile(path, 'utf8');
        } catch (err) {
          if (codeOf(err) === 'ENOENT') continue; // released between our link and read
          throw unavailable(path, 'cannot read the lock file', err);
        }
        const other = parseHolder(seen);
        if (other === undefined) {
          throw unavailable(
            path,
            'the lock file is unreadable; remove it if no process uses the log',
          );
        }
        if (other.host !== holder.host || isAlive(other.pid)) {
          throw unavailable(
            path,
            `the log is locked by pid ${other.pid} on ${other.host} since ${other.at}` +
              (other.pid === process.pid ? ' (another store in this process)' : ''),
          );
        }
        const aside = `${path}.stale.${process.pid}.${randomUUID()}`;
        try {
          await rename(path, aside);
        } catch (err) {
          if (codeOf(err) === 'ENOENT') continue;
          throw unavailable(path, 'cannot move the stale lock file aside', err);
        }
        const moved = await readFile(aside, 'utf8').catch(() => '');
        if (moved !== seen) {
          // We moved a lock someone else took in between: put it back (link never overwrites).
          await link(aside, path).catch(() => undefined);
          await unlink(aside).catch(() => undefined);
          throw unavailable(path, 'another process took the stale lock first');
        }
        await unlink(aside).catch(() => undefined);
        warn(
          `killswitch: removed the stale lock ${path} of pid ${other.pid}, which no longer runs`,
        );
      }
      throw unavailable(path, 'the lock kept changing hands');
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  /** Removes the lock file, if it is still ours. */
  async release(): Promise<void> {
    const text = await readFile(this.path, 'utf8').catch(() => undefined);
    if (text === undefined || parseHolder(text)?.token !== this.#token) return;
    await unlink(this.path).catch(() => undefined);
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder> | null;
    if (
      v !== null &&
      typeof v === 'object' &&
      Number.isSafeInteger(v.pid) &&
      (v.pid ?? 0) > 0 &&
      typeof v.host === 'string' &&
      typeof v.token === 'string' &&
      typeof v.at === 'string'
    ) {
      return v as LockHolder;
    }
  } catch {
    // fall through: unreadable
  }
  return undefined;
}

/** True unless the pid certainly does not exist (ESRCH); EPERM means it exists. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return codeOf(err) !== 'ESRCH';
  }
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

function unavailable(path: string, what: string, cause?: unknown): KillSwitchError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new KillSwitchError(
    ErrorCode.STORE_UNAVAILABLE,
    `lock ${path}: ${what}${detail}`,
    cause === undefined ? undefined : { cause },
  );
}
