import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileQueueJournal } from '../../src/queue/file-queue-journal.js';
import { pendingDiscards, type DiscardedRecord } from '../../src/queue/queue-journal.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-journal-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const discard = (
  taskId: string,
  discardId: string,
  extra: Partial<DiscardedRecord> = {},
): DiscardedRecord => ({
  type: 'discarded',
  discardId,
  queue: 'q',
  taskId,
  name: 'task',
  payload: { taskId },
  context: { tenant: 'acme' },
  enqueuedAt: '2026-01-01T00:00:00.000Z',
  haltSeq: 1,
  mode: 'discard',
  cause: 'halted',
  at: '2026-01-01T00:00:01.000Z',
  ...extra,
});

describe('KS-7.2.3 the file journal is durable JSON lines: a torn tail is cut, a broken middle fails closed', () => {
  it('reads back what it appended, across instances', async () => {
    const path = join(dir, 'sub', 'j.jsonl');
    const j = new FileQueueJournal({ path });
    await j.append(discard('1', 'd1'));
    await j.append({
      type: 'requeued',
      queue: 'q',
      taskId: '1',
      newTaskId: '1-r',
      at: '2026-01-01T00:00:02.000Z',
    });
    await j.close();
    const k = new FileQueueJournal({ path });
    expect((await k.read()).map((r) => r.type)).toEqual(['discarded', 'requeued']);
    await k.close();
  });

  it('cuts a torn last line on open, so the next record is not glued onto it', async () => {
    const path = join(dir, 'j.jsonl');
    await writeFile(path, `${JSON.stringify(discard('1', 'd1'))}\n{"type":"disc`);
    const j = new FileQueueJournal({ path });
    await j.append(discard('2', 'd2'));
    expect((await j.read()).map((r) => r.type === 'discarded' && r.taskId)).toEqual(['1', '2']);
    expect((await readFile(path, 'utf8')).split('\n')).toHaveLength(3);
    await j.close();
  });

  it('refuses a corrupt line before the last with KS_JOURNAL_CORRUPT', async () => {
    const path = join(dir, 'j.jsonl');
    await writeFile(path, `not json\n${JSON.stringify(discard('1', 'd1'))}\n`);
    const j = new FileQueueJournal({ path });
    await expect(j.read()).rejects.toMatchObject({ code: 'KS_JOURNAL_CORRUPT' });
    await expect(j.append(discard('2', 'd2'))).rejects.toMatchObject({
      code: 'KS_JOURNAL_CORRUPT',
    });
  });

  it('refuses a missing path at construction', () => {
    expect(() => new FileQueueJournal({ path: '' })).toThrow(/option path/);
  });
});

describe('KS-7.2.2 folding the journal: a void cancels only the discard it names; a requeue closes the task', () => {
  it('keeps a task discarded by a second discarder after the first discard was voided', () => {
    const r = pendingDiscards([
      discard('1', 'd1'),
      discard('1', 'd2'),
      {
        type: 'void',
        discardId: 'd1',
        queue: 'q',
        taskId: '1',
        reason: 'not removed: taken',
        at: 'x',
      },
      discard('2', 'd3'),
      {
        type: 'void',
        discardId: 'd3',
        queue: 'q',
        taskId: '2',
        reason: 'not removed: ran',
        at: 'x',
      },
      discard('3', 'd4', { haltSeq: 2 }),
      { type: 'requeued', queue: 'q', taskId: '3', newTaskId: '3-r', at: 'x' },
    ]);
    expect(r.map((d) => d.discardId)).toEqual(['d2']);
  });

  it('filters by selector and halt seq', () => {
    const recs = [
      discard('1', 'a'),
      discard('2', 'b', { context: { tenant: 'beta' }, haltSeq: 3 }),
    ];
    expect(pendingDiscards(recs, { selector: { tenant: 'beta' } }).map((d) => d.taskId)).toEqual([
      '2',
    ]);
    expect(pendingDiscards(recs, { haltSeq: 1 }).map((d) => d.taskId)).toEqual(['1']);
  });
});
