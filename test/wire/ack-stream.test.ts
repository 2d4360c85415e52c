/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { createServer, request, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ACK_STREAM_OPEN_TIMEOUT_MS,
  AckChannel,
  type AckAnswerText,
  type AckMember,
} from '../../providers/remote/ack-channel.js';
import { systemClock } from '../../src/internal/clock.js';
import { SourceStatus } from '../../src/source/index.js';
import { FaultProxy } from './fault-proxy.js';
import { ADMIN_TOKEN, WireServer, postFlip, startClient, type Client } from './harness.js';

const STREAM_LINE = /^POST \/v1\/acks\/stream /;
const ACK_REQUEST = /^POST \/v1\/acks /;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setUp(): Promise<{ server: WireServer; proxy: FaultProxy }> {
  const server = await WireServer.start({ heartbeatMs: 200, staleAfterMs: 3000 });
  cleanups.push(() => server.close());
  const proxy = await FaultProxy.start(server.port);
  cleanups.push(() => proxy.close());
  return { server, proxy };
}

async function client(url: string, id: string): Promise<Client> {
  const c = await startClient(url, id, { staleAfterMs: 3000, heartbeatMs: 200 });
  cleanups.push(() => c.source.stop());
  await c.listener.until(() => c.listener.status === SourceStatus.OPEN, 10_000, 'open');
  return c;
}

const count = (lines: readonly string[], re: RegExp) => lines.filter((l) => re.test(l)).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A flip with `wait`: resolves with its fleet answer. */
async function flipAndWait(url: string): Promise<any> {
  const answer = (await postFlip(url, { wait: 5000 })) as any;
  return answer.fleet;
}

const everStale = (c: Client) => c.listener.statuses.some((s) => s.status === SourceStatus.STALE);

describe('KS-6.7.3 a worker process acknowledges on one long-lived stream', () => {
  it('after the stream opens, acknowledgements and flip acks are lines: no more POST /v1/acks requests', async () => {
    const { server, proxy } = await setUp();
    const c = await client(proxy.url, 'w-stream');
    await until(() => count(proxy.requests, STREAM_LINE) === 1, 5000, 'the ack stream');
    await sleep(400); // the stream's hello has arrived: the next acknowledgements are lines
    const requestsBefore = count(proxy.requests, ACK_REQUEST);
    for (let i = 0; i < 3; i++) {
      const fleet = await flipAndWait(server.url);
      expect(fleet.complete).toBe(true);
      expect(fleet.acknowledged.map((a: any) => a.workerId)).toContain('w-stream');
    }
    await sleep(600); // heartbeat renewals, several per lease
    expect(count(proxy.requests, ACK_REQUEST)).toBe(requestsBefore);
    expect(count(proxy.requests, STREAM_LINE)).toBe(1);
    expect(everStale(c)).toBe(false);
  }, 30_000);
});

/**
 * An HTTP proxy that holds each request body until it ended before forwarding it (nginx's
 * `proxy_request_buffering on`): a streamed body never reaches the server.
 */
async function bufferingProxy(targetPort: number): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers = { ...req.headers, 'content-length': String(body.length) };
      delete headers['transfer-encoding'];
      const up = request(
        { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      up.end(body);
    });
  });
  return { url: await listenForTest(server), seen };
}

