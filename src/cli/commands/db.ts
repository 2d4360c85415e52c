import { parseArgs } from 'node:util';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { redact } from '../internal/store-factory.js';

const HELP = `usage: killswitch db grant --role <name> [--schema <name>] [--store <postgres://…>] [--apply]
                          [--json]
       killswitch db import-releases <releases.jsonl> --store <postgres://…?schema=…>
                          [--signing-key <file>] [--public-key <file>]... [--json]

grant   the grants of a serving role on the PostgreSQL flip log (KS-17.7.7): it may read the log
        and the release verdicts, append only through the owner's append_flip and append_release
        functions (KS-8.9), set the signatures latch require_signatures() that serve with
        --signing-key calls (KS-17.7.11, schema 7) and keep the shared fleet's rows;
        it holds no INSERT, UPDATE, DELETE or TRUNCATE on the log and owns nothing, so it cannot
        rewrite history. Without --apply the SQL is printed, to run as the schema's owner.
        With --apply and --store (a URL of the OWNER role, never the serving role's), the schema
        is created or upgraded first (as 'serve' would) and the grants run in one transaction.
        Run it again after every upgrade of the schema (a new append_flip, append_release or
        require_signatures needs a new grant).

  --role <name>     the serving role 'killswitch serve --store' connects as (lower-case letters,
                    digits and _)
  --schema <name>   the log's schema (default: the URL's ?schema=, else killswitch)
  --store <url>     postgres:// URL of the schema's owner (needed by --apply)
  --apply           create or upgrade the schema and run the grants, instead of printing them
  --json            print { schema, role, sql, applied }

import-releases  carries the release verdicts of an old releases.jsonl (a data directory from
        before schema version 6) into the schema's shared releases table (KS-8.9.5). The file is
        checked as serve's gate checks it: a broken chain, or with --public-key a signature that
        does not verify, refuses it whole. The latest verdict of each release in it (overrides
        are left out) is recorded again, chained onto the table's head, in one transaction (all or
        nothing), its reason naming the file's seq; a release that already has a verdict in the
        table is skipped (that one is newer), so running it again imports nothing. Give the
        control plane's --signing-key when the replicas sign (the table then refuses unsigned
        verdicts). --store may be the serving role's URL.

  --signing-key <file>  the control plane's Ed25519 key (as serve --signing-key)
  --public-key <file>   a PEM public key the file's signatures must verify under (repeatable)

exit codes: 0 done, 1 the grants could not be applied or the verdicts not imported (nothing
was), 2 usage error`;

/** `killswitch db grant` (KS-17.7.7) and `killswitch db import-releases` (KS-8.9.5). */
export const command: CliCommand = {
  name: 'db',
  summary: "print or apply a PostgreSQL serving role's grants; import an old releases.jsonl",
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub === 'import-releases') return importReleases(rest, io);
    if (sub !== 'grant') {
      io.stderr(`killswitch db: expected grant or import-releases\n\n${HELP}`);
      return ExitCode.USAGE;
    }
    let role: string;
    let schema: string;
    let store: string | undefined;
    let apply: boolean;
    let json: boolean;
    let sql: string;
    const { servingRoleGrantsSql } =
      await import('../../../providers/postgres/internal/schema-sql.js');
    try {
      const { values } = parseArgs({
        args: [...rest],
        options: {
          role: { type: 'string' },
          schema: { type: 'string' },
          store: { type: 'string' },
          apply: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
        },
        allowPositionals: false,
        strict: true,
      });
      if (values.role === undefined) throw new Error('--role <name> is required');
      store = values.store;
      if (store !== undefined && !/^postgres(?:ql)?:\/\//i.test(store)) {
        throw new Error(`--store: expected a postgres:// URL, got ${JSON.stringify(store)}`);
      }
      apply = values.apply === true;
      if (apply && store === undefined) throw new Error("--apply needs --store <the owner's URL>");
      const fromUrl = store === undefined ? undefined : schemaParam(store);
      if (values.schema !== undefined && fromUrl !== undefined && values.schema !== fromUrl) {
        throw new Error(
          `--schema ${values.schema} disagrees with the URL's ?schema=${fromUrl}; give one`,
        );
      }
      role = values.role;
      schema = values.schema ?? fromUrl ?? 'killswitch';
      json = values.json === true;
      sql = servingRoleGrantsSql(schema, role).trim();
    } catch (err) {
      io.stderr(`killswitch db: ${(err as Error).message}\n\n${HELP}`);
      return ExitCode.USAGE;
    }
    if (!apply) {
      io.stdout(json ? JSON.stringify({ schema, role, sql, applied: false }) : sql);
      return ExitCode.OK;
    }
    return applyGrants(store!, schema, role, sql, json, io);
  },
};

/** `?schema=` of a URL, if any. */
function schemaParam(url: string): string | undefined {
  try {
    return new URL(url).searchParams.get('schema') ?? undefined;
  } catch {
    throw new Error('--store: not a valid URL');
  }
}

