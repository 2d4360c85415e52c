import type pg from 'pg';
import { canonicalJson } from '../../src/model/canonical-json.js';
import type { ReleaseRecord } from '../../src/protocol/releases.js';
import type { SharedReleaseLog } from '../../src/store/release-log.js';
import { sqlState, unavailable } from './internal/pg-errors.js';
import { LOCK_CLASS_RELEASE, appendReleaseCallSql, quoteIdent } from './internal/schema-sql.js';

/** What {@link PostgresReleaseLog} needs from its store. */
export interface PostgresReleaseLogOptions {
  readonly schema: string;
  /** A pooled client carrying the store's error handler. */
  readonly connect: () => Promise<pg.PoolClient>;
  readonly statementTimeoutMs: number;
  /** Throws when the store was closed or failed. */
  readonly checkUsable: () => void;
}

interface ReleaseRow {
  readonly seq: string;
  readonly hash: string;
  readonly body: string;
  readonly sig: string | null;
}

/**
 * The release verdicts of one PostgreSQL schema (KS-8.9, table `releases`, schema version 6),
 * shared by every replica on it. Appends hold a transaction-scoped advisory lock of their own, so
 * two replicas recording at once chain one after the other; the table's triggers refuse anything
 * that does not extend the chain, and nothing can be updated or deleted.
 */
export class PostgresReleaseLog implements SharedReleaseLog {
  readonly description: string;
  readonly #o: PostgresReleaseLogOptions;
  readonly #table: string;

  constructor(options: PostgresReleaseLogOptions) {
    this.#o = options;
    this.#table = `${quoteIdent(options.schema)}.releases`;
    this.description = `postgres schema ${options.schema}, table releases`;
  }

  async read(afterSeq: number): Promise<ReleaseRecord[]> {
    this.#o.checkUsable();
    const client = await this.#o.connect();
    try {
      const rows = await this.#select(client, afterSeq);
      client.release();
      return rows;
    } catch (err) {
      client.release(true);
      throw unavailable(
        `could not read the release verdicts of ${this.#o.schema}${grantHint(err)}`,
        err,
      );
    }
  }

  async append(
    afterSeq: number,
    make: (newer: readonly ReleaseRecord[]) => ReleaseRecord,
  ): Promise<{ newer: readonly ReleaseRecord[]; record: ReleaseRecord }> {
    const { newer, records } = await this.appendAll(afterSeq, (n) => [make(n)]);
    return { newer, record: records[0]! };
  }

  async appendAll(
    afterSeq: number,
    make: (newer: readonly ReleaseRecord[]) => readonly ReleaseRecord[],
  ): Promise<{ newer: readonly ReleaseRecord[]; records: readonly ReleaseRecord[] }> {
    this.#o.checkUsable();
    const client = await this.#o.connect();
    let began = false;
    try {
      await client.query('BEGIN');
      began = true;
      await client.query(`SET LOCAL statement_timeout = ${this.#o.statementTimeoutMs}`);
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
        LOCK_CLASS_RELEASE,
        this.#o.schema,
      ]);
      const newer = await this.#select(client, afterSeq);
      const records = make(newer);
      for (const record of records) {
        const { hash, sig, ...rest } = record;
        if (hash === undefined || record.prev === undefined) {
          throw new Error(`release verdict seq ${record.seq} is not chained`);
        }
        await client.query(appendReleaseCallSql(this.#o.schema), [
          String(record.seq),
          record.prev,
          hash,
          canonicalJson(rest),
          sig ?? null,
        ]);
      }
      await client.query('COMMIT');
      client.release();
      return { newer, records };
    } catch (err) {
      if (began) await client.query('ROLLBACK').catch(() => undefined);
      client.release(true);
      throw unavailable(
        `could not record a release verdict in ${this.#o.schema}${grantHint(err)}`,
        err,
      );
    }
  }

  async #select(client: pg.PoolClient, afterSeq: number): Promise<ReleaseRecord[]> {
    const res = await client.query<ReleaseRow>(
      `SELECT r.seq::text AS seq, r.hash, r.body, r.sig FROM ${this.#table} r WHERE r.seq > $1::bigint ORDER BY r.seq`,
      [String(afterSeq)],
    );
    return res.rows.map((row) => decodeRelease(row));
  }
}

/** KS-8.9.1 a serving role granted before schema version 6 holds no rights on `releases` yet. */
function grantHint(err: unknown): string {
  return sqlState(err) === '42501'
    ? ' (the serving role lacks the grants of schema version 6: run killswitch db grant, or servingRoleGrantsSql, as the owner)'
    : '';
}

/**
 * A row back into the verdict it stores: the body, its hash and signature. Unchecked: the gate
 * validates the fields and the chain (a row whose body names another seq breaks the chain there).
 */
function decodeRelease(row: ReleaseRow): ReleaseRecord {
  let body: unknown;
  try {
    body = JSON.parse(row.body);
  } catch {
    body = { seq: Number(row.seq) };
  }
  const fields = typeof body === 'object' && body !== null ? body : { seq: Number(row.seq) };
  return {
    ...(fields as ReleaseRecord),
    hash: row.hash,
    ...(row.sig === null ? {} : { sig: row.sig }),
  };
}
