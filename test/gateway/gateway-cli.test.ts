/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSlowLlmServer, type SlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import type { ControlPlane } from '../../src/server/index.js';
import { runCli, MAIN } from '../fixtures/run-cli.js';
import { stopCli } from '../fixtures/serve-cli.js';
import { TOKENS, call, startTestServer } from '../server/helpers.js';
import { until } from './harness.js';

const UPSTREAM = fileURLToPath(new URL('./mcp-upstream.mjs', import.meta.url));

let dir: string;
let cp: ControlPlane;
let llm: SlowLlmServer;
const children: ChildProcess[] = [];
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ks-gw-cli-'));
  ({ cp } = await startTestServer({ staleAfterMs: 1500, leaseMarginMs: 100, heartbeatMs: 200 }));
  llm = await startSlowLlmServer({ tokens: 2, tokenIntervalMs: 5 });
});
afterEach(async () => {
  for (const c of children.splice(0)) await stopCli(c);
  await llm.close();
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(extra: Record<string, unknown> = {}): string {
  const path = join(dir, 'gateway.json');
  writeFileSync(
    path,
    JSON.stringify({
      workerId: 'gw-cli',
      controlPlane: {
        urls: [cp.url],
        tokenEnv: 'KS_GW_TOKEN',
        staleAfterMs: 1500,
        heartbeatMs: 200,
      },
      ...(extra.mcp === undefined ? { llm: { openai: llm.url } } : {}),
      ledger: { kind: 'file', path: join(dir, 'ledger.jsonl') },
      ...extra,
    }),
  );
  return path;
}

const flip = async (body: Record<string, unknown>) =>
  (await call(cp, 'POST', '/v1/flips', { token: TOKENS.admin, body })).json;

describe('KS-15.4.1 killswitch gateway --config', () => {
  it('a bad configuration refuses to start, naming the field (exit 1)', async () => {
    const path = join(dir, 'bad.json');
    writeFileSync(
      path,
      JSON.stringify({
        workerId: 'gw',
        controlPlane: { urls: ['nope'] },
        llm: { openai: llm.url },
      }),
    );
    const r = await runCli(['gateway', '--config', path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('controlPlane.urls.0: must be an http(s) URL');
    const missing = await runCli(['gateway']);
    expect(missing.code).toBe(2);
  });

  it('serves the LLM seam, follows flips, records to its file ledger, and stops on SIGTERM', async () => {
    const path = writeConfig();
    const child = spawn(
      process.execPath,
      [MAIN, 'gateway', '--config', path, '--port', '0', '--json'],
      {
        env: { PATH: process.env['PATH'] ?? '', KS_GW_TOKEN: TOKENS.worker },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('"url"'), 20_000, `the start line (${out})`);
    const start = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!);
    expect(start).toMatchObject({ workerId: 'gw-cli', seams: ['llm'] });
    await until(async () => (await fetch(`${start.url}/healthz`)).status === 200, 10_000, 'fresh');
    const body = JSON.stringify({ model: 'm', messages: [] });
    const ok = await fetch(`${start.url}/v1/chat/completions`, {
      method: 'POST',
      body,
      headers: { authorization: 'Bearer sk-cli-secret' },
    });
    expect(ok.status).toBe(200);
    const f = await flip({ action: 'halt', selector: {}, reason: 'cli stop', wait: 5000 });
    expect(f.fleet.acknowledged.map((a: any) => a.workerId)).toContain('gw-cli');
    const no = await fetch(`${start.url}/v1/chat/completions`, { method: 'POST', body });
    expect(no.status).toBe(403);
    expect(await stopCli(child)).toBe(0);
    const ledger = readFileSync(join(dir, 'ledger.jsonl'), 'utf8');
    expect(ledger).toContain('"status":"landed"');
    expect(ledger).toContain('"status":"refused"');
    expect(ledger).not.toContain('sk-cli-secret');
    expect(out).not.toContain('sk-cli-secret');
  });

  it('--stdio serves MCP on stdin/stdout; a halt cancels the call in flight upstream', async () => {
    const events = join(dir, 'events.jsonl');
    const path = writeConfig({
      mcp: { upstreams: { tools: { command: process.execPath, args: [UPSTREAM, events] } } },
    });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MAIN, 'gateway', '--config', path, '--stdio'],
      env: { PATH: process.env['PATH'] ?? '', KS_GW_TOKEN: TOKENS.worker },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'stdio-agent', version: '1.0.0' });
    await client.connect(transport);
    try {
      expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual([
        'tools__refund',
        'tools__report',
        'tools__slow',
      ]);
      // Calls are refused until the gateway's state is fresh; wait for a call to pass.
      await until(
        async () =>
          client.callTool({ name: 'tools__refund', arguments: { order: 1 } }).then(
            () => true,
            () => false,
          ),
        10_000,
        'the gateway to be fresh',
      );
      const pending = client
        .callTool({
          name: 'tools__slow',
          arguments: { ms: 10_000 },
          _meta: { 'dev.killswitch/lineage': { tenant: 'acme', runPath: [] } },
        })
        .then(
          () => undefined,
          (x: unknown) => x,
        );
      const seen = () => readFileSync(events, 'utf8');
      await until(() => seen().includes('"tool":"slow"'), 5000, 'the upstream call');
      await flip({ action: 'halt', selector: { tenant: 'acme' }, reason: 'stdio stop' });
      const err = (await pending) as McpError;
      expect(err).toBeInstanceOf(McpError);
      expect(err.data).toMatchObject({
        code: 'KS_ABORTED',
        flip: { level: 'tenant', reason: 'stdio stop' },
      });
      await until(() => seen().includes('"type":"cancelled"'), 5000, 'the upstream cancel');
    } finally {
      await client.close();
    }
  });
});