describe('KS-6.7.3 behind a proxy that holds request bodies, acknowledgements stay requests', () => {
  it('the stream gets no answer within the open timeout; the worker keeps its lease by requests and its acks count', async () => {
    const server = await WireServer.start({ heartbeatMs: 200, staleAfterMs: 3000 });
    cleanups.push(() => server.close());
    const proxy = await bufferingProxy(server.port);
    const c = await client(proxy.url, 'w-buffered');
    await until(() => proxy.seen.includes('POST /v1/acks/stream'), 5000, 'a stream tried');
    // Past the open timeout: given up, and not tried again for 30 s.
    await sleep(ACK_STREAM_OPEN_TIMEOUT_MS + 500);
    const acksBefore = proxy.seen.filter((l) => l === 'POST /v1/acks').length;
    for (let i = 0; i < 3; i++) {
      const fleet = await flipAndWait(server.url);
      expect(fleet.complete).toBe(true);
      expect(fleet.acknowledged.map((a: any) => a.workerId)).toContain('w-buffered');
    }
    expect(proxy.seen.filter((l) => l === 'POST /v1/acks').length).toBeGreaterThan(acksBefore);
    expect(proxy.seen.filter((l) => l === 'POST /v1/acks/stream')).toHaveLength(1);
    expect(everStale(c)).toBe(false);
    expect(c.listener.status).toBe(SourceStatus.OPEN);
  }, 30_000);
});

describe('KS-6.7.4 a stream cut with a line in flight loses no acknowledgement', () => {
  it('the line held when the connection is cut is sent again as a request; the lease never lapses and flips still count', async () => {
    const { server, proxy } = await setUp();
    const c = await client(proxy.url, 'w-cut');
    await until(() => count(proxy.requests, STREAM_LINE) === 1, 5000, 'the ack stream');
    await sleep(400);
    const requestsBefore = count(proxy.requests, ACK_REQUEST);
    // Hold everything, so a heartbeat's acknowledgement line is written and waits for its answer;
    // then cut every connection (the stream's with it).
    proxy.stall();
    await sleep(500);
    proxy.cut('reset');
    proxy.unstall();
    await until(
      () => count(proxy.requests, ACK_REQUEST) > requestsBefore,
      3000,
      'the held line sent again as a request',
    );
    await c.listener.until(() => c.listener.status === SourceStatus.OPEN, 5000, 'open again');
    for (let i = 0; i < 2; i++) {
      const fleet = await flipAndWait(server.url);
      expect(fleet.complete).toBe(true);
      expect(fleet.acknowledged.map((a: any) => a.workerId)).toContain('w-cut');
    }
    expect(everStale(c)).toBe(false);
  }, 30_000);
});

describe('KS-6.7.4 a stream is replaced before the request timeout would cut it', () => {
  it('with a 2 s request timeout (end after 1 s), streams follow one another; acknowledgements stay lines and the lease holds', async () => {
    const server = await WireServer.start({
      heartbeatMs: 200,
      staleAfterMs: 3000,
      requestTimeoutMs: 2000,
    });
    cleanups.push(() => server.close());
    const proxy = await FaultProxy.start(server.port);
    cleanups.push(() => proxy.close());
    const c = await client(proxy.url, 'w-rotate');
    await until(() => count(proxy.requests, STREAM_LINE) === 1, 5000, 'the ack stream');
    await sleep(400);
    const requestsBefore = count(proxy.requests, ACK_REQUEST);
    await sleep(4000);
    expect(count(proxy.requests, STREAM_LINE)).toBeGreaterThanOrEqual(3);
    const fleet = await flipAndWait(server.url);
    expect(fleet.complete).toBe(true);
    expect(fleet.acknowledged.map((a: any) => a.workerId)).toContain('w-rotate');
    // Make before break: no acknowledgement had to fall back to a request.
    expect(count(proxy.requests, ACK_REQUEST)).toBe(requestsBefore);
    expect(everStale(c)).toBe(false);
  }, 30_000);
});

