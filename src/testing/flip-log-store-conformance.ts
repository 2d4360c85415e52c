/**
 * The flip-log store conformance suite (KS-2.4.3). Every store's test file calls
 * {@link describeFlipLogStoreConformance} once with a harness; the in-memory store is the oracle
 * the differential test compares the store with.
 *
 * Writing a harness for a new store (e.g. PostgreSQL):
 * - `create({ clock })` returns a NEW, EMPTY, unopened store every call (a fresh file, schema or
 *   table); the suite opens it and closes it after the test. Give the store `clock` as its clock
 *   when it can take one (then leave `now` unset or `'injected'`); a store that stamps `at`
 *   itself (a database clock) sets `now: 'store'`, and the differential test then compares
 *   everything but `at`, `prev` and `hash` and checks the store's own chain instead.
 * - `reopen(store)` (optional) closes `store` and returns a new, unopened store over the same
 *   data, as a process restart would; without it the reopen tests are not registered (a store with
 *   nothing to reopen has no such tests, rather than skipped ones in every run).
 * - `cleanup()` (optional) runs once after the suite (remove temporary files, drop schemas).
 * - Deliveries to `subscribe` may be asynchronous (LISTEN/NOTIFY): the suite waits for them by
 *   polling a condition, never by sleeping a fixed time.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { ErrorCode, ValidationError } from '../errors.js';
import { ManualClock, type Clock } from '../internal/clock.js';
import {
  GENESIS_HASH,
  computeHash,
  type FlipInput,
  type FlipRecord,
} from '../model/flip-record.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { verifyChain } from '../store/verify-chain.js';

/** What {@link FlipLogStoreHarness.create} is given. */
export interface HarnessCreateOptions {
  /** The clock whose wall reading the store should stamp `at` with (fixed: it never advances). */
  readonly clock: Clock;
}

/** How the suite makes, restarts and cleans up the store under test. */
export interface FlipLogStoreHarness {
  /** A new, empty, unopened store each call. */
  create(options: HarnessCreateOptions): Promise<FlipLogStore>;
  /** Closes `store` and returns a new, unopened store over the same data (a restart). */
  reopen?(store: FlipLogStore): Promise<FlipLogStore>;
  /** Runs once after the suite. */
  cleanup?(): Promise<void>;
  /** Whose clock stamps `at`: the one given to `create` (default) or the store's own. */
  now?: 'injected' | 'store';
  /** fast-check runs of the differential test. @default 25 */
  numRuns?: number;
}

const FIXED = Date.parse('2026-01-02T03:04:05.678Z');
/** Never advanced, so every `at` is FIXED. */
const fixedClock = new ManualClock({ wall: FIXED });

const halt = (over: Partial<FlipInput> = {}): FlipInput => ({
  actor: 'oncall',
  action: 'halt',
  selector: { tenant: 'acme' },
  reason: 'INC-1',
  ...over,
});

/** Polls (without fixed sleeps) until `cond` holds; fails after `timeoutMs`. */
async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * Registers the conformance tests for one store.
 *
 * @param name - shown in the describe titles (`memory`, `file`, `postgres`)
 * @param harness - makes and restarts stores
 */
