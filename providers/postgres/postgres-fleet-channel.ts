import type pg from 'pg';
import { GENESIS_HASH } from '../../src/model/flip-record.js';
import { delay } from '../../src/internal/backoff.js';
import type { Clock } from '../../src/internal/clock.js';
import type {
  FleetChannel,
  FleetChannelOptions,
  FleetEvent,
  ObservedAck,
  ReplicaRow,
  SharedAck,
  WorkerRow,
} from '../../src/store/fleet-channel.js';
import type { LogHead } from '../../src/store/flip-log-store.js';
import { MAX_GATEWAY_SEAMS, type GatewayReport } from '../../src/protocol/acks.js';
import { unavailable } from './internal/pg-errors.js';
import { LOCK_CLASS_APPEND, fleetChannelOf, quoteIdent } from './internal/schema-sql.js';

/** What the store hands its fleet channel. */
export interface PostgresFleetChannelParts {
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly clock: Clock;
  readonly statementTimeoutMs: number;
  readonly logger: { warn(message: string): void };
}

/** A NOTIFY payload must stay under 8000 bytes; each statement's payload stays under this. */
const PAYLOAD_BUDGET = 6500;
/** Bytes one shared acknowledgement's negative acknowledgements may take in a payload. */
const UNENFORCED_BUDGET = 3000;
/** A full read of the fleet tables this often while LISTEN works, and every beat while it does not. */
const SYNC_EVERY_MS = 5000;
/** Rows nobody renewed for this long are deleted (by the database's clock: pruning only). */
const PRUNE_EVERY_SYNCS = 12;

/** Longest an acknowledgement transaction may hold the append lock shared (appends wait for it). */
const RENEW_HOLD_MAX_MS = 2000;

/** Pooled clients that already carry the channel's error handler. */
const guarded = new WeakSet<pg.PoolClient>();

interface PendingRenew {
  readonly acks: readonly SharedAck[];
  resolve(head: LogHead): void;
  reject(err: unknown): void;
}

/**
 * The PostgreSQL side of the shared fleet (KS-8.8, KS-6.6): acknowledgements are upserted into
 * `fleet_acks` under the append lock held shared (so no append commits between reading the log's
 * head and committing them, KS-6.6.3), each replica bumps its heartbeat counter in `replicas`,
 * and every change is a NOTIFY on `ks_fleet_<schema>` carrying the change itself, delivered to
 * every replica in commit order. A full read of both tables (one repeatable-read snapshot) covers
 * lost notifications. Times here are only timers; what they mean is decided by SharedFleet.
 */
export class PostgresFleetChannel implements FleetChannel {
  readonly replicaId: string;
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #s: string;
  readonly #channel: string;
  readonly #clock: Clock;
  readonly #statementTimeoutMs: number;
  readonly #logger: { warn(message: string): void };
  readonly #url: string;
  readonly #onEvent: (e: FleetEvent) => void;
  readonly #beatMs: number;
  #closed = false;
  #queue: PendingRenew[] = [];
  #writing = false;
  /** The head to publish in the next heartbeat, and the one a committed heartbeat carried. */
  #wantHead = 0;
  #committedHead = 0;
  #beating = false;
  #beatAgain = false;
  #beatTimer: unknown;
  #syncTimer: unknown;
  #syncs = 0;
  #listen: pg.PoolClient | undefined;
  #listening = false;
  #listenAttempt = 0;
  #listenTimer: unknown;
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(parts: PostgresFleetChannelParts, options: FleetChannelOptions) {
    this.replicaId = options.replicaId;
    this.#pool = parts.pool;
    this.#schema = parts.schema;
    this.#s = quoteIdent(parts.schema);
    this.#channel = fleetChannelOf(parts.schema);
    this.#clock = parts.clock;
    this.#statementTimeoutMs = parts.statementTimeoutMs;
    this.#logger = options.logger ?? parts.logger;
    this.#url = options.url;
    this.#onEvent = options.onEvent;
    this.#beatMs = options.beatMs ?? 250;
    this.#wantHead = options.head ?? 0;
  }

  /** Registers (first heartbeat), starts listening and reads the fleet once. */
  async start(): Promise<void> {
    await this.#beat();
    await this.#startListening();
    await this.#sync();
    this.#scheduleBeat();
    this.#scheduleSync();
  }

  // ---- acknowledgements ------------------------------------------------------------------

