import { describe, expect, it, vi, afterEach } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { ManualClock, Recorder, haltLog as log, sseResponse } from '../fixtures/remote-source.js';
import { InvalidOptionError } from '../../src/errors.js';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { GENESIS_HASH, KillState, type FlipRecord } from '../../src/model/index.js';

interface StreamReq {
  url: URL;
  headers: Record<string, string>;
  push(event: string, data: unknown, id?: number): void;
  raw(text: string): void;
  end(): void;
}

/** The log the fake control plane serves. */
const LOG_ID = 'fake-log-1';
/** A fake control plane behind an injected fetch: tests write SSE events by hand. */
class FakeServer {
  streams: StreamReq[] = [];
  acks: { seq: number; headers: Record<string, string> }[] = [];
  head = 0;
  ackStatus = 200;
  /** The log the acknowledgement answers name (another one fakes a replica on another log). */
  ackLogId = LOG_ID;
  holdAcks = false;
  held: (() => void)[] = [];
  fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const headers = Object.fromEntries(
      Object.entries((init?.headers ?? {}) as Record<string, string>),
    );
    if (url.pathname === '/v1/acks') {
      const body = JSON.parse(String(init?.body)) as { seq: number; hash?: string };
      this.acks.push({ seq: body.seq, headers });
      // The fake's log position: its head, and (at the acknowledged seq) the hash acknowledged.
      // A control plane's head is never below what it streamed (the tests set it beyond).
      const answer = () =>
        new Response(
          JSON.stringify({
            head: Math.max(this.head, body.seq),
            serverTime: 0,
            staleAfterMs: 3000,
            logId: this.ackLogId,
            hash: this.head <= body.seq && body.hash ? body.hash : GENESIS_HASH,
          }),
          { status: this.ackStatus },
        );
      if (this.holdAcks)
        return new Promise((resolve, reject) => {
          // As fetch does: an aborted request rejects (KS-6.3.7 abandons one that way).
          const signal = init?.signal;
          signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
          this.held.push(() => resolve(answer()));
        });
      return answer();
    }
    const sse = sseResponse(init?.signal as AbortSignal | undefined);
    this.streams.push({ url, headers, push: sse.event, raw: sse.write, end: sse.end });
    return sse.response;
  };
  get last(): StreamReq {
    return this.streams[this.streams.length - 1]!;
  }
}

const sources: RemoteFlipSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

async function setup(extra: Partial<ConstructorParameters<typeof RemoteFlipSource>[0]> = {}) {
  const server = new FakeServer();
  const clock = new ManualClock({ now: 1_000_000 });
  const source = new RemoteFlipSource({
    urls: ['http://a.test', 'http://b.test'],
    token: 'tok',
    workerId: 'w1',
    release: 'r9',
    fetch: server.fetch as typeof fetch,
    clock,
    backoff: { random: () => 0 },
    ...extra,
  });
  sources.push(source);
  const rec = new Recorder();
  await source.start(rec);
  await vi.waitFor(() => expect(server.streams.length).toBe(1));
  return { server, clock, source, rec };
}

const snap = (records: FlipRecord[], upTo: number) => ({
  ...KillState.fold(records.slice(0, upTo)).toSnapshot(),
  logId: LOG_ID,
});

