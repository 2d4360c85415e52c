/**
 * Raw HTTP/1.1 over a TCP socket, for the KS-13 fuzz and auth suites: lets a test send what
 * fetch refuses to (bad UTF-8 in headers, unknown methods, non-origin request targets,
 * oversized headers, lying framing). Every request carries `Connection: close`, so the answer ends
 * with the socket; an event stream is read up to its first bytes and then closed.
 */
import { connect } from 'node:net';

export interface RawAnswer {
  /** The status, or undefined when the server closed the socket without answering. */
  readonly status: number | undefined;
  /** Header block, lower-cased names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** True when the answer did not end within the timeout (a hung request). */
  readonly timedOut: boolean;
}

export interface RawRequest {
  readonly method: string;
  /** The request target as sent (`/v1/flips?x=1`, `*`, `//[`...). */
  readonly target: string;
  /** Header lines as bytes (name and value), sent as given. */
  readonly headers?: readonly (readonly [string | Buffer, string | Buffer])[];
  readonly body?: Buffer;
  /** Send the body with chunked framing instead of a content-length. */
  readonly chunked?: boolean;
}

/** Sends one request and reads the answer (or the lack of one). */
export function rawRequest(port: number, r: RawRequest, timeoutMs = 5000): Promise<RawAnswer> {
  const parts: Buffer[] = [Buffer.from(`${r.method} ${r.target} HTTP/1.1\r\n`, 'latin1')];
  const line = (name: string | Buffer, value: string | Buffer) =>
    Buffer.concat([
      Buffer.isBuffer(name) ? name : Buffer.from(name, 'latin1'),
      Buffer.from(': '),
      Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'),
      Buffer.from('\r\n'),
    ]);
  parts.push(line('host', '127.0.0.1'), line('connection', 'close'));
  for (const [n, v] of r.headers ?? []) parts.push(line(n, v));
  if (r.body !== undefined) {
    if (r.chunked) parts.push(line('transfer-encoding', 'chunked'));
    else parts.push(line('content-length', String(r.body.length)));
  }
  parts.push(Buffer.from('\r\n'));
  if (r.body !== undefined) {
    if (r.chunked) {
      for (let i = 0; i < r.body.length; i += 4096) {
        const c = r.body.subarray(i, i + 4096);
        parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
      }
      parts.push(Buffer.from('0\r\n\r\n'));
    } else parts.push(r.body);
  }
  const bytes = Buffer.concat(parts);
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let finished = false;
    const finish = (timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      done(parse(Buffer.concat(chunks), timedOut));
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      // An event stream never ends by itself: its head is enough.
      if (
        end >= 0 &&
        /content-type: text\/event-stream/i.test(all.subarray(0, end).toString('latin1'))
      )
        finish(false);
    });
    // The server may answer (413, 431) and close before it read everything we sent.
    socket.write(bytes, () => {});
  });
}

function parse(buf: Buffer, timedOut: boolean): RawAnswer {
  const end = buf.indexOf('\r\n\r\n');
  const head = (end < 0 ? buf : buf.subarray(0, end)).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  const headers: Record<string, string> = {};
  for (const l of head.split('\r\n').slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = end < 0 ? '' : buf.subarray(end + 4).toString('utf8');
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  return { status: m ? Number(m[1]) : undefined, headers, body, timedOut };
}

function dechunk(s: string): string {
  let out = '';
  let rest = s;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    if (nl < 0) return out + rest;
    const n = parseInt(rest.slice(0, nl), 16);
    if (!Number.isFinite(n) || n === 0) return out;
    out += rest.slice(nl + 2, nl + 2 + n);
    rest = rest.slice(nl + 2 + n + 2);
  }
}