  renew(acks: readonly SharedAck[]): Promise<LogHead> {
    if (this.#closed)
      return Promise.reject(unavailable('the fleet channel is closed; nothing renewed'));
    return new Promise<LogHead>((resolve, reject) => {
      this.#queue.push({ acks, resolve, reject });
      if (!this.#writing) {
        this.#writing = true;
        void this.#writeLoop();
      }
    });
  }

  /** Group commit: every renewal queued while a transaction runs goes into the next one. */
  async #writeLoop(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        try {
          const head = await this.#track(this.#write(batch.flatMap((p) => p.acks)));
          for (const p of batch) p.resolve(head);
        } catch (err) {
          const e = unavailable('could not share the acknowledgement with the other replicas', err);
          for (const p of batch) p.reject(e);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  async #write(all: readonly SharedAck[]): Promise<LogHead> {
    // One row per worker: the last acknowledgement of a worker in the batch is its newest.
    const byWorker = new Map<string, SharedAck>();
    for (const a of all) byWorker.set(a.workerId, a);
    const chunks = chunk([...byWorker.values()].map(toEntry));
    const client = await this.#connect();
    let head: LogHead = { seq: 0, hash: GENESIS_HASH };
    try {
      // KS-6.6.3 the append lock, shared: no append commits between the head read below and
      // this commit, so an acknowledgement answered below flip s was committed before s.
      // An append waits for this transaction: a stalled client must not hold the lock long,
      // so the server ends it after RENEW_HOLD_MAX_MS idle or running (the renewal then fails: 503).
      // One round trip for the whole transaction (simple query protocol, the values as escaped
      // literals): it was three (BEGIN and the lock, each upsert, COMMIT), and every remote
      // worker's acknowledgement waits for it before the replica that holds the flip hears of
      // it. An error stops the string where it happened; the transaction is then abandoned with
      // its connection, as before.
      const bound = Math.min(this.#statementTimeoutMs, RENEW_HOLD_MAX_MS);
      const lit = (v: string) => client.escapeLiteral(v);
      const text =
        `BEGIN; SET LOCAL statement_timeout = ${bound}; ` +
        `SET LOCAL idle_in_transaction_session_timeout = ${bound}; ` +
        `SELECT pg_advisory_xact_lock_shared(${LOCK_CLASS_APPEND}, hashtext('${this.#schema}')); ` +
        chunks
          .map(
            (c) =>
              `${this.#upsertSql(lit(JSON.stringify(c)), lit(this.replicaId), lit(this.#channel))}; `,
          )
          .join('') +
        'COMMIT';
      const results = (await client.query(text)) as unknown as pg.QueryResult[] | pg.QueryResult;
      for (const res of Array.isArray(results) ? results : [results]) {
        const row = res.rows[0] as { head?: unknown; hash?: unknown } | undefined;
        if (row !== undefined && typeof row.head === 'string' && typeof row.hash === 'string') {
          head = { seq: Number(row.head), hash: row.hash };
        }
      }
      client.release();
    } catch (err) {
      client.release(true);
      throw err;
    }
    return head;
  }

  /** The upsert of one chunk; its arguments are SQL literals (escaped by the caller). */
  #upsertSql(acks: string, replica: string, channel: string): string {
    const s = this.#s;
    return `WITH hd AS (SELECT coalesce(max(f.seq), 0)::bigint AS seq FROM ${s}.flips f),
hh AS (SELECT hd.seq, coalesce((SELECT f.hash FROM ${s}.flips f WHERE f.seq = hd.seq), repeat('0', 64)) AS hash FROM hd),
input AS (SELECT * FROM json_to_recordset(${acks}::json) AS x(w text, r text, s bigint, c integer, u jsonb)),
up AS (
  INSERT INTO ${s}.fleet_acks AS t (worker_id, replica_id, release, seq, answered_head, renewals, connections, unenforced, updated_at)
  SELECT i.w, ${replica}::text, i.r, i.s, (SELECT seq FROM hh), 1, i.c, i.u, now() FROM input i
  ON CONFLICT (worker_id) DO UPDATE SET replica_id = EXCLUDED.replica_id,
    release = coalesce(EXCLUDED.release, t.release), seq = EXCLUDED.seq,
    answered_head = EXCLUDED.answered_head, renewals = t.renewals + 1,
    connections = EXCLUDED.connections, unenforced = EXCLUDED.unenforced, updated_at = now()
  RETURNING t.worker_id, t.release, t.seq, t.connections, t.renewals, t.unenforced
)
SELECT hh.seq::text AS head, hh.hash,
  pg_notify(${channel}::text, json_build_object('t', 'a', 'r', ${replica}::text, 'h', hh.seq,
    'a', (SELECT json_agg(json_build_array(up.worker_id, up.release, up.seq, up.connections, up.renewals, up.unenforced)) FROM up))::text) AS n
FROM hh`;
  }

