import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, KillSwitchError, ValidationError, type ValidationIssue } from '../../errors.js';
import type { ErrorBody } from '../../protocol/answers.js';

/** An error that maps onto one HTTP answer. */
export class HttpError extends KillSwitchError {
  readonly status: number;
  readonly issues: readonly ValidationIssue[] | undefined;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    extra: { issues?: readonly ValidationIssue[]; headers?: Record<string, string> } = {},
  ) {
    super(code, message);
    this.name = 'HttpError';
    this.status = status;
    this.issues = extra.issues;
    this.headers = extra.headers ?? {};
  }
}

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.INVALID_INPUT]: 400,
  [ErrorCode.UNAUTHORIZED]: 401,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.METHOD_NOT_ALLOWED]: 405,
  [ErrorCode.ID_CONFLICT]: 409,
  [ErrorCode.RESUME_REFUSED]: 409,
  [ErrorCode.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCode.LIMIT_EXCEEDED]: 429,
  [ErrorCode.STORE_CLOSED]: 503,
  [ErrorCode.STORE_UNAVAILABLE]: 503,
};

/**
 * Maps any thrown value onto a status and body. Unknown errors become a 500 `KS_INTERNAL` with a
 * fixed message: no stack, no internal detail leaves the server (KS-5.1.8).
 */
export function toHttpError(err: unknown): {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
} {
  if (err instanceof HttpError) {
    return {
      status: err.status,
      headers: { ...err.headers },
      body: {
        error: {
          code: err.code,
          message: err.message,
          ...(err.issues ? { issues: err.issues } : {}),
        },
      },
    };
  }
  if (err instanceof KillSwitchError) {
    const status = STATUS_OF[err.code];
    if (status !== undefined) {
      const issues = err instanceof ValidationError ? err.issues : undefined;
      return {
        status,
        headers: {},
        body: { error: { code: err.code, message: err.message, ...(issues ? { issues } : {}) } },
      };
    }
  }
  return {
    status: 500,
    headers: {},
    body: { error: { code: ErrorCode.INTERNAL, message: 'internal error' } },
  };
}

/** No headers beyond the usual ones (the answer is then written from a flat list). */
const NO_HEADERS: Record<string, string> = Object.freeze({});

/** Writes a JSON answer (unless the response already started). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = NO_HEADERS,
): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** Writes an answer already encoded as JSON (unless the response already started). */
export function sendJsonText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = NO_HEADERS,
): void {
  if (res.headersSent || res.destroyed) return;
  const bytes = Buffer.byteLength(text);
  if (headers === NO_HEADERS) {
    // The common answer: a flat name/value list, which Node writes without building or walking
    // an object of headers (the same bytes as the object form below).
    res.writeHead(status, [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(bytes),
      'cache-control',
      'no-store',
      'x-content-type-options',
      'nosniff',
    ]);
  } else {
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': bytes,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    });
  }
  // As many UTF-8 bytes as UTF-16 units: every character is ASCII, whose UTF-8 bytes are its
  // Latin-1 ones, which Node copies out of the string as they are instead of encoding them (a
  // fleet answer with a thousand workers is ~125 KB).
  res.end(text, bytes === text.length ? 'latin1' : 'utf8');
}

/**
 * Reads a JSON body of at most `maxBytes`: 413 beyond (announced or streamed), 415 for a
 * non-JSON content type, 400 for an empty or unparsable body. KS-5.1.5, KS-5.1.6
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
    throw new HttpError(
      415,
      ErrorCode.INVALID_INPUT,
      `content-type must be application/json, received ${type}`,
    );
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    throw tooLarge(maxBytes);
  }
  let chunks: Buffer[];
  if (declared !== undefined && /^\d{1,16}$/.test(declared)) {
    // A declared length within the bound: Node's parser delivers exactly that many bytes, so
    // the body is read with plain listeners (an async iterator costs more than the body).
    chunks = await readDeclared(req, Number(declared));
  } else {
    chunks = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) throw tooLarge(maxBytes);
      chunks.push(chunk);
    }
  }
  const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
  if (text.trim() === '') {
    throw new HttpError(400, ErrorCode.INVALID_INPUT, 'request body is empty; expected JSON', {
      issues: [{ path: [], message: 'expected a JSON body' }],
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, ErrorCode.INVALID_INPUT, 'request body is not valid JSON', {
      issues: [{ path: [], message: (err as Error).message }],
    });
  }
}

/**
 * Every chunk of a body whose length was declared, as soon as its last byte arrived (the parser
 * delivers exactly that many; its 'end' comes a tick later); rejects when the request fails or
 * ends early. The listeners stay on the request, which lives for this request only: removing them
 * cost more than the body, and the error listener keeps a late failure from being unhandled.
 */
function readDeclared(req: IncomingMessage, length: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const done = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      if (err === undefined) resolve(chunks);
      else reject(err);
    };
    req.on('data', (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      if (received >= length) done(undefined);
    });
    req.on('end', () => done(undefined));
    req.on('error', (err: Error) => done(err));
    req.on('close', () => {
      if (!req.complete) done(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }) as Error);
    });
  });
}

function tooLarge(maxBytes: number): HttpError {
  // Connection: close, so the unread rest of the body is not parsed as the next request.
  return new HttpError(413, ErrorCode.PAYLOAD_TOO_LARGE, `request body exceeds ${maxBytes} bytes`, {
    headers: { connection: 'close' },
  });
}