export function describeFlipLogStoreConformance(name: string, harness: FlipLogStoreHarness): void {
  // Registered only for a store that can reopen; a memory store has nothing to reopen.
  const describeReopen = (title: string, body: () => void): void => {
    if (harness.reopen !== undefined) describe(title, body);
  };
  const injected = (harness.now ?? 'injected') === 'injected';
  const live = new Set<FlipLogStore>();

  async function fresh(clock: Clock = fixedClock): Promise<FlipLogStore> {
    const store = await harness.create({ clock });
    live.add(store);
    await store.open();
    return store;
  }

  async function reopen(store: FlipLogStore): Promise<FlipLogStore> {
    live.delete(store);
    const again = await harness.reopen!(store);
    live.add(again);
    await again.open();
    return again;
  }

  afterEach(async () => {
    for (const s of live) await s.close().catch(() => undefined);
    live.clear();
  });
  afterAll(async () => {
    await harness.cleanup?.();
  });

  describe(`KS-2.2.1 ${name}: seq is dense from 1 and assigned by the store`, () => {
    it('numbers appends 1, 2, 3, ... and read returns exactly what append returned', async () => {
      const store = await fresh();
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await store.append(halt({ id: `f${i}` })));
      expect(results.map((r) => r.record.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(results.every((r) => !r.duplicate)).toBe(true);
      expect(await store.read()).toEqual(results.map((r) => r.record));
    });

    it('head is seq 0 and the genesis hash when empty, then the last record', async () => {
      const store = await fresh();
      expect(await store.head()).toEqual({ seq: 0, hash: GENESIS_HASH });
      await store.append(halt({ id: 'a' }));
      const { record } = await store.append(halt({ id: 'b' }));
      expect(await store.head()).toEqual({ seq: 2, hash: record.hash });
    });
  });

  describe(`KS-2.7.1 ${name}: every log has an identity from genesis`, () => {
    it('gives each new log its own id in the id alphabet, the same on every call', async () => {
      const one = await fresh();
      const two = await fresh();
      const id = await one.logId();
      expect(id).toMatch(/^[A-Za-z0-9._:@/+=-]{1,128}$/);
      expect(await one.logId()).toBe(id);
      await one.append(halt({ id: 'a' }));
      expect(await one.logId()).toBe(id);
      expect(await two.logId()).not.toBe(id);
    });
  });

  describeReopen(`KS-2.7.1 ${name}: a reopened log keeps its identity`, () => {
    it('answers the same logId after a restart, empty or not', async () => {
      let store = await fresh();
      const id = await store.logId();
      store = await reopen(store);
      expect(await store.logId()).toBe(id);
      await store.append(halt({ id: 'a' }));
      store = await reopen(store);
      expect(await store.logId()).toBe(id);
    });
  });

  describe(`KS-2.1.1 ${name}: records carry the flip and its defaults`, () => {
    it('a halt gets the discard mode by default, a resume gets none, optional fields are kept', async () => {
      const store = await fresh();
      const h = await store.append(halt({ id: 'h', source: 'operator' }));
      const r = await store.append({
        id: 'r',
        actor: 'oncall',
        action: 'resume',
        selector: { tenant: 'acme' },
        reason: 'fixed',
        release: 'v2',
      });
      expect(h.record).toMatchObject({ action: 'halt', mode: 'discard', source: 'operator' });
      expect(r.record).toMatchObject({ action: 'resume', release: 'v2' });
      expect('mode' in r.record).toBe(false);
      if (injected) expect(h.record.at).toBe(new Date(FIXED).toISOString());
    });

    it('a halt without an id gets a unique generated id', async () => {
      const store = await fresh();
      const a = await store.append(halt());
      const b = await store.append(halt());
      expect(a.record.id).not.toBe(b.record.id);
      expect(b.duplicate).toBe(false);
    });
  });

  describe(`KS-2.3.1 KS-2.3.2 ${name}: the records form one hash chain`, () => {
    it('verifyChain accepts what the store returns; seq 1 chains to the genesis hash', async () => {
      const store = await fresh();
      await store.append(halt({ id: 'a', selector: {} }));
      await store.append({ id: 'b', actor: 'x', action: 'resume', selector: {}, reason: 'ok' });
      await store.append(
        halt({ id: 'c', selector: { capability: 'payments.refund', tenant: 't' } }),
      );
      const records = await store.read();
      expect(verifyChain(records)).toEqual(records);
      expect(records[0]!.prev).toBe(GENESIS_HASH);
      for (const r of records) expect(r.hash).toBe(computeHash(r));
    });
  });

  describe(`KS-2.2.3 ${name}: the id is an idempotency key`, () => {
    it('a retried flip returns the stored record with duplicate: true and appends nothing', async () => {
      const store = await fresh();
      const first = await store.append(halt({ id: 'retry-me' }));
      await store.append(halt({ id: 'other' }));
      const again = await store.append(halt({ id: 'retry-me' }));
      expect(again).toEqual({ record: first.record, duplicate: true });
      expect((await store.head()).seq).toBe(2);
    });

    it('a different flip with a used id fails with KS_ID_CONFLICT and appends nothing', async () => {
      const store = await fresh();
      await store.append(halt({ id: 'x' }));
      await expect(store.append(halt({ id: 'x', reason: 'another reason' }))).rejects.toMatchObject(
        { code: ErrorCode.ID_CONFLICT },
      );
      await expect(
        store.append({
          id: 'x',
          actor: 'oncall',
          action: 'resume',
          selector: { tenant: 'acme' },
          reason: 'INC-1',
        }),
      ).rejects.toMatchObject({ code: ErrorCode.ID_CONFLICT });
      expect((await store.head()).seq).toBe(1);
    });

    it('concurrent retries of one flip append it once', async () => {
      const store = await fresh();
      const results = await Promise.all(
        Array.from({ length: 10 }, () => store.append(halt({ id: 'same' }))),
      );
      expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
      for (const r of results) expect(r.record).toEqual(results[0]!.record);
      expect(await store.read()).toHaveLength(1);
    });
  });

  describe(`KS-2.1.2 ${name}: bad input is refused with every issue listed and nothing appended`, () => {
    const bad: [string, unknown][] = [
      ['not an object', 'halt everything'],
      ['null', null],
      ['a missing actor', { action: 'halt', selector: {}, reason: 'r' }],
      ['an empty reason', halt({ reason: '   ' })],
      ['a missing reason', { actor: 'a', action: 'halt', selector: {} }],
      ['a selector with an unknown key', halt({ selector: { region: 'eu' } as never })],
      ['a selector with an empty value', halt({ selector: { tenant: '' } })],
      [
        'a resume with a queue mode',
        { actor: 'a', action: 'resume', selector: {}, reason: 'r', mode: 'hold' },
      ],
      ['an unknown action', { actor: 'a', action: 'pause', selector: {}, reason: 'r' }],
      ['an unknown field', { ...halt(), seq: 7 }],
      ['an id with spaces', halt({ id: 'has space' })],
      ['an unknown mode', halt({ mode: 'stop' as never })],
    ];
    it.each(bad)('refuses %s with KS_INVALID_INPUT', async (_what, input) => {
      const store = await fresh();
      await store.append(halt({ id: 'before' }));
      const err: unknown = await store.append(input as FlipInput).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).code).toBe(ErrorCode.INVALID_INPUT);
      expect((err as ValidationError).issues.length).toBeGreaterThan(0);
      expect(await store.read()).toHaveLength(1);
      // The log is still usable and dense after a refusal.
      expect((await store.append(halt({ id: 'after' }))).record.seq).toBe(2);
    });

    it('lists every issue of an input with several problems at once', async () => {
      const store = await fresh();
      const err = (await store
        .append({
          actor: '',
          action: 'resume',
          selector: { region: 'eu' },
          reason: '',
          mode: 'hold',
        } as never)
        .catch((e: unknown) => e)) as ValidationError;
      expect(err.code).toBe(ErrorCode.INVALID_INPUT);
      const paths = err.issues.map((i) => i.path.join('.'));
      expect(paths).toEqual(expect.arrayContaining(['actor', 'reason', 'mode']));
      expect(paths.some((p) => p.startsWith('selector'))).toBe(true);
      expect(await store.head()).toEqual({ seq: 0, hash: GENESIS_HASH });
    });
  });

  describe(`KS-2.2.1 ${name}: read pages by after and limit`, () => {
    it('returns the records after a seq, at most limit of them', async () => {
      const store = await fresh();
      for (let i = 1; i <= 10; i++) await store.append(halt({ id: `p${i}` }));
      const seqs = async (o: { after?: number; limit?: number }) =>
        (await store.read(o)).map((r) => r.seq);
      expect(await seqs({})).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(await seqs({ after: 3, limit: 4 })).toEqual([4, 5, 6, 7]);
      expect(await seqs({ after: 8 })).toEqual([9, 10]);
      expect(await seqs({ after: 8, limit: 5 })).toEqual([9, 10]);
      expect(await seqs({ after: 10 })).toEqual([]);
      expect(await seqs({ after: 99 })).toEqual([]);
      expect(await seqs({ limit: 0 })).toEqual([]);
      expect(await seqs({ limit: 2 })).toEqual([1, 2]);
    });
  });

  describe(`KS-2.2.1 ${name}: subscribe delivers each later append once, in seq order`, () => {
    it('delivers appends after subscribing, not the ones before, and nothing after unsubscribe', async () => {
      const store = await fresh();
      await store.append(halt({ id: 'before' }));
      const a: FlipRecord[] = [];
      const b: FlipRecord[] = [];
      const offA = store.subscribe((r) => a.push(r));
      const offB = store.subscribe((r) => b.push(r));
      const appended = [];
      for (let i = 0; i < 3; i++) appended.push((await store.append(halt({ id: `s${i}` }))).record);
      await store.append(halt({ id: 's0' })); // a duplicate: nothing new to deliver
      appended.push(
        ...(await Promise.all([4, 5, 6].map((i) => store.append(halt({ id: `s${i}` }))))).map(
          (r) => r.record,
        ),
      );
      await until(() => a.length >= 6 && b.length >= 6, 'six deliveries');
      expect(a).toEqual(appended.sort((x, y) => x.seq - y.seq));
      expect(b).toEqual(a);
      expect(a.map((r) => r.seq)).toEqual([2, 3, 4, 5, 6, 7]);
      offA();
      const last = (await store.append(halt({ id: 'after-off' }))).record;
      await until(() => b.length === 7, 'the delivery to the remaining subscriber');
      expect(b.at(-1)).toEqual(last);
      expect(a).toHaveLength(6);
      offB();
    });
  });

  describe(`KS-2.2.2 ${name}: concurrent appends form one dense chain`, () => {
    it('gives 60 concurrent appends seqs 1..60 with a valid chain', async () => {
      const store = await fresh();
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          store.append(i % 3 === 0 ? halt({ id: `c${i}`, selector: {} }) : halt({ id: `c${i}` })),
        ),
      );
      const records = await store.read();
      expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(verifyChain(records)).toEqual(records);
      for (const r of results) expect(records[r.record.seq - 1]).toEqual(r.record);
      expect(new Set(results.map((r) => r.record.id)).size).toBe(60);
    });
  });

  describe(`KS-2.2.1 ${name}: a closed store fails with KS_STORE_CLOSED`, () => {
    it('refuses append, read, head, logId and subscribe after close; close is idempotent', async () => {
      const store = await fresh();
      await store.append(halt({ id: 'a' }));
      await store.close();
      await store.close();
      const closed = { code: ErrorCode.STORE_CLOSED };
      await expect(store.append(halt({ id: 'b' }))).rejects.toMatchObject(closed);
      await expect(store.read()).rejects.toMatchObject(closed);
      await expect(store.head()).rejects.toMatchObject(closed);
      await expect(store.logId()).rejects.toMatchObject(closed);
      expect(() => store.subscribe(() => undefined)).toThrow(expect.objectContaining(closed));
    });

    it('lets appends accepted before close finish', async () => {
      const store = await fresh();
      const pending = Array.from({ length: 5 }, (_, i) => store.append(halt({ id: `late${i}` })));
      const settling = Promise.allSettled(pending);
      await store.close();
      const settled = await settling;
      // Each either completed or was refused as closed; none is left hanging or half-done.
      for (const s of settled) {
        if (s.status === 'rejected') expect(s.reason).toMatchObject(closedCode());
      }
    });
  });

  describeReopen(`KS-2.4.1 ${name}: a reopened store returns the same log`, () => {
    it('keeps every record, the head, the chain and the id index across a reopen', async () => {
      let store = await fresh();
      const before = [];
      for (let i = 0; i < 5; i++)
        before.push(
          (await store.append(halt({ id: `r${i}`, selector: { runId: `run-${i}` } }))).record,
        );
      const head = await store.head();
      store = await reopen(store);
      expect(await store.read()).toEqual(before);
      expect(await store.head()).toEqual(head);
      expect(await store.append(halt({ id: 'r2', selector: { runId: 'run-2' } }))).toEqual({
        record: before[2],
        duplicate: true,
      });
      const next = await store.append(halt({ id: 'r5' }));
      expect(next.record).toMatchObject({ seq: 6, prev: head.hash });
      store = await reopen(store);
      expect(verifyChain(await store.read())).toHaveLength(6);
    });

    it('reopens an empty log as empty', async () => {
      let store = await fresh();
      store = await reopen(store);
      expect(await store.head()).toEqual({ seq: 0, hash: GENESIS_HASH });
      expect((await store.append(halt({ id: 'first' }))).record.seq).toBe(1);
    });
  });

  describe(`KS-2.4.3 ${name}: the store answers like the in-memory oracle (differential)`, () => {
    const id = fc.constantFrom('i1', 'i2', 'i3', 'i4', 'i5', 'i6');
    const value = fc.constantFrom('a', 'b');
    const selector = fc.record(
      { tenant: value, feature: value, runId: value, capability: value },
      { requiredKeys: [] },
    );
    const flip = fc.record(
      {
        id,
        actor: fc.constantFrom('alice', 'bob'),
        action: fc.constantFrom('halt', 'resume'),
        selector,
        reason: fc.constantFrom('r1', 'r2'),
        mode: fc.constantFrom('discard', 'hold', 'drain'),
        release: fc.constantFrom('v1', 'v2'),
        source: fc.constantFrom('operator', 'drill'),
      },
      { requiredKeys: ['id', 'actor', 'action', 'selector', 'reason'] },
    );
    const broken = fc.constantFrom<unknown>(
      { id: 'i1', actor: '', action: 'halt', selector: {}, reason: 'r' },
      { id: 'i2', actor: 'a', action: 'halt', selector: { zone: 'x' }, reason: 'r' },
      { actor: 'a', action: 'halt', selector: {}, reason: '' },
    );
    const op = fc.oneof({ arbitrary: flip, weight: 6 }, { arbitrary: broken, weight: 1 });

    type Outcome = { ok: unknown; duplicate: boolean } | { error: unknown };
    const project = (r: FlipRecord): unknown => {
      if (injected) return r;
      const { at: _at, prev: _prev, hash: _hash, ...rest } = r;
      return rest;
    };
    async function run(store: FlipLogStore, input: unknown): Promise<Outcome> {
      try {
        const r = await store.append(input as FlipInput);
        return { ok: project(r.record), duplicate: r.duplicate };
      } catch (e) {
        return { error: (e as { code?: unknown }).code ?? String(e) };
      }
    }

    it('gives the same outcome, records and hashes for the same random flips', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
          const oracle = new MemoryFlipLogStore({ clock: fixedClock });
          const store = await fresh(fixedClock);
          try {
            for (const input of ops) {
              expect(await run(store, input)).toEqual(await run(oracle, input));
            }
            const [got, want] = [await store.read(), await oracle.read()];
            expect(got.map(project)).toEqual(want.map(project));
            expect(verifyChain(got)).toHaveLength(want.length);
            if (injected) expect(await store.head()).toEqual(await oracle.head());
          } finally {
            live.delete(store);
            await store.close();
          }
        }),
        { numRuns: harness.numRuns ?? 25 },
      );
    });
  });
}

function closedCode(): { code: string } {
  return { code: ErrorCode.STORE_CLOSED };
}
