/**
 * KS-17.7.2, KS-17.7.3, KS-17.7.4, KS-17.7.5: records signed at append by a key the store's writer
 * does not hold, a head file beside the log so a cut acknowledged record is an error (never a
 * silently cut torn tail), and the signed checkpoint route. Issue 15's "Rewritable history".
 */
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore, headPath, readHeadFile } from '../../../providers/file/index.js';
import {
  PublicKeyRing,
  SigningKey,
  checkpointVerifies,
  recordStatement,
} from '../../../src/integrity/index.js';
import { computeHash, type FlipRecord } from '../../../src/model/flip-record.js';
import {
  CLI,
  SUITE_TOKENS,
  assertBuilt,
  httpJson,
  serveExpectingFailure,
  startServe,
  type ServeProcess,
} from '../support/serve-process.js';

const root = await mkdtemp(join(tmpdir(), 'ks-signed-15-'));
const servers: ServeProcess[] = [];
beforeAll(() => assertBuilt());
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop('SIGKILL');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
let n = 0;
const key = SigningKey.generate();
const keyFile = join(root, 'signing.pem');
const pubFile = join(root, 'signing.pub');
beforeAll(async () => {
  await key.save(keyFile);
  await writeFile(pubFile, key.publicKeyPem);
});

function verify(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, 'verify', ...args], { timeout: 20_000 }, (err, so, se) =>
      done({
        code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1,
        stdout: so,
        stderr: se,
      }),
    );
  });
}

function store(
  path: string,
  extra: Partial<ConstructorParameters<typeof FileFlipLogStore>[0]> = {},
) {
  const warnings: string[] = [];
  const s = new FileFlipLogStore({ path, logger: { warn: (m) => warnings.push(m) }, ...extra });
  return { s, warnings };
}

async function signedLog(count: number, k: SigningKey | null = key) {
  const path = join(root, `log-${++n}`, 'flips.jsonl');
  const { s } = store(path, k === null ? {} : { signingKey: k });
  const records: FlipRecord[] = [];
  for (let i = 1; i <= count; i++) {
    records.push(
      (
        await s.append({
          id: `f${i}`,
          actor: 'oncall',
          action: 'halt',
          selector: i === count ? {} : { tenant: `t${i}` },
          reason: `INC-${i}`,
        })
      ).record,
    );
  }
  const logId = await s.logId();
  await s.close();
  return { path, records, logId };
}

const lines = async (path: string) => (await readFile(path, 'utf8')).split('\n').slice(0, -1);

