/**
 * Shared set-up of the PostgreSQL tests: the server URL, whether the tests run, schema names of
 * their own, and an admin connection for what only a test may do (drop, tamper, terminate).
 *
 * The server is 127.0.0.1:5432, user postgres, database test (override with KS_PG_URL). When it is
 * missing the tests are skipped locally but run, and so fail, when CI=true. KS-8.7.1
 */
import pg from 'pg';

/** The server the tests use. */
export const PG_URL = process.env['KS_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** True when CI=true: a missing PostgreSQL must fail the tests there, never skip them. */
export const IN_CI = process.env['CI'] === 'true';

async function reachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Whether PostgreSQL answered when the test file loaded. */
export const PG_UP = await reachable();

/** Run the PostgreSQL tests when the server is up, and always in CI (where they then fail). */
export const RUN_PG = PG_UP || IN_CI;

let counter = 0;
/** A schema name no other test file or run uses (`tag` names the test file). */
export function schemaName(tag: string): string {
  counter += 1;
  return `ks_t_${tag}_${process.pid}_${counter}`.toLowerCase().slice(0, 48);
}

/** Runs one statement as the (superuser) test role on its own short-lived connection. */
export async function admin<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Drops the schemas (and everything in them); ignores ones that do not exist. */
export async function dropSchemas(names: Iterable<string>): Promise<void> {
  const list = [...names];
  if (list.length === 0 || !PG_UP) return;
  await admin(`DROP SCHEMA IF EXISTS ${list.map((n) => `"${n}"`).join(', ')} CASCADE`);
}

/** Polls (no fixed sleep) until `cond` holds; fails naming `what` after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
