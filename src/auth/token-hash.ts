import { createHash, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import { ErrorCode, KillSwitchError } from '../errors.js';

/**
 * A token this project generates: `ks_<id>_<secret>`, a 12-character id (lowercase letters and
 * digits) that names the token without revealing it, and a 256-bit secret in base64url. The id
 * lets a salted hash be found without trying every entry (KS-17.3.3).
 */
const TOKEN_FORM = /^ks_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

/** A hashed token entry: `$scrypt$id=<id>,ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>` (base64url). */
const HASH_FORM =
  /^\$scrypt\$id=([a-z0-9]{12}),ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9_-]{16,64})\$([A-Za-z0-9_-]{43})$/;

/**
 * scrypt cost of the hashes {@link hashToken} writes: N = 2^12, r = 8 (4 MiB, a few ms). The
 * tokens this project makes carry 256 random bits, which no work factor needs to protect; the
 * salt keeps a copied token file from being matched against precomputed tables or other
 * deployments, and the cost slows guessing of weaker tokens. Each token is hashed once per
 * process and then remembered (KS-17.3.3). A hash carries its own cost, so stronger ones verify.
 */
export const SCRYPT_DEFAULTS = { ln: 12, r: 8, p: 1 } as const;

const KEY_BYTES = 32;

/** A parsed hashed entry. */
export interface ScryptHash {
  readonly id: string;
  readonly ln: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

/**
 * Makes a new random token in the `ks_<id>_<secret>` form (256 bits of secret).
 *
 * @example
 * ```ts
 * const token = createToken(); // 'ks_k3v9x0q2m1a7_…'
 * ```
 */
export function createToken(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (const b of randomBytes(12)) id += alphabet[b % 36];
  return `ks_${id}_${randomBytes(32).toString('base64url')}`;
}

/** The id of a token in the `ks_<id>_<secret>` form, or undefined for any other token. */
export function tokenId(token: string): string | undefined {
  return TOKEN_FORM.exec(token)?.[1];
}

/**
 * The salted scrypt hash of a token, for a token file's `hash` field: the file then holds no
 * secret and may be shared (KS-17.3.2). Only tokens in the `ks_<id>_<secret>` form
 * ({@link createToken}) can be hashed: their id finds the entry in one step.
 *
 * @param token - the token (`ks_<id>_<secret>`)
 * @param cost - scrypt parameters. @default {@link SCRYPT_DEFAULTS}
 * @throws {KillSwitchError} `KS_INVALID_INPUT` for a token of another form
 * @example
 * ```ts
 * const entry = { name: 'worker-fleet', hash: hashToken(token), role: 'worker', workers: ['w-*'] };
 * ```
 */
export function hashToken(
  token: string,
  cost: { readonly ln: number; readonly r: number; readonly p: number } = SCRYPT_DEFAULTS,
): string {
  const id = tokenId(token);
  if (id === undefined) {
    throw new KillSwitchError(
      ErrorCode.INVALID_INPUT,
      'only tokens of the form ks_<id>_<secret> can be hashed (createToken() or `killswitch token create` makes one); keep other tokens in plain text in a file only its owner reads',
    );
  }
  const salt = randomBytes(16);
  const key = scryptSync(token, salt, KEY_BYTES, params(cost));
  return `$scrypt$id=${id},ln=${cost.ln},r=${cost.r},p=${cost.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** Parses a `hash` field; undefined when malformed or when its cost is out of bounds. */
export function parseScryptHash(text: string): ScryptHash | undefined {
  const m = HASH_FORM.exec(text);
  if (m === null) return undefined;
  const [ln, r, p] = [Number(m[2]), Number(m[3]), Number(m[4])];
  // Bounds keep a hostile token file from making each check cost seconds or gigabytes.
  if (ln < 10 || ln > 20 || r < 1 || r > 16 || p < 1 || p > 4) return undefined;
  return {
    id: m[1]!,
    ln,
    r,
    p,
    salt: Buffer.from(m[5]!, 'base64url'),
    key: Buffer.from(m[6]!, 'base64url'),
  };
}

/** True when `token` is the one `hash` was made from (constant time in the key). Blocks. */
export function verifyScryptSync(hash: ScryptHash, token: string): boolean {
  const key = scryptSync(token, hash.salt, KEY_BYTES, params(hash));
  return timingSafeEqual(key, hash.key);
}

/** As {@link verifyScryptSync}, on libuv's thread pool. */
export function verifyScrypt(hash: ScryptHash, token: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    scrypt(token, hash.salt, KEY_BYTES, params(hash), (err, key) => {
      if (err) reject(err);
      else resolve(timingSafeEqual(key, hash.key));
    });
  });
}

/**
 * The unsalted SHA-256 of a token in hex, as the deprecated `sha256` field holds it (KS-5.2.5).
 * New entries use {@link hashToken}.
 */
export function sha256Token(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function params(c: { readonly ln: number; readonly r: number; readonly p: number }) {
  const N = 2 ** c.ln;
  return { N, r: c.r, p: c.p, maxmem: 256 * N * c.r + 1024 * 1024 };
}
