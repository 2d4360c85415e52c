/**
 * KS-2.4.9, KS-2.4.10, KS-6.1.7: a halt is written to the streams while its write to the file
 * store is in flight; the answer, acknowledgements and stop-complete still wait for durability,
 * a resume waits for durability, and a halt whose write fails or is lost leaves every worker
 * failed closed and halted. The file store's handle is injected: its writes can be held (a slow
 * disk) and failed (EIO).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FileFlipLogStore, type LogFileHandle } from '../../providers/file/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { KILL_SWITCH_FLAG } from '../../src/model/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import type { FlipSource, SourceStatus } from '../../src/source/index.js';
import { openLogFile } from '../fixtures/log-file-handle.js';
import { TOKENS, bearer, call, halt, startTestServer } from './helpers.js';
import { SseReader, type SseEvent } from './sse-reader.js';

/**
 * A file handle whose fdatasync can be held until released, or failed (a slow or failing disk):
 * the record is written (page cache) and not durable meanwhile. It writes synchronously as the
 * default handle does for a write that leads with a halt (KS-2.4.9).
 */
class GatedFile {
  hold = false;
  /** Resolves when a held write is waiting. */
  #waiting: (() => void) | undefined;
  #gate: { release: () => void; fail: (e: Error) => void } | undefined;

  readonly open = (path: string): Promise<LogFileHandle> =>
    openLogFile(path, async (datasync) => {
      if (this.hold) {
        await new Promise<void>((release, fail) => {
          this.#gate = { release, fail };
          this.#waiting?.();
        });
      }
      return datasync();
    });

