import { describe, expect, it } from 'vitest';
import type { HaltWatcher } from '../../src/guard/halt-watcher.js';
import { HaltPoller } from '../../src/ofrep/halt-poller.js';
import { ofrepRoutes } from '../../src/ofrep/ofrep-routes.js';
import { timeoutFetch } from '../../src/ofrep/timeout-fetch.js';
import { ManualClock } from '../../src/internal/clock.js';

function fakeWatcher() {
  let calls = 0;
  let release: (() => void) | undefined;
  let hold = false;
  const watcher = {
    recheck: () => {
      calls += 1;
      if (!hold) return Promise.resolve();
      return new Promise<void>((r) => (release = r));
    },
  } as unknown as HaltWatcher;
  return {
    watcher,
    calls: () => calls,
    hold: (h: boolean) => (hold = h),
    release: () => release?.(),
  };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('KS-12.2.3 HaltPoller re-checks every interval, one round at a time', () => {
  it('re-checks once per interval while running and never after stop', async () => {
    const clock = new ManualClock();
    const w = fakeWatcher();
    const p = new HaltPoller({ watcher: w.watcher, intervalMs: 1000, clock });
    p.start();
    p.start(); // idempotent
    await clock.advance(999);
    expect(w.calls()).toBe(0);
    await clock.advance(1);
    await flush();
    expect(w.calls()).toBe(1);
    await clock.advance(1000);
    await flush();
    expect(w.calls()).toBe(2);
    p.stop();
    expect(p.running).toBe(false);
    await clock.advance(5000);
    await flush();
    expect(w.calls()).toBe(2);
  });

  it('a slow round delays the next instead of stacking evaluations', async () => {
    const clock = new ManualClock();
    const w = fakeWatcher();
    const p = new HaltPoller({ watcher: w.watcher, intervalMs: 100, clock });
    w.hold(true);
    p.start();
    await clock.advance(100);
    await flush();
    expect(w.calls()).toBe(1);
    await clock.advance(1000);
    await flush();
    expect(w.calls()).toBe(1);
    w.hold(false);
    w.release();
    await flush();
    await clock.advance(100);
    await flush();
    expect(w.calls()).toBe(2);
    p.stop();
  });

  it('refuses a missing watcher or a bad interval with KS_INVALID_OPTION', () => {
    expect(() => new HaltPoller({} as never)).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
    );
    const w = fakeWatcher();
    for (const intervalMs of [0, -1, 1.5, Number.NaN]) {
      expect(() => new HaltPoller({ watcher: w.watcher, intervalMs })).toThrow(
        expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
      );
    }
  });
});

describe('KS-12.2.2 timeoutFetch', () => {
  it('rejects when the wrapped fetch does not complete within the deadline', async () => {
    const never: typeof fetch = (_input, init) =>
      new Promise((_, reject) =>
        init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)),
      );
    await expect(
      timeoutFetch({ timeoutMs: 20, fetch: never })('http://127.0.0.1:1/'),
    ).rejects.toThrow();
  });

  it('passes a 304 through without a body', async () => {
    const notModified: typeof fetch = async () =>
      new Response(null, { status: 304, headers: { etag: '"a"' } });
    const res = await timeoutFetch({ fetch: notModified })('http://127.0.0.1:1/');
    expect(res.status).toBe(304);
    expect(res.headers.get('etag')).toBe('"a"');
  });

  it('refuses a bad timeout with KS_INVALID_OPTION', () => {
    expect(() => timeoutFetch({ timeoutMs: 0 })).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
    );
  });
});

describe('KS-12.1 ofrepRoutes options', () => {
  it('refuses a missing view and bad numbers with KS_INVALID_OPTION', () => {
    const view = {
      snapshot: () => ({ seq: 0, hash: '', halts: [] }),
      vouch: () => ({ ok: true as const }),
    };
    expect(() => ofrepRoutes({} as never)).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
    );
    expect(() => ofrepRoutes({ view, maxBodyBytes: 0 })).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
    );
    expect(() => ofrepRoutes({ view, minPollingIntervalMs: -1 })).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
    );
    expect(ofrepRoutes({ view }).map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /ofrep/v1/evaluate/flags/:key',
      'POST /ofrep/v1/evaluate/flags',
      'GET /ofrep/v1/configuration',
    ]);
  });
});
