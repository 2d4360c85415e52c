import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { ACK_STREAM_CONTENT_TYPE } from '../../src/protocol/ack-stream.js';
import type { AckAnswer } from '../../src/protocol/answers.js';
import { ackStreamRoute } from '../../src/server/routes/ack-stream-route.js';
import type { RouteContext } from '../../src/server/router.js';

/** Every answer carries this much padding, so a few hundred of them outgrow any socket buffer. */
const PAD = 'x'.repeat(256 * 1024);
const LINES = 300;

const WORKER: Principal = {
  name: 'fleet',
  role: 'worker',
  scopes: [],
  resume: false,
  workers: ['w-1'],
};

let server: Server | undefined;
let client: Socket | undefined;
afterEach(async () => {
  client?.destroy();
  client = undefined;
  if (server !== undefined) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
  }
});

/** A server mounting only the ack-stream route, whose `accept` counts calls and answers big. */
async function start(): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const route = ackStreamRoute({
    accept: async () => {
      accepted += 1;
      return {
        head: 0,
        serverTime: new Date().toISOString(),
        staleAfterMs: 5000,
        logId: PAD,
        hash: 'h',
      } as AckAnswer;
    },
    isCurrent: () => true,
    maxLineBytes: 65536,
    endAfterMs: () => 60_000,
  });
  server = createServer((req, res) => {
    const ctx = { req, res, principal: WORKER } as unknown as RouteContext;
    void Promise.resolve(route.handle(ctx)).catch((err: unknown) => res.destroy(err as Error));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

function chunk(text: string): string {
  return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
}

async function settle(read: () => number, quietMs: number, boundMs: number): Promise<number> {
  const until = Date.now() + boundMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  return last;
}

describe('KS-6.7.5 an ack stream whose client does not read its answers', () => {
  it('stops reading lines once the answers fill the buffers, and loses none when the client reads again', async () => {
    const { port, accepted } = await start();
    client = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => client!.once('connect', () => resolve()));
    // The client never reads: the kernel's buffers fill, then the server's response buffer.
    client.pause();
    client.write(
      `POST /v1/acks/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: ${ACK_STREAM_CONTENT_TYPE}\r\ntransfer-encoding: chunked\r\n\r\n`,
    );
    const line = `${JSON.stringify({ workerId: 'w-1', seq: 0 })}\n`;
    for (let i = 0; i < LINES; i++) client.write(chunk(line));

    const stalled = await settle(accepted, 1000, 30_000);
    // Without the bound, every line is accepted and 300 answers of 256 KiB (75 MiB) are held by
    // the server. With it, reading stops at what the socket buffers and the read-ahead hold.
    expect(stalled).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(LINES / 2);

    // The client reads again: every line gets its answer, in order, none dropped.
    let text = '';
    let answers = 0;
    client.setEncoding('latin1');
    client.on('data', (d: string) => {
      text += d;
      // Count answer lines as they arrive (each carries the padding once).
      let at: number;
      while ((at = text.indexOf('"status":200')) >= 0) {
        answers += 1;
        text = text.slice(at + 12);
      }
    });
    client.resume();
    await settle(() => answers, 1000, 60_000);
    expect(accepted()).toBe(LINES);
    expect(answers).toBe(LINES);
  }, 120_000);
});
