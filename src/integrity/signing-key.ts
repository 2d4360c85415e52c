import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { ErrorCode, KillSwitchError } from '../errors.js';

/**
 * The key id of an Ed25519 public key: the first 16 hex digits of the SHA-256 of its raw 32 bytes.
 * KS-17.7.1
 */
export function keyIdOf(publicKey: KeyObject): string {
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

/**
 * An Ed25519 signing key held by the control plane (KS-17.7.1): signs records and checkpoints.
 * The private key never leaves the object; {@link SigningKey.publicKeyPem} is what verifiers get.
 *
 * @example
 * ```ts
 * const key = await SigningKey.load('/run/secrets/killswitch-signing.pem');
 * const sig = key.sign(Buffer.from('...')); // "<kid>:<base64url>"
 * ```
 */
export class SigningKey {
  /** Key id (KS-17.7.1). */
  readonly kid: string;
  /** The public key, SPKI PEM: hand it to `killswitch verify --public-key` and to monitors. */
  readonly publicKeyPem: string;
  readonly #private: KeyObject;

  private constructor(privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `signing key: expected an Ed25519 key, got ${privateKey.asymmetricKeyType ?? 'a symmetric key'}`,
      );
    }
    this.#private = privateKey;
    const pub = createPublicKey(privateKey);
    this.kid = keyIdOf(pub);
    this.publicKeyPem = pub.export({ format: 'pem', type: 'spki' }).toString();
  }

  /** A new random key. */
  static generate(): SigningKey {
    return new SigningKey(generateKeyPairSync('ed25519').privateKey);
  }

  /** The key in a PKCS#8 PEM text. @throws {KillSwitchError} `KS_INVALID_OPTION` when it is not one */
  static fromPem(pem: string): SigningKey {
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `signing key: not a PKCS#8 PEM private key (${(err as Error).message})`,
      );
    }
    return new SigningKey(key);
  }

  /**
   * Reads a key file, refusing one that group or others may read (a signing key is a secret).
   *
   * @throws {KillSwitchError} `KS_INVALID_OPTION` when unreadable, exposed or not an Ed25519 key
   */
  static async load(path: string): Promise<SigningKey> {
    let mode: number;
    let pem: string;
    try {
      mode = (await stat(path)).mode & 0o777;
      pem = await readFile(path, 'utf8');
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `cannot read signing key ${path}: ${(err as Error).message}`,
      );
    }
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `signing key ${path} is readable by group or others (mode ${mode.toString(8)}); chmod 600 it`,
      );
    }
    return SigningKey.fromPem(pem);
  }

  /** The private key as PKCS#8 PEM, for writing a new key file once. */
  toPem(): string {
    return this.#private.export({ format: 'pem', type: 'pkcs8' }).toString();
  }

  /** Writes the private key to a new file (mode 0600; never over an existing file). */
  async save(path: string): Promise<void> {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.writeFile(this.toPem());
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Signs bytes: `"<kid>:<base64url signature>"`. */
  sign(statement: Buffer): string {
    return `${this.kid}:${sign(null, statement, this.#private).toString('base64url')}`;
  }
}

/**
 * The public keys a verifier trusts, by key id (several during a key rotation). KS-17.7.3
 *
 * @example
 * ```ts
 * const ring = PublicKeyRing.fromPem([await readFile('signing.pub', 'utf8')]);
 * ring.verify(statement, sig); // true or false
 * ```
 */
export class PublicKeyRing {
  readonly #keys: ReadonlyMap<string, KeyObject>;

  private constructor(keys: ReadonlyMap<string, KeyObject>) {
    this.#keys = keys;
  }

  /** @throws {KillSwitchError} `KS_INVALID_OPTION` for a text that is not an Ed25519 public key */
  static fromPem(pems: readonly string[]): PublicKeyRing {
    const keys = new Map<string, KeyObject>();
    for (const pem of pems) {
      let key: KeyObject;
      try {
        key = createPublicKey(pem);
      } catch (err) {
        throw new KillSwitchError(
          ErrorCode.INVALID_OPTION,
          `public key: not a PEM public key (${(err as Error).message})`,
        );
      }
      if (key.asymmetricKeyType !== 'ed25519') {
        throw new KillSwitchError(
          ErrorCode.INVALID_OPTION,
          `public key: expected Ed25519, got ${key.asymmetricKeyType ?? 'unknown'}`,
        );
      }
      keys.set(keyIdOf(key), key);
    }
    return new PublicKeyRing(keys);
  }

  /** Reads public key files (PEM; a file may hold several). */
  static async load(paths: readonly string[]): Promise<PublicKeyRing> {
    const pems: string[] = [];
    for (const p of paths) {
      const text = await readFile(p, 'utf8').catch((err: Error) => {
        throw new KillSwitchError(
          ErrorCode.INVALID_OPTION,
          `cannot read public key ${p}: ${err.message}`,
        );
      });
      const blocks = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g);
      if (blocks === null) {
        throw new KillSwitchError(ErrorCode.INVALID_OPTION, `${p} holds no PEM public key`);
      }
      pems.push(...blocks);
    }
    return PublicKeyRing.fromPem(pems);
  }

  /** This ring and the public key of `key` (a store checks with its own key too). */
  including(key: SigningKey): PublicKeyRing {
    if (this.#keys.has(key.kid)) return this;
    const keys = new Map(this.#keys);
    keys.set(key.kid, createPublicKey(key.publicKeyPem));
    return new PublicKeyRing(keys);
  }

  /** A ring of one signing key's public key. */
  static of(key: SigningKey): PublicKeyRing {
    return new PublicKeyRing(new Map([[key.kid, createPublicKey(key.publicKeyPem)]]));
  }

  /** Key ids in the ring. */
  get kids(): string[] {
    return [...this.#keys.keys()];
  }

  /** True when `sig` (`"<kid>:<base64url>"`) is a valid signature of `statement` by a key here. */
  verify(statement: Buffer, sig: string): boolean {
    const colon = sig.indexOf(':');
    if (colon < 0) return false;
    const key = this.#keys.get(sig.slice(0, colon));
    if (key === undefined) return false;
    const raw = Buffer.from(sig.slice(colon + 1), 'base64url');
    if (raw.length !== 64) return false;
    try {
      return verify(null, statement, key, raw);
    } catch {
      return false;
    }
  }
}
