import { parseArgs } from 'node:util';
import { tokenSpecSchema } from '../../auth/token-authenticator.js';
import { createToken, hashToken, tokenId } from '../../auth/token-hash.js';
import { toIssues } from '../../internal/zod-issues.js';
import { SELECTOR_KEYS } from '../../model/selector.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';

const HELP = `usage: killswitch token create --name <name> --role viewer|worker|operator|admin
                              [--scope k=v[,k=v]]... [--workers <id or prefix*>]... [--resume]
                              [--expires <ISO 8601>] [--json]
       killswitch token hash   (reads a token on stdin)

create  makes a new token (ks_<id>_<secret>, 256 random bits) and prints it once, with the entry to
        add to the token file: a salted scrypt hash, so the file holds no secret (KS-17.3.3).
        --scope tenant=acme         an operator's (or a scoped viewer's) scope; repeat for more
        --workers 'w-*'             the worker ids a worker token acts as; repeat for more
        --resume                    the token may lift halts (operators; admins have it)
        --expires <instant>         refused after this instant
hash    prints the hash of an existing ks_<id>_<secret> token, to replace a plain "token" or a
        deprecated "sha256" entry with "hash" (KS-17.3.4).

A running control plane reloads the token file on change or SIGHUP (KS-17.3.1): add the entry,
hand the token over, and remove the old entry to rotate.
exit codes: 0 done, 2 usage error`;

/** `killswitch token create|hash`: makes tokens and the hashed entries of a token file. */
export const command: CliCommand = {
  name: 'token',
  summary: 'make a token and its hashed token-file entry',
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub === 'hash') return hash(rest, io);
    if (sub === 'create') return create(rest, io);
    io.stderr(`killswitch token: expected create or hash\n\n${HELP}`);
    return ExitCode.USAGE;
  },
};

function create(argv: readonly string[], io: CliIo): number {
  let entry: Record<string, unknown>;
  let json: boolean;
  const token = createToken();
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        name: { type: 'string' },
        role: { type: 'string' },
        scope: { type: 'string', multiple: true },
        workers: { type: 'string', multiple: true },
        resume: { type: 'boolean' },
        expires: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    json = values.json === true;
    entry = {
      name: values.name,
      hash: hashToken(token),
      role: values.role,
      ...(values.scope === undefined ? {} : { scopes: values.scope.map(parseScope) }),
      ...(values.workers === undefined ? {} : { workers: values.workers }),
      ...(values.resume === undefined ? {} : { resume: values.resume }),
      ...(values.expires === undefined ? {} : { expiresAt: values.expires }),
    };
    const checked = tokenSpecSchema.safeParse(entry);
    if (!checked.success) {
      throw new Error(
        toIssues(checked.error)
          .map((i) => `${i.path.join('.') || 'entry'}: ${i.message}`)
          .join('; '),
      );
    }
  } catch (err) {
    io.stderr(`killswitch token create: ${(err as Error).message}\n\n${HELP}`);
    return ExitCode.USAGE;
  }
  if (json) {
    io.stdout(JSON.stringify({ token, entry }));
  } else {
    io.stdout(`token (shown once; give it to its holder): ${token}`);
    io.stdout(`entry for the token file's "tokens" list:`);
    io.stdout(JSON.stringify(entry));
  }
  return ExitCode.OK;
}

async function hash(argv: readonly string[], io: CliIo): Promise<number> {
  if (argv.length > 0) {
    // Never on the command line: it would land in the shell history and the process list.
    io.stderr(`killswitch token hash: give the token on stdin, not as an argument\n\n${HELP}`);
    return ExitCode.USAGE;
  }
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const token = Buffer.concat(chunks).toString('utf8').trim();
  if (tokenId(token) === undefined) {
    io.stderr(
      'killswitch token hash: not a ks_<id>_<secret> token; rotate it with `killswitch token create` (KS-17.3.4)',
    );
    return ExitCode.USAGE;
  }
  io.stdout(hashToken(token));
  return ExitCode.OK;
}

/** `tenant=acme,capability=x` → `{ tenant: 'acme', capability: 'x' }` */
function parseScope(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const k = part.slice(0, eq);
    if (eq <= 0 || !(SELECTOR_KEYS as readonly string[]).includes(k)) {
      throw new Error(
        `--scope ${text}: expected k=v pairs with k one of ${SELECTOR_KEYS.join(', ')}`,
      );
    }
    out[k] = part.slice(eq + 1);
  }
  return out;
}
