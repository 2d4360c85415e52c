import { access, readFile } from 'node:fs/promises';
import { tlsFetch } from '../../client/tls-fetch.js';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isLoopbackHost } from '../../auth/is-loopback-host.js';
import { readGeneratedToken } from '../../auth/load-tokens.js';
import { ControlPlaneClient, ControlPlaneError } from '../../client/control-plane-client.js';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import { ExitCode, type CliCommand, type CliIo } from './command.js';
import { CommandOutput, type CliFailure } from './output.js';
import { dataDirOf } from './store-factory.js';

/** The flags every command that talks to a control plane takes (node:util parseArgs shape). */
export const REMOTE_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

/** Help text for {@link REMOTE_OPTIONS}. */
export const REMOTE_HELP = `  --url <url>        control plane (default $KILLSWITCH_URL or http://127.0.0.1:7411)
  --token <token>    bearer token (default $KILLSWITCH_TOKEN; for a loopback URL, the admin
                     token generated into the data directory)
  --ca <file>        CA (PEM) that signs an https control plane's certificate (default
                     $KILLSWITCH_CA; NODE_EXTRA_CA_CERTS works too)
  --data-dir <dir>   where a local server keeps its data (default $KILLSWITCH_DATA_DIR or ./.killswitch)
  --json             print the server's JSON answer (errors too: {"error": {"code", "message"}})`;

/** Help text on exit codes shared by the remote commands. */
export const EXIT_HELP = `exit codes: 0 done, 1 refused by the control plane (400/401/403/409/...),
            2 usage error, 3 control plane unreachable (or not a killswitch control plane)`;

/** Where the bearer token of a command came from, so a refusal can say. KS-5.3.11 */
export type TokenOrigin =
  | { readonly from: 'flag' }
  | { readonly from: 'env'; readonly overrides?: string }
  | { readonly from: 'file'; readonly path: string }
  | { readonly from: 'none'; readonly why: string };

/** A client and where its token came from. */
export interface Remote {
  readonly client: ControlPlaneClient;
  readonly token: TokenOrigin;
}

/**
 * Builds the client from the flags. The token comes from `--token`, `$KILLSWITCH_TOKEN`, or, for
 * a loopback URL only, `<dataDir>/admin.token` (so a token never travels to another host unasked).
 * KS-5.3.4
 */
export async function remoteFrom(
  values: {
    url?: string | undefined;
    token?: string | undefined;
    ca?: string | undefined;
    'data-dir'?: string | undefined;
  },
  io: CliIo,
  timeoutMs?: number,
): Promise<Remote> {
  const url = values.url ?? io.env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411';
  let host: string | undefined;
  try {
    host = new URL(url).hostname;
  } catch {
    host = undefined;
  }
  const local = host !== undefined && isLoopbackHost(host);
  const file = join(dataDirOf(values['data-dir'], io.env), 'admin.token');
  let token: string | undefined;
  let origin: TokenOrigin;
  const env = nonEmpty(io.env['KILLSWITCH_TOKEN']);
  if (values.token !== undefined) {
    token = values.token;
    origin = { from: 'flag' };
  } else if (env !== undefined) {
    token = env;
    const shadowed = local && (await exists(file));
    origin = { from: 'env', ...(shadowed ? { overrides: file } : {}) };
  } else if (local) {
    token = await readGeneratedToken(dataDirOf(values['data-dir'], io.env));
    origin =
      token === undefined
        ? { from: 'none', why: `no --token, no $KILLSWITCH_TOKEN, and no ${file}` }
        : { from: 'file', path: file };
  } else {
    origin = {
      from: 'none',
      why: 'no --token and no $KILLSWITCH_TOKEN (the local admin.token is read only for a loopback URL)',
    };
  }
  // KS-17.10.1: an https control plane signed by a CA of the operator's.
  const caFile = values.ca ?? nonEmpty(io.env['KILLSWITCH_CA']);
  const client = new ControlPlaneClient({
    url,
    ...(caFile === undefined ? {} : { fetch: tlsFetch({ ca: await readFile(caFile) }) }),
    ...(token === undefined ? {} : { token }),
    ...(timeoutMs ? { timeoutMs } : {}),
  });
  return { client, token: origin };
}