describe('KS-6.7.4 the channel itself: a line cut before its answer is answered by a request', () => {
  it('one member, its acknowledgement line held by a stalled proxy and then cut: answered 200 by POST /v1/acks, never failed', async () => {
    const { server, proxy } = await setUp();
    // The log's position at seq 0, as a worker that applied the snapshot acknowledges it.
    const first = await fetch(`${server.url}/v1/acks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workerId: 'w-probe', seq: 0 }),
    });
    const { logId, hash } = (await first.json()) as { logId: string; hash: string };
    const answers: { seq: number; answer: AckAnswerText }[] = [];
    const failures: Error[] = [];
    const member: AckMember = {
      workerId: 'w-member',
      release: undefined,
      staleAfterMs: 3000,
      clock: systemClock,
      toAck: () => ({ seq: 0, logId, hash }),
      answered: (seq, _sentAt, answer) => answers.push({ seq, answer }),
      failed: (e) => failures.push(e),
    };
    const channel = new AckChannel(
      { base: proxy.url, token: ADMIN_TOKEN, fetch: undefined, clock: systemClock },
      () => {},
    );
    channel.join(member);
    cleanups.push(() => channel.leave(member));
    // The first acknowledgement goes as a request and opens the stream beside it.
    channel.request(member);
    await until(() => answers.length === 1 && channel.streaming, 5000, 'the stream open');
    channel.request(member);
    await until(() => answers.length === 2, 5000, 'a line answered');
    const requests = count(proxy.requests, ACK_REQUEST);
    expect(requests).toBe(1);
    expect(answers.map((a) => a.answer.status)).toEqual([200, 200]);
    proxy.stall();
    channel.request(member); // written as a line; its answer is held
    await sleep(300);
    expect(answers).toHaveLength(2);
    proxy.cut('reset');
    proxy.unstall();
    await until(() => answers.length === 3, 5000, 'the held acknowledgement answered');
    expect(answers[2]!.answer.status).toBe(200);
    expect(count(proxy.requests, ACK_REQUEST)).toBe(requests + 1);
    expect(failures).toEqual([]);
    expect(channel.streaming).toBe(false);
  }, 20_000);
});

/**
 * An HTTP proxy that streams both ways (bodies are not held) but holds the answer head of
 * `POST /v1/acks/stream` for `holdMs`: a control plane that is slow to answer the stream, as
 * one sending a thousand snapshots at a fleet's start is, or a worker process whose event loop
 * was busy for a second when the hello arrived.
 */
async function slowStreamProxy(
  targetPort: number,
  holdMs: number,
): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const up = request(
      {
        host: '127.0.0.1',
        port: targetPort,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        const answer = () => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.flushHeaders();
          upRes.pipe(res);
        };
        if (req.url === '/v1/acks/stream') setTimeout(answer, holdMs);
        else answer();
      },
    );
    up.flushHeaders();
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  return { url: await listenForTest(server), seen };
}

describe('KS-6.7.3 a stream answered late is still used', () => {
  it('the stream answered after 2.5 s: acknowledgements are requests until then and lines from then on', async () => {
    const server = await WireServer.start({ heartbeatMs: 200, staleAfterMs: 3000 });
    cleanups.push(() => server.close());
    const proxy = await slowStreamProxy(server.port, 2500);
    const c = await client(proxy.url, 'w-late');
    await until(() => proxy.seen.includes('POST /v1/acks/stream'), 5000, 'a stream tried');
    // Until the stream answers, acknowledgements go as requests: the lease holds meanwhile.
    await sleep(1500);
    expect(proxy.seen.filter((l) => l === 'POST /v1/acks').length).toBeGreaterThan(0);
    await sleep(1800); // the stream's answer and hello have arrived
    const acksBefore = proxy.seen.filter((l) => l === 'POST /v1/acks').length;
    for (let i = 0; i < 3; i++) {
      const fleet = await flipAndWait(server.url);
      expect(fleet.complete).toBe(true);
      expect(fleet.acknowledged.map((a: any) => a.workerId)).toContain('w-late');
    }
    await sleep(600); // heartbeat renewals, several per lease
    expect(proxy.seen.filter((l) => l === 'POST /v1/acks').length).toBe(acksBefore);
    expect(proxy.seen.filter((l) => l === 'POST /v1/acks/stream')).toHaveLength(1);
    expect(everStale(c)).toBe(false);
  }, 30_000);
});

/** Listens on a random loopback port, closes the server (and its connections) after the test. */
async function listenForTest(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}
