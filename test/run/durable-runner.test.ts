import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { FileSideEffectLedger, MemorySideEffectLedger } from '../../src/ledger/index.js';
import type { Selector } from '../../src/model/selector.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import {
  DurableRunner,
  FileRunJournal,
  MemoryRunJournal,
  RunJournalCorruptError,
  type RunFunction,
  type RunJournal,
} from '../../src/run/index.js';

const quiet = { warn: () => undefined };
let dir = '';
let domain = 0;
const closers: { close(): Promise<void> | void }[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-run-'));
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c.close();
  await rm(dir, { recursive: true, force: true });
});
afterAll(async () => {
  await OpenFeature.close();
});

/** A kill switch over an in-memory flip log, bound to a fresh OpenFeature domain. */
async function killSwitch() {
  const store = new MemoryFlipLogStore();
  await store.open();
  const provider = KillSwitchProvider.fromStore(store);
  const name = `run-${process.pid}-${++domain}`;
  await OpenFeature.setProviderAndWait(name, provider);
  const client = OpenFeature.getClient(name);
  return {
    client,
    halt: (selector: Selector) =>
      store.append({ actor: 't', action: 'halt', selector, reason: 'test' }),
    resume: (selector: Selector) =>
      store.append({ actor: 't', action: 'resume', selector, reason: 'fixed' }),
  };
}

/** A recorder of dispatched effects: the "outside world". */
function world() {
  const sent: string[] = [];
  return {
    sent,
    effect:
      (name: string) =>
      async (_signal: AbortSignal, { key }: { key: string }) => {
        sent.push(key);
        return `${name}-ok`;
      },
  };
}

describe('KS-10.2.2 an execution checks the halt before anything of the run executes', () => {
  it('a halted run is refused with KS_HALTED naming the flip, the run function is not called, and the refusal is journaled', async () => {
    const ks = await killSwitch();
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client: ks.client, ledger });
    closers.push(guard);
    const journal = new MemoryRunJournal();
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    await ks.halt({ tenant: 'acme' });
    let called = false;
    const err = await runner
      .start({ runId: 'r1', context: { tenant: 'acme' } }, async () => {
        called = true;
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq: 1 } });
    expect(called).toBe(false);
    expect(await ledger.entries()).toEqual([]);
    const state = await journal.run('r1');
    expect(state?.status).toBe('refused');
    expect(state?.lastEnd).toMatchObject({ status: 'refused', flipSeq: 1, code: 'KS_HALTED' });
  });
});

