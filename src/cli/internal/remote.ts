import { isLoopbackHost } from '../../auth/is-loopback-host.js';
import { readGeneratedToken } from '../../auth/load-tokens.js';
import { ControlPlaneClient, ControlPlaneError } from '../../client/control-plane-client.js';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import { parseArgs } from 'node:util';
import { ExitCode, type CliCommand, type CliIo } from './command.js';
import { dataDirOf } from './store-factory.js';

/** The flags every command that talks to a control plane takes (node:util parseArgs shape). */
export const REMOTE_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

/** Help text for {@link REMOTE_OPTIONS}. */
export const REMOTE_HELP = `  --url <url>        control plane (default $KILLSWITCH_URL or http://127.0.0.1:7411)
  --token <token>    bearer token (default $KILLSWITCH_TOKEN; for a loopback URL, the admin
                     token generated into the data directory)
  --data-dir <dir>   where a local server keeps its data (default $KILLSWITCH_DATA_DIR or ./.killswitch)
  --json             print the server's JSON answer`;

/** Help text on exit codes shared by the remote commands. */
export const EXIT_HELP = `exit codes: 0 done, 1 refused by the control plane (400/401/403/409/...),
            2 usage error, 3 control plane unreachable`;

/**
 * Builds the client from the flags. The token comes from `--token`, `$KILLSWITCH_TOKEN`, or, for
 * a loopback URL only, `<dataDir>/admin.token` (so a token never travels to another host unasked).
 * KS-5.3.4
 */
export async function clientFrom(
  values: { url?: string | undefined; token?: string | undefined; 'data-dir'?: string | undefined },
  io: CliIo,
  timeoutMs?: number,
): Promise<ControlPlaneClient> {
  const url = values.url ?? io.env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411';
  let token = values.token ?? nonEmpty(io.env['KILLSWITCH_TOKEN']);
  if (token === undefined) {
    let host: string | undefined;
    try {
      host = new URL(url).hostname;
    } catch {
      host = undefined;
    }
    if (host !== undefined && isLoopbackHost(host))
      token = await readGeneratedToken(dataDirOf(values['data-dir'], io.env));
  }
  return new ControlPlaneClient({
    url,
    ...(token === undefined ? {} : { token }),
    ...(timeoutMs ? { timeoutMs } : {}),
  });
}

/** Prints an error from a remote call and returns its exit code. */
export function reportError(name: string, err: unknown, io: CliIo): number {
  if (err instanceof ControlPlaneError) {
    io.stderr(`killswitch ${name}: refused (${err.status} ${err.code}): ${err.message}`);
    for (const i of err.issues ?? [])
      io.stderr(`  ${i.path.length ? i.path.join('.') : '(body)'}: ${i.message}`);
    if (err.status === 401) io.stderr('  (pass --token or set KILLSWITCH_TOKEN)');
    return ExitCode.FAILED;
  }
  if (err instanceof KillSwitchError && err.code === ErrorCode.UNREACHABLE) {
    io.stderr(`killswitch ${name}: ${err.message}`);
    return ExitCode.UNREACHABLE;
  }
  if (
    err instanceof KillSwitchError &&
    (err.code === ErrorCode.INVALID_OPTION || err.code === ErrorCode.INVALID_INPUT)
  ) {
    io.stderr(`killswitch ${name}: ${err.message}`);
    return ExitCode.USAGE;
  }
  io.stderr(`killswitch ${name}: ${err instanceof Error ? err.message : String(err)}`);
  return ExitCode.FAILED;
}

/**
 * A command that takes only {@link REMOTE_OPTIONS} and no positionals (`status`, `workers`): a
 * usage error prints the help and exits 2, a refusal or a failure of the call is reported by
 * {@link reportError}.
 */
export function remoteOnlyCommand(spec: {
  readonly name: string;
  readonly summary: string;
  readonly help: string;
  /** Does the call and prints; returns the exit code. */
  run(client: ControlPlaneClient, json: boolean, io: CliIo): Promise<number>;
}): CliCommand {
  return {
    name: spec.name,
    summary: spec.summary,
    help: spec.help,
    async run(argv, io) {
      let values;
      try {
        values = parseArgs({
          args: [...argv],
          options: REMOTE_OPTIONS,
          strict: true,
          allowPositionals: false,
        }).values;
      } catch (err) {
        io.stderr(`killswitch ${spec.name}: ${(err as Error).message}\n\n${spec.help}`);
        return ExitCode.USAGE;
      }
      try {
        return await spec.run(await clientFrom(values, io), values.json === true, io);
      } catch (err) {
        return reportError(spec.name, err, io);
      }
    },
  };
}

/** Parses a non-negative integer flag. */
export function intFlag(
  name: string,
  value: string | undefined,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > max)
    throw new UsageError(`--${name} must be an integer from 0 to ${max}`);
  return Number(value);
}

/** A usage problem found after parseArgs. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}
