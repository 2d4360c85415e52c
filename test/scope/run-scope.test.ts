import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { HaltedError, KillSwitchError, ValidationError } from '../../src/errors.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import {
  childRunId,
  currentRunScope,
  runInScope,
  runOutsideScope,
  spawnChildRun,
} from '../../src/scope/index.js';
import { BACKENDS, killSwitchBackend, type Backend } from '../guard/backends.js';

const quiet = { warn: () => undefined };
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});
afterAll(async () => {
  await OpenFeature.close();
});

function guardOn(b: Backend, ledger = new MemorySideEffectLedger()) {
  const guard = new EffectGuard({ client: b.client, ledger, logger: quiet });
  closers.push(() => guard.close());
  return { guard, ledger };
}

/** Waits until the backend's answer for a context reaches the guard. */
async function until(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('timed out');
}

const root = { tenant: 'acme', runPath: ['root-1'] };

describe('KS-4.9.1 a run scope follows the async work started inside it', () => {
  it('survives awaits and timers, nests, and ends where it ends', async () => {
    expect(currentRunScope()).toBeUndefined();
    await runInScope(root, async () => {
      expect(currentRunScope()).toMatchObject({ tenant: 'acme', runId: 'root-1' });
      await new Promise((r) => setTimeout(r, 1));
      expect(currentRunScope()?.runPath).toEqual(['root-1']);
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          expect(currentRunScope()?.runId).toBe('root-1');
          resolve();
        }, 1),
      );
      runOutsideScope(() => expect(currentRunScope()).toBeUndefined());
      runInScope({ runPath: ['other'] }, () => expect(currentRunScope()?.runId).toBe('other'));
    });
    expect(currentRunScope()).toBeUndefined();
  });

  it('refuses a malformed or empty lineage', () => {
    expect(() => runInScope({ runPath: [] }, () => 1)).toThrow(ValidationError);
    expect(() => runInScope({ runPath: ['a b'] }, () => 1)).toThrow(ValidationError);
  });
});

describe('KS-4.9.3 a child run id is derived from the parent and the step', () => {
  it('is deterministic, distinct per parent and step, and a valid lineage id', () => {
    const a = childRunId('root-1', 'research 0/α');
    expect(childRunId('root-1', 'research 0/α')).toBe(a);
    expect(childRunId('root-2', 'research 0/α')).not.toBe(a);
    expect(childRunId('root-1', 'research 1/α')).not.toBe(a);
    expect(a).toMatch(/^research-0-\.[0-9a-f]{24}$/);
    expect(() => childRunId('r', '')).toThrow(ValidationError);
    expect(() => childRunId('r', 'a\u0000')).toThrow(ValidationError);
  });
});

describe.each(BACKENDS)(
  'KS-4.9.2 everything inside a run scope carries its lineage (%s)',
  (_n, make) => {
    it('a guarded effect inherits tenant, run id and run path, and an ancestor halt refuses it', async () => {
      const b = await make();
      const { guard, ledger } = guardOn(b);
      let sent = 0;
      const lineage = await runInScope(root, () =>
        spawnChildRun(guard, 'child', async (child) => {
          await guard.run({ step: 'send', capability: 'email.send' }, async () => sent++);
          return child.lineage;
        }),
      );
      await b.halt({ runId: 'root-1' });
      // Later work of the child (e.g. resumed elsewhere from its lineage) is refused.
      await runInScope(lineage, async () => {
        await until(async () => (await guard.check({ runPath: lineage.runPath })).halted);
        await expect(
          guard.run({ step: 'send-2', capability: 'email.send' }, async () => sent++),
        ).rejects.toMatchObject({ code: 'KS_HALTED' });
      });
      expect(sent).toBe(1);
      const entries = await ledger.entries();
      const send = entries.find((e) => e.step === 'send')!;
      const childId = childRunId('root-1', 'child');
      expect(send.context).toEqual({
        tenant: 'acme',
        runId: childId,
        capability: 'email.send',
        runPath: ['root-1', childId],
      });
      expect(entries.find((e) => e.step === 'send-2')?.status).toBe('refused');
    });

    it('an effect naming another run inside a scope is refused (it would escape the tree)', async () => {
      const b = await make();
      const { guard } = guardOn(b);
      await runInScope(root, async () => {
        await expect(
          guard.run({ runId: 'elsewhere', step: 's', capability: 'c' }, async () => 1),
        ).rejects.toThrow(/names run elsewhere inside the scope of run root-1/);
        await expect(
          guard.run({ context: { tenant: 'beta' }, step: 's', capability: 'c' }, async () => 1),
        ).rejects.toThrow(ValidationError);
      });
      await expect(guard.run({ step: 's', capability: 'c' }, async () => 1)).rejects.toThrow(
        /runId: must be given outside a run scope/,
      );
    });
  },
);