  // ---- heartbeats ------------------------------------------------------------------------

  publishHead(seq: number): void {
    if (seq <= this.#wantHead) return;
    this.#wantHead = seq;
    if (this.#closed) return;
    if (this.#beating) this.#beatAgain = true;
    else void this.#beatQuietly();
  }

  #scheduleBeat(): void {
    if (this.#closed) return;
    this.#beatTimer = this.#clock.setTimeout(() => {
      this.#beatTimer = undefined;
      void this.#beatQuietly().finally(() => this.#scheduleBeat());
    }, this.#beatMs);
  }

  async #beatQuietly(): Promise<void> {
    if (this.#beating) {
      this.#beatAgain = true;
      return;
    }
    try {
      await this.#track(this.#beat());
    } catch (err) {
      this.#trouble(`heartbeat failed: ${(err as Error).message}`);
    }
  }

  /** KS-8.8.2 one heartbeat: the counter grows by one and carries the head applied. */
  async #beat(): Promise<void> {
    this.#beating = true;
    try {
      do {
        this.#beatAgain = false;
        const head = this.#wantHead;
        const s = this.#s;
        await this.#pool.query({
          text: `WITH up AS (
  INSERT INTO ${s}.replicas AS t (replica_id, url, beat, head, updated_at) VALUES ($1::text, $2::text, 1, $3::bigint, now())
  ON CONFLICT (replica_id) DO UPDATE SET beat = t.beat + 1, url = EXCLUDED.url,
    head = greatest(t.head, EXCLUDED.head), updated_at = now()
  RETURNING t.beat, t.head
)
SELECT pg_notify($4::text, json_build_object('t', 'b', 'r', $1::text, 'u', $2::text, 'b', up.beat, 'h', up.head)::text) AS n FROM up`,
          values: [this.replicaId, this.#url, String(head), this.#channel],
        });
        if (head > this.#committedHead) this.#committedHead = head;
      } while (this.#beatAgain && !this.#closed);
    } finally {
      this.#beating = false;
    }
  }

  // ---- listening and reading -------------------------------------------------------------

  async #startListening(): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      client = await this.#pool.connect();
      const c = client;
      const lost = (err?: Error) => {
        if (this.#listen !== c) return;
        this.#dropListen();
        this.#trouble(`fleet LISTEN connection lost (${err?.message ?? 'ended'})`);
        this.#scheduleListen();
      };
      c.on('error', lost);
      c.on('end', () => lost());
      c.on('notification', (msg) => {
        if (msg.channel === this.#channel) this.#onNotification(msg.payload ?? '');
      });
      this.#listen = c;
      await c.query(`SET application_name = 'killswitch-fleet:${this.#schema}'`);
      await c.query(`LISTEN ${quoteIdent(this.#channel)}`);
      this.#listening = true;
      this.#listenAttempt = 0;
    } catch (err) {
      if (client !== undefined && this.#listen === client) this.#dropListen();
      this.#trouble(`could not LISTEN for the fleet: ${(err as Error).message}`);
      this.#scheduleListen();
    }
  }

  #dropListen(): void {
    const c = this.#listen;
    this.#listen = undefined;
    this.#listening = false;
    if (c === undefined) return;
    c.removeAllListeners('notification');
    c.removeAllListeners('end');
    c.removeAllListeners('error');
    c.on('error', () => undefined);
    c.release(true);
  }

  #scheduleListen(): void {
    if (this.#closed || this.#listenTimer !== undefined) return;
    const wait = delay(this.#listenAttempt++, {
      initialMs: 100,
      factor: 2,
      maxMs: 5000,
      jitter: 0,
    });
    this.#listenTimer = this.#clock.setTimeout(() => {
      this.#listenTimer = undefined;
      if (this.#closed) return;
      void this.#startListening().then(() => (this.#listening ? this.#syncQuietly() : undefined));
    }, wait);
  }

  #onNotification(payload: string): void {
    let e: FleetEvent | undefined;
    try {
      e = parsePayload(payload);
    } catch {
      e = undefined;
    }
    if (e === undefined) {
      this.#trouble(`unreadable fleet notification ${JSON.stringify(payload.slice(0, 80))}`);
      void this.#syncQuietly();
      return;
    }
    this.#emit(e);
    // KS-6.6.4 our own heartbeat arrived: every commit before it has been delivered.
    if (e.kind === 'beat' && e.replica === this.replicaId)
      this.#emit({ kind: 'barrier', head: e.head });
  }

  #scheduleSync(): void {
    if (this.#closed) return;
    this.#syncTimer = this.#clock.setTimeout(
      () => {
        this.#syncTimer = undefined;
        void this.#syncQuietly().finally(() => this.#scheduleSync());
      },
      this.#listening ? SYNC_EVERY_MS : this.#beatMs,
    );
  }

  async #syncQuietly(): Promise<void> {
    try {
      await this.#track(this.#sync());
    } catch (err) {
      this.#trouble(`reading the fleet failed: ${(err as Error).message}`);
    }
  }

  /** KS-8.8.3 both tables in one snapshot, taken after our last committed heartbeat. */
  async #sync(): Promise<void> {
    if (this.#closed) return;
    const barrier = this.#committedHead;
    const s = this.#s;
    const prune = ++this.#syncs % PRUNE_EVERY_SYNCS === 0;
    const client = await this.#connect();
    let results: pg.QueryResult[];
    try {
      results = (await client.query(
        `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = ${this.#statementTimeoutMs}; ` +
          `SELECT replica_id, url, beat::text AS beat, head::text AS head FROM ${s}.replicas; ` +
          `SELECT worker_id, replica_id, release, seq::text AS seq, answered_head::text AS answered_head, renewals::text AS renewals, connections, unenforced FROM ${s}.fleet_acks; COMMIT`,
      )) as unknown as pg.QueryResult[];
      if (prune) {
        await client.query(
          `DELETE FROM ${s}.replicas WHERE updated_at < now() - interval '1 hour'; ` +
            `DELETE FROM ${s}.fleet_acks WHERE updated_at < now() - interval '1 hour'`,
        );
      }
      client.release();
    } catch (err) {
      client.release(true);
      throw err;
    }
    const replicas: ReplicaRow[] = results[2]!.rows.map((r: Record<string, unknown>) => ({
      replica: String(r['replica_id']),
      url: String(r['url']),
      beat: Number(r['beat']),
      head: Number(r['head']),
    }));
    const workers: WorkerRow[] = results[3]!.rows.map((r: Record<string, unknown>) => ({
      workerId: String(r['worker_id']),
      replica: String(r['replica_id']),
      ...(r['release'] === null ? {} : { release: String(r['release']) }),
      seq: Number(r['seq']),
      answeredHead: Number(r['answered_head']),
      renewals: Number(r['renewals']),
      connections: Number(r['connections']),
      ...fromColumn(r['unenforced']),
    }));
    this.#emit({ kind: 'sync', replicas, workers, barrier });
  }

  #emit(e: FleetEvent): void {
    if (this.#closed) return;
    try {
      this.#onEvent(e);
    } catch (err) {
      this.#logger.warn(`fleet event handler failed: ${(err as Error).message}`);
    }
  }

  #trouble(message: string): void {
    if (this.#closed) return;
    this.#logger.warn(`postgres fleet (${this.#schema}): ${message}`);
    this.#emit({ kind: 'trouble', message });
  }

  /** Leaves the fleet: the row is deleted and the others told, so nobody waits for it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#beatTimer, this.#syncTimer, this.#listenTimer])
      if (t !== undefined) this.#clock.clearTimeout(t);
    await Promise.allSettled([...this.#inflight]);
    for (const p of this.#queue.splice(0))
      p.reject(unavailable('the fleet channel closed; nothing renewed'));
    this.#dropListen();
    await this.#pool
      .query({
        text:
          `WITH d AS (DELETE FROM ${this.#s}.replicas WHERE replica_id = $1::text RETURNING 1) ` +
          `SELECT pg_notify($2::text, json_build_object('t', 'l', 'r', $1::text)::text) FROM d`,
        values: [this.replicaId, this.#channel],
      })
      .catch(() => undefined);
  }

  /** A pooled client with one error handler (pools reuse clients: never one handler per use). */
  async #connect(): Promise<pg.PoolClient> {
    const client = await this.#pool.connect();
    if (!guarded.has(client)) {
      guarded.add(client);
      client.on('error', () => undefined);
    }
    return client;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = () => this.#inflight.delete(p);
    p.then(done, done);
    return p;
  }
}

