/**
 * The SQL of the PostgreSQL flip log: the schema migration, the statements the store runs and the
 * advisory-lock keys. Everything is qualified with the (validated) schema name, so several logs
 * can live in one database without touching `search_path`. KS-8.1
 */

/** The schema version this library writes and understands. KS-8.1.2 */
export const SCHEMA_VERSION = 7;

/**
 * Schema versions: 1 the log (flips, meta, triggers); 2 adds the log's identity `meta.log_id`
 * (KS-2.7.3): random at genesis, or derived from seq 1's hash for a log that already had records
 * (the same formula as src/store/log-id.ts, so every copy of a log gets the same identity);
 * 3 adds the fleet the replicas share (KS-8.8): `replicas` and `fleet_acks`, with nothing to
 * carry over (a version-2 schema had no shared fleet; each replica kept its own in memory).
 * A version-2 library refuses a version-3 schema (KS-8.1.2), so an old replica cannot join a
 * fleet whose acknowledgements it would not share.
 * 4 adds `append_flip(...)`, a SECURITY DEFINER function owned by the schema's owner through
 * which the store appends (KS-17.7.7), so a serving role given only {@link servingRoleGrantsSql}
 * can append but not insert, update, delete, truncate nor touch the triggers. Nothing to carry
 * over; a version-3 library refuses a version-4 schema. The upgrade must run as the owner.
 * 5 adds the records' signatures (KS-17.7.2): a nullable `flips.sig` column beside each record
 * (outside the hash), `append_flip` takes it as a 14th argument (the 13-argument one is dropped,
 * so a grant on it must be given again), and the insert check refuses an unsigned record after a
 * signed one. Records from before keep `sig` NULL; the first signed append covers them (the chain).
 * A version-4 library refuses a version-5 schema. The upgrade must run as the owner.
 * 6 adds the release verdicts the replicas share (KS-8.9): `releases`, insert-only and chained
 * like `flips` (the same triggers' rules), appended only through `append_release(...)`, a
 * SECURITY DEFINER function like `append_flip`. Nothing is carried over: version 5 kept verdicts
 * in each replica's `releases.jsonl`, and a resume naming a release with no verdict in the table
 * is refused (the gap fails closed). A version-5 library refuses a version-6 schema, so an old
 * replica cannot gate resumes on its own file beside replicas that share. The upgrade must run as
 * the owner, and the serving role must be granted again (`append_release` is new).
 * 7 binds records to who wrote them and to the key (KS-17.7.11): a `writer` column on `flips` and
 * `releases` that the insert check fills with `session_user` (the login role, which a SECURITY
 * DEFINER function does not change; no caller can choose it), and `require_signatures()`, a
 * SECURITY DEFINER latch a control plane with a signing key calls when it opens: it records the
 * heads in `meta` (`flips_signed_after`, `releases_signed_after`), and the insert checks then
 * refuse every unsigned row after them, so a record written with the serving role's credentials
 * but without the key is refused even before the first signed record. Nothing to carry over (rows
 * from before keep `writer` NULL). A version-6 library refuses a version-7 schema; the upgrade
 * must run as the owner, and the serving role must be granted again (`require_signatures` is new).
 */

/** Tables of the shared fleet (KS-8.8) that a serving role reads and writes (KS-17.7.7 grants). */
export const FLEET_TABLES = ['replicas', 'fleet_acks'] as const;

/** The two chained, insert-only tables (KS-8.2.3, KS-8.9.1): what their one insert check names. */
const CHAINED = {
  flips: { table: 'flips', noun: 'flip' },
  releases: { table: 'releases', noun: 'release verdict' },
} as const;

/**
 * The insert check of a chained table (`<table>_check_insert`), one template for `flips` and
 * `releases` so their rules cannot drift: seq = head + 1, prev = the head's hash, hash = SHA-256 of
 * body, body names the same seq and prev, and (KS-17.7.3, version 5) once the head is signed every
 * later row is. The store always satisfies this (it holds the append lock); the check stops a
 * writer that bypasses the store from breaking the chain. Version 7 (KS-17.7.11): no unsigned row
 * after the latch `require_signatures()` set, and `writer` is always the inserting `session_user`.
 */
