/**
 * KS-17.7.11 over the wire, with the real serving role (not the superuser): issue 15's "test that
 * the serving role cannot ... insert a record claiming another actor". Two `killswitch serve`
 * replicas run as the serving role with the control plane's signing key; a worker follows with
 * the public key. Someone holding only the serving role's database credentials (the replicas'
 * `--store` URL, not the key) then tries what the issue reproduced: a resume as actor "admin".
 *
 * - Before any flip (the log unsigned so far), an unsigned forged record is refused by the
 *   database, because a replica with a key latched `require_signatures()` when it opened.
 * - After a signed halt, a forged resume with a signature it cannot make is stored (the function
 *   checks the chain, not keys), and every replica refuses it naming its seq (stops vouching),
 *   the worker never applies it and fails closed, and the halt stays.
 * - A forged green release verdict, unsigned, is refused by the database likewise.
 * - Every row records the database role that wrote it (`writer`, from `session_user`), which the
 *   caller cannot choose: the forged row names the serving role, never the actor it claims.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore, servingRoleGrantsSql } from '../../providers/postgres/index.js';
import { appendReleaseCallSql } from '../../providers/postgres/internal/schema-sql.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { SigningKey } from '../../src/integrity/signing-key.js';
import { canonicalJson } from '../../src/model/canonical-json.js';
import { GENESIS_HASH } from '../../src/model/flip-record.js';
import { SourceStatus } from '../../src/source/index.js';
import { RecordingListener } from '../suites/support/recording-listener.js';
import {
  SUITE_TOKENS,
  assertBuilt,
  httpJson,
  startServe,
  waitFor,
  type ServeProcess,
} from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, admin, forgeRecord, schemaName } from './pg-harness.js';

const made: { schema: string; roles: string[] }[] = [];
const dirs: string[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  for (const m of made) {
    await admin(`DROP SCHEMA IF EXISTS "${m.schema}" CASCADE`).catch(() => undefined);
    for (const r of m.roles) {
      await admin(`DROP OWNED BY "${r}"`).catch(() => undefined);
      await admin(`DROP ROLE IF EXISTS "${r}"`).catch(() => undefined);
    }
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function urlAs(role: string): string {
  const u = new URL(PG_URL);
  u.username = role;
  u.password = '';
  return u.href;
}

/** The owner creates the (empty) schema and grants the serving role, as the docs say. */
async function rolesAndSchema() {
  const schema = schemaName('forgery');
  const tag = schema.slice(-12);
  const owner = `ks_own_${tag}`;
  const serve = `ks_srv_${tag}`;
  made.push({ schema, roles: [owner, serve] });
  const db = new URL(PG_URL).pathname.slice(1);
  await admin(`CREATE ROLE "${owner}" LOGIN`);
  await admin(`CREATE ROLE "${serve}" LOGIN`);
  await admin(`GRANT CREATE ON DATABASE "${db}" TO "${owner}"`);
  const byOwner = new PostgresFlipLogStore({ connectionString: urlAs(owner), schema });
  await byOwner.open();
  await byOwner.close();
  const c = new pg.Client({ connectionString: urlAs(owner) });
  await c.connect();
  await c.query(servingRoleGrantsSql(schema, serve));
  await c.end();
  return { schema, owner, serve, s: `"${schema}"` };
}

async function replica(store: string, keyFile: string): Promise<ServeProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-pg-forgery-'));
  dirs.push(dataDir);
  const p = await startServe({
    dataDir,
    heartbeatMs: 200,
    store,
    extraArgs: ['--signing-key', keyFile],
  });
  cleanups.push(() => p.stop('SIGKILL'));
  return p;
}

/** Calls `append_release` as `url` with a chained, unsigned verdict (what the credentials allow). */
async function forgeRelease(url: string, schema: string): Promise<unknown> {
  const body = canonicalJson({
    seq: 1,
    release: 'v1',
    status: 'green',
    actor: 'admin',
    at: new Date().toISOString(),
    prev: GENESIS_HASH,
  });
  const hash = createHash('sha256').update(body).digest('hex');
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await c
      .query(appendReleaseCallSql(schema), ['1', GENESIS_HASH, hash, body, null])
      .catch((e: unknown) => e);
  } finally {
    await c.end().catch(() => undefined);
  }
}

