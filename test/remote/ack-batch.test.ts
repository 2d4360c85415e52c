import { afterEach, describe, expect, it, vi } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { ManualClock, Recorder, haltLog as log, sseResponse } from '../fixtures/remote-source.js';
import { ACK_HOLD_MAX_MS, ACK_HOLD_MS } from '../../providers/remote/ack-channel.js';
import { GENESIS_HASH, KillState } from '../../src/model/index.js';

type AckBody = { workerId: string; release?: string; seq: number; logId?: string; hash?: string };

/** The log the fake control plane serves. */
const LOG_ID = 'fake-log-1';
/** A control plane behind one injected fetch shared by several sources; acks can be held. */
class FakeServer {
  readonly streams = new Map<string, (s: string) => void>();
  /** Each POST /v1/acks body as received. */
  readonly posts: ({ acks: AckBody[] } | AckBody)[] = [];
  head = 0;
  ackStatus = 200;
  batchStatus = 200;
  holdAcks = false;
  held: (() => void)[] = [];
  fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    if (url.pathname === '/v1/acks') {
      const body = JSON.parse(String(init?.body)) as { acks: AckBody[] } | AckBody;
      this.posts.push(body);
      const status = 'acks' in body ? this.batchStatus : this.ackStatus;
      // The fake's log position: its head, and (at the acknowledged seq) the hash acknowledged.
      const atHead = ('acks' in body ? body.acks : [body]).find((a) => a.seq === this.head);
      const answer = () =>
        new Response(
          JSON.stringify({
            head: this.head,
            serverTime: 0,
            staleAfterMs: 3000,
            logId: LOG_ID,
            hash: atHead?.hash ?? GENESIS_HASH,
          }),
          { status },
        );
      if (this.holdAcks) return new Promise((resolve) => this.held.push(() => resolve(answer())));
      return answer();
    }
    const sse = sseResponse(init?.signal as AbortSignal | undefined);
    this.streams.set(url.searchParams.get('worker')!, sse.write);
    return sse.response;
  };
  push(worker: string, event: string, data: unknown, id?: number): void {
    this.streams.get(worker)!(
      `event: ${event}\n${id !== undefined ? `id: ${id}\n` : ''}data: ${JSON.stringify(data)}\n\n`,
    );
  }
  /** Acks of `worker` in the order sent, whatever the form. */
  acksOf(worker: string): number[] {
    return this.posts
      .flatMap((p) => ('acks' in p ? p.acks : [p]))
      .filter((a) => a.workerId === worker)
      .map((a) => a.seq);
  }
}

const sources: RemoteFlipSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

/** `n` sources on one fetch and one clock (so they share an ack channel), each with a snapshot of seq 0. */
async function fleet(
  n: number,
  extra: { shareAcks?: boolean; staleAfterMs?: number; heartbeatMs?: number } = {},
) {
  const server = new FakeServer();
  const clock = new ManualClock({ now: 1_000_000 });
  const recs: Recorder[] = [];
  const list: RemoteFlipSource[] = [];
  for (let i = 0; i < n; i++) {
    const source = new RemoteFlipSource({
      urls: ['http://cp.test'],
      token: 'tok',
      workerId: `w${i}`,
      release: 'r1',
      fetch: server.fetch as typeof fetch,
      clock,
      backoff: { random: () => 0 },
      ...extra,
    });
    sources.push(source);
    list.push(source);
    const rec = new Recorder();
    recs.push(rec);
    await source.start(rec);
  }
  await vi.waitFor(() => expect(server.streams.size).toBe(n));
  return { server, clock, sources: list, recs };
}

const snap0 = () => ({ ...KillState.fold([]).toSnapshot(), logId: LOG_ID });

