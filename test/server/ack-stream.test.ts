/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { request, type ClientRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../src/auth/index.js';
import { ACK_STREAM_CONTENT_TYPE } from '../../src/protocol/ack-stream.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { call, halt, silentLogger } from './helpers.js';

const T = {
  fleet: 'stream-fleet-token-0123456789',
  viewer: 'stream-viewer-token-0123456789',
  admin: 'stream-admin-token-0123456789ab',
} as const;

const SPECS: TokenSpec[] = [
  { name: 'fleet', token: T.fleet, role: 'worker', workers: ['w-*'] },
  { name: 'vera', token: T.viewer, role: 'viewer' },
  { name: 'ada', token: T.admin, role: 'admin' },
];

const servers: ControlPlane[] = [];
const lines: LineClient[] = [];
afterEach(async () => {
  for (const l of lines.splice(0)) l.req.destroy();
  for (const cp of servers.splice(0)) await cp.close();
});

async function server(
  extra: { maxBodyBytes?: number; auth?: TokenAuthenticator } = {},
): Promise<ControlPlane> {
  const cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    auth: extra.auth ?? new TokenAuthenticator({ tokens: SPECS }),
    logger: silentLogger,
    maxFlipsPerSecond: 100_000,
    ...(extra.maxBodyBytes === undefined ? {} : { maxBodyBytes: extra.maxBodyBytes }),
  });
  servers.push(cp);
  return cp;
}

/** A raw `POST /v1/acks/stream`: lines written one at a time, answer lines collected. */
class LineClient {
  readonly req: ClientRequest;
  status: number | undefined;
  readonly received: any[] = [];
  ended = false;
  #text = '';
  #wake: (() => void)[] = [];

