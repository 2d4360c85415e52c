import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature, ProviderStatus, type Client } from '@openfeature/server-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { HaltedError } from '../../src/errors.js';
import { EffectGuard, type GuardedEffect } from '../../src/guard/effect-guard.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { HaltPoller } from '../../src/ofrep/halt-poller.js';
import { OFREP_PATHS, ofrepRoutes, type Vouch } from '../../src/ofrep/ofrep-routes.js';
import { timeoutFetch } from '../../src/ofrep/timeout-fetch.js';
import type { ControlPlane } from '../../src/server/index.js';
import { bind, sleep, waitFor } from '../backends/helpers.js';
import { bearer, startTestServer, TOKENS } from '../server/helpers.js';
import { cleanupsAfterEach } from '../fixtures/cleanups.js';

const quiet = { warn: () => undefined };
const cleanups = cleanupsAfterEach();
afterAll(async () => {
  await OpenFeature.close();
});

/** A control plane on a memory log; OFREP as the control plane mounts it. */
async function serve(): Promise<{ cp: ControlPlane; store: MemoryFlipLogStore }> {
  const store = new MemoryFlipLogStore();
  const { cp } = await startTestServer({ store });
  cleanups.push(() => cp.close());
  return { cp, store };
}

/** A control plane whose OFREP routes read a view the test controls. */
async function serveWithVouch(): Promise<{
  cp: ControlPlane;
  store: MemoryFlipLogStore;
  setVouch(v: Vouch): void;
}> {
  const store = new MemoryFlipLogStore();
  const { cp } = await startTestServer({ store, ofrep: false });
  cleanups.push(() => cp.close());
  let vouch: Vouch = { ok: true };
  cp.router.add(...ofrepRoutes({ view: { snapshot: () => cp.snapshot(), vouch: () => vouch } }));
  return { cp, store, setVouch: (v) => (vouch = v) };
}

async function halt(cp: ControlPlane, selector: Record<string, string>, reason = 'ofrep test') {
  const res = await fetch(`${cp.url}/v1/flips`, {
    method: 'POST',
    headers: { ...bearer(TOKENS.admin), 'content-type': 'application/json' },
    body: JSON.stringify({ action: 'halt', selector, reason }),
  });
  expect(res.status).toBe(201);
}

function ofrepClient(baseUrl: string, token: string | null = TOKENS.viewer, timeoutMs?: number) {
  return bind(
    new OFREPProvider({
      baseUrl,
      ...(token === null ? {} : { headers: bearer(token) }),
      ...(timeoutMs === undefined ? {} : { fetchImplementation: timeoutFetch({ timeoutMs }) }),
    }),
    'ofrep',
  );
}

function bulk(cp: ControlPlane, context: object, headers: Record<string, string> = {}) {
  return fetch(`${cp.url}${OFREP_PATHS.bulk}`, {
    method: 'POST',
    headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ context }),
  });
}

function effect(step: string, tenant = 'acme'): GuardedEffect {
  return { context: { tenant }, runId: `run-${step}`, step, capability: 'email.send' };
}

describe('KS-12.1.1 single evaluation through the official @openfeature/ofrep-provider and the SDK', () => {
  it('answers each kill flag from the kill state; the next evaluation after a flip sees it', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    expect(await client.getBooleanDetails('kill-switch', true, { tenant: 'acme' })).toMatchObject({
      value: false,
      variant: 'running',
      reason: 'TARGETING_MATCH',
    });
    await halt(cp, { tenant: 'acme' }, 'bad deploy');
    const d = await client.getBooleanDetails('kill-switch', false, { tenant: 'acme' });
    expect(d).toMatchObject({ value: true, variant: 'halted' });
    expect(d.errorCode).toBeUndefined();
    expect(d.flagMetadata).toMatchObject({ seq: 1, reason: 'bad deploy', level: 'tenant' });
    expect(await client.getBooleanValue('kill-switch.tenant', false, { tenant: 'acme' })).toBe(
      true,
    );
    expect(await client.getBooleanValue('kill-switch.global', true, { tenant: 'acme' })).toBe(
      false,
    );
    expect(await client.getBooleanValue('kill-switch', true, { tenant: 'other' })).toBe(false);
  });

  it('the guard refuses with a HaltedError that names the flip (flagMetadata survives OFREP)', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger(), logger: quiet });
    cleanups.push(() => guard.close());
    await expect(guard.run(effect('a'), async () => 'sent')).resolves.toBe('sent');
    await halt(cp, { capability: 'email.send' }, 'spam wave');
    const err = await guard.run(effect('b'), async () => 'sent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HaltedError);
    expect((err as HaltedError).flip).toMatchObject({
      seq: 1,
      reason: 'spam wave',
      selector: { capability: 'email.send' },
    });
  });

  it('a key that is not a kill flag is FLAG_NOT_FOUND (the SDK serves the default with that code)', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    expect(await client.getBooleanDetails('new-checkout', false)).toMatchObject({
      value: false,
      errorCode: 'FLAG_NOT_FOUND',
    });
    const res = await fetch(`${cp.url}/ofrep/v1/evaluate/flags/new-checkout`, {
      method: 'POST',
      headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ key: 'new-checkout', errorCode: 'FLAG_NOT_FOUND' });
  });

  it('answers cache-control: no-store and cacheable: false', async () => {
    const { cp } = await serve();
    const res = await fetch(`${cp.url}/ofrep/v1/evaluate/flags/kill-switch`, {
      method: 'POST',
      headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json' },
      body: JSON.stringify({ context: { tenant: 'acme' } }),
    });
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toMatchObject({ key: 'kill-switch', value: false, cacheable: false });
  });
});

