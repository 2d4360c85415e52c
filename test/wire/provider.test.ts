import { afterEach, describe, expect, it, vi } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import { KILL_SWITCH_FLAG } from '../../src/model/index.js';
import { FaultProxy } from './fault-proxy.js';
import { ADMIN_TOKEN, WireServer, postFlip } from './harness.js';

let server: WireServer | undefined;
let proxy: FaultProxy | undefined;
let provider: KillSwitchProvider | undefined;

afterEach(async () => {
  await provider?.onClose();
  await proxy?.close();
  await server?.close();
  provider = proxy = server = undefined;
});

const ask = (p: KillSwitchProvider, tenant: string) =>
  p.resolveBooleanEvaluation(KILL_SWITCH_FLAG, false, { tenant });

describe('KS-6.3 the remote source drives KillSwitchProvider exactly like a local store', () => {
  it('answers from the control plane, halts on a flip, fails closed when the server stalls, recovers after', async () => {
    server = await WireServer.start({ staleAfterMs: 1000, heartbeatMs: 200 });
    proxy = await FaultProxy.start(server.port);
    provider = new KillSwitchProvider({
      source: new RemoteFlipSource({
        urls: [proxy.url],
        token: ADMIN_TOKEN,
        workerId: 'provider-w1',
        staleAfterMs: 1000,
        heartbeatMs: 200,
        backoff: { initialMs: 20, maxMs: 200 },
      }),
    });
    await provider.initialize();
    // Before the first snapshot: fail closed.
    expect((await ask(provider, 'acme')).value).toBe(true);
    await vi.waitFor(() => expect(provider!.sourceStatus).toBe('open'), { timeout: 10_000 });
    expect((await ask(provider, 'acme')).value).toBe(false);

    await postFlip(server.url, { selector: { tenant: 'acme' }, reason: 'runaway agent' });
    await vi.waitFor(async () => expect((await ask(provider!, 'acme')).value).toBe(true), {
      timeout: 10_000,
    });
    const halted = await ask(provider, 'acme');
    expect(halted.variant).not.toBe('fail-closed');
    expect((await ask(provider, 'other')).value).toBe(false);

    proxy.stall();
    await vi.waitFor(
      async () => {
        const r = await ask(provider!, 'other');
        expect(r).toMatchObject({ value: true, variant: 'fail-closed', reason: 'STALE' });
      },
      { timeout: 5_000 },
    );

    proxy.unstall();
    proxy.dropAll();
    await vi.waitFor(() => expect(provider!.sourceStatus).toBe('open'), { timeout: 10_000 });
    expect((await ask(provider, 'other')).value).toBe(false);
    expect((await ask(provider, 'acme')).value).toBe(true);
  });
});