  /** Resolves once a write is being held; rejects when `answer` settles first. */
  held(answer?: Promise<{ status: number; json: unknown }>): Promise<void> {
    if (this.#gate !== undefined) return Promise.resolve();
    const held = new Promise<void>((r) => (this.#waiting = r));
    if (answer === undefined) return held;
    return Promise.race([
      held,
      answer.then((a) => {
        throw new Error(
          `answered before any write was held: ${a.status} ${JSON.stringify(a.json)}`,
        );
      }),
    ]);
  }

  release(): void {
    this.hold = false;
    const g = this.#gate;
    this.#gate = this.#waiting = undefined;
    g?.release();
  }

  fail(code = 'EIO'): void {
    this.hold = false;
    const g = this.#gate;
    this.#gate = this.#waiting = undefined;
    g?.fail(Object.assign(new Error(`${code}: i/o error, write`), { code }));
  }
}

interface Worker {
  readonly source: RemoteFlipSource;
  readonly provider: KillSwitchProvider;
  /** Seqs applied (snapshots and flips), in order. */
  readonly applied: number[];
  /** Every status with its detail. */
  readonly statuses: { status: SourceStatus; detail: string | undefined }[];
  variant(tenant: string): Promise<string>;
}

let dir: string;
let cp: ControlPlane | undefined;
let store: FileFlipLogStore | undefined;
const workers: Worker[] = [];
const readers: SseReader[] = [];

afterEach(async () => {
  for (const r of readers.splice(0)) r.close();
  for (const w of workers.splice(0)) await w.provider.onClose();
  await cp?.close();
  cp = undefined;
  await store?.close();
  store = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(gate: GatedFile, port = 0, heartbeatMs = 200): Promise<ControlPlane> {
  store = new FileFlipLogStore({
    path: join(dir, 'flips.jsonl'),
    openFile: gate.open,
    logger: { warn: () => {} },
  });
  ({ cp } = await startTestServer({
    store,
    port,
    staleAfterMs: 1000,
    leaseMarginMs: 100,
    heartbeatMs,
  }));
  return cp!;
}

/** A worker as deployed: a RemoteFlipSource behind a KillSwitchProvider; resolves once open. */
async function worker(id: string): Promise<Worker> {
  const source = new RemoteFlipSource({
    urls: [cp!.url],
    token: TOKENS.worker,
    workerId: id,
    release: 'v1',
    staleAfterMs: 1000,
    heartbeatMs: 200,
    backoff: { initialMs: 20, maxMs: 100 },
  });
  const applied: number[] = [];
  const statuses: Worker['statuses'] = [];
  let opened!: () => void;
  const open = new Promise<void>((r) => (opened = r));
  const recorded: FlipSource = {
    name: source.name,
    start: (l) =>
      source.start({
        onSnapshot: (s) => {
          applied.push(s.seq);
          l.onSnapshot(s);
        },
        onFlip: (r) => {
          applied.push(r.seq);
          l.onFlip(r);
        },
        onStatus: (st, detail) => {
          statuses.push({ status: st, detail });
          if (st === 'open') opened();
          l.onStatus(st, detail);
        },
      }),
    stop: () => source.stop(),
  };
  const provider = new KillSwitchProvider({ source: recorded, logger: { warn: () => {} } });
  await provider.initialize();
  await open;
  const w: Worker = {
    source,
    provider,
    applied,
    statuses,
    variant: async (tenant) =>
      (await provider.resolveBooleanEvaluation(KILL_SWITCH_FLAG, false, { tenant })).variant!,
  };
  workers.push(w);
  return w;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Settles-later marker for a request's promise. */
function track<T>(p: Promise<T>): { readonly p: Promise<T>; settled: () => boolean } {
  let done = false;
  void p.finally(() => (done = true)).catch(() => undefined);
  return { p, settled: () => done };
}

async function stream(
  path = '/v1/stream',
  headers: Record<string, string> = {},
  token: string = TOKENS.admin,
) {
  const { res, reader } = await SseReader.open(cp!.url + path, { ...bearer(token), ...headers });
  expect(res.status).toBe(200);
  readers.push(reader);
  return reader;
}

const nextFlip = (r: SseReader, ms = 3000): Promise<SseEvent> => r.nextNonHeartbeat(ms);

async function nothingFor(r: SseReader, ms: number): Promise<SseEvent | undefined> {
  try {
    return await r.next(ms);
  } catch (err) {
    if ((err as Error).message.startsWith('timed out')) return undefined;
    throw err;
  }
}

describe('KS-2.4.9 a halt reaches workers before it is durable; nothing claims it durable', () => {
  it('the worker applies the halt while the write is held; the answer, its ack and stop-complete wait for durability', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-early-'));
    const gate = new GatedFile();
    await start(gate);
    const w = await worker('w-1');
    await until('the worker renewed its lease', () =>
      cp!.workers().some((x) => x.id === 'w-1' && x.lastAckSeq === 0),
    );
    gate.hold = true;
    const answer = track(
      call(cp!, 'POST', '/v1/flips', {
        token: TOKENS.operator,
        body: halt('acme', { wait: 5000 }),
      }),
    );
    await gate.held(answer.p);
    // The halt is enforced by the worker while the record is not durable...
    await until(
      'the worker applied the halt early',
      async () => (await w.variant('acme')) === 'halted',
    );
    expect(w.applied).toContain(1);
    // ... and its acknowledgement (sent at once) is not counted, nor the flip answered.
    await sleep(300);
    expect(answer.settled()).toBe(false);
    expect(cp!.fleetStatus(1)).toBeUndefined();
    expect(cp!.snapshot().seq).toBe(0);
    expect(cp!.workers().find((x) => x.id === 'w-1')?.lastAckSeq).toBe(0);
    const durableAt = Date.now();
    gate.release();
    const r = await answer.p;
    expect(r.status).toBe(201);
    expect(r.json.flip.seq).toBe(1);
    expect(r.json.fleet.complete).toBe(true);
    expect(r.json.fleet.acknowledged.map((a: { workerId: string }) => a.workerId)).toEqual(['w-1']);
    // Counted stopped only once durable (wall-clock labels; a few ms of slack for rounding).
    expect(Date.parse(r.json.fleet.acknowledged[0].at)).toBeGreaterThanOrEqual(durableAt - 2);
    expect(Date.parse(r.json.fleet.completeAt)).toBeGreaterThanOrEqual(durableAt - 2);
    expect(w.applied.filter((s) => s === 1)).toHaveLength(1);
  });

  it.each([
    ['a resume', { action: 'resume', selector: { tenant: 'acme' }, reason: 'fixed' }],
    [
      'a halt that changes the queue mode (hold -> drain lets queued work run)',
      halt('acme', { mode: 'drain' }),
    ],
  ])('%s is never applied by a worker before its write is durable', async (_name, flip) => {
    dir = await mkdtemp(join(tmpdir(), 'ks-early-'));
    const gate = new GatedFile();
    await start(gate);
    const w = await worker('w-1');
    expect(
      (
        await call(cp!, 'POST', '/v1/flips', {
          token: TOKENS.operator,
          body: halt('acme', { mode: 'hold' }),
        })
      ).status,
    ).toBe(201);
    await until('the halt is applied', () => w.applied.includes(1));
    gate.hold = true;
    const answer = track(call(cp!, 'POST', '/v1/flips', { token: TOKENS.operator, body: flip }));
    await gate.held(answer.p);
    await sleep(300);
    expect(w.applied).not.toContain(2);
    expect(answer.settled()).toBe(false);
    gate.release();
    expect((await answer.p).status).toBe(201);
    await until('applied once durable', () => w.applied.includes(2));
  });
});

describe('KS-6.1.7 a halt streamed early reaches each subscriber once, in seq order', () => {
  it('subscribers connected before, in between (snapshot, Last-Event-ID before and at it) and scoped readers', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-early-'));
    const gate = new GatedFile();
    await start(gate, 0, 50);
    expect(
      (await call(cp!, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('zeta') })).status,
    ).toBe(201);
    const before = await stream();
    expect((await nextFlip(before)).event).toBe('snapshot');
    // otto reads tenant acme only: a halt of tenant beta is a skip for him (KS-17.4.1).
    const scopedBefore = await stream('/v1/stream', {}, TOKENS.operator);
    expect((await nextFlip(scopedBefore)).event).toBe('snapshot');

    gate.hold = true;
    const answer = track(
      call(cp!, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('beta') }),
    );
    await gate.held(answer.p);
    const early = await nextFlip(before);
    expect([early.event, early.id]).toEqual(['flip', '2']);
    expect(JSON.parse(early.data).selector).toEqual({ tenant: 'beta' });
    expect([(await nextFlip(scopedBefore)).event]).toEqual(['skip']);
    // No heartbeat shows a head behind what was streamed (KS-6.4.2 would call that a divergence).
    expect(await nothingFor(before, 250)).toBeUndefined();

    const fresh = await stream();
    const snap = await nextFlip(fresh);
    expect([snap.event, JSON.parse(snap.data).seq]).toEqual(['snapshot', 1]);
    const resumedBefore = await stream('/v1/stream', { 'last-event-id': '1' });
    const scopedFresh = await stream('/v1/stream', {}, TOKENS.operator);
    expect((await nextFlip(scopedFresh)).event).toBe('snapshot');
    // At the early seq: answered once it is durable, with nothing to replay (no snapshot).
    const resumedAt = SseReader.open(cp!.url + '/v1/stream', {
      ...bearer(TOKENS.admin),
      'last-event-id': '2',
    });
    await sleep(100);
    expect(answer.settled()).toBe(false);

    gate.release();
    expect((await answer.p).status).toBe(201);
    const at = await resumedAt;
    readers.push(at.reader);
    expect(
      (await call(cp!, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('gamma') })).status,
    ).toBe(201);

    const seqs = async (r: SseReader, n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        const e = await nextFlip(r);
        out.push(`${e.event}:${e.id}`);
      }
      return out;
    };
    expect(await seqs(before, 1)).toEqual(['flip:3']);
    expect(await seqs(scopedBefore, 1)).toEqual(['skip:3']);
    expect(await seqs(fresh, 2)).toEqual(['flip:2', 'flip:3']);
    expect(await seqs(resumedBefore, 2)).toEqual(['flip:2', 'flip:3']);
    expect(await seqs(scopedFresh, 2)).toEqual(['skip:2', 'skip:3']);
    expect(await seqs(at.reader, 1)).toEqual(['flip:3']);
    // Heartbeats again, at the durable head.
    for (;;) {
      const e = await before.next(2000);
      if (e.event === 'heartbeat') {
        expect(JSON.parse(e.data).head).toBe(3);
        break;
      }
    }
  });
});

