/**
 * KS-17.7.7 `killswitch db grant`: prints the serving role's grants, or (as the owner, --apply)
 * creates the schema and grants them; the serving role then serves and cannot rewrite history.
 * Real roles, made per test; the built CLI.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore, servingRoleGrantsSql } from '../../providers/postgres/index.js';
import { runCli } from '../fixtures/run-cli.js';
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

function urlAs(role: string, schema?: string): string {
  const u = new URL(PG_URL);
  u.username = role;
  u.password = '';
  if (schema !== undefined) u.searchParams.set('schema', schema);
  return u.href;
}

describe('KS-17.7.7 killswitch db grant prints the grants', () => {
  it('docs/security.md shows exactly the grants it prints', async () => {
    const { readFile } = await import('node:fs/promises');
    const doc = await readFile('docs/security.md', 'utf8');
    const inDoc = doc
      .split('\n')
      .filter((l) => l.startsWith('GRANT ') && l.includes('"killswitch_serve"'));
    const printed = servingRoleGrantsSql('killswitch', 'killswitch_serve').trim().split('\n');
    expect(inDoc).toEqual(printed);
  });

  it('prints exactly servingRoleGrantsSql for the role and schema', async () => {
    const run = await runCli(['db', 'grant', '--role', 'ks_serve', '--schema', 'ks_prod']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(servingRoleGrantsSql('ks_prod', 'ks_serve').trim());
    expect(run.stdout).toMatch(/GRANT EXECUTE ON FUNCTION "ks_prod"\.append_flip\(/);
    expect(run.stdout).not.toMatch(/GRANT[^;]*\b(INSERT|UPDATE|DELETE|TRUNCATE)\b[^;]*\.flips\b/);
  });

  it("takes the schema from the URL's ?schema= and refuses bad names and a missing role", async () => {
    const fromUrl = await runCli([
      'db',
      'grant',
      '--role',
      'ks_serve',
      '--store',
      'postgres://owner@db.example/app?schema=ks_eu',
      '--json',
    ]);
    expect(fromUrl.code).toBe(0);
    expect(JSON.parse(fromUrl.stdout)).toMatchObject({
      schema: 'ks_eu',
      role: 'ks_serve',
      applied: false,
    });
    const bad = await runCli(['db', 'grant', '--role', 'Robert"; DROP TABLE x; --']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/lower-case names/);
    const none = await runCli(['db', 'grant']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--role <name> is required/);
    const noStore = await runCli(['db', 'grant', '--role', 'r', '--apply']);
    expect(noStore.code).toBe(2);
    expect(noStore.stderr).toMatch(/--apply needs --store/);
  });
});

describe.runIf(RUN_PG)('KS-17.7.7 killswitch db grant --apply, with real roles', () => {
  it('as the owner: creates the schema and grants; the serving role appends but cannot delete', async () => {
    const schema = schemaName('dbgrant');
    const tag = schema.slice(-12);
    const owner = `ks_own_${tag}`;
    const serve = `ks_srv_${tag}`;
    made.push({ schema, roles: [owner, serve] });
    const db = new URL(PG_URL).pathname.slice(1);
    await admin(`CREATE ROLE "${owner}" LOGIN`);
    await admin(`CREATE ROLE "${serve}" LOGIN`);
    await admin(`GRANT CREATE ON DATABASE "${db}" TO "${owner}"`);

    // Before the grants the serving role cannot even open the log.
    const before = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
    await expect(before.open()).rejects.toMatchObject({ code: 'KS_STORE_UNAVAILABLE' });
    await before.close();

    const run = await runCli([
      'db',
      'grant',
      '--role',
      serve,
      '--store',
      urlAs(owner, schema),
      '--apply',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`granted ${serve} .* schema ${schema}`));

    const store = new PostgresFlipLogStore({ connectionString: urlAs(serve), schema });
    const { record } = await store.append({
      actor: 'oncall',
      action: 'halt',
      selector: { tenant: 'a' },
      reason: 'INC-1',
    });
    expect(record.seq).toBe(1);
    await store.close();
    const c = new pg.Client({ connectionString: urlAs(serve), connectionTimeoutMillis: 5000 });
    c.on('error', () => undefined);
    await c.connect();
    try {
      const err = (await c.query(`DELETE FROM "${schema}".flips`).catch((e: unknown) => e)) as {
        code?: string;
      };
      expect(err.code).toBe('42501');
    } finally {
      await c.end();
    }
    const owners = await admin<{ tableowner: string }>(
      'SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = $2',
      [schema, 'flips'],
    );
    expect(owners[0]!.tableowner).toBe(owner);
  });

  it('refused when the URL is not the owner: exit 1, nothing granted', async () => {
    const schema = schemaName('dbgrant');
    const tag = schema.slice(-12);
    const owner = `ks_own_${tag}`;
    const other = `ks_oth_${tag}`;
    const serve = `ks_srv_${tag}`;
    made.push({ schema, roles: [owner, other, serve] });
    const db = new URL(PG_URL).pathname.slice(1);
    for (const r of [owner, other, serve]) await admin(`CREATE ROLE "${r}" LOGIN`);
    await admin(`GRANT CREATE ON DATABASE "${db}" TO "${owner}"`);
    const ownerStore = new PostgresFlipLogStore({ connectionString: urlAs(owner), schema });
    await ownerStore.open();
    await ownerStore.close();
    await admin(`GRANT USAGE ON SCHEMA "${schema}" TO "${other}"`);
    await admin(`GRANT SELECT ON "${schema}".meta, "${schema}".flips TO "${other}"`);
    const run = await runCli([
      'db',
      'grant',
      '--role',
      serve,
      '--store',
      urlAs(other, schema),
      '--apply',
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/nothing was granted/);
    const rows = await admin<{ ok: boolean }>(
      `SELECT has_schema_privilege($1, $2, 'USAGE') AS ok`,
      [serve, schema],
    );
    expect(rows[0]!.ok).toBe(false);
  });
});