describe('KS-1.5.1 the guard, the OFREP provider and OFREP pass runPath through as an array attribute', () => {
  it('a halt on an ancestor refuses a descendant named only by its path; a context without runPath is a path of one', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger(), logger: quiet });
    cleanups.push(() => guard.close());
    await halt(cp, { runId: 'parent' }, 'runaway tree');
    const run = (context: Record<string, unknown>, runId: string, step: string) =>
      guard
        .run({ context, runId, step, capability: 'email.send' }, async () => 'sent')
        .catch((e: unknown) => e);
    // The grandchild's own id is not halted: only its path, read as an array by the server,
    // names the halted ancestor (a flattened or dropped path would let it through or fail closed).
    const refused = await run({ runId: 'g1', runPath: ['parent', 'c1', 'g1'] }, 'g1', 'a');
    expect(refused).toBeInstanceOf(HaltedError);
    expect((refused as HaltedError).flip).toMatchObject({ selector: { runId: 'parent' } });
    expect(await run({ runId: 'g2', runPath: ['other', 'c2', 'g2'] }, 'g2', 'b')).toBe('sent');
    // Without runPath the context is the path of its runId alone.
    expect(await run({ runId: 'c1' }, 'c1', 'c')).toBe('sent');
    expect(await run({ runId: 'parent' }, 'parent', 'd')).toBeInstanceOf(HaltedError);
    // The raw evaluation answers the same, with the path as a JSON array in the request.
    const res = await fetch(`${cp.url}/ofrep/v1/evaluate/flags/kill-switch`, {
      method: 'POST',
      headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json' },
      body: JSON.stringify({ context: { runId: 'g1', runPath: ['parent', 'c1', 'g1'] } }),
    });
    expect(await res.json()).toMatchObject({ value: true, variant: 'halted' });
  });
});

describe('KS-12.1.3 a context the server cannot read fails closed', () => {
  it('a kill attribute that is not a string answers halted (fail-closed), even to a default-false caller', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    expect(await client.getBooleanDetails('kill-switch', false, { tenant: 42 })).toMatchObject({
      value: true,
      variant: 'fail-closed',
      reason: 'ERROR',
    });
  });

  it('a body that is not JSON is 400 PARSE_ERROR; a context that is not an object is INVALID_CONTEXT', async () => {
    const { cp } = await serve();
    const post = (body: string) =>
      fetch(`${cp.url}/ofrep/v1/evaluate/flags/kill-switch`, {
        method: 'POST',
        headers: { ...bearer(TOKENS.viewer), 'content-type': 'application/json' },
        body,
      });
    let res = await post('{not json');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ key: 'kill-switch', errorCode: 'PARSE_ERROR' });
    res = await post('{"context": [1]}');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ errorCode: 'INVALID_CONTEXT' });
  });
});