describe('KS-2.4.10 a halt streamed early whose write fails or is lost: workers stay halted, failed closed', () => {
  it('EIO on the write: the answer is an error, the store and the control plane fail closed, and nothing undoes the halt', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-early-'));
    const gate = new GatedFile();
    const first = await start(gate);
    const port = first.port;
    const w = await worker('w-1');
    expect(await w.variant('acme')).toBe('running');
    gate.hold = true;
    const answer = track(
      call(cp!, 'POST', '/v1/flips', { token: TOKENS.operator, body: halt('acme') }),
    );
    await gate.held(answer.p);
    await until('applied early', async () => (await w.variant('acme')) === 'halted');
    gate.fail('EIO');
    const r = await answer.p;
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('KS_STORE_UNAVAILABLE');
    expect(store!.state).toBe('failed');
    expect(cp!.vouch()).toMatchObject({ ok: false });
    expect((cp!.vouch() as { detail: string }).detail).toMatch(
      /streamed to workers before it was durable/,
    );
    const acked = await call(cp!, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'w-1', seq: 0 },
    });
    expect(acked.status).toBe(503);
    const ofrep = await call(cp!, 'POST', '/ofrep/v1/evaluate/flags/kill-switch', {
      token: TOKENS.admin,
      body: { context: { tenant: 'other' } },
    });
    expect(ofrep.json.value).toBe(true);
    // The lease runs out: failed closed, and the halt is still applied.
    await until('the worker fails closed', () => w.source.status === 'stale', 4000);
    const variants = new Set<string>();
    const sample = async () => variants.add(await w.variant('acme'));
    // An operator restarts the control plane on the file (the store reopens, the failed write
    // is not in the log) and appends another record at seq 1: the worker never resumes.
    await cp!.close();
    cp = undefined;
    await store!.close();
    const again = new GatedFile();
    await start(again, port);
    expect(
      (await call(cp!, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('other') })).status,
    ).toBe(201);
    const end = Date.now() + 1500;
    while (Date.now() < end) {
      await sample();
      await sleep(10);
    }
    expect([...variants]).toEqual(['fail-closed']);
    expect(w.source.status).toBe('stale');
    expect(w.applied).toEqual([0, 1]);
  });

  it('power loss after the stream sent it: the log lacks the halt, and the worker fails closed naming the divergence', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-early-'));
    const path = join(dir, 'flips.jsonl');
    const gate = new GatedFile();
    const first = await start(gate);
    const port = first.port;
    const w = await worker('w-1');
    // What the disk holds before the halt: the log and its head file (KS-17.7.5).
    const logBefore = (await readFile(path)).length;
    const headBefore = await readFile(`${path}.head`).catch(() => undefined);
    gate.hold = true;
    const answer = track(
      call(cp!, 'POST', '/v1/flips', { token: TOKENS.operator, body: halt('acme') }),
    );
    await gate.held(answer.p);
    await until('applied early', () => w.applied.includes(1));
    gate.release();
    expect((await answer.p).status).toBe(201);
    // The power goes: neither the halt's line nor the head after it reached the disk.
    await cp!.close();
    cp = undefined;
    await store!.close();
    await truncate(path, logBefore);
    if (headBefore === undefined) await rm(`${path}.head`, { force: true });
    else await writeFile(`${path}.head`, headBefore);
    await start(new GatedFile(), port);
    expect(cp!.snapshot().seq).toBe(0);
    await until('the worker reports the divergence', () =>
      w.statuses.some(
        (s) => s.status === 'stale' && /KS_LOG_DIVERGED|diverg|backwards/i.test(s.detail ?? ''),
      ),
    );
    const variants = new Set<string>();
    const end = Date.now() + 1000;
    while (Date.now() < end) {
      variants.add(await w.variant('acme'));
      variants.add(await w.variant('other'));
      await sleep(10);
    }
    expect([...variants]).toEqual(['fail-closed']);
    expect(w.source.status).toBe('stale');
    // KS-6.4.3 the worker's acknowledgement of the lost seq proves the log moved backwards.
    await until('the restarted control plane stops vouching', () => !cp!.vouch().ok);
  });
});

