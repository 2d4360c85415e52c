import pg from 'pg';
import {
  ErrorCode,
  InvalidOptionError,
  KillSwitchError,
  LogCorruptError,
} from '../../src/errors.js';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  sameFlip,
  type FlipInput,
  type FlipRecord,
  type NormalizedFlip,
} from '../../src/model/flip-record.js';
import { delay } from '../../src/internal/backoff.js';
import {
  Divergence,
  LogDivergedError,
  MAX_LOG_ID_LENGTH,
  divergence,
  type LogPosition,
} from '../../src/protocol/log-position.js';
import { isIdText } from '../../src/protocol/text.js';
import { isClock, systemClock, type Clock } from '../../src/internal/clock.js';
import { Mutex } from '../../src/internal/mutex.js';
import type {
  AppendResult,
  FlipLogStore,
  LogHead,
  ReadOptions,
  RecordListener,
} from '../../src/store/flip-log-store.js';
import type {
  FleetChannel,
  FleetChannelOptions,
  FleetChannelStore,
} from '../../src/store/fleet-channel.js';
import { UNIQUE_VIOLATION, sqlState, unavailable } from './internal/pg-errors.js';

/** SQLSTATE insufficient_privilege. */
const INSUFFICIENT_PRIVILEGE = '42501';
import { PostgresFleetChannel } from './postgres-fleet-channel.js';
import { PostgresReleaseLog } from './postgres-release-log.js';
import type { ReleaseLogStore, SharedReleaseLog } from '../../src/store/release-log.js';
import { decodeRows, insertParams, seqOf, type FlipRow } from './internal/row-codec.js';
import {
  LOCK_CLASS_APPEND,
  LOCK_CLASS_MIGRATE,
  RECORD_COLUMNS,
  SCHEMA_VERSION,
  appendCallSql,
  channelOf,
  migrationSql,
  quoteIdent,
  requireSignaturesCallSql,
} from './internal/schema-sql.js';
import { intOption } from '../../src/internal/int-option.js';
import { PublicKeyRing, type SigningKey } from '../../src/integrity/signing-key.js';
import {
  attachSignature,
  checkRecordSignature,
  signRecord,
} from '../../src/integrity/record-signatures.js';

/** Options of {@link PostgresFlipLogStore}. Give exactly one of `connectionString` and `pool`. */
export interface PostgresFlipLogStoreOptions {
  /**
   * A `postgres://` or `postgresql://` URL; the store creates (and on `close` ends) its own pool.
   * A `schema` query parameter (`postgres://host/db?schema=ks_prod`) sets {@link schema}.
   */
  readonly connectionString?: string;
  /** An existing pool; the store never ends it. One of its connections is held while subscribed. */
  readonly pool?: pg.Pool;
  /**
   * The PostgreSQL schema holding the log: lower-case letters, digits and `_`, at most 48
   * characters, not starting with `pg_`. Replicas that share a log use the same schema.
   * @default 'killswitch'
   */
  readonly schema?: string;
  /**
   * Clock: its wall-clock reading stamps each record's `at` and the follow status' `caughtUpAt`;
   * its timers run the catch-up poll and the LISTEN reconnects. @default systemClock, with timers
   * that do not keep the process alive
   */
  readonly clock?: Clock;
  /** Where warnings go (listener lost, catch-up failed, corruption found while following). @default console */
  readonly logger?: { warn(msg: string): void };
  /**
   * While someone is subscribed, read the log by seq this often even without a notification, so
   * a lost notification delays delivery by at most this long. KS-8.5.4
   * @default 1000 (ms)
   */
  readonly pollIntervalMs?: number;
  /**
   * Server-side `statement_timeout` of the store's statements (including the wait for the append
   * lock); an append never waits longer than this before failing with `KS_STORE_UNAVAILABLE`.
   * @default 10000 (ms)
   */
  readonly statementTimeoutMs?: number;
  /** Longest wait for a new connection of the store's own pool. @default 5000 (ms) */
  readonly connectTimeoutMs?: number;
  /** Most connections of the store's own pool (ignored with `pool`). @default 10 */
  readonly poolSize?: number;
  /**
   * Most appends written in one transaction (group commit); 1 writes each alone. KS-8.3.4
   * @default 64
   */
  readonly maxBatch?: number;
  /** Longest back-off between attempts to re-establish the LISTEN connection. @default 5000 (ms) */
  readonly reconnectMaxMs?: number;
  /**
   * Sign every record this store appends, in the same transaction (KS-17.7.2, the `sig` column);
   * its public key also checks what the store reads. Keep it out of the database's reach: a
   * record the serving role (or anyone who can write the database) inserts without it is refused
   * by every store that checks (KS-17.7.3). @default unsigned
   */
  readonly signingKey?: SigningKey;
  /**
   * Public keys a record's signature may verify under (KS-17.7.3): opening and reads check the
   * last signed record (the chain carries it back), following checks each record delivered, and
   * a record that fails refuses the store (`KS_LOG_CORRUPT` naming its seq). Without keys, only
   * the presence rule holds (no unsigned record after a signed one).
   * @default the signing key's public key, if any
   */
  readonly publicKeys?: PublicKeyRing;
}

/**
 * How a store follows the log for its subscribers, for health checks: a control plane that
 * serves the stream SHOULD stop vouching for its state (fail closed) when `caughtUpAt` is older
 * than its staleness bound or `state` is `failed`. KS-8.5.6
 */
export interface PostgresFollowStatus {
  /**
   * `idle` (no subscriber), `connecting` / `backoff` (the LISTEN connection is down; the poll
   * still catches up), `listening`, `failed` (a corrupt chain was found), `closed`.
   */
  readonly state: 'idle' | 'connecting' | 'listening' | 'backoff' | 'failed' | 'closed';
  /** When a read by seq last succeeded (store clock, ISO 8601); undefined before the first. */
  readonly caughtUpAt: string | undefined;
  /**
   * How long ago a read by seq last succeeded, ms on the store's monotonic clock (KS-12.5.4);
   * undefined before the first. Staleness is judged by this, never by `caughtUpAt`, a wall-clock
   * label that a step of the system time moves.
   */
  readonly caughtUpAgeMs: number | undefined;
  /** The seq of the record delivered to subscribers last (or skipped to while idle). */
  readonly deliveredSeq: number;
  /** Why the store failed (state `failed`): the corruption or the divergence it found. */
  readonly failure?: string;
}

