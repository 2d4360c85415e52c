import { hash as oneShotHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, InvalidOptionError, KillSwitchError, ValidationError } from '../errors.js';
import { systemClock, type Clock } from '../internal/clock.js';
import { toIssues } from '../internal/zod-issues.js';
import { normalizeSelector, selectorSchema } from '../model/selector.js';
import { ID_ALPHABET_MESSAGE, ID_CHARACTERS, ID_PATTERN } from '../protocol/text.js';
import { Role, workerMatches, type Principal } from './principal.js';
import {
  parseScryptHash,
  tokenId,
  verifyScrypt,
  verifyScryptSync,
  type ScryptHash,
} from './token-hash.js';

/**
 * One configured token, as written in `tokens.json` or `KILLSWITCH_TOKENS`. Give exactly one of
 * the token itself (`token`, at least 16 characters; the file must then be readable by its owner
 * only), its salted scrypt hash (`hash`, from `hashToken()` or `killswitch token hash`; such a file
 * holds no secret), or, deprecated, its unsalted SHA-256 in hex (`sha256`). KS-5.2.5, KS-17.3.2
 *
 * @example
 * ```json
 * { "name": "oncall-acme", "hash": "$scrypt$id=…", "role": "operator", "scopes": [{ "tenant": "acme" }],
 *   "resume": true, "expiresAt": "2027-01-01T00:00:00.000Z" }
 * { "name": "fleet-eu", "hash": "$scrypt$id=…", "role": "worker", "workers": ["eu-*"] }
 * ```
 */
export interface TokenSpec {
  /** Becomes the flip's `actor`. */
  readonly name: string;
  readonly token?: string;
  /** Salted scrypt hash of a `ks_<id>_<secret>` token (KS-17.3.3). */
  readonly hash?: string;
  /** @deprecated unsalted; accepted with a warning at start (KS-17.3.4). Use `hash`. */
  readonly sha256?: string;
  readonly role: Role;
  /**
   * Operator: the selectors it may flip within (at least one); it reads what is compatible with
   * them. Viewer: optional, the selectors it may read (KS-17.4.1).
   */
  readonly scopes?: readonly { readonly [k: string]: string }[];
  /** May resume. @default true for admin, false otherwise */
  readonly resume?: boolean;
  /** ISO 8601 instant after which the token is refused (401) and its streams end. */
  readonly expiresAt?: string;
  /**
   * The worker ids it may acknowledge and stream as, exact or a prefix ending in `*` (`["w-*"]`).
   * Required for the `worker` role; optional for viewers and operators; refused on admins (they
   * act as any worker). Without one, a token may not act as a worker (KS-17.2.1).
   */
  readonly workers?: readonly string[];
}

/**
 * A worker-id pattern of a binding: a worker id (the characters `POST /v1/acks` accepts), a
 * non-empty prefix of one followed by `*`, or, for the `worker` role only, a bare `*` (any id no
 * other token holds: one token for a fleet whose ids are not known in advance).
 */
const workerPatternSchema = z
  .string()
  .max(129, 'must be at most 129 characters')
  .regex(
    new RegExp(`^(?:[${ID_CHARACTERS}]+\\*?|\\*)$`),
    'must be a worker id, a non-empty prefix followed by *, or * (letters, digits and ._:@/+=-)',
  );

