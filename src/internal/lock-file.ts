import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, KillSwitchError } from '../errors.js';

/**
 * Who holds a claim: written once, whole, when the claim is made. `boot`, `pidNs` and `start`
 * (absent where `/proc` is not readable, and in claims written before they existed) say which
 * incarnation of the pid it is, so a pid reused after a restart (a container's pid 1) is not
 * taken for the holder. KS-2.4.5, KS-17.1.1
 */
interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly token: string;
  readonly at: string;
  /** `/proc/sys/kernel/random/boot_id`: changes when the machine (kernel) restarts. */
  readonly boot?: string;
  /** `/proc/self/ns/pid`: the pid namespace the pid belongs to (a container has its own). */
  readonly pidNs?: string;
  /** Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks since boot. */
  readonly start?: string;
}

const CLAIM = /^(\d+)-[0-9a-f-]{36}\.json$/;
const TEMP = /^\.(\d+)-[0-9a-f-]{36}\.json\.tmp$/;

/**
 * The environment variable naming one claim file (its base name, `<pid>-<token>.json`) that
 * {@link LockFile.acquire} removes before taking the lock: the documented override for a claim
 * that cannot be judged stale automatically (another host, an unreadable claim). KS-17.1.3
 */
export const BREAK_LOCK_ENV = 'KILLSWITCH_BREAK_LOCK';

/** Options of {@link LockFile.acquire}. Times in milliseconds. */
export interface LockFileOptions {
  /** Tries before refusing when other claims are live. @default 5 */
  readonly attempts?: number;
  /**
   * How often the holder refreshes its claim's modification time, the only sign of life a process
   * in another pid namespace can read. @default 2000
   */
  readonly refreshMs?: number;
  /**
   * A claim of this host and boot from another pid namespace (a container restarted since, or a
   * sibling container) is stale when it was not refreshed for this long. @default 15000
   */
  readonly staleAfterMs?: number;
  /** The environment read for {@link BREAK_LOCK_ENV}. @default process.env */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/**
 * An exclusive lock next to a flip log, so two processes (or two stores in one process) never
 * append to the same file. KS-2.4.5
 *
 * The lock is a directory (`<log>.lock/`) in which each opener drops a claim file named after its
 * pid and a random token, written whole (temporary name, fsync, rename). After dropping its
 * claim an opener lists the directory and removes stale claims; if any other claim is left, it
 * withdraws its own claim and, after a short random pause, tries again, and finally refuses. Of
 * two live openers, the one that lists second always sees the first one's claim, so at most one
 * proceeds (both may withdraw; then both refuse, which fails closed). Nobody ever removes the
 * claim of a live process, which is what makes this safe where "remove a stale lock file, then
 * create mine" is not: two processes that judge the same lock file stale can otherwise each
 * delete the other's fresh lock.
 *
 * A claim is stale (KS-17.1.1, KS-17.1.2) when it was written on this host and
 * - in an earlier boot (the boot id changed: nothing from before a restart runs), or
 * - in this pid namespace, by a pid that no longer runs or now belongs to a process started at
 *   another time (a pid reused after a restart: a container's pid 1 comes back as pid 1), or
 * - in another pid namespace (a container restarted since, whose old processes cannot be probed)
 *   and not refreshed for `staleAfterMs`: every holder refreshes its claim every `refreshMs`.
 *
 * Anything doubtful (another host, an unreadable claim, a pid whose start time cannot be read)
 * counts as held; the error names the claim file and the override ({@link BREAK_LOCK_ENV}).
 */
export class LockFile {
  /** The lock directory. */
  readonly dir: string;
  readonly #claim: string;
  readonly #refresh: NodeJS.Timeout;
  #lost: string | undefined;

  private constructor(dir: string, claim: string, refreshMs: number, warn: (m: string) => void) {
    this.dir = dir;
    this.#claim = claim;
    this.#refresh = setInterval(() => {
      const path = join(dir, claim);
      const now = new Date();
      utimes(path, now, now).catch((err: unknown) => {
        if (this.#lost !== undefined) return;
        this.#lost = `the lock claim ${path} could not be refreshed (${codeOf(err) ?? String(err)}): another process may have taken the lock`;
        warn(`killswitch: ${this.#lost}`);
      });
    }, refreshMs);
    this.#refresh.unref();
  }