function chainCheckFunctionSql(
  s: string,
  { table, noun }: { readonly table: string; readonly noun: string },
): string {
  return `CREATE OR REPLACE FUNCTION ${s}.${table}_check_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  head_seq bigint;
  head_hash text;
  head_sig text;
  signed_after bigint;
BEGIN
  SELECT t.seq, t.hash, t.sig INTO head_seq, head_hash, head_sig FROM ${s}.${table} t ORDER BY t.seq DESC LIMIT 1;
  IF head_seq IS NULL THEN
    head_seq := 0;
    head_hash := repeat('0', 64);
  END IF;
  IF NEW.seq IS DISTINCT FROM head_seq + 1 THEN
    RAISE EXCEPTION '${noun} seq % does not follow the head seq %', NEW.seq, head_seq USING ERRCODE = 'KS001';
  END IF;
  IF NEW.prev IS DISTINCT FROM head_hash THEN
    RAISE EXCEPTION '${noun} seq %: prev does not name the hash of seq %', NEW.seq, head_seq USING ERRCODE = 'KS001';
  END IF;
  IF NEW.hash IS DISTINCT FROM encode(sha256(convert_to(NEW.body, 'UTF8')), 'hex') THEN
    RAISE EXCEPTION '${noun} seq %: hash is not the SHA-256 of body', NEW.seq USING ERRCODE = 'KS001';
  END IF;
  -- Canonical JSON escapes every quote inside a string, so these patterns can only match the keys.
  IF substring(NEW.body FROM '"seq":([0-9]+)[,}]') IS DISTINCT FROM NEW.seq::text
     OR substring(NEW.body FROM '"prev":"([0-9a-f]{64})"') IS DISTINCT FROM NEW.prev THEN
    RAISE EXCEPTION '${noun} seq %: body disagrees with the seq and prev columns', NEW.seq USING ERRCODE = 'KS001';
  END IF;
  IF head_sig IS NOT NULL AND NEW.sig IS NULL THEN
    RAISE EXCEPTION '${noun} seq %: not signed, though seq % before it is', NEW.seq, head_seq USING ERRCODE = 'KS001';
  END IF;
  -- KS-17.7.11 (version 7) after a control plane with a key opened the log, every row is signed.
  SELECT m.value::bigint INTO signed_after FROM ${s}.meta m WHERE m.key = '${table}_signed_after';
  IF NEW.sig IS NULL AND NEW.seq > signed_after THEN
    RAISE EXCEPTION '${noun} seq %: not signed, though a control plane with a signing key requires signatures after seq % (KS-17.7.11)', NEW.seq, signed_after USING ERRCODE = 'KS001';
  END IF;
  -- KS-17.7.11 the database role that wrote the row, which its caller cannot choose.
  NEW.writer := session_user;
  RETURN NEW;
END
$fn$;`;
}

/** The argument types of `append_flip`, in {@link insertParams} order. */
const APPEND_ARGS =
  'bigint, text, text, text, text, jsonb, text, text, text, text, text, text, text, text';

/** The argument types of `append_release` (version 6), in {@link appendReleaseCallSql} order. */
const APPEND_RELEASE_ARGS = 'bigint, text, text, text, text';

/** The argument types of version 4's `append_flip` (no signature), dropped by the upgrade to 5. */
const APPEND_ARGS_V4 =
  'bigint, text, text, text, text, jsonb, text, text, text, text, text, text, text';

/**
 * First key of the two-key advisory locks (`'KS'` as a number). The second key is
 * `hashtext(schema)`, so logs in different schemas do not serialise each other. A hash collision
 * between two schemas only costs some extra waiting, never correctness.
 */
export const LOCK_CLASS_APPEND = 0x4b53;
/** First key of the release-append lock (KS-8.9.2): one verdict is chained onto the head at a time. */
export const LOCK_CLASS_RELEASE = 0x4b55;
/** First key of the migration lock; distinct from the append lock so a migration never waits on writers. */
export const LOCK_CLASS_MIGRATE = 0x4b54;

/**
 * The columns every read selects from `flips f`, in one place so decoding and the queries agree.
 * seq comes back as text (a bigint); queries must `ORDER BY f.seq`, never the text alias.
 */
export const RECORD_COLUMNS =
  'f.seq::text AS seq, f.id, f.at, f.actor, f.action, f.selector, f.reason, f.mode, f.release, f.source, f.prev, f.hash, f.body, f.sig';

