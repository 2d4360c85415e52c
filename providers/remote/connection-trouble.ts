import type { FetchLikeResponse } from 'eventsource';
import { ErrorCode } from '../../src/errors.js';
import { describeNetworkFailure } from '../../src/internal/network-failure.js';

/**
 * Why a remote flip source cannot get or keep a fresh state, in words a worker's log and its
 * refusals share. Two troubles with the same `key` are the same cause: the source logs a cause
 * once, and again only after it changed. KS-16.2.1
 */
export interface ConnectionTrouble {
  /** The cause, for comparison only (`unreachable:ECONNREFUSED`, `http:401:KS_UNAUTHORIZED`). */
  readonly key: string;
  /** One line for an operator: what happened, where, and what it means. */
  readonly message: string;
}

/** What a stream request answered, read before eventsource sees it. */
export type StreamAnswer =
  | { readonly kind: 'network'; readonly error: unknown }
  | {
      readonly kind: 'http';
      readonly status: number;
      readonly contentType: string;
      /** The body of a refusal (at most {@link BODY_LIMIT} bytes); '' for a stream. */
      readonly body: string;
    };

/** Bytes of a refusal's body read to find a killswitch error body. */
const BODY_LIMIT = 8192;
/** How long to wait for a refusal's body before judging it without one. */
const BODY_WAIT_MS = 1000;

/** Text from the wire, made one inert line of bounded length for a log. */
export function inert(s: string, max = 200): string {
  let flat = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    const control =
      c < 0x20 ||
      (c >= 0x7f && c <= 0x9f) ||
      (c >= 0x2028 && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069);
    flat += control ? ' ' : ch;
  }
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** A connection that never got an answer: refused, not found, reset, TLS. */
export function networkTrouble(base: string, err: unknown): ConnectionTrouble {
  const { code, text } = describeNetworkFailure(err);
  return {
    key: `unreachable:${code ?? text}`,
    message: `cannot reach the control plane at ${base}: ${text}`,
  };
}

/** The killswitch error body (`{ error: { code, message } }`) of a refusal, if it is one. */
function errorBody(body: string): { code: string; message: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const e = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (typeof e?.code !== 'string' || !(Object.values(ErrorCode) as string[]).includes(e.code))
    return undefined;
  return { code: e.code, message: typeof e.message === 'string' ? e.message : '' };
}

/**
 * A refusal (`what` was refused with `status` and `body`): a killswitch server's refusal says
 * which (a missing or refused token, a forbidden worker id, an overloaded server); anything else
 * answered is not a killswitch server (a wrong port or path, another service, a proxy).
 */
export function httpTrouble(
  base: string,
  what: 'the stream' | 'the acknowledgement',
  status: number,
  body: string,
  hasToken: boolean,
): ConnectionTrouble {
  const e = errorBody(body);
  if (e === undefined) {
    return {
      key: `not-a-control-plane:${status}`,
      message: `${base} is not a killswitch server (it answered ${what} with HTTP ${status} without a killswitch error body)`,
    };
  }
  const said = `${status} ${e.code}: ${inert(e.message)}`;
  let message: string;
  if (e.code === ErrorCode.UNAUTHORIZED) {
    message = hasToken
      ? `the control plane at ${base} refused this worker's token (${said})`
      : `the control plane at ${base} wants a worker token and none was given (${said}); pass the option token`;
  } else if (e.code === ErrorCode.FORBIDDEN) {
    message = `the control plane at ${base} refused ${what} to this worker's token (${said})`;
  } else {
    message = `the control plane at ${base} refused ${what} (${said})`;
  }
  return { key: `http:${status}:${e.code}`, message };
}

/** The stream request answered, but not with an event stream: judged by status, type and body. */
export function answerTrouble(
  base: string,
  answer: Extract<StreamAnswer, { kind: 'http' }>,
  hasToken: boolean,
): ConnectionTrouble {
  if (answer.status !== 200)
    return httpTrouble(base, 'the stream', answer.status, answer.body, hasToken);
  return {
    key: `not-a-control-plane:200:${answer.contentType}`,
    message: `${base} is not a killswitch server (it answered the stream with ${
      answer.contentType === '' ? 'no content type' : inert(answer.contentType, 80)
    }, not an event stream)`,
  };
}

/** True when a response is what a control plane streams with. */
export function isEventStream(res: FetchLikeResponse): boolean {
  return res.status === 200 && /^text\/event-stream\b/i.test(res.headers.get('content-type') ?? '');
}

/**
 * Reads (at most {@link BODY_LIMIT} bytes of) a refusal's body, giving up after
 * {@link BODY_WAIT_MS}: eventsource fails a connection that is not an event stream without
 * reading its body, so reading it first takes nothing from it.
 */
export async function readRefusal(res: FetchLikeResponse): Promise<string> {
  const body = res.body;
  if (body === null || body === undefined) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), BODY_WAIT_MS);
  });
  try {
    while (size < BODY_LIMIT) {
      const r = await Promise.race([reader.read(), timeout]);
      if (r === 'timeout' || r.done) break;
      const chunk = r.value as Uint8Array;
      chunks.push(chunk);
      size += chunk.byteLength;
    }
  } catch {
    // a body that fails to arrive is judged as empty
  } finally {
    clearTimeout(timer);
    void Promise.resolve(reader.cancel()).catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, BODY_LIMIT).toString('utf8');
}
