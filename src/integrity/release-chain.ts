import { createHash } from 'node:crypto';
import { canonicalJson } from '../model/canonical-json.js';
import { GENESIS_HASH } from '../model/flip-record.js';
import type { ReleaseRecord } from '../protocol/releases.js';
import type { PublicKeyRing, SigningKey } from './signing-key.js';

/** The bytes a release verdict's signature covers. KS-17.7.6 */
export function releaseStatement(seq: number, hash: string): Buffer {
  return Buffer.from(`killswitch-release-v1\n${seq}\n${hash}`, 'utf8');
}

/** SHA-256 of a verdict's canonical JSON without `hash` and `sig`. KS-17.7.6 */
export function releaseHash(r: ReleaseRecord): string {
  const { hash: _h, sig: _s, ...rest } = r;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** Chains (and signs, with a key) the next verdict onto `prev` (the last verdict's hash). */
export function chainRelease(
  r: Omit<ReleaseRecord, 'prev' | 'hash' | 'sig'>,
  prev: string,
  key: SigningKey | undefined,
): ReleaseRecord {
  const withPrev = { ...r, prev };
  const hash = releaseHash(withPrev);
  const chained = { ...withPrev, hash };
  return key === undefined ? chained : { ...chained, sig: key.sign(releaseStatement(r.seq, hash)) };
}

/** The hash the next verdict's `prev` names: the stored one, or computed for an unchained verdict. */
export function releaseHead(last: ReleaseRecord | undefined): string {
  if (last === undefined) return GENESIS_HASH;
  return last.hash ?? releaseHash(last);
}

/**
 * Checks a release file's verdicts in order (KS-17.7.6): seq dense from 1, each chained verdict's
 * `prev` names the verdict before and its `hash` matches; verdicts written before the chain (no
 * `hash`) may only come first; once one is signed every later one must be, and with keys each
 * signature must verify. With `after`, `records` continue a log already checked up to
 * `after.last` (the verdicts a replica reads from a shared store, KS-8.9), and `after.signed`
 * says whether a verdict before was signed.
 *
 * @returns undefined when it holds, else the 1-based line (the seq the verdict should have) and why not
 */
export function releaseChainBreak(
  records: readonly ReleaseRecord[],
  ring: PublicKeyRing | undefined,
  after?: { readonly last: ReleaseRecord; readonly signed: boolean },
): { line: number; reason: string } | undefined {
  let prev: ReleaseRecord | undefined = after?.last;
  let chained = after?.last.hash !== undefined;
  let signed = after?.signed ?? false;
  const base = after?.last.seq ?? 0;
  for (const [i, r] of records.entries()) {
    const line = base + i + 1;
    if (r.seq !== line) return { line, reason: `found seq ${r.seq} where seq ${line} belongs` };
    if (r.hash === undefined) {
      if (chained || r.prev !== undefined || r.sig !== undefined) {
        return { line, reason: 'verdict not chained (no hash) after chained ones' };
      }
    } else {
      chained = true;
      if (r.prev !== releaseHead(prev)) {
        return { line, reason: 'prev does not match the hash of the verdict before' };
      }
      if (releaseHash(r) !== r.hash) return { line, reason: 'hash does not match the verdict' };
      if (r.sig !== undefined) {
        signed = true;
        if (ring !== undefined && !ring.verify(releaseStatement(r.seq, r.hash), r.sig)) {
          return { line, reason: 'signature does not verify under a known key' };
        }
      } else if (signed) {
        return { line, reason: 'verdict not signed after signed ones' };
      }
    }
    prev = r;
  }
  return undefined;
}
