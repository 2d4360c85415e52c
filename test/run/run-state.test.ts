import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { effectKey, MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import {
  DurableRunner,
  foldRunRecords,
  MemoryRunJournal,
  type RunJournal,
  type RunRecord,
} from '../../src/run/index.js';

const closers: { close(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c.close();
});
afterAll(async () => {
  await OpenFeature.close();
});

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const started = (runId: string, s = 0, workerId = 'w1'): RunRecord => ({
  type: 'started',
  runId,
  at: at(s),
  workerId,
  context: { tenant: 'acme' },
  input: { n: 1 },
});

describe('KS-10.1.5 a run state is the fold of its records', () => {
  it('started or resumed and not ended is running; each ended status is the run status', () => {
    const statuses = ['completed', 'halted', 'refused', 'in-doubt', 'failed'] as const;
    const records: RunRecord[] = [started('open'), started('died'), started('died-again')];
    records.push({
      type: 'ended',
      runId: 'died-again',
      at: at(1),
      workerId: 'w1',
      status: 'halted',
    });
    // Resumed after a halt and never ended: its worker died, the run is running again.
    records.push({ type: 'resumed', runId: 'died-again', at: at(2), workerId: 'w2' });
    for (const s of statuses) {
      records.push(started(s));
      records.push({ type: 'ended', runId: s, at: at(3), workerId: 'w1', status: s });
    }
    const runs = foldRunRecords(records);
    expect(runs.get('open')?.status).toBe('running');
    expect(runs.get('died')?.status).toBe('running');
    expect(runs.get('died-again')).toMatchObject({
      status: 'running',
      executions: 2,
      workers: ['w1', 'w2'],
      lastEnd: { status: 'halted' },
    });
    for (const s of statuses) expect(runs.get(s)?.status, s).toBe(s);
  });

  it('carries the landed steps with their results, the executions and the workers', () => {
    const runs = foldRunRecords([
      started('r'),
      { type: 'step', runId: 'r', at: at(1), workerId: 'w1', step: 'a', key: 'r/a', result: 1 },
      { type: 'ended', runId: 'r', at: at(2), workerId: 'w1', status: 'failed', step: 'b' },
      { type: 'resumed', runId: 'r', at: at(3), workerId: 'w2' },
      { type: 'step', runId: 'r', at: at(4), workerId: 'w2', step: 'b', key: 'r/b' },
      { type: 'resumed', runId: 'r', at: at(5), workerId: 'w1' },
      { type: 'ended', runId: 'r', at: at(6), workerId: 'w1', status: 'completed', output: 'ok' },
      // A record of a run never started is not a run.
      { type: 'step', runId: 'ghost', at: at(7), workerId: 'w1', step: 'a', key: 'ghost/a' },
    ]);
    expect([...runs.keys()]).toEqual(['r']);
    expect(runs.get('r')).toEqual({
      runId: 'r',
      context: { tenant: 'acme' },
      input: { n: 1 },
      status: 'completed',
      steps: {
        a: { key: 'r/a', result: 1, at: at(1), workerId: 'w1' },
        b: { key: 'r/b', at: at(4), workerId: 'w2' },
      },
      executions: 3,
      workers: ['w1', 'w2'],
      lastEnd: {
        type: 'ended',
        runId: 'r',
        at: at(6),
        workerId: 'w1',
        status: 'completed',
        output: 'ok',
      },
      output: 'ok',
      startedAt: at(0),
      updatedAt: at(6),
    });
  });
});

describe('KS-10.2.1 each step goes through the EffectGuard under effectKey(runId, step), into the ledger, then the journal', () => {
  it('records each result (nothing too) in the ledger before the journal hears of it; a halted step is refused by the guard', async () => {
    const store = new MemoryFlipLogStore();
    await store.open();
    const name = `run-state-${process.pid}`;
    await OpenFeature.setProviderAndWait(name, KillSwitchProvider.fromStore(store));
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client: OpenFeature.getClient(name), ledger });
    closers.push(guard);
    const inner = new MemoryRunJournal();
    // The ledger as the journal sees it when each step record arrives.
    const seenByJournal: Record<string, string | undefined> = {};
    const journal: RunJournal = {
      append: async (r) => {
        if (r.type === 'step') {
          const [entry] = await ledger.entries({ key: r.key });
          seenByJournal[r.step] = entry?.status;
        }
        return inner.append(r);
      },
      run: (id) => inner.run(id),
      runs: () => inner.runs(),
      records: (id) => inner.records(id),
      close: () => inner.close(),
    };
    const runner = new DurableRunner({ guard, journal, workerId: 'w1' });
    const keys: string[] = [];
    await expect(
      runner.start({ runId: 'r1', context: { tenant: 'acme' } }, async (run) => {
        const a = await run.step('a', { capability: 'crm.write' }, async (_s, { key }) => {
          keys.push(key);
          return 'sent';
        });
        await run.step('b', { capability: 'crm.write' }, async (_s, { key }) => {
          keys.push(key);
        });
        await store.append({
          actor: 't',
          action: 'halt',
          selector: { capability: 'mail.send' },
          reason: 'x',
        });
        await run.step('c', { capability: 'mail.send' }, async (_s, { key }) => {
          keys.push(key);
        });
        return a;
      }),
    ).rejects.toMatchObject({ code: 'KS_HALTED' });

    expect(keys).toEqual([effectKey('r1', 'a'), effectKey('r1', 'b')]);
    const entries = new Map((await ledger.entries({ runId: 'r1' })).map((e) => [e.step, e]));
    expect(entries.get('a')).toMatchObject({ key: effectKey('r1', 'a'), status: 'landed' });
    expect(entries.get('a')?.history.map((h) => h.status)).toEqual(['intent', 'landed']);
    // A step that returned nothing has a recorded result too (so a resume replays it).
    expect(entries.get('b')).toMatchObject({ status: 'landed' });
    expect(entries.get('b')?.result).not.toBeUndefined();
    expect(entries.get('c')).toMatchObject({ key: effectKey('r1', 'c'), status: 'refused' });
    // The journal heard of each landed step after the ledger had it landed; never of c.
    expect(seenByJournal).toEqual({ a: 'landed', b: 'landed' });
    const steps = (await inner.records('r1')).filter((r) => r.type === 'step');
    expect(steps).toMatchObject([
      { step: 'a', key: effectKey('r1', 'a'), result: 'sent' },
      { step: 'b', key: effectKey('r1', 'b') },
    ]);
    expect(await inner.run('r1')).toMatchObject({ status: 'halted', lastEnd: { step: 'c' } });
  });
});
