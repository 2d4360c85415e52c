import { ErrorCode } from '../errors.js';
import { HttpError } from './internal/http-io.js';

/**
 * A limit of the control plane was reached (KS-17.8): `429 KS_LIMIT_EXCEEDED` with `Retry-After`,
 * the message naming the limit, its value and what reached it. Thrown before anything is
 * recorded.
 *
 * @example
 * ```ts
 * throw new LimitExceededError('maxStreams', 1000, '1000 streams are open', 5);
 * ```
 */
export class LimitExceededError extends HttpError {
  /** The option that bounds it (`maxStreams`, `maxFlipsPerSecond`, ...). */
  readonly limit: string;
  readonly value: number;

  constructor(limit: string, value: number, detail: string, retryAfterSeconds: number) {
    super(429, ErrorCode.LIMIT_EXCEEDED, `${limit} (${value}) reached: ${detail}`, {
      headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    });
    this.name = 'LimitExceededError';
    this.limit = limit;
    this.value = value;
  }
}

/**
 * A request is bigger than a limit allows (KS-17.8): `413 KS_PAYLOAD_TOO_LARGE` naming the limit.
 */
export class TooLargeError extends HttpError {
  readonly limit: string;
  readonly value: number;

  constructor(limit: string, value: number, detail: string) {
    super(413, ErrorCode.PAYLOAD_TOO_LARGE, `${limit} (${value}) exceeded: ${detail}`);
    this.name = 'TooLargeError';
    this.limit = limit;
    this.value = value;
  }
}
