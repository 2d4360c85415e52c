import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, KillSwitchError, ValidationError } from '../errors.js';
import { parseTokenSpecs, type TokenSpec } from './token-authenticator.js';
import { createToken } from './token-hash.js';

/** File name of the admin token generated into the data directory on first start. KS-5.2.7 */
export const GENERATED_TOKEN_FILE = 'admin.token';
/** File name of the token config in the data directory. */
export const TOKENS_FILE = 'tokens.json';

/** Options of {@link loadTokens}. */
export interface LoadTokensOptions {
  /** The data directory (`./.killswitch` by default in the CLI). */
  readonly dataDir: string;
  /** An explicit token file (`--tokens`); it must exist. @default `<dataDir>/tokens.json` if present */
  readonly tokensFile?: string;
  /** Environment (`KILLSWITCH_TOKENS`, `KILLSWITCH_ADMIN_TOKEN`). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Generate an admin token when none is configured. @default true */
  readonly generate?: boolean;
}

/** What {@link loadTokens} found. */
export interface LoadedTokens {
  readonly tokens: TokenSpec[];
  /** True when tokens came from a file or the environment (not only the generated one). */
  readonly configured: boolean;
  /** Where the generated admin token lives, when it is in use. */
  readonly generatedTokenPath?: string;
  /** True when the generated token was created by this call. */
  readonly created: boolean;
  /** Where the tokens came from, for the start banner. */
  readonly sources: string[];
  /** What the start banner should warn about: deprecated `sha256` entries (KS-17.3.4). */
  readonly warnings: string[];
  /** The token file read (absent when none was). Watch it to reload (KS-17.3.1). */
  readonly file?: string;
}

/**
 * Collects the tokens a control plane accepts: the token file, `KILLSWITCH_TOKENS` (JSON, the
 * token file's format) and `KILLSWITCH_ADMIN_TOKEN` (one admin token named `admin`). With none of
 * these, an admin token is generated into `<dataDir>/admin.token` (mode 0600) and reused on later
 * starts. KS-5.2.5, KS-5.2.7
 *
 * A token file that group or others may write is refused; one they may read is refused when it
 * holds a secret (a `token`, or an unsalted `sha256`): only files of salted `hash` entries may be
 * shared (KS-17.3.2). `sha256` entries are accepted with a warning (KS-17.3.4).
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed token file or variable
 * @throws {KillSwitchError} `KS_INVALID_OPTION` when `tokensFile` is missing, or a token file
 *   others may read or write
 */
export async function loadTokens(options: LoadTokensOptions): Promise<LoadedTokens> {
  const tokens: TokenSpec[] = [];
  const sources: string[] = [];
  const file = options.tokensFile ?? join(options.dataDir, TOKENS_FILE);
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' && options.tokensFile === undefined) return undefined;
    throw new KillSwitchError(
      ErrorCode.INVALID_OPTION,
      `cannot read token file ${file}: ${err.message}`,
    );
  });
  if (text !== undefined) {
    const specs = parseTokenSpecs(parseJson(text, file), file);
    await checkMode(file, specs);
    tokens.push(...specs);
    sources.push(file);
  }
  const envTokens = options.env['KILLSWITCH_TOKENS'];
  if (envTokens !== undefined && envTokens.trim() !== '') {
    tokens.push(...parseTokenSpecs(parseJson(envTokens, 'KILLSWITCH_TOKENS'), 'KILLSWITCH_TOKENS'));
    sources.push('KILLSWITCH_TOKENS');
  }
  const admin = options.env['KILLSWITCH_ADMIN_TOKEN'];
  if (admin !== undefined && admin !== '') {
    tokens.push(
      ...parseTokenSpecs(
        [{ name: 'admin', token: admin, role: 'admin' }],
        'KILLSWITCH_ADMIN_TOKEN',
      ),
    );
    sources.push('KILLSWITCH_ADMIN_TOKEN');
  }
  const legacy = tokens.filter((t) => t.sha256 !== undefined).map((t) => t.name);
  const warnings =
    legacy.length === 0
      ? []
      : [
          `tokens ${legacy.join(', ')} use the deprecated unsalted sha256 field: rotate them, or hash each with \`killswitch token hash\` and write the result as "hash" (KS-17.3.4)`,
        ];
  const fileField = text === undefined ? {} : { file };
  if (tokens.length > 0 || options.generate === false) {
    return {
      tokens,
      configured: tokens.length > 0,
      created: false,
      sources,
      warnings,
      ...fileField,
    };
  }
  const path = join(options.dataDir, GENERATED_TOKEN_FILE);
  const { token, created } = await readOrCreateToken(path);
  return {
    tokens: [{ name: 'admin', token, role: 'admin' }],
    configured: false,
    generatedTokenPath: path,
    created,
    sources: [path],
    warnings,
  };
}

/** KS-17.3.2: a token file is as private as the secrets in it, and never writable by others. */
async function checkMode(file: string, specs: readonly TokenSpec[]): Promise<void> {
  if (process.platform === 'win32') return;
  const mode = (await stat(file)).mode & 0o777;
  const octal = mode.toString(8).padStart(3, '0');
  if ((mode & 0o022) !== 0) {
    throw new KillSwitchError(
      ErrorCode.INVALID_OPTION,
      `token file ${file} is writable by group or others (mode ${octal}): anyone who can write it can add an admin token; chmod 600 it (or 644 for a file of hashed entries only)`,
    );
  }
  const secrets = specs.filter((s) => s.token !== undefined || s.sha256 !== undefined);
  if ((mode & 0o044) !== 0 && secrets.length > 0) {
    throw new KillSwitchError(
      ErrorCode.INVALID_OPTION,
      `token file ${file} is readable by group or others (mode ${octal}) and holds secrets (${secrets
        .map((s) => s.name)
        .join(', ')}: token or sha256); chmod 600 it, or write salted "hash" entries instead`,
    );
  }
}

/**
 * Reads the generated admin token, if present and private. Used by the CLI to talk to a local
 * server without `--token`.
 */
export async function readGeneratedToken(dataDir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dataDir, GENERATED_TOKEN_FILE), 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

async function readOrCreateToken(path: string): Promise<{ token: string; created: boolean }> {
  const st = await stat(path).catch(() => undefined);
  if (st !== undefined) {
    // A token others can read is not a secret any more: refuse rather than serve with it.
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
      );
    }
    const token = (await readFile(path, 'utf8')).trim();
    if (token.length < 16) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `${path} does not hold a token (empty or too short)`,
      );
    }
    return { token, created: false };
  }
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  const token = createToken();
  // 'wx': never overwrite a token another process has just written.
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.writeFile(token + '\n', 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { token, created: true };
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ValidationError(what, [{ path: [], message: `not JSON: ${(err as Error).message}` }]);
  }
}
