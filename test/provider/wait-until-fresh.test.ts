import { describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { ErrorCode, KillSwitchError } from '../../src/errors.js';
import { KillState } from '../../src/model/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import { SourceStatus, type FlipSource, type FlipSourceListener } from '../../src/source/index.js';

const quiet = { warn: () => {} };

/** A source the test drives by hand. */
class HandSource implements FlipSource {
  readonly name = 'hand';
  listener: FlipSourceListener | undefined;
  async start(l: FlipSourceListener): Promise<void> {
    this.listener = l;
    l.onStatus(SourceStatus.CONNECTING, 'cannot reach the control plane at http://x: refused');
  }
  async stop(): Promise<void> {
    this.listener = undefined;
  }
}

describe('KS-16.3.1 waitUntilFresh', () => {
  it('resolves once a snapshot is applied and the source is open, not before', async () => {
    const source = new HandSource();
    const provider = new KillSwitchProvider({ source, logger: quiet });
    await provider.initialize();
    let fresh = false;
    const waited = provider.waitUntilFresh({ timeoutMs: 5000 }).then(() => (fresh = true));
    source.listener!.onSnapshot(KillState.fold([]).toSnapshot());
    await new Promise((r) => setTimeout(r, 20));
    expect(fresh).toBe(false); // a snapshot, but the source is not open yet
    source.listener!.onStatus(SourceStatus.OPEN);
    await waited;
    expect(fresh).toBe(true);
    // Already fresh: resolves at once.
    await provider.waitUntilFresh({ timeoutMs: 1 });
    await provider.onClose();
  });

  it('rejects with KS_STALE naming why it is not fresh when the time runs out', async () => {
    const provider = new KillSwitchProvider({ source: new HandSource(), logger: quiet });
    await provider.initialize();
    const err = await provider.waitUntilFresh({ timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KillSwitchError);
    expect((err as KillSwitchError).code).toBe(ErrorCode.STALE);
    expect((err as Error).message).toBe(
      'kill switch not fresh within 50 ms: no snapshot yet (cannot reach the control plane at http://x: refused)',
    );
    await provider.onClose();
  });

  it('rejects when the signal aborts or the provider closes meanwhile; refuses a bad timeout', async () => {
    const provider = new KillSwitchProvider({ source: new HandSource(), logger: quiet });
    await provider.initialize();
    const ac = new AbortController();
    const aborted = provider.waitUntilFresh({ signal: ac.signal }).catch((e: unknown) => e);
    ac.abort();
    expect(((await aborted) as Error).message).toMatch(/^kill switch not fresh \(wait aborted\)/);
    const closing = provider.waitUntilFresh().catch((e: unknown) => e);
    await provider.onClose();
    expect(((await closing) as KillSwitchError).code).toBe(ErrorCode.STALE);
    expect(() => provider.waitUntilFresh({ timeoutMs: 0 })).toThrow(/timeoutMs/);
  });

  it('a store-backed provider is fresh after its first read', async () => {
    const provider = KillSwitchProvider.fromStore(new MemoryFlipLogStore(), { logger: quiet });
    await provider.initialize();
    await provider.waitUntilFresh({ timeoutMs: 5000 });
    expect(provider.failure).toBeUndefined();
    await provider.onClose();
  });
});
