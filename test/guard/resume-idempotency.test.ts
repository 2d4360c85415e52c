import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DuplicateEffectError } from '../../src/guard/duplicate-effect-error.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import { FileSideEffectLedger } from '../../src/ledger/index.js';
import { deferred, inMemoryBackend, type Backend } from './backends.js';

const quiet = { warn: () => undefined };
let dir = '';
let path = '';
const open: { close(): Promise<void> }[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-guard-'));
  path = join(dir, 'effects.jsonl');
});
afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c.close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});
afterAll(async () => {
  await OpenFeature.close();
});

/** A worker: a guard on a fresh instance of the ledger file. */
async function worker(b: Backend) {
  const ledger = new FileSideEffectLedger({ path, logger: quiet });
  await ledger.open();
  const guard = new EffectGuard({ client: b.client, ledger, logger: quiet });
  open.push(ledger, guard);
  return { ledger, guard };
}
const step = (s: string, extra: Partial<GuardedEffect<string>> = {}): GuardedEffect<string> => ({
  context: { tenant: 'acme' },
  runId: 'run-7',
  step: s,
  capability: 'payments.refund',
  ...extra,
});
const codec = { encode: (v: string) => ({ v }), decode: (s: unknown) => (s as { v: string }).v };

describe('KS-4.3 a resumed run repeats no effect (a new guard reading the same ledger file)', () => {
  it('replays landed, refuses in-doubt, retries failed, and sees a halt before its first effect', async () => {
    const b = await inMemoryBackend();
    const first = await worker(b);
    const calls: string[] = [];
    const body = (name: string) => async () => {
      calls.push(name);
      return `${name}-done`;
    };
    await first.guard.run(step('a', { result: codec }), body('a'));
    await first.guard.run(step('b'), body('b'));
    await expect(
      first.guard.run(step('c'), async () => {
        throw new Error('503');
      }),
    ).rejects.toThrow('503');
    const started = deferred();
    void first.guard
      .run(step('d'), () => {
        started.resolve();
        return new Promise<string>(() => undefined); // the worker "crashes" while d runs
      })
      .catch(() => undefined); // the old worker's guard still watches: the halt below aborts it
    await started.promise;
    await first.ledger.close();

    const second = await worker(b);
    calls.length = 0;
    // KS-4.3.1 landed with a recorded result: the result comes back, nothing is dispatched.
    await expect(second.guard.run(step('a', { result: codec }), body('a'))).resolves.toBe('a-done');
    // KS-4.3.1 landed without a codec: a typed refusal, nothing is dispatched.
    const dup = await second.guard.run(step('b'), body('b')).catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(DuplicateEffectError);
    expect(dup).toMatchObject({ code: 'KS_DUPLICATE_EFFECT', state: 'landed' });
    // KS-4.3.2 in doubt (intent, no outcome): refused unless the effect is idempotent downstream.
    await expect(second.guard.run(step('d'), body('d'))).rejects.toMatchObject({
      state: 'in-doubt',
    });
    expect(calls).toEqual([]);
    // KS-4.3.4 failed: dispatched again under the same key, attempt 2.
    let attempt = 0;
    await second.guard.run(step('c'), async (_s, info) => {
      attempt = info.attempt;
      expect(info.key).toBe('run-7/c');
      return 'c-done';
    });
    expect(attempt).toBe(2);
    await second.guard.run(step('d', { idempotent: true }), body('d'));
    expect(calls).toEqual(['d']);
    const entries = await second.ledger.entries({ runId: 'run-7' });
    expect(entries.map((e) => [e.key, e.status, e.attempts])).toEqual([
      ['run-7/a', 'landed', 1],
      ['run-7/b', 'landed', 1],
      ['run-7/c', 'landed', 2],
      ['run-7/d', 'landed', 2],
    ]);
    // KS-4.3.5 the halt is durable state; a third worker sees it before its first effect.
    await b.halt({ runId: 'run-7' });
    const third = await worker(b);
    await expect(third.guard.run(step('e'), body('e'))).rejects.toMatchObject({
      code: 'KS_HALTED',
    });
    expect(calls).toEqual(['d']);
  });

  it('KS-4.3.3 refuses the same key twice at once in one guard', async () => {
    const b = await inMemoryBackend();
    const { guard } = await worker(b);
    const gate = deferred<string>();
    const one = guard.run(step('x'), () => gate.promise);
    await expect(guard.run(step('x'), async () => 'twice')).rejects.toMatchObject({
      state: 'in-flight',
    });
    gate.resolve('once');
    await expect(one).resolves.toBe('once');
  });

  it('KS-4.2.2 the intent is on disk before the body runs', async () => {
    const b = await inMemoryBackend();
    const { guard } = await worker(b);
    await guard.run(step('y'), async () => {
      const reader = new FileSideEffectLedger({ path, logger: quiet });
      const [e] = await reader.entries({ key: 'run-7/y' });
      await reader.close();
      expect(e?.status).toBe('intent');
      return 'ok';
    });
  });
});
