/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { createServer } from 'node:net';
import OpenAI from 'openai';
import { register } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { EffectStatus } from '../../src/ledger/index.js';
import { gatewayEnv, until, type GatewayEnv } from './harness.js';

const envs: GatewayEnv[] = [];
afterEach(async () => {
  for (const e of envs.splice(0)) await e.close();
});
async function env(o: Parameters<typeof gatewayEnv>[0] = {}): Promise<GatewayEnv> {
  const e = await gatewayEnv(o);
  envs.push(e);
  return e;
}

const KEY = 'sk-test-secret-key-0123456789';
const client = (e: GatewayEnv, headers: Record<string, string> = {}) =>
  new OpenAI({ apiKey: KEY, baseURL: `${e.gw.url}/v1`, maxRetries: 0, defaultHeaders: headers });

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

const metrics = async (e: GatewayEnv) => (await fetch(`${e.gw.url}/metrics`)).text();

const statuses = async (e: GatewayEnv) =>
  (await e.ledger.entries()).map((x) => x.history.map((h) => h.status));

describe('KS-15.1.3 every call through the gateway is a guarded effect recorded intent, then its outcome', () => {
  it('an upstream that cannot be reached: intent then failed', async () => {
    const port = await closedPort();
    const e = await env({ config: { llm: { openai: `http://127.0.0.1:${port}` } } as any });
    const err = await client(e)
      .chat.completions.create({ model: 'm', messages: [] })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(await statuses(e)).toEqual([[EffectStatus.INTENT, EffectStatus.FAILED]]);
  });

  it('KS-15.2.5 KS-15.5.2 a whole (non-streamed) call in flight: the halt aborts its upstream request; intent, then aborted', async () => {
    const e = await env({ tokens: 400, tokenIntervalMs: 20 });
    const p = client(e, { 'x-killswitch-tenant': 'acme' })
      .chat.completions.create({ model: 'slow-1', messages: [], max_tokens: 400 })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    await until(() => e.llm.stats().open === 1, 5000, 'the upstream to start');
    // KS-15.5.2 calls in flight are counted while they run.
    expect(await metrics(e)).toContain('killswitch_gateway_in_flight{seam="llm"} 1');
    const { flip } = await e.halt({ tenant: 'acme' }, 'stop acme');
    const err = await p;
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toContain(`flip #${flip.seq}`);
    // The model stops generating: the upstream saw its request cancelled, never completed.
    await until(() => e.llm.stats().cancelled === 1, 3000, 'the upstream to see the cancel');
    expect(e.llm.stats().completed).toBe(0);
    // (The body's own rejection after the cut is recorded as aborted again: still in doubt.)
    const [history] = await statuses(e);
    expect(history![0]).toBe(EffectStatus.INTENT);
    expect(history!.slice(1)).toContain(EffectStatus.ABORTED);
    expect(history).not.toContain(EffectStatus.LANDED);
    expect((await e.ledger.entries())[0]!.status).toBe(EffectStatus.ABORTED);
    // KS-15.5.2 the cut is counted by outcome and cause, in the gateway's own registry.
    const text = await metrics(e);
    expect(text).toContain(
      'killswitch_gateway_calls_total{seam="llm",target="chat.completions",outcome="aborted"} 1',
    );
    expect(text).toContain(
      'killswitch_gateway_aborts_total{seam="llm",target="chat.completions",cause="halted"} 1',
    );
    expect(text).toContain('killswitch_gateway_in_flight{seam="llm"} 0');
    expect(text).toContain('killswitch_gateway_source_fresh 1');
    expect(await register.metrics()).not.toContain('killswitch_gateway_');
  });
});

describe('KS-15.1.5 a refusal names the flip (seq, level, reason, selector, actor) in the seam format, or says the gateway failed closed and why', () => {
  it('OpenAI and Anthropic formats carry the whole flip; the message names selector and actor', async () => {
    const e = await env();
    const { flip } = await e.halt({ tenant: 'acme', feature: 'triage' }, 'triage loops', {
      wait: 5000,
    });
    const headers = {
      'content-type': 'application/json',
      'x-killswitch-tenant': 'acme',
      'x-killswitch-feature': 'triage',
    };
    const oa = await fetch(`${e.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'm', messages: [] }),
    });
    const an = await fetch(`${e.gw.url}/v1/messages`, {
      method: 'POST',
      headers: { ...headers, 'x-api-key': KEY },
      body: JSON.stringify({ model: 'm', max_tokens: 1, messages: [] }),
    });
    const want = {
      seq: flip.seq,
      level: 'tenant',
      reason: 'triage loops',
      selector: { tenant: 'acme', feature: 'triage' },
      actor: flip.actor,
    };
    const oaBody = (await oa.json()) as any;
    expect(oa.status).toBe(403);
    expect(oaBody.error.killswitch.flip).toMatchObject(want);
    expect(oaBody.error.message).toContain(`flip #${flip.seq}`);
    expect(oaBody.error.message).toContain(`by ${flip.actor}: triage loops`);
    expect(oaBody.error.message).toMatch(/tenant=acme/);
    const anBody = (await an.json()) as any;
    expect(an.status).toBe(403);
    expect(anBody).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
    expect(anBody.error.killswitch.flip).toMatchObject(want);
    expect(e.llm.stats().started).toBe(0);
  });

  it('failing closed: the answer says so and why, naming no flip', async () => {
    const e = await env({ staleAfterMs: 600 });
    await e.cp.close();
    await until(
      async () => (await fetch(`${e.gw.url}/healthz`)).status === 503,
      5000,
      'the gateway to go stale',
    );
    const r = await fetch(`${e.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'm', messages: [] }),
    });
    const body = (await r.json()) as any;
    expect(r.status).toBe(503);
    expect(body.error.killswitch.cause).toBe('stale');
    expect(body.error.killswitch.flip).toBeUndefined();
    expect(body.error.message).toMatch(/stale; failing closed/);
    // KS-15.5.2 freshness and refusals by cause.
    const text = await metrics(e);
    expect(text).toContain('killswitch_gateway_source_fresh 0');
    expect(text).toContain(
      'killswitch_gateway_refusals_total{seam="llm",target="chat.completions",cause="stale"} 1',
    );
  });
});