async function applyGrants(
  url: string,
  schema: string,
  role: string,
  sql: string,
  json: boolean,
  io: CliIo,
): Promise<number> {
  // The driver loads only here: printing the grants needs no database.
  const { PostgresFlipLogStore } = await import('../../../providers/postgres/index.js');
  const { appendFlipSignature } =
    await import('../../../providers/postgres/internal/schema-sql.js');
  const { default: pg } = await import('pg');
  const where = redact(url);
  // Opening as the owner creates the schema, or upgrades it, before anything is granted on it.
  const store = new PostgresFlipLogStore({
    connectionString: url,
    schema,
    logger: { warn: (m) => io.stderr(m) },
  });
  try {
    await store.open();
  } catch (err) {
    io.stderr(`killswitch db: cannot open schema ${schema} at ${where}: ${(err as Error).message}`);
    await store.close();
    return ExitCode.FAILED;
  }
  await store.close();
  const u = new URL(url);
  u.searchParams.delete('schema');
  const client = new pg.Client({ connectionString: u.href, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('BEGIN');
    await client.query(sql);
    // A GRANT by a role that holds a right without its grant option only warns: check the result.
    const check = await client.query<{ ok: boolean }>(
      `SELECT has_schema_privilege($1, $2, 'USAGE') AND has_table_privilege($1, $3, 'SELECT') ` +
        `AND has_function_privilege($1, $4, 'EXECUTE') AS ok`,
      [role, schema, `"${schema}".flips`, appendFlipSignature(schema)],
    );
    if (check.rows[0]?.ok !== true) {
      throw new Error(
        'the grants ran but the role still lacks them (is this URL the schema owner?)',
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    io.stderr(
      `killswitch db: granting ${role} on schema ${schema} at ${where} failed, nothing was granted: ${(err as Error).message}`,
    );
    return ExitCode.FAILED;
  } finally {
    await client.end().catch(() => undefined);
  }
  io.stdout(
    json
      ? JSON.stringify({ schema, role, sql, applied: true })
      : `granted ${role} the serving role's rights on schema ${schema} at ${where} (KS-17.7.7)`,
  );
  return ExitCode.OK;
}

/** `killswitch db import-releases`: an old releases.jsonl into the shared table (KS-8.9.5). */
async function importReleases(argv: readonly string[], io: CliIo): Promise<number> {
  let file: string;
  let store: string;
  let schema: string;
  let json: boolean;
  let keyFile: string | undefined;
  let publicKeyFiles: readonly string[] | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: {
        store: { type: 'string' },
        'signing-key': { type: 'string' },
        'public-key': { type: 'string', multiple: true },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1) throw new Error('give exactly one releases.jsonl file');
    if (values.store === undefined || !/^postgres(?:ql)?:\/\//i.test(values.store)) {
      throw new Error('--store <postgres://…?schema=…> is required');
    }
    file = positionals[0]!;
    store = values.store;
    schema = schemaParam(store) ?? 'killswitch';
    json = values.json === true;
    keyFile = values['signing-key'];
    publicKeyFiles = values['public-key'];
  } catch (err) {
    io.stderr(`killswitch db: ${(err as Error).message}\n\n${HELP}`);
    return ExitCode.USAGE;
  }
  const { PostgresFlipLogStore } = await import('../../../providers/postgres/index.js');
  const { ReleaseGate } = await import('../../server/release-gate.js');
  const { PublicKeyRing, SigningKey } = await import('../../integrity/signing-key.js');
  const where = redact(store);
  let pg: InstanceType<typeof PostgresFlipLogStore> | undefined;
  let gate: InstanceType<typeof ReleaseGate> | undefined;
  try {
    const signingKey = keyFile === undefined ? undefined : await SigningKey.load(keyFile);
    const publicKeys =
      publicKeyFiles === undefined ? undefined : await PublicKeyRing.load(publicKeyFiles);
    pg = new PostgresFlipLogStore({
      connectionString: store,
      schema,
      logger: { warn: (m) => io.stderr(m) },
      ...(signingKey === undefined ? {} : { signingKey }),
      ...(publicKeys === undefined ? {} : { publicKeys }),
    });
    gate = new ReleaseGate({
      logger: { warn: (m) => io.stderr(m) },
      ...(signingKey === undefined ? {} : { signingKey }),
      ...(publicKeys === undefined ? {} : { publicKeys }),
    });
    await gate.open(pg);
    const { imported, skipped, read } = await gate.importFile(file);
    if (json) {
      io.stdout(JSON.stringify({ schema, file, read, imported, skipped }));
    } else {
      io.stdout(
        `imported ${imported.length} release verdict(s) from ${file} (${read} line(s)) into schema ${schema} at ${where} (KS-8.9.5)` +
          imported.map((r) => `\n  ${r.release}: ${r.status} (seq ${r.seq})`).join('') +
          skipped
            .map(
              (r) =>
                `\n  ${r.release}: skipped, the table already has ${r.status} (seq ${r.seq}, newer)`,
            )
            .join(''),
      );
    }
    return ExitCode.OK;
  } catch (err) {
    io.stderr(
      `killswitch db: importing ${file} into schema ${schema} at ${where} failed, nothing was imported: ${(err as Error).message}`,
    );
    return ExitCode.FAILED;
  } finally {
    await gate?.close().catch(() => undefined);
    await pg?.close().catch(() => undefined);
  }
}