describe('KS-12.1.2 bulk evaluation with ETag and If-None-Match', () => {
  it('answers every kill flag with a strong ETag; the same tag answers 304 until the answer changes', async () => {
    const { cp } = await serve();
    let res = await bulk(cp, { tenant: 'acme' });
    expect(res.status).toBe(200);
    const etag = res.headers.get('etag');
    expect(etag).toMatch(/^"[\w-]+"$/);
    const body = (await res.json()) as { flags: { key: string; value: boolean }[] };
    expect(body.flags.map((f) => f.key).sort()).toEqual(
      [
        'kill-switch',
        'kill-switch.capability',
        'kill-switch.feature',
        'kill-switch.global',
        'kill-switch.run',
        'kill-switch.tenant',
      ].sort(),
    );
    expect(body.flags.every((f) => f.value === false)).toBe(true);

    res = await bulk(cp, { tenant: 'acme' }, { 'if-none-match': etag! });
    expect(res.status).toBe(304);
    expect(res.headers.get('etag')).toBe(etag);
    expect(await res.text()).toBe('');
    res = await bulk(cp, { tenant: 'acme' }, { 'if-none-match': `"other", W/${etag}` });
    expect(res.status).toBe(304);

    await halt(cp, { tenant: 'acme' });
    res = await bulk(cp, { tenant: 'acme' }, { 'if-none-match': etag! });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).not.toBe(etag);
    const after = (await res.json()) as { flags: { key: string; value: boolean }[] };
    expect(after.flags.find((f) => f.key === 'kill-switch')?.value).toBe(true);
    expect(after.flags.find((f) => f.key === 'kill-switch.global')?.value).toBe(false);
  });

  it('the ETag is per context: another context gets its own answer', async () => {
    const { cp } = await serve();
    await halt(cp, { tenant: 'acme' });
    const a = await bulk(cp, { tenant: 'acme' });
    const b = await bulk(cp, { tenant: 'beta' });
    expect(a.headers.get('etag')).not.toBe(b.headers.get('etag'));
    const res = await bulk(cp, { tenant: 'beta' }, { 'if-none-match': a.headers.get('etag')! });
    expect(res.status).toBe(200);
  });

  it('KS-12.1.6 GET /ofrep/v1/configuration announces boolean flags, no caching, and the minimum poll interval', async () => {
    const { cp } = await serve();
    const res = await fetch(`${cp.url}${OFREP_PATHS.configuration}`, {
      headers: bearer(TOKENS.viewer),
    });
    expect(await res.json()).toMatchObject({
      capabilities: {
        caching: { enabled: false },
        flagEvaluation: { supportedTypes: ['boolean'] },
        cacheInvalidation: { polling: { enabled: true, minPollingIntervalMs: 1000 } },
      },
    });
  });
});

describe('KS-12.1.4 OFREP needs a token (viewer is enough)', () => {
  it('no token: 401 with WWW-Authenticate; the SDK serves the caller default with an error', async () => {
    const { cp } = await serve();
    const res = await bulk(cp, {}, { authorization: '' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const client = await ofrepClient(cp.url, null);
    const d = await client.getBooleanDetails('kill-switch', true, { tenant: 'acme' });
    expect(d).toMatchObject({ value: true, reason: 'ERROR' });
    expect(d.errorCode).toBeDefined();
    const wrong = await ofrepClient(cp.url, 'not-a-token');
    expect(await evaluateKill(wrong, { tenant: 'acme' })).toMatchObject({
      halted: true,
      cause: 'error',
    });
  });
});

describe('KS-12.1.5 a control plane that does not vouch for its state answers every kill flag halted', () => {
  it('STALE and ERROR answer value true / fail-closed with status 200, bulk included, and a new ETag', async () => {
    const { cp, setVouch } = await serveWithVouch();
    const client = await ofrepClient(cp.url);
    expect(await client.getBooleanValue('kill-switch', false, { tenant: 'acme' })).toBe(false);
    const before = (await bulk(cp, { tenant: 'acme' })).headers.get('etag')!;
    setVouch({ ok: false, reason: 'STALE', detail: 'store stopped following' });
    expect(await client.getBooleanDetails('kill-switch', false, { tenant: 'acme' })).toMatchObject({
      value: true,
      variant: 'fail-closed',
      reason: 'STALE',
      flagMetadata: { failClosed: 'store stopped following' },
    });
    const res = await bulk(cp, { tenant: 'acme' }, { 'if-none-match': before });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { flags: { value: boolean; variant: string }[] };
    expect(body.flags.every((f) => f.value === true && f.variant === 'fail-closed')).toBe(true);
    setVouch({ ok: false, reason: 'ERROR', detail: 'lost track of the log' });
    expect(await evaluateKill(client, { tenant: 'acme' })).toMatchObject({
      halted: true,
      cause: 'error',
    });
    setVouch({ ok: true });
    expect(await client.getBooleanValue('kill-switch', true, { tenant: 'acme' })).toBe(false);
  });
});

describe('KS-12.2.1 a control plane that is down: what the OFREP client answers', () => {
  it('connection refused: the SDK serves the caller default (errorCode GENERAL), the provider stays READY', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    expect(await client.getBooleanValue('kill-switch', true, { tenant: 'acme' })).toBe(false);
    await cp.close();
    const d = await client.getBooleanDetails('kill-switch', true, { tenant: 'acme' });
    expect(d).toMatchObject({ value: true, reason: 'ERROR', errorCode: 'GENERAL' });
    // The OFREP provider emits no events: its status never says the server is gone.
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    // Fail closed only because the guard passes true; a caller that passes false runs (fail open).
    expect(await evaluateKill(client, { tenant: 'acme' })).toMatchObject({
      halted: true,
      cause: 'error',
    });
    expect(await client.getBooleanValue('kill-switch', false, { tenant: 'acme' })).toBe(false);
    const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger(), logger: quiet });
    cleanups.push(() => guard.close());
    await expect(guard.run(effect('down'), async () => 'sent')).rejects.toMatchObject({
      code: 'KS_HALTED',
      haltCause: 'error',
    });
  });
});

