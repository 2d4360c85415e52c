import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { isLoopbackHost } from '../auth/is-loopback-host.js';
import { ErrorCode, InvalidOptionError } from '../errors.js';
import { HttpError } from './internal/http-io.js';

/** A host name of `allowedHosts`: a DNS name or an IP literal, no port, no wildcard. */
const HOST_NAME =
  /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** Methods that change nothing; every other one must carry JSON. KS-17.9.2 */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `application/json` or `application/<anything>+json`, parameters allowed. */
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * Checks, before any token is read, that a request was meant for this control plane and cannot
 * have come from a browser page of another site (KS-17.9.2):
 *
 * - its `Host` names the bound address, an IP literal when bound to a wildcard address,
 *   `localhost` (or a loopback literal) when bound to loopback, or one of `allowedHosts`:
 *   anything else is `421` (DNS rebinding: a page of `evil.example` whose name resolves to
 *   127.0.0.1 reaches a loopback control plane, but its requests say `Host: evil.example`);
 * - a state-changing request (any method but GET, HEAD, OPTIONS) says
 *   `content-type: application/json`: a cross-site form or a `fetch` without a CORS preflight can
 *   only send `text/plain`, form or multipart bodies, or none: `415`.
 *
 * @example
 * ```ts
 * const guard = new RequestGuard({ allowedHosts: ['killswitch.internal'] });
 * guard.bind('127.0.0.1');
 * guard.checkHost(req); // throws HttpError 421
 * ```
 */
export class RequestGuard {
  readonly #allowed: ReadonlySet<string>;
  #bound = new Set<string>();
  #wildcard = false;
  #loopback = false;
  /** The last `Host` value allowed (what is allowed only grows, so it stays allowed). */
  #lastAllowed: string | undefined;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a name that is not a host name */
  constructor(options: { readonly allowedHosts?: readonly string[] | undefined } = {}) {
    const hosts = options.allowedHosts ?? [];
    if (!Array.isArray(hosts)) {
      throw new InvalidOptionError('allowedHosts', 'an array of host names', hosts);
    }
    const allowed = new Set<string>();
    for (const h of hosts) {
      const name = typeof h === 'string' ? normalizeHost(h) : undefined;
      if (name === undefined || (isIP(name) === 0 && !HOST_NAME.test(name))) {
        throw new InvalidOptionError(
          'allowedHosts',
          'host names or IP literals without a port (killswitch.example.com, 10.0.0.5, [fd00::1])',
          h,
        );
      }
      allowed.add(name);
    }
    this.#allowed = allowed;
  }

  /** Records the address the server bound (the configured host and the address it resolved to). */
  bind(...addresses: readonly string[]): void {
    for (const a of addresses) {
      const h = normalizeHost(a);
      if (h === undefined) continue;
      if (h === '0.0.0.0' || h === '::') this.#wildcard = true;
      if (isLoopbackHost(h)) this.#loopback = true;
      this.#bound.add(h);
    }
  }

  /** True when a `Host` header value names this control plane. */
  hostAllowed(header: string | undefined): boolean {
    if (header === undefined) return false;
    // Every request of a client carries the same Host: the last one allowed is answered at once.
    if (header === this.#lastAllowed) return true;
    if (!this.#hostAllowed(header)) return false;
    this.#lastAllowed = header;
    return true;
  }

  #hostAllowed(header: string): boolean {
    const name = hostOfHeader(header);
    if (name === undefined) return false;
    if (this.#allowed.has(name) || this.#bound.has(name)) return true;
    if (this.#wildcard && isIP(name) !== 0) return true;
    return this.#loopback && isLoopbackHost(name);
  }

  /** @throws {HttpError} 421 `KS_FORBIDDEN` naming the host received */
  checkHost(req: IncomingMessage): void {
    const host = req.headers.host;
    if (this.hostAllowed(host)) return;
    throw new HttpError(
      421,
      ErrorCode.FORBIDDEN,
      host === undefined
        ? 'the request has no Host header; this control plane answers only requests that name it'
        : `Host '${clip(host)}' does not name this control plane (bound to ${[...this.#bound].join(', ')}); add it to allowedHosts (serve --allow-host) if it is one of its names`,
    );
  }

  /** @throws {HttpError} 415 `KS_INVALID_INPUT` for a state-changing request without a JSON body type */
  checkContentType(req: IncomingMessage): void {
    if (SAFE_METHODS.has(req.method ?? 'GET')) return;
    const type = req.headers['content-type'];
    if (type !== undefined && JSON_TYPE.test(type)) return;
    throw new HttpError(
      415,
      ErrorCode.INVALID_INPUT,
      type === undefined
        ? `${req.method} needs content-type: application/json (none was given)`
        : `${req.method} needs content-type: application/json, received ${clip(type)}`,
    );
  }
}

/** The host of a `Host` header (`name`, `name:port`, `[v6]`, `[v6]:port`), lower case, no port. */
function hostOfHeader(header: string): string | undefined {
  const h = header.trim();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return undefined;
    const rest = h.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    return normalizeHost(h.slice(1, end));
  }
  const m = /^([^:]+)(?::\d{1,5})?$/.exec(h);
  return m === null ? undefined : normalizeHost(m[1]!);
}

function normalizeHost(h: string): string | undefined {
  const s = h
    .trim()
    .replace(/^\[|\]$/g, '')
    .toLowerCase();
  if (s === '') return undefined;
  // `example.com.` and `example.com` are one name.
  return s.length > 1 && s.endsWith('.') ? s.slice(0, -1) : s;
}

function clip(s: string): string {
  let t = '';
  for (const ch of s) t += ch < ' ' || ch === '\u007f' ? '?' : ch;
  return t.length <= 100 ? t : `${t.slice(0, 99)}…`;
}