describe('KS-2.4.10 a process crash after a halt was streamed keeps it: it is in the file before anyone is told', () => {
  it('the default handle (O_DSYNC) writes a halt into the file before the pending listener runs; a resume is not told', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-early-'));
    const path = join(dir, 'flips.jsonl');
    store = new FileFlipLogStore({ path, logger: { warn: () => {} } });
    await store.open();
    // Its second descriptor is opened with the file, not at the first halt: a process's
    // descriptors do not grow after start (the soak compares them), nor is an open on the path.
    const fds = () => readdirSync('/proc/self/fd').length;
    const fdsAtOpen = process.platform === 'linux' ? fds() : 0;
    const seen: { seqs: number[]; inFile: boolean[] }[] = [];
    store.subscribePending({
      pending: (records) =>
        seen.push({
          seqs: records.map((r) => r.seq),
          inFile: records.map((r) => readFileSync(path, 'utf8').includes(`"id":"${r.id}"`)),
        }),
      failed: () => {},
    });
    await store.append({
      id: 'h1',
      actor: 'ada',
      action: 'halt',
      selector: { tenant: 'a' },
      reason: 'x',
    });
    await store.append({
      id: 'r1',
      actor: 'ada',
      action: 'resume',
      selector: { tenant: 'a' },
      reason: 'y',
    });
    expect(seen).toEqual([{ seqs: [1], inFile: [true] }]);
    if (process.platform === 'linux') {
      // The head file is written in the background (its descriptor closed when it is done).
      await vi.waitFor(() => expect(fds()).toBe(fdsAtOpen), { timeout: 2000 });
    }
  });
});