/** The NOTIFY channel of a schema's log (the schema name is at most 48 characters, so this fits 63). */
export function channelOf(schema: string): string {
  return `ks_flips_${schema}`;
}

/** The NOTIFY channel of a schema's shared fleet (KS-8.8). */
export function fleetChannelOf(schema: string): string {
  return `ks_fleet_${schema}`;
}

/** `"schema"` for a schema name that already passed validation (lower-case letters, digits, `_`). */
export function quoteIdent(name: string): string {
  return `"${name}"`;
}

/**
 * The version-1 schema. Run inside one transaction that holds the migration advisory lock, so
 * replicas that start at once run it one after the other and the later ones find it done. KS-8.1.1
 */
export function migrationSql(schema: string): string {
  const s = quoteIdent(schema);
  const channel = channelOf(schema).replaceAll("'", "''");
  return `
CREATE SCHEMA IF NOT EXISTS ${s};

CREATE TABLE IF NOT EXISTS ${s}.meta (
  key text PRIMARY KEY,
  value text NOT NULL
);

-- KS-8.2.1 one row per flip record; body is the canonical JSON the hash covers, byte for byte.
CREATE TABLE IF NOT EXISTS ${s}.flips (
  seq bigint PRIMARY KEY CHECK (seq >= 1),
  id text NOT NULL UNIQUE,
  at text NOT NULL,
  actor text NOT NULL,
  action text NOT NULL CHECK (action IN ('halt', 'resume')),
  selector jsonb NOT NULL,
  reason text NOT NULL,
  mode text CHECK (mode IN ('discard', 'hold', 'drain')),
  release text,
  source text,
  prev text NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
  hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  body text NOT NULL
);

-- KS-8.2.2 the log is insert-only: any UPDATE, DELETE or TRUNCATE statement is refused, even one
-- that would touch no row, whoever runs it (privileges do not bind a superuser; this trigger does
-- until a superuser disables it, which the hash chain then exposes on the next open).
CREATE OR REPLACE FUNCTION ${s}.flips_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  RAISE EXCEPTION 'the kill-switch flip log %.flips is insert-only: % refused', TG_TABLE_SCHEMA, TG_OP
    USING ERRCODE = 'KS002';
END
$fn$;

-- KS-8.2.3 an INSERT must extend the chain: seq = head + 1, prev = the head's hash, hash = SHA-256
-- of body, and body names the same seq and prev. The store always satisfies this (it holds the
-- append lock); the check stops a writer that bypasses the store from breaking the chain.
${chainCheckFunctionSql(s, CHAINED.flips)}

-- KS-8.5.1 wake followers; PostgreSQL delivers the notification only when the insert commits.
CREATE OR REPLACE FUNCTION ${s}.flips_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  -- seq:hash, so a follower can tell a record at a seq it already delivered from the one it
  -- delivered (KS-8.5.7: a cut tail with a new record in its place).
  PERFORM pg_notify('${channel}', NEW.seq::text || ':' || NEW.hash);
  RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS flips_insert_only ON ${s}.flips;
CREATE TRIGGER flips_insert_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ${s}.flips
  FOR EACH STATEMENT EXECUTE FUNCTION ${s}.flips_refuse_change();
DROP TRIGGER IF EXISTS flips_check_insert ON ${s}.flips;
CREATE TRIGGER flips_check_insert BEFORE INSERT ON ${s}.flips
  FOR EACH ROW EXECUTE FUNCTION ${s}.flips_check_insert();
DROP TRIGGER IF EXISTS flips_notify ON ${s}.flips;
CREATE TRIGGER flips_notify AFTER INSERT ON ${s}.flips
  FOR EACH ROW EXECUTE FUNCTION ${s}.flips_notify();

-- KS-8.2.2 nobody, not even the owner that runs the store, holds UPDATE, DELETE or TRUNCATE.
REVOKE UPDATE, DELETE, TRUNCATE ON ${s}.flips FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON ${s}.flips FROM CURRENT_USER;

-- KS-2.7.3 the log's identity, given once and never changed by a later migration.
INSERT INTO ${s}.meta (key, value)
  SELECT 'log_id', COALESCE(
    (SELECT 'h-' || substr(f.hash, 1, 32) FROM ${s}.flips f WHERE f.seq = 1),
    gen_random_uuid()::text)
  ON CONFLICT (key) DO NOTHING;

-- KS-8.8.1 the shared fleet (version 3). One row per running replica: a heartbeat counter (never
-- a time: each replica times the counter's moves on its own monotonic clock) and the head it
-- applied; one row per worker: its last acknowledgement, which replica received it, and the log's
-- head when that acknowledgement was committed. updated_at is the database's clock, used only to
-- prune rows nobody renewed for an hour.
CREATE TABLE IF NOT EXISTS ${s}.replicas (
  replica_id text PRIMARY KEY,
  url text NOT NULL,
  beat bigint NOT NULL,
  head bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.fleet_acks (
  worker_id text PRIMARY KEY,
  replica_id text NOT NULL,
  release text,
  seq bigint NOT NULL,
  answered_head bigint NOT NULL,
  renewals bigint NOT NULL,
  connections integer NOT NULL,
  unenforced jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- KS-17.7.7 (version 4) the one way a serving role appends: a function owned by the schema's owner
-- that inserts one record (the triggers above still check the chain). Grant EXECUTE on it, never
-- INSERT on the table (servingRoleGrantsSql).
-- KS-17.7.2 (version 5) each record's signature, beside it and outside the hash; NULL before the
-- log was signed.
ALTER TABLE ${s}.flips ADD COLUMN IF NOT EXISTS sig text CHECK (sig IS NULL OR length(sig) BETWEEN 1 AND 256);
DROP FUNCTION IF EXISTS ${s}.append_flip(${APPEND_ARGS_V4});
CREATE OR REPLACE FUNCTION ${s}.append_flip(
  p_seq bigint, p_id text, p_at text, p_actor text, p_action text, p_selector jsonb, p_reason text,
  p_mode text, p_release text, p_source text, p_prev text, p_hash text, p_body text, p_sig text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO ${s}.flips (seq, id, at, actor, action, selector, reason, mode, release, source, prev, hash, body, sig)
    VALUES (p_seq, p_id, p_at, p_actor, p_action, p_selector, p_reason, p_mode, p_release, p_source, p_prev, p_hash, p_body, p_sig);
END
$fn$;
REVOKE ALL ON FUNCTION ${s}.append_flip(${APPEND_ARGS}) FROM PUBLIC;

-- KS-8.9.1 (version 6) the release verdicts every replica's gate reads (KS-10.5.2): one row per
-- verdict or override, chained like flips. body is the verdict's canonical JSON without hash and
-- sig (what the hash covers, byte for byte); sig is the control plane's signature, outside it.
CREATE TABLE IF NOT EXISTS ${s}.releases (
  seq bigint PRIMARY KEY CHECK (seq >= 1),
  prev text NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
  hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  body text NOT NULL,
  sig text CHECK (sig IS NULL OR length(sig) BETWEEN 1 AND 256)
);

CREATE OR REPLACE FUNCTION ${s}.releases_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  RAISE EXCEPTION 'the kill-switch release verdicts %.releases are insert-only: % refused', TG_TABLE_SCHEMA, TG_OP
    USING ERRCODE = 'KS002';
END
$fn$;

-- KS-8.9.1 an INSERT must extend the chain, as for flips (KS-8.2.3), and once a verdict is signed
-- every later one is (KS-17.7.6).
${chainCheckFunctionSql(s, CHAINED.releases)}

DROP TRIGGER IF EXISTS releases_insert_only ON ${s}.releases;
CREATE TRIGGER releases_insert_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ${s}.releases
  FOR EACH STATEMENT EXECUTE FUNCTION ${s}.releases_refuse_change();
DROP TRIGGER IF EXISTS releases_check_insert ON ${s}.releases;
CREATE TRIGGER releases_check_insert BEFORE INSERT ON ${s}.releases
  FOR EACH ROW EXECUTE FUNCTION ${s}.releases_check_insert();
REVOKE UPDATE, DELETE, TRUNCATE ON ${s}.releases FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON ${s}.releases FROM CURRENT_USER;

-- KS-8.9.2 the one way a serving role records a verdict (KS-17.7.7's rule for flips).
CREATE OR REPLACE FUNCTION ${s}.append_release(
  p_seq bigint, p_prev text, p_hash text, p_body text, p_sig text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO ${s}.releases (seq, prev, hash, body, sig) VALUES (p_seq, p_prev, p_hash, p_body, p_sig);
END
$fn$;
REVOKE ALL ON FUNCTION ${s}.append_release(${APPEND_RELEASE_ARGS}) FROM PUBLIC;

-- KS-17.7.11 (version 7) who wrote each row (the insert check sets it from session_user), and the
-- latch a control plane with a signing key sets when it opens: from the heads it records on, the
-- insert checks refuse unsigned rows. Setting it again changes nothing; it is never lifted.
ALTER TABLE ${s}.flips ADD COLUMN IF NOT EXISTS writer text;
ALTER TABLE ${s}.releases ADD COLUMN IF NOT EXISTS writer text;
CREATE OR REPLACE FUNCTION ${s}.require_signatures() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  -- The appends' own locks, so no append is between reading its head and committing.
  PERFORM pg_advisory_xact_lock(${LOCK_CLASS_APPEND}, hashtext('${schema}'));
  PERFORM pg_advisory_xact_lock(${LOCK_CLASS_RELEASE}, hashtext('${schema}'));
  INSERT INTO ${s}.meta (key, value)
    SELECT 'flips_signed_after', COALESCE(max(f.seq), 0)::text FROM ${s}.flips f
    ON CONFLICT (key) DO NOTHING;
  INSERT INTO ${s}.meta (key, value)
    SELECT 'releases_signed_after', COALESCE(max(r.seq), 0)::text FROM ${s}.releases r
    ON CONFLICT (key) DO NOTHING;
END
$fn$;
REVOKE ALL ON FUNCTION ${s}.require_signatures() FROM PUBLIC;

INSERT INTO ${s}.meta (key, value) VALUES ('schema_version', '${SCHEMA_VERSION}')
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
`;
}

