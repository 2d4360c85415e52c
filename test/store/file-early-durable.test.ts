/**
 * KS-2.4.11: a write whose halts are told early (KS-2.4.9) starts its fdatasync before the
 * pending listeners are told, so the disk's wait overlaps the streaming instead of following it;
 * the append still resolves only once durable (KS-2.4.1), and a failed fdatasync still fails the
 * append and tells the listeners (KS-2.4.10).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { ErrorCode } from '../../src/errors.js';
import { openLogFile } from '../fixtures/log-file-handle.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A store whose handle logs each fdatasync into `events` and lets `datasync` decide its end. */
async function storeLogging(
  events: string[],
  datasync: (real: () => Promise<void>) => Promise<void> = (real) => real(),
): Promise<FileFlipLogStore> {
  const dir = await mkdtemp(join(tmpdir(), 'ks-file-early-durable-'));
  dirs.push(dir);
  const store = new FileFlipLogStore({
    path: join(dir, 'flips.jsonl'),
    logger: { warn: () => undefined },
    openFile: (p) =>
      openLogFile(p, (real) => {
        events.push('fdatasync started');
        return datasync(real).then(() => {
          events.push('fdatasync done');
        });
      }),
  });
  await store.open();
  store.subscribePending({
    pending: (records) => events.push(`told ${records.map((r) => r.seq).join(',')}`),
    failed: (err) => events.push(`failed ${err.message.slice(0, 20)}`),
  });
  return store;
}

const halt = {
  actor: 'oncall',
  action: 'halt',
  selector: { tenant: 'a' },
  reason: 'INC-1',
} as const;

describe('KS-2.4.11 the fdatasync of a write told early starts before the listeners are told', () => {
  it('starts the fdatasync, then tells the pending listeners, then resolves once durable', async () => {
    const events: string[] = [];
    const store = await storeLogging(events);
    const { record } = await store.append(halt);
    events.push(`resolved ${record.seq}`);
    expect(events).toEqual(['fdatasync started', 'told 1', 'fdatasync done', 'resolved 1']);
    await store.close();
  });

  it('a failed fdatasync still fails the append after the listeners were told, and tells them', async () => {
    const events: string[] = [];
    const store = await storeLogging(events, () => Promise.reject(new Error('EIO: disk gone')));
    const err = await store.append(halt).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    expect(events.slice(0, 2)).toEqual(['fdatasync started', 'told 1']);
    expect(events.some((e) => e.startsWith('failed '))).toBe(true);
    await store.close();
  });
});