describe.runIf(RUN_PG)(
  'KS-17.7.11 the serving role cannot append a record claiming another actor',
  () => {
    it('with only the serving role’s credentials: unsigned records and verdicts are refused by the database, a forged signature by every replica and the worker, and the row names its writer', async () => {
      assertBuilt();
      const { schema, serve, s } = await rolesAndSchema();
      const dir = await mkdtemp(join(tmpdir(), 'ks-pg-forgery-key-'));
      dirs.push(dir);
      const key = SigningKey.generate();
      const keyFile = join(dir, 'signing.pem');
      await key.save(keyFile);
      await chmod(keyFile, 0o600);

      const storeUrl = `${urlAs(serve)}?schema=${schema}`;
      const a = await replica(storeUrl, keyFile);
      const b = await replica(storeUrl, keyFile);

      // 1. The log is still empty (nothing signed yet): an unsigned "admin" resume from the serving
      //    role's credentials is refused by the database, naming why. Before version 7 it was
      //    stored, and A and B followed it.
      const early = await forgeRecord(schema, { seq: 0, hash: GENESIS_HASH }, undefined, {
        connectionString: urlAs(serve),
      }).catch((e: unknown) => e);
      expect(early).toMatchObject({
        code: 'KS001',
        message: expect.stringMatching(
          /flip seq 1: not signed, though a control plane with a signing key requires signatures after seq 0/,
        ),
      });
      expect(await admin(`SELECT count(*)::int AS n FROM ${s}.flips`)).toEqual([{ n: 0 }]);

      // 2. The same for a release verdict: a green "v1" claimed by "admin".
      const verdict = await forgeRelease(urlAs(serve), schema);
      expect(verdict).toMatchObject({
        code: 'KS001',
        message: expect.stringMatching(/release verdict seq 1: not signed, though a control plane/),
      });
      expect(await admin(`SELECT count(*)::int AS n FROM ${s}.releases`)).toEqual([{ n: 0 }]);

      // 3. A real, signed halt through A; a worker with the public key applies it.
      const warnings: string[] = [];
      const listener = new RecordingListener();
      const source = new RemoteFlipSource({
        urls: [a.url, b.url],
        token: SUITE_TOKENS.worker,
        workerId: 'w-forgery',
        publicKeys: key.publicKeyPem,
        staleAfterMs: 2000,
        heartbeatMs: 200,
        backoff: { initialMs: 50, maxMs: 300 },
        logger: { warn: (m) => warnings.push(m) },
      });
      cleanups.push(() => source.stop());
      await source.start(listener);
      await waitFor(() => listener.snapshots === 1, 10_000, 'the signed snapshot');
      const halted = await httpJson(`${a.url}/v1/flips`, 'POST', {
        token: SUITE_TOKENS.admin,
        body: { action: 'halt', selector: { tenant: 'acme' }, reason: 'INC-7' },
      });
      expect(halted.status, JSON.stringify(halted.json)).toBeLessThan(300);
      await waitFor(() => listener.applied.includes(1), 10_000, 'the signed halt applied');
      await waitFor(
        async () =>
          (await httpJson(`${b.url}/v1/state`, 'GET', { token: SUITE_TOKENS.admin })).json?.seq ===
          1,
        10_000,
        'B at seq 1',
      );

      // 4. The forged resume as "admin" that chains exactly, with a signature the forger cannot
      //    make: the database stores it (it checks the chain, not keys) ...
      const forged = await forgeRecord(
        schema,
        { seq: 1, hash: listener.hashes.get(1)! },
        `${key.kid}:${'A'.repeat(86)}`,
        { connectionString: urlAs(serve) },
      );
      expect(forged.seq).toBe(2);
      // ... and names who wrote it: the serving role, whatever actor it claims (KS-17.7.11).
      expect(
        await admin<{ seq: string; actor: string; writer: string }>(
          `SELECT seq::text AS seq, actor, writer FROM ${s}.flips ORDER BY seq`,
        ),
      ).toEqual([
        { seq: '1', actor: 'suite-admin', writer: serve },
        { seq: '2', actor: 'admin', writer: serve },
      ]);

      // 5. Every replica refuses it naming seq 2 and stops vouching; the worker never applies it,
      //    fails closed when its lease runs out, and the halt stays.
      for (const [name, r] of [
        ['A', a],
        ['B', b],
      ] as const) {
        await waitFor(
          async () =>
            (await httpJson(`${r.url}/v1/state`, 'GET', { token: SUITE_TOKENS.admin })).status ===
            503,
          20_000,
          `${name} to stop vouching`,
        );
        await waitFor(
          () => /seq 2: signature does not verify/.test(r.stderr()),
          10_000,
          `${name}'s log line naming seq 2`,
        );
      }
      await waitFor(
        () => listener.status === SourceStatus.STALE,
        20_000,
        'the worker to fail closed',
      );
      expect(listener.applied).not.toContain(2);
      expect(listener.state.get({ tenant: 'acme' })?.action).toBe('halt');
    }, 120_000);

    it('the writer column is set by the database from session_user: an insert that names another writer is overwritten', async () => {
      const { schema, owner, s } = await rolesAndSchema();
      // The owner may insert directly (it owns the table); it still cannot choose the writer.
      const rec = await forgeRecord(schema, { seq: 0, hash: GENESIS_HASH }, undefined, {
        connectionString: urlAs(owner),
      });
      expect(rec.seq).toBe(1);
      const c = new pg.Client({ connectionString: urlAs(owner) });
      await c.connect();
      try {
        const row = (
          await admin<Record<string, string>>(`SELECT * FROM ${s}.flips WHERE seq = 1`)
        )[0]!;
        const body = row['body']!.replace('"seq":1', '"seq":2').replace(row['prev']!, row['hash']!);
        const hash = createHash('sha256').update(body).digest('hex');
        await c.query(
          `INSERT INTO ${s}.flips (seq, id, at, actor, action, selector, reason, prev, hash, body, writer) ` +
            `VALUES (2, 'x2', $1, 'admin', 'resume', '{}', 'x', $2, $3, $4, 'somebody_else')`,
          [row['at'], row['hash'], hash, body],
        );
      } finally {
        await c.end();
      }
      expect(await admin<{ writer: string }>(`SELECT writer FROM ${s}.flips ORDER BY seq`)).toEqual(
        [{ writer: owner }, { writer: owner }],
      );
    });
  },
);
