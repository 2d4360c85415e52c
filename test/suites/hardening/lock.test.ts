import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../../src/errors.js';
import { BREAK_LOCK_ENV, LockFile } from '../../../src/internal/lock-file.js';

const FIXTURE = resolve('dist/test/fixtures/lock-holder.js');
const root = await mkdtemp(join(tmpdir(), 'ks-lock-'));
let n = 0;
const nextDir = () => join(root, `l${++n}.lock`);
const held: LockFile[] = [];
const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const l of held.splice(0)) await l.release();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const BOOT = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const PID_NS = readlinkSync('/proc/self/ns/pid');

async function plant(dir: string, holder: Record<string, unknown>, ageMs = 0): Promise<string> {
  await mkdir(dir, { recursive: true });
  const name = `${String(holder['pid'])}-${randomUUID()}.json`;
  const path = join(dir, name);
  await writeFile(
    path,
    JSON.stringify({ host: hostname(), token: 't', at: '2026-01-01T00:00:00.000Z', ...holder }),
  );
  if (ageMs > 0) {
    const t = new Date(Date.now() - ageMs);
    await utimes(path, t, t);
  }
  return name;
}

async function acquire(dir: string, env: Record<string, string> = {}, staleAfterMs = 15_000) {
  const warnings: string[] = [];
  const lock = await LockFile.acquire(dir, (m) => warnings.push(m), {
    env,
    staleAfterMs,
    refreshMs: 100,
  });
  held.push(lock);
  return { lock, warnings };
}

const claimNames = async (dir: string) =>
  (await readdir(dir)).filter((f) => !f.startsWith('.')).sort();

/** Start ticks of a live pid, as /proc/<pid>/stat field 22 gives them. */
function startOf(pid: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]!;
}

describe('KS-17.1.1 a claim says which incarnation of a pid holds the lock', () => {
  it('records host, boot id, pid namespace and the process start time', async () => {
    const dir = nextDir();
    await acquire(dir);
    const [name] = await claimNames(dir);
    const claim = JSON.parse(await readFile(join(dir, name!), 'utf8'));
    expect(claim).toMatchObject({
      pid: process.pid,
      host: hostname(),
      boot: BOOT,
      pidNs: PID_NS,
      start: startOf(process.pid),
    });
  });

  it('takes over a claim whose pid now belongs to a process started at another time (a reused pid)', async () => {
    const dir = nextDir();
    // process.ppid is alive: on today's pid-only check this claim blocks forever.
    const pid = process.ppid;
    await plant(dir, { pid, boot: BOOT, pidNs: PID_NS, start: String(Number(startOf(pid)) + 1) });
    const { warnings } = await acquire(dir);
    expect(warnings.join('\n')).toMatch(
      new RegExp(`stale lock claim .* of pid ${pid}.*started later`),
    );
    expect(await claimNames(dir)).toHaveLength(1);
  });

  it('keeps a claim of a live pid with the same start time', async () => {
    const dir = nextDir();
    const pid = process.ppid;
    await plant(dir, { pid, boot: BOOT, pidNs: PID_NS, start: startOf(pid) });
    await expect(acquire(dir)).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: expect.stringMatching(/locked by pid \d+ .*a live process.*KILLSWITCH_BREAK_LOCK/),
    });
  });

  it('takes over a claim written before the machine last started (another boot id)', async () => {
    const dir = nextDir();
    await plant(dir, { pid: process.ppid, boot: randomUUID(), pidNs: PID_NS, start: '1' });
    const { warnings } = await acquire(dir);
    expect(warnings.join('\n')).toMatch(/before this machine last started/);
  });
});