/** zod schema of one {@link TokenSpec}. */
export const tokenSpecSchema = z
  .strictObject({
    name: z.string().min(1).max(200).regex(ID_PATTERN, ID_ALPHABET_MESSAGE),
    token: z.string().min(16, 'must be at least 16 characters').max(512).optional(),
    hash: z
      .string()
      .refine(
        (s) => parseScryptHash(s) !== undefined,
        'must be $scrypt$id=<id>,ln=<10..20>,r=<1..16>,p=<1..4>$<salt>$<key> as hashToken() writes it',
      )
      .optional(),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits')
      .optional(),
    role: z.enum(['viewer', 'worker', 'operator', 'admin']),
    scopes: z.array(selectorSchema).optional(),
    resume: z.boolean().optional(),
    expiresAt: z
      .string()
      .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 instant')
      .optional(),
    workers: z
      .array(workerPatternSchema)
      .min(1, 'must name at least one worker id')
      .max(1000)
      .optional(),
  })
  .superRefine((v, ctx) => {
    const given = [v.token, v.hash, v.sha256].filter((x) => x !== undefined).length;
    if (given !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['token'],
        message: 'give exactly one of token, hash and sha256',
      });
    }
    if (v.role === 'operator' && (v.scopes === undefined || v.scopes.length === 0)) {
      ctx.addIssue({
        code: 'custom',
        path: ['scopes'],
        message: 'an operator needs at least one scope',
      });
    }
    if (v.scopes?.some((s) => Object.keys(s).length === 0)) {
      // An empty scope would contain every selector: that is an admin (or an unscoped viewer).
      ctx.addIssue({
        code: 'custom',
        path: ['scopes'],
        message:
          v.role === 'viewer'
            ? 'an empty scope is everything; leave scopes out'
            : 'an empty scope is global; use role admin',
      });
    }
    if (v.role !== 'operator' && v.role !== 'viewer' && v.scopes !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['scopes'],
        message: 'only operators and viewers take scopes',
      });
    }
    if (v.role === 'admin' && v.workers !== undefined) {
      // An admin may act as any worker: a binding there would look like a limit and be none.
      ctx.addIssue({
        code: 'custom',
        path: ['workers'],
        message: 'an admin may act as any worker; bind a worker token instead',
      });
    }
    if (v.role !== 'worker' && v.workers?.includes('*') === true) {
      ctx.addIssue({
        code: 'custom',
        path: ['workers'],
        message: 'only a worker token may be bound to any id (*); name the ids or a prefix',
      });
    }
    if (v.role === 'worker' && v.workers === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['workers'],
        message: 'a worker token needs the worker ids it acts as (["w-1"], or a prefix: ["w-*"])',
      });
    }
    if ((v.role === 'viewer' || v.role === 'worker') && v.resume === true) {
      ctx.addIssue({ code: 'custom', path: ['resume'], message: `a ${v.role} cannot resume` });
    }
  });

/** zod schema of a token file: `{ "tokens": [...] }` or a bare array. */
export const tokenFileSchema = z.union([
  z.strictObject({ tokens: z.array(tokenSpecSchema) }),
  z.array(tokenSpecSchema).transform((tokens) => ({ tokens })),
]);

/**
 * Parses a token file's (or `KILLSWITCH_TOKENS`') JSON value.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every issue
 */
export function parseTokenSpecs(value: unknown, what = 'tokens'): TokenSpec[] {
  const r = tokenFileSchema.safeParse(value);
  if (!r.success) throw new ValidationError(what, toIssues(r.error));
  return r.data.tokens as TokenSpec[];
}

/** Options of {@link TokenAuthenticator}. */
export interface TokenAuthenticatorOptions {
  readonly tokens: readonly TokenSpec[];
  /** Clock: its wall reading is compared with each token's expiry date. @default systemClock */
  readonly clock?: Clock;
}

interface Entry {
  /** Identity across reloads: same credential and settings reuse the principal. */
  readonly key: string;
  readonly principal: Principal;
  /** Keyed fingerprint of the token, when known without the token (plain and sha256 entries). */
  readonly fingerprint?: string;
  readonly scrypt?: ScryptHash;
}

/** Fingerprints of tokens that failed a scrypt check, remembered so a retry costs nothing. */
const MAX_FAILED = 4096;

/**
 * Checks bearer tokens (KS-5.2.6, KS-17.3). A presented token is reduced to a fingerprint keyed
 * by keys drawn at start (nested SHA-256 over its SHA-256), which finds plain and `sha256`
 * entries, and hashed entries already verified, in one lookup: the lookup's timing depends only
 * on values an attacker cannot compute. A `ks_<id>_<secret>` token not yet seen is checked against
 * the one hashed entry with its id (scrypt), then remembered; a token whose id no entry has costs
 * no scrypt at all, so unknown tokens cannot make the server hash.
 *
 * The token set can be replaced while running ({@link TokenAuthenticator.replace}, used by the
 * token-file watcher): a removed or changed token stops authenticating at once, and
 * {@link TokenAuthenticator.isCurrent} tells holders of its principal (open streams) to end.
 *
 * @example
 * ```ts
 * const auth = new TokenAuthenticator({ tokens: [{ name: 'ci', token: process.env.T!, role: 'viewer' }] });
 * const who = auth.authenticate(req.headers.authorization); // throws KS_UNAUTHORIZED
 * ```
 */
