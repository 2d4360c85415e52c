/**
 * KS-13.6 Tamper suite. test/store/verify-cli.test.ts checks that `killswitch verify` names the
 * seq of each kind of hand edit; this suite checks the other half: `killswitch serve` refuses to
 * start on a tampered log, exits non-zero with a message naming the file, the seq and the reason
 * (the same seq verify names), prints no URL and leaves the evidence (the file) byte for byte as
 * it found it. It also edits the log under a running server and checks the restart refuses. A
 * seeded property then tampers random logs at random places and checks the seq the verifier
 * (the code `verify` runs) names.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore, parseFlipLog } from '../../providers/file/index.js';
import { LogCorruptError } from '../../src/errors.js';
import { computeHash, type FlipRecord } from '../../src/model/index.js';
import {
  assertBuilt,
  runCli,
  serveExpectingFailure,
  startServe,
  suiteSeed,
} from './support/serve-process.js';

const root = await mkdtemp(join(tmpdir(), 'ks-suite-tamper-'));
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
/** A data directory holding a verified log of `count` records. */
async function makeDataDir(count: number): Promise<{ dir: string; path: string; lines: string[] }> {
  const dir = join(root, `d${++n}`);
  const path = join(dir, 'flips.jsonl');
  const store = new FileFlipLogStore({ path, fsync: false });
  for (let i = 1; i <= count; i++) {
    await store.append({
      id: `t${i}`,
      actor: 'oncall',
      action: 'halt',
      selector: { tenant: `t${i}` },
      reason: `INC-${i}`,
    });
  }
  await store.close();
  const lines = (await readFile(path, 'utf8')).split('\n').slice(0, -1);
  return { dir, path, lines };
}

const write = (path: string, lines: readonly string[]) =>
  writeFile(path, lines.map((l) => l + '\n').join(''));

/** Tamperings of a 6-record log, and the seq that must be named. */
const CASES: readonly [string, (lines: string[]) => void, number][] = [
  ['a record edited by hand', (l) => (l[2] = l[2]!.replace('"INC-3"', '"INC-33"')), 3],
  [
    'a record edited with its hash recomputed',
    (l) => {
      const r = JSON.parse(l[1]!) as FlipRecord;
      const edited = { ...r, reason: 'nothing to see here' };
      l[1] = JSON.stringify({ ...edited, hash: computeHash(edited) });
    },
    3,
  ],
  ['a record deleted', (l) => void l.splice(3, 1), 4],
  ['two records reordered', (l) => void ([l[1], l[2]] = [l[2]!, l[1]!]), 2],
  [
    'a record appended by hand',
    (l) => {
      const last = JSON.parse(l.at(-1)!) as FlipRecord;
      l.push(JSON.stringify({ ...last, seq: last.seq + 1, id: 'forged', prev: last.hash }));
    },
    7,
  ],
  [
    'a halt turned into a resume, hash recomputed, as the last record',
    (l) => {
      const r = JSON.parse(l[5]!) as FlipRecord;
      const edited = { ...r, action: 'resume' as const };
      // Only the hash is recomputed; prev still names seq 5, so only the content check can catch it.
      l[5] = JSON.stringify({ ...edited, hash: r.hash });
    },
    6,
  ],
];

describe('KS-13.6.1 killswitch serve refuses to start on a tampered log, names the seq and exits non-zero', () => {
  it.each(CASES)('%s', async (_name, tamper, seq) => {
    assertBuilt();
    const { dir, path, lines } = await makeDataDir(6);
    tamper(lines);
    await write(path, lines);
    const before = await readFile(path);

    const r = await serveExpectingFailure({ dataDir: dir, port: 0 });
    expect(r.code, `serve exit: ${r.stderr}`).toBe(1);
    expect(r.stdout).not.toMatch(/http:\/\//); // never listened
    expect(r.stderr).toMatch(/cannot start/);
    expect(r.stderr).toContain(path);
    expect(r.stderr).toMatch(/killswitch verify/);
    expect(r.stderr).toMatch(new RegExp(`\\bseq ${seq}\\b`));
    // The evidence is left exactly as found: nothing cut, nothing repaired.
    expect((await readFile(path)).equals(before)).toBe(true);

    const v = await runCli(['verify', '--json', path]);
    expect(v.code).toBe(1);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: false, code: 'KS_LOG_CORRUPT', seq });
  });

  it('a log edited under a running server: the restart refuses, naming the seq', async () => {
    assertBuilt();
    const { dir, path, lines } = await makeDataDir(4);
    const server = await startServe({ dataDir: dir, port: 0 });
    try {
      lines[1] = lines[1]!.replace('"INC-2"', '"INC-22"');
      await write(path, lines);
    } finally {
      const exit = await server.stop('SIGTERM');
      expect(exit.code).toBe(0);
    }
    const r = await serveExpectingFailure({ dataDir: dir, port: 0 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\bseq 2\b/);
    expect(r.stderr).toMatch(/hash does not match/);
  });
});