describe('KS-17.1.2 claims of another pid namespace are judged by their refreshes', () => {
  it('refreshes its own claim while held', async () => {
    const dir = nextDir();
    await acquire(dir);
    const [name] = await claimNames(dir);
    const path = join(dir, name!);
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    await new Promise((r) => setTimeout(r, 400));
    expect(Date.now() - (await stat(path)).mtimeMs).toBeLessThan(5_000);
  });

  it('takes over a claim of another pid namespace that was not refreshed for staleAfterMs', async () => {
    const dir = nextDir();
    await plant(dir, { pid: 1, boot: BOOT, pidNs: 'pid:[1]', start: '5' }, 20_000);
    const { warnings } = await acquire(dir);
    expect(warnings.join('\n')).toMatch(/another pid namespace, not refreshed for 20 s/);
  });

  it('waits once for a fresh claim of another pid namespace to go stale, then takes over', async () => {
    const dir = nextDir();
    await plant(dir, { pid: 1, boot: BOOT, pidNs: 'pid:[1]', start: '5' });
    const t0 = Date.now();
    const { warnings } = await acquire(dir, {}, 700);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    expect(warnings.join('\n')).toMatch(/another pid namespace, not refreshed/);
  });

  it('refuses a claim of another pid namespace that keeps being refreshed, naming the override', async () => {
    const dir = nextDir();
    const name = await plant(dir, { pid: 1, boot: BOOT, pidNs: 'pid:[1]', start: '5' });
    const keep = setInterval(() => {
      const now = new Date();
      void utimes(join(dir, name), now, now).catch(() => undefined);
    }, 100);
    try {
      await expect(acquire(dir, {}, 700)).rejects.toMatchObject({
        code: ErrorCode.STORE_UNAVAILABLE,
        message: expect.stringMatching(
          new RegExp(`another pid namespace, refreshed .*${BREAK_LOCK_ENV}=<its file name>`),
        ),
      });
    } finally {
      clearInterval(keep);
    }
  });
});

describe(`KS-17.1.3 ${BREAK_LOCK_ENV} removes one named claim`, () => {
  it('removes exactly the named claim of another host, with a warning, and takes the lock', async () => {
    const dir = nextDir();
    const name = await plant(dir, { pid: 4242, host: 'elsewhere' });
    await expect(acquire(dir)).rejects.toMatchObject({
      message: expect.stringMatching(/on elsewhere .*another host/),
    });
    const { warnings } = await acquire(dir, { [BREAK_LOCK_ENV]: name });
    expect(warnings.join('\n')).toMatch(
      new RegExp(`removed the lock claim .*${name} as ${BREAK_LOCK_ENV} asked`),
    );
  });

  it('ignores a value that is not a claim file name (no path reaches outside the lock directory)', async () => {
    const dir = nextDir();
    await plant(dir, { pid: 4242, host: 'elsewhere' });
    const warnings: string[] = [];
    await expect(
      LockFile.acquire(dir, (m) => warnings.push(m), { env: { [BREAK_LOCK_ENV]: '../x.json' } }),
    ).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    expect(warnings.join('\n')).toMatch(/ignoring KILLSWITCH_BREAK_LOCK=\.\.\/x\.json/);
  });
});

// A container is a pid namespace whose first process is pid 1. `unshare` makes one (root only).
const canUnshare =
  spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { stdio: 'ignore' }).status ===
  0;
const inCi = process.env['CI'] === 'true';

function startHolder(dir: string): { child: ChildProcess; first: Promise<string> } {
  const child = spawn(
    'unshare',
    ['--pid', '--kill-child', '--mount-proc', process.execPath, FIXTURE, dir, '200', '1500'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  const first = new Promise<string>((done, fail) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) done(out.trim());
    });
    child.on('exit', (code) => done(out.trim() || `exit ${code}`));
    child.on('error', fail);
  });
  return { child, first };
}

describe('KS-17.1.4 a crashed container restarts on the same log (over real pid namespaces)', () => {
  it.runIf(canUnshare || inCi)(
    'a process that is pid 1 of a new namespace takes the lock its crashed predecessor (also pid 1) left',
    async () => {
      expect(canUnshare, 'unshare --pid needs root; CI runs as root').toBe(true);
      const dir = nextDir();
      const a = startHolder(dir);
      expect(await a.first).toBe('held 1');
      // A live sibling in another namespace keeps refreshing: refused, naming the override.
      const b = startHolder(dir);
      expect(await b.first).toMatch(/^refused .*locked by pid 1 .*another pid namespace/);
      a.child.kill('SIGKILL');
      await new Promise((r) => a.child.once('exit', r));
      // The claim of the crashed pid 1 stays behind; the next pid 1 waits it out and takes over.
      expect(await claimNames(dir)).toHaveLength(1);
      const c = startHolder(dir);
      expect(await c.first).toBe('held 1');
    },
  );
});
