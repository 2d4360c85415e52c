/**
 * KS-17.7 tamper evidence: the reproducers of issue 15's "Rewritable history" against what exists
 * now: a head kept elsewhere (`verify --expect-head`), signatures (`src/integrity`).
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../../providers/file/index.js';
import {
  PublicKeyRing,
  SigningKey,
  checkpointStatement,
  headMismatch,
  parseExpectedHead,
  recordStatement,
} from '../../../src/integrity/index.js';
import { computeHash, type FlipRecord } from '../../../src/model/flip-record.js';

const CLI = resolve('dist/src/cli/main.js');
const root = await mkdtemp(join(tmpdir(), 'ks-tamper-15-'));
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
let n = 0;

function verify(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, 'verify', ...args],
      { timeout: 20_000 },
      (err, stdout, stderr) =>
        done({
          code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1,
          stdout,
          stderr,
        }),
    );
  });
}

async function makeLog(count: number): Promise<{ path: string; records: FlipRecord[] }> {
  const path = join(root, `log-${++n}`, 'flips.jsonl');
  const store = new FileFlipLogStore({ path, logger: { warn() {} } });
  const records: FlipRecord[] = [];
  for (let i = 1; i <= count; i++) {
    const action = i === count ? 'resume' : 'halt';
    records.push(
      (
        await store.append({
          id: `f${i}`,
          actor: 'oncall',
          action,
          selector: action === 'halt' ? { tenant: `t${i}` } : { tenant: `t${i - 1}` },
          reason: `INC-${i}`,
        })
      ).record,
    );
  }
  await store.close();
  return { path, records };
}

/** Rewrites history the way issue 15 did: edit a record and recompute every hash after it. */
function rewrite(records: FlipRecord[], seq: number, change: Partial<FlipRecord>): FlipRecord[] {
  const out: FlipRecord[] = [];
  let prev = '0'.repeat(64);
  for (const r of records) {
    const { hash: _old, ...rest } = { ...r, ...(r.seq === seq ? change : {}), prev };
    const hash = computeHash(rest);
    out.push({ ...rest, hash } as FlipRecord);
    prev = hash;
  }
  return out;
}

describe('KS-17.7.4 verify --expect-head compares the log with a head kept elsewhere', () => {
  it('a rewritten history verifies on its own chain, and fails against the head kept elsewhere', async () => {
    const { path, records } = await makeLog(4);
    const head = `${records[3]!.seq}:${records[3]!.hash}`;
    expect((await verify(path, '--expect-head', head)).code).toBe(0);
    const forged = rewrite(records, 2, { actor: 'admin', reason: 'nothing happened' });
    await writeFile(path, forged.map((r) => JSON.stringify(r)).join('\n') + '\n');
    // The head file beside the log (KS-17.7.5) sees it; the writer can rewrite that file too.
    expect((await verify(path)).stdout).toMatch(/acknowledged records missing/);
    await rm(`${path}.head`);
    // The reproducer: the chain alone says ok.
    expect((await verify(path)).code).toBe(0);
    const r = await verify(path, '--expect-head', head);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /expected head seq 4: the record at seq 4 has hash .*history was rewritten/,
    );
  });

  it('records cut from the end verify on their own, and fail against the head kept elsewhere', async () => {
    const { path, records } = await makeLog(3);
    const text = await readFile(path, 'utf8');
    const lines = text.split('\n');
    await truncate(path, Buffer.byteLength(lines.slice(0, 2).join('\n') + '\n'));
    expect((await verify(path)).stdout).toMatch(/acknowledged records missing/); // KS-17.7.5
    await rm(`${path}.head`); // the writer removes the head file too
    expect((await verify(path)).code).toBe(0);
    const r = await verify(path, '--expect-head', `3:${records[2]!.hash}`, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      code: 'KS_LOG_CORRUPT',
      seq: 3,
      reason: expect.stringMatching(/ends at seq 2, before the expected head seq 3/),
    });
  });

  it('a log that grew since the head was kept still verifies against it; a checkpoint file is read with @', async () => {
    const { path, records } = await makeLog(5);
    const cp = join(root, `checkpoint-${n}.json`);
    await writeFile(
      cp,
      JSON.stringify({ logId: 'L', seq: 3, hash: records[2]!.hash, at: new Date().toISOString() }),
    );
    const r = await verify(path, '--expect-head', `@${cp}`, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, expectedHead: { seq: 3, ok: true } });
  });

  it('a malformed expected head is a usage error', async () => {
    const { path } = await makeLog(1);
    const r = await verify(path, '--expect-head', '3:nothex');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/give <seq>:<hash>/);
  });

  it('headMismatch and parseExpectedHead agree with the CLI', () => {
    const recs = [
      { seq: 1, hash: 'a'.repeat(64) },
      { seq: 2, hash: 'b'.repeat(64) },
    ];
    expect(headMismatch(recs, parseExpectedHead(`2:${'b'.repeat(64)}`))).toBeUndefined();
    expect(headMismatch(recs, parseExpectedHead(`2:${'c'.repeat(64)}`))).toMatch(/rewritten/);
    expect(headMismatch([], parseExpectedHead(`0:${'0'.repeat(64)}`))).toBeUndefined();
  });
});

describe('KS-17.7.1 KS-17.7.2 signing keys and signed statements', () => {
  it('a signature verifies under the key ring with its kid, and not after any change', () => {
    const key = SigningKey.generate();
    const ring = PublicKeyRing.fromPem([key.publicKeyPem]);
    expect(ring.kids).toEqual([key.kid]);
    const st = recordStatement('log-1', 7, 'a'.repeat(64));
    const sig = key.sign(st);
    expect(sig.startsWith(`${key.kid}:`)).toBe(true);
    expect(ring.verify(st, sig)).toBe(true);
    expect(ring.verify(recordStatement('log-2', 7, 'a'.repeat(64)), sig)).toBe(false);
    expect(ring.verify(recordStatement('log-1', 8, 'a'.repeat(64)), sig)).toBe(false);
    // A record signature never verifies as a checkpoint's.
    expect(
      ring.verify(
        checkpointStatement({ logId: 'log-1', seq: 7, hash: 'a'.repeat(64), at: 'x' }),
        sig,
      ),
    ).toBe(false);
    const other = SigningKey.generate();
    expect(ring.verify(st, other.sign(st))).toBe(false);
    expect(ring.verify(st, `${key.kid}:${'A'.repeat(86)}`)).toBe(false);
    expect(ring.verify(st, 'garbage')).toBe(false);
  });

  it('a key file readable by others is refused; a saved key loads back with the same kid', async () => {
    const key = SigningKey.generate();
    const path = join(root, `key-${++n}.pem`);
    await key.save(path);
    expect((await SigningKey.load(path)).kid).toBe(key.kid);
    await chmod(path, 0o644);
    await expect(SigningKey.load(path)).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
      message: expect.stringMatching(/readable by group or others/),
    });
  });

  it('refuses keys that are not Ed25519', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() =>
      SigningKey.fromPem(rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
    ).toThrow(/expected an Ed25519 key/);
    expect(() =>
      PublicKeyRing.fromPem([rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString()]),
    ).toThrow(/expected Ed25519/);
  });
});
