import { randomUUID } from 'node:crypto';
import {
  appendFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  FileFlipLogStore,
  FileStoreState,
  headPath,
  logIdPath,
  readFlipLogFile,
  type LogFileHandle,
} from '../../providers/file/index.js';
import { ErrorCode, LogCorruptError } from '../../src/errors.js';
import { ManualClock } from '../../src/internal/clock.js';
import type { FlipInput } from '../../src/model/flip-record.js';
import { verifyChain } from '../../src/store/verify-chain.js';
import { describeFlipLogStoreConformance } from '../../src/testing/flip-log-store-conformance.js';
import { open } from 'node:fs/promises';

const root = await mkdtemp(join(tmpdir(), 'ks-file-store-'));
let n = 0;
const nextPath = () => join(root, `log-${++n}`, 'flips.jsonl');

describeFlipLogStoreConformance('file', {
  create: async ({ clock }) =>
    new FileFlipLogStore({ path: nextPath(), clock, logger: { warn: () => undefined } }),
  reopen: async (store) => {
    await store.close();
    return new FileFlipLogStore({
      path: (store as FileFlipLogStore).path,
      clock: new ManualClock({ wall: Date.parse('2026-01-02T03:04:05.678Z') }),
    });
  },
  numRuns: 20,
});

const halt = (id: string, over: Partial<FlipInput> = {}): FlipInput => ({
  id,
  actor: 'oncall',
  action: 'halt',
  selector: { tenant: 'acme' },
  reason: 'INC-1',
  ...over,
});

const opened: FileFlipLogStore[] = [];
function make(
  path: string,
  extra: Partial<ConstructorParameters<typeof FileFlipLogStore>[0]> = {},
) {
  const warnings: string[] = [];
  const store = new FileFlipLogStore({ path, logger: { warn: (m) => warnings.push(m) }, ...extra });
  opened.push(store);
  return { store, warnings };
}
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function logWith(count: number): Promise<string> {
  const path = nextPath();
  const { store } = make(path);
  for (let i = 1; i <= count; i++) await store.append(halt(`f${i}`));
  await store.close();
  return path;
}

describe('KS-2.4.2 the file store cuts a torn last line and refuses a broken middle', () => {
  it('cuts a last line without a newline, warns, and appends after the last good record', async () => {
    const path = await logWith(3);
    const good = await readFile(path);
    await appendFile(path, '{"seq":4,"id":"f4","at":"2026');
    const { store, warnings } = make(path);
    await store.open();
    expect(warnings.join('\n')).toMatch(/torn last line \(\d+ bytes after seq 3\): "{\\"seq\\":4/);
    expect((await readFile(path)).equals(good)).toBe(true);
    expect((await store.append(halt('f4'))).record.seq).toBe(4);
    expect((await readFlipLogFile(path)).records).toHaveLength(4);
  });

  it('KS-17.7.5 refuses an unparsable complete last line (only a line without its newline is torn)', async () => {
    const path = await logWith(2);
    await appendFile(path, Buffer.concat([Buffer.alloc(40, 0), Buffer.from('\n')]));
    const before = await readFile(path);
    const { store } = make(path);
    await expect(store.open()).rejects.toMatchObject({
      code: ErrorCode.LOG_CORRUPT,
      seq: 3,
      message: expect.stringMatching(/line 3 is not valid JSON/),
    });
    expect((await readFile(path)).equals(before)).toBe(true); // nothing cut
  });

  it('refuses to open when a record before the last line is bad, naming its seq', async () => {
    const path = await logWith(4);
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[1] = lines[1]!.replace('"INC-1"', '"INC-2"');
    await writeFile(path, lines.join('\n'));
    const { store } = make(path);
    const err = await store.open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LogCorruptError);
    expect(err).toMatchObject({ code: ErrorCode.LOG_CORRUPT, seq: 2 });
    await expect(store.append(halt('x'))).rejects.toMatchObject({ seq: 2 });
    // The refused open left the file and the lock alone: a fixed file opens.
    const contents = await readFile(path, 'utf8');
    expect(contents).toBe(lines.join('\n'));
  });

  it('refuses a middle line that is not JSON, naming its seq', async () => {
    const path = await logWith(3);
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[0] = '{"seq":1,';
    await writeFile(path, lines.join('\n'));
    await expect(make(path).store.open()).rejects.toMatchObject({
      code: ErrorCode.LOG_CORRUPT,
      seq: 1,
    });
  });

  it('refuses a valid-JSON last line that does not chain (a hand-appended record)', async () => {
    const path = await logWith(2);
    const last = JSON.parse((await readFile(path, 'utf8')).trim().split('\n')[1]!) as Record<
      string,
      unknown
    >;
    await appendFile(path, JSON.stringify({ ...last, seq: 3, id: 'forged' }) + '\n');
    await expect(make(path).store.open()).rejects.toMatchObject({
      code: ErrorCode.LOG_CORRUPT,
      seq: 3,
    });
  });
});

