/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
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

function openai(e: GatewayEnv, headers: Record<string, string> = {}): OpenAI {
  return new OpenAI({
    apiKey: KEY,
    baseURL: `${e.gw.url}/v1`,
    maxRetries: 0,
    defaultHeaders: headers,
  });
}

async function post(
  e: GatewayEnv,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${e.gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('KS-15.2.1 the LLM gateway forwards OpenAI and Anthropic calls, the API key untouched', () => {
  it('a chat completion through the official openai SDK lands and is recorded intent then landed', async () => {
    const e = await env();
    const r = await openai(e, { 'x-killswitch-tenant': 'acme' }).chat.completions.create({
      model: 'slow-1',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
    });
    expect(r.choices[0]!.message.content).toBe('t1 t2 t3 ');
    const seen = e.llm.requests().at(-1)!;
    // KS-15.2.7 the key passes through; the gateway's own headers do not.
    expect(seen.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(seen.headers['x-killswitch-tenant']).toBeUndefined();
    const entries = await e.ledger.entries();
    expect(entries).toHaveLength(1);
    expect(entries[0]!.capability).toBe('llm.chat.completions');
    expect(entries[0]!.context).toMatchObject({
      tenant: 'acme',
      capability: 'llm.chat.completions',
    });
    expect(entries[0]!.history.map((h) => h.status)).toEqual([
      EffectStatus.INTENT,
      EffectStatus.LANDED,
    ]);
    expect(JSON.stringify(entries)).not.toContain(KEY);
  });

  it('responses, embeddings and Anthropic messages pass through too', async () => {
    const e = await env();
    const client = openai(e);
    const resp = await client.responses.create({
      model: 'slow-1',
      input: 'hi',
      max_output_tokens: 2,
    });
    expect(resp.status).toBe('completed');
    const emb = await client.embeddings.create({ model: 'emb-1', input: 'hi' });
    expect(emb.data[0]!.embedding).toHaveLength(8);
    const msg = await post(
      e,
      '/v1/messages',
      { model: 'claude', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-api-key': KEY },
    );
    expect(msg.status).toBe(200);
    expect(JSON.parse(msg.text).content[0].text).toBe('t1 t2 ');
    expect(e.llm.requests().at(-1)!.headers['x-api-key']).toBe(KEY);
    const caps = (await e.ledger.entries()).map((x) => [x.capability, x.status]);
    expect(caps).toEqual([
      ['llm.responses', 'landed'],
      ['llm.embeddings', 'landed'],
      ['llm.messages', 'landed'],
    ]);
  });
});

describe("KS-15.2.3 a halted context is refused in the API's own format, naming the flip", () => {
  it('the openai SDK raises a typed error naming seq, level and reason; nothing reaches the upstream', async () => {
    const e = await env();
    const f = await e.halt({ tenant: 'acme' }, 'incident 42', { wait: 5000 });
    const before = e.llm.stats().started;
    const err = await openai(e, { 'x-killswitch-tenant': 'acme' })
      .chat.completions.create({ model: 'slow-1', messages: [{ role: 'user', content: 'hi' }] })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    const apiErr = err as InstanceType<typeof OpenAI.PermissionDeniedError>;
    expect(apiErr.status).toBe(403);
    expect(apiErr.code).toBe('KS_HALTED');
    expect(apiErr.message).toContain(`flip #${f.flip.seq}`);
    expect(apiErr.message).toContain('level tenant');
    expect(apiErr.message).toContain('incident 42');
    expect((apiErr.error as any).killswitch.flip).toMatchObject({
      seq: f.flip.seq,
      level: 'tenant',
      reason: 'incident 42',
    });
    expect(e.llm.stats().started).toBe(before);
    const [entry] = await e.ledger.entries();
    expect(entry!.status).toBe(EffectStatus.REFUSED);
    expect(entry!.last.flipSeq).toBe(f.flip.seq);
    // Another tenant is not touched.
    const ok = await openai(e, { 'x-killswitch-tenant': 'globex' }).chat.completions.create({
      model: 'slow-1',
      messages: [],
    });
    expect(ok.choices[0]!.message.content).toBe('t1 t2 t3 ');
  });

  it('capability, run and global halts refuse each endpoint in its format (Anthropic: permission_error)', async () => {
    const e = await env();
    await e.halt({ capability: 'llm.embeddings' }, 'embeddings off', { wait: 5000 });
    const emb = await post(e, '/v1/embeddings', { model: 'e', input: 'x' });
    expect(emb.status).toBe(403);
    expect(emb.headers.get('x-should-retry')).toBe('false');
    expect(JSON.parse(emb.text).error).toMatchObject({
      code: 'KS_HALTED',
      type: 'killswitch_halted',
      killswitch: { flip: { level: 'capability', reason: 'embeddings off' } },
    });
    expect((await post(e, '/v1/chat/completions', { model: 'm', messages: [] })).status).toBe(200);

    await e.halt({ runId: 'child-7' }, 'runaway run', { wait: 5000 });
    const run = await post(
      e,
      '/v1/responses',
      { model: 'm', input: 'x' },
      { 'x-killswitch-run-path': 'root-1,child-7' },
    );
    expect(run.status).toBe(403);
    expect(JSON.parse(run.text).error.killswitch.flip).toMatchObject({
      level: 'run',
      reason: 'runaway run',
    });

    // KS-15.2.2 a halt on an ancestor run reaches a descendant's call (the run path's root).
    const root = await e.halt({ runId: 'root-2' }, 'tree off', { wait: 5000 });
    const child = await post(
      e,
      '/v1/chat/completions',
      { model: 'm', messages: [] },
      { 'x-killswitch-run-path': 'root-2,mid,leaf-3' },
    );
    expect(child.status).toBe(403);
    expect(JSON.parse(child.text).error.killswitch.flip).toMatchObject({
      seq: root.flip.seq,
      level: 'run',
    });
    expect(
      (
        await post(
          e,
          '/v1/chat/completions',
          { model: 'm', messages: [] },
          { 'x-killswitch-run-path': 'root-3,leaf-3' },
        )
      ).status,
    ).toBe(200);

    await e.halt({}, 'all stop', { wait: 5000 });
    const msg = await post(
      e,
      '/v1/messages',
      { model: 'c', max_tokens: 1, messages: [] },
      { 'x-api-key': KEY },
    );
    expect(msg.status).toBe(403);
    const body = JSON.parse(msg.text);
    expect(body.type).toBe('error');
    expect(body.error.type).toBe('permission_error');
    expect(body.error.message).toContain('level global');
    expect(body.error.killswitch.flip.reason).toBe('all stop');
  });

  it('KS-15.2.6 an unreadable lineage header is refused with 400, never run without it', async () => {
    const e = await env();
    const r = await post(
      e,
      '/v1/chat/completions',
      { model: 'm', messages: [] },
      { 'x-killswitch-run-path': 'a,,b' },
    );
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.message).toContain('x-killswitch-run-path');
    expect(e.llm.stats().started).toBe(0);
  });
});

describe('KS-15.2.2 context from the API key (llm.keyContext) for clients that cannot send headers', () => {
  it("a halt on the tenant mapped to a key refuses that key's calls without any header; another key, a header over the mapping and the ledger never see the key", async () => {
    const OTHER = 'sk-other-key-0123456789abcdef';
    const sha = (k: string) => createHash('sha256').update(k).digest('hex');
    const e = await env({ llm: { keyContext: { [sha(KEY)]: { tenant: 'acme' } } } });
    await e.halt({ tenant: 'acme' }, 'acme off', { wait: 5000 });
    const mapped = await post(e, '/v1/chat/completions', { model: 'm', messages: [] });
    expect(mapped.status).toBe(403);
    expect(JSON.parse(mapped.text).error.killswitch.flip).toMatchObject({
      level: 'tenant',
      reason: 'acme off',
    });
    const other = await post(
      e,
      '/v1/chat/completions',
      { model: 'm', messages: [] },
      { authorization: `Bearer ${OTHER}` },
    );
    expect(other.status).toBe(200);
    // Headers say more than the mapping: the client's own tenant wins.
    const header = await post(
      e,
      '/v1/chat/completions',
      { model: 'm', messages: [] },
      { 'x-killswitch-tenant': 'globex' },
    );
    expect(header.status).toBe(200);
    const entries = await e.ledger.entries();
    expect(entries.find((x) => x.status === EffectStatus.REFUSED)?.context).toMatchObject({
      tenant: 'acme',
    });
    // KS-15.2.7 hashed for the lookup only: the key is nowhere in the ledger.
    expect(JSON.stringify(entries)).not.toContain(KEY);
    expect(JSON.stringify(entries)).not.toContain(sha(KEY));
  });
});

describe('KS-15.2.4 a halt during a stream ends it with an error event and aborts the upstream', () => {
  it('the openai SDK stream raises the typed error mid-flight; the upstream stops generating', async () => {
    const e = await env({ tokenIntervalMs: 20 });
    const stream = await openai(e, { 'x-killswitch-tenant': 'acme' }).chat.completions.create({
      model: 'slow-1',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 500,
      stream: true,
    });
    const got: string[] = [];
    let seq = 0;
    const err = await (async () => {
      try {
        for await (const chunk of stream) {
          got.push(chunk.choices[0]?.delta?.content ?? '');
          if (got.length === 3) seq = (await e.halt({ tenant: 'acme' }, 'cut the stream')).flip.seq;
        }
      } catch (x) {
        return x;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toContain(`flip #${seq}`);
    expect((err as Error).message).toContain('cut the stream');
    expect(got.length).toBeLessThan(100);
    await until(() => e.llm.stats().cancelled === 1, 3000, 'the upstream to see the cancel');
    expect(e.llm.stats().completed).toBe(0);
    const [entry] = await e.ledger.entries();
    expect(entry!.status).toBe(EffectStatus.ABORTED);
    expect(entry!.history.find((h) => h.status === EffectStatus.ABORTED)!.flipSeq).toBe(seq);
  });

  it('an Anthropic stream ends with an `error` event naming the flip', async () => {
    const e = await env({ tokenIntervalMs: 20 });
    const res = await fetch(`${e.gw.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': KEY,
        'x-killswitch-feature': 'chat',
      },
      body: JSON.stringify({ model: 'c', max_tokens: 500, stream: true, messages: [] }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = '';
    let halted = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      if (!halted && text.split('content_block_delta').length > 3) {
        halted = true;
        await e.halt({ feature: 'chat' }, 'feature off');
      }
    }
    const events = text.trim().split('\n\n');
    const last = events.at(-1)!;
    expect(last.startsWith('event: error\n')).toBe(true);
    const data = JSON.parse(last.split('\ndata: ')[1]!);
    expect(data).toMatchObject({
      type: 'error',
      error: {
        type: 'api_error',
        killswitch: { code: 'KS_ABORTED', flip: { level: 'feature', reason: 'feature off' } },
      },
    });
    // Every event before it is whole: the error never lands inside a half-written event.
    for (const ev of events.slice(0, -1)) expect(ev).toMatch(/^event: \w+\ndata: \{.*\}$/);
    await until(() => e.llm.stats().cancelled === 1, 3000, 'the upstream to see the cancel');
  });
});

describe('KS-15.1.4 a stale gateway refuses every call and cuts those in flight within staleAfterMs', () => {
  it('the control plane gone: the stream is cut, new calls get 503 naming staleness, /healthz says 503', async () => {
    const e = await env({ staleAfterMs: 800, tokenIntervalMs: 20 });
    expect((await fetch(`${e.gw.url}/healthz`)).status).toBe(200);
    const res = await fetch(`${e.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'm', messages: [], max_tokens: 1000, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    const cut = Date.now();
    await e.cp.close();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const took = Date.now() - cut;
    // The lease is renewed at most staleAfterMs before it runs out; allow scheduling slack.
    expect(took).toBeLessThan(800 + 700);
    expect(text.trim().split('\n\n').at(-1)).toContain('"cause":"stale"');
    const r = await post(e, '/v1/chat/completions', { model: 'm', messages: [] });
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text).error).toMatchObject({
      code: 'KS_HALTED',
      killswitch: { cause: 'stale' },
    });
    expect((await fetch(`${e.gw.url}/healthz`)).status).toBe(503);
    await until(() => e.llm.stats().cancelled === 1, 3000, 'the upstream to see the cancel');
  });
});
