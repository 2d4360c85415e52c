import { LogCorruptError } from '../errors.js';
import type { FlipRecord } from '../model/flip-record.js';
import type { PublicKeyRing, SigningKey } from './signing-key.js';
import { checkpointStatement, recordStatement, type Checkpoint } from './statements.js';

/** A record's seq and hash with the signature stored beside it (absent: unsigned). */
export interface SignedHead {
  readonly seq: number;
  readonly hash: string;
  readonly sig?: string | undefined;
}

/**
 * Checks the signatures stored beside a log's records (KS-17.7.3):
 *
 * - once a record is signed, every record after it MUST be signed (a record slipped in by the
 *   store's writer, who does not hold the key, has none) — checked with or without keys;
 * - with keys, `all` verifies every signature (`killswitch verify`), `last` the last signed one
 *   only (opening a store: the hash chain carries that signature to every record before it).
 *
 * @param records - the records in seq order, each with its `sig` when it has one
 * @param logId - the log's identity, part of every signed statement
 * @param ring - the public keys to verify with; undefined: presence is checked only
 * @returns how many records are signed
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the first bad seq
 */
export function checkRecordSignatures(
  records: readonly SignedHead[],
  logId: string,
  ring: PublicKeyRing | undefined,
  mode: 'all' | 'last',
): number {
  let signed = 0;
  let firstSigned: number | undefined;
  for (const r of records) {
    if (r.sig === undefined) {
      if (firstSigned !== undefined) {
        throw new LogCorruptError(
          r.seq,
          `record is not signed, though seq ${firstSigned} before it is: it was not appended by the key holder (KS-17.7.3)`,
        );
      }
      continue;
    }
    firstSigned ??= r.seq;
    signed++;
    if (ring !== undefined && (mode === 'all' || r === records.at(-1))) {
      checkOne(r, logId, ring);
    }
  }
  return signed;
}

function checkOne(r: SignedHead, logId: string, ring: PublicKeyRing): void {
  const sig = r.sig!;
  if (!ring.verify(recordStatement(logId, r.seq, r.hash), sig)) {
    const kid = sig.includes(':') ? sig.slice(0, sig.indexOf(':')) : '?';
    throw new LogCorruptError(
      r.seq,
      ring.kids.includes(kid)
        ? `signature does not verify under key ${kid} (KS-17.7.3)`
        : `signed by key ${kid}, which is not among the known keys (${ring.kids.join(', ') || 'none'}) (KS-17.7.3)`,
    );
  }
}

/**
 * Verifies one record's signature as a follower receives it (KS-17.7.3).
 *
 * @throws {LogCorruptError} `KS_LOG_CORRUPT` naming the seq when it is missing or does not verify
 */
export function checkRecordSignature(r: SignedHead, logId: string, ring: PublicKeyRing): void {
  if (r.sig === undefined) {
    throw new LogCorruptError(
      r.seq,
      'record is not signed: it was not appended by the key holder (KS-17.7.3)',
    );
  }
  checkOne(r, logId, ring);
}

/** Signs a record for storing beside it: `"<kid>:<base64url>"`. KS-17.7.2 */
export function signRecord(key: SigningKey, logId: string, seq: number, hash: string): string {
  return key.sign(recordStatement(logId, seq, hash));
}

/** A checkpoint of a head, signed when a key is given. KS-17.7.4 */
export function makeCheckpoint(
  head: { readonly logId: string; readonly seq: number; readonly hash: string },
  at: Date,
  key: SigningKey | undefined,
): Checkpoint {
  const c = { logId: head.logId, seq: head.seq, hash: head.hash, at: at.toISOString() };
  return key === undefined ? c : { ...c, sig: key.sign(checkpointStatement(c)) };
}

/** True when a checkpoint's signature verifies under the ring. */
export function checkpointVerifies(c: Checkpoint, ring: PublicKeyRing): boolean {
  if (c.sig === undefined) return false;
  const { sig, ...rest } = c;
  return ring.verify(checkpointStatement(rest), sig);
}

/** Signatures read from a store, kept beside the frozen record objects it returned. */
const attached = new WeakMap<FlipRecord, string>();

/**
 * Keeps a record's stored signature beside the record object, so whoever sends that record on
 * (the stream's flip event, KS-17.7.9) sends its signature too, without it ever becoming part of
 * the record or its hash. Stores call it for every signed record they return or deliver.
 */
export function attachSignature(record: FlipRecord, sig: string | undefined): void {
  if (sig !== undefined) attached.set(record, sig);
}

/** The signature a store attached to this record object, if any (KS-17.7.9). */
export function signatureOf(record: FlipRecord): string | undefined {
  return attached.get(record);
}