/** The claims in a log's lock directory (KS-2.4.5), parsed. */
async function claims(path: string): Promise<{ pid: number; host: string }[]> {
  const names = (await readdir(`${path}.lock`).catch(() => [] as string[])).filter(
    (n) => !n.startsWith('.'),
  );
  return Promise.all(
    names.map(async (n) => JSON.parse(await readFile(join(`${path}.lock`, n), 'utf8'))),
  );
}

/** Drops a claim into a log's lock directory, as another (maybe dead) process would have. */
async function plantClaim(
  path: string,
  holder: { pid: number; host: string },
  text?: string,
): Promise<void> {
  await mkdir(`${path}.lock`, { recursive: true });
  await writeFile(
    join(`${path}.lock`, `${holder.pid}-${randomUUID()}.json`),
    text ?? JSON.stringify({ ...holder, token: 't', at: '2026-01-01T00:00:00.000Z' }),
  );
}

// A pid that cannot be running: above the kernel's pid_max ceiling (2^22).
const DEAD_PID = 2 ** 22 + 7;

describe('KS-2.4.5 one writer per file: an exclusive lock with stale-lock detection', () => {
  it('refuses a second store on the same file while the first is open, and allows it after close', async () => {
    const path = nextPath();
    const first = make(path).store;
    await first.open();
    expect(await claims(path)).toEqual([
      expect.objectContaining({ pid: process.pid, host: hostname() }),
    ]);
    await expect(make(path).store.open()).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: expect.stringMatching(/locked by pid \d+ .*another store in this process/),
    });
    expect(await claims(path)).toHaveLength(1); // the refused store withdrew its claim
    await first.close();
    expect(await claims(path)).toEqual([]);
    const second = make(path).store;
    await second.open();
    expect(second.state).toBe(FileStoreState.OPEN);
  });

  it('takes over a lock left by a process that no longer runs, with a warning', async () => {
    const path = await logWith(1);
    await plantClaim(path, { pid: DEAD_PID, host: hostname() });
    const { store, warnings } = make(path);
    await store.open();
    expect(warnings.join('\n')).toMatch(new RegExp(`stale lock claim .* of pid ${DEAD_PID}`));
    expect(await store.read()).toHaveLength(1);
    expect(await claims(path)).toEqual([expect.objectContaining({ pid: process.pid })]);
  });

  it('refuses a claim of another host', async () => {
    const path = await logWith(1);
    await plantClaim(path, { pid: DEAD_PID, host: 'elsewhere' });
    await expect(make(path).store.open()).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: expect.stringMatching(/on elsewhere/),
    });
  });

  it('refuses an unreadable claim', async () => {
    const path = await logWith(1);
    await plantClaim(path, { pid: DEAD_PID, host: hostname() }, 'garbage');
    await expect(make(path).store.open()).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: expect.stringMatching(/unreadable/),
    });
  });

  it('opens at most one of several stores started at once on a file with a stale claim', async () => {
    for (let round = 0; round < 10; round++) {
      const path = await logWith(1);
      await plantClaim(path, { pid: DEAD_PID, host: hostname() });
      const stores = Array.from({ length: 6 }, () => make(path).store);
      const results = await Promise.allSettled(stores.map((s) => s.open()));
      expect(results.filter((r) => r.status === 'fulfilled').length).toBeLessThanOrEqual(1);
      for (const r of results) {
        if (r.status === 'rejected')
          expect(r.reason).toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
      }
      for (const s of stores) await s.close();
      // Whatever the race's outcome, no claim is left behind and the log opens again.
      expect(await claims(path)).toEqual([]);
      const again = make(path).store;
      await again.open();
      await again.close();
    }
  });
});

