/**
 * KS-17.7.6: release verdicts are chained like flips (seq, prev, hash) and signed with the control
 * plane's key; the gate refuses to open a broken chain and `killswitch verify --releases` checks it.
 * Issue 15: "`releases.jsonl` has no chain".
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  PublicKeyRing,
  SigningKey,
  releaseHash,
  releaseStatement,
} from '../../../src/integrity/index.js';
import { ReleaseGate } from '../../../src/server/release-gate.js';
import type { ReleaseRecord } from '../../../src/protocol/releases.js';
import {
  CLI,
  SUITE_TOKENS,
  assertBuilt,
  httpJson,
  startServe,
  type ServeProcess,
} from '../support/serve-process.js';

const root = await mkdtemp(join(tmpdir(), 'ks-release-chain-'));
const servers: ServeProcess[] = [];
const gates: ReleaseGate[] = [];
beforeAll(() => assertBuilt());
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop('SIGKILL');
  for (const g of gates.splice(0)) await g.close();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
let n = 0;
const key = SigningKey.generate();
const quiet = { warn: () => undefined };

function verifyReleases(...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, 'verify', '--releases', ...args],
      { timeout: 20_000 },
      (err, stdout) =>
        done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout }),
    );
  });
}

function gate(path: string, extra: Partial<ConstructorParameters<typeof ReleaseGate>[0]> = {}) {
  const g = new ReleaseGate({ path, logger: quiet, ...extra });
  gates.push(g);
  return g;
}

async function threeVerdicts(k?: SigningKey): Promise<{ path: string; recs: ReleaseRecord[] }> {
  const path = join(root, `releases-${++n}.jsonl`);
  const g = gate(path, k === undefined ? {} : { signingKey: k });
  const recs = [
    await g.record({ release: 'v1', status: 'red', reason: 'broke checkout' }, 'admin'),
    await g.record({ release: 'v2', status: 'green', reason: 'fixed' }, 'admin'),
    await g.record({ release: 'v1', status: 'red', reason: 'still broken' }, 'admin'),
  ];
  await g.close();
  return { path, recs };
}

describe('KS-17.7.6 release verdicts are chained and signed', () => {
  it('each verdict names the hash of the one before and its own; signed with the key; verify --releases passes', async () => {
    const { path, recs } = await threeVerdicts(key);
    expect(recs[0]!.prev).toBe('0'.repeat(64));
    expect(recs[1]!.prev).toBe(recs[0]!.hash);
    expect(recs[2]!.prev).toBe(recs[1]!.hash);
    for (const r of recs) {
      expect(releaseHash(r)).toBe(r.hash);
      expect(PublicKeyRing.of(key).verify(releaseStatement(r.seq, r.hash!), r.sig!)).toBe(true);
    }
    const pub = join(root, `pub-${n}.pem`);
    await writeFile(pub, key.publicKeyPem);
    const r = await verifyReleases(path, '--public-key', pub, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, verdicts: 3, signed: 3 });
    expect(await gate(path, { signingKey: key }).statusOf('v1')).toMatchObject({ seq: 3 });
  });

  it('a red verdict edited to green refuses the gate (a resume it would have refused is not let through) and fails verify', async () => {
    const { path } = await threeVerdicts();
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[2] = lines[2]!.replace('"status":"red"', '"status":"green"');
    await writeFile(path, lines.join('\n'));
    await expect(gate(path).open()).rejects.toMatchObject({
      code: 'KS_JOURNAL_CORRUPT',
      message: expect.stringMatching(/corrupt at line 3: hash does not match the verdict/),
    });
    const r = await verifyReleases(path, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, line: 3 });
  });

  it('a verdict deleted from the middle, and one re-hashed without the key, are refused', async () => {
    const { path } = await threeVerdicts(key);
    const lines = (await readFile(path, 'utf8')).split('\n');
    await writeFile(path, [lines[0], lines[2], ''].join('\n'));
    await expect(gate(path, { signingKey: key }).open()).rejects.toMatchObject({
      message: expect.stringMatching(/line 2: found seq 3 where seq 2 belongs/),
    });
    // Rewritten with a correct hash but signed by no known key.
    const recs = [lines[0], lines[1], lines[2]].map((l) => JSON.parse(l!) as ReleaseRecord);
    const { sig: _sig, ...unsigned } = recs[2]!;
    const edited: ReleaseRecord = { ...unsigned, status: 'green' };
    const hash = releaseHash(edited);
    const forged = { ...edited, hash, sig: SigningKey.generate().sign(releaseStatement(3, hash)) };
    await writeFile(path, [lines[0], lines[1], JSON.stringify(forged), ''].join('\n'));
    await expect(gate(path, { signingKey: key }).open()).rejects.toMatchObject({
      message: expect.stringMatching(/line 3: signature does not verify/),
    });
  });

  it('a file from before the chain opens, and the next verdict chains onto it', async () => {
    const path = join(root, `legacy-${++n}.jsonl`);
    const legacy = {
      seq: 1,
      release: 'v0',
      status: 'green',
      actor: 'admin',
      at: new Date().toISOString(),
    };
    await writeFile(path, JSON.stringify(legacy) + '\n');
    const g = gate(path);
    const next = await g.record({ release: 'v1', status: 'green' }, 'admin');
    expect(next.prev).toBe(releaseHash(legacy as ReleaseRecord));
    await g.close();
    expect((await verifyReleases(path)).code).toBe(0);
    // An unchained verdict after chained ones is not from before the chain: refused.
    await writeFile(
      path,
      (await readFile(path, 'utf8')) + JSON.stringify({ ...legacy, seq: 3 }) + '\n',
    );
    await expect(gate(path).open()).rejects.toMatchObject({
      message: expect.stringMatching(/line 3: verdict not chained/),
    });
  });

  it('over the wire: serve --signing-key answers signed, chained verdicts', async () => {
    const dir = join(root, `serve-${++n}`);
    const keyFile = join(root, `key-${n}.pem`);
    await key.save(keyFile);
    const s = await startServe({ dataDir: dir, extraArgs: ['--signing-key', keyFile] });
    servers.push(s);
    const posted = await httpJson(`${s.url}/v1/releases`, 'POST', {
      token: SUITE_TOKENS.admin,
      body: { release: 'r1', status: 'green', reason: 'canary ok' },
    });
    expect(posted.status).toBe(201);
    const rec = (posted.json as { release: ReleaseRecord }).release;
    expect(rec).toMatchObject({
      seq: 1,
      prev: '0'.repeat(64),
      sig: expect.stringMatching(/^\w{16}:/),
    });
    expect((await verifyReleases(join(dir, 'releases.jsonl'))).code).toBe(0);
  });
});