describe('KS-12.2.1 no acknowledgement: an OFREP worker is invisible to the fleet', () => {
  it('a flip reports complete at once and /v1/workers is empty while an OFREP worker evaluates', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    expect(await client.getBooleanValue('kill-switch', true, { tenant: 'acme' })).toBe(false);
    const res = await fetch(`${cp.url}/v1/flips`, {
      method: 'POST',
      headers: { ...bearer(TOKENS.admin), 'content-type': 'application/json' },
      body: JSON.stringify({
        action: 'halt',
        selector: { tenant: 'acme' },
        reason: 'r',
        wait: 200,
      }),
    });
    const answer = (await res.json()) as { fleet: { complete: boolean; acknowledged: unknown[] } };
    // "Complete" says nothing about OFREP workers: it never knew they existed.
    expect(answer.fleet).toMatchObject({ complete: true, acknowledged: [] });
    const workers = (await (
      await fetch(`${cp.url}/v1/workers`, { headers: bearer(TOKENS.viewer) })
    ).json()) as { workers: unknown[] };
    expect(workers.workers).toEqual([]);
  });
});

describe('KS-12.2.2 a control plane that accepts and never answers', () => {
  let hung: Server | undefined;
  afterEach(async () => {
    hung?.closeAllConnections();
    await new Promise((r) => hung?.close(r));
    hung = undefined;
  });

  it('without a deadline the evaluation waits; with timeoutFetch it reads halted', async () => {
    hung = createServer(() => {
      /* never answers */
    });
    await new Promise<void>((r) => hung!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`;
    const plain = await ofrepClient(url);
    const pending = evaluateKill(plain, { tenant: 'acme' });
    const outcome = await Promise.race([
      pending.then(() => 'answered'),
      sleep(300).then(() => 'waiting'),
    ]);
    expect(outcome).toBe('waiting');
    const bounded = await ofrepClient(url, TOKENS.viewer, 200);
    expect(await evaluateKill(bounded, { tenant: 'acme' })).toMatchObject({
      halted: true,
      cause: 'error',
    });
  });
});

describe('KS-12.2.3 no push: an effect in flight is aborted only by polling', () => {
  async function inFlight(client: Client, step: string) {
    const guard = new EffectGuard({ client, ledger: new MemorySideEffectLedger(), logger: quiet });
    cleanups.push(() => guard.close());
    let started!: () => void;
    let finish!: (v: string) => void;
    const running = new Promise<void>((r) => (started = r));
    const result = guard
      .run(effect(step), (signal) => {
        started();
        return new Promise<string>((resolve, reject) => {
          finish = resolve;
          signal.addEventListener('abort', () => reject(signal.reason));
        });
      })
      .catch((e: unknown) => e);
    await running;
    return { guard, result, finish: (v: string) => finish(v) };
  }

  it('without a poller the effect runs to the end and lands after the flip', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    const e = await inFlight(client, 'nopoll');
    await halt(cp, { tenant: 'acme' });
    // Nothing tells the worker; the body completes and is recorded as landed.
    e.finish('landed anyway');
    expect(await e.result).toBe('landed anyway');
  });

  it('with a HaltPoller the effect is aborted after the next poll', async () => {
    const { cp } = await serve();
    const client = await ofrepClient(cp.url);
    const e = await inFlight(client, 'poll');
    const poller = new HaltPoller({ watcher: e.guard.watcher, intervalMs: 50 });
    poller.start();
    cleanups.push(() => poller.stop());
    await halt(cp, { tenant: 'acme' });
    expect(await e.result).toMatchObject({ code: 'KS_ABORTED' });
    await waitFor(() => e.guard.watcher.size === 0, 2000, 'the watch to end');
  });
});