describe('KS-6.3.1 the source identifies the worker and sends the token in a header', () => {
  it('asks for a snapshot with worker and release and the bearer token on the stream and on acks', async () => {
    const { server } = await setup();
    const req = server.last;
    expect(req.url.pathname).toBe('/v1/stream');
    expect(req.url.searchParams.get('worker')).toBe('w1');
    expect(req.url.searchParams.get('release')).toBe('r9');
    expect(req.url.searchParams.get('snapshot')).toBe('1');
    expect(req.headers['Authorization']).toBe('Bearer tok');
    req.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(server.acks.length).toBe(1));
    expect(server.acks[0]!.headers['authorization']).toBe('Bearer tok');
  });

  it('rejects bad options at construction', () => {
    const ok = { urls: ['http://x'], workerId: 'w' };
    expect(() => new RemoteFlipSource({ ...ok, urls: [] })).toThrow(InvalidOptionError);
    expect(() => new RemoteFlipSource({ ...ok, urls: ['ftp://x'] })).toThrow(/urls/);
    expect(() => new RemoteFlipSource({ ...ok, workerId: '' })).toThrow(/workerId/);
    expect(() => new RemoteFlipSource({ ...ok, staleAfterMs: 0 })).toThrow(/staleAfterMs/);
    expect(() => new RemoteFlipSource({ ...ok, heartbeatMs: 5000 })).toThrow(/heartbeatMs/);
    expect(() => new RemoteFlipSource({ ...ok, backoff: { jitter: 2 } })).toThrow(/jitter/);
  });
});

describe('KS-6.3.2 flips are applied strictly in seq order', () => {
  it('applies in order, ignores duplicates and opens once the lease is granted', async () => {
    const records = await log(3);
    const { server, rec, source } = await setup();
    server.head = 1;
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.head = 3;
    server.last.push('flip', records[1], 2);
    server.last.push('flip', records[1], 2);
    server.last.push('flip', records[0], 1);
    server.last.push('flip', records[2], 3);
    await vi.waitFor(() => expect(source.appliedSeq).toBe(3));
    expect(rec.applied).toEqual([-1, 2, 3]);
    await vi.waitFor(() => expect(server.acks.at(-1)?.seq).toBe(3));
  });

  it('a gap fails closed and resynchronises with snapshot=1 until the snapshot is applied', async () => {
    const records = await log(4);
    const { server, rec, source } = await setup();
    server.head = 1;
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.push('flip', records[2], 3); // seq 2 is missing
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.status).toBe('stale');
    expect(server.last.url.searchParams.get('snapshot')).toBe('1');
    expect(source.appliedSeq).toBe(1);
    server.head = 4;
    server.last.push('flip', records[3], 4); // flips before the snapshot are not applied
    server.last.push('snapshot', snap(records, 3), 3);
    server.last.push('flip', records[3], 4);
    await vi.waitFor(() => expect(source.appliedSeq).toBe(4));
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    expect(rec.applied).toEqual([-1, -3, 4]);
  });

  it('a record whose prev does not chain triggers a resync', async () => {
    const records = await log(2);
    const other = await log(2); // same seqs, different hashes (different times/ids)
    const { server, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.applied).toEqual([-1]));
    server.last.push('flip', { ...other[1]!, prev: 'f'.repeat(64) }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.applied).toEqual([-1]);
  });
});