describe('KS-17.7.2 KS-17.7.3 records are signed as they are appended', () => {
  it('every line carries a sig over killswitch-record-v1, outside the hash; verify --public-key checks them all', async () => {
    const { path, records, logId } = await signedLog(3);
    const ring = PublicKeyRing.fromPem([key.publicKeyPem]);
    for (const [i, line] of (await lines(path)).entries()) {
      const v = JSON.parse(line) as Record<string, unknown>;
      expect(typeof v['sig']).toBe('string');
      expect(ring.verify(recordStatement(logId, i + 1, records[i]!.hash), v['sig'] as string)).toBe(
        true,
      );
    }
    const r = await verify(path, '--public-key', pubFile, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, records: 3, signed: 3 });
    // A reopened store with the key reads the same records and keeps signing.
    const { s } = store(path, { signingKey: key });
    expect((await s.read()).map((x) => x.hash)).toEqual(records.map((x) => x.hash));
    await s.append({ actor: 'oncall', action: 'resume', selector: {}, reason: 'ok' });
    await s.close();
    expect((await verify(path, '--public-key', pubFile)).code).toBe(0);
  });

  it("a record appended by the store's writer with a correct hash but no key is refused by the store and by verify", async () => {
    const { path, records } = await signedLog(2);
    // The forged resume: chained and hashed correctly, actor "admin", but unsigned.
    const { hash: _h, ...rest } = {
      ...records[1]!,
      seq: 3,
      id: 'forged',
      actor: 'admin',
      action: 'resume' as const,
      mode: undefined,
      selector: {},
      reason: 'nothing to see',
      prev: records[1]!.hash,
    };
    delete (rest as { mode?: unknown }).mode;
    const forged = { ...rest, hash: computeHash(rest as never) };
    await appendFile(path, JSON.stringify(forged) + '\n');
    const { s } = store(path, { publicKeys: PublicKeyRing.fromPem([key.publicKeyPem]) });
    await expect(s.open()).rejects.toMatchObject({
      code: 'KS_LOG_CORRUPT',
      seq: 3,
      message: expect.stringMatching(/not signed, though seq 1 before it is/),
    });
    await s.close();
    // Without keys too: the presence rule needs none.
    const r = await verify(path, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, seq: 3 });
  });

  it('a record signed by another key is refused naming the seq; a history rewritten and re-signed with another key too', async () => {
    const other = SigningKey.generate();
    const { path } = await signedLog(2, other);
    const r = await verify(path, '--public-key', pubFile, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      seq: 1,
      reason: expect.stringMatching(/signed by key \w+, which is not among the known keys/),
    });
    const { s } = store(path, { publicKeys: PublicKeyRing.fromPem([key.publicKeyPem]) });
    await expect(s.open()).rejects.toMatchObject({ code: 'KS_LOG_CORRUPT', seq: 2 });
    await s.close();
  });

  it('a history rewritten with recomputed hashes and every signature stripped fails verify --public-key and the head file', async () => {
    const { path, records } = await signedLog(3);
    let prev = '0'.repeat(64);
    const rewritten = records.map((r) => {
      const { hash: _h, ...rest } = { ...r, prev, ...(r.seq === 2 ? { reason: 'edited' } : {}) };
      const hash = computeHash(rest as never);
      prev = hash;
      return { ...rest, hash };
    });
    await writeFile(path, rewritten.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = await verify(path, '--public-key', pubFile, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).reason).toMatch(/no record is signed|not the one acknowledged/);
    const { s } = store(path, { signingKey: key });
    await expect(s.open()).rejects.toMatchObject({
      code: 'KS_LOG_CORRUPT',
      message: expect.stringMatching(
        /acknowledged records missing: the record at seq 3 is not the one acknowledged/,
      ),
    });
    await s.close();
  });
});

describe('KS-17.7.5 a cut acknowledged record is an error, never a torn tail', () => {
  it("issue 15's reproducer: deleting the last byte of an acknowledged global halt refuses the open and cuts nothing", async () => {
    const { path, records } = await signedLog(3);
    const head = await readHeadFile(path);
    expect(head).toMatchObject({ seq: 3, hash: records[2]!.hash });
    expect(checkpointVerifies(head!, PublicKeyRing.of(key))).toBe(true);
    const size = (await readFile(path)).length;
    await truncate(path, size - 1); // the newline of seq 3: it now looks like a torn write
    const { s } = store(path, { signingKey: key });
    await expect(s.open()).rejects.toMatchObject({
      code: 'KS_LOG_CORRUPT',
      seq: 3,
      message: expect.stringMatching(
        /acknowledged records missing: the log ends at seq 2, but seq 3 was acknowledged/,
      ),
    });
    await s.close();
    expect((await readFile(path)).length).toBe(size - 1); // nothing was cut
    const r = await verify(path);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/acknowledged records missing/);
  });

  it('deleting a byte inside the last record is corruption, not a torn tail (it keeps its newline)', async () => {
    const { path } = await signedLog(2, null);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, text.length - 10) + text.slice(text.length - 9));
    const { s } = store(path);
    await expect(s.open()).rejects.toMatchObject({ code: 'KS_LOG_CORRUPT', seq: 2 });
    await s.close();
  });

  it('a write that never finished (no newline, beyond the acknowledged head) is still cut', async () => {
    const { path } = await signedLog(2);
    const good = await readFile(path);
    await appendFile(path, '{"seq":3,"id":"f3","at":"20');
    const { s, warnings } = store(path, { signingKey: key });
    expect(await s.read()).toHaveLength(2);
    expect(warnings.join('\n')).toMatch(/cut a torn last line/);
    await s.close();
    expect((await readFile(path)).equals(good)).toBe(true);
  });

  it('an older copy of the log restored without its head file is refused; the head file replaced too is what --expect-head catches', async () => {
    const { path } = await signedLog(1, null);
    await copyFile(path, `${path}.bak`);
    const { s } = store(path);
    await s.append({ actor: 'oncall', action: 'halt', selector: { tenant: 'x' }, reason: 'INC-2' });
    await s.close();
    await copyFile(`${path}.bak`, path);
    const { s: again } = store(path);
    await expect(again.open()).rejects.toMatchObject({
      code: 'KS_LOG_CORRUPT',
      message: expect.stringMatching(
        /acknowledged records missing: the log ends at seq 1, but seq 2/,
      ),
    });
    await again.close();
    // A head file that is not a checkpoint is refused, never guessed over.
    await writeFile(headPath(path), 'garbage\n');
    await expect(store(path).s.open()).rejects.toMatchObject({
      code: 'KS_LOG_CORRUPT',
      message: expect.stringMatching(/is not a checkpoint/),
    });
  });

  it('a log from before head files gets one on open, with a warning', async () => {
    const { path } = await signedLog(2, null);
    await rm(headPath(path));
    const { s, warnings } = store(path);
    await s.open();
    await s.close();
    expect(warnings.join('\n')).toMatch(/no head file .*writing one at seq 2/);
    expect(await readHeadFile(path)).toMatchObject({ seq: 2 });
  });
});