/** An append waiting for the store's writer. */
interface PendingAppend {
  readonly flip: NormalizedFlip;
  resolve(result: AppendResult): void;
  reject(err: unknown): void;
}

/** Lifecycle of the store. */
const StoreState = {
  NEW: 'new',
  OPEN: 'open',
  /** A corrupt chain was found while following or reading; every call fails with that error. */
  FAILED: 'failed',
  CLOSED: 'closed',
} as const;
type StoreState = (typeof StoreState)[keyof typeof StoreState];

/** Lifecycle of the LISTEN connection that wakes subscribers. */
const ListenState = {
  STOPPED: 'stopped',
  CONNECTING: 'connecting',
  LISTENING: 'listening',
  BACKOFF: 'backoff',
} as const;
type ListenState = (typeof ListenState)[keyof typeof ListenState];

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,47}$/;
const BATCH = 1000;
const RECONNECT_MIN_MS = 100;

/** Pooled clients that already carry the store's error handler (pools reuse clients). */
const guarded = new WeakSet<pg.PoolClient>();

const defaultClock: Clock = {
  ...systemClock,
  setTimeout: (cb, ms) => {
    const t = setTimeout(cb, ms);
    // A store must not keep a process alive on its own; close() clears them anyway.
    t.unref();
    return t;
  },
};

/**
 * The PostgreSQL flip log, shared by several control-plane replicas: an insert-only table with a
 * dense `seq` and the hash chain, appends serialised by a transaction-scoped advisory lock and
 * acknowledged after COMMIT, LISTEN/NOTIFY plus a catch-up read by seq to follow records appended
 * by any process. The schema is created on first `open`. Requirements: spec/KS-8-postgres.md.
 *
 * @example
 * ```ts
 * const store = new PostgresFlipLogStore({ connectionString: 'postgres://postgres@127.0.0.1/app' });
 * await store.open();
 * await store.append({ id: 'inc-42', actor: 'me', action: 'halt', selector: { tenant: 'acme' }, reason: 'incident 42' });
 * ```
 */
export class PostgresFlipLogStore implements FlipLogStore, FleetChannelStore, ReleaseLogStore {
  readonly kind = 'postgres';
  /** The schema holding this log. */
  readonly schema: string;

  readonly #pool: pg.Pool;
  readonly #ownPool: boolean;
  readonly #logger: { warn(msg: string): void };
  readonly #clock: Clock;
  readonly #pollMs: number;
  readonly #statementTimeoutMs: number;
  readonly #reconnectMaxMs: number;
  readonly #table: string;
  readonly #channel: string;
  readonly #key: SigningKey | undefined;
  readonly #ring: PublicKeyRing | undefined;
  /** The first signed record's seq, once one was seen: every record after it must be signed. */
  #signedFrom: number | undefined;
  /**
   * `meta.flips_signed_after` (version 7, KS-17.7.11), read at open: once a control plane with a
   * key opened the log, every record after this seq must be signed.
   */
  #signaturesAfter: number | undefined;

  #state: StoreState = StoreState.NEW;
  #failure: KillSwitchError | undefined;
  #logId = '';
  #opening: Promise<void> | undefined;
  readonly #inflight = new Set<Promise<unknown>>();

  // Following: the last record delivered to subscribers (verified), and the newest verified
  // record this store has seen (its own appends, reads), which idle followers jump to.
  readonly #listeners = new Set<RecordListener>();
  #cursor: LogHead = { seq: 0, hash: GENESIS_HASH };
  #known: LogHead = { seq: 0, hash: GENESIS_HASH };
  readonly #deliverMutex = new Mutex();
  #queuedCatchUp: Promise<void> | undefined;

  // Group commit: appends waiting for the writer, and whether it is running.
  readonly #queue: PendingAppend[] = [];
  #writing = false;
  readonly #maxBatch: number;

  #listenState: ListenState = ListenState.STOPPED;
  #listenClient: pg.PoolClient | undefined;
  #listenGeneration = 0;
  /** Consecutive failed attempts to LISTEN (the backoff's attempt). */
  #reconnectAttempt = 0;
  #reconnectTimer: unknown;
  #pollTimer: unknown;
  #caughtUpAt: string | undefined;
  /** The store clock's monotonic reading at the last catch-up (KS-12.5.4). */
  #caughtUpMono: number | undefined;

