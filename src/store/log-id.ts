import { randomUUID } from 'node:crypto';

/**
 * The identity a log gets when a store first gives it one (KS-2.7.1): random for an empty log
 * (genesis); for a log that already holds records (written before logs had identities), `h-` and
 * the first 32 hex digits of its first record's hash, so every copy of that log gets the same
 * identity wherever it is upgraded, and another log gets another.
 *
 * @param firstHash - the hash of seq 1, or undefined for an empty log
 * @example logIdFor(undefined) // a random UUID
 */
export function logIdFor(firstHash: string | undefined): string {
  return firstHash === undefined ? randomUUID() : `h-${firstHash.slice(0, 32)}`;
}