export class TokenAuthenticator {
  /** The two keys of the fingerprint ({@link TokenAuthenticator.#keyed}), drawn at start. */
  readonly #innerKey = randomBytes(32).toString('base64url');
  readonly #outerKey = randomBytes(32).toString('base64url');
  readonly #now: () => number;
  #entries: Entry[] = [];
  #byFingerprint = new Map<string, Entry>();
  #byId = new Map<string, Entry>();
  #current = new Set<Principal>();
  readonly #failed = new Map<string, true>();
  readonly #inflight = new Map<string, Promise<Entry | undefined>>();
  readonly #listeners = new Set<() => void>();
  /** Bumped by every token-set swap: what a connection remembered before it is void. */
  #generation = 0;
  /** Per connection: the last `Authorization` value that authenticated on it, and its entry. */
  readonly #byConnection = new WeakMap<
    object,
    { readonly header: string; readonly entry: Entry; readonly generation: number }
  >();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for an invalid or duplicate token */
  constructor(options: TokenAuthenticatorOptions) {
    const clock = options.clock ?? systemClock;
    this.#now = () => clock.wallNow();
    this.#install(this.#build(options.tokens));
  }

  /** Number of configured tokens. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * Replaces the token set (a reloaded token file, KS-17.3.1). Tokens whose credential and
   * settings are unchanged keep their principal, so their open streams continue; the others stop
   * authenticating at once and {@link TokenAuthenticator.isCurrent} turns false for them. A bad
   * set is refused whole and the current one kept. Listeners ({@link TokenAuthenticator.onChange})
   * are told after the swap.
   *
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for an invalid or duplicate token
   */
  replace(tokens: readonly TokenSpec[]): void {
    const next = this.#build(tokens);
    this.#install(next);
    for (const l of [...this.#listeners]) {
      try {
        l();
      } catch {
        // A listener's failure must not undo the swap nor stop the others.
      }
    }
  }

  /** Calls `listener` after every {@link TokenAuthenticator.replace}. @returns the unsubscriber */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * True while a principal this authenticator issued is still configured, unchanged, and not
   * expired: a holder (an open stream) ends when this turns false. KS-17.3.1
   */
  isCurrent(principal: Principal): boolean {
    if (!this.#current.has(principal)) return false;
    return principal.expiresAt === undefined || this.#now() < principal.expiresAt;
  }

  /** The role of the current token named `name`, or undefined. KS-17.5.1 */
  roleOf(name: string): Role | undefined {
    for (const e of this.#entries) if (e.principal.name === name) return e.principal.role;
    return undefined;
  }

  /** True when some token's worker binding names this id. KS-5.2.9 */
  reservesWorker(workerId: string): boolean {
    for (const e of this.#entries) {
      const w = e.principal.workers;
      if (w !== undefined && workerMatches(w, workerId)) return true;
    }
    return false;
  }

  /**
   * The principal of an `Authorization` header value. A hashed token not seen before is checked
   * with scrypt on this thread (a few ms, once per token per process); servers use
   * {@link TokenAuthenticator.authenticateAsync}, which does it on the thread pool.
   *
   * @throws {KillSwitchError} `KS_UNAUTHORIZED` when the header is missing, malformed, unknown or expired
   */
  authenticate(header: string | undefined): Principal {
    return this.#accept(this.#entryOf(header));
  }

  /**
   * As {@link TokenAuthenticator.authenticate}, for a request on `connection` (its socket): when
   * the same connection authenticated the same header value last time and the token set has not
   * been replaced since, its entry is taken without hashing the token again (a keep-alive client
   * sends the same header on every request). Expiry is checked on every request; a reload or
   * revocation ({@link TokenAuthenticator.replace}) voids what every connection remembered, so a
   * removed token is refused on its next request, on an open connection too. The header is
   * compared in constant time with the one the same connection sent before (a proxy may carry
   * several clients' requests on one connection). KS-17.3.1 A hashed token not seen before is
   * checked with scrypt on this thread, as by `authenticate`: a server calls
   * {@link TokenAuthenticator.authenticateOnAsync}, which has the same memo and never does.
   *
   * @throws {KillSwitchError} `KS_UNAUTHORIZED` when the header is missing, malformed, unknown or expired
   */
  authenticateOn(connection: object, header: string | undefined): Principal {
    const remembered = this.#remembered(connection, header);
    if (remembered !== undefined) return this.#accept(remembered);
    const generation = this.#generation;
    const entry = this.#entryOf(header);
    this.#byConnection.set(connection, { header: header!, entry, generation });
    return this.#accept(entry);
  }

  /**
   * The entry `connection` authenticated last time, when it sends the same header value (compared
   * in constant time) and the token set was not replaced since.
   */
  #remembered(connection: object, header: string | undefined): Entry | undefined {
    const last = this.#byConnection.get(connection);
    return last !== undefined &&
      header !== undefined &&
      last.generation === this.#generation &&
      sameText(last.header, header)
      ? last.entry
      : undefined;
  }

  /** The entry a header's token authenticates as (not yet checked for expiry). */
  #entryOf(header: string | undefined): Entry {
    const token = bearer(header);
    const fp = this.#fingerprint(token);
    const hit = this.#byFingerprint.get(fp);
    if (hit !== undefined) return hit;
    const candidate = this.#candidate(token, fp);
    if (candidate === undefined) throw unknown();
    return this.#settle(candidate, fp, verifyScryptSync(candidate.scrypt!, token));
  }

  /**
   * As {@link TokenAuthenticator.authenticate}, with a first-seen hashed token checked on libuv's
   * thread pool (concurrent checks of one token share one computation), so the event loop never
   * waits for scrypt.
   *
   * @throws {KillSwitchError} `KS_UNAUTHORIZED` when the header is missing, malformed, unknown or expired
   */
  async authenticateAsync(header: string | undefined): Promise<Principal> {
    const token = bearer(header);
    const fp = this.#fingerprint(token);
    const hit = this.#byFingerprint.get(fp);
    if (hit !== undefined) return this.#accept(hit);
    return this.#accept(await this.#entryOffThread(token, fp));
  }

  /**
   * As {@link TokenAuthenticator.authenticateOn}, without ever running scrypt on this thread: the
   * principal at once when the connection's memo or the token's fingerprint knows the token, a
   * promise only when a first-seen hashed token must be checked on the thread pool (as
   * {@link TokenAuthenticator.authenticateAsync}). A server calls this, so a stream of requests
   * with made-up secrets for a known token id (each a new fingerprint, each an scrypt) costs
   * thread-pool time, not the event loop that streams flips and takes acknowledgements. KS-17.3.1
   *
   * @throws {KillSwitchError} `KS_UNAUTHORIZED` (thrown, or the promise rejects) when the header
   *   is missing, malformed, unknown or expired
   */
  authenticateOnAsync(
    connection: object,
    header: string | undefined,
  ): Principal | Promise<Principal> {
    const remembered = this.#remembered(connection, header);
    if (remembered !== undefined) return this.#accept(remembered);
    const generation = this.#generation;
    const token = bearer(header);
    const fp = this.#fingerprint(token);
    const hit = this.#byFingerprint.get(fp);
    if (hit !== undefined) {
      this.#byConnection.set(connection, { header: header!, entry: hit, generation });
      return this.#accept(hit);
    }
    return this.#entryOffThread(token, fp).then((entry) => {
      // Remembered only if the token set was not replaced while scrypt ran.
      if (this.#generation === generation)
        this.#byConnection.set(connection, { header: header!, entry, generation });
      return this.#accept(entry);
    });
  }