  constructor(url: string, token: string, contentType = ACK_STREAM_CONTENT_TYPE) {
    this.req = request(`${url}/v1/acks/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    });
    this.req.on('response', (res) => {
      this.status = res.statusCode;
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        this.#text += c;
        let i;
        while ((i = this.#text.indexOf('\n')) >= 0) {
          this.received.push(JSON.parse(this.#text.slice(0, i)));
          this.#text = this.#text.slice(i + 1);
        }
        this.#poke();
      });
      res.on('end', () => {
        this.ended = true;
        this.#poke();
      });
    });
    this.req.on('error', () => {
      this.ended = true;
      this.#poke();
    });
    this.req.flushHeaders();
    lines.push(this);
  }

  #poke(): void {
    for (const w of this.#wake.splice(0)) w();
  }

  send(line: unknown): void {
    this.req.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  }

  /** Resolves once `n` lines (the hello included) arrived, or the answer ended. */
  async lines(n: number, ms = 5000): Promise<any[]> {
    const deadline = Date.now() + ms;
    while (this.received.length < n && !this.ended) {
      if (Date.now() > deadline) throw new Error(`only ${this.received.length} lines`);
      await new Promise<void>((resolve) => {
        this.#wake.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.received;
  }

  async end(): Promise<void> {
    this.req.end();
    const deadline = Date.now() + 5000;
    while (!this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }
}

const workerTracked = async (cp: ControlPlane, id: string) =>
  ((await call(cp, 'GET', '/v1/workers', { token: T.admin })).json.workers as any[]).some(
    (w) => w.id === id,
  );

describe('KS-6.7.1 acknowledgements as lines of one request, answered in order', () => {
  it('answers the head and hello at once, then one line per line with what POST /v1/acks answers', async () => {
    const cp = await server();
    expect((await call(cp, 'POST', '/v1/flips', { token: T.admin, body: halt() })).status).toBe(
      201,
    );
    const c = new LineClient(cp.url, T.fleet);
    const [hello] = await c.lines(1);
    expect(c.status).toBe(200);
    expect(hello).toEqual({ open: true, endAfterMs: expect.any(Number), maxLineBytes: 65_536 });
    c.send({ workerId: 'w-1', seq: 1 });
    c.send({
      acks: [
        { workerId: 'w-2', seq: 0 },
        { workerId: 'w-3', seq: 1 },
      ],
    });
    c.send('not json');
    c.send('');
    c.send({ workerId: 'w-4', seq: 0 });
    const got = await c.lines(5);
    expect(got[1]).toMatchObject({ status: 200, body: { head: 1, staleAfterMs: 3000 } });
    const single = await call(cp, 'POST', '/v1/acks', {
      token: T.fleet,
      body: { workerId: 'w-5', seq: 1 },
    });
    // The same fields as the request form answers.
    expect(Object.keys(got[1].body).sort()).toEqual(Object.keys(single.json).sort());
    expect(got[2]).toMatchObject({ status: 200, body: { head: 1 } });
    expect(got[3]).toMatchObject({ status: 400, body: { error: { code: 'KS_INVALID_INPUT' } } });
    // The empty line got no answer; the stream went on after the bad one.
    expect(got[4]).toMatchObject({ status: 200, body: { head: 1 } });
    for (const id of ['w-1', 'w-2', 'w-3', 'w-4']) expect(await workerTracked(cp, id)).toBe(true);
    await c.end();
    expect(c.received).toHaveLength(5);
  });

  it('a line longer than the body limit is answered 413 and ends the stream', async () => {
    const cp = await server({ maxBodyBytes: 1024 });
    const c = new LineClient(cp.url, T.fleet);
    await c.lines(1);
    c.send({ workerId: 'w-1', seq: 0, release: 'x'.repeat(2000) });
    const got = await c.lines(2);
    expect(got[1]).toMatchObject({
      status: 413,
      body: { error: { code: 'KS_PAYLOAD_TOO_LARGE' } },
    });
    await c.lines(3, 2000).catch(() => {});
    expect(c.ended).toBe(true);
    expect(await workerTracked(cp, 'w-1')).toBe(false);
  });

  it('refuses another content type (415) before any line', async () => {
    const cp = await server();
    const c = new LineClient(cp.url, T.fleet, 'text/plain');
    await c.lines(1).catch(() => {});
    expect(c.status).toBe(415);
  });
});

describe('KS-6.7.2 every rule of POST /v1/acks holds per line', () => {
  it('a token that may not act as a worker is refused before any line (403)', async () => {
    const cp = await server();
    const c = new LineClient(cp.url, T.viewer);
    await c.lines(1).catch(() => {});
    expect(c.status).toBe(403);
  });

  it('a line for a worker id the token is not bound to is refused and records nothing; the stream goes on', async () => {
    const cp = await server();
    const c = new LineClient(cp.url, T.fleet);
    await c.lines(1);
    c.send({
      acks: [
        { workerId: 'w-1', seq: 0 },
        { workerId: 'other-1', seq: 0 },
      ],
    });
    c.send({ workerId: 'w-2', seq: 0 });
    const got = await c.lines(3);
    expect(got[1]).toMatchObject({ status: 403 });
    expect(got[2]).toMatchObject({ status: 200 });
    expect(await workerTracked(cp, 'w-1')).toBe(false);
    expect(await workerTracked(cp, 'other-1')).toBe(false);
    expect(await workerTracked(cp, 'w-2')).toBe(true);
  });

  it('a line beyond the head, or on another log, is refused (409), as the request form is', async () => {
    const cp = await server();
    const c = new LineClient(cp.url, T.fleet);
    await c.lines(1);
    c.send({ workerId: 'w-1', seq: 5 });
    c.send({ workerId: 'w-2', seq: 0, logId: 'another-log', hash: '0'.repeat(64) });
    const got = await c.lines(3);
    expect(got[1]).toMatchObject({ status: 409, body: { error: { code: 'KS_LOG_DIVERGED' } } });
    expect(got[1].body.error.message).toContain('never goes beyond the head');
    expect(got[2]).toMatchObject({ status: 409, body: { error: { code: 'KS_LOG_DIVERGED' } } });
    expect(got[2].body.error.message).toContain('another log');
    expect(await workerTracked(cp, 'w-1')).toBe(false);
    expect(await workerTracked(cp, 'w-2')).toBe(false);
  }, 10_000);

  it('a token revoked while its stream is open gets 401 for its next line, and the stream ends', async () => {
    const auth = new TokenAuthenticator({ tokens: SPECS });
    const cp = await server({ auth });
    const c = new LineClient(cp.url, T.fleet);
    await c.lines(1);
    c.send({ workerId: 'w-1', seq: 0 });
    await c.lines(2);
    auth.replace(SPECS.filter((s) => s.name !== 'fleet'));
    c.send({ workerId: 'w-2', seq: 0 });
    const got = await c.lines(3);
    expect(got[2]).toMatchObject({ status: 401, body: { error: { code: 'KS_UNAUTHORIZED' } } });
    await c.lines(4, 2000).catch(() => {});
    expect(c.ended).toBe(true);
    expect(await workerTracked(cp, 'w-2')).toBe(false);
  });
});