describe('KS-10.2.3 a resumed run continues from the journal and repeats no effect', () => {
  const steps: RunFunction<{ n: number }, string> = async (run) => {
    const a = await run.step('a', { capability: 'cap.a' }, (s, i) => w.effect('a')(s, i));
    const b = await run.step('b', { capability: 'cap.b' }, (s, i) => w.effect('b')(s, i));
    await gate.promise;
    const c = await run.step('c', { capability: 'cap.c' }, (s, i) => w.effect('c')(s, i));
    return `${a}+${b}+${c}+${run.input.n}`;
  };
  let w = world();
  let gate = deferred();

  it('on another runner with a new journal instance on the same file: a and b are not dispatched again', async () => {
    w = world();
    gate = deferred();
    const ks = await killSwitch();
    const ledgerPath = join(dir, 'effects.jsonl');
    const path = join(dir, 'runs.jsonl');
    const l1 = new FileSideEffectLedger({ path: ledgerPath, logger: quiet });
    const g1 = new EffectGuard({ client: ks.client, ledger: l1 });
    const j1 = new FileRunJournal({ path, logger: quiet });
    const first = new DurableRunner({ guard: g1, journal: j1, workerId: 'w1' });
    // The first worker never gets past its "think" after b: it dies there.
    void first
      .start({ runId: 'r1', context: { tenant: 'acme' }, input: { n: 7 } }, (run) =>
        steps({
          ...run,
          step: (n, o, b) => (n === 'c' ? new Promise(() => {}) : run.step(n, o, b)),
        }),
      )
      .catch(() => undefined);
    await vi_waitFor(() => w.sent.length === 2);
    await new Promise((r) => setTimeout(r, 20));
    // The first worker "dies": its files are released, its run function never finishes.
    await g1.close();
    await j1.close();
    await l1.close();
    expect((await new FileRunJournal({ path, logger: quiet }).run('r1'))?.status).toBe('running');

    const l2 = new FileSideEffectLedger({ path: ledgerPath, logger: quiet });
    const g2 = new EffectGuard({ client: ks.client, ledger: l2 });
    const j2 = new FileRunJournal({ path, logger: quiet });
    closers.push(l2, j2, g2);
    const second = new DurableRunner({ guard: g2, journal: j2, workerId: 'w2' });
    gate.resolve();
    await expect(second.resume('r1', steps)).resolves.toBe('a-ok+b-ok+c-ok+7');
    expect(w.sent).toEqual(['r1/a', 'r1/b', 'r1/c']);
    const state = await j2.run('r1');
    expect(state).toMatchObject({ status: 'completed', executions: 2, workers: ['w1', 'w2'] });
    expect(Object.keys(state!.steps)).toEqual(['a', 'b', 'c']);
    // A completed run is not executed again.
    let again = false;
    await expect(
      second.resume('r1', async () => {
        again = true;
        return 'x';
      }),
    ).resolves.toBe('a-ok+b-ok+c-ok+7');
    expect(again).toBe(false);
  });

  it('a step that landed in the ledger but not in the journal (death between the two) replays from the ledger', async () => {
    const ks = await killSwitch();
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client: ks.client, ledger });
    closers.push(guard);
    const journal = new MemoryRunJournal();
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    await journal.append({
      type: 'started',
      runId: 'r2',
      at: new Date().toISOString(),
      workerId: 'w0',
      context: {},
    });
    // The dead worker's effect landed (ledger) with its result, but the journal never heard.
    await guard.run(
      {
        context: {},
        runId: 'r2',
        step: 'a',
        capability: 'cap.a',
        result: { encode: (v: string) => ({ v, u: false }), decode: (s) => (s as { v: string }).v },
      },
      async () => 'from-before',
    );
    let dispatched = 0;
    const out = await runner.resume('r2', async (run) =>
      run.step('a', { capability: 'cap.a' }, async () => {
        dispatched++;
        return 'again';
      }),
    );
    expect(out).toBe('from-before');
    expect(dispatched).toBe(0);
    const step = (await journal.records('r2')).find((r) => r.type === 'step');
    expect(step).toMatchObject({ step: 'a', fromLedger: true, result: 'from-before' });
  });

  it('a step that returned nothing replays as undefined', async () => {
    const ks = await killSwitch();
    const guard = new EffectGuard({ client: ks.client, ledger: new MemorySideEffectLedger() });
    closers.push(guard);
    const journal = new MemoryRunJournal();
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    let n = 0;
    const fn: RunFunction<unknown, unknown> = async (run) =>
      run.step('a', { capability: 'c' }, async () => {
        n++;
      });
    await runner
      .start({ runId: 'r3' }, async (run) => {
        await fn(run);
        throw new Error('crash after a');
      })
      .catch(() => undefined);
    const other = new DurableRunner({ guard, journal: journal, workerId: 'w2' });
    await expect(other.resume('r3', fn)).resolves.toBeUndefined();
    expect(n).toBe(1);
  });
});

describe('KS-10.2.4 a step left in doubt stops the run unless it is idempotent', () => {
  it('records in-doubt and dispatches nothing; an idempotent step is sent again with the same key', async () => {
    const ks = await killSwitch();
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client: ks.client, ledger });
    closers.push(guard);
    const journal = new MemoryRunJournal();
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    await journal.append({
      type: 'started',
      runId: 'r4',
      at: new Date().toISOString(),
      workerId: 'w0',
      context: {},
    });
    // The dead worker wrote the intent and died while the effect was in flight.
    await ledger.append({
      key: 'r4/pay',
      status: 'intent',
      at: new Date().toISOString(),
      runId: 'r4',
      step: 'pay',
      capability: 'payments.charge',
      context: { runId: 'r4', capability: 'payments.charge' },
      attempt: 1,
    });
    const keys: string[] = [];
    const fn =
      (idempotent: boolean): RunFunction<unknown, string> =>
      async (run) =>
        run.step('pay', { capability: 'payments.charge', idempotent }, async (_s, { key }) => {
          keys.push(key);
          return 'paid';
        });
    await expect(runner.resume('r4', fn(false))).rejects.toMatchObject({
      code: 'KS_DUPLICATE_EFFECT',
      state: 'in-doubt',
    });
    expect(keys).toEqual([]);
    expect((await journal.run('r4'))?.lastEnd).toMatchObject({ status: 'in-doubt', step: 'pay' });
    await expect(runner.resume('r4', fn(true))).resolves.toBe('paid');
    expect(keys).toEqual(['r4/pay']);
  });
});

describe('KS-10.2.5 a halt during a run stops it as halted; after the resume it continues', () => {
  it('journals halted with the flip, then a later execution completes without repeating', async () => {
    const ks = await killSwitch();
    const guard = new EffectGuard({ client: ks.client, ledger: new MemorySideEffectLedger() });
    closers.push(guard);
    const journal = new MemoryRunJournal();
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    const w2 = world();
    let halted = false;
    const fn: RunFunction<unknown, string> = async (run) => {
      await run.step('a', { capability: 'x' }, w2.effect('a'));
      if (!halted) {
        halted = true;
        await ks.halt({ runId: run.runId });
      }
      await run.step('b', { capability: 'x' }, w2.effect('b'));
      return 'done';
    };
    await expect(runner.start({ runId: 'r5' }, fn)).rejects.toMatchObject({ code: 'KS_HALTED' });
    expect((await journal.run('r5'))?.lastEnd).toMatchObject({
      status: 'halted',
      step: 'b',
      flipSeq: 1,
    });
    await expect(runner.resume('r5', fn)).rejects.toMatchObject({ code: 'KS_HALTED' });
    expect((await journal.run('r5'))?.status).toBe('refused');
    await ks.resume({ runId: 'r5' });
    await expect(runner.resume('r5', fn)).resolves.toBe('done');
    expect(w2.sent).toEqual(['r5/a', 'r5/b']);
  });
});