type Tamper = 'edit' | 'rehash' | 'delete' | 'swap' | 'append' | 'duplicate' | 'garble';

describe('KS-13.6.2 property: a random tampering of a random log is reported at the seq it begins', () => {
  it('edit, edit with rehash, delete, swap, forged append, duplicate line, garbled middle line', () => {
    const seed = suiteSeed('tamper');
    const logs = new Map<number, string[]>();
    // Logs built once per length: the property is about where the tampering lands.
    const build = (count: number): string[] => {
      const cached = logs.get(count);
      if (cached) return cached;
      const recs: string[] = [];
      let prev = '0'.repeat(64);
      for (let i = 1; i <= count; i++) {
        const body = {
          seq: i,
          id: `p${i}`,
          at: new Date(Date.UTC(2030, 0, 1, 0, 0, i)).toISOString(),
          actor: 'oncall',
          action: 'halt',
          selector: { tenant: `t${i % 4}` },
          reason: `INC-${i}`,
          mode: 'discard',
          prev,
        };
        const rec = { ...body, hash: computeHash(body as unknown as Omit<FlipRecord, 'hash'>) };
        prev = rec.hash;
        recs.push(JSON.stringify(rec));
      }
      logs.set(count, recs);
      return recs;
    };
    const genesisOk = parseFlipLog(Buffer.from(build(3).join('\n') + '\n'));
    expect(genesisOk.records.length).toBe(3); // the generator writes valid logs

    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 40 }),
        fc.constantFrom<Tamper>(
          'edit',
          'rehash',
          'delete',
          'swap',
          'append',
          'duplicate',
          'garble',
        ),
        fc.nat(),
        (count, kind, at) => {
          const lines = [...build(count)];
          // Positions that leave a visible break (deleting or rehashing the last record is not one).
          const k = at % (count - 1); // 0 .. count-2
          let want: number;
          switch (kind) {
            case 'edit':
              lines[k] = lines[k]!.replace(/"reason":"INC-\d+"/, '"reason":"edited"');
              want = k + 1;
              break;
            case 'rehash': {
              const r = JSON.parse(lines[k]!) as FlipRecord;
              const e = { ...r, reason: 'edited' };
              lines[k] = JSON.stringify({ ...e, hash: computeHash(e) });
              want = k + 2;
              break;
            }
            case 'delete':
              lines.splice(k, 1);
              want = k + 1;
              break;
            case 'swap':
              [lines[k], lines[k + 1]] = [lines[k + 1]!, lines[k]!];
              want = k + 1;
              break;
            case 'append': {
              const last = JSON.parse(lines.at(-1)!) as FlipRecord;
              lines.push(
                JSON.stringify({ ...last, seq: count + 1, id: 'forged', prev: last.hash }),
              );
              want = count + 1;
              break;
            }
            case 'duplicate':
              lines.push(lines[k]!);
              want = count + 1;
              break;
            case 'garble':
              lines[k] = '{"seq":' + (k + 1) + ',"oops"';
              want = k + 1;
              break;
          }
          let got: unknown;
          try {
            parseFlipLog(Buffer.from(lines.join('\n') + '\n'));
          } catch (err) {
            got = err;
          }
          expect(got, `${kind} at line ${k + 1} of ${count} went unnoticed`).toBeInstanceOf(
            LogCorruptError,
          );
          expect((got as LogCorruptError).seq, `${kind} at line ${k + 1} of ${count}`).toBe(want);
        },
      ),
      { numRuns: 500, seed },
    );
  });
});
