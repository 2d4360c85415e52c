import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { FetchLike, FetchLikeResponse, ReaderLike } from 'eventsource';

/**
 * The stream's transport when no fetch is injected: node:http with a socket of its own per
 * stream (no pool). A long-lived stream gains nothing from pooling, and a socket we own is one we
 * can be sure is gone once the stream is closed (KS-6.3.8); undici's pool keeps sockets around.
 * Internal (not in the package's exports); the propagation bench uses it to measure the
 * `eventsource` package alone over the same transport. `onConnect` runs once TCP is up.
 */
export const nodeStreamFetch = (
  input: string | URL,
  init: Parameters<FetchLike>[1],
  onConnect: () => void,
): Promise<FetchLikeResponse> =>
  new Promise<FetchLikeResponse>((resolve, reject) => {
    const target = new URL(String(input));
    const req = (target.protocol === 'https:' ? httpsRequest : httpRequest)(
      target,
      { method: 'GET', headers: init.headers, agent: false, signal: init.signal as AbortSignal },
      (res) => {
        resolve({
          status: res.statusCode ?? 0,
          url: target.href,
          redirected: false,
          headers: {
            get: (name: string) => {
              const v = res.headers[name.toLowerCase()];
              return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
            },
          },
          body: { getReader: () => readerOf(res) },
        });
      },
    );
    req.on('socket', (socket) => socket.once('connect', onConnect));
    req.on('error', reject);
    req.end();
  });

/**
 * A minimal reader over a response: what eventsource needs (`read`, `cancel`), without the cost of
 * a WHATWG stream adapter per subscriber (a process may hold a thousand). Pauses the socket when
 * chunks pile up, so the server's slow-reader rule (KS-6.1.5) still sees real back-pressure.
 */
function readerOf(res: IncomingMessage): ReaderLike {
  const queue: Buffer[] = [];
  let ended = false;
  let failure: Error | undefined;
  let waiter:
    | {
        resolve: (r: { done: false; value: Buffer } | { done: true }) => void;
        reject: (e: Error) => void;
      }
    | undefined;
  const settle = () => {
    if (!waiter) return;
    const w = waiter;
    if (queue.length > 0) {
      waiter = undefined;
      w.resolve({ done: false, value: queue.shift()! });
      if (queue.length < 8) res.resume();
    } else if (failure) {
      waiter = undefined;
      w.reject(failure);
    } else if (ended) {
      waiter = undefined;
      w.resolve({ done: true });
    }
  };
  res.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    if (queue.length >= 64) res.pause();
    settle();
  });
  res.on('end', () => {
    ended = true;
    settle();
  });
  res.on('error', (err) => {
    failure ??= err;
    settle();
  });
  res.on('close', () => {
    if (!ended) failure ??= Object.assign(new Error('stream closed'), { name: 'AbortError' });
    settle();
  });
  return {
    read: () =>
      new Promise((resolve, reject) => {
        waiter = { resolve, reject };
        settle();
      }),
    cancel: async () => {
      res.destroy();
    },
  };
}