/**
 * One element of the `unenforced` column (jsonb): a negative acknowledgement, or (at most one,
 * last) a gateway's report of its seams (KS-15.5.3), which rides in the same column so that every
 * replica lists a gateway's seams without a schema change. A reader that knows only negative
 * acknowledgements finds no `seq` in the report element and matches it with no flip.
 */
type ColumnElement = { seq: number; reason: string } | { gateway: GatewayReport };

/** One acknowledgement as the upsert reads it (`json_to_recordset`). */
interface Entry {
  readonly w: string;
  readonly r: string | null;
  readonly s: number;
  readonly c: number;
  readonly u: readonly ColumnElement[] | null;
}

function toEntry(a: SharedAck): Entry {
  let u = a.unenforced === undefined || a.unenforced.length === 0 ? null : [...a.unenforced];
  if (u !== null && Buffer.byteLength(JSON.stringify(u)) > UNENFORCED_BUDGET) {
    // Every refused seq is kept (they decide what counts as stopped); long reasons are cut.
    const each = Math.max(8, Math.floor(UNENFORCED_BUDGET / u.length) - 24);
    u = u.map((x) => ({ seq: x.seq, reason: cut(x.reason, each) }));
  }
  // The report is small (at most MAX_GATEWAY_SEAMS seams of 32-character names, validated).
  const column: ColumnElement[] | null =
    a.gateway === undefined ? u : [...(u ?? []), { gateway: a.gateway }];
  return { w: a.workerId, r: a.release ?? null, s: a.seq, c: a.connections, u: column };
}

