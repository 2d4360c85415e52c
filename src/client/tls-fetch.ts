import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { InvalidOptionError } from '../errors.js';

/** Options of {@link tlsFetch}. */
export interface TlsFetchOptions {
  /**
   * The CA (PEM) that signs the control plane's certificate; only certificates it signs are
   * accepted (the system's CAs are not consulted). KS-17.10.1
   */
  readonly ca: string | Buffer | readonly (string | Buffer)[];
}

/**
 * A `fetch` that trusts the given CA for `https:` URLs: for `ControlPlaneClient({ fetch })`, the
 * CLI's `--ca <file>` and the remote flip source's `tls: { ca }` (KS-17.10.1). Requests go over
 * node:https with an agent of its own; the answer is a standard `Response` whose body streams (an
 * event stream included). `http:` URLs go over node:http unchanged. `NODE_EXTRA_CA_CERTS` works
 * too, for every client of the process, without this.
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` when `ca` is missing or empty
 * @example
 * ```ts
 * const client = new ControlPlaneClient({ url, token, fetch: tlsFetch({ ca: readFileSync('ca.pem') }) });
 * ```
 */
export function tlsFetch(options: TlsFetchOptions): typeof fetch {
  const ca = options?.ca;
  const list = Array.isArray(ca) ? ca : [ca];
  if (
    ca === undefined ||
    list.length === 0 ||
    list.some((c) => c === undefined || c.length === 0)
  ) {
    throw new InvalidOptionError(
      'ca',
      'a PEM certificate (string or Buffer), or a list of them',
      ca,
    );
  }
  const agent = new HttpsAgent({ ca: list as (string | Buffer)[], keepAlive: true });
  return ((input: string | URL | Request, init?: RequestInit) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(
        typeof input === 'string' ? input : input instanceof URL ? input.href : input.url,
      );
      const https = url.protocol === 'https:';
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
      const method = init?.method ?? 'GET';
      const req = (https ? httpsRequest : httpRequest)(
        url,
        {
          method,
          headers,
          ...(https ? { agent } : {}),
          ...(init?.signal ? { signal: init.signal } : {}),
        },
        (res) => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
          }
          const status = res.statusCode ?? 0;
          const empty = method === 'HEAD' || status === 204 || status === 304;
          if (empty) res.resume();
          resolve(
            new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
              status,
              statusText: res.statusMessage ?? '',
              headers: h,
            }),
          );
        },
      );
      req.on('error', reject);
      const body = init?.body;
      if (body === undefined || body === null) req.end();
      else if (typeof body === 'string' || body instanceof Uint8Array) req.end(body);
      else {
        req.destroy();
        reject(new TypeError('tlsFetch sends string or byte bodies only'));
      }
    })) as typeof fetch;
}
