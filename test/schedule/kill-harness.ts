import { randomUUID } from 'node:crypto';
import { InMemoryProvider, NOOP_PROVIDER, OpenFeature, type Client } from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { HaltWatcher } from '../../src/guard/halt-watcher.js';
import type { QueueMode } from '../../src/model/flip-record.js';
import type { Selector } from '../../src/model/selector.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';

/** A real OpenFeature client bound to KillSwitchProvider over an in-memory flip log. */
export interface KillHarness {
  readonly store: MemoryFlipLogStore;
  readonly provider: KillSwitchProvider;
  readonly client: Client;
  readonly watcher: HaltWatcher;
  halt(selector: Selector, mode?: QueueMode): Promise<number>;
  resume(selector: Selector): Promise<number>;
  close(): Promise<void>;
}

/** Lets the provider apply a record and the watcher's re-evaluation run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

export async function killHarness(): Promise<KillHarness> {
  const store = new MemoryFlipLogStore();
  const provider = KillSwitchProvider.fromStore(store, { logger: { warn: () => undefined } });
  const domain = `schedule-${randomUUID()}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  const client = OpenFeature.getClient(domain);
  // The provider answers fail-closed until its first snapshot: wait for a live state.
  for (let i = 0; i < 200 && provider.failure !== undefined; i++) await settle(1);
  if (provider.failure !== undefined) throw new Error('provider never became fresh');
  const watcher = new HaltWatcher(client);
  return {
    store,
    provider,
    client,
    watcher,
    async halt(selector, mode) {
      const { record } = await store.append({
        actor: 'test',
        action: 'halt',
        selector,
        reason: 'test halt',
        ...(mode !== undefined ? { mode } : {}),
      });
      await settle();
      return record.seq;
    },
    async resume(selector) {
      const { record } = await store.append({
        actor: 'test',
        action: 'resume',
        selector,
        reason: 'test resume',
      });
      await settle();
      return record.seq;
    },
    async close() {
      watcher.close();
      await OpenFeature.setProviderAndWait(domain, NOOP_PROVIDER);
      await store.close();
    },
  };
}

/**
 * A plain InMemoryProvider answering `kill-switch` (no flagMetadata: no flip, no mode), as a team
 * whose kill flags live in another backend would have.
 */
export async function inMemoryKill(halted: (ctx: Record<string, unknown>) => boolean) {
  const provider = new InMemoryProvider({
    'kill-switch': {
      variants: { on: true, off: false },
      defaultVariant: 'off',
      disabled: false,
      contextEvaluator: (ctx) => (halted(ctx) ? 'on' : 'off'),
    },
  });
  const domain = `schedule-mem-${randomUUID()}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  const client = OpenFeature.getClient(domain);
  return {
    provider,
    client,
    watcher: new HaltWatcher(client),
    async close() {
      await OpenFeature.setProviderAndWait(domain, NOOP_PROVIDER);
    },
  };
}