describe('KS-4.9.2 retries and timers inside a scope carry the run path', () => {
  it("a halt on the root cancels a grandchild's timer and its retry sleep", async () => {
    const b = await killSwitchBackend();
    const { guard, ledger } = guardOn(b);
    const scheduler = new Scheduler({ watcher: guard.watcher, ledger, logger: quiet });
    closers.push(() => scheduler.close());
    let fired = 0;
    let attempts = 0;
    const grandchild = { tenant: 'acme', runPath: ['root-1', 'c-1', 'g-1'] };
    await runInScope(grandchild, async () => {
      const timer = scheduler.schedule({ capability: 'reminder' }, 60_000, () => fired++);
      const retry = scheduler.retry(
        { capability: 'fetch' },
        async () => {
          attempts++;
          throw new Error('flaky');
        },
        { maxAttempts: 5, backoff: { baseMs: 60_000, maxMs: 60_000, jitter: 0 } },
      );
      const retried = retry.catch((e: unknown) => e);
      expect(timer.context).toMatchObject({ tenant: 'acme', runId: 'g-1' });
      expect(timer.context.runPath).toEqual(['root-1', 'c-1', 'g-1']);
      await until(async () => attempts === 1 && scheduler.pending().retries === 1);
      await new Promise((r) => setTimeout(r, 10));
      await b.halt({ runId: 'root-1' });
      await expect(timer.done).rejects.toMatchObject({ code: 'KS_ABORTED' });
      expect(await retried).toMatchObject({ code: 'KS_ABORTED' });
    });
    expect(fired).toBe(0);
    expect(attempts).toBe(1);
    const cancelled = (await ledger.entries()).filter((e) => e.status === 'cancelled');
    expect(cancelled.length).toBe(2);
    for (const e of cancelled) expect(e.context.runPath?.[0]).toBe('root-1');
  });
});

describe('KS-4.9.4 spawning a child run is a guarded effect', () => {
  it('is refused while the parent or any ancestor is halted; fn never runs', async () => {
    const b = await killSwitchBackend();
    const { guard, ledger } = guardOn(b);
    await b.halt({ runId: 'root-1' });
    await until(async () => (await guard.check({ runId: 'root-1' })).halted);
    let ran = 0;
    const err = await runInScope(root, () => spawnChildRun(guard, 'late', () => ran++)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(HaltedError);
    expect(err).toMatchObject({ code: 'KS_HALTED' });
    expect((err as HaltedError).flip?.selector).toEqual({ runId: 'root-1' });
    expect(ran).toBe(0);
    // A grandchild spawned by a child whose grandparent is halted is refused too.
    const grand = await runInScope({ tenant: 'acme', runPath: ['root-1', 'c-1'] }, () =>
      spawnChildRun(guard, 'g', () => ran++),
    ).catch((e: unknown) => e);
    expect(grand).toMatchObject({ code: 'KS_HALTED' });
    expect(ran).toBe(0);
    // A sibling tree is untouched.
    expect(
      await runInScope({ tenant: 'acme', runPath: ['root-2'] }, () =>
        spawnChildRun(guard, 'late', (c) => c.runPath),
      ),
    ).toEqual(['root-2', childRunId('root-2', 'late')]);
    expect((await ledger.entries()).filter((e) => e.status === 'refused')).toHaveLength(0);
  });

  it('a resumed parent derives the same child; while halted it is refused even though the spawn landed before', async () => {
    const b = await killSwitchBackend();
    const ledger = new MemorySideEffectLedger();
    const { guard } = guardOn(b, ledger);
    const first = await runInScope(root, () => spawnChildRun(guard, 'c', (c) => c.runId));
    const again = await runInScope(root, () => spawnChildRun(guard, 'c', (c) => c.runId));
    expect(again).toBe(first);
    const spawns = (await ledger.entries()).filter((e) => e.step === 'spawn:c');
    expect(spawns).toHaveLength(1);
    expect(spawns[0]!.landed).toBe(true);
    expect(spawns[0]!.capability).toBe('run.spawn');
    await b.halt({ runId: 'root-1' });
    await until(async () => (await guard.check({ runId: 'root-1' })).halted);
    await expect(
      runInScope(root, () => spawnChildRun(guard, 'c', (c) => c.runId)),
    ).rejects.toMatchObject({ code: 'KS_HALTED' });
  });

  it('a halt while the child runs aborts its signal and frees the caller at once', async () => {
    const b = await killSwitchBackend();
    const { guard } = guardOn(b);
    let signal: AbortSignal | undefined;
    const p = runInScope(root, () =>
      spawnChildRun(guard, 'slow', (c) => {
        signal = c.signal;
        return new Promise(() => undefined); // ignores its signal, never settles
      }),
    );
    await until(async () => signal !== undefined);
    await b.halt({ runId: 'root-1' });
    await expect(p).rejects.toMatchObject({ code: 'KS_ABORTED' });
    expect(signal?.aborted).toBe(true);
  });

  it('refuses one child twice at once, and a spawn outside any scope', async () => {
    const b = await killSwitchBackend();
    const { guard } = guardOn(b);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = runInScope(root, () => spawnChildRun(guard, 'x', () => gate));
    await new Promise((r) => setTimeout(r, 20));
    const second = await runInScope(root, () => spawnChildRun(guard, 'x', () => 1)).catch(
      (e: unknown) => e,
    );
    expect(second).toBeInstanceOf(KillSwitchError);
    expect(second).toMatchObject({ code: 'KS_RUN_CONFLICT' });
    release();
    await first;
    await expect(spawnChildRun(guard, 'x', () => 1)).rejects.toThrow(/inside a run scope/);
  });
});
