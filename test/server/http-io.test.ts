import { EventEmitter } from 'node:events';
import { createServer, get, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { readJsonBody, sendJsonText } from '../../src/server/internal/http-io.js';

/** A request as readJsonBody sees it: headers, body events, `complete` set by the parser. */
function fakeRequest(headers: Record<string, string>): IncomingMessage & EventEmitter {
  return Object.assign(new EventEmitter(), {
    headers,
    complete: false,
  }) as unknown as IncomingMessage & EventEmitter;
}

describe('A declared JSON body is read as it arrives (issue 19: the flip path)', () => {
  it('is whole at its last declared byte: parsed before the request ends', async () => {
    const body = Buffer.from(JSON.stringify({ action: 'halt', reason: 'r' }));
    const req = fakeRequest({
      'content-type': 'application/json',
      'content-length': String(body.length),
    });
    const read = readJsonBody(req, 1024);
    req.emit('data', body.subarray(0, 5));
    req.emit('data', body.subarray(5));
    // No 'end' yet (Node emits it a tick after the parser delivered the last byte).
    await expect(read).resolves.toEqual({ action: 'halt', reason: 'r' });
  });

  it('an empty declared body waits for the end, then is refused as empty', async () => {
    const req = fakeRequest({ 'content-type': 'application/json', 'content-length': '0' });
    const read = readJsonBody(req, 1024);
    req.emit('end');
    await expect(read).rejects.toMatchObject({ status: 400 });
  });

  it('a body cut short fails: the connection closed before the declared length', async () => {
    const req = fakeRequest({ 'content-type': 'application/json', 'content-length': '20' });
    const read = readJsonBody(req, 1024);
    req.emit('data', Buffer.from('{"a":'));
    req.emit('close');
    await expect(read).rejects.toMatchObject({ code: 'ECONNRESET' });
    // A late error on the request is still listened to (not an unhandled 'error').
    expect(() => req.emit('error', new Error('late'))).not.toThrow();
  });
});

describe('A JSON answer goes out as its UTF-8 bytes (issue 19: the flip path)', () => {
  /** Answers `text` with sendJsonText on a real server; the raw body bytes and content-length. */
  async function answered(text: string): Promise<{ body: Buffer; length: string | undefined }> {
    const server = createServer((_req, res) => sendJsonText(res, 200, text));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      return await new Promise((resolve, reject) => {
        get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ body: Buffer.concat(chunks), length: res.headers['content-length'] }),
          );
        }).on('error', reject);
      });
    } finally {
      await new Promise((r) => server.close(r));
    }
  }

  it('ASCII, Latin-1, other BMP and astral characters, large and small, byte for byte', async () => {
    const texts = [
      '{"a":"plain"}',
      JSON.stringify({ reason: 'caf\u00e9 \u00ff', id: 'w\u00e9' }),
      JSON.stringify({ reason: '\u4e2d\u6587 \u{1F600}' }),
      JSON.stringify({ fleet: Array.from({ length: 2000 }, (_, i) => ({ workerId: `w${i}` })) }),
      JSON.stringify({ fleet: Array.from({ length: 2000 }, (_, i) => `w${i}\u00e9`) }),
    ];
    for (const text of texts) {
      const { body, length } = await answered(text);
      const expected = Buffer.from(text, 'utf8');
      expect(body.equals(expected)).toBe(true);
      expect(length).toBe(String(expected.length));
    }
  });
});
