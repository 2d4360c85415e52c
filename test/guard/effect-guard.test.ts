import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OpenFeature } from '@openfeature/server-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { HaltedError } from '../../src/errors.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { BACKENDS, deferred, type Backend } from './backends.js';

const quiet = { warn: () => undefined };
const guards: EffectGuard[] = [];
function guardOn(b: Backend, ledger = new MemorySideEffectLedger()) {
  const g = new EffectGuard({ client: b.client, ledger, logger: quiet });
  guards.push(g);
  return { guard: g, ledger };
}
function effect(step: string, extra: Partial<GuardedEffect> = {}): GuardedEffect {
  return { context: { tenant: 'acme' }, runId: 'run-1', step, capability: 'email.send', ...extra };
}

afterEach(async () => {
  for (const g of guards.splice(0)) await g.close();
});
afterAll(async () => {
  await OpenFeature.close();
});

describe.each(BACKENDS)('KS-4.1 / KS-4.2 the effect guard through %s', (_name, make) => {
  describe('KS-4.1.1 a halted context refuses the effect before dispatch', () => {
    it('rejects with KS_HALTED, dispatches nothing, and records refused', async () => {
      const b = await make();
      const { guard, ledger } = guardOn(b);
      await b.halt({ tenant: 'acme' });
      let calls = 0;
      const err = await guard
        .run(effect('send'), async () => {
          calls += 1;
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_HALTED', haltCause: 'halted' });
      expect(calls).toBe(0);
      const [entry] = await ledger.entries();
      expect(entry?.status).toBe('refused');
      expect(entry?.intent).toBeUndefined();
      expect(entry?.history).toHaveLength(1);
    });

    it('lets an effect of another tenant through and records intent then landed', async () => {
      const b = await make();
      const { guard, ledger } = guardOn(b);
      await b.halt({ tenant: 'acme' });
      const out = await guard.run(effect('send', { context: { tenant: 'other' } }), async () => 42);
      expect(out).toBe(42);
      const [entry] = await ledger.entries();
      expect(entry?.history.map((e) => e.status)).toEqual(['intent', 'landed']);
      expect(entry?.context).toEqual({ tenant: 'other', runId: 'run-1', capability: 'email.send' });
    });

    it('refuses again after a resume of another selector, and runs after the matching resume', async () => {
      const b = await make();
      const { guard } = guardOn(b);
      await b.halt({ capability: 'email.send' });
      await b.resume({ tenant: 'acme' });
      await expect(guard.run(effect('a'), async () => 1)).rejects.toMatchObject({
        code: 'KS_HALTED',
      });
      await b.resume({ capability: 'email.send' });
      await expect(guard.run(effect('b'), async () => 2)).resolves.toBe(2);
    });
  });

  describe('KS-4.2.4 a halt mid-flight frees the caller at once, even when the body ignores the signal', () => {
    it('KS-4.2.6 rejects run with KS_ABORTED while the body still runs; the ledger later shows landed-after-halt, with how many ms after', async () => {
      const b = await make();
      const { guard, ledger } = guardOn(b);
      const started = deferred();
      const finish = deferred<string>();
      let signal: AbortSignal | undefined;
      const run = guard.run(effect('slow'), (s) => {
        signal = s;
        started.resolve();
        return finish.promise; // ignores the signal
      });
      await started.promise;
      await b.halt({ runId: 'run-1' });
      // The body has not settled: if run waited for it, this await would hang.
      const err = await run.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_ABORTED' });
      expect(signal?.aborted).toBe(true);
      expect(signal?.reason).toBe(err);
      await guard.flush();
      expect((await ledger.entries())[0]?.status).toBe('aborted');
      expect((await ledger.entries())[0]?.inDoubt).toBe(true);
      finish.resolve('sent anyway');
      await finish.promise;
      await new Promise((r) => setImmediate(r));
      await guard.flush();
      const [entry] = await ledger.entries();
      expect(entry?.history.map((e) => e.status)).toEqual([
        'intent',
        'aborted',
        'landed-after-halt',
      ]);
      expect(entry?.landedAfterHalt).toBe(true);
      expect(entry?.inDoubt).toBe(false);
      expect(entry?.last.detail).toMatch(/ms after the halt/);
    });

    it('KS-4.3.1 records the late landing with its result, so a resumed run replays it instead of stopping on it', async () => {
      const b = await make();
      const { guard } = guardOn(b);
      const started = deferred();
      const finish = deferred<string>();
      const codec = { encode: (v: string) => v, decode: (r: unknown) => r as string };
      const first = guard.run({ ...effect('late'), result: codec }, () => {
        started.resolve();
        return finish.promise; // ignores the signal
      });
      await started.promise;
      await b.halt({ runId: 'run-1' });
      await expect(first).rejects.toMatchObject({ code: 'KS_ABORTED' });
      finish.resolve('receipt-7');
      await finish.promise;
      await new Promise((r) => setImmediate(r));
      await guard.flush();
      await b.resume({ runId: 'run-1' });
      let dispatched = 0;
      const again = await guard.run({ ...effect('late'), result: codec }, async () => {
        dispatched++;
        return 'twice';
      });
      expect(again).toBe('receipt-7');
      expect(dispatched).toBe(0);
    });
  });
});

describe('KS-4.1.8 the refusal names the flip (KillSwitchProvider puts it in flagMetadata)', () => {
  it('carries seq, selector, actor and reason in the error and the flip seq in the ledger', async () => {
    const b = await BACKENDS[3][1]();
    const { guard, ledger } = guardOn(b);
    await b.halt({ tenant: 'other' });
    await b.halt({ tenant: 'acme' });
    const err = (await guard
      .run(effect('send'), async () => 1)
      .catch((e: unknown) => e)) as HaltedError;
    expect(err.code).toBe('KS_HALTED');
    expect(err.flip).toMatchObject({
      seq: 2,
      selector: { tenant: 'acme' },
      actor: 'test',
      reason: 'test halt',
    });
    expect(err.message).toMatch(/flip #2 \{tenant=acme\}.*test halt/);
    expect((await ledger.entries())[0]?.last.flipSeq).toBe(2);
  });
});

describe('KS-4.2.7 a body that honours the signal stops its I/O', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  it('KS-4.2.6 closes the socket of a fetch to a slow server; the request had left, so the rejection stays in doubt (a second aborted naming it)', async () => {
    const arrived = deferred();
    const closed = deferred();
    server = createServer((req, res) => {
      arrived.resolve();
      res.on('close', () => closed.resolve());
      req.socket.on('close', () => closed.resolve());
      // never answers
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slow`;
    const b = await BACKENDS[0][1]();
    const { guard, ledger } = guardOn(b);
    const run = guard.run(
      effect('post'),
      async (signal) => (await fetch(url, { method: 'POST', signal })).status,
    );
    await arrived.promise;
    await b.halt({ tenant: 'acme' });
    await expect(run).rejects.toMatchObject({ code: 'KS_ABORTED' });
    await closed.promise; // the server saw the connection go
    for (let i = 0; i < 100 && (await ledger.entries())[0]?.history.length !== 3; i++) {
      await new Promise((r) => setImmediate(r));
    }
    await guard.flush();
    const [entry] = await ledger.entries();
    // The server received the POST: a rejection after the abort must not be read as "did not land".
    expect(entry?.history.map((e) => e.status)).toEqual(['intent', 'aborted', 'aborted']);
    expect(entry?.inDoubt).toBe(true);
    expect(entry?.history[2]?.detail).toMatch(/may have landed/);
  });
});

describe.each(BACKENDS)(
  'KS-4.1.3 KS-4.2.1 the watch is registered before the pre-dispatch evaluation (%s)',
  (_name, make) => {
    it('a halt landing after the evaluation said "not halted" (while the intent is written) is not missed, without the recheck', async () => {
      const b = await make();
      let intents = 0;
      // The halt lands while the intent is being written: after the pre-dispatch evaluation, before
      // dispatch. With the recheck off, only the watch registered first can catch it: before the
      // body runs (a provider that applies flips synchronously) or by aborting it at once.
      class HaltDuringIntent extends MemorySideEffectLedger {
        override async append(event: Parameters<MemorySideEffectLedger['append']>[0]) {
          if (event.status === 'intent' && intents++ === 0) await b.halt({ tenant: 'acme' });
          return super.append(event);
        }
      }
      const ledger = new HaltDuringIntent();
      const guard = new EffectGuard({
        client: b.client,
        ledger,
        logger: quiet,
        recheckBeforeDispatch: false,
      });
      guards.push(guard);
      let finished = false;
      const err = await guard
        .run(effect('send'), async (signal) => {
          // Like fetch: rejects when its signal aborts.
          await new Promise((resolve, reject) => {
            const t = setTimeout(resolve, 2000);
            signal.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), {
              once: true,
            });
          });
          finished = true;
        })
        .catch((e: unknown) => e);
      expect(intents).toBe(1);
      expect(err).toBeInstanceOf(HaltedError);
      expect(finished).toBe(false);
      expect(['refused', 'aborted']).toContain((await ledger.entries())[0]?.status);
      // (control) another tenant's effect, same guard, same path: it runs.
      await expect(
        guard.run(effect('other', { context: { tenant: 'globex' } }), async () => 'sent'),
      ).resolves.toBe('sent');
      // KS-4.2.1 the watcher re-evaluated on the configuration change and fired for the halted
      // context; no watch is left behind.
      await new Promise((r) => setTimeout(r, 20));
      expect(guard.watcher.size).toBe(0);
    });
  },
);
