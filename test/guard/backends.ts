import {
  InMemoryProvider,
  MultiProvider,
  OpenFeature,
  type Client,
  type EvaluationContext,
  type Provider,
} from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import {
  selectorEquals,
  selectorMatches,
  type KillContext,
  type Selector,
} from '../../src/model/selector.js';
import { FailClosedKillStrategy } from '../../src/guard/fail-closed-kill-strategy.js';

/** A kill-flag backend bound to its own OpenFeature domain, with levers a test can pull. */
export interface Backend {
  readonly client: Client;
  readonly domain: string;
  halt(selector: Selector): Promise<void>;
  resume(selector: Selector): Promise<void>;
  /** The backend's own view, read synchronously (the oracle for property tests). */
  halted(ctx: KillContext): boolean;
}

let n = 0;
/** A fresh OpenFeature domain per test, so providers of different tests never meet. */
export function freshDomain(prefix: string): string {
  n += 1;
  return `${prefix}-${process.pid}-${n}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The `kill-switch` flag of an InMemoryProvider over a list of active halts. */
export function killFlags(halts: readonly Selector[]) {
  const evaluate = (ctx: EvaluationContext) =>
    halts.some((h) => selectorMatches(h, ctx as KillContext)) ? 'on' : 'off';
  return {
    'kill-switch': {
      variants: { on: true, off: false },
      defaultVariant: 'on',
      disabled: false,
      contextEvaluator: evaluate,
    },
  };
}

/** Halts kept like the fold: a resume lifts exactly its selector. */
class HaltList {
  halts: Selector[] = [];
  halt(s: Selector): void {
    this.halts = [...this.halts.filter((h) => !selectorEquals(h, s)), s];
  }
  resume(s: Selector): void {
    this.halts = this.halts.filter((h) => !selectorEquals(h, s));
  }
  matches(ctx: KillContext): boolean {
    return this.halts.some((h) => selectorMatches(h, ctx));
  }
}

/** InMemoryProvider; a flip is a putConfiguration. */
export async function inMemoryBackend(): Promise<Backend> {
  const list = new HaltList();
  const provider = new InMemoryProvider(killFlags([]));
  const domain = freshDomain('inmem');
  await OpenFeature.setProviderAndWait(domain, provider);
  return {
    client: OpenFeature.getClient(domain),
    domain,
    async halt(s) {
      list.halt(s);
      provider.putConfiguration(killFlags(list.halts));
    },
    async resume(s) {
      list.resume(s);
      provider.putConfiguration(killFlags(list.halts));
    },
    halted: (ctx) => list.matches(ctx),
  };
}

/** A MultiProvider: the kill flags' InMemoryProvider first, an unrelated provider second. */
export async function multiProviderBackend(
  strategy: 'first-match' | 'fail-closed' = 'first-match',
): Promise<Backend> {
  const list = new HaltList();
  const kill = new InMemoryProvider(killFlags([]));
  const other = new InMemoryProvider({
    'new-checkout': { variants: { on: true, off: false }, defaultVariant: 'off', disabled: false },
  });
  const providers = [
    { provider: kill as Provider, name: 'kill' },
    { provider: other as Provider, name: 'other' },
  ];
  const multi =
    strategy === 'fail-closed'
      ? new MultiProvider(providers, new FailClosedKillStrategy())
      : new MultiProvider(providers);
  const domain = freshDomain(`multi-${strategy}`);
  await OpenFeature.setProviderAndWait(domain, multi);
  return {
    client: OpenFeature.getClient(domain),
    domain,
    async halt(s) {
      list.halt(s);
      kill.putConfiguration(killFlags(list.halts));
    },
    async resume(s) {
      list.resume(s);
      kill.putConfiguration(killFlags(list.halts));
    },
    halted: (ctx) => list.matches(ctx),
  };
}

/** KillSwitchProvider over an in-memory flip log; a flip is an append. */
export async function killSwitchBackend(): Promise<Backend> {
  const { KillSwitchProvider } = await import('../../src/provider/kill-switch-provider.js');
  const list = new HaltList();
  const store = new MemoryFlipLogStore();
  await store.open();
  const provider = KillSwitchProvider.fromStore(store);
  const domain = freshDomain('ks');
  await OpenFeature.setProviderAndWait(domain, provider);
  const client = OpenFeature.getClient(domain);
  // The provider answers fail-closed until its first snapshot: wait for it to be live.
  for (let i = 0; i < 1000 && provider.sourceStatus !== 'open'; i++)
    await new Promise((r) => setImmediate(r));
  return {
    client,
    domain,
    async halt(s) {
      list.halt(s);
      await store.append({ action: 'halt', selector: s, actor: 'test', reason: 'test halt' });
    },
    async resume(s) {
      list.resume(s);
      await store.append({ action: 'resume', selector: s, actor: 'test', reason: 'test resume' });
    },
    halted: (ctx) => list.matches(ctx),
  };
}

export const BACKENDS = [
  ['InMemoryProvider', () => inMemoryBackend()],
  ['MultiProvider (FirstMatch, kill provider first)', () => multiProviderBackend('first-match')],
  ['MultiProvider (FailClosedKillStrategy)', () => multiProviderBackend('fail-closed')],
  ['KillSwitchProvider.fromStore', () => killSwitchBackend()],
] as const;

/** A promise with its resolve and reject exposed. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