/** {@link remoteFrom} without the token's origin. */
export async function clientFrom(
  values: {
    url?: string | undefined;
    token?: string | undefined;
    ca?: string | undefined;
    'data-dir'?: string | undefined;
  },
  io: CliIo,
  timeoutMs?: number,
): Promise<ControlPlaneClient> {
  return (await remoteFrom(values, io, timeoutMs)).client;
}

/** Says where a refused token came from. KS-5.3.11 */
export function describeToken(t: TokenOrigin): string {
  switch (t.from) {
    case 'flag':
      return 'the token came from --token';
    case 'env':
      return t.overrides === undefined
        ? 'the token came from $KILLSWITCH_TOKEN'
        : `the token came from $KILLSWITCH_TOKEN, which overrides ${t.overrides} (unset it to use that one)`;
    case 'file':
      return `the token came from ${t.path} (is the server using this data directory? --data-dir, $KILLSWITCH_DATA_DIR)`;
    case 'none':
      return `no token was sent: ${t.why}`;
  }
}

/**
 * What a failed remote call means for the operator: a refusal with the server's code (and where
 * the token came from when it was the token), an unreachable control plane, something that is
 * not a control plane at all, or a usage problem.
 */
export function failureOf(err: unknown, token?: TokenOrigin): CliFailure {
  if (err instanceof ControlPlaneError && err.code === ErrorCode.NOT_A_CONTROL_PLANE) {
    // KS-5.3.12 a web server's 404 is not a refusal of the control plane.
    return {
      code: err.code,
      status: err.status,
      message: err.message,
      hints: ['check --url or $KILLSWITCH_URL (killswitch serve prints its URL when it starts)'],
      exit: ExitCode.UNREACHABLE,
    };
  }
  if (err instanceof ControlPlaneError) {
    const hints: string[] = [];
    if ((err.status === 401 || err.status === 403) && token !== undefined)
      hints.push(describeToken(token));
    if (err.status === 401 && token?.from === 'none')
      hints.push('pass --token or set KILLSWITCH_TOKEN');
    return {
      code: err.code,
      status: err.status,
      message: `refused (${err.status} ${err.code}): ${err.message}`,
      ...(err.issues !== undefined ? { issues: err.issues } : {}),
      hints,
      exit: ExitCode.FAILED,
    };
  }
  if (err instanceof KillSwitchError && err.code === ErrorCode.UNREACHABLE) {
    return { code: err.code, message: err.message, exit: ExitCode.UNREACHABLE };
  }
  if (
    err instanceof KillSwitchError &&
    (err.code === ErrorCode.INVALID_OPTION || err.code === ErrorCode.INVALID_INPUT)
  ) {
    return { code: err.code, message: err.message, exit: ExitCode.USAGE };
  }
  return {
    code: err instanceof KillSwitchError ? err.code : ErrorCode.INTERNAL,
    message: err instanceof Error ? err.message : String(err),
    exit: ExitCode.FAILED,
  };
}

/** Prints an error from a remote call and returns its exit code. */
export function reportError(name: string, err: unknown, io: CliIo, json = false): number {
  return new CommandOutput(name, io, json).fail(failureOf(err));
}

/**
 * A command that takes only {@link REMOTE_OPTIONS} and no positionals (`status`, `workers`): a
 * usage error prints the error and a hint, a refusal or a failure of the call is reported by
 * {@link failureOf}.
 */
export function remoteOnlyCommand(spec: {
  readonly name: string;
  readonly summary: string;
  readonly help: string;
  /** Does the call and prints; returns the exit code. */
  run(client: ControlPlaneClient, out: CommandOutput): Promise<number>;
}): CliCommand {
  return {
    name: spec.name,
    summary: spec.summary,
    help: spec.help,
    async run(argv, io) {
      const out = new CommandOutput(spec.name, io, argv.includes('--json'));
      let values;
      try {
        values = parseArgs({
          args: [...argv],
          options: REMOTE_OPTIONS,
          strict: true,
          allowPositionals: false,
        }).values;
      } catch (err) {
        return out.usage(err, Object.keys(REMOTE_OPTIONS));
      }
      const remote = await remoteFrom(values, io);
      try {
        return await spec.run(remote.client, out);
      } catch (err) {
        return out.fail(failureOf(err, remote.token));
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

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
