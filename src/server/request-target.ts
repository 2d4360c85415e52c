/**
 * The request target, read strictly (KS-5.1.13).
 *
 * `new URL(target, base)` resolves what a browser would: `/v1/../v1/flips` and
 * `/v1/%2e%2e/v1/flips` become `/v1/flips`, `\` becomes `/`, `//host/v1/flips` is a host and the
 * path `/v1/flips`, and an absolute-form target keeps only its path. A proxy or gateway in front
 * of the control plane that allows or denies by path (flips from the operators' network only,
 * say) sees the raw target, so every one of those is a way around it. The control plane routes
 * only targets that already are what it would route: origin-form, one leading `/`, no dot
 * segments literal or percent-encoded, no backslash, no fragment. Anything else is the client's
 * error, answered before any route, token or body is looked at.
 */

/**
 * A request target accepted or refused (why). An accepted one gives its path and query as sent;
 * its `URL` is built only when a route asks for it (`new URL` is the costliest step of reading a
 * target, and most routes need only the path and whether there is a query).
 */
export type TargetVerdict = { ok: true; target: RequestTarget } | { ok: false; reason: string };

/** An accepted request target: the path exactly as sent, the query, the URL on demand. */
export class RequestTarget {
  /** The path as sent: what the router matches (already what `URL` would make of it). */
  readonly pathname: string;
  /** The query as `URL.search` gives it: `''` when there is none, else `?` and the query. */
  readonly search: string;
  #url: URL | undefined;
  readonly #raw: string;

  constructor(raw: string, pathname: string, search: string, url: URL | undefined) {
    this.#raw = raw;
    this.pathname = pathname;
    this.search = search;
    this.#url = url;
  }

  /** The target resolved as a URL (built on first use when the fast path accepted it). */
  get url(): URL {
    return (this.#url ??= new URL(this.#raw, BASE));
  }

  /** The query's parameters (builds the URL). */
  get searchParams(): URLSearchParams {
    return this.url.searchParams;
  }
}

const BASE = 'http://control-plane.invalid';
/** A whole segment of one or two dots, each `.` or `%2e`. */
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?=\/|$)/i;

/**
 * A path of nothing but `/` and the characters `URL` leaves as they are in a path (RFC 3986
 * unreserved and sub-delims, `:` and `@`; no `%`, `\`, `?`, `#`, space or other byte it would
 * escape), not starting with `//`: for such a path with no dot segment, `new URL(path, base)` gives
 * back the same path (checked against `URL` on generated targets, test/server/request-target.test.ts).
 */
const PLAIN_PATH = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;

/**
 * Targets lately found plain (the fast path below), so the routes a server keeps being asked
 * (`/v1/flips`, `/v1/acks`) skip its two regular expressions. Short ones only, and at most
 * {@link MAX_PLAIN_KEPT}: a client sending new targets empties it, never grows it.
 */
const plainTargets = new Set<string>();
const MAX_PLAIN_KEPT = 64;
const MAX_PLAIN_KEPT_LENGTH = 128;

/** Reads a request target strictly: anything not already in normal origin-form is refused. */
export function parseRequestTarget(target: string | undefined): TargetVerdict {
  const raw = target ?? '/';
  // The common case, without the URL parser: a plain path without a query.
  if (plainTargets.has(raw))
    return { ok: true, target: new RequestTarget(raw, raw, '', undefined) };
  if (PLAIN_PATH.test(raw) && !DOT_SEGMENT.test(raw)) {
    if (raw.length <= MAX_PLAIN_KEPT_LENGTH) {
      if (plainTargets.size >= MAX_PLAIN_KEPT) plainTargets.clear();
      plainTargets.add(raw);
    }
    return { ok: true, target: new RequestTarget(raw, raw, '', undefined) };
  }
  if (!raw.startsWith('/')) {
    return { ok: false, reason: 'request target must be origin-form (start with "/")' };
  }
  if (raw.startsWith('//')) {
    return { ok: false, reason: 'request target must not start with "//"' };
  }
  if (raw.includes('#')) {
    return { ok: false, reason: 'request target must not carry a fragment' };
  }
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  // Checked here and not left to the URL parser: Node 20's parser leaves `/a/.b/../c` as it is
  // (found by test/server/request-target.test.ts), and a proxy may not.
  if (DOT_SEGMENT.test(path)) {
    return { ok: false, reason: 'request target path is not in normal form (dot segment)' };
  }
  let url: URL;
  try {
    url = new URL(raw, BASE);
  } catch {
    return { ok: false, reason: 'malformed request target' };
  }
  // Whatever the URL parser changed in the path (dot segments, percent-encoded dots, backslashes,
  // bytes it escapes) is a path a proxy would have read differently.
  if (url.pathname !== path) {
    return { ok: false, reason: 'request target path is not in normal form' };
  }
  return { ok: true, target: new RequestTarget(raw, path, url.search, url) };
}
