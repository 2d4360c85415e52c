import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, InvalidOptionError, KillSwitchError, ValidationError } from '../errors.js';
import { systemClock, type Clock } from '../internal/clock.js';
import { toIssues } from '../internal/zod-issues.js';
import { normalizeSelector, selectorSchema } from '../model/selector.js';
import { ID_ALPHABET_MESSAGE, ID_CHARACTERS, ID_PATTERN } from '../protocol/text.js';
import { Role, workerMatches, type Principal } from './principal.js';

/**
 * One configured token, as written in `tokens.json` or `KILLSWITCH_TOKENS`. Give either the
 * token itself (`token`, at least 16 characters) or its SHA-256 in hex (`sha256`), so a config
 * file need not hold the secret. KS-5.2.5
 *
 * @example
 * ```json
 * { "name": "oncall-acme", "sha256": "…", "role": "operator", "scopes": [{ "tenant": "acme" }], "resume": true,
 *   "expiresAt": "2027-01-01T00:00:00.000Z" }
 * ```
 */
export interface TokenSpec {
  /** Becomes the flip's `actor`. */
  readonly name: string;
  readonly token?: string;
  readonly sha256?: string;
  readonly role: Role;
  /** Operator only: the selectors it may flip within (at least one). */
  readonly scopes?: readonly { readonly [k: string]: string }[];
  /** May resume. @default true for admin, false otherwise */
  readonly resume?: boolean;
  /** ISO 8601 instant after which the token is refused (401). */
  readonly expiresAt?: string;
  /**
   * Viewer or operator: the worker ids it may acknowledge and stream as, exact or a prefix ending
   * in `*` (`["w-*"]`). Ids a binding names are reserved: no unbound token may act as them.
   * @default unbound (see KS-5.2.9)
   */
  readonly workers?: readonly string[];
}

/**
 * A worker-id pattern of a binding: a worker id (the characters `POST /v1/acks` accepts), or a
 * non-empty prefix of one followed by `*`. A bare `*` is refused: acting as any worker is admin.
 */
const workerPatternSchema = z
  .string()
  .max(129, 'must be at most 129 characters')
  .regex(
    new RegExp(`^[${ID_CHARACTERS}]+\\*?$`),
    'must be a worker id or a non-empty prefix followed by * (letters, digits and ._:@/+=-)',
  );

