/**
 * KS-17.7.7: the table, its triggers and history belong to an owner role; the serving role appends
 * only through the owner's SECURITY DEFINER function `append_flip` and cannot update, delete,
 * truncate, disable or drop triggers, grant itself privileges, replace the function or insert
 * directly. Issue 15: "On PostgreSQL the serving role owns the table: it ... disabled the
 * insert-only trigger, granted itself DELETE and cut the tail." Real roles, made per test.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  PostgresFlipLogStore,
  SCHEMA_VERSION,
  servingRoleGrantsSql,
} from '../../providers/postgres/index.js';
import { PublicKeyRing, SigningKey } from '../../src/integrity/signing-key.js';
import { ReleaseGate } from '../../src/server/index.js';
import { PG_URL, RUN_PG, admin, schemaName } from './pg-harness.js';

const made: { schema: string; roles: string[] }[] = [];
afterAll(async () => {
  for (const m of made) {
    await admin(`DROP SCHEMA IF EXISTS "${m.schema}" CASCADE`).catch(() => undefined);
    for (const r of m.roles) {
      await admin(`DROP OWNED BY "${r}"`).catch(() => undefined);
      await admin(`DROP ROLE IF EXISTS "${r}"`).catch(() => undefined);
    }
  }
});

function urlAs(role: string): string {
  const u = new URL(PG_URL);
  u.username = role;
  u.password = '';
  return u.href;
}

async function as(role: string, sql: string, params: unknown[] = []): Promise<unknown> {
  const c = new pg.Client({ connectionString: urlAs(role), connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return (await c.query(sql, params)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function setup() {
  const schema = schemaName('roles');
  const tag = schema.slice(-12);
  const owner = `ks_own_${tag}`;
  const serve = `ks_srv_${tag}`;
  made.push({ schema, roles: [owner, serve] });
  const db = new URL(PG_URL).pathname.slice(1);
  await admin(`CREATE ROLE "${owner}" LOGIN`);
  await admin(`CREATE ROLE "${serve}" LOGIN`);
  await admin(`GRANT CREATE ON DATABASE "${db}" TO "${owner}"`);
  // The owner creates the schema (the store's first open) and grants the serving role.
  const ownerStore = new PostgresFlipLogStore({ connectionString: urlAs(owner), schema });
  await ownerStore.append({
    actor: 'oncall',
    action: 'halt',
    selector: { tenant: 'a' },
    reason: 'INC-1',
  });
  await ownerStore.close();
  await as(owner, servingRoleGrantsSql(schema, serve));
  return { schema, owner, serve, s: `"${schema}"` };
}

describe.runIf(RUN_PG)(
  "KS-17.7.7 the serving role appends only through the owner's function",
  () => {
    it('a store run as the serving role opens, reads, appends and follows', async () => {
      const { schema, serve } = await setup();
      const store = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
      const seen: number[] = [];
      store.subscribe((r) => seen.push(r.seq));
      const { record } = await store.append({
        actor: 'oncall',
        action: 'resume',
        selector: { tenant: 'a' },
        reason: 'fixed',
        release: 'v2',
      });
      expect(record.seq).toBe(2);
      expect((await store.read()).map((r) => r.seq)).toEqual([1, 2]);
      await expect.poll(() => seen).toContain(2);
      await store.close();
      const owner = await admin<{ tableowner: string }>(
        'SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = $2',
        [schema, 'flips'],
      );
      expect(owner[0]!.tableowner).not.toBe(serve);
    });

    it('refuses every rewrite the issue reproduced: insert, update, delete, truncate, triggers, grants, the function, ownership', async () => {
      const { serve, s } = await setup();
      const denied = async (sql: string) => {
        const err = (await as(serve, sql).catch((e: unknown) => e)) as {
          code?: string;
          message?: string;
        };
        expect(err, sql).toBeInstanceOf(Error);
        expect(err.code, `${sql}: ${err.message}`).toBe('42501'); // insufficient_privilege
      };
      const row = (
        await admin<Record<string, string>>(`SELECT * FROM ${s}.flips WHERE seq = 1`)
      )[0]!;
      await denied(
        `INSERT INTO ${s}.flips (seq, id, at, actor, action, selector, reason, prev, hash, body) ` +
          `VALUES (2, 'forged', '${row['at']}', 'admin', 'resume', '{}', 'x', '${row['hash']}', '${row['hash']}', '{}')`,
      );
      await denied(`UPDATE ${s}.flips SET reason = 'nothing happened'`);
      await denied(`DELETE FROM ${s}.flips WHERE seq = 1`);
      await denied(`TRUNCATE ${s}.flips`);
      await denied(`ALTER TABLE ${s}.flips DISABLE TRIGGER flips_insert_only`);
      await denied(`ALTER TABLE ${s}.flips DISABLE TRIGGER ALL`);
      await denied(`DROP TRIGGER flips_check_insert ON ${s}.flips`);
      await denied(`ALTER TABLE ${s}.flips OWNER TO CURRENT_USER`);
      await denied(`DROP TABLE ${s}.flips`);
      await denied(
        `CREATE OR REPLACE FUNCTION ${s}.flips_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`,
      );
      // GRANT without the grant option only warns; it must grant nothing.
      await as(serve, `GRANT DELETE, UPDATE, TRUNCATE, INSERT ON ${s}.flips TO CURRENT_USER`).catch(
        () => undefined,
      );
      const privs = (await as(
        serve,
        `SELECT has_table_privilege(CURRENT_USER, '${s}.flips', 'DELETE') AS d, ` +
          `has_table_privilege(CURRENT_USER, '${s}.flips', 'UPDATE') AS u, ` +
          `has_table_privilege(CURRENT_USER, '${s}.flips', 'TRUNCATE') AS t, ` +
          `has_table_privilege(CURRENT_USER, '${s}.flips', 'INSERT') AS i`,
      )) as Record<string, boolean>[];
      expect(privs[0]).toEqual({ d: false, u: false, t: false, i: false });
      await denied(`DELETE FROM ${s}.flips`);
      expect(await admin(`SELECT count(*)::int AS n FROM ${s}.flips`)).toEqual([{ n: 1 }]);
    });

    it('through the function the chain triggers still run: a record that does not extend the chain is refused', async () => {
      const { serve, s } = await setup();
      const err = (await as(
        serve,
        `SELECT ${s}.append_flip(5, 'gap', '2026-01-01T00:00:00.000Z', 'admin', 'resume', '{}'::jsonb, 'x', NULL, NULL, NULL, repeat('0', 64), repeat('0', 64), '{}', NULL)`,
      ).catch((e: unknown) => e)) as { code?: string; message?: string };
      expect(err).toBeInstanceOf(Error);
      expect(err.code).toBe('KS001');
      expect(err.message).toMatch(/does not follow the head seq 1/);
    });

    it('a role without the grants can neither read nor append', async () => {
      const { schema } = await setup();
      const stranger = `ks_str_${schema.slice(-12)}`;
      made.push({ schema, roles: [stranger] });
      await admin(`CREATE ROLE "${stranger}" LOGIN`);
      const store = new PostgresFlipLogStore({ connectionString: urlAs(stranger), schema });
      await expect(store.open()).rejects.toMatchObject({ code: 'KS_STORE_UNAVAILABLE' });
      await store.close();
    });

    it('KS-8.9.2 the serving role records release verdicts only through append_release, and cannot rewrite them', async () => {
      const { schema, serve, s } = await setup();
      const store = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
      const gate = new ReleaseGate({ logger: { warn() {} } });
      await gate.open(store);
      const rec = await gate.record({ release: 'v1', status: 'red', reason: 'INC-1' }, 'admin');
      expect(rec.seq).toBe(1);
      await gate.close();
      await store.close();
      const denied = async (sql: string) => {
        const err = (await as(serve, sql).catch((e: unknown) => e)) as { code?: string };
        expect(err, sql).toBeInstanceOf(Error);
        expect(err.code, sql).toBe('42501');
      };
      await denied(
        `INSERT INTO ${s}.releases (seq, prev, hash, body) VALUES (2, repeat('0', 64), repeat('0', 64), '{}')`,
      );
      await denied(`UPDATE ${s}.releases SET body = body`);
      await denied(`DELETE FROM ${s}.releases`);
      await denied(`TRUNCATE ${s}.releases`);
      await denied(`ALTER TABLE ${s}.releases DISABLE TRIGGER ALL`);
      await denied(`DROP TABLE ${s}.releases`);
      const owner = await admin<{ tableowner: string }>(
        'SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = $2',
        [schema, 'releases'],
      );
      expect(owner[0]!.tableowner).not.toBe(serve);
    });

    it('KS-8.9.1 upgrades a version-5 schema to 6 (shared release verdicts): the owner adds the table; the serving role refuses to, and must be granted again', async () => {
      const { schema, owner, serve, s } = await setup();
      // What a version-5 library left: no releases table, no append_release.
      await admin(`DROP FUNCTION ${s}.append_release(bigint, text, text, text, text)`);
      await admin(`DROP TABLE ${s}.releases`);
      await admin(`UPDATE ${s}.meta SET value = '5' WHERE key = 'schema_version'`);
      const bySrv = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
      await expect(bySrv.open()).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
        message: expect.stringMatching(
          new RegExp(`version 5 .*needs ${SCHEMA_VERSION}.*as the schema.s owner`),
        ),
      });
      await bySrv.close();
      const byOwner = new PostgresFlipLogStore({ connectionString: urlAs(owner), schema });
      await byOwner.open();
      await byOwner.close();
      expect(await admin(`SELECT value FROM ${s}.meta WHERE key = 'schema_version'`)).toEqual([
        { value: String(SCHEMA_VERSION) },
      ]);
      // The flips survived; the verdicts start empty (a version-5 replica kept them in its file).
      expect(await admin(`SELECT count(*)::int AS n FROM ${s}.flips`)).toEqual([{ n: 1 }]);
      expect(await admin(`SELECT count(*)::int AS n FROM ${s}.releases`)).toEqual([{ n: 0 }]);
      const record = async () => {
        const store = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
        const gate = new ReleaseGate({ logger: { warn() {} } });
        try {
          await gate.open(store);
          return await gate.record({ release: 'v2', status: 'green' }, 'admin');
        } finally {
          await gate.close();
          await store.close();
        }
      };
      // Not granted yet: fails closed, nothing recorded.
      await expect(record()).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
        message: expect.stringMatching(
          /lacks the grants of schema version 6: run killswitch db grant/,
        ),
      });
      await as(owner, servingRoleGrantsSql(schema, serve));
      expect((await record()).seq).toBe(1);
    });

    it('KS-17.7.11 upgrades a version-6 schema to 7 (writer, signatures latch): the owner adds them; the serving role refuses to, must be granted again before it serves with a key, and then cannot append unsigned', async () => {
      const { schema, owner, serve, s } = await setup();
      // What a version-6 library left: no writer columns, no require_signatures().
      await admin(`DROP FUNCTION ${s}.require_signatures()`);
      await admin(`ALTER TABLE ${s}.flips DROP COLUMN writer`);
      await admin(`ALTER TABLE ${s}.releases DROP COLUMN writer`);
      await admin(`UPDATE ${s}.meta SET value = '6' WHERE key = 'schema_version'`);
      const key = SigningKey.generate();
      const bySrv = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
      await expect(bySrv.open()).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
        message: expect.stringMatching(/version 6 .*needs 7.*as the schema's owner/),
      });
      await bySrv.close();
      const byOwner = new PostgresFlipLogStore({ connectionString: urlAs(owner), schema });
      await byOwner.open();
      await byOwner.close();
      expect(await admin(`SELECT value FROM ${s}.meta WHERE key = 'schema_version'`)).toEqual([
        { value: '7' },
      ]);
      // The record from before keeps writer NULL; nothing latched yet (no key opened the log).
      expect(await admin(`SELECT seq::int AS seq, writer FROM ${s}.flips ORDER BY seq`)).toEqual([
        { seq: 1, writer: null },
      ]);
      expect(await admin(`SELECT key FROM ${s}.meta WHERE key LIKE '%signed_after'`)).toEqual([]);
      // With a key, a serving role not granted again refuses to run (it could not set the latch).
      const ungranted = new PostgresFlipLogStore({
        connectionString: urlAs(serve),
        schema,
        signingKey: key,
      });
      await expect(ungranted.open()).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
        message: expect.stringMatching(/require_signatures\(\).*grants of schema version 7/),
      });
      await ungranted.close();
      await as(owner, servingRoleGrantsSql(schema, serve));
      const keyed = new PostgresFlipLogStore({
        connectionString: urlAs(serve),
        schema,
        signingKey: key,
      });
      await keyed.open();
      expect(
        await admin(`SELECT key, value FROM ${s}.meta WHERE key LIKE '%signed_after' ORDER BY key`),
      ).toEqual([
        { key: 'flips_signed_after', value: '1' },
        { key: 'releases_signed_after', value: '0' },
      ]);
      // The serving role's credentials without the key: an unsigned record is refused.
      const head = (await keyed.read()).at(-1)!;
      const err = (await as(
        serve,
        `SELECT ${s}.append_flip(2, 'forged', '2026-01-01T00:00:00.000Z', 'admin', 'resume', '{}'::jsonb, 'x', NULL, NULL, NULL, '${head.hash}', encode(sha256(convert_to('{"prev":"${head.hash}","seq":2}', 'UTF8')), 'hex'), '{"prev":"${head.hash}","seq":2}', NULL)`,
      ).catch((e: unknown) => e)) as { code?: string; message?: string };
      expect(err.code).toBe('KS001');
      expect(err.message).toMatch(
        /flip seq 2: not signed, though a control plane with a signing key requires signatures after seq 1/,
      );
      const { record } = await keyed.append({
        actor: 'x',
        action: 'halt',
        selector: {},
        reason: 'r',
      });
      expect(record.seq).toBe(2);
      await keyed.close();
      expect(
        await admin(
          `SELECT seq::int AS seq, writer, sig IS NOT NULL AS signed FROM ${s}.flips ORDER BY seq`,
        ),
      ).toEqual([
        { seq: 1, writer: null, signed: false },
        { seq: 2, writer: serve, signed: true },
      ]);
      // A store without keys reading the log applies the latch too (KS-17.7.11).
      const reader = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
      expect((await reader.read()).map((r) => r.seq)).toEqual([1, 2]);
      await reader.close();
    });

    it("upgrades a version-4 schema to 5 (signatures): the owner's next open adds the column and the function; the serving role cannot upgrade and must be granted again", async () => {
      const { schema, owner, serve, s } = await setup();
      // What a version-4 library left: no sig column, append_flip without p_sig, granted.
      const v5Args =
        'bigint, text, text, text, text, jsonb, text, text, text, text, text, text, text, text';
      const v4Args =
        'bigint, text, text, text, text, jsonb, text, text, text, text, text, text, text';
      await admin(`DROP FUNCTION ${s}.append_flip(${v5Args})`);
      await admin(`ALTER TABLE ${s}.flips DROP COLUMN sig`);
      await admin(
        `CREATE FUNCTION ${s}.append_flip(p_seq bigint, p_id text, p_at text, p_actor text, p_action text, p_selector jsonb, p_reason text, ` +
          `p_mode text, p_release text, p_source text, p_prev text, p_hash text, p_body text) RETURNS void ` +
          `LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN ` +
          `INSERT INTO ${s}.flips (seq, id, at, actor, action, selector, reason, mode, release, source, prev, hash, body) ` +
          `VALUES (p_seq, p_id, p_at, p_actor, p_action, p_selector, p_reason, p_mode, p_release, p_source, p_prev, p_hash, p_body); END $fn$`,
      );
      await admin(`ALTER FUNCTION ${s}.append_flip(${v4Args}) OWNER TO "${owner}"`);
      await admin(`GRANT EXECUTE ON FUNCTION ${s}.append_flip(${v4Args}) TO "${serve}"`);
      await admin(`UPDATE ${s}.meta SET value = '4' WHERE key = 'schema_version'`);

      const bySrv = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
      await expect(bySrv.open()).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
        message: expect.stringMatching(/as the schema's owner/),
      });
      await bySrv.close();
      const byOwner = new PostgresFlipLogStore({ connectionString: urlAs(owner), schema });
      await byOwner.open();
      await byOwner.close();
      expect(await admin(`SELECT value FROM ${s}.meta WHERE key = 'schema_version'`)).toEqual([
        { value: String(SCHEMA_VERSION) },
      ]);
      // The old function is gone with its grant: the serving role must be granted again.
      const key = SigningKey.generate();
      const ungranted = new PostgresFlipLogStore({
        connectionString: urlAs(serve),
        schema,
        signingKey: key,
      });
      await expect(
        ungranted.append({ actor: 'x', action: 'halt', selector: {}, reason: 'r' }),
      ).rejects.toMatchObject({ code: 'KS_STORE_UNAVAILABLE' });
      await ungranted.close();
      await as(owner, servingRoleGrantsSql(schema, serve));
      const again = new PostgresFlipLogStore({
        connectionString: urlAs(serve),
        schema,
        signingKey: key,
      });
      expect(
        (await again.append({ actor: 'x', action: 'halt', selector: {}, reason: 'r' })).record.seq,
      ).toBe(2);
      await again.close();
      // The record from before the upgrade stays unsigned; the new one is signed and verifies,
      // carrying the chain back over seq 1.
      const rows = await admin<{ seq: string; sig: string | null }>(
        `SELECT seq::text AS seq, sig FROM ${s}.flips ORDER BY seq`,
      );
      expect(rows.map((r) => [r.seq, r.sig === null])).toEqual([
        ['1', true],
        ['2', false],
      ]);
      const checker = new PostgresFlipLogStore({
        connectionString: urlAs(serve),
        schema,
        publicKeys: PublicKeyRing.of(key),
      });
      expect((await checker.read()).map((r) => r.seq)).toEqual([1, 2]);
      await checker.close();
    });
  },
);
