import { parseArgs } from 'node:util';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { redact } from '../internal/store-factory.js';

const HELP = `usage: killswitch db grant --role <name> [--schema <name>] [--store <postgres://…>] [--apply]
                          [--json]

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

exit codes: 0 done, 1 the grants could not be applied, 2 usage error`;

/** `killswitch db grant`: the PostgreSQL grants of a serving role (KS-17.7.7). */
export const command: CliCommand = {
  name: 'db',
  summary: "print or apply a PostgreSQL serving role's grants",
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub !== 'grant') {
      io.stderr(`killswitch db: expected grant\n\n${HELP}`);
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
