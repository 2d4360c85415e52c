import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import type { FlipLogStore } from '../../store/flip-log-store.js';
import type { SigningKey } from '../../integrity/signing-key.js';

/** Default data directory of `killswitch serve` (or `$KILLSWITCH_DATA_DIR`). KS-5.3.1 */
export const DEFAULT_DATA_DIR = './.killswitch';

/** The data directory from a flag, the environment, or the default. */
export function dataDirOf(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  return resolve(flag ?? env['KILLSWITCH_DATA_DIR'] ?? DEFAULT_DATA_DIR);
}

/** What {@link createStore} built, with a description for the start banner. */
export interface CreatedStore {
  readonly store: FlipLogStore;
  readonly description: string;
}

/**
 * Chooses the flip-log store `--store` names: nothing means the file log `<dataDir>/flips.jsonl`,
 * `postgres://…` the PostgreSQL store (its driver loaded only then), `memory` the in-memory store
 * (nothing survives; for demos), anything else a file path. KS-5.3.2
 *
 * @throws {KillSwitchError} `KS_INVALID_OPTION` when the PostgreSQL provider cannot be loaded
 */
export async function createStore(
  spec: string | undefined,
  dataDir: string,
  options: { readonly signingKey?: SigningKey | undefined } = {},
): Promise<CreatedStore> {
  const { signingKey } = options;
  if (signingKey !== undefined && spec === 'memory') {
    // Never serve unsigned while the operator believes records are signed.
    throw new KillSwitchError(
      ErrorCode.INVALID_OPTION,
      '--signing-key: the memory store does not sign records (KS-17.7.2); the file and PostgreSQL stores do',
    );
  }
  if (spec !== undefined && /^postgres(?:ql)?:\/\//i.test(spec)) {
    // A variable specifier: the PostgreSQL provider (and pg) load only when asked for.
    const specifier = '../../../providers/postgres/index.js';
    let mod: {
      PostgresFlipLogStore?: new (o: {
        connectionString: string;
        signingKey?: SigningKey;
      }) => FlipLogStore;
    };
    try {
      mod = (await import(specifier)) as typeof mod;
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `--store ${redact(spec)}: the PostgreSQL store is not available (${(err as Error).message}); is 'pg' installed?`,
      );
    }
    if (typeof mod.PostgresFlipLogStore !== 'function') {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        '--store: providers/postgres does not export PostgresFlipLogStore',
      );
    }
    return {
      store: new mod.PostgresFlipLogStore({
        connectionString: spec,
        ...(signingKey === undefined ? {} : { signingKey }),
      }),
      description: `postgres ${redact(spec)}${signedBy(signingKey)}`,
    };
  }
  if (spec === 'memory') {
    const { MemoryFlipLogStore } = await import('../../../providers/memory/index.js');
    return {
      store: new MemoryFlipLogStore(),
      description: 'memory (NOT durable: flips are lost on exit)',
    };
  }
  const { FileFlipLogStore } = await import('../../../providers/file/index.js');
  const path = resolve(spec ?? join(dataDir, 'flips.jsonl'));
  if (spec === undefined) await mkdir(dataDir, { recursive: true, mode: 0o700 });
  return {
    store: new FileFlipLogStore({ path, ...(signingKey === undefined ? {} : { signingKey }) }),
    description: `file ${path}${signedBy(signingKey)}`,
  };
}

function signedBy(key: SigningKey | undefined): string {
  return key === undefined ? '' : ` (records signed by key ${key.kid})`;
}

/** A connection string without its password, for logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return 'postgres://…';
  }
}
