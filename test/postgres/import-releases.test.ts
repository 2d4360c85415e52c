/**
 * KS-8.9.5 `killswitch db import-releases`: the release verdicts of an old `releases.jsonl` (a data
 * directory from before schema version 6, when each replica kept its own file) carried into the
 * shared `releases` table. Before this command a red verdict in the file was simply not read on
 * PostgreSQL (a warning; resumes refused until re-marked). Real PostgreSQL, the built CLI.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import { SigningKey } from '../../src/integrity/signing-key.js';
import { ReleaseGate } from '../../src/server/index.js';
import { assertBuilt, runCli } from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, admin, dropSchemas, schemaName } from './pg-harness.js';

const schemas = new Set<string>();
const dirs: string[] = [];
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const quiet = { warn() {} };

/** A releases.jsonl as a file-store `serve` wrote it, with the key: v1 red then green, v2 red, an override. */
async function oldFile(key: SigningKey): Promise<{ dir: string; file: string; keyFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'ks-import-'));
  dirs.push(dir);
  const file = join(dir, 'releases.jsonl');
  const gate = new ReleaseGate({ path: file, signingKey: key, logger: quiet });
  await gate.open();
  await gate.record({ release: 'v1', status: 'red', reason: 'INC-1' }, 'oncall');
  await gate.record({ release: 'v2', status: 'red', reason: 'INC-2 refunds twice' }, 'oncall');
  await gate.record({ release: 'v1', status: 'green', reason: 'fixed' }, 'admin');
  await gate.checkOrOverride(
    { id: 'resume-1', release: 'v2' },
    [],
    { name: 'admin', role: 'admin' } as never,
    'customer escalation',
  );
  await gate.close();
  const keyFile = join(dir, 'signing.pem');
  await key.save(keyFile);
  await chmod(keyFile, 0o600);
  await writeFile(join(dir, 'signing.pub'), key.publicKeyPem);
  return { dir, file, keyFile };
}

function fresh(): string {
  const s = schemaName('import');
  schemas.add(s);
  return s;
}

async function tableVerdicts(schema: string) {
  return admin<{ seq: number; body: string; signed: boolean }>(
    `SELECT seq::int AS seq, body, sig IS NOT NULL AS signed FROM "${schema}".releases ORDER BY seq`,
  );
}

/** The gate every replica on `schema` would run, with the key. */
async function replicaGate(schema: string, key: SigningKey) {
  const store = new PostgresFlipLogStore({
    connectionString: PG_URL,
    schema,
    signingKey: key,
    logger: quiet,
  });
  const gate = new ReleaseGate({ signingKey: key, logger: quiet });
  await gate.open(store);
  return {
    gate,
    close: async () => {
      await gate.close();
      await store.close();
    },
  };
}