  /** A first-seen token's entry, a hashed one checked on the thread pool (one check per token). */
  async #entryOffThread(token: string, fp: string): Promise<Entry> {
    const candidate = this.#candidate(token, fp);
    if (candidate === undefined) throw unknown();
    let pending = this.#inflight.get(fp);
    if (pending === undefined) {
      pending = verifyScrypt(candidate.scrypt!, token)
        .then((ok) => this.#settleIfCurrent(candidate, fp, ok))
        .finally(() => this.#inflight.delete(fp));
      this.#inflight.set(fp, pending);
    }
    const entry = await pending;
    if (entry === undefined) throw unknown();
    return entry;
  }

  #fingerprint(token: string): string {
    return this.#keyed(sha256Hex(token));
  }

  /**
   * The fingerprint of a token from its SHA-256 (hex), so a `sha256` entry has one without the
   * token: SHA-256(outer key ‖ SHA-256(inner key ‖ digest)), both keys drawn at start. A keyed
   * function of fixed-length input, nested so that no output extends to another; three one-shot
   * `crypto.hash` calls cost about a fifth of the `createHash` + `createHmac` objects they replace
   * (`node dist/bench/auth/authenticate.js`), and the fingerprint is paid on every request.
   */
  #keyed(digestHex: string): string {
    const inner = oneShotHash('sha256', this.#innerKey + digestHex, 'base64url');
    return oneShotHash('sha256', this.#outerKey + inner, 'base64url');
  }

  /** The hashed entry a token not yet seen may match: only by its id, never by trying all. */
  #candidate(token: string, fp: string): Entry | undefined {
    if (this.#failed.has(fp)) return undefined;
    const id = tokenId(token);
    return id === undefined ? undefined : this.#byId.get(id);
  }

  #settle(entry: Entry, fp: string, ok: boolean): Entry {
    if (!ok) {
      this.#rememberFailure(fp);
      throw unknown();
    }
    this.#byFingerprint.set(fp, entry);
    return entry;
  }