  /**
   * @param options - see {@link PostgresFlipLogStoreOptions}
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` naming the bad option
   */
  constructor(options: PostgresFlipLogStoreOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', 'an object', options);
    }
    const { connectionString, pool } = options;
    if (connectionString !== undefined && pool !== undefined) {
      throw new InvalidOptionError(
        'pool',
        'either connectionString or pool, not both',
        '(both given)',
      );
    }
    if (pool === undefined) {
      if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/./.test(connectionString)) {
        throw new InvalidOptionError(
          'connectionString',
          'a postgres:// URL (or give pool)',
          // Never echo a password into an error message.
          typeof connectionString === 'string'
            ? connectionString.replace(/\/\/[^@/]*@/, '//***@')
            : connectionString,
        );
      }
    } else if (
      !(pool instanceof pg.Pool) &&
      typeof (pool as { connect?: unknown }).connect !== 'function'
    ) {
      throw new InvalidOptionError('pool', 'a pg.Pool', pool);
    }
    // `?schema=` in the URL names the schema too, so `killswitch serve --store postgres://…` can pick one.
    const fromUrl = connectionString === undefined ? undefined : splitSchemaParam(connectionString);
    if (
      fromUrl?.schema !== undefined &&
      options.schema !== undefined &&
      fromUrl.schema !== options.schema
    ) {
      throw new InvalidOptionError(
        'schema',
        `the schema the URL names (${fromUrl.schema})`,
        options.schema,
      );
    }
    const schema = options.schema ?? fromUrl?.schema ?? 'killswitch';
    // KS-8.1.3 the name goes into SQL as an identifier: only a safe, validated alphabet.
    if (typeof schema !== 'string' || !SCHEMA_RE.test(schema) || schema.startsWith('pg_')) {
      throw new InvalidOptionError(
        'schema',
        'lower-case letters, digits and _, at most 48 characters, not starting with a digit or pg_',
        schema,
      );
    }
    this.#pollMs = intOption('pollIntervalMs', options.pollIntervalMs ?? 1000, 10, 3_600_000);
    this.#statementTimeoutMs = intOption(
      'statementTimeoutMs',
      options.statementTimeoutMs ?? 10_000,
      100,
      3_600_000,
    );
    const connectTimeoutMs = intOption(
      'connectTimeoutMs',
      options.connectTimeoutMs ?? 5000,
      100,
      600_000,
    );
    const poolSize = intOption('poolSize', options.poolSize ?? 10, 1, 1000);
    this.#maxBatch = intOption('maxBatch', options.maxBatch ?? 64, 1, 1000);
    this.#reconnectMaxMs = intOption(
      'reconnectMaxMs',
      options.reconnectMaxMs ?? 5000,
      RECONNECT_MIN_MS,
      600_000,
    );
    if (options.clock !== undefined && !isClock(options.clock)) {
      throw new InvalidOptionError(
        'clock',
        'a Clock (now, wallNow, setTimeout, clearTimeout)',
        options.clock,
      );
    }
    if (options.logger !== undefined && typeof options.logger?.warn !== 'function') {
      throw new InvalidOptionError('logger', 'an object with warn(msg)', options.logger);
    }
    if (options.signingKey !== undefined && typeof options.signingKey?.sign !== 'function') {
      throw new InvalidOptionError('signingKey', 'a SigningKey', options.signingKey);
    }
    if (options.publicKeys !== undefined && !(options.publicKeys instanceof PublicKeyRing)) {
      throw new InvalidOptionError('publicKeys', 'a PublicKeyRing', options.publicKeys);
    }
    this.#key = options.signingKey;
    this.#ring =
      options.signingKey === undefined
        ? options.publicKeys
        : (options.publicKeys?.including(options.signingKey) ??
          PublicKeyRing.of(options.signingKey));
    this.schema = schema;
    this.#table = `${quoteIdent(schema)}.flips`;
    this.#channel = channelOf(schema);
    this.#logger = options.logger ?? { warn: (m) => console.warn(m) };
    this.#clock = options.clock ?? defaultClock;
    if (pool !== undefined) {
      this.#pool = pool;
      this.#ownPool = false;
    } else {
      this.#pool = new pg.Pool({
        connectionString: fromUrl?.url ?? connectionString,
        max: poolSize,
        connectionTimeoutMillis: connectTimeoutMs,
        // Client-side guard for a dead network, a little after the server-side timeout.
        query_timeout: this.#statementTimeoutMs + 2000,
        keepAlive: true,
        application_name: `killswitch:${schema}`,
      });
      this.#ownPool = true;
      // An idle pooled connection that dies (server restart, terminated backend) emits 'error'
      // on the pool; unhandled, that would crash the process. The pool drops the connection and
      // the next query opens a new one. KS-8.6.1
      this.#pool.on('error', (err) =>
        this.#logger.warn(`postgres store (${schema}): idle connection lost: ${err.message}`),
      );
    }
  }

  /**
   * Creates the schema if needed (once, under an advisory lock, so replicas may start at once),
   * then verifies the whole chain. Idempotent; a failed open may be retried. KS-8.1.1, KS-8.4.1
   *
   * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  async open(): Promise<void> {
    this.#checkUsable();
    if (this.#opening === undefined) {
      const opening = this.#doOpen();
      this.#opening = opening;
      opening.catch(() => {
        if (this.#opening === opening) this.#opening = undefined;
      });
    }
    await this.#opening;
  }

  async #doOpen(): Promise<void> {
    await this.#migrate();
    this.#logId = await this.#readLogId();
    this.#signaturesAfter = await this.#latchSignatures();
    const head = await this.#verifyAll();
    this.#checkUsable();
    this.#advanceKnown(head);
    if (this.#cursor.seq < head.seq) this.#cursor = head;
    this.#state = StoreState.OPEN;
    if (this.#listeners.size > 0) this.#startFollowing();
  }

  /** KS-8.1.1 idempotent, concurrent-safe schema creation; KS-8.1.2 refuse a newer schema. */
  async #migrate(): Promise<void> {
    const client = await this.#connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL statement_timeout = ${this.#statementTimeoutMs}`);
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
        LOCK_CLASS_MIGRATE,
        this.schema,
      ]);
      const enc = await client.query<{ server_encoding: string }>('SHOW server_encoding');
      if (enc.rows[0]?.server_encoding !== 'UTF8') {
        // The hash covers UTF-8 bytes; another server encoding could not hold every flip exactly.
        throw unavailable(`the database must use UTF8, not ${enc.rows[0]?.server_encoding ?? '?'}`);
      }
      const found = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [
        `${quoteIdent(this.schema)}.meta`,
      ]);
      let version = 0;
      if (found.rows[0]?.t) {
        const v = await client.query<{ value: string }>(
          `SELECT value FROM ${quoteIdent(this.schema)}.meta WHERE key = 'schema_version'`,
        );
        version = Number(v.rows[0]?.value ?? 0);
      }
      if (!Number.isSafeInteger(version) || version < 0) {
        throw unavailable(
          `schema ${this.schema} has an unreadable schema_version; refusing to guess`,
        );
      }
      if (version > SCHEMA_VERSION) {
        throw unavailable(
          `schema ${this.schema} has version ${version}, newer than this library's ${SCHEMA_VERSION}; upgrade the library`,
        );
      }
      if (version < SCHEMA_VERSION) {
        try {
          await client.query(migrationSql(this.schema));
        } catch (err) {
          if (sqlState(err) !== INSUFFICIENT_PRIVILEGE || version === 0) throw err;
          // KS-17.7.7 a serving role holds no rights on the schema's objects: only their owner upgrades.
          throw unavailable(
            `schema ${this.schema} is at version ${version} and this library needs ${SCHEMA_VERSION}: open it once as the schema's owner to upgrade it, then grant the serving role again (servingRoleGrantsSql)`,
            err,
          );
        }
      }
      await client.query('COMMIT');
      client.release();
    } catch (err) {
      client.release(true);
      throw unavailable(`could not prepare schema ${this.schema}`, err);
    }
  }

  /** `meta.log_id`, which the migration gave the log (KS-2.7.3). */
  async #readLogId(): Promise<string> {
    const res = await this.#query<{ value: string }>(
      `SELECT value FROM ${quoteIdent(this.schema)}.meta WHERE key = 'log_id'`,
      [],
    );
    const v = res.rows[0]?.value;
    if (!isIdText(v, MAX_LOG_ID_LENGTH)) {
      throw unavailable(
        `schema ${this.schema} has no valid meta.log_id (${JSON.stringify(v ?? null)}); refusing to guess the log's identity`,
      );
    }
    return v;
  }

  /**
   * KS-17.7.11 with a key, sets the latch (`require_signatures()`): from the head on, the database
   * refuses unsigned rows, so nobody holding only the serving role's credentials can append a
   * record before this store signs its first one. Returns the latch's seq (set by this store or
   * an earlier one), or undefined when no store with a key ever opened the log.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` (a serving role not granted again after the
   *   upgrade to version 7 cannot set it: the store refuses to run with a key it cannot enforce)
   */
  async #latchSignatures(): Promise<number | undefined> {
    if (this.#key !== undefined) {
      try {
        await this.#pool.query(requireSignaturesCallSql(this.schema));
      } catch (err) {
        if (sqlState(err) !== INSUFFICIENT_PRIVILEGE) {
          throw unavailable(`could not require signatures on ${this.schema}`, err);
        }
        throw unavailable(
          `schema ${this.schema}: the serving role may not call require_signatures() (KS-17.7.11), which a control plane with a signing key needs: it lacks the grants of schema version 7, run killswitch db grant (or servingRoleGrantsSql) as the owner`,
          err,
        );
      }
    }
    const res = await this.#query<{ value: string }>(
      `SELECT value FROM ${quoteIdent(this.schema)}.meta WHERE key = 'flips_signed_after'`,
      [],
    );
    const v = res.rows[0]?.value;
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw unavailable(
        `schema ${this.schema} has an unreadable meta.flips_signed_after (${JSON.stringify(v)}); refusing to guess which records must be signed`,
      );
    }
    return n;
  }

  /** The log's identity, `meta.log_id` (KS-2.7.3); opens the store. */
  async logId(): Promise<string> {
    this.#checkUsable();
    await this.#track(this.open());
    return this.#logId;
  }

  /** Reads the whole log in pages and verifies it; returns its head. KS-8.4.1 */
  async #verifyAll(): Promise<LogHead> {
    let head: LogHead = { seq: 0, hash: GENESIS_HASH };
    for (;;) {
      const rows = await this.#selectAfter(head.seq, BATCH);
      const records = decodeRows(rows, head);
      this.#checkSignatures(records, rows, 'last');
      const last = records.at(-1);
      if (last !== undefined) head = { seq: last.seq, hash: last.hash };
      if (rows.length < BATCH) {
        if (this.#key !== undefined && this.#signedFrom === undefined && head.seq > 0) {
          this.#logger.warn(
            `postgres store (${this.schema}): no record is signed yet (${head.seq} records); the next append is signed and covers them (KS-17.7.2)`,
          );
        }
        return head;
      }
    }
  }

  /**
   * KS-17.7.3, KS-17.7.8 the signatures of verified records (`rows` in the same order): none missing after
   * the first signed record; with keys, `each` verifies every one (what following delivers),
   * `last` the last signed one (a read: the chain it verified carries that signature back to
   * every record of the batch). Each signature is attached to its record for the stream
   * (KS-17.7.9).
   *
   * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
   */
  #checkSignatures(
    records: readonly FlipRecord[],
    rows: readonly FlipRow[],
    mode: 'each' | 'last',
  ): void {
    let lastSigned: { seq: number; hash: string; sig: string } | undefined;
    records.forEach((r, i) => {
      const sig = rows[i]?.sig ?? undefined;
      if (sig === undefined) {
        if (this.#signaturesAfter !== undefined && r.seq > this.#signaturesAfter) {
          throw new LogCorruptError(
            r.seq,
            `record is not signed, though a control plane with a signing key requires signatures after seq ${this.#signaturesAfter}: it was not appended by the key holder (KS-17.7.11)`,
          );
        }
        if (this.#signedFrom !== undefined && r.seq > this.#signedFrom) {
          throw new LogCorruptError(
            r.seq,
            `record is not signed, though seq ${this.#signedFrom} before it is: it was not appended by the key holder (KS-17.7.3)`,
          );
        }
        return;
      }
      if (this.#signedFrom === undefined || r.seq < this.#signedFrom) this.#signedFrom = r.seq;
      lastSigned = { seq: r.seq, hash: r.hash, sig };
      if (this.#ring !== undefined && mode === 'each') {
        checkRecordSignature(lastSigned, this.#logId, this.#ring);
      }
      attachSignature(r, sig);
    });
    if (this.#ring !== undefined && mode === 'last' && lastSigned !== undefined) {
      checkRecordSignature(lastSigned, this.#logId, this.#ring);
    }
  }

  /**
   * Appends a flip and resolves once its transaction has committed (and this store's subscribers
   * have seen it). KS-8.3.1, KS-8.3.2, KS-8.3.3
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` (nothing is written)
   * @throws {KillSwitchError} `KS_ID_CONFLICT`; `KS_STORE_UNAVAILABLE` when the database cannot be
   *   reached or the commit's outcome is unknown (retrying with the same id is then safe);
   *   `KS_STORE_CLOSED`
   * @throws {LogCorruptError} `KS_LOG_CORRUPT`
   */
  async append(input: FlipInput): Promise<AppendResult> {
    this.#checkUsable();
    // Validate before touching the database: bad input appends nothing. KS-2.1.2
    const flip = parseFlipInput(input);
    // Tracked from the start, so close() waits for an append it let in.
    return this.#track(
      (async () => {
        await this.open();
        return this.#enqueue(flip);
      })(),
    );
  }

  /**
   * Queues a flip for the store's writer. Appends that arrive while a transaction is running are
   * written together in the next one (group commit: one lock wait and one COMMIT for the batch);
   * every one of them is answered only after that COMMIT. KS-8.3.4
   */
  #enqueue(flip: NormalizedFlip): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      this.#queue.push({ flip, resolve, reject });
      if (!this.#writing) {
        this.#writing = true;
        void this.#writeLoop();
      }
    });
  }

  async #writeLoop(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        try {
          await this.#writeBatch(batch, 0);
        } catch (err) {
          // #writeBatch settles its batch itself; this only guards against a bug leaving callers hanging.
          for (const p of batch) p.reject(unavailable('append failed', err));
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /** One transaction for a batch; settles every item only once the outcome is known. */
  async #writeBatch(batch: readonly PendingAppend[], attempt: number): Promise<void> {
    const fail = (err: unknown) => {
      for (const p of batch) p.reject(err);
    };
    let client: pg.PoolClient;
    try {
      client = await this.#connect();
    } catch (err) {
      fail(err);
      return;
    }
    const ids = batch.map((p) => p.flip.id);
    const answers: (AppendResult | KillSwitchError)[] = [];
    const fresh: FlipRecord[] = [];
    let commitSent = false;
    try {
      // One round trip: the transaction, its timeout, and the lock that serialises every writer of
      // this schema in every process. seq = head + 1 under the lock is gap-free. KS-8.3.1
      await client.query(
        `BEGIN; SET LOCAL statement_timeout = ${this.#statementTimeoutMs}; ` +
          `SELECT pg_advisory_xact_lock(${LOCK_CLASS_APPEND}, hashtext('${this.schema}'))`,
      );
      const probe = await client.query<FlipRow & { kind: 'dup' | 'head' }>(
        `SELECT 'dup' AS kind, ${RECORD_COLUMNS} FROM ${this.#table} f WHERE f.id = ANY($1::text[]) ` +
          `UNION ALL (SELECT 'head' AS kind, ${RECORD_COLUMNS} FROM ${this.#table} f ORDER BY f.seq DESC LIMIT 1)`,
        [ids],
      );
      let head: LogHead = { seq: 0, hash: GENESIS_HASH };
      const known = new Map<string, FlipRecord>();
      for (const row of probe.rows) {
        const seq = seqOf(row.seq, 0);
        if (row.kind === 'dup') {
          const r = this.#decodeOne(row, seq);
          this.#checkSignatures([r], [row], 'each');
          known.set(r.id, r);
        } else head = { seq, hash: row.hash };
      }
      // Decided under the lock, so two replicas racing with one id agree. KS-8.3.3
      for (const { flip } of batch) {
        const existing = known.get(flip.id);
        if (existing !== undefined) {
          answers.push(
            sameFlip(existing, flip)
              ? { record: existing, duplicate: true }
              : new KillSwitchError(
                  ErrorCode.ID_CONFLICT,
                  `flip id ${flip.id} is already used by seq ${existing.seq} for a different flip`,
                ),
          );
          continue;
        }
        const record = chainRecord(flip, head, new Date(this.#clock.wallNow()));
        head = record;
        known.set(record.id, record);
        fresh.push(record);
        answers.push({ record, duplicate: false });
      }
      if (fresh.length === 0) {
        await client.query('ROLLBACK');
      } else {
        for (const record of fresh) {
          // KS-17.7.2, KS-17.7.8 signed in the same transaction; KS-17.7.7 through the owner's function: a
          // serving role holds no INSERT on the table.
          const sig =
            this.#key === undefined
              ? undefined
              : signRecord(this.#key, this.#logId, record.seq, record.hash);
          attachSignature(record, sig);
          await client.query(appendCallSql(this.schema), insertParams(record, sig));
        }
        commitSent = true;
        // KS-8.3.2 acknowledged only after COMMIT returns.
        await client.query('COMMIT');
      }
    } catch (err) {
      // The connection's state is unknown: never hand it back to the pool.
      client.release(true);
      if (err instanceof LogCorruptError) {
        fail(this.#fail(err));
        return;
      }
      if (!commitSent && sqlState(err) === UNIQUE_VIOLATION && attempt < 3) {
        // Only a writer that bypasses the lock can get here; try again on a fresh head.
        await this.#writeBatch(batch, attempt + 1);
        return;
      }
      // Nothing is acknowledged, not even an id conflict decided against a record of this batch
      // that may not have been written.
      const which = ids.length === 1 ? `flip ${ids[0]}` : `${ids.length} flips (${ids.join(', ')})`;
      fail(
        unavailable(
          commitSent
            ? `commit of ${which} failed or its outcome is unknown; retry with the same id`
            : `append of ${which} failed, nothing was written`,
          err,
        ),
      );
      return;
    }
    client.release();
    if (this.#key !== undefined && fresh.length > 0) {
      this.#signedFrom = Math.min(this.#signedFrom ?? Number.POSITIVE_INFINITY, fresh[0]!.seq);
    }
    for (const record of fresh) await this.#afterCommit(record);
    batch.forEach((p, i) => {
      const a = answers[i]!;
      if (a instanceof KillSwitchError) p.reject(a);
      else p.resolve(a);
    });
  }

  /** Records with seq greater than `after`, verified before they are returned. KS-8.4.2 */
  async read(options: ReadOptions = {}): Promise<FlipRecord[]> {
    this.#checkUsable();
    return this.#track(this.#read(options));
  }

  async #read(options: ReadOptions): Promise<FlipRecord[]> {
    await this.open();
    const afterRaw = Math.floor(options.after ?? 0);
    const after = Number.isFinite(afterRaw) ? Math.max(0, afterRaw) : 0;
    const limitRaw = options.limit ?? Number.POSITIVE_INFINITY;
    const limit = Number.isNaN(limitRaw)
      ? Number.POSITIVE_INFINITY
      : Math.max(0, Math.floor(limitRaw));
    if (limit === 0) return [];
    const rows = await this.#selectAfter(after, limit === Number.POSITIVE_INFINITY ? null : limit);
    let records: FlipRecord[];
    try {
      records = decodeRows(rows, {
        seq: after,
        hash: after === this.#known.seq ? this.#known.hash : undefined,
      });
      this.#checkSignatures(records, rows, 'last');
    } catch (err) {
      throw err instanceof LogCorruptError ? this.#fail(err) : err;
    }
    const last = records.at(-1);
    if (last !== undefined) this.#advanceKnown(last);
    return records;
  }

  /** The last record's seq and hash, as committed in the database now. */
  async head(): Promise<LogHead> {
    this.#checkUsable();
    return this.#track(this.#head());
  }

  async #head(): Promise<LogHead> {
    await this.open();
    const res = await this.#query<{ seq: string; hash: string }>(
      `SELECT f.seq::text AS seq, f.hash FROM ${this.#table} f ORDER BY f.seq DESC LIMIT 1`,
      [],
    );
    const row = res.rows[0];
    return row === undefined
      ? { seq: 0, hash: GENESIS_HASH }
      : { seq: seqOf(row.seq, 0), hash: row.hash };
  }

  /**
   * Delivers every record that reaches the log after this call, whichever process appended it, in
   * seq order and exactly once, to this and every other subscriber of this store. Records are
   * found by a read by seq, woken by NOTIFY, by this store's own appends, by a re-established
   * LISTEN connection and by a poll, so a lost notification loses nothing. KS-8.5.2
   *
   * @returns a function that unsubscribes
   * @throws {KillSwitchError} `KS_STORE_CLOSED`; the {@link LogCorruptError} that failed the store
   */
  subscribe(listener: RecordListener): () => void {
    this.#checkUsable();
    const first = this.#listeners.size === 0;
    this.#listeners.add(listener);
    if (first) {
      // Nobody was following, so the cursor may lag: start at the newest record known here.
      this.#jumpCursor();
      if (this.#state === StoreState.OPEN) this.#startFollowing();
      else
        this.open().catch((err: unknown) =>
          this.#logger.warn(
            `postgres store (${this.schema}): open for a subscriber failed: ${(err as Error).message}`,
          ),
        );
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopFollowing();
    };
  }

  /**
   * Joins the fleet the replicas of this schema share (KS-8.8, KS-6.6): registers the replica,
   * heartbeats, shares its acknowledgements and delivers the others'. The control plane calls
   * it; close the channel before the store.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  async openFleetChannel(options: FleetChannelOptions): Promise<FleetChannel> {
    this.#checkUsable();
    await this.open();
    const channel = new PostgresFleetChannel(
      {
        pool: this.#pool,
        schema: this.schema,
        clock: this.#clock,
        statementTimeoutMs: this.#statementTimeoutMs,
        logger: this.#logger,
      },
      options,
    );
    try {
      await channel.start();
    } catch (err) {
      await channel.close();
      throw unavailable('could not join the shared fleet', err);
    }
    return channel;
  }

  /**
   * The release verdicts every replica on this schema shares (KS-8.9, table `releases`); opens
   * the store. The control plane hands it to its release gate (KS-10.5.2).
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`, `KS_STORE_CLOSED`
   */
  async openReleaseLog(): Promise<SharedReleaseLog> {
    this.#checkUsable();
    await this.#track(this.open());
    return new PostgresReleaseLog({
      schema: this.schema,
      connect: () => this.#connect(),
      statementTimeoutMs: this.#statementTimeoutMs,
      checkUsable: () => this.#checkUsable(),
    });
  }

  /** How this store is following the log right now (for health checks). KS-8.5.6 */
  followStatus(): PostgresFollowStatus {
    const state =
      this.#state === StoreState.CLOSED
        ? 'closed'
        : this.#state === StoreState.FAILED
          ? 'failed'
          : this.#listenState === ListenState.STOPPED
            ? 'idle'
            : this.#listenState;
    return {
      state,
      caughtUpAt: this.#caughtUpAt,
      caughtUpAgeMs:
        this.#caughtUpMono === undefined ? undefined : this.#clock.now() - this.#caughtUpMono,
      deliveredSeq: this.#cursor.seq,
      ...(this.#failure === undefined ? {} : { failure: this.#failure.message }),
    };
  }

  /** Stops following, waits for in-flight calls, and ends the pool it created. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === StoreState.CLOSED) return;
    this.#state = StoreState.CLOSED;
    this.#listeners.clear();
    this.#stopFollowing();
    await Promise.allSettled([
      ...this.#inflight,
      this.#opening,
      this.#deliverMutex.run(() => undefined),
    ]);
    if (this.#ownPool) await this.#pool.end().catch(() => undefined);
  }

  // ---- following ------------------------------------------------------------------------

  #startFollowing(): void {
    if (this.#listenState === ListenState.STOPPED) {
      this.#reconnectAttempt = 0;
      void this.#listen(++this.#listenGeneration);
    }
    this.#schedulePoll();
    void this.#catchUpQuietly();
  }

  #stopFollowing(): void {
    this.#listenGeneration++;
    this.#listenState = ListenState.STOPPED;
    if (this.#reconnectTimer !== undefined) this.#clock.clearTimeout(this.#reconnectTimer);
    if (this.#pollTimer !== undefined) this.#clock.clearTimeout(this.#pollTimer);
    this.#reconnectTimer = undefined;
    this.#pollTimer = undefined;
    this.#dropListenClient();
  }

  #dropListenClient(): void {
    const client = this.#listenClient;
    this.#listenClient = undefined;
    if (client !== undefined) {
      client.removeAllListeners('notification');
      client.removeAllListeners('end');
      // Keep one error handler: a late socket error after release must not crash the process.
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      client.release(true);
    }
  }

  /** Opens the LISTEN connection, then catches up so nothing committed meanwhile is missed. KS-8.5.3 */
  async #listen(generation: number): Promise<void> {
    const current = () =>
      generation === this.#listenGeneration && this.#state !== StoreState.CLOSED;
    this.#listenState = ListenState.CONNECTING;
    let client: pg.PoolClient | undefined;
    try {
      client = await this.#pool.connect();
      const c = client;
      if (!current()) {
        c.release(true);
        return;
      }
      const lost = (err?: Error) => {
        if (this.#listenClient !== c) return;
        this.#dropListenClient();
        this.#logger.warn(
          `postgres store (${this.schema}): LISTEN connection lost (${err?.message ?? 'ended'}); reconnecting and catching up`,
        );
        this.#scheduleReconnect(generation);
      };
      c.on('error', lost);
      c.on('end', () => lost());
      c.on('notification', (msg) => {
        if (msg.channel !== this.#channel) return;
        // `seq:hash` (a version-1 trigger sent only the seq). A notification is only a wake-up;
        // the read by seq decides what is delivered. Anything but our own delivered record (a
        // record past the cursor, or one at or below it that is not the one delivered: the log
        // was cut and reused, KS-8.5.7) makes it read.
        const [seqText, hash] = (msg.payload ?? '').split(':');
        const seq = Number(seqText);
        const known =
          seq < this.#cursor.seq ? false : seq === this.#cursor.seq && hash === this.#cursor.hash;
        if (!known || !(seq <= this.#cursor.seq)) void this.#catchUpQuietly();
      });
      this.#listenClient = c;
      await c.query(`SET application_name = 'killswitch-listen:${this.schema}'`);
      await c.query(`LISTEN ${quoteIdent(this.#channel)}`);
      if (this.#listenClient !== c) return;
      this.#listenState = ListenState.LISTENING;
      this.#reconnectAttempt = 0;
      await this.#catchUpQuietly();
    } catch (err) {
      if (client !== undefined && this.#listenClient === client) this.#dropListenClient();
      if (!current()) return;
      this.#logger.warn(
        `postgres store (${this.schema}): could not LISTEN (${(err as Error).message}); retrying in ${this.#reconnectDelay()} ms`,
      );
      this.#scheduleReconnect(generation);
    }
  }

  #scheduleReconnect(generation: number): void {
    if (generation !== this.#listenGeneration || this.#state === StoreState.CLOSED) return;
    if (this.#reconnectTimer !== undefined) return;
    this.#listenState = ListenState.BACKOFF;
    const wait = this.#reconnectDelay();
    this.#reconnectAttempt++;
    this.#reconnectTimer = this.#clock.setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (generation === this.#listenGeneration && this.#state !== StoreState.CLOSED)
        void this.#listen(generation);
    }, wait);
  }

  /** The wait before the next LISTEN attempt: doubling from 100 ms up to `reconnectMaxMs`. */
  #reconnectDelay(): number {
    return delay(this.#reconnectAttempt, {
      initialMs: RECONNECT_MIN_MS,
      factor: 2,
      maxMs: this.#reconnectMaxMs,
      jitter: 0,
    });
  }

  /** KS-8.5.4 the safety net: a read by seq every poll interval while someone is subscribed. */
  #schedulePoll(): void {
    if (this.#pollTimer !== undefined) return;
    this.#pollTimer = this.#clock.setTimeout(() => {
      this.#pollTimer = undefined;
      if (
        this.#listeners.size === 0 ||
        this.#state === StoreState.CLOSED ||
        this.#state === StoreState.FAILED
      )
        return;
      void this.#catchUpQuietly().finally(() => {
        if (this.#listeners.size > 0 && this.#state === StoreState.OPEN) this.#schedulePoll();
      });
    }, this.#pollMs);
  }

  async #catchUpQuietly(): Promise<void> {
    try {
      await this.#catchUp();
    } catch (err) {
      if (!(err instanceof LogCorruptError) && !(err instanceof LogDivergedError)) {
        this.#logger.warn(
          `postgres store (${this.schema}): catch-up read failed, will retry: ${(err as Error).message}`,
        );
      }
    }
  }

  /** Queues one catch-up after whatever delivery is running; callers arriving meanwhile share it. */
  #catchUp(): Promise<void> {
    if (this.#queuedCatchUp !== undefined) return this.#queuedCatchUp;
    const p = this.#deliverMutex.run(async () => {
      this.#queuedCatchUp = undefined;
      await this.#drain();
    });
    this.#queuedCatchUp = p;
    return p;
  }

  /** Reads records after the cursor, verifies them against it, and delivers them in order. KS-8.5.2 */
  async #drain(): Promise<void> {
    for (;;) {
      if (this.#state !== StoreState.OPEN) return;
      if (this.#listeners.size === 0) {
        this.#jumpCursor();
        return;
      }
      const from = this.#cursor;
      // KS-8.5.7 the read starts AT the cursor: the record delivered last must still be there
      // with the hash delivered, or the log moved backwards (a cut tail, a failover that lost
      // commits, a restore) and the store fails instead of serving it. Each poll checks it.
      const read = await this.#selectAfter(from.seq === 0 ? 0 : from.seq - 1, BATCH + 1);
      let rows = read;
      if (from.seq > 0) {
        const first = read[0];
        if (first === undefined || seqOf(first.seq, 0) !== from.seq || first.hash !== from.hash) {
          throw this.#fail(await this.#divergedFrom(from));
        }
        rows = read.slice(1);
      }
      let records: FlipRecord[];
      try {
        records = decodeRows(rows, from);
        // KS-17.7.3 a follower checks each record it delivers.
        this.#checkSignatures(records, rows, 'each');
      } catch (err) {
        throw err instanceof LogCorruptError ? this.#fail(err) : err;
      }
      for (const r of records) {
        if (r.seq <= this.#cursor.seq) continue;
        if (r.seq !== this.#cursor.seq + 1) break;
        this.#cursor = { seq: r.seq, hash: r.hash };
        this.#advanceKnown(this.#cursor);
        this.#deliver(r);
      }
      if (rows.length < BATCH) {
        this.#caughtUpMono = this.#clock.now();
        this.#caughtUpAt = new Date(this.#clock.wallNow()).toISOString();
        return;
      }
    }
  }

  /** The divergence found when the record at `from` is gone or changed: names both sides. */
  async #divergedFrom(from: LogHead): Promise<LogDivergedError> {
    const applied = { logId: this.#logId, seq: from.seq, hash: from.hash };
    let seen: LogPosition;
    try {
      const rows = await this.#selectAfter(from.seq - 1, 1);
      const at = rows[0];
      if (at !== undefined && seqOf(at.seq, 0) === from.seq) {
        seen = { logId: this.#logId, seq: from.seq, hash: at.hash };
      } else {
        const head = await this.#head();
        seen = { logId: this.#logId, ...head };
      }
    } catch {
      seen = { logId: this.#logId, seq: 0, hash: GENESIS_HASH };
    }
    return new LogDivergedError(divergence(applied, seen) ?? Divergence.BEHIND, applied, seen, {
      applied: `postgres store (${this.schema}) delivered`,
      seen: 'the database now holds',
    });
  }

  /** After our own commit: deliver it (and anything before it) before the append resolves. KS-8.5.5 */
  async #afterCommit(record: FlipRecord): Promise<void> {
    this.#advanceKnown(record);
    try {
      await this.#deliverMutex.run(async () => {
        if (this.#state !== StoreState.OPEN) return;
        if (this.#listeners.size === 0) {
          this.#jumpCursor();
        } else if (this.#cursor.seq === record.seq - 1 && this.#cursor.hash === record.prev) {
          this.#cursor = { seq: record.seq, hash: record.hash };
          this.#deliver(record);
        } else if (this.#cursor.seq < record.seq) {
          await this.#drain();
        } else if (this.#cursor.seq === record.seq && this.#cursor.hash !== record.hash) {
          // KS-8.5.7 committed at a seq already delivered with another record: the log was cut
          // and the seq reused. (Deeper cuts are found by the next read, which starts at the cursor.)
          throw this.#fail(await this.#divergedFrom(this.#cursor));
        }
      });
    } catch (err) {
      // The flip is committed; the followers will get it from the next catch-up.
      if (!(err instanceof LogCorruptError) && !(err instanceof LogDivergedError)) {
        this.#logger.warn(
          `postgres store (${this.schema}): delivery after append failed, will retry: ${(err as Error).message}`,
        );
      }
    }
  }

  #deliver(record: FlipRecord): void {
    for (const l of [...this.#listeners]) {
      try {
        l(record);
      } catch (err) {
        // As in the other stores: a throwing subscriber must not starve the others.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #jumpCursor(): void {
    if (this.#known.seq > this.#cursor.seq) this.#cursor = this.#known;
  }

  #advanceKnown(head: LogHead): void {
    if (head.seq > this.#known.seq) this.#known = { seq: head.seq, hash: head.hash };
  }

  // ---- helpers --------------------------------------------------------------------------

  async #selectAfter(after: number, limit: number | null): Promise<FlipRow[]> {
    const res = await this.#query<FlipRow>(
      `SELECT ${RECORD_COLUMNS} FROM ${this.#table} f WHERE f.seq > $1::bigint ORDER BY f.seq LIMIT $2`,
      [String(after), limit],
    );
    return res.rows;
  }

  async #query<R extends pg.QueryResultRow>(
    sql: string,
    params: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>({ text: sql, values: params });
    } catch (err) {
      throw unavailable('query failed', err);
    }
  }

  async #connect(): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw unavailable('could not connect', err);
    }
    // pg emits 'error' on a checked-out client whose connection dies (even mid-query, where the
    // query also rejects) and the pool listens only while the client is idle: without a handler
    // the process would crash. The failure reaches the caller through the rejected query. KS-8.6.1
    if (!guarded.has(client)) {
      guarded.add(client);
      client.on('error', () => undefined);
    }
    return client;
  }

  #decodeOne(row: FlipRow, seq: number): FlipRecord {
    const prev = { seq: seq - 1, hash: undefined };
    const [record] = decodeRows([row], prev);
    if (record === undefined) throw new LogCorruptError(seq, 'row vanished while decoding');
    return record;
  }

  /** Marks the store failed: a corrupt or diverged log is never served, appended to or followed again. */
  #fail<E extends KillSwitchError>(err: E): E {
    if (this.#state !== StoreState.CLOSED && this.#state !== StoreState.FAILED) {
      this.#state = StoreState.FAILED;
      this.#failure = err;
      this.#logger.warn(
        `postgres store (${this.schema}): ${err.message}; the store refuses further use`,
      );
      this.#stopFollowing();
    }
    return err;
  }

  #checkUsable(): void {
    if (this.#state === StoreState.CLOSED) {
      throw new KillSwitchError(
        ErrorCode.STORE_CLOSED,
        `postgres store (${this.schema}) is closed`,
      );
    }
    if (this.#state === StoreState.FAILED && this.#failure !== undefined) throw this.#failure;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = () => this.#inflight.delete(p);
    p.then(done, done);
    return p;
  }
}

/** Takes `?schema=` out of a connection string (pg would not know it). */
function splitSchemaParam(connectionString: string): { url: string; schema: string | undefined } {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    throw new InvalidOptionError('connectionString', 'a valid postgres:// URL', '(unparsable URL)');
  }
  const schema = url.searchParams.get('schema') ?? undefined;
  if (schema === undefined) return { url: connectionString, schema };
  url.searchParams.delete('schema');
  return { url: url.toString(), schema };
}
