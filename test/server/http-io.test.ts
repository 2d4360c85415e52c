import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { readJsonBody } from '../../src/server/internal/http-io.js';

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