/** zod schema of one {@link TokenSpec}. */
export const tokenSpecSchema = z
  .strictObject({
    name: z.string().min(1).max(200).regex(ID_PATTERN, ID_ALPHABET_MESSAGE),
    token: z.string().min(16, 'must be at least 16 characters').max(512).optional(),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits')
      .optional(),
    role: z.enum(['viewer', 'operator', 'admin']),
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
    if ((v.token === undefined) === (v.sha256 === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['token'],
        message: 'give exactly one of token and sha256',
      });
    }
    if (v.role === 'operator' && (v.scopes === undefined || v.scopes.length === 0)) {
      ctx.addIssue({
        code: 'custom',
        path: ['scopes'],
        message: 'an operator needs at least one scope',
      });
    }
    if (v.role === 'operator' && v.scopes?.some((s) => Object.keys(s).length === 0)) {
      // An empty scope would contain every selector: that is an admin, say so explicitly.
      ctx.addIssue({
        code: 'custom',
        path: ['scopes'],
        message: 'an empty scope is global; use role admin',
      });
    }
    if (v.role !== 'operator' && v.scopes !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'only operators take scopes' });
    }
    if (v.role === 'admin' && v.workers !== undefined) {
      // An admin may act as any worker: a binding there would look like a limit and be none.
      ctx.addIssue({
        code: 'custom',
        path: ['workers'],
        message: 'an admin may act as any worker; bind a viewer or operator token instead',
      });
    }
    if (v.role === 'viewer' && v.resume === true) {
      ctx.addIssue({ code: 'custom', path: ['resume'], message: 'a viewer cannot resume' });
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

/** SHA-256 of a token, as stored in `sha256`. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Options of {@link TokenAuthenticator}. */
export interface TokenAuthenticatorOptions {
  readonly tokens: readonly TokenSpec[];
  /** Clock: its wall reading is compared with each token's expiry date. @default systemClock */
  readonly clock?: Clock;
}

interface Entry {
  readonly digest: Buffer;
  readonly principal: Principal;
  readonly expiresAt: number;
}

/**
 * Checks bearer tokens. Tokens are kept only as SHA-256 digests and compared in constant time
 * against every configured digest (no early exit), so neither the token nor which entry matched
 * leaks through timing. KS-5.2.6
 *
 * @example
 * ```ts
 * const auth = new TokenAuthenticator({ tokens: [{ name: 'ci', token: process.env.T!, role: 'viewer' }] });
 * const who = auth.authenticate(req.headers.authorization); // throws KS_UNAUTHORIZED
 * ```
 */
export class TokenAuthenticator {
  readonly #entries: Entry[];
  readonly #now: () => number;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for an invalid or duplicate token */
  constructor(options: TokenAuthenticatorOptions) {
    let specs: TokenSpec[];
    try {
      specs = parseTokenSpecs(options.tokens);
    } catch (err) {
      throw new InvalidOptionError('tokens', 'valid token specs', (err as Error).message);
    }
    const clock = options.clock ?? systemClock;
    this.#now = () => clock.wallNow();
    const names = new Set<string>();
    const digests = new Set<string>();
    this.#entries = specs.map((s) => {
      const hex = s.sha256 ?? hashToken(s.token!);
      if (names.has(s.name)) throw new InvalidOptionError('tokens', 'unique names', s.name);
      if (digests.has(hex))
        throw new InvalidOptionError('tokens', 'unique tokens', `${s.name} (token reused)`);
      names.add(s.name);
      digests.add(hex);
      return {
        digest: Buffer.from(hex, 'hex'),
        expiresAt: s.expiresAt === undefined ? Number.POSITIVE_INFINITY : Date.parse(s.expiresAt),
        principal: Object.freeze({
          name: s.name,
          role: s.role,
          scopes: Object.freeze((s.scopes ?? []).map((x) => normalizeSelector(x))),
          resume: s.resume ?? s.role === Role.ADMIN,
          ...(s.workers !== undefined && s.role !== Role.ADMIN
            ? { workers: Object.freeze([...s.workers]) }
            : {}),
        }),
      };
    });
  }

  /** Number of configured tokens. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * True when some token's worker binding names this id: only those tokens (and admins) may act
   * as it; an unbound token is refused even before any of them connected. KS-5.2.9
   */
  reservesWorker(workerId: string): boolean {
    for (const e of this.#entries) {
      const w = e.principal.workers;
      if (w !== undefined && workerMatches(w, workerId)) return true;
    }
    return false;
  }

  /**
   * The principal of an `Authorization` header value.
   *
   * @throws {KillSwitchError} `KS_UNAUTHORIZED` when the header is missing, malformed, unknown or expired
   */
  authenticate(header: string | undefined): Principal {
    const m = header === undefined ? null : /^Bearer +([^\s]+) *$/i.exec(header);
    if (m === null) {
      throw new KillSwitchError(
        ErrorCode.UNAUTHORIZED,
        'missing bearer token (Authorization: Bearer <token>)',
      );
    }
    const digest = createHash('sha256').update(m[1]!, 'utf8').digest();
    let found: Entry | undefined;
    for (const e of this.#entries) {
      // No early exit: every entry is compared, whatever matched.
      if (timingSafeEqual(e.digest, digest) && found === undefined) found = e;
    }
    if (found === undefined) throw new KillSwitchError(ErrorCode.UNAUTHORIZED, 'unknown token');
    if (!(this.#now() < found.expiresAt)) {
      throw new KillSwitchError(
        ErrorCode.UNAUTHORIZED,
        `token '${found.principal.name}' has expired`,
      );
    }
    return found.principal;
  }
}
