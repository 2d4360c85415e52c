/**
 * KS-17.7.5: the acknowledged-head file is written after the fsync that made the records durable,
 * off the acknowledgement path: an append's caller (the flip's answer) runs before the head
 * file's write starts, and close still waits for it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { FileFlipLogStore, readHeadFile } from '../../providers/file/index.js';
import type * as HeadFile from '../../providers/file/head-file.js';

const order: string[] = [];
vi.mock('../../providers/file/head-file.js', async (importOriginal) => {
  const real = await importOriginal<typeof HeadFile>();
  return {
    ...real,
    writeHeadFile: (...args: Parameters<typeof real.writeHeadFile>) => {
      order.push(`head file written at seq ${args[1].seq}`);
      return real.writeHeadFile(...args);
    },
  };
});

const root = await mkdtemp(join(tmpdir(), 'ks-file-head-'));
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('KS-17.7.5 the head file is written off the acknowledgement path', () => {
  it("an append's caller runs before the head file's write starts; close waits for the write", async () => {
    const store = new FileFlipLogStore({
      path: join(root, 'flips.jsonl'),
      logger: { warn: () => {} },
    });
    await store.open();
    await store
      .append({ actor: 'oncall', action: 'halt', selector: { tenant: 'acme' }, reason: 'INC-1' })
      .then(({ record }) => order.push(`caller resumed at seq ${record.seq}`));
    await store.close();
    expect(order).toEqual(['caller resumed at seq 1', 'head file written at seq 1']);
    expect(await readHeadFile(store.path)).toMatchObject({ seq: 1 });
  });
});