describe.runIf(RUN_PG)('KS-8.9.5 killswitch db import-releases', () => {
  it('carries the latest verdict of each release into the table, chained and signed; the red one refuses a resume on every replica; a second run imports nothing', async () => {
    assertBuilt();
    const key = SigningKey.generate();
    const { dir, file, keyFile } = await oldFile(key);
    const schema = fresh();
    // The keyed replicas already run on the schema (it latched signatures) and gave v3 a verdict.
    const before = await replicaGate(schema, key);
    await before.gate.record({ release: 'v3', status: 'green' }, 'admin');
    await before.close();
    const store = `${PG_URL}?schema=${schema}`;

    const run = await runCli([
      'db',
      'import-releases',
      file,
      '--store',
      store,
      '--signing-key',
      keyFile,
      '--public-key',
      join(dir, 'signing.pub'),
      '--json',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as {
      read: number;
      imported: { release: string; status: string; seq: number; actor: string; reason: string }[];
    };
    expect(out.read).toBe(4);
    expect(out.imported.map((r) => [r.release, r.status, r.seq, r.actor])).toEqual([
      ['v2', 'red', 2, 'oncall'],
      ['v1', 'green', 3, 'admin'],
    ]);
    expect(out.imported[0]!.reason).toMatch(/^imported from .*releases\.jsonl seq 2 \(.+\): INC-2/);
    const rows = await tableVerdicts(schema);
    expect(rows.map((r) => [r.seq, r.signed])).toEqual([
      [1, true],
      [2, true],
      [3, true],
    ]);

    // Every replica's gate now reads the imported verdicts (chain and signatures checked).
    const after = await replicaGate(schema, key);
    await expect(after.gate.checkResume('v2', [])).rejects.toMatchObject({
      code: 'KS_RESUME_REFUSED',
      message: expect.stringMatching(/release v2 is red .*INC-2/),
    });
    await expect(after.gate.checkResume('v1', [])).resolves.toBeUndefined();
    // A verdict given since the import wins over the file's on a second run.
    await after.gate.record({ release: 'v2', status: 'green', reason: 'fixed since' }, 'admin');
    await after.close();

    const again = await runCli([
      'db',
      'import-releases',
      file,
      '--store',
      store,
      '--signing-key',
      keyFile,
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/imported 0 release verdict/);
    expect(again.stdout).toMatch(/v2: skipped, the table already has green \(seq 4, newer\)/);
    expect((await tableVerdicts(schema)).length).toBe(4);
  }, 60_000);

  it('refuses a tampered file whole (a red verdict edited to green), and a file whose signatures do not verify: exit 1, nothing written', async () => {
    assertBuilt();
    const key = SigningKey.generate();
    const { file, keyFile } = await oldFile(key);
    const schema = fresh();
    const store = `${PG_URL}?schema=${schema}`;
    const lines = (await readFile(file, 'utf8')).split('\n');
    const tampered = `${file}.tampered`;
    await writeFile(
      tampered,
      lines.map((l) => l.replace('"status":"red"', '"status":"green"')).join('\n'),
    );
    const run = await runCli([
      'db',
      'import-releases',
      tampered,
      '--store',
      store,
      '--signing-key',
      keyFile,
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /nothing was imported: release file .* corrupt at line 1: hash does not match/,
    );

    const otherDir = await mkdtemp(join(tmpdir(), 'ks-import-other-'));
    dirs.push(otherDir);
    await writeFile(join(otherDir, 'other.pub'), SigningKey.generate().publicKeyPem);
    const wrongKey = await runCli([
      'db',
      'import-releases',
      file,
      '--store',
      store,
      '--public-key',
      join(otherDir, 'other.pub'),
    ]);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/corrupt at line 1: signature does not verify/);
    expect(await tableVerdicts(schema)).toEqual([]);
  }, 60_000);

  it('all or nothing: when the table refuses the second verdict, the first is not written either; unsigned verdicts where the replicas sign are refused', async () => {
    assertBuilt();
    const key = SigningKey.generate();
    const { file, keyFile } = await oldFile(key);
    const schema = fresh();
    const keyed = await replicaGate(schema, key); // latches signatures (KS-17.7.11)
    await keyed.close();
    const store = `${PG_URL}?schema=${schema}`;
    const unsigned = await runCli(['db', 'import-releases', file, '--store', store]);
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(
      /nothing was imported: .*not signed, though a control plane with a signing key requires signatures/,
    );
    expect(await tableVerdicts(schema)).toEqual([]);
    // A fault in the middle: the database refuses seq 2 (a trigger the superuser adds).
    await admin(
      `CREATE FUNCTION "${schema}".refuse_second() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` +
        `IF NEW.seq = 2 THEN RAISE EXCEPTION 'injected fault at seq 2'; END IF; RETURN NEW; END $$`,
    );
    await admin(
      `CREATE TRIGGER refuse_second BEFORE INSERT ON "${schema}".releases FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse_second()`,
    );
    const faulty = await runCli([
      'db',
      'import-releases',
      file,
      '--store',
      store,
      '--signing-key',
      keyFile,
    ]);
    expect(faulty.code).toBe(1);
    expect(faulty.stderr).toMatch(/nothing was imported: .*injected fault at seq 2/);
    expect(await tableVerdicts(schema)).toEqual([]);
  }, 60_000);
});
