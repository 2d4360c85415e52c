import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import type { FlipRecord } from '../../src/model/flip-record.js';

const CLI = resolve('dist/src/cli/main.js');
const root = await mkdtemp(join(tmpdir(), 'ks-verify-cli-'));
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
beforeAll(() => {
  expect(existsSync(CLI), `${CLI} is missing: run npm run build first`).toBe(true);
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function verify(...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, 'verify', ...args],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        done({ code, stdout, stderr });
      },
    );
  });
}

let n = 0;
/** A verified log of `count` records; returns its path and its lines (without the final ''). */
async function makeLog(
  count = 5,
): Promise<{ path: string; lines: string[]; records: FlipRecord[] }> {
  const path = join(root, `log-${++n}`, 'flips.jsonl');
  const store = new FileFlipLogStore({ path });
  const records: FlipRecord[] = [];
  for (let i = 1; i <= count; i++) {
    records.push(
      (
        await store.append({
          id: `v${i}`,
          actor: 'oncall',
          action: 'halt',
          selector: { tenant: `t${i}` },
          reason: `INC-${i}`,
        })
      ).record,
    );
  }
  await store.close();
  const lines = (await readFile(path, 'utf8')).split('\n').slice(0, -1);
  return { path, lines, records };
}

const write = (path: string, lines: readonly string[]) =>
  writeFile(path, lines.map((l) => l + '\n').join(''));

describe('KS-2.5.1 killswitch verify exits 0 and prints the head when the chain verifies', () => {
  it('prints the record count and the head hash', async () => {
    const { path, records } = await makeLog(5);
    const r = await verify(path);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('5 records');
    expect(r.stdout).toContain(`head seq 5 hash ${records[4]!.hash}`);
  });

  it('prints one JSON object with --json', async () => {
    const { path, records } = await makeLog(3);
    const r = await verify(path, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      ok: true,
      file: path,
      records: 3,
      head: { seq: 3, hash: records[2]!.hash },
      tornBytes: 0,
      signed: 0,
    });
  });

  it('verifies an empty log', async () => {
    const path = join(root, 'empty.jsonl');
    await writeFile(path, '');
    const r = await verify(path, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ records: 0, head: { seq: 0 } });
  });

  it('KS-2.5.2 reports a torn last line as a warning, exits 0 and leaves the file unchanged', async () => {
    const { path } = await makeLog(2);
    await appendFile(path, '{"seq":3,"id":"v3"');
    const before = await readFile(path);
    const r = await verify(path, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, records: 2, tornBytes: 18 });
    expect(r.stderr).toMatch(/torn last line \(18 bytes after seq 2\)/);
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it('KS-2.5.2 reads a log that a store holds open (it takes no lock)', async () => {
    const { path } = await makeLog(2);
    const store = new FileFlipLogStore({ path });
    await store.open();
    try {
      expect((await verify(path)).code).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe('KS-2.5.1 killswitch verify detects tampering, names the seq and exits 1', () => {
  it('a record edited by hand', async () => {
    const { path, lines } = await makeLog(5);
    lines[2] = lines[2]!.replace('"INC-3"', '"INC-33"');
    await write(path, lines);
    const r = await verify(path);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/seq 3: hash does not match the record/);
  });

  it('KS-2.3.3 a record edited with its hash recomputed: verify and opening the store both name the first bad seq (KS_LOG_CORRUPT)', async () => {
    const { path, lines } = await makeLog(5);
    const { computeHash } = await import('../../src/model/flip-record.js');
    const rec = JSON.parse(lines[1]!) as FlipRecord;
    const edited = { ...rec, reason: 'nothing to see' };
    lines[1] = JSON.stringify({ ...edited, hash: computeHash(edited) });
    await write(path, lines);
    const r = await verify(path, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      code: 'KS_LOG_CORRUPT',
      seq: 3,
      reason: expect.stringMatching(/prev/),
    });
    const store = new FileFlipLogStore({ path });
    await expect(store.open()).rejects.toMatchObject({ code: 'KS_LOG_CORRUPT', seq: 3 });
    await store.close().catch(() => undefined);
  });

  it('a record deleted', async () => {
    const { path, lines } = await makeLog(5);
    lines.splice(2, 1);
    await write(path, lines);
    const r = await verify(path, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      seq: 3,
      reason: 'found seq 4 where seq 3 belongs',
    });
  });

  it('the last record deleted: the head file beside the log sees it (KS-17.7.5); without it, only the head hash changes', async () => {
    const { path, lines, records } = await makeLog(5);
    await write(path, lines.slice(0, 4));
    const caught = await verify(path, '--json');
    expect(caught.code).toBe(1);
    expect(JSON.parse(caught.stdout)).toMatchObject({
      seq: 5,
      reason: expect.stringMatching(/acknowledged records missing: the log ends at seq 4/),
    });
    await rm(`${path}.head`); // whoever cut the log removed the head file too
    const r = await verify(path, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).head).toEqual({ seq: 4, hash: records[3]!.hash });
  });

  it('two records reordered', async () => {
    const { path, lines } = await makeLog(5);
    [lines[1], lines[2]] = [lines[2]!, lines[1]!];
    await write(path, lines);
    const r = await verify(path);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/seq 2: found seq 3 where seq 2 belongs/);
  });

  it('a record appended by hand', async () => {
    const { path, lines, records } = await makeLog(5);
    const last = records[4]!;
    lines.push(JSON.stringify({ ...last, seq: 6, id: 'forged', prev: last.hash }));
    await write(path, lines);
    const r = await verify(path, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      seq: 6,
      reason: 'hash does not match the record',
    });
  });

  it('a record copied to the end', async () => {
    const { path, lines } = await makeLog(3);
    lines.push(lines[0]!);
    await write(path, lines);
    const r = await verify(path, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      seq: 4,
      reason: 'found seq 1 where seq 4 belongs',
    });
  });

  it('a middle line that is not JSON', async () => {
    const { path, lines } = await makeLog(4);
    lines[1] = 'not json';
    await write(path, lines);
    const r = await verify(path);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/seq 2: line 2 is not valid JSON/);
  });

  it('a file that cannot be read fails the check', async () => {
    const r = await verify(join(root, 'no-such-file.jsonl'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot read/);
  });
});