describe('KS-2.4.6 the file store creates its file and directory with safe modes', () => {
  it('creates the log file with mode 0600 and its directory with 0700', async () => {
    const path = nextPath();
    await make(path).store.open();
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(path, '..'))).mode & 0o777).toBe(0o700);
  });
});

/** A real file handle whose writes or fsyncs fail on demand (disk full, EIO). */
function faulty(plan: { failWriteAt?: number; shortThenFail?: boolean; failSyncAt?: number }) {
  let writes = 0;
  let syncs = 0;
  return async (path: string): Promise<LogFileHandle> => {
    const fh = await open(path, 'a+', 0o600);
    return {
      readFile: () => fh.readFile(),
      truncate: (len) => fh.truncate(len),
      close: () => fh.close(),
      write: async (buf) => {
        writes++;
        if (writes === plan.failWriteAt) {
          if (plan.shortThenFail) await fh.write(buf.subarray(0, Math.floor(buf.length / 2)));
          throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        }
        return fh.write(buf);
      },
      sync: async () => {
        syncs++;
        if (syncs === plan.failSyncAt)
          throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        return fh.sync();
      },
    };
  };
}

describe('KS-2.4.4 a failed write fails the append and every append after it until reopened', () => {
  it('after a short write on a full disk: refuses, keeps serving reads, and a reopen verifies', async () => {
    const path = nextPath();
    const { store, warnings } = make(path, {
      openFile: faulty({ failWriteAt: 3, shortThenFail: true }),
    });
    await store.append(halt('a'));
    await store.append(halt('b'));
    await expect(store.append(halt('c'))).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
    });
    expect(store.state).toBe(FileStoreState.FAILED);
    await expect(store.append(halt('d'))).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
    });
    expect((await store.read()).map((r) => r.id)).toEqual(['a', 'b']);
    expect(warnings.join('\n')).toMatch(/refuses appends until it is reopened/);
    await store.close();
    const again = make(path).store;
    expect((await again.read()).map((r) => r.id)).toEqual(['a', 'b']);
    expect((await again.append(halt('c'))).record.seq).toBe(3);
    expect(verifyChain((await readFlipLogFile(path)).records)).toHaveLength(3);
  });

  it('after a failed fsync: the append is not acknowledged and later appends are refused', async () => {
    const path = nextPath();
    const { store } = make(path, { openFile: faulty({ failSyncAt: 2 }) });
    await store.append(halt('a'));
    const results = await Promise.allSettled([store.append(halt('b')), store.append(halt('c'))]);
    for (const r of results)
      expect(r).toMatchObject({
        status: 'rejected',
        reason: { code: ErrorCode.STORE_UNAVAILABLE },
      });
    await expect(store.append(halt('e'))).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
    });
    expect(await store.head()).toMatchObject({ seq: 1 });
    await store.close();
    // A retry with the same id after reopening is one flip, whether or not 'b' reached the disk.
    const again = make(path).store;
    const b = await again.append(halt('b'));
    expect(b.record.seq).toBe(2);
    expect(verifyChain(await again.read())).toHaveLength(2);
  });
});

