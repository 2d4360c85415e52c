import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HaltedError } from '../../src/errors.js';
import { MemorySideEffectLedger } from '../../src/ledger/memory-side-effect-ledger.js';
import { ManualClock } from '../../src/internal/clock.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { killHarness, type KillHarness } from './kill-harness.js';

/**
 * A local service that fails its first `failFirst` calls with 503, like an overloaded LLM API,
 * and records every request that reaches it (each one is an effect that left the worker).
 */
async function flakyServer(failFirst: number) {
  const arrivals: number[] = [];
  const server: Server = createServer((req, res) => {
    if (req.url === '/count') {
      res.end(String(arrivals.length));
      return;
    }
    arrivals.push(Date.now());
    server.emit('arrival', arrivals.length);
    res.statusCode = arrivals.length <= failFirst ? 503 : 200;
    res.end(res.statusCode === 200 ? 'ok' : 'overloaded');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    arrivals,
    server,
    nextArrival: (n: number) =>
      new Promise<void>((resolve) => {
        if (arrivals.length >= n) return resolve();
        const on = (count: number) => {
          if (count >= n) {
            server.off('arrival', on);
            resolve();
          }
        };
        server.on('arrival', on);
      }),
    /** Asks the server how many requests reached it (a round trip, so earlier sends have landed). */
    count: async () => Number(await (await fetch(`${url}/count`)).text()),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/**
 * A client shaped like SDKs whose retry loop sleeps on a timer nobody can abort and that take
 * no signal (the OpenAI Node SDK's back-off sleep ignored the signal: a caller stayed blocked
 * 4.9 s, DESIGN section 10).
 */
function sdkLikeClient(options: { url: string; maxRetries: number; retryDelayMs: number }) {
  return {
    async complete(): Promise<string> {
      for (let i = 0; ; i++) {
        const res = await fetch(`${options.url}/v1/complete`, { method: 'POST' });
        const body = await res.text();
        if (res.ok) return body;
        if (i >= options.maxRetries) throw new Error(`HTTP ${res.status}`);
        await new Promise((r) => setTimeout(r, options.retryDelayMs)); // not abortable
      }
    },
  };
}

/** Waits (by event-loop turns, not time) until the scheduler has set its back-off timer. */
async function untilSleeping(clock: ManualClock): Promise<void> {
  for (let i = 0; i < 1_000 && clock.pending === 0; i++) await clock.advance(0);
}

let h: KillHarness;
let server: Awaited<ReturnType<typeof flakyServer>>;
let ledger: MemorySideEffectLedger;

beforeEach(async () => {
  h = await killHarness();
  ledger = new MemorySideEffectLedger();
});
afterEach(async () => {
  await server?.close();
  await h.close();
});

describe('KS-7.1.6 a client whose own retry sleep cannot be aborted is configured with maxRetries 0 and retried through the scheduler', () => {
  it('hazard: with the client retrying on its own, a request still reaches the service after the halt freed the caller', async () => {
    server = await flakyServer(100);
    const scheduler = new Scheduler({ watcher: h.watcher, ledger });
    const client = sdkLikeClient({ url: server.url, maxRetries: 3, retryDelayMs: 50 });
    const call = scheduler.retry({ tenant: 'acme' }, () => client.complete(), { maxAttempts: 1 });
    call.catch(() => undefined);
    await server.nextArrival(1);
    await h.halt({ tenant: 'acme' });
    await expect(call).rejects.toMatchObject({ code: 'KS_ABORTED' });
    const afterHalt = server.arrivals.length;
    // The caller is free, but the client's private loop sleeps on and sends again.
    await server.nextArrival(afterHalt + 1);
    expect(server.arrivals.length).toBeGreaterThan(afterHalt);
    await scheduler.close();
  });

  it('fix: with maxRetries 0 and the scheduler owning the back-off, no request leaves after the halt', async () => {
    server = await flakyServer(100);
    const clock = new ManualClock();
    const scheduler = new Scheduler({ watcher: h.watcher, ledger, clock, random: () => 0 });
    const client = sdkLikeClient({ url: server.url, maxRetries: 0, retryDelayMs: 50 });
    const call = scheduler.retry(
      { tenant: 'acme', runId: 'run-7' },
      () => client.complete(),
      { maxAttempts: 5, backoff: { baseMs: 2_000, factor: 2, maxMs: 30_000, jitter: 0 } },
      { step: 'llm' },
    );
    call.catch(() => undefined);
    await server.nextArrival(1);
    await untilSleeping(clock);
    expect(clock.pending).toBe(1); // sleeping before attempt 2
    const seq = await h.halt({ tenant: 'acme' });
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HaltedError);
    expect((err as HaltedError).code).toBe('KS_ABORTED');
    expect(clock.pending).toBe(0);
    await clock.advance(10 * 60_000);
    expect(await server.count()).toBe(1);
    await scheduler.flush();
    const [entry] = await ledger.entries({ runId: 'run-7' });
    expect(entry).toMatchObject({ status: 'cancelled', key: 'run-7/llm#retry' });
    expect(entry?.last.flipSeq).toBe(seq);
    await scheduler.close();
  });

  it('without a halt, the scheduler retries the same client to success', async () => {
    server = await flakyServer(2);
    const clock = new ManualClock();
    const scheduler = new Scheduler({ watcher: h.watcher, ledger, clock, random: () => 0 });
    const client = sdkLikeClient({ url: server.url, maxRetries: 0, retryDelayMs: 50 });
    const call = scheduler.retry({ tenant: 'acme' }, () => client.complete(), {
      maxAttempts: 5,
      backoff: { baseMs: 100, factor: 2, maxMs: 1_000, jitter: 0 },
    });
    for (let i = 1; i <= 2; i++) {
      await server.nextArrival(i);
      await untilSleeping(clock);
      await clock.advance(1_000);
    }
    await expect(call).resolves.toBe('ok');
    expect(await server.count()).toBe(3);
    await scheduler.close();
  });
});
