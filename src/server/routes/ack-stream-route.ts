import type { IncomingMessage, ServerResponse } from 'node:http';
import { authorize, type Principal } from '../../auth/principal.js';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import {
  ACK_STREAM_CONTENT_TYPE,
  MAX_ACK_STREAM_QUEUE,
  type AckStreamAnswer,
  type AckStreamHello,
} from '../../protocol/ack-stream.js';
import { parseAckBody, type AckRequest } from '../../protocol/acks.js';
import type { AckAnswer } from '../../protocol/answers.js';
import { ApiPath } from '../../protocol/paths.js';
import { HttpError, toHttpError } from '../internal/http-io.js';
import type { Route } from '../router.js';

/** What {@link ackStreamRoute} uses of the control plane. */
export interface AckStreamRouteParts {
  /**
   * Everything `POST /v1/acks` does with a parsed body, for `who`: the role and worker-id checks,
   * the position checks, recording, and sharing on a shared fleet; resolves with the answer once
   * the acknowledgements count, throws what that route would answer otherwise.
   */
  accept(who: Principal, acks: readonly AckRequest[], nonce?: string): Promise<AckAnswer>;
  /** False once the token is revoked or expired: the stream ends (KS-17.3.1). */
  isCurrent(who: Principal): boolean;
  /** Longest line, in bytes (the body limit of `POST /v1/acks`). */
  readonly maxLineBytes: number;
  /**
   * What the hello tells the client: end the request body after this long (less than the
   * server's request timeout, which would cut it).
   */
  endAfterMs(): number;
}

const NEWLINE = 0x0a;

/**
 * `POST /v1/acks/stream` (KS-6.7): a worker process's acknowledgements as lines of one request
 * body, each answered by one line, in order, with what `POST /v1/acks` would have answered. A
 * line is checked, recorded and (on a shared fleet) shared exactly as that request, one line at a
 * time; nothing in a line counts before its checks passed. The answer head goes out before the
 * first line is read (the client learns at once that nothing between them buffers the body).
 *
 * @example
 * ```ts
 * router.add(ackStreamRoute({ accept, isCurrent: (p) => auth.isCurrent(p), maxLineBytes: 65536, endAfterMs: () => 15000 }));
 * ```
 */
export function ackStreamRoute(p: AckStreamRouteParts): Route {
  return {
    method: 'POST',
    path: ApiPath.ACK_STREAM,
    auth: 'authenticated',
    handle: ({ req, res, principal }) => {
      if (principal === undefined) {
        throw new KillSwitchError(ErrorCode.UNAUTHORIZED, 'missing bearer token');
      }
      authorize(principal, { kind: 'ack' });
      const type = req.headers['content-type'] ?? '';
      if (type.split(';')[0]!.trim().toLowerCase() !== ACK_STREAM_CONTENT_TYPE) {
        throw new HttpError(
          415,
          ErrorCode.INVALID_INPUT,
          `content-type must be ${ACK_STREAM_CONTENT_TYPE} (lines of acknowledgements), received ${type || 'none'}`,
        );
      }
      return serveLines(p, principal, req, res);
    },
  };
}

function serveLines(
  p: AckStreamRouteParts,
  who: Principal,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const queue: string[] = [];
    let partial: Buffer[] = [];
    let partialBytes = 0;
    let busy = false;
    let bodyEnded = false;
    let finished = false;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      req.removeListener('data', onData);
      if (!res.destroyed && !res.writableEnded) {
        // The request body may still be open: the connection cannot carry another request.
        res.end(() => req.socket?.destroy());
      }
      resolve();
    };
    const write = (answer: AckStreamAnswer): void => {
      if (!res.destroyed && !res.writableEnded) res.write(`${JSON.stringify(answer)}\n`);
    };
    const errorAnswer = (err: unknown): AckStreamAnswer => {
      const { status, body } = toHttpError(err);
      return { status, body };
    };

    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (queue.length > 0 && !finished) {
          const line = queue.shift()!;
          if (queue.length < MAX_ACK_STREAM_QUEUE && req.isPaused()) req.resume();
          if (!p.isCurrent(who)) {
            write(
              errorAnswer(
                new KillSwitchError(
                  ErrorCode.UNAUTHORIZED,
                  `token '${who.name}' is no longer valid (revoked or expired)`,
                ),
              ),
            );
            finish();
            return;
          }
          let answer: AckStreamAnswer;
          try {
            let parsed: unknown;
            try {
              parsed = JSON.parse(line);
            } catch {
              throw new HttpError(400, ErrorCode.INVALID_INPUT, 'a line is not valid JSON');
            }
            const { acks, nonce } = parseAckBody(parsed);
            answer = { status: 200, body: await p.accept(who, acks, nonce) };
          } catch (err) {
            answer = errorAnswer(err);
          }
          if (finished) return;
          write(answer);
          // A client that sends lines without reading the answers: stop reading its lines until
          // the answers drained, so nothing grows without bound on this side.
          if (res.writableNeedDrain) await drained(res);
        }
        if (bodyEnded && !finished) finish();
      } finally {
        busy = false;
      }
    };

    const onData = (chunk: Buffer): void => {
      let start = 0;
      for (let i = chunk.indexOf(NEWLINE); i >= 0; i = chunk.indexOf(NEWLINE, start)) {
        const piece = chunk.subarray(start, i);
        start = i + 1;
        if (partialBytes + piece.length > p.maxLineBytes) return tooLong();
        const line =
          partial.length === 0
            ? piece.toString('utf8')
            : Buffer.concat([...partial, piece]).toString('utf8');
        partial = [];
        partialBytes = 0;
        if (line.trim() !== '') queue.push(line);
      }
      if (start < chunk.length) {
        const rest = chunk.subarray(start);
        partialBytes += rest.length;
        if (partialBytes > p.maxLineBytes) return tooLong();
        partial.push(Buffer.from(rest)); // a copy: the chunk's memory is not kept alive
      }
      if (queue.length >= MAX_ACK_STREAM_QUEUE) req.pause();
      void pump();
    };
    const tooLong = (): void => {
      // Framing is lost: the rest of the body cannot be read as lines.
      write(
        errorAnswer(
          new HttpError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            `a line is longer than ${p.maxLineBytes} bytes; the stream ends`,
          ),
        ),
      );
      finish();
    };

    res.on('close', () => {
      finished = true;
      resolve();
    });
    req.on('data', onData);
    req.on('end', () => {
      bodyEnded = true;
      if (partialBytes > 0) {
        const line = Buffer.concat(partial).toString('utf8');
        partial = [];
        partialBytes = 0;
        if (line.trim() !== '') queue.push(line);
      }
      void pump();
      if (!busy && queue.length === 0) finish();
    });

    res.writeHead(200, {
      'content-type': `${ACK_STREAM_CONTENT_TYPE}; charset=utf-8`,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no',
    });
    const hello: AckStreamHello = {
      open: true,
      endAfterMs: p.endAfterMs(),
      maxLineBytes: p.maxLineBytes,
    };
    res.write(`${JSON.stringify(hello)}\n`);
  });
}

/** Resolves when `res` drained or closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.removeListener('drain', done);
      res.removeListener('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