  /** After an asynchronous check: the entry may have been replaced meanwhile. */
  #settleIfCurrent(entry: Entry, fp: string, ok: boolean): Entry | undefined {
    const now = entry.scrypt === undefined ? undefined : this.#byId.get(entry.scrypt.id);
    if (now === undefined || now.key !== entry.key) return undefined;
    if (!ok) {
      this.#rememberFailure(fp);
      return undefined;
    }
    this.#byFingerprint.set(fp, now);
    return now;
  }

  #rememberFailure(fp: string): void {
    this.#failed.set(fp, true);
    if (this.#failed.size > MAX_FAILED) {
      const oldest = this.#failed.keys().next().value;
      if (oldest !== undefined) this.#failed.delete(oldest);
    }
  }

  #accept(entry: Entry): Principal {
    const p = entry.principal;
    if (p.expiresAt !== undefined && !(this.#now() < p.expiresAt)) {
      throw new KillSwitchError(ErrorCode.UNAUTHORIZED, `token '${p.name}' has expired`);
    }
    return p;
  }

  #build(tokens: readonly TokenSpec[]): Entry[] {
    let specs: TokenSpec[];
    try {
      specs = parseTokenSpecs(tokens);
    } catch (err) {
      throw new InvalidOptionError('tokens', 'valid token specs', (err as Error).message);
    }
    const previous = new Map(this.#entries.map((e) => [e.key, e]));
    const names = new Set<string>();
    const credentials = new Set<string>();
    return specs.map((s) => {
      if (names.has(s.name)) throw new InvalidOptionError('tokens', 'unique names', s.name);
      names.add(s.name);
      const scrypt = s.hash === undefined ? undefined : parseScryptHash(s.hash);
      const digest = s.sha256 ?? (s.token === undefined ? undefined : sha256Hex(s.token));
      const credential = scrypt === undefined ? `sha256:${digest}` : `id:${scrypt.id}`;
      // A token given twice, in any two forms (plain and hashed share its id), is one credential.
      const plainId = s.token === undefined ? undefined : tokenId(s.token);
      for (const c of plainId === undefined ? [credential] : [credential, `id:${plainId}`]) {
        if (credentials.has(c))
          throw new InvalidOptionError('tokens', 'unique tokens', `${s.name} (token reused)`);
        credentials.add(c);
      }
      const expiresAt = s.expiresAt === undefined ? undefined : Date.parse(s.expiresAt);
      const principal: Principal = Object.freeze({
        name: s.name,
        role: s.role,
        scopes: Object.freeze((s.scopes ?? []).map((x) => normalizeSelector(x))),
        resume: s.resume ?? s.role === Role.ADMIN,
        ...(s.workers !== undefined && s.role !== Role.ADMIN
          ? { workers: Object.freeze([...s.workers]) }
          : {}),
        ...(expiresAt === undefined ? {} : { expiresAt }),
      });
      const key = JSON.stringify([s.hash ?? digest, principal]);
      const same = previous.get(key);
      return {
        key,
        principal: same?.principal ?? principal,
        ...(digest === undefined ? {} : { fingerprint: this.#keyed(digest) }),
        ...(scrypt === undefined ? {} : { scrypt }),
      };
    });
  }

  #install(entries: Entry[]): void {
    const byKey = new Map(entries.map((e) => [e.key, e]));
    const byFingerprint = new Map<string, Entry>();
    const byId = new Map<string, Entry>();
    for (const e of entries) {
      if (e.fingerprint !== undefined) byFingerprint.set(e.fingerprint, e);
      if (e.scrypt !== undefined) byId.set(e.scrypt.id, e);
    }
    // Hashed tokens verified before stay verified when their entry did not change.
    for (const [fp, e] of this.#byFingerprint) {
      const still = e.scrypt === undefined ? undefined : byKey.get(e.key);
      if (still !== undefined) byFingerprint.set(fp, still);
    }
    this.#entries = entries;
    this.#byFingerprint = byFingerprint;
    this.#byId = byId;
    this.#current = new Set(entries.map((e) => e.principal));
    this.#failed.clear();
    this.#generation++;
  }
}

function sha256Hex(token: string): string {
  return oneShotHash('sha256', token, 'hex');
}

function bearer(header: string | undefined): string {
  const m = header === undefined ? null : /^Bearer +([^\s]+) *$/i.exec(header);
  if (m === null) {
    throw new KillSwitchError(
      ErrorCode.UNAUTHORIZED,
      'missing bearer token (Authorization: Bearer <token>)',
    );
  }
  return m[1]!;
}

/** Whether two strings are equal, in a time that depends only on their lengths. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

function unknown(): KillSwitchError {
  return new KillSwitchError(ErrorCode.UNAUTHORIZED, 'unknown token');
}
