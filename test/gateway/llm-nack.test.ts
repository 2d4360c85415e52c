/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { gatewayEnv, until, type GatewayEnv } from './harness.js';

/**
 * An OpenAI-compatible upstream written by hand: `/v1/chat/completions` streams 64 KB events as
 * fast as its client takes them, until its client goes away (noted in `closed`).
 */
async function floodingUpstream() {
  const state = { calls: 0, blocked: false, closed: 0 };
  const data = 'x'.repeat(64 * 1024);
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      state.calls++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const event = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: data } }] })}\n\n`;
      const pump = (): void => {
        while (!res.destroyed) {
          if (!res.write(event)) {
            state.blocked = true;
            res.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    res.on('close', () => state.closed++);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    state,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    async close() {
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

let e: GatewayEnv | undefined;
let up: Awaited<ReturnType<typeof floodingUpstream>> | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await e?.close();
  await up?.close();
  e = up = undefined;
});

describe('KS-15.2.8 a halt that cuts an LLM call is enforced once the upstream is closed and the client has the end', () => {
  it('a client that reads: the cut is enforced at once, the flip completes with nothing unenforced', async () => {
    up = await floodingUpstream();
    e = await gatewayEnv({ config: { llm: { openai: up.url } } });
    const res = await fetch(`${e.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-killswitch-tenant': 'acme' },
      body: JSON.stringify({ model: 'm', messages: [], stream: true }),
    });
    const text = res.text();
    await until(() => up!.state.calls === 1, 5000, 'the upstream call');
    await new Promise((r) => setTimeout(r, 300));
    const r = await e.halt({ tenant: 'acme' }, 'stop acme', { wait: 5000 });
    expect((await text).endsWith('\n\n')).toBe(true);
    expect(await text).toContain('event: error');
    expect(r.fleet.complete).toBe(true);
    expect(r.fleet.unenforced).toEqual([]);
    expect(r.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
    expect(up.state.closed).toBe(1);
  }, 30_000);
});