  /**
   * Takes the lock or fails.
   *
   * @param dir - the lock directory (the log's path plus `.lock`)
   * @param warn - told when a stale claim is removed, or the own claim cannot be refreshed
   * @param options - attempts, refresh and staleness periods, or the attempts alone (legacy)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the lock is held or cannot be taken
   */
  static async acquire(
    dir: string,
    warn: (msg: string) => void,
    options: LockFileOptions | number = {},
  ): Promise<LockFile> {
    const o: LockFileOptions = typeof options === 'number' ? { attempts: options } : options;
    const attempts = o.attempts ?? 5;
    const refreshMs = o.refreshMs ?? 2000;
    const staleAfterMs = o.staleAfterMs ?? 15_000;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw unavailable(dir, 'cannot create the lock directory', err);
    }
    const me = identity();
    await breakNamedClaim(dir, (o.env ?? process.env)[BREAK_LOCK_ENV], warn);
    let blocker = '';
    let waited = false;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await pause(2 + Math.random() * 18);
      const claim = await writeClaim(dir, me);
      let others: Blocker[];
      try {
        others = await liveClaims(dir, claim, me, staleAfterMs, warn);
      } catch (err) {
        await unlink(join(dir, claim)).catch(() => undefined);
        throw unavailable(dir, 'cannot read the lock directory', err);
      }
      if (others.length === 0) return new LockFile(dir, claim, refreshMs, warn);
      await unlink(join(dir, claim)).catch(() => undefined);
      blocker = others.map((b) => b.what).join('; ');
      // Held only by claims of another pid namespace that are still fresh (a container that
      // crashed moments ago and restarts): wait once until they would be stale, then look again.
      // A live holder keeps refreshing and still refuses.
      const waits = others.map((b) => b.staleInMs);
      if (!waited && attempt === attempts - 1 && waits.every((w) => w !== undefined)) {
        waited = true;
        attempt = -1;
        await pause(Math.max(...waits) + 250);
      }
    }
    throw unavailable(
      dir,
      `the log is locked by ${blocker}. If no process uses the log any more, remove that claim file or start once with ${BREAK_LOCK_ENV}=<its file name>`,
    );
  }

  /** Why this lock may no longer be held (its claim could not be refreshed), or undefined. */
  get lost(): string | undefined {
    return this.#lost;
  }

  /** Withdraws this lock's claim. */
  async release(): Promise<void> {
    clearInterval(this.#refresh);
    await unlink(join(this.dir, this.#claim)).catch(() => undefined);
  }
}

/** This process as a claim describes it. */
interface Identity {
  readonly pid: number;
  readonly host: string;
  readonly boot: string | undefined;
  readonly pidNs: string | undefined;
  readonly start: string | undefined;
}

function identity(): Identity {
  return {
    pid: process.pid,
    host: hostname(),
    boot: readProc('/proc/sys/kernel/random/boot_id'),
    pidNs: pidNamespace(),
    start: startTicks(process.pid),
  };
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/** The start time of a pid in clock ticks since boot (`/proc/<pid>/stat` field 22). */
function startTicks(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const v = fields[19];
  return v !== undefined && /^\d+$/.test(v) ? v : undefined;
}

async function breakNamedClaim(
  dir: string,
  name: string | undefined,
  warn: (m: string) => void,
): Promise<void> {
  if (name === undefined || name === '') return;
  // Only a claim file name, never a path: the override cannot reach outside the lock directory.
  if (!CLAIM.test(name)) {
    warn(
      `killswitch: ignoring ${BREAK_LOCK_ENV}=${name}: not a claim file name (<pid>-<uuid>.json)`,
    );
    return;
  }
  const path = join(dir, name);
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return; // already gone (or another log's claim): nothing to break
  await unlink(path).catch(() => undefined);
  warn(`killswitch: removed the lock claim ${path} as ${BREAK_LOCK_ENV} asked: ${text.trim()}`);
}

async function writeClaim(dir: string, me: Identity): Promise<string> {
  const holder: LockHolder = {
    pid: me.pid,
    host: me.host,
    token: randomUUID(),
    at: new Date().toISOString(),
    ...(me.boot === undefined ? {} : { boot: me.boot }),
    ...(me.pidNs === undefined ? {} : { pidNs: me.pidNs }),
    ...(me.start === undefined ? {} : { start: me.start }),
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

/** A claim that may be live: described for the error; `staleInMs` when only its age keeps it. */
interface Blocker {
  readonly what: string;
  readonly staleInMs?: number;
}

/** Claims other than `mine` that may be live; removes stale ones. */
async function liveClaims(
  dir: string,
  mine: string,
  me: Identity,
  staleAfterMs: number,
  warn: (m: string) => void,
): Promise<Blocker[]> {
  const live: Blocker[] = [];
  for (const name of await readdir(dir)) {
    if (name === mine) continue;
    const path = join(dir, name);
    const temp = TEMP.exec(name);
    if (temp !== null) {
      // A claim being written, or left half-written by a process that died.
      if (!isAlive(Number(temp[1]))) await unlink(path).catch(() => undefined);
      continue;
    }
    const text = await readFile(path, 'utf8').catch((err: unknown) =>
      codeOf(err) === 'ENOENT' ? null : '',
    );
    if (text === null) continue; // withdrawn while we listed
    const other = CLAIM.test(name) ? parseHolder(text) : undefined;
    if (other === undefined) {
      live.push({ what: `an unreadable claim ${path} (remove it if no process uses the log)` });
      continue;
    }
    const mtime = await stat(path).then(
      (s) => s.mtimeMs,
      () => undefined,
    );
    const verdict = judge(other, me, mtime, staleAfterMs);
    if (verdict.stale) {
      await unlink(path).catch(() => undefined);
      warn(
        `killswitch: removed the stale lock claim ${path} of pid ${other.pid}, which no longer runs (${verdict.why})`,
      );
    } else {
      live.push({
        what: `pid ${other.pid} on ${other.host} since ${other.at} (${verdict.why}) (${path})`,
        ...(verdict.staleInMs === undefined ? {} : { staleInMs: verdict.staleInMs }),
      });
    }
  }
  return live;
}

/** Whether another claim is stale, and why, in words for the warning or the error. KS-17.1.1 */
function judge(
  other: LockHolder,
  me: Identity,
  mtimeMs: number | undefined,
  staleAfterMs: number,
): { stale: boolean; why: string; staleInMs?: number } {
  if (other.host !== me.host) return { stale: false, why: 'another host: cannot be probed' };
  if (other.boot !== undefined && me.boot !== undefined && other.boot !== me.boot) {
    return { stale: true, why: 'written before this machine last started' };
  }
  if (other.pidNs !== undefined && me.pidNs !== undefined && other.pidNs !== me.pidNs) {
    // A container restarted since, or a sibling container: only the refreshes tell.
    const age = mtimeMs === undefined ? Number.NaN : Date.now() - mtimeMs;
    if (age > staleAfterMs) {
      return {
        stale: true,
        why: `another pid namespace, not refreshed for ${Math.round(age / 1000)} s`,
      };
    }
    return {
      stale: false,
      ...(Number.isNaN(age) ? {} : { staleInMs: Math.max(0, staleAfterMs - age) }),
      why: `another pid namespace, refreshed ${Number.isNaN(age) ? '?' : Math.max(0, Math.round(age / 1000))} s ago; stale after ${Math.round(staleAfterMs / 1000)} s without a refresh`,
    };
  }
  if (!isAlive(other.pid)) return { stale: true, why: 'the pid no longer runs' };
  if (other.start !== undefined) {
    const now = startTicks(other.pid);
    if (now !== undefined && now !== other.start) {
      return { stale: true, why: 'the pid now belongs to a process started later' };
    }
    if (now === undefined) return { stale: false, why: 'a live pid whose start cannot be read' };
  }
  const self = other.pid === me.pid ? ', another store in this process' : '';
  return { stale: false, why: `a live process${self}` };
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
      typeof v.at === 'string' &&
      (v.boot === undefined || typeof v.boot === 'string') &&
      (v.pidNs === undefined || typeof v.pidNs === 'string') &&
      (v.start === undefined || typeof v.start === 'string')
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