describe('KS-2.4.1 an append is acknowledged only after its fdatasync', () => {
  it("uses the handle's datasync when it has one, and answers only once it resolved", async () => {
    const path = nextPath();
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { store } = make(path, {
      openFile: async (p) => {
        const fh = await open(p, 'a+', 0o600);
        return {
          readFile: () => fh.readFile(),
          truncate: (l) => fh.truncate(l),
          close: () => fh.close(),
          write: (b) => fh.write(b),
          sync: () => {
            calls.push('sync');
            return fh.sync();
          },
          datasync: async () => {
            calls.push('datasync');
            await gate;
            return fh.datasync();
          },
        };
      },
    });
    await store.open();
    let acknowledged = false;
    const pending = store.append(halt('d1')).then((r) => {
      acknowledged = true;
      return r;
    });
    for (let i = 0; i < 50 && !calls.includes('datasync'); i++)
      await new Promise((r) => setTimeout(r, 5));
    expect(calls).toContain('datasync');
    expect(acknowledged).toBe(false);
    release();
    expect((await pending).record.seq).toBe(1);
    expect(calls.filter((c) => c === 'sync')).toEqual([]);
    await store.close();
  });
});

describe('KS-2.4.7 group commit writes concurrent appends with one fsync, in call order', () => {
  it('batches appends that arrive while a write is in flight', async () => {
    const path = nextPath();
    let syncs = 0;
    const { store } = make(path, {
      openFile: async (p) => {
        const fh = await open(p, 'a+', 0o600);
        return {
          readFile: () => fh.readFile(),
          truncate: (l) => fh.truncate(l),
          close: () => fh.close(),
          write: (b) => fh.write(b),
          sync: () => {
            syncs++;
            return fh.sync();
          },
        };
      },
    });
    await store.open();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.append(halt(`g${i}`))),
    );
    expect(results.map((r) => r.record.id)).toEqual(Array.from({ length: 50 }, (_, i) => `g${i}`));
    expect(results.map((r) => r.record.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(syncs).toBeLessThan(50);
  });
});

describe('KS-2.4.1 the file store checks its options at construction', () => {
  it.each([
    ['path', {}],
    ['path', { path: '' }],
    ['fsync', { path: 'x', fsync: 'yes' }],
    ['logger', { path: 'x', logger: {} }],
    ['clock', { path: 'x', clock: 5 }],
    ['maxBatchRecords', { path: 'x', maxBatchRecords: 0 }],
  ])('names %s when it is wrong', (option, options) => {
    expect(() => new FileFlipLogStore(options as never)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_OPTION, option }),
    );
  });
});

