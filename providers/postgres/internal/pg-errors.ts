import { ErrorCode, KillSwitchError } from '../../../src/errors.js';

/** SQLSTATE `unique_violation`: another writer took the seq or the id first. */
export const UNIQUE_VIOLATION = '23505';

/** The SQLSTATE of a driver error, when it carries one. */
export function sqlState(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Wraps a driver or network error as `KS_STORE_UNAVAILABLE` (the store could not be reached or
 * written); a {@link KillSwitchError} passes through unchanged so its code survives. KS-8.3.2
 */
export function unavailable(what: string, err?: unknown): KillSwitchError {
  if (err instanceof KillSwitchError) return err;
  const detail = err === undefined ? '' : `: ${err instanceof Error ? err.message : String(err)}`;
  return new KillSwitchError(ErrorCode.STORE_UNAVAILABLE, `postgres store: ${what}${detail}`, {
    cause: err,
  });
}
