import { OpenFeature, type Client, type Provider } from '@openfeature/server-sdk';
import { LaunchDarklyProvider } from '@launchdarkly/openfeature-node-server';

let n = 0;
/** A fresh OpenFeature domain per test, so providers of different tests never meet. */
export function freshDomain(prefix: string): string {
  n += 1;
  return `${prefix}-${process.pid}-${n}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Polls `cond` every 5 ms until it holds; rejects after `ms` (a wait, never a timing assert). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Resolves after `ms` (used only to let a fault last, never to assert timing). */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The real LaunchDarkly OpenFeature provider, pointed only at a local stream server: no events,
 * no diagnostics, every URI on loopback. KS-12.3.1
 */
export function localLaunchDarkly(
  streamUrl: string,
  options: { initTimeoutSeconds?: number; streamInitialReconnectDelay?: number } = {},
): LaunchDarklyProvider {
  return new LaunchDarklyProvider(
    'sdk-local-test-key',
    {
      streamUri: streamUrl,
      baseUri: streamUrl,
      eventsUri: streamUrl,
      sendEvents: false,
      diagnosticOptOut: true,
      // Seconds; the SDK backs off from here with jitter.
      streamInitialReconnectDelay: options.streamInitialReconnectDelay ?? 0.1,
      logger: silent,
    },
    options.initTimeoutSeconds ?? 5,
  );
}

/** Binds a provider to a fresh domain and returns its client (after the SDK's initialize). */
export async function bind(provider: Provider, prefix: string): Promise<Client> {
  const domain = freshDomain(prefix);
  await OpenFeature.setProviderAndWait(domain, provider).catch(() => {
    // A provider whose initialize rejects is left in ERROR; the test reads that status.
  });
  return OpenFeature.getClient(domain);
}