describe('KS-17.7.4 GET /v1/checkpoint over the wire', () => {
  it('serve --signing-key signs records and answers a signed checkpoint that verify --expect-head accepts', async () => {
    const dir = join(root, `serve-${++n}`);
    const s = await startServe({ dataDir: dir, extraArgs: ['--signing-key', keyFile] });
    servers.push(s);
    const flip = await httpJson(`${s.url}/v1/flips`, 'POST', {
      token: SUITE_TOKENS.admin,
      body: { action: 'halt', selector: { tenant: 'a' }, reason: 'INC-1' },
    });
    expect(flip.status).toBe(201);
    const cp = await httpJson(`${s.url}/v1/checkpoint`, 'GET', { token: SUITE_TOKENS.viewer });
    expect(cp.status).toBe(200);
    expect(cp.json).toMatchObject({
      seq: 1,
      sig: expect.stringMatching(new RegExp(`^${key.kid}:`)),
    });
    expect(checkpointVerifies(cp.json as never, PublicKeyRing.of(key))).toBe(true);
    const anon = await httpJson(`${s.url}/v1/checkpoint`, 'GET', {});
    expect(anon.status).toBe(401);
    const file = join(dir, 'checkpoint.json');
    await writeFile(file, JSON.stringify(cp.json));
    const log = join(dir, 'flips.jsonl');
    const ok = await verify(log, '--public-key', pubFile, '--expect-head', `@${file}`);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/holds the expected head seq 1/);
    // A checkpoint edited after it was signed (or never signed) fails against the public key.
    const cpj = cp.json as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...cpj, at: '2020-01-01T00:00:00.000Z' }));
    const edited = await verify(log, '--public-key', pubFile, '--expect-head', `@${file}`);
    expect(edited.code).toBe(1);
    expect(edited.stdout).toMatch(/checkpoint's signature does not verify/);
    const { sig: _sig, ...unsigned } = cpj;
    await writeFile(file, JSON.stringify(unsigned));
    const bare = await verify(log, '--public-key', pubFile, '--expect-head', `@${file}`);
    expect(bare.stdout).toMatch(/checkpoint's signature is missing/);
  });

  it('serve refuses a signing key others may read, and a signing key with a store that cannot sign', async () => {
    const loose = join(root, `loose-${++n}.pem`);
    await writeFile(loose, key.toPem(), { mode: 0o644 });
    const a = await serveExpectingFailure({
      dataDir: join(root, `serve-${n}`),
      extraArgs: ['--signing-key', loose],
    });
    expect(a.code).toBe(1);
    expect(a.stdout + a.stderr).toMatch(/readable by group or others/);
    const b = await serveExpectingFailure({
      dataDir: join(root, `serve-${++n}`),
      extraArgs: ['--signing-key', keyFile, '--store', 'memory'],
    });
    expect(b.code).toBe(1);
    expect(b.stdout + b.stderr).toMatch(/the memory store does not sign records/);
  });
});
