import pg from 'pg';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../../src/errors.js';
import {
  EffectStatus,
  foldLedgerEvents,
  matchesFilter,
  parseLedgerEvent,
  type LedgerEntry,
  type LedgerEvent,
  type LedgerFilter,
  type SideEffectLedger,
} from '../../src/ledger/side-effect-ledger.js';

/** Options of {@link PostgresSideEffectLedger}. Give exactly one of `connectionString` and `pool`. */
export interface PostgresSideEffectLedgerOptions {
  /**
   * `postgres://user@host:5432/db`; a `schema` query parameter (`?schema=ks_prod`) sets
   * {@link PostgresSideEffectLedgerOptions.schema}. The ledger owns the pool it creates.
   */
  readonly connectionString?: string;
  /** A pool of your own (the ledger never ends it). */
  readonly pool?: pg.Pool;
  /**
   * The schema holding the table `ledger_events`: lower-case letters, digits and `_`, at most 48
   * characters, not starting with `pg_`. Workers that share a ledger use the same schema.
   * @default 'killswitch'
   */
  readonly schema?: string;
}

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,47}$/;
// Advisory lock class of this table's creation (the flip store uses its own classes).
const LOCK_CLASS_MIGRATE = 0x4b534c;

/**
 * The side-effect ledger in PostgreSQL: one insert-only row per event (a trigger refuses UPDATE
 * and DELETE), folded per key exactly like the file ledger. `append` resolves only after its
 * INSERT committed, so an intent is durable before its effect is dispatched; any number of worker
 * processes may append at once. Loaded only through the `providers/postgres-ledger` subpath, so
 * the `pg` driver never loads with the main entry. KS-10.3
 *
 * @example
 * ```ts
 * import { PostgresSideEffectLedger } from 'openfeature-kill-switch/providers/postgres-ledger';
 * const ledger = new PostgresSideEffectLedger({ connectionString: process.env.DATABASE_URL });
 * await ledger.open();
 * const guard = new EffectGuard({ client, ledger });
 * ```
 */
