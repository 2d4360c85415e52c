import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { OpenFeature, ProviderEvents, type Client } from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { lineageFromHeaders, lineageToHeaders, type Lineage } from '../../src/lineage/lineage.js';
import type { Selector } from '../../src/model/selector.js';
import { KillSwitchProvider } from '../../src/provider/kill-switch-provider.js';
import { currentRunScope, runInScope } from '../../src/scope/index.js';
import { afterEach } from 'vitest';

/** The kill switch as a worker runs it: provider over a flip log, a guard over a ledger. */
export interface KillSwitchEnv {
  readonly client: Client;
  readonly guard: EffectGuard;
  readonly ledger: MemorySideEffectLedger;
  /** Appends a halt; resolves with the time (performance.now) the provider applied it. */
  halt(selector: Selector, reason?: string): Promise<{ seq: number; arrivedAt: number }>;
  /**
   * Whether the event loop has turned (a macrotask ran) since the last flip reached the provider.
   * Read it where a halt is observed: false means the halt was acted on within the same turn,
   * with nothing but promise callbacks in between (no timer, no I/O), however loaded the machine.
   */
  turnedSinceArrival(): boolean;
  resume(selector: Selector): Promise<void>;
  close(): Promise<void>;
}

let n = 0;

/**
 * A KillSwitchProvider over an in-memory flip log, bound to a fresh OpenFeature domain, with an
 * effect guard over an in-memory ledger. `halt` reports when the flip reached the provider (its
 * configuration-changed event), the moment the adapters' latency promises are measured from.
 */
export async function killSwitchEnv(): Promise<KillSwitchEnv> {
  const store = new MemoryFlipLogStore();
  await store.open();
  const provider = KillSwitchProvider.fromStore(store);
  const domain = `adapters-${process.pid}-${++n}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  const client = OpenFeature.getClient(domain);
  for (let i = 0; i < 1000 && provider.sourceStatus !== 'open'; i++)
    await new Promise((r) => setImmediate(r));
  // Registered before the guard's watcher, so it runs first on each change.
  const arrivals: number[] = [];
  let turned = true;
  client.addHandler(ProviderEvents.ConfigurationChanged, () => {
    arrivals.push(performance.now());
    turned = false;
    setImmediate(() => (turned = true));
  });
  const ledger = new MemorySideEffectLedger();
  const guard = new EffectGuard({ client, ledger, logger: { warn: () => undefined } });
  return {
    client,
    guard,
    ledger,
    async halt(selector, reason = 'test halt') {
      const before = arrivals.length;
      const r = await store.append({ action: 'halt', selector, actor: 'test', reason });
      for (let i = 0; arrivals.length === before; i++) {
        if (i > 10_000) throw new Error('the flip never reached the provider');
        await new Promise((res) => setImmediate(res));
      }
      return { seq: r.record.seq, arrivedAt: arrivals[before]! };
    },
    turnedSinceArrival: () => turned,
    async resume(selector) {
      await store.append({ action: 'resume', selector, actor: 'test', reason: 'test resume' });
    },
    async close() {
      await guard.close();
      await provider.onClose();
      await store.close();
    },
  };
}

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

/** Resolves after `ms`, or rejects with the signal's reason if it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A service on loopback that acts for the run named by a request's lineage headers. */
export interface LineageEndpoint {
  readonly url: string;
  /** The lineage each request carried, in order. */
  readonly seen: Lineage[];
  close(): Promise<void>;
}

/**
 * An HTTP service (127.0.0.1, port 0) standing in for another process a tool calls: it reads the
 * run's lineage from the `x-killswitch-*` headers and runs its own effect (capability
 * `remote.write`, step from the path) through `guard` inside that lineage's run scope, so a halt
 * on the run or any ancestor refuses it there too. Answers 200 `landed`, or 409 with the code.
 */
export async function lineageEndpoint(guard: EffectGuard): Promise<LineageEndpoint> {
  const seen: Lineage[] = [];
  const server = createServer((req, res) => {
    const lineage = lineageFromHeaders(req.headers);
    if (lineage === undefined) {
      res.writeHead(400).end('no lineage');
      return;
    }
    seen.push(lineage);
    runInScope(lineage, () =>
      guard.run({ step: req.url ?? '/', capability: 'remote.write' }, async () => 'landed'),
    ).then(
      (v) => res.writeHead(200).end(v),
      (err: unknown) => res.writeHead(409).end((err as { code?: string }).code ?? 'error'),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/**
 * What a tool does to reach another service: a request carrying the current run scope's lineage
 * in headers. Resolves with the status and body.
 */
export async function callWithLineage(
  url: string,
  signal?: AbortSignal,
): Promise<{ status: number; body: string }> {
  const scope = currentRunScope();
  if (scope === undefined) throw new Error('the tool body runs outside any run scope');
  const res = await fetch(url, {
    headers: lineageToHeaders(scope.lineage),
    ...(signal !== undefined ? { signal } : {}),
  });
  return { status: res.status, body: await res.text() };
}

/**
 * A kill switch per test: `env()` starts one ({@link killSwitchEnv}), and every one started is
 * closed after the test. Call at a test file's top level.
 */
export function killSwitchEnvPerTest(): () => Promise<KillSwitchEnv> {
  const envs: KillSwitchEnv[] = [];
  afterEach(async () => {
    for (const e of envs.splice(0)) await e.close();
  });
  return async () => {
    const e = await killSwitchEnv();
    envs.push(e);
    return e;
  };
}

/** A scripted model's turn, in the shape every framework's scripted model here takes. */
export type ScriptedTurn =
  | { readonly toolCalls: readonly { id: string; name: string; input: { amount: number } }[] }
  | { readonly text: readonly string[] };

/** A model script that calls `name` once per turn (ids call-0, call-1, ...), then answers. */
export function toolEveryTurn(name: string, turns = 4): (n: number) => ScriptedTurn {
  return (n) =>
    n < turns
      ? { toolCalls: [{ id: `call-${n}`, name, input: { amount: 10 + n } }] }
      : { text: ['done'] };
}
