import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, KillSwitchError } from '../errors.js';

/** Who holds a claim: written once, whole, when the claim is made. */
interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly token: string;
  readonly at: string;
}

const CLAIM = /^(\d+)-[0-9a-f-]{36}\.json$/;
const TEMP = /^\.(\d+)-[0-9a-f-]{36}\.json\.tmp$/;

/**
 * An exclusive lock next to a flip log, so two processes (or two stores in one process) never
 * append to the same file. KS-2.4.5
 *
 * The lock is a directory (`<log>.lock/`) in which each opener drops a claim file named after its
 * pid and a random token, written whole (temporary name, fsync, rename). After dropping its
 * claim an opener lists the directory: claims of processes that ran on this host and no longer
 * exist are stale and removed; if any other claim is left, it withdraws its own claim and, after
 * a short random pause, tries again, and finally refuses. Of two live openers, the one that lists
 * second always sees the first one's claim, so at most one proceeds (both may withdraw; then
 * both refuse, which fails closed). Nobody ever removes the claim of a live process, which is
 * what makes this safe where "remove a stale lock file, then create mine" is not: two processes
 * that judge the same lock file stale can otherwise each delete the other's fresh lock.
 *
 * Anything doubtful (another host, an unreadable claim, a live pid, a pid that cannot be probed)
 * counts as held. A pid reused by an unrelated process keeps the lock held until an operator
 * removes the claim; the error names the claim file.
 */
export class LockFile {
  /** The lock directory. */
  readonly dir: string;
  readonly #claim: string;

  private constructor(dir: string, claim: string) {
    this.dir = dir;
    this.#claim = claim;
  }

  /**
   * Takes the lock or fails.
   *
   * @param dir - the lock directory (the log's path plus `.lock`)
   * @param warn - told when a stale claim is removed
   * @param attempts - tries before refusing when other claims are live. @default 5
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the lock is held or cannot be taken
   */
  static async acquire(dir: string, warn: (msg: string) => void, attempts = 5): Promise<LockFile> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw unavailable(dir, 'cannot create the lock directory', err);
    }
    const host = hostname();
    let blocker = '';
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await pause(2 + Math.random() * 18);
      const claim = await writeClaim(dir, host);
      let others: string[];
      try {
        others = await liveClaims(dir, claim, host, warn);
      } catch (err) {
        await unlink(join(dir, claim)).catch(() => undefined);
        throw unavailable(dir, 'cannot read the lock directory', err);
      }
      if (others.length === 0) return new LockFile(dir, claim);
      await unlink(join(dir, claim)).catch(() => undefined);
      blocker = others.join('; ');
    }
    throw unavailable(dir, `the log is locked by ${blocker}`);
  }

  /** Withdraws this lock's claim. */
  async release(): Promise<void> {
    await unlink(join(this.dir, this.#claim)).catch(() => undefined);
  }
}

async function writeClaim(dir: string, host: string): Promise<string> {
  const holder: LockHolder = {
    pid: process.pid,
    host,
    token: randomUUID(),
    at: new Date().toISOString(),
  };
  const name = `${holder.pid}-${holder.token}.json`;
  const temp = join(dir, `.${name}.tmp`);
  try {
    const fh = await open(temp, 'wx', 0o600);
    try {
      await fh.writeFile(JSON.stringify(holder) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, join(dir, name));
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw unavailable(dir, 'cannot write a lock claim', err);
  }
  return name;
}

/** Claims other than `mine` that may be live, described for the error; removes stale ones. */
async function liveClaims(
  dir: string,
  mine: string,
  host: string,
  warn: (m: string) => void,
): Promise<string[]> {
  const live: string[] = [];
  for (const name of await readdir(dir)) {
    if (name === mine) continue;
    const temp = TEMP.exec(name);
    if (temp !== null) {
      // A claim being written, or left half-written by a process that died.
      if (!isAlive(Number(temp[1]))) await unlink(join(dir, name)).catch(() => undefined);
      continue;
    }
    const text = await readFile(join(dir, name), 'utf8').catch((err: unknown) =>
      codeOf(err) === 'ENOENT' ? null : '',
    );
    if (text === null) continue; // withdrawn while we listed
    const other = CLAIM.test(name) ? parseHolder(text) : undefined;
    if (other === undefined) {
      live.push(`an unreadable claim ${join(dir, name)} (remove it if no process uses the log)`);
    } else if (other.host === host && !isAlive(other.pid)) {
      await unlink(join(dir, name)).catch(() => undefined);
      warn(
        `killswitch: removed the stale lock claim ${join(dir, name)} of pid ${other.pid}, which no longer runs`,
      );
    } else {
      live.push(
        `pid ${other.pid} on ${other.host} since ${other.at}` +
          (other.pid === process.pid && other.host === host
            ? ' (another store in this process)'
            : '') +
          ` (${join(dir, name)})`,
      );
    }
  }
  return live;
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

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function unavailable(dir: string, what: string, cause?: unknown): KillSwitchError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new KillSwitchError(
    ErrorCode.STORE_UNAVAILABLE,
    `lock ${dir}: ${what}${detail}`,
    cause === undefined ? undefined : { cause },
  );
}
