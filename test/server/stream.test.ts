import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../src/server/index.js';
import type { FlipLogStore } from '../../src/store/index.js';
import { SseReader } from './sse-reader.js';
import { TOKENS, bearer, call, halt, startTestServer } from './helpers.js';

let cp: ControlPlane | undefined;
let store: FlipLogStore;
const readers: SseReader[] = [];

afterEach(async () => {
  for (const r of readers.splice(0)) r.close();
  await cp?.close();
  cp = undefined;
});

async function open(path: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const { res, reader } = await SseReader.open(cp!.url + path, {
    ...bearer(TOKENS.worker),
    ...headers,
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  readers.push(reader);
  return reader;
}

async function flips(n: number, from = 0): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await call(cp!, 'POST', '/v1/flips', {
      token: TOKENS.admin,
      body: halt(`t${from + i}`),
    });
    expect(r.status).toBe(201);
  }
}

describe('KS-6.1.1 the stream starts with retry and a snapshot', () => {
  it('announces retry, then a snapshot with id = head and the active halts', async () => {
    ({ cp, store } = await startTestServer({ retryMs: 750 }));
    await flips(2);
    const r = await open('/v1/stream');
    const snap = await r.next();
    expect(r.retries).toEqual([750]);
    expect(snap.event).toBe('snapshot');
    expect(snap.id).toBe('2');
    const data = JSON.parse(snap.data);
    expect(data.seq).toBe(2);
    expect(data.halts.map((h: { seq: number }) => h.seq)).toEqual([1, 2]);
    expect(data.hash).toBe((await store.head()).hash);
  });
});

describe('KS-6.1.2 each appended record follows as a flip event with id = seq', () => {
  it('delivers records in order with their ids and bodies', async () => {
    ({ cp, store } = await startTestServer());
    const r = await open('/v1/stream');
    expect((await r.next()).event).toBe('snapshot');
    await flips(3);
    const stored = await store.read();
    for (const rec of stored) {
      const e = await r.nextNonHeartbeat();
      expect(e.event).toBe('flip');
      expect(e.id).toBe(String(rec.seq));
      expect(JSON.parse(e.data)).toEqual(rec);
    }
  });
});

describe('KS-6.1.3 heartbeats carry the head and the server time', () => {
  it('sends a heartbeat every heartbeatMs without an id', async () => {
    ({ cp, store } = await startTestServer({ heartbeatMs: 20 }));
    await flips(1);
    const r = await open('/v1/stream');
    await r.next();
    const hb = await r.next();
    expect(hb.event).toBe('heartbeat');
    expect(hb.id).toBeUndefined();
    const d = JSON.parse(hb.data);
    expect(d.head).toBe(1);
    expect(d.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/); // KS-5.1.15
  });
});

describe('KS-6.4.1 the snapshot, every heartbeat and the ack answer carry the log position', () => {
  it('each names the same logId, the head seq and the hash of the record at the head', async () => {
    ({ cp, store } = await startTestServer({ heartbeatMs: 20 }));
    await flips(2);
    const head = await store.head();
    const logId = await store.logId();
    expect(head.seq).toBe(2);
    const r = await open('/v1/stream');
    const snap = JSON.parse((await r.next()).data);
    expect(snap).toMatchObject({ logId, seq: 2, hash: head.hash });
    const hb = await r.next();
    expect(hb.event).toBe('heartbeat');
    expect(JSON.parse(hb.data)).toMatchObject({ logId, head: 2, hash: head.hash });
    const ack = await call(cp!, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'w-position', seq: 2, logId, hash: head.hash },
    });
    expect(ack.status).toBe(200);
    expect(ack.json).toMatchObject({ logId, head: 2, hash: head.hash });
    // One flip later every one of them moves with the log.
    await flips(1, 2);
    const next = await store.head();
    expect(next.hash).not.toBe(head.hash);
    let e;
    do e = await r.next();
    while (!(e.event === 'flip' && e.id === '3'));
    do e = await r.next();
    while (e.event !== 'heartbeat');
    expect(JSON.parse(e.data)).toMatchObject({ logId, head: 3, hash: next.hash });
  });
});