describe('KS-2.5.1 killswitch verify exits 2 on a usage error', () => {
  it.each([[[]], [['a', 'b']], [['--bogus', 'a']]])('refuses %j', async (args) => {
    const r = await verify(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/run 'killswitch verify --help'/);
  });

  it('prints its help with --help and exits 0', async () => {
    const r = await verify('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/exit codes/);
  });
});

describe('KS-2.5.3 (limit) the chain is unkeyed: a cut end or a well-forged append verifies; only the head kept elsewhere tells', () => {
  it('records cut from the end, or one appended with its hash recomputed, verify on their own; the printed head differs from the one kept', async () => {
    const { path, lines, records } = await makeLog(4);
    const kept = records[3]!.hash; // what an operator noted from `verify` earlier
    await rm(`${path}.head`); // the forger removes the head file beside the log too
    await write(path, lines.slice(0, 3));
    const cut = await verify(path, '--json');
    expect(cut.code).toBe(0);
    expect(JSON.parse(cut.stdout).head.hash).not.toBe(kept);

    const { computeHash } = await import('../../src/model/flip-record.js');
    const last = records[2]!;
    const unhashed = { ...last, seq: 4, id: 'forged', prev: last.hash };
    const forged = { ...unhashed, hash: computeHash(unhashed) };
    await write(path, [...lines.slice(0, 3), JSON.stringify(forged)]);
    const appended = await verify(path, '--json');
    expect(appended.code).toBe(0);
    expect(JSON.parse(appended.stdout).head).toEqual({ seq: 4, hash: forged.hash });
    expect(forged.hash).not.toBe(kept);
  });
});