describe('KS-6.2.6 sources of one process acknowledge in one batch', () => {
  it('three snapshots applied together cost one POST with three entries, and every source opens', async () => {
    const { server, recs } = await fleet(3);
    for (let i = 0; i < 3; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
    expect(server.posts).toHaveLength(1);
    expect(server.posts[0]).toEqual({
      acks: [0, 1, 2].map((i) =>
        expect.objectContaining({ workerId: `w${i}`, release: 'r1', seq: 0, logId: LOG_ID }),
      ),
    });
  });

  it('a lone source sends the single form; shareAcks: false keeps one request per source', async () => {
    const one = await fleet(1);
    one.server.push('w0', 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(one.server.posts).toHaveLength(1));
    expect(one.server.posts[0]).toEqual(
      expect.objectContaining({ workerId: 'w0', release: 'r1', seq: 0, logId: LOG_ID }),
    );
    const own = await fleet(2, { shareAcks: false });
    for (let i = 0; i < 2; i++) own.server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(own.server.posts).toHaveLength(2));
    expect(own.server.posts.every((p) => !('acks' in p))).toBe(true);
  });
});

/** `n` open sources (snapshot of seq 0 applied and acknowledged) and the record of seq 1. */
async function openFleetWithRecord(n: number) {
  const { server, recs } = await fleet(n);
  for (let i = 0; i < n; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
  await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
  await vi.waitFor(() => expect(server.posts).toHaveLength(1));
  const [r1] = await log(1);
  server.head = 1;
  return { server, r1: r1! };
}

describe('KS-6.2.6 a batch waits (briefly) for the sources still applying the same flip', () => {
  it('the first source to apply does not send alone while the others have not applied it', async () => {
    const { server, r1 } = await openFleetWithRecord(3);
    server.push('w0', 'flip', r1, 1);
    // w0 applied seq 1; w1 and w2 have not: nothing is sent in the next turns.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(server.posts).toHaveLength(1);
    server.push('w1', 'flip', r1, 1);
    server.push('w2', 'flip', r1, 1);
    await vi.waitFor(() => expect(server.posts).toHaveLength(2));
    expect(server.posts[1]).toEqual({
      acks: [0, 1, 2].map((i) =>
        expect.objectContaining({ workerId: `w${i}`, release: 'r1', seq: 1, logId: LOG_ID }),
      ),
    });
  });

  it('a source that never applies it holds the others back at most ACK_HOLD_MS', async () => {
    const { server, r1 } = await openFleetWithRecord(2);
    const t0 = performance.now();
    server.push('w0', 'flip', r1, 1);
    await vi.waitFor(() => expect(server.posts).toHaveLength(2), { interval: 1 });
    const waited = performance.now() - t0;
    expect(server.posts[1]).toEqual(
      expect.objectContaining({ workerId: 'w0', release: 'r1', seq: 1, logId: LOG_ID }),
    );
    // Held for the hold, not for a lease or a heartbeat (those are seconds here).
    expect(waited).toBeGreaterThanOrEqual(ACK_HOLD_MS - 1);
    expect(waited).toBeLessThan(1000);
  });
});

describe('KS-6.2.8 the hold starts over while the fan-out progresses, up to ACK_HOLD_MAX_MS', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const fakeTimers = () =>
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
  /** Acknowledgement bodies after the snapshot's, as the workers they name. */
  const batchesAfterSnapshot = (server: FakeServer) =>
    server.posts.slice(1).map((p) => ('acks' in p ? p.acks : [p]).map((a) => a.workerId));

  it('a fan-out longer than ACK_HOLD_MS with no gap as long costs one batch, at its end', async () => {
    const { server, r1 } = await openFleetWithRecord(3);
    fakeTimers();
    const gap = ACK_HOLD_MS - 1;
    server.push('w0', 'flip', r1, 1);
    await vi.advanceTimersByTimeAsync(gap);
    server.push('w1', 'flip', r1, 1);
    await vi.advanceTimersByTimeAsync(gap);
    expect(batchesAfterSnapshot(server)).toEqual([]);
    server.push('w2', 'flip', r1, 1);
    await vi.advanceTimersByTimeAsync(1);
    expect(batchesAfterSnapshot(server)).toEqual([['w0', 'w1', 'w2']]);
  });

  /**
   * `n` members get the snapshot, then every member but the last applies flip 1, ACK_HOLD_MS - 1
   * apart (the last never does): how long after the first apply the batch went (fake time).
   */
  async function heldWhileProgressing(
    n: number,
    options?: Parameters<typeof fleet>[1],
  ): Promise<number | undefined> {
    const { server, recs } = await fleet(n, options);
    for (let i = 0; i < n; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
    await vi.waitFor(() => expect(server.posts).toHaveLength(1));
    const [r1] = await log(1);
    server.head = 1;
    fakeTimers();
    const start = performance.now();
    for (let i = 0; i < n - 1; i++) {
      server.push(`w${i}`, 'flip', r1!, 1);
      for (let t = 0; t < ACK_HOLD_MS - 1; t++) {
        await vi.advanceTimersByTimeAsync(1);
        if (server.posts.length > 1) return performance.now() - start;
      }
    }
    return undefined;
  }

  it('a fan-out that keeps progressing is held at most ACK_HOLD_MAX_MS in all', async () => {
    const sentAt = await heldWhileProgressing(Math.ceil(ACK_HOLD_MAX_MS / (ACK_HOLD_MS - 1)) + 3);
    expect(sentAt).toBeDefined();
    expect(sentAt).toBeLessThanOrEqual(ACK_HOLD_MAX_MS + 1);
    expect(sentAt).toBeGreaterThan(ACK_HOLD_MAX_MS - ACK_HOLD_MS);
  });

  it('and at most a tenth of the shortest lease of its members', async () => {
    const sentAt = await heldWhileProgressing(12, { staleAfterMs: 200, heartbeatMs: 100 });
    expect(sentAt).toBeDefined();
    expect(sentAt).toBeLessThanOrEqual(200 / 10 + 1);
    expect(sentAt).toBeGreaterThan(200 / 10 - ACK_HOLD_MS);
  });
});

describe('KS-6.2.9 heartbeat acknowledgements fall on a grid of heartbeatMs', () => {
  it('sources started at different times send their heartbeat acknowledgements in one batch', async () => {
    const server = new FakeServer();
    const clock = new ManualClock({ now: 1_000_000 });
    const recs: Recorder[] = [];
    for (let i = 0; i < 3; i++) {
      const source = new RemoteFlipSource({
        urls: ['http://cp.test'],
        token: 'tok',
        workerId: `w${i}`,
        fetch: server.fetch as typeof fetch,
        clock,
        heartbeatMs: 1000,
        staleAfterMs: 3000,
        backoff: { random: () => 0 },
      });
      sources.push(source);
      const rec = new Recorder();
      recs.push(rec);
      await source.start(rec);
      clock.advanceSync(300); // started 0, 300 and 600 ms after the clock's grid point
    }
    await vi.waitFor(() => expect(server.streams.size).toBe(3));
    for (let i = 0; i < 3; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
    await vi.waitFor(() => expect(server.posts).toHaveLength(1));
    clock.advanceSync(99); // 1_000_999: before the grid point
    await new Promise((r) => setImmediate(r));
    expect(server.posts).toHaveLength(1);
    clock.advanceSync(1); // 1_001_000: every source's heartbeat acknowledgement is due
    await vi.waitFor(() => expect(server.posts).toHaveLength(2));
    expect(server.acksOf('w0')).toEqual([0, 0]);
    expect(server.posts[1]).toEqual({
      acks: [0, 1, 2].map((i) => expect.objectContaining({ workerId: `w${i}`, seq: 0 })),
    });
    // And every heartbeatMs from then on, together, never later than heartbeatMs apart.
    clock.advanceSync(1000);
    await vi.waitFor(() => expect(server.posts).toHaveLength(3));
    expect(server.posts[2]).toEqual({
      acks: [0, 1, 2].map((i) => expect.objectContaining({ workerId: `w${i}`, seq: 0 })),
    });
  });
});

describe('KS-6.2.6 KS-6.2.2 each source keeps its own lease rule inside a batch', () => {
  it('the member behind the head keeps its lease; the one at the head extends from the clock read before sending', async () => {
    const records = await log(2);
    const { server, clock, recs } = await fleet(2);
    server.head = 0;
    for (let i = 0; i < 2; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
    const leaseStart = clock.now(); // both leases run to leaseStart + 3000
    clock.advanceSync(1500);
    // w0 applies seq 1; w1 does not. The answer says head 1: w1 is behind.
    server.head = 1;
    server.holdAcks = true;
    server.push('w0', 'flip', records[0], 1);
    await vi.waitFor(() => expect(server.posts.length).toBe(2));
    const sentAt = clock.now();
    const batch = server.posts[1]!;
    // The heartbeat timers of both fired in the same turn (they were armed together): one batch.
    expect('acks' in batch ? batch.acks.map((a) => a.seq).sort() : [batch.seq]).toContain(1);
    clock.advanceSync(200); // the answer comes back later: the lease counts from sentAt
    server.holdAcks = false;
    for (const h of server.held.splice(0)) h();
    await vi.waitFor(() => expect(server.held).toHaveLength(0));
    await new Promise((r) => setImmediate(r));
    clock.advanceSync(leaseStart + 3000 - clock.now()); // w1's lease from the first ack runs out
    expect(recs[1]!.status).toBe('stale');
    expect(recs[0]!.status).toBe('open');
    if ('acks' in batch && batch.acks.some((a) => a.workerId === 'w1')) {
      // w1 was in the batch with seq 0 < head 1: it renewed nothing.
      expect(batch.acks.find((a) => a.workerId === 'w1')!.seq).toBe(0);
    }
    // w0's lease ends exactly at sentAt + 3000, not at the answer's arrival + 3000.
    server.holdAcks = true; // no renewal from here on
    clock.advanceSync(sentAt + 3000 - clock.now() - 1);
    expect(recs[0]!.status).toBe('open');
    clock.advanceSync(1);
    expect(recs[0]!.status).toBe('stale');
  });

  it('keeps one batch in flight; what was applied meanwhile goes next with the newest seq', async () => {
    const records = await log(3);
    const { server, recs } = await fleet(2);
    for (let i = 0; i < 2; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
    server.holdAcks = true;
    server.head = 3;
    server.push('w0', 'flip', records[0], 1);
    await vi.waitFor(() => expect(server.posts).toHaveLength(2));
    for (const r of records) {
      server.push('w0', 'flip', r, r.seq);
      server.push('w1', 'flip', r, r.seq);
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(server.posts).toHaveLength(2); // still one in flight
    server.holdAcks = false;
    for (const h of server.held.splice(0)) h();
    await vi.waitFor(() => expect(server.posts).toHaveLength(3));
    const next = server.posts[2]!;
    expect(
      'acks' in next && [...next.acks].sort((a, b) => a.workerId.localeCompare(b.workerId)),
    ).toEqual([
      expect.objectContaining({ workerId: 'w0', release: 'r1', seq: 3, logId: LOG_ID }),
      expect.objectContaining({ workerId: 'w1', release: 'r1', seq: 3, logId: LOG_ID }),
    ]);
  });
});

describe('KS-6.2.6 a server without batches gets single acknowledgements', () => {
  it('a refused batch (400) leaves the leases as they were and falls back to one ack per source', async () => {
    const { server, recs } = await fleet(2);
    server.batchStatus = 400;
    for (let i = 0; i < 2; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(recs.every((r) => r.status === 'open')).toBe(true));
    expect('acks' in server.posts[0]!).toBe(true);
    expect(server.posts.slice(1)).toEqual([
      expect.objectContaining({ workerId: 'w0', release: 'r1', seq: 0, logId: LOG_ID }),
      expect.objectContaining({ workerId: 'w1', release: 'r1', seq: 0, logId: LOG_ID }),
    ]);
  });
});

describe('KS-6.3.8 a stopped source leaves the shared channel', () => {
  it('an answer in flight is not delivered to a stopped member; the last to stop leaves no timer', async () => {
    const { server, clock, sources: list, recs } = await fleet(2);
    server.holdAcks = true;
    for (let i = 0; i < 2; i++) server.push(`w${i}`, 'snapshot', snap0(), 0);
    await vi.waitFor(() => expect(server.posts).toHaveLength(1));
    await list[0]!.stop();
    for (const h of server.held.splice(0)) h();
    await vi.waitFor(() => expect(recs[1]!.status).toBe('open'));
    expect(recs[0]!.status).toBe('closed');
    await list[1]!.stop();
    expect(clock.pending).toBe(0);
    expect(server.acksOf('w0')).toEqual([0]);
  });
});