export class PostgresSideEffectLedger implements SideEffectLedger {
  readonly schema: string;
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #table: string;
  #opening: Promise<void> | undefined;
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` (the message never echoes a password) */
  constructor(options: PostgresSideEffectLedgerOptions) {
    const { connectionString, pool } = options ?? {};
    if ((connectionString === undefined) === (pool === undefined)) {
      throw new InvalidOptionError(
        'connectionString',
        'exactly one of connectionString and pool',
        connectionString === undefined ? 'neither' : 'both',
      );
    }
    let fromUrl: string | undefined;
    if (connectionString !== undefined) {
      let u: URL;
      try {
        if (typeof connectionString !== 'string') throw new TypeError('not a string');
        u = new URL(connectionString);
      } catch {
        throw new InvalidOptionError('connectionString', 'a postgres:// URL', '(unparseable)');
      }
      if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
        throw new InvalidOptionError('connectionString', 'a postgres:// URL', u.protocol);
      fromUrl = u.searchParams.get('schema') ?? undefined;
    }
    if (fromUrl !== undefined && options.schema !== undefined && fromUrl !== options.schema)
      throw new InvalidOptionError(
        'schema',
        `the schema the URL names (${fromUrl})`,
        options.schema,
      );
    const schema = options.schema ?? fromUrl ?? 'killswitch';
    if (typeof schema !== 'string' || !SCHEMA_RE.test(schema) || schema.startsWith('pg_')) {
      throw new InvalidOptionError(
        'schema',
        'lower-case letters, digits and _, at most 48 characters, not starting with pg_',
        schema,
      );
    }
    this.schema = schema;
    this.#table = `"${schema}".ledger_events`;
    if (pool !== undefined) {
      if (typeof pool.query !== 'function') throw new InvalidOptionError('pool', 'a pg.Pool', pool);
      this.#pool = pool;
      this.#ownsPool = false;
    } else {
      const u = new URL(connectionString!);
      u.searchParams.delete('schema');
      this.#pool = new pg.Pool({
        connectionString: u.href,
        max: 4,
        connectionTimeoutMillis: 5000,
        application_name: `killswitch-ledger:${schema}`,
      });
      // An idle client's error would otherwise crash the process; the next query reports it.
      this.#pool.on('error', () => undefined);
      this.#ownsPool = true;
    }
  }

  /**
   * Creates the schema and table if needed (under an advisory lock, so workers may start at
   * once); idempotent. Other methods open on first use. KS-10.3.2
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  open(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    this.#opening ??= this.#migrate().catch((err: unknown) => {
      this.#opening = undefined;
      throw unavailable('could not prepare the ledger table', err);
    });
    return this.#opening;
  }

  async #migrate(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, [
        LOCK_CLASS_MIGRATE,
        this.schema,
      ]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
      await client.query(`
        CREATE TABLE IF NOT EXISTS ${this.#table} (
          id bigserial PRIMARY KEY,
          key text NOT NULL,
          status text NOT NULL,
          run_id text,
          capability text,
          at timestamptz NOT NULL,
          event jsonb NOT NULL
        )`);
      await client.query(
        `CREATE INDEX IF NOT EXISTS ledger_events_key ON ${this.#table} (key, id)`,
      );
      await client.query(
        `CREATE INDEX IF NOT EXISTS ledger_events_run ON ${this.#table} (run_id, id)`,
      );
      // KS-10.3.2 events are appended, never changed: refuse UPDATE, DELETE and TRUNCATE.
      await client.query(`
        CREATE OR REPLACE FUNCTION "${this.schema}".ledger_events_insert_only() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
          RAISE EXCEPTION 'the side-effect ledger is insert-only';
        END $$`);
      await client.query(`DROP TRIGGER IF EXISTS ledger_events_insert_only ON ${this.#table}`);
      await client.query(`
        CREATE TRIGGER ledger_events_insert_only BEFORE UPDATE OR DELETE ON ${this.#table}
        FOR EACH ROW EXECUTE FUNCTION "${this.schema}".ledger_events_insert_only()`);
      await client.query(`DROP TRIGGER IF EXISTS ledger_events_no_truncate ON ${this.#table}`);
      await client.query(`
        CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ${this.#table}
        FOR EACH STATEMENT EXECUTE FUNCTION "${this.schema}".ledger_events_insert_only()`);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /**
   * Appends an event; resolves after its INSERT committed. KS-10.3.2
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing stored)
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  async append(event: LedgerEvent): Promise<void> {
    const e = parseLedgerEvent(event);
    let json: string;
    try {
      json = JSON.stringify(e);
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_INPUT,
        `ledger event not JSON-serialisable: ${(err as Error).message}`,
      );
    }
    await this.open();
    if (this.#closed) throw closedError();
    try {
      await this.#pool.query(
        `INSERT INTO ${this.#table} (key, status, run_id, capability, at, event) VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
        [e.key, e.status, e.runId ?? null, e.capability ?? null, e.at, json],
      );
    } catch (err) {
      throw unavailable('cannot append', err);
    }
  }

  /** Entries folded per key (the guard's `{ key }` lookup reads one key's rows by index). */
  async entries(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    await this.open();
    if (this.#closed) throw closedError();
    let where = '';
    const params: unknown[] = [];
    if (filter?.key !== undefined) {
      params.push(filter.key);
      where = 'WHERE key = $1';
    } else if (filter?.runId !== undefined) {
      // Every event of a key carries the same runId (the guard writes it on each), so reading a
      // run's rows reads whole keys.
      params.push(filter.runId);
      where = 'WHERE run_id = $1';
    }
    const rows = await this.#select(where, params);
    return foldLedgerEvents(rows).filter((entry) => matchesFilter(entry, filter));
  }

  /**
   * Entries in doubt (last status `intent` or `aborted`), found in SQL from each key's last row.
   * KS-10.3.3
   */
  async inDoubt(filter?: LedgerFilter): Promise<LedgerEntry[]> {
    await this.open();
    if (this.#closed) throw closedError();
    const rows = await this.#select(
      `WHERE key IN (
         SELECT key FROM (
           SELECT DISTINCT ON (key) key, status FROM ${this.#table} ORDER BY key, id DESC
         ) last WHERE status IN ('${EffectStatus.INTENT}', '${EffectStatus.ABORTED}'))`,
      [],
    );
    return foldLedgerEvents(rows).filter((e) => e.inDoubt && matchesFilter(e, filter));
  }

  async #select(where: string, params: unknown[]): Promise<LedgerEvent[]> {
    let res: pg.QueryResult<{ event: unknown }>;
    try {
      res = await this.#pool.query<{ event: unknown }>(
        `SELECT event FROM ${this.#table} ${where} ORDER BY id`,
        params,
      );
    } catch (err) {
      throw unavailable('cannot read', err);
    }
    // Rows were validated on the way in; validating again refuses a row someone forged by hand.
    return res.rows.map((r) => parseLedgerEvent(r.event));
  }

  /** Ends the pool it created (not one passed in). Idempotent; later calls reject `KS_STORE_CLOSED`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#opening?.catch(() => undefined);
    if (this.#ownsPool) await this.#pool.end().catch(() => undefined);
  }
}

function closedError(): KillSwitchError {
  return new KillSwitchError(ErrorCode.STORE_CLOSED, 'side-effect ledger is closed');
}

function unavailable(what: string, err: unknown): KillSwitchError {
  if (err instanceof KillSwitchError) return err;
  const detail = err instanceof Error ? `: ${err.message}` : '';
  return new KillSwitchError(
    ErrorCode.STORE_UNAVAILABLE,
    `postgres side-effect ledger: ${what}${detail}`,
    { cause: err },
  );
}
