import { InvalidOptionError } from '../errors.js';

/** Options of {@link timeoutFetch}. */
export interface TimeoutFetchOptions {
  /** Abort a request that has not completed (headers and body) within this time. @default 2000 ms */
  readonly timeoutMs?: number;
  /** The fetch to wrap. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/**
 * A `fetch` with a deadline, for `new OFREPProvider({ fetchImplementation })`. The OFREP provider
 * sets no timeout, so a control plane that accepts the connection and never answers would hold
 * every evaluation, and every effect behind it, forever. With a deadline the evaluation errors, the
 * SDK returns the caller's default, and a caller that passes `true` (the guard does) reads halted
 * within `timeoutMs`. KS-12.2.2
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad timeout
 * @example
 * ```ts
 * new OFREPProvider({ baseUrl, headers: { authorization: `Bearer ${token}` },
 *   fetchImplementation: timeoutFetch({ timeoutMs: 1000 }) });
 * ```
 */
export function timeoutFetch(options: TimeoutFetchOptions = {}): typeof fetch {
  const timeoutMs = options.timeoutMs ?? 2000;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
    throw new InvalidOptionError('timeoutMs', 'a positive integer (ms)', timeoutMs);
  }
  const inner = options.fetch ?? globalThis.fetch.bind(globalThis);
  const wrapped = async (
    input: Parameters<typeof fetch>[0],
    init?: RequestInit,
  ): Promise<Response> => {
    const deadline = AbortSignal.timeout(timeoutMs);
    const given = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    const signal = given ? AbortSignal.any([given, deadline]) : deadline;
    const res = await inner(input, { ...init, signal });
    // Read the body under the same deadline: a server that sends headers and then stalls must
    // not hold the caller either.
    const body = await res.arrayBuffer();
    const nullBody = res.status === 204 || res.status === 205 || res.status === 304;
    return new Response(nullBody ? null : body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
  return wrapped as typeof fetch;
}