describe('KS-6.3.4 a malformed event is never applied and causes a resync', () => {
  it.each([
    ['not JSON', 'event: flip\nid: 2\ndata: {nope\n\n'],
    ['a record that fails validation', 'event: flip\nid: 2\ndata: {"seq":2}\n\n'],
    ['a snapshot that fails validation', 'event: snapshot\nid: 2\ndata: {"seq":-1}\n\n'],
    ['a bad heartbeat', 'event: heartbeat\ndata: []\n\n'],
  ])('%s', async (_name, text) => {
    const records = await log(2);
    const { server, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.raw(text);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.status).toBe('stale');
    expect(rec.applied).toEqual([-1]);
    expect(server.last.url.searchParams.get('snapshot')).toBe('1');
  });

  it('a record whose hash does not match its content is refused', async () => {
    const records = await resumeLog();
    const { server, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.push('flip', { ...records[1]!, reason: 'tampered' }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.applied).toEqual([-1]);
  });
});

/** A halt (seq 1) and the resume lifting it (seq 2). */
async function resumeLog(): Promise<FlipRecord[]> {
  const store = new MemoryFlipLogStore();
  await store.append({ actor: 't', action: 'halt', selector: { tenant: 'acme' }, reason: 'r' });
  await store.append({ actor: 't', action: 'resume', selector: { tenant: 'acme' }, reason: 'ok' });
  return store.read();
}

describe('KS-6.3.12 a halt may be applied before its hash check, a resume only after', () => {
  it('a forged resume (content changed, hash kept) is never applied nor acknowledged', async () => {
    const records = await resumeLog();
    const { server, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    const acksBefore = server.acks.length;
    // Lifts another selector than the record the hash was computed over.
    server.last.push('flip', { ...records[1]!, selector: { tenant: 'other' } }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.applied).toEqual([-1]);
    expect(rec.status).toBe('stale');
    expect(server.acks.slice(acksBefore).some((a) => a.seq >= 2)).toBe(false);
    expect(server.last.url.searchParams.get('snapshot')).toBe('1');
  });

  it('a corrupted resume with a recomputed-looking hash is never applied', async () => {
    const records = await resumeLog();
    const { server, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.push('flip', { ...records[1]!, hash: 'a'.repeat(64) }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.applied).toEqual([-1]);
    expect(rec.status).toBe('stale');
  });

  it('a corrupted halt ends in fail-closed, unacknowledged, and the applied seq stays', async () => {
    const records = await log(2);
    const { server, rec, source } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    const acksBefore = server.acks.length;
    server.last.push('flip', { ...records[1]!, reason: 'tampered' }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    // It was applied first (a halt only stops more), but the source failed closed at once,
    // asks for a snapshot, never acknowledged seq 2 and does not count it as applied.
    expect(rec.applied).toEqual([-1, 2]);
    expect(rec.statuses.slice(-1)).toEqual(['stale']);
    expect(rec.status).toBe('stale');
    expect(source.appliedSeq).toBe(1);
    expect(server.acks.slice(acksBefore).some((a) => a.seq >= 2)).toBe(false);
    expect(server.last.url.searchParams.get('snapshot')).toBe('1');
    // A true snapshot brings it back, and the real seq 2 then applies.
    server.last.push('snapshot', snap(records, 2), 2);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    expect(source.appliedSeq).toBe(2);
  });

  it('a corrupted drain halt replacing a hold halt is never applied: drain lets queued work run', async () => {
    const store = new MemoryFlipLogStore();
    const halt = { actor: 't', action: 'halt', selector: { tenant: 'acme' }, reason: 'r' } as const;
    await store.append({ ...halt, mode: 'hold' });
    await store.append({ ...halt, mode: 'drain' });
    const records = await store.read();
    const { server, rec, source } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.push('flip', { ...records[1]!, reason: 'tampered' }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.applied).toEqual([-1]);
    expect(rec.status).toBe('stale');
    expect(source.appliedSeq).toBe(1);
    // The true drain halt is applied once it is checked.
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.push('flip', records[1], 2);
    await vi.waitFor(() => expect(source.appliedSeq).toBe(2));
    expect(rec.applied).toEqual([-1, -1, 2]);
  });

  it('a valid halt is applied and acknowledged as before', async () => {
    const records = await log(2);
    const { server, rec, source } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.push('flip', records[1], 2);
    await vi.waitFor(() => expect(source.appliedSeq).toBe(2));
    await vi.waitFor(() => expect(server.acks.some((a) => a.seq === 2)).toBe(true));
    expect(rec.applied).toEqual([-1, 2]);
    expect(rec.status).toBe('open');
  });
});

describe('KS-6.3.14 a halt applied before its check is checked once the process applied it', () => {
  /** Two sources of one process, each on its own fake control plane, writing to one journal. */
  async function pair() {
    const journal: string[] = [];
    const made = [];
    for (const name of ['a', 'b']) {
      const { server, clock, source, rec } = await setup({ workerId: name });
      const onFlip = rec.onFlip.bind(rec);
      const onStatus = rec.onStatus.bind(rec);
      rec.onFlip = (r) => {
        journal.push(`${name} applied ${r.seq}`);
        onFlip(r);
      };
      rec.onStatus = (st) => {
        journal.push(`${name} ${st}`);
        onStatus(st);
      };
      made.push({ server, clock, source, rec });
    }
    return { journal, a: made[0]!, b: made[1]! };
  }

  it('every source that received a corrupted halt in the same turn applies it before any checks it; each then fails closed, unacknowledged', async () => {
    const records = await log(2);
    const { journal, a, b } = await pair();
    for (const s of [a, b]) s.server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect([a.rec.status, b.rec.status]).toEqual(['open', 'open']));
    const acksBefore = [a.server.acks.length, b.server.acks.length];
    journal.length = 0;
    const tampered = { ...records[1]!, reason: 'tampered' };
    a.server.last.push('flip', tampered, 2);
    b.server.last.push('flip', tampered, 2);
    await vi.waitFor(() =>
      expect([a.server.streams.length, b.server.streams.length]).toEqual([2, 2]),
    );
    // Before: a applied, a stale, b applied, b stale (the check between the two sources).
    expect(journal).toEqual(['a applied 2', 'b applied 2', 'a stale', 'b stale']);
    for (const [i, s] of [a, b].entries()) {
      expect(s.source.appliedSeq).toBe(1);
      expect(s.server.acks.slice(acksBefore[i]).some((x) => x.seq >= 2)).toBe(false);
      expect(s.server.last.url.searchParams.get('snapshot')).toBe('1');
    }
  });

  it('a valid halt is acknowledged by every source once checked', async () => {
    const records = await log(2);
    const { a, b } = await pair();
    for (const s of [a, b]) s.server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect([a.rec.status, b.rec.status]).toEqual(['open', 'open']));
    for (const s of [a, b]) s.server.last.push('flip', records[1], 2);
    for (const s of [a, b]) {
      await vi.waitFor(() => expect(s.server.acks.some((x) => x.seq === 2)).toBe(true));
      expect(s.source.appliedSeq).toBe(2);
      expect(s.rec.status).toBe('open');
    }
  });

  it('an acknowledgement sent between the apply and the check checks it first: a corrupted halt is never acknowledged', async () => {
    const records = await log(2);
    const { server, clock, source, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    await vi.waitFor(() => expect(server.acks.length).toBe(1));
    // The heartbeat acknowledgement falls due: its batch goes in this turn's check phase, before
    // the check of the halt that arrives in the same turn.
    clock.advanceSync(1000);
    server.last.push('flip', { ...records[1]!, reason: 'tampered' }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    await vi.waitFor(() => expect(server.acks.length).toBe(2));
    expect(rec.applied).toEqual([-1, 2]);
    expect(rec.status).toBe('stale');
    expect(source.appliedSeq).toBe(1);
    expect(server.acks.map((x) => x.seq)).toEqual([1, 1]);
  });

  it('the record after a corrupted halt, in the same chunk, is never applied', async () => {
    const records = await log(3);
    const { server, rec, source } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    const tampered = { ...records[1]!, reason: 'tampered' };
    server.last.raw(
      `event: flip\nid: 2\ndata: ${JSON.stringify(tampered)}\n\nevent: flip\nid: 3\ndata: ${JSON.stringify(records[2])}\n\n`,
    );
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(rec.applied).toEqual([-1, 2]);
    expect(rec.status).toBe('stale');
    expect(source.appliedSeq).toBe(1);
  });

  it("a listener that throws during one source's check does not hold back the other checks of that turn", async () => {
    const records = await log(2);
    const { a, b } = await pair();
    for (const s of [a, b]) s.server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect([a.rec.status, b.rec.status]).toEqual(['open', 'open']));
    const onStatus = a.rec.onStatus.bind(a.rec);
    a.rec.onStatus = (st) => {
      onStatus(st);
      if (st === 'stale') throw new Error('listener failed');
    };
    // The listener's error leaves the check phase as an uncaught exception: collected here.
    const errors: Error[] = [];
    const collect = (err: Error) => void errors.push(err);
    process.prependListener('uncaughtException', collect);
    try {
      const tampered = { ...records[1]!, reason: 'tampered' };
      a.server.last.push('flip', tampered, 2);
      b.server.last.push('flip', tampered, 2);
      await vi.waitFor(() => expect(errors.map((e) => e.message)).toEqual(['listener failed']));
      // b was checked in the same check phase (before: still open on the unchecked halt until
      // its next event or heartbeat acknowledgement).
      expect(b.source.appliedSeq).toBe(1);
      expect(b.rec.status).toBe('stale');
      expect(a.source.appliedSeq).toBe(1);
      expect(a.rec.status).toBe('stale');
    } finally {
      process.removeListener('uncaughtException', collect);
    }
  });

  it('a listener that refuses a corrupted halt: the halt never counts as applied nor is acknowledged (KS-6.3.12)', async () => {
    const records = await log(2);
    const { server, clock, source, rec } = await setup();
    server.last.push('snapshot', snap(records, 1), 1);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    await vi.waitFor(() => expect(server.acks.length).toBe(1));
    const onFlip = rec.onFlip.bind(rec);
    rec.onFlip = (r) => {
      onFlip(r);
      throw new Error('refused');
    };
    server.last.push('flip', { ...records[1]!, reason: 'tampered' }, 2);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    // The heartbeat acknowledgements while the source resynchronises.
    clock.advanceSync(1000);
    await vi.waitFor(() => expect(server.acks.length).toBe(2));
    expect(rec.applied).toEqual([-1, 2]);
    expect(rec.status).toBe('stale');
    expect(source.appliedSeq).toBe(1);
    expect(server.acks.map((x) => x.seq)).toEqual([1, 1]);
  });
});

describe('KS-6.2.2 KS-6.2.3 the lease', () => {
  it('runs from the time the ack was sent and fails closed when it runs out', async () => {
    const { server, rec, clock } = await setup({ staleAfterMs: 3000, heartbeatMs: 1000 });
    server.holdAcks = true;
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(server.held.length).toBe(1));
    clock.advanceSync(500); // the answer arrives 500 ms after the ack was sent
    server.held.shift()!();
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    clock.advanceSync(2499); // 2999 ms after sending: still open
    expect(rec.status).toBe('open');
    clock.advanceSync(1);
    expect(rec.status).toBe('stale');
  });

  it('does not extend the lease when the server head is beyond the acknowledged seq', async () => {
    const { server, rec, clock } = await setup();
    server.head = 5;
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(server.acks.length).toBe(1));
    await new Promise((r) => setTimeout(r, 20));
    expect(rec.status).toBe('connecting');
    server.head = 0;
    clock.advanceSync(1000);
    server.last.push('heartbeat', { head: 0, at: 0, logId: LOG_ID, hash: GENESIS_HASH });
    await vi.waitFor(() => expect(rec.status).toBe('open'));
  });

  it('goes stale when the stream is silent for staleAfterMs even if acks succeed, and fresh again on data', async () => {
    const { server, rec, clock } = await setup();
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    for (let i = 0; i < 3; i++) {
      clock.advanceSync(1000);
      await vi.waitFor(() => expect(server.acks.length).toBe(i + 2));
    }
    expect(rec.status).toBe('stale');
    server.last.push('heartbeat', { head: 0, at: 0, logId: LOG_ID, hash: GENESIS_HASH });
    await vi.waitFor(() => expect(rec.status).toBe('open'));
  });
});

describe('KS-6.3.11 the lease and stale detection run on the monotonic clock', () => {
  it('a wall clock stepped back 10 minutes with the server silent still fails closed at staleAfterMs', async () => {
    const { server, rec, clock } = await setup({ staleAfterMs: 3000, heartbeatMs: 1000 });
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    const openedAt = clock.now();
    server.ackStatus = 503; // frozen: no renewal, no event
    clock.stepWall(-600_000);
    clock.advanceSync(2999);
    expect(rec.status).toBe('open');
    clock.advanceSync(1);
    expect(rec.status).toBe('stale');
    expect(clock.now() - openedAt).toBe(3000);
  });

  it('a wall clock stepped forward an hour does not cut a valid lease short', async () => {
    const { server, rec, clock } = await setup({ staleAfterMs: 3000, heartbeatMs: 1000 });
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    clock.stepWall(3_600_000);
    clock.advanceSync(1000);
    server.last.push('heartbeat', {
      head: 0,
      at: clock.wallNow(),
      logId: LOG_ID,
      hash: GENESIS_HASH,
    });
    await vi.waitFor(() => expect(server.acks.length).toBe(2));
    clock.stepWall(-3_600_000); // and set right again
    clock.advanceSync(1000);
    await vi.waitFor(() => expect(server.acks.length).toBe(3));
    expect(rec.statuses).toEqual(['connecting', 'open']);
  });

  it('rejects a clock without the monotonic and wall readings', () => {
    const ok = { urls: ['http://x'], workerId: 'w' };
    const legacy = { now: () => 0, setTimeout: () => 0, clearTimeout: () => {} };
    expect(() => new RemoteFlipSource({ ...ok, clock: legacy as never })).toThrow(/clock/);
  });
});

describe('KS-6.3.3 reconnection', () => {
  it('moves to the next URL with backoff and resumes by Last-Event-ID', async () => {
    const records = await log(3);
    const { server, rec, clock, source } = await setup({
      backoff: { initialMs: 100, random: () => 0 },
    });
    server.last.push('snapshot', snap(records, 2), 2);
    await vi.waitFor(() => expect(source.appliedSeq).toBe(2));
    server.last.end();
    await vi.waitFor(() => expect(clock.pending).toBeGreaterThanOrEqual(3));
    clock.advanceSync(99);
    expect(server.streams.length).toBe(1);
    clock.advanceSync(1);
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(server.last.url.host).toBe('b.test');
    expect(server.last.url.searchParams.has('snapshot')).toBe(false);
    expect(server.last.headers['Last-Event-ID']).toBe('2');
    server.last.end();
    await new Promise((r) => setTimeout(r, 20));
    clock.advanceSync(199); // second failure: 200 ms
    expect(server.streams.length).toBe(2);
    clock.advanceSync(1);
    await vi.waitFor(() => expect(server.streams.length).toBe(3));
    expect(server.last.url.host).toBe('a.test');
    server.last.push('flip', records[2], 3);
    await vi.waitFor(() => expect(rec.applied).toEqual([-2, 3]));
  });

  it('an acknowledgement answered from another log while the stream waits to reconnect leaves one reconnection, not two', async () => {
    const { server, clock, rec, source } = await setup({
      staleAfterMs: 3000,
      heartbeatMs: 1000,
      backoff: { initialMs: 2000, maxMs: 2000, random: () => 0 },
    });
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    server.last.end(); // waiting 2000 ms to reconnect to b.test
    await new Promise((r) => setTimeout(r, 20));
    server.ackLogId = 'another-log'; // b.test answers the heartbeat ack from another log
    clock.advanceSync(1000);
    await vi.waitFor(() => expect(rec.status).toBe('stale'));
    await new Promise((r) => setTimeout(r, 20));
    server.ackLogId = LOG_ID;
    clock.advanceSync(5000);
    await new Promise((r) => setTimeout(r, 50));
    // One stream per reconnection: a backoff armed while another was pending replaces it.
    expect(server.streams.length).toBe(2);
    await source.stop();
    expect(clock.pending).toBe(0);
  });

  it('stop() clears every timer and reports closed', async () => {
    const { rec, clock, source, server } = await setup();
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    await source.stop();
    expect(clock.pending).toBe(0);
    expect(rec.status).toBe('closed');
  });
});

describe('KS-6.3.13 after a control plane restart the stream reconnects with the first acknowledgement answered', () => {
  it('a successful acknowledgement cuts a long backoff short: the stream reconnects at once', async () => {
    const { server, clock, rec } = await setup({
      staleAfterMs: 3000,
      heartbeatMs: 1000,
      backoff: { initialMs: 4000, maxMs: 5000, random: () => 0 },
    });
    server.last.push('snapshot', snap([], 0), 0);
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    const acksBefore = server.acks.length;
    server.last.end(); // the control plane went away: the next attempt is 4000 ms out
    await new Promise((r) => setTimeout(r, 20));
    expect(server.streams.length).toBe(1);
    clock.advanceSync(1000); // the heartbeat acknowledgement goes out, and is answered
    await vi.waitFor(() => expect(server.acks.length).toBeGreaterThan(acksBefore));
    await vi.waitFor(() => expect(server.streams.length).toBe(2));
    expect(server.last.url.host).toBe('b.test');
    expect(server.last.headers['Last-Event-ID']).toBe('0');
  });
});

describe('KS-6.2.1 the worker acknowledges each applied flip, the snapshot, and at least every heartbeatMs', () => {
  it('one acknowledgement per applied record, then one per heartbeat interval of silence', async () => {
    const records = await log(2);
    const { server, clock, source } = await setup({ staleAfterMs: 3000, heartbeatMs: 1000 });
    server.last.push('snapshot', snap(records, 0), 0);
    await vi.waitFor(() => expect(server.acks.map((a) => a.seq)).toEqual([0]));
    server.head = 1;
    server.last.push('flip', records[0], 1);
    await vi.waitFor(() => expect(server.acks.map((a) => a.seq)).toEqual([0, 1]));
    server.head = 2;
    server.last.push('flip', records[1], 2);
    await vi.waitFor(() => expect(server.acks.map((a) => a.seq)).toEqual([0, 1, 2]));
    expect(source.appliedSeq).toBe(2);
    // Nothing new: the next acknowledgement comes with the heartbeat, not before.
    clock.advanceSync(999);
    await new Promise((r) => setTimeout(r, 20));
    expect(server.acks).toHaveLength(3);
    clock.advanceSync(1);
    await vi.waitFor(() => expect(server.acks.map((a) => a.seq)).toEqual([0, 1, 2, 2]));
    clock.advanceSync(1000);
    await vi.waitFor(() => expect(server.acks).toHaveLength(5));
    expect(server.acks.at(-1)!.seq).toBe(2);
  });
});

describe('KS-6.3.7 at most one acknowledgement in flight; an unanswered one is abandoned after staleAfterMs', () => {
  it('flips applied while one is in flight send nothing; after staleAfterMs it is abandoned and the newest seq goes next', async () => {
    const records = await log(3);
    const { server, clock, rec } = await setup({ staleAfterMs: 3000, heartbeatMs: 1000 });
    server.holdAcks = true;
    server.last.push('snapshot', snap(records, 0), 0);
    await vi.waitFor(() => expect(server.held.length).toBe(1));
    server.head = 3;
    for (const r of records) server.last.push('flip', r, r.seq);
    await vi.waitFor(() => expect(rec.applied.at(-1)).toBe(3));
    await new Promise((r) => setTimeout(r, 20));
    expect(server.acks.map((a) => a.seq)).toEqual([0]); // still the one in flight
    // Heartbeats come and go while it hangs: still nothing new.
    clock.advanceSync(2000);
    await new Promise((r) => setTimeout(r, 20));
    expect(server.acks).toHaveLength(1);
    // staleAfterMs after it was sent: abandoned; the next carries the newest applied seq.
    clock.advanceSync(1000);
    await vi.waitFor(() => expect(server.acks.map((a) => a.seq)).toEqual([0, 3]));
    server.holdAcks = false;
    for (const answer of server.held.splice(0)) answer();
  });
});
