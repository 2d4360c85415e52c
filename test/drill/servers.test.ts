import { afterEach, describe, expect, it } from 'vitest';
import { startEffectSink, type EffectSink } from '../../src/drill/servers/effect-sink.js';
import { startSlowLlmServer, type SlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import { readClock } from '../fixtures/clock.js';

let sink: EffectSink | undefined;
let llm: SlowLlmServer | undefined;
afterEach(async () => {
  await sink?.close();
  await llm?.close();
  sink = undefined;
  llm = undefined;
});

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

describe('KS-9.2.1 the effect sink records each effect: arrival time, idempotency key and context', () => {
  it('records a landed effect with its dispatch stamp and lists it over HTTP', async () => {
    let t = 1000;
    sink = await startEffectSink({ clock: readClock(() => t++) });
    const res = await post(
      `${sink.url}/effects`,
      {
        key: 'r1/s1',
        context: { tenant: 'acme', runId: 'r1', capability: 'x', other: 'dropped' },
        capability: 'x',
        workerId: 'w1',
        kind: 'run',
        attempt: 2,
      },
      { 'x-drill-sent-at': '999.5' },
    );
    expect(res.status).toBe(200);
    expect(sink.effects).toEqual([
      {
        at: 1000,
        sentAt: 999.5,
        key: 'r1/s1',
        context: { tenant: 'acme', runId: 'r1', capability: 'x' },
        capability: 'x',
        workerId: 'w1',
        kind: 'run',
        attempt: 2,
      },
    ]);
    const listed = (await (await fetch(`${sink.url}/effects?since=0`)).json()) as {
      effects: unknown[];
    };
    expect(listed.effects).toHaveLength(1);
  });

  it('rejects an attempt marked to fail with 503 and does not count it as landed', async () => {
    sink = await startEffectSink();
    const res = await post(
      `${sink.url}/effects`,
      { key: 'k', capability: 'x', workerId: 'w1' },
      { 'x-drill-fail': '1' },
    );
    expect(res.status).toBe(503);
    expect(sink.effects).toEqual([]);
    expect(sink.rejected).toBe(1);
  });

  it('refuses a malformed effect with 400', async () => {
    sink = await startEffectSink();
    expect((await post(`${sink.url}/effects`, { nokey: 1 })).status).toBe(400);
    expect(sink.effects).toEqual([]);
  });

  it('refuses a bad port at construction', async () => {
    await expect(startEffectSink({ port: -1 })).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
    });
  });
});

describe('KS-9.2.2 the slow LLM streams tokens slowly and stops generating when the client goes away', () => {
  it('streams every token to a patient client', async () => {
    llm = await startSlowLlmServer({ tokens: 3, tokenIntervalMs: 1 });
    const text = await (
      await fetch(`${llm.url}/v1/generate`, { method: 'POST', body: '{}' })
    ).text();
    expect(text.trim().split('\n')).toHaveLength(3);
    expect(llm.stats()).toMatchObject({ started: 1, completed: 1, cancelled: 0, open: 0 });
  });

  it('counts an aborted call as cancelled and keeps nothing open', async () => {
    llm = await startSlowLlmServer({ tokens: 1000, tokenIntervalMs: 20 });
    const controller = new AbortController();
    const res = await fetch(`${llm.url}/v1/generate`, {
      method: 'POST',
      body: '{}',
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await expect(reader.read()).rejects.toThrow();
    // The server learns of the disconnect asynchronously: wait for the observable count.
    await expect.poll(() => llm!.stats().cancelled, { timeout: 5_000 }).toBe(1);
    expect(llm.stats()).toMatchObject({ completed: 0, open: 0 });
  });
});