describe('KS-6.1.4 Last-Event-ID replays exactly the missed records', () => {
  it('for every s in 0..head, replays records s+1..head, no snapshot, then the live records', async () => {
    ({ cp, store } = await startTestServer({ heartbeatMs: 60_000 }));
    await flips(6);
    const readersBySeq: SseReader[] = [];
    for (let s = 0; s <= 6; s++)
      readersBySeq.push(await open('/v1/stream', { 'last-event-id': String(s) }));
    await flips(1, 100);
    const all = await store.read();
    for (let s = 0; s <= 6; s++) {
      const r = readersBySeq[s]!;
      const got: unknown[] = [];
      for (let i = s + 1; i <= 7; i++) {
        const e = await r.next();
        expect(e.event).toBe('flip');
        expect(Number(e.id)).toBe(i);
        got.push(JSON.parse(e.data));
      }
      expect(got).toEqual(all.slice(s));
    }
  });

  it.each(['99', '-1', 'abc', '1.5', ''])('sends a snapshot for Last-Event-ID %j', async (id) => {
    ({ cp, store } = await startTestServer());
    await flips(2);
    const r = await open('/v1/stream', { 'last-event-id': id });
    const e = await r.next();
    expect(e.event).toBe('snapshot');
    expect(e.id).toBe('2');
  });

  it('snapshot=1 forces a snapshot even with a valid Last-Event-ID', async () => {
    ({ cp, store } = await startTestServer());
    await flips(2);
    const r = await open('/v1/stream?snapshot=1', { 'last-event-id': '1' });
    expect((await r.next()).event).toBe('snapshot');
  });

  it('KS-6.1.6 a replay longer than maxReplay becomes a snapshot', async () => {
    ({ cp, store } = await startTestServer({ maxReplay: 2 }));
    await flips(6);
    const r = await open('/v1/stream', { 'last-event-id': '1' });
    expect((await r.next()).event).toBe('snapshot');
    const r2 = await open('/v1/stream', { 'last-event-id': '4' });
    const e = await r2.next();
    expect(e.event).toBe('flip');
    expect(e.id).toBe('5');
  });
});

describe('KS-6.1.6 a replay larger than maxBufferedBytes becomes a snapshot', () => {
  it('answers a snapshot rather than a replay it would drop at once', async () => {
    ({ cp, store } = await startTestServer({ maxBufferedBytes: 4096 }));
    for (let i = 0; i < 10; i++) {
      await store.append({
        actor: 't',
        action: 'halt',
        selector: { tenant: `t${i}` },
        reason: 'x'.repeat(1000),
      });
    }
    const far = await open('/v1/stream', { 'last-event-id': '0' });
    expect((await far.next()).event).toBe('snapshot');
    const near = await open('/v1/stream', { 'last-event-id': '8' });
    expect((await near.next()).id).toBe('9');
  });
});

describe('KS-6.1.5 a subscriber that does not drain is disconnected', () => {
  it('drops a paused raw socket past maxBufferedBytes while a reading subscriber keeps every record', async () => {
    ({ cp, store } = await startTestServer({ maxBufferedBytes: 64 * 1024, heartbeatMs: 60_000 }));
    const fast = await open('/v1/stream');
    await fast.next();
    const slow = net.connect(cp.port, '127.0.0.1');
    await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
    slow.write(
      `GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKENS.viewer}\r\n\r\n`,
    );
    slow.pause();
    const closed = new Promise<void>((resolve) => slow.once('close', () => resolve()));
    await new Promise((r) => setTimeout(r, 50));
    expect(cp.stats().subscribers).toBe(2);
    // The reading subscriber consumes concurrently, as a live worker does.
    const seen: number[] = [];
    let stop = false;
    const consuming = (async () => {
      while (!stop) {
        const e = await fast.next(2000).catch(() => undefined);
        if (e?.event === 'flip') seen.push(Number(e.id));
      }
    })();
    // Long reasons make big events; keep appending until the server gives up on the paused socket.
    let n = 0;
    while (cp.stats().dropped === 0 && n < 20_000) {
      await store.append({
        actor: 't',
        action: 'halt',
        selector: { tenant: `t${n}` },
        reason: 'x'.repeat(1900),
      });
      n++;
      // Let sockets drain between appends, as they do between real flips.
      if (n % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(cp.stats().dropped).toBe(1);
    slow.resume();
    await closed;
    expect(cp.stats().subscribers).toBe(1);
    for (let i = 0; i < 200 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    stop = true;
    await consuming;
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });
});

describe('KS-5.2.2 the stream needs a token', () => {
  it('answers 401 without one', async () => {
    ({ cp, store } = await startTestServer());
    const r = await fetch(cp.url + '/v1/stream');
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });
});

describe('KS-6.1 worker identity on the stream', () => {
  it('a stream with worker and release lists the worker as connected until it closes', async () => {
    ({ cp, store } = await startTestServer());
    const r = await open('/v1/stream?worker=w1&release=v9');
    await r.next();
    const w = await call(cp, 'GET', '/v1/workers', { token: TOKENS.viewer });
    expect(w.json.workers).toEqual([
      expect.objectContaining({
        id: 'w1',
        release: 'v9',
        connected: true,
        connections: 1,
        lastAckSeq: null,
        stale: true,
      }),
    ]);
    r.close();
    for (let i = 0; i < 50 && cp.stats().subscribers > 0; i++)
      await new Promise((res) => setTimeout(res, 10));
    const w2 = await call(cp, 'GET', '/v1/workers', { token: TOKENS.viewer });
    expect(w2.json.workers[0].connected).toBe(false);
  });

  it('refuses a bad worker id with 400', async () => {
    ({ cp, store } = await startTestServer());
    const r = await call(cp, 'GET', '/v1/stream?worker=a%20b', { token: TOKENS.viewer });
    expect(r.status).toBe(400);
    expect(r.json.error.issues[0].path).toEqual(['worker']);
  });
});
