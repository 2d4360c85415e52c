/**
 * The acknowledgement stream (KS-6.7): acknowledgements as lines of one long-lived
 * `POST /v1/acks/stream` per worker process, answered line by line, instead of one request per
 * acknowledgement. The server and the remote flip source's acknowledgement channel import it.
 *
 * Request: `content-type:` {@link ACK_STREAM_CONTENT_TYPE}, a chunked body of lines, each one
 * acknowledgement body exactly as `POST /v1/acks` takes it (one entry, or `{ "acks": [...] }`),
 * at most the server's body limit per line, each ending in `\n`.
 *
 * Response: `200` with the same content type, sent at once, whose first line is the
 * {@link AckStreamHello}; then one {@link AckStreamAnswer} line per request line, in order.
 */

/** `content-type` of both directions: lines of JSON (a `+json` type, KS-17.9.2). */
export const ACK_STREAM_CONTENT_TYPE = 'application/ack-lines+json';

/** The first line the server writes, as soon as it has the request head. */
export interface AckStreamHello {
  /** Always true: the stream is open and lines will be answered. */
  readonly open: true;
  /**
   * The client ends its request body (and opens a new stream) after this long: a request body
   * must end within the server's request timeout.
   */
  readonly endAfterMs: number;
  /** Longest line accepted, in bytes; a longer one ends the stream (413). */
  readonly maxLineBytes: number;
}

/**
 * The answer to one line: `status` and `body` are exactly what `POST /v1/acks` with that line
 * as its body would have answered (an `AckAnswer` at 200, an error body otherwise).
 */
export interface AckStreamAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** Lines the server reads ahead of the one it is answering before it pauses the request. */
export const MAX_ACK_STREAM_QUEUE = 8;

/** True for a parsed first line that is an {@link AckStreamHello}. */
export function isAckStreamHello(v: unknown): v is AckStreamHello {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    o['open'] === true &&
    typeof o['endAfterMs'] === 'number' &&
    Number.isFinite(o['endAfterMs']) &&
    o['endAfterMs'] > 0 &&
    typeof o['maxLineBytes'] === 'number' &&
    Number.isInteger(o['maxLineBytes']) &&
    o['maxLineBytes'] > 0
  );
}

/** True for a parsed line that is an {@link AckStreamAnswer}. */
export function isAckStreamAnswer(v: unknown): v is AckStreamAnswer {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o['status'] === 'number' && Number.isInteger(o['status']) && 'body' in o;
}