/** `"schema".append_flip(<argument types>)`: the function's identity, for grants and privilege checks. */
export function appendFlipSignature(schema: string): string {
  return `${quoteIdent(schema)}.append_flip(${APPEND_ARGS})`;
}

/** The call the store appends one record with (version 5): `$1..$14` as {@link insertParams}. */
export function appendCallSql(schema: string): string {
  return `SELECT ${quoteIdent(schema)}.append_flip($1::bigint, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14)`;
}

/** `"schema".append_release(<argument types>)`, for grants and privilege checks. */
export function appendReleaseSignature(schema: string): string {
  return `${quoteIdent(schema)}.append_release(${APPEND_RELEASE_ARGS})`;
}

/** The call of the signatures latch (version 7, KS-17.7.11), by a store that holds a key. */
export function requireSignaturesCallSql(schema: string): string {
  return `SELECT ${quoteIdent(schema)}.require_signatures()`;
}

/** The call that records one release verdict (version 6): `$1..$5` = seq, prev, hash, body, sig. */
export function appendReleaseCallSql(schema: string): string {
  return `SELECT ${quoteIdent(schema)}.append_release($1::bigint, $2, $3, $4, $5)`;
}

/** Role names the grants accept: as schema names, so they need no quoting rules of their own. */
const ROLE_RE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The grants of a serving role (KS-17.7.7): run once by the schema's owner after the store created
 * the schema. The role may read the log and the release verdicts, append only through
 * `append_flip` and `append_release`, and keep the shared
 * fleet's rows; it holds no INSERT, UPDATE, DELETE or TRUNCATE on the log, does not own the
 * table, its triggers or the function, and gets no grant option.
 *
 * @throws {Error} for a schema or role name outside `[a-z_][a-z0-9_]*`
 */
export function servingRoleGrantsSql(schema: string, role: string): string {
  if (!ROLE_RE.test(schema) || !ROLE_RE.test(role)) {
    throw new Error('schema and role must be lower-case names ([a-z_][a-z0-9_]*)');
  }
  const s = quoteIdent(schema);
  const r = quoteIdent(role);
  return `
GRANT USAGE ON SCHEMA ${s} TO ${r};
GRANT SELECT ON ${s}.meta, ${s}.flips, ${s}.releases TO ${r};
GRANT EXECUTE ON FUNCTION ${s}.append_flip(${APPEND_ARGS}) TO ${r};
GRANT EXECUTE ON FUNCTION ${s}.append_release(${APPEND_RELEASE_ARGS}) TO ${r};
GRANT EXECUTE ON FUNCTION ${s}.require_signatures() TO ${r};
GRANT SELECT, INSERT, UPDATE, DELETE ON ${FLEET_TABLES.map((t) => `${s}.${t}`).join(', ')} TO ${r};
`;
}