describe('KS-2.4.8 close waits for appends already accepted', () => {
  it('writes and acknowledges appends called before close, and they survive a reopen', async () => {
    const path = nextPath();
    const { store } = make(path);
    await store.open();
    const pending = Array.from({ length: 20 }, (_, i) => store.append(halt(`late${i}`)));
    await store.close();
    const results = await Promise.all(pending);
    expect(results.map((r) => r.record.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect((await readFlipLogFile(path)).records).toHaveLength(20);
  });
});

describe('KS-2.4.8 a store closed while it opens ends closed', () => {
  it('releases the file and the lock and refuses calls', async () => {
    const path = await logWith(1);
    const { store } = make(path);
    const opening = store.open();
    await store.close();
    await opening.catch(() => undefined);
    expect(store.state).toBe(FileStoreState.CLOSED);
    await expect(store.read()).rejects.toMatchObject({ code: ErrorCode.STORE_CLOSED });
    expect(await claims(path)).toEqual([]);
  });
});

describe('KS-2.4.7 group commit answers like the in-memory oracle (differential, concurrent)', () => {
  it('gives concurrent bursts the records the oracle gives the same flips one by one', async () => {
    const { MemoryFlipLogStore } = await import('../../providers/memory/index.js');
    const fc = (await import('fast-check')).default;
    const clock = new ManualClock({ wall: Date.parse('2026-03-04T05:06:07.890Z') });
    const flip = fc.record({
      id: fc.constantFrom('a', 'b', 'c', 'd'),
      actor: fc.constantFrom('x', 'y'),
      action: fc.constantFrom('halt' as const, 'resume' as const),
      selector: fc.constantFrom({}, { tenant: 'acme' }, { capability: 'pay', tenant: 'acme' }),
      reason: fc.constantFrom('r1', 'r2', ''),
    });
    const outcome = (p: Promise<{ record: unknown; duplicate: boolean }>) =>
      p.then(
        (r) => ({ ok: r.record, duplicate: r.duplicate }),
        (e: { code?: string }) => ({ error: e.code }),
      );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(flip, { minLength: 1, maxLength: 8 }), { maxLength: 6 }),
        async (bursts) => {
          const oracle = new MemoryFlipLogStore({ clock });
          const { store } = make(nextPath(), { clock });
          await store.open();
          for (const burst of bursts) {
            // The file store gets the burst at once (one batch); the oracle one by one, in order.
            const got = await Promise.all(burst.map((f) => outcome(store.append(f))));
            const want = [];
            for (const f of burst) want.push(await outcome(oracle.append(f)));
            expect(got).toEqual(want);
          }
          expect(await store.read()).toEqual(await oracle.read());
          await store.close();
          expect((await readFlipLogFile(store.path)).records).toEqual(await oracle.read());
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('KS-2.4.8 a write that fails while the store closes leaves it closed', () => {
  it('rejects the append as unavailable and ends in the closed state', async () => {
    const path = nextPath();
    const { store } = make(path, { openFile: faulty({ failWriteAt: 1 }) });
    await store.open();
    const pending = store.append(halt('a'));
    const closing = store.close();
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    await closing;
    expect(store.state).toBe(FileStoreState.CLOSED);
    await expect(store.read()).rejects.toMatchObject({ code: ErrorCode.STORE_CLOSED });
  });
});

describe('KS-2.7.2 a file log keeps its identity in <path>.logid', () => {
  it('writes a random identity at genesis (mode 0600) and reads it back after a restart', async () => {
    const path = nextPath();
    const a = new FileFlipLogStore({ path });
    const id = await a.logId();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(await readFile(logIdPath(path), 'utf8'))).toEqual({ logId: id });
    expect((await stat(logIdPath(path))).mode & 0o777).toBe(0o600);
    await a.append(halt('a'));
    await a.close();
    const b = new FileFlipLogStore({ path });
    expect(await b.logId()).toBe(id);
    await b.close();
  });

  it('upgrades a log written before identities: the id derives from seq 1, with a warning, the same for every copy', async () => {
    const path = nextPath();
    const a = new FileFlipLogStore({ path });
    const { record } = await a.append(halt('a'));
    await a.append(halt('b'));
    await a.close();
    const bytes = await readFile(path);
    await rm(logIdPath(path)); // as a log from before identities has none
    await rm(headPath(path)); // nor a head file (KS-17.7.5 came later)
    const copy = nextPath();
    await mkdir(join(copy, '..'), { recursive: true });
    await writeFile(copy, bytes);
    const warnings: string[] = [];
    const b = new FileFlipLogStore({ path, logger: { warn: (m) => warnings.push(m) } });
    expect(await b.logId()).toBe(`h-${record.hash.slice(0, 32)}`);
    expect(warnings.join('\n')).toMatch(/no identity yet.*derived from its first record/);
    expect((await b.read()).map((r) => r.id)).toEqual(['a', 'b']);
    await b.close();
    const c = new FileFlipLogStore({ path: copy, logger: { warn: () => undefined } });
    expect(await c.logId()).toBe(`h-${record.hash.slice(0, 32)}`);
    await c.close();
  });

  it('refuses to open a log whose .logid is not a valid identity, and writes nothing', async () => {
    const path = nextPath();
    const a = new FileFlipLogStore({ path });
    await a.append(halt('a'));
    await a.close();
    await writeFile(logIdPath(path), 'garbage');
    const b = new FileFlipLogStore({ path });
    await expect(b.open()).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: /valid log identity/,
    });
    expect(await readFile(logIdPath(path), 'utf8')).toBe('garbage');
  });
});
