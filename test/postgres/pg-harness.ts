/**
 * Shared set-up of the PostgreSQL tests: the server URL, whether the tests run, schema names of
 * their own, and an admin connection for what only a test may do (drop, tamper, terminate).
 *
 * The server is 127.0.0.1:5432, user postgres, database test (override with KS_PG_URL). When it is
 * missing the tests are skipped locally but run, and so fail, when CI=true. KS-8.7.1
 */
import { connect, createServer, type Socket } from 'node:net';
import pg from 'pg';
import { insertParams } from '../../providers/postgres/internal/row-codec.js';
import { appendCallSql } from '../../providers/postgres/internal/schema-sql.js';
import {
  chainRecord,
  parseFlipInput,
  type FlipInput,
  type FlipRecord,
} from '../../src/model/flip-record.js';

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

/** A TCP proxy to the test server that a test can cut (every connection dropped) and restore. */
export interface CuttableProxy {
  /** The URL of {@link PG_URL} with host and port replaced by the proxy's. */
  readonly url: string;
  /** Drops every proxied connection and stops accepting new ones. */
  cut(): Promise<void>;
  /** Accepts connections again on the same port. */
  restore(): Promise<void>;
  /** Cuts and forgets the proxy. */
  close(): Promise<void>;
}

/** Starts a {@link CuttableProxy} on a random loopback port. */
export async function startProxy(): Promise<CuttableProxy> {
  const target = new URL(PG_URL);
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(Number(target.port || 5432), target.hostname);
    sockets.add(down).add(up);
    const drop = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.pipe(up).pipe(down);
  });
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
      });
    });
  const port = await listen(0);
  const url = new URL(PG_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  let listening = true;
  const cut = async () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (listening) {
      listening = false;
      await new Promise<void>((r) => server.close(() => r()));
    }
  };
  return {
    url: url.toString(),
    cut,
    restore: async () => {
      if (!listening) {
        await listen(port);
        listening = true;
      }
    },
    close: cut,
  };
}

/**
 * What someone who can write the database but does not hold the signing key can append (the
 * superuser by default, or the serving role given its `connectionString`): a record that extends the chain exactly (seq, prev, hash, body all right),
 * claiming any actor, with the signature given (or none), through the owner's `append_flip`.
 * `triggersOff` turns every trigger off for its transaction, as a superuser can. KS-17.7.8
 */
export async function forgeRecord(
  schema: string,
  head: { readonly seq: number; readonly hash: string },
  sig: string | undefined,
  options: {
    readonly triggersOff?: boolean;
    readonly flip?: Partial<FlipInput>;
    /** Whose credentials forge it. @default {@link PG_URL} (the superuser) */
    readonly connectionString?: string;
  } = {},
): Promise<FlipRecord> {
  const record = chainRecord(
    parseFlipInput({
      id: 'forged-resume',
      actor: 'admin',
      action: 'resume',
      selector: { tenant: 'acme' },
      reason: 'nothing to see',
      release: 'v1',
      ...options.flip,
    }),
    head,
    new Date(),
  );
  const client = new pg.Client({
    connectionString: options.connectionString ?? PG_URL,
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('BEGIN');
    if (options.triggersOff === true) {
      await client.query('SET LOCAL session_replication_role = replica');
    }
    await client.query(appendCallSql(schema), insertParams(record, sig));
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
  return record;
}