/** Reads the `unenforced` column (or its copy in a notification): the nacks and the report. */
function fromColumn(v: unknown): Pick<SharedAck, 'unenforced' | 'gateway'> {
  if (!Array.isArray(v)) return {};
  const unenforced: { seq: number; reason: string }[] = [];
  let gateway: GatewayReport | undefined;
  for (const x of v as unknown[]) {
    if (x === null || typeof x !== 'object') continue;
    const e = x as Record<string, unknown>;
    if (typeof e['seq'] === 'number')
      unenforced.push({ seq: e['seq'], reason: String(e['reason'] ?? '') });
    else if (e['gateway'] !== undefined) gateway = gatewayReportOf(e['gateway']);
  }
  return {
    ...(unenforced.length > 0 ? { unenforced } : {}),
    ...(gateway !== undefined ? { gateway } : {}),
  };
}

/** A gateway report as another replica wrote it; undefined when it is not one. */
function gatewayReportOf(v: unknown): GatewayReport | undefined {
  const seams = (v as { seams?: unknown } | null)?.seams;
  if (!Array.isArray(seams) || seams.length === 0 || seams.length > MAX_GATEWAY_SEAMS)
    return undefined;
  const out: { seam: string; inFlight: number }[] = [];
  for (const x of seams as unknown[]) {
    const seam = (x as { seam?: unknown } | null)?.seam;
    const inFlight = (x as { inFlight?: unknown } | null)?.inFlight;
    if (typeof seam !== 'string' || typeof inFlight !== 'number') return undefined;
    out.push({ seam, inFlight });
  }
  return { seams: out };
}

function cut(text: string, bytes: number): string {
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) + 3 > bytes) return `${out}…`;
    out += ch;
  }
  return out;
}

function chunk(entries: readonly Entry[]): Entry[][] {
  const out: Entry[][] = [];
  let cur: Entry[] = [];
  let size = 0;
  for (const e of entries) {
    const n = Buffer.byteLength(JSON.stringify(e)) + 32;
    if (cur.length > 0 && size + n > PAYLOAD_BUDGET) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(e);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Reads one fleet notification; undefined when it is not one. */
function parsePayload(payload: string): FleetEvent | undefined {
  const p = JSON.parse(payload) as Record<string, unknown>;
  const r = p['r'];
  if (typeof r !== 'string') return undefined;
  switch (p['t']) {
    case 'a': {
      const h = p['h'];
      const list = p['a'];
      if (typeof h !== 'number' || !Array.isArray(list)) return undefined;
      const acks: ObservedAck[] = [];
      for (const x of list as unknown[]) {
        if (!Array.isArray(x)) return undefined;
        const [w, rel, seq, c, n, u] = x as unknown[];
        if (typeof w !== 'string' || typeof seq !== 'number' || typeof n !== 'number')
          return undefined;
        acks.push({
          workerId: w,
          ...(typeof rel === 'string' ? { release: rel } : {}),
          seq,
          connections: typeof c === 'number' ? c : 0,
          renewals: n,
          ...fromColumn(u),
        });
      }
      return { kind: 'acks', replica: r, answeredHead: h, acks };
    }
    case 'b': {
      const { u, b, h } = p;
      if (typeof u !== 'string' || typeof b !== 'number' || typeof h !== 'number') return undefined;
      return { kind: 'beat', replica: r, url: u, beat: b, head: h };
    }
    case 'l':
      return { kind: 'left', replica: r };
    default:
      return undefined;
  }
}
