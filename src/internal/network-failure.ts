/**
 * Why a request never got an answer, in words an operator can act on: a refused connection, a
 * host DNS does not know, a failed TLS handshake, a timeout. `fetch` itself says only "fetch
 * failed"; the cause is in its `cause` (undici), sometimes an AggregateError of one per address.
 * The one wording the CLI's client and a worker's remote source share. KS-5.3.15, KS-16.2.1
 */
export interface NetworkFailure {
  /** The error code found (`ECONNREFUSED`, `ERR_SSL_WRONG_VERSION_NUMBER`, ...), if any. */
  readonly code?: string;
  /** One line: what happened, with the code. */
  readonly text: string;
}

const WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused (is the control plane running, and on this port?)',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS lookup failed)',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed TLS certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed TLS certificate in the chain',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate not trusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'TLS certificate not trusted',
};

/**
 * @param err - what `fetch` (or a socket) rejected with
 * @param timeoutMs - the request's time limit, named when it ran out
 */
export function describeNetworkFailure(err: unknown, timeoutMs?: number): NetworkFailure {
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError')
    return {
      code: 'TIMEOUT',
      text:
        timeoutMs === undefined
          ? 'no answer in time (timeout)'
          : `no answer within ${timeoutMs} ms (timeout)`,
    };
  const found = withCode(err);
  const code = found?.code;
  if (code === undefined) {
    const message = innermostMessage(err);
    // fetch refuses some ports outright (1, 21, 25, ...: the Fetch spec's "bad ports").
    if (message === 'bad port')
      return { text: 'fetch refuses this port (a blocked "bad port" of the Fetch spec)' };
    return { text: oneLine(message) };
  }
  const words = WORDS[code];
  if (words !== undefined) return { code, text: `${words} (${code})` };
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'EPROTO')
    return {
      code,
      text: `TLS handshake failed (${code}): is the URL's scheme (http or https) right?`,
    };
  return { code, text: `${oneLine(found?.message ?? '')} (${code})` };
}

interface Coded {
  readonly code?: string;
  readonly message?: string;
}

/** The first error with a string code: the error, its causes, or an aggregate's members. */
function withCode(e: unknown, depth = 0): Coded | undefined {
  if (e === null || typeof e !== 'object' || depth > 5) return undefined;
  const o = e as Coded & { cause?: unknown; errors?: unknown };
  if (typeof o.code === 'string') return o;
  const deeper = withCode(o.cause, depth + 1);
  if (deeper !== undefined) return deeper;
  if (Array.isArray(o.errors))
    for (const x of o.errors) {
      const f = withCode(x, depth + 1);
      if (f !== undefined) return f;
    }
  return undefined;
}

function innermostMessage(e: unknown): string {
  let msg = e instanceof Error ? e.message : String(e);
  for (let c: unknown = e, depth = 0; c !== null && typeof c === 'object' && depth < 5; depth++) {
    const m = (c as { message?: unknown }).message;
    if (typeof m === 'string' && m !== '') msg = m;
    c = (c as { cause?: unknown }).cause;
  }
  return msg;
}

/** One inert line of bounded length (a message may carry control characters from the wire). */
function oneLine(s: string, max = 200): string {
  let flat = '';
  for (const ch of s.split('\n')[0] ?? '') {
    const c = ch.codePointAt(0)!;
    flat +=
      c < 0x20 ||
      (c >= 0x7f && c <= 0x9f) ||
      (c >= 0x2028 && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069)
        ? ' '
        : ch;
  }
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}