describe('KS-10.2.6 run and step names are checked', () => {
  it('refuses a step name used twice in one execution, a second start, and an unknown resume', async () => {
    const ks = await killSwitch();
    const guard = new EffectGuard({ client: ks.client, ledger: new MemorySideEffectLedger() });
    closers.push(guard);
    const journal = new MemoryRunJournal();
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    await expect(
      runner.start({ runId: 'r6' }, async (run) => {
        await run.step('a', { capability: 'x' }, async () => 1);
        await run.step('a', { capability: 'x' }, async () => 2);
      }),
    ).rejects.toMatchObject({ code: 'KS_RUN_CONFLICT' });
    await expect(runner.start({ runId: 'r6' }, async () => 1)).rejects.toMatchObject({
      code: 'KS_RUN_CONFLICT',
    });
    await expect(runner.resume('nope', async () => 1)).rejects.toMatchObject({
      code: 'KS_RUN_CONFLICT',
    });
    expect(() => new DurableRunner({ guard, journal, workerId: '' })).toThrow(/workerId/);
  });
});

describe('KS-10.1 the file run journal', () => {
  async function journalAt(path: string): Promise<RunJournal> {
    const j = new FileRunJournal({ path, logger: quiet });
    closers.push(j);
    return j;
  }
  const rec = (runId: string) => ({
    type: 'started' as const,
    runId,
    at: new Date().toISOString(),
    workerId: 'w',
    context: { tenant: 't' },
    input: { x: 1 },
  });

  it('KS-10.1.1 writes one JSON line per record that a new instance folds to the same state', async () => {
    const path = join(dir, 'runs.jsonl');
    const j = new FileRunJournal({ path, logger: quiet });
    await j.append(rec('r1'));
    await j.append({
      type: 'step',
      runId: 'r1',
      at: new Date().toISOString(),
      workerId: 'w',
      step: 's',
      key: 'r1/s',
      result: 3,
    });
    const before = await j.run('r1');
    await j.close();
    expect((await readFile(path, 'utf8')).trim().split('\n')).toHaveLength(2);
    expect(await (await journalAt(path)).run('r1')).toEqual(before);
  });

  it('KS-10.1.2 refuses a bad record listing every issue, and writes nothing', async () => {
    const path = join(dir, 'runs.jsonl');
    const j = await journalAt(path);
    const err = await j
      .append({ ...rec('r1'), at: 'yesterday', workerId: '' } as never)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KS_INVALID_INPUT' });
    expect(await j.records()).toEqual([]);
  });

  it('KS-10.1.3 a torn last line is ignored by readers and cut by the writer; a bad line before it refuses the open', async () => {
    const path = join(dir, 'runs.jsonl');
    const j = new FileRunJournal({ path, logger: quiet });
    await j.append(rec('r1'));
    await j.close();
    await appendFile(path, '{"type":"resumed","runId":"r1"');
    const warnings: string[] = [];
    const j2 = new FileRunJournal({ path, logger: { warn: (m) => warnings.push(m) } });
    closers.push(j2);
    expect((await j2.runs()).map((r) => r.runId)).toEqual(['r1']);
    await j2.append(rec('r2'));
    expect(warnings.join()).toMatch(/torn last line/);
    expect((await readFile(path, 'utf8')).trim().split('\n')).toHaveLength(2);
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, `not json\n${JSON.stringify(rec('r1'))}\n`);
    await expect(new FileRunJournal({ path: bad, logger: quiet }).open()).rejects.toBeInstanceOf(
      RunJournalCorruptError,
    );
  });

  it('KS-10.1.4 a second live writer on the same file is refused', async () => {
    const path = join(dir, 'runs.jsonl');
    const a = await journalAt(path);
    await a.append(rec('r1'));
    const b = await journalAt(path);
    await expect(b.append(rec('r2'))).rejects.toMatchObject({ code: 'KS_STORE_UNAVAILABLE' });
  });

  it('KS-10.1.6 bad options fail at construction', () => {
    expect(() => new FileRunJournal({ path: '' })).toThrow(/option path/);
    expect(() => new FileRunJournal({ path: 'x', fsync: 'yes' as never })).toThrow(/option fsync/);
  });
});

async function vi_waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
