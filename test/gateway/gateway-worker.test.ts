/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { afterEach, describe, expect, it } from 'vitest';
import { Gateway, parseGatewayConfig } from '../../src/gateway/index.js';
import { ValidationError } from '../../src/errors.js';
import { TOKENS, call, gatewayEnv, silent, type GatewayEnv } from './harness.js';

const envs: GatewayEnv[] = [];
afterEach(async () => {
  for (const e of envs.splice(0)) await e.close();
});

const valid = {
  workerId: 'gw-1',
  controlPlane: { urls: ['http://127.0.0.1:7070'] },
  llm: { openai: 'http://127.0.0.1:9999' },
};

describe('KS-15.1.2 a bad configuration refuses to start, naming the field', () => {
  it.each([
    [
      { ...valid, controlPlane: { urls: ['ftp://x'] } },
      'controlPlane.urls.0: must be an http(s) URL',
    ],
    [{ ...valid, workerId: 'has space' }, 'workerId'],
    [
      { ...valid, controlPlane: { urls: ['http://a'], staleAfterMs: 500, heartbeatMs: 500 } },
      'controlPlane.heartbeatMs',
    ],
    [{ ...valid, mcp: { upstreams: { 'a.b': { command: 'x' } } } }, 'mcp.upstreams.a.b'],
    [{ ...valid, llm: { openai: 'http://x', extra: 1 } }, 'llm'],
    [{ workerId: 'gw', controlPlane: { urls: ['http://a'] } }, 'configure llm, mcp or both'],
    [{ ...valid, listen: { port: 70000 } }, 'listen.port'],
  ])('%j is refused naming %s', async (input, field) => {
    expect(() => parseGatewayConfig(input)).toThrow(ValidationError);
    expect(() => parseGatewayConfig(input)).toThrow(field);
    await expect(Gateway.start({ config: input as any, logger: silent })).rejects.toThrow(field);
  });

  it('a non-loopback bind needs listen.allowRemote; an unset token variable is named', async () => {
    await expect(
      Gateway.start({ config: { ...valid, listen: { host: '0.0.0.0', port: 0 } }, logger: silent }),
    ).rejects.toThrow('listen.allowRemote');
    await expect(
      Gateway.start({
        config: {
          ...valid,
          controlPlane: { urls: ['http://127.0.0.1:1'], tokenEnv: 'KS_GW_NOPE' },
        },
        env: {},
        logger: silent,
      }),
    ).rejects.toThrow('controlPlane.tokenEnv: environment variable KS_GW_NOPE is not set');
  });
});

describe('KS-15.1.1 the gateway follows the control plane as a worker under its own id', () => {
  it("it is listed in the fleet and counted in a flip's stop-complete", async () => {
    const e = await gatewayEnv();
    envs.push(e);
    const workers = (await call(e.cp, 'GET', '/v1/workers', { token: TOKENS.viewer })).json.workers;
    expect(workers.map((w: any) => w.id)).toContain('gateway-1');
    const f = await e.halt({ tenant: 'acme' }, 'fleet check', { wait: 5000 });
    expect(f.fleet.complete).toBe(true);
    expect(f.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
    expect(e.gw.appliedSeq).toBe(f.flip.seq);
  });

  it('KS-15.5.1 /healthz and /metrics say what the gateway does', async () => {
    const e = await gatewayEnv();
    envs.push(e);
    const h = await (await fetch(`${e.gw.url}/healthz`)).json();
    expect(h).toMatchObject({ status: 'ok', workerId: 'gateway-1', source: 'open' });
    await fetch(`${e.gw.url}/v1/embeddings`, { method: 'POST', body: '{"input":"x"}' });
    await e.halt({}, 'global', { wait: 5000 });
    await fetch(`${e.gw.url}/v1/embeddings`, { method: 'POST', body: '{"input":"x"}' });
    const text = await (await fetch(`${e.gw.url}/metrics`)).text();
    expect(text).toContain(
      'killswitch_gateway_calls_total{seam="llm",target="embeddings",outcome="landed"} 1',
    );
    expect(text).toContain(
      'killswitch_gateway_calls_total{seam="llm",target="embeddings",outcome="refused"} 1',
    );
    expect(text).toContain(
      'killswitch_gateway_refusals_total{seam="llm",target="embeddings",cause="halted"} 1',
    );
    expect(text).toContain('killswitch_gateway_source_fresh 1');
    expect(text).toMatch(
      /killswitch_gateway_upstream_latency_seconds_count\{seam="llm",target="embeddings"\} 1/,
    );
  });
});
