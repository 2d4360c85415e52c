/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MCP_HALTED_ERROR_CODE } from '../../src/gateway/index.js';
import { EffectStatus } from '../../src/ledger/index.js';
import { gatewayEnv, until, type GatewayEnv } from './harness.js';

/**
 * The Python clients nobody here wrote (`mcp` 2.x, `openai`), from the virtual environment
 * .ci/run creates (KILLSWITCH_PYTHON), else .venv-ci, created here by the same script when it is
 * missing. Under CI=true an environment that cannot be had fails the suite; elsewhere the suite
 * is skipped and says why.
 */
const CI = process.env['CI'] === 'true';
function findPython(): { path: string; problem?: string } {
  const given = process.env['KILLSWITCH_PYTHON'];
  if (given !== undefined)
    return existsSync(given)
      ? { path: given }
      : { path: given, problem: `KILLSWITCH_PYTHON=${given} does not exist` };
  const r = spawnSync('bash', [resolve('.ci/python-venv.sh')], {
    encoding: 'utf8',
    timeout: 240_000,
  });
  const path = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status === 0 && existsSync(path)) return { path };
  return {
    path,
    problem: `.ci/python-venv.sh failed (${r.status ?? r.signal}): ${r.stderr.slice(-500)}`,
  };
}
const found = findPython();
const PYTHON = found.path;
const HAVE_PYTHON = found.problem === undefined;
if (!HAVE_PYTHON && !CI) console.warn(`KS-15.6 Python client tests skipped: ${found.problem}`);
const HERE = fileURLToPath(new URL('.', import.meta.url));
const UPSTREAM = join(HERE, 'mcp-upstream.mjs');

if (!HAVE_PYTHON && CI) {
  describe('KS-15.6.4 Python clients need the environment .ci/run makes', () => {
    it('needs the virtual environment .ci/run creates', () => {
      throw new Error(
        `no Python with mcp and openai at ${PYTHON}: run .ci/run (python3 -m venv .venv-ci; pip install mcp openai) or set KILLSWITCH_PYTHON`,
      );
    });
  });
}

/** A Python script's JSON lines as they arrive, and its exit. */
interface PyRun {
  lines: any[];
  exited: Promise<number | null>;
  stderr(): string;
}

function py(script: string, args: string[]): PyRun {
  const child = spawn(PYTHON, [join(HERE, 'python', script), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: any[] = [];
  let buf = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('{')) lines.push(JSON.parse(line));
    }
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return { lines, exited, stderr: () => err };
}

async function outcome(run: PyRun): Promise<any> {
  const code = await run.exited;
  const last = run.lines.at(-1);
  if (code !== 0 || last === undefined) throw new Error(`python exited ${code}: ${run.stderr()}`);
  return last;
}

describe.skipIf(!HAVE_PYTHON)(
  'KS-15.6 Python clients through the gateway, from the environment .ci/python-venv.sh makes (KS-15.6.4)',
  () => {
    let e: GatewayEnv;
    let dir: string;
    const events = (): any[] => {
      try {
        return readFileSync(join(dir, 'events.jsonl'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l));
      } catch {
        return [];
      }
    };
    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'ks-gw-py-'));
      e = await gatewayEnv({
        tokenIntervalMs: 20,
        config: {
          mcp: {
            upstreams: {
              tools: { command: process.execPath, args: [UPSTREAM, join(dir, 'events.jsonl')] },
            },
          },
        },
      });
    });
    afterEach(async () => {
      await e.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const mcpUrl = () => `${e.gw.url}/mcp`;
    const meta = (tenant: string, runPath: string[] = []) =>
      JSON.stringify({ 'dev.killswitch/lineage': { tenant, runPath } });

    it('KS-15.6.1 the Python mcp client calls a tool; halts at capability, tenant, run and global refuse it with the typed error', async () => {
      const ok = await outcome(
        py('mcp_call.py', [
          mcpUrl(),
          'tools__refund',
          '{"order": 1}',
          meta('acme', ['root', 'r1']),
        ]),
      );
      expect(ok).toMatchObject({
        event: 'result',
        content: [{ type: 'text', text: 'refunded 1' }],
        isError: false,
      });
      const cases: [Record<string, string>, string, string][] = [
        [{ capability: 'tools.refund' }, 'capability', meta('acme')],
        [{ tenant: 'globex' }, 'tenant', meta('globex')],
        [{ runId: 'r7' }, 'run', meta('initech', ['root', 'r7'])],
        [{}, 'global', meta('initech')],
      ];
      for (const [selector, level, m] of cases) {
        const f = await e.halt(selector, `py ${level}`, { wait: 5000 });
        const r = await outcome(py('mcp_call.py', [mcpUrl(), 'tools__refund', '{"order": 2}', m]));
        expect(r).toMatchObject({
          event: 'error',
          type: 'MCPError',
          code: MCP_HALTED_ERROR_CODE,
          data: { code: 'KS_HALTED', flip: { seq: f.flip.seq, level, reason: `py ${level}` } },
        });
        expect(r.message).toContain(`flip #${f.flip.seq}`);
        await e.flip({ action: 'resume', selector, reason: 'next case', wait: 5000 });
      }
      // Only the first call reached the upstream.
      expect(events().filter((x) => x.type === 'call')).toHaveLength(1);
    }, 180_000);

    it("KS-15.6.2 a halt cancels the Python client's call in flight upstream; nothing lands after stop-complete", async () => {
      const run = py('mcp_call.py', [mcpUrl(), 'tools__slow', '{"ms": 10000}', meta('acme')]);
      // A Python process starting under load (the suite runs beside others on 2 cores) takes seconds.
      await until(() => events().some((x) => x.type === 'call'), 90_000, 'the upstream call');
      const f = await e.halt({ tenant: 'acme' }, 'stop the python agent', { wait: 5000 });
      expect(f.fleet.complete).toBe(true);
      expect(f.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
      const r = await outcome(run);
      expect(r).toMatchObject({
        event: 'error',
        code: MCP_HALTED_ERROR_CODE,
        data: { code: 'KS_ABORTED', flip: { seq: f.flip.seq, level: 'tenant' } },
      });
      await until(() => events().some((x) => x.type === 'cancelled'), 5000, 'the upstream cancel');
      // After stop-complete nothing lands: give the slow tool time it would have needed to land.
      await new Promise((res) => setTimeout(res, 300));
      expect(events().filter((x) => x.type === 'landed')).toHaveLength(0);
      const [entry] = await e.ledger.entries();
      expect(entry!.history.find((h) => h.status === EffectStatus.ABORTED)!.flipSeq).toBe(
        f.flip.seq,
      );
    }, 180_000);

    it('KS-15.6.3 the Python openai client streams; halts at capability, tenant, run and global each end a stream mid-flight with its APIError naming the flip, stop the upstream, and refuse a new call with PermissionDeniedError', async () => {
      const ok = await outcome(py('openai_stream.py', [`${e.gw.url}/v1`, '{}', '3', '1']));
      expect(ok).toEqual({ event: 'done', text: 't1 t2 t3 ' });
      const cases: [Record<string, string>, string, Record<string, string>][] = [
        [
          { capability: 'llm.chat.completions' },
          'capability',
          { 'x-killswitch-tenant': 'initech' },
        ],
        [{ tenant: 'acme' }, 'tenant', { 'x-killswitch-tenant': 'acme' }],
        [
          { runId: 'r7' },
          'run',
          { 'x-killswitch-tenant': 'initech', 'x-killswitch-run-path': 'root,r7' },
        ],
        [{}, 'global', { 'x-killswitch-tenant': 'initech' }],
      ];
      for (const [selector, level, headers] of cases) {
        const reason = `stop streaming at ${level}`;
        const run = py('openai_stream.py', [
          `${e.gw.url}/v1`,
          JSON.stringify(headers),
          '1000',
          '1',
        ]);
        await until(() => run.lines.length >= 3, 90_000, `three streamed chunks (${level})`);
        const before = e.llm.stats().cancelled;
        const f = await e.halt(selector, reason, { wait: 5000 });
        expect(f.fleet.complete).toBe(true);
        const r = await outcome(run);
        expect(r).toMatchObject({ event: 'error', type: 'APIError', code: 'KS_ABORTED' });
        expect(r.message).toContain(`flip #${f.flip.seq} at level ${level}`);
        expect(r.message).toContain(reason);
        expect(run.lines.filter((l) => l.event === 'chunk').length).toBeLessThan(1000);
        await until(
          () => e.llm.stats().cancelled === before + 1,
          5000,
          `the upstream cancel (${level})`,
        );
        // A new call is refused with the typed PermissionDeniedError, nothing sent upstream.
        const started = e.llm.stats().started;
        const refused = await outcome(
          py('openai_stream.py', [`${e.gw.url}/v1`, JSON.stringify(headers), '3', '1']),
        );
        expect(refused).toMatchObject({
          event: 'error',
          type: 'PermissionDeniedError',
          status: 403,
          code: 'KS_HALTED',
        });
        expect(refused.message).toContain(`flip #${f.flip.seq} at level ${level}`);
        expect(e.llm.stats().started).toBe(started);
        // Nothing landed upstream after the stop: only the first call ever completed.
        expect(e.llm.stats().completed).toBe(1);
        await e.flip({ action: 'resume', selector, reason: 'next level', wait: 5000 });
      }
      expect(e.llm.stats().cancelled).toBe(cases.length);
    }, 180_000);
  },
);

/**
 * A fake Anthropic Messages API upstream (no internet here): `POST /v1/messages`, whole or
 * streamed as the API streams (message_start, content_block_start, a content_block_delta per
 * token every 20 ms, content_block_stop, message_delta, message_stop). It records the headers it
 * got and whether a stream was cut before its end.
 */
async function fakeAnthropic() {
  const seen = { requests: 0, cut: 0, completed: 0, headers: [] as Record<string, unknown>[] };
  const sse = (res: ServerResponse, event: string, data: unknown) =>
    res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...(data as object) })}\n\n`);
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/messages') return void res.writeHead(404).end();
      seen.requests++;
      seen.headers.push({ ...req.headers });
      const body = JSON.parse(text);
      const message = {
        id: `msg_${seen.requests}`,
        type: 'message',
        role: 'assistant',
        model: body.model,
        content: [] as unknown[],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 1, output_tokens: 0 },
      };
      if (body.stream !== true) {
        const words = Array.from({ length: body.max_tokens }, (_, i) => `w${i + 1} `).join('');
        const whole = {
          ...message,
          content: [{ type: 'text', text: words }],
          stop_reason: 'end_turn',
        };
        seen.completed++;
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_fake' });
        return void res.end(JSON.stringify(whole));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      sse(res, 'message_start', { message });
      sse(res, 'content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      let i = 0;
      const timer = setInterval(() => {
        if (++i <= body.max_tokens) {
          sse(res, 'content_block_delta', {
            index: 0,
            delta: { type: 'text_delta', text: `w${i} ` },
          });
          return;
        }
        clearInterval(timer);
        sse(res, 'content_block_stop', { index: 0 });
        sse(res, 'message_delta', {
          delta: { stop_reason: 'end_turn', stop_sequence: null },
          usage: { output_tokens: body.max_tokens },
        });
        sse(res, 'message_stop', {});
        seen.completed++;
        res.end();
      }, 20);
      res.on('close', () => {
        if (!res.writableFinished) {
          clearInterval(timer);
          seen.cut++;
        }
      });
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    seen,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    async close() {
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

describe.skipIf(!HAVE_PYTHON)(
  'KS-15.6.5 the official Python anthropic client through the gateway, in front of a fake Messages API',
  () => {
    let e: GatewayEnv;
    let up: Awaited<ReturnType<typeof fakeAnthropic>>;
    beforeEach(async () => {
      up = await fakeAnthropic();
      e = await gatewayEnv({ config: { llm: { anthropic: up.url } } });
    });
    afterEach(async () => {
      await e.close();
      await up.close();
    });
    const acme = JSON.stringify({ 'x-killswitch-tenant': 'acme' });

    it('KS-15.6.5 whole and streamed calls land, the API key untouched; a halt mid-stream raises its APIError naming the flip and cuts the upstream; a new call raises PermissionDeniedError', async () => {
      const whole = await outcome(py('anthropic_stream.py', [e.gw.url, acme, '3', '0']));
      expect(whole).toEqual({ event: 'done', text: 'w1 w2 w3 ' });
      const streamed = await outcome(py('anthropic_stream.py', [e.gw.url, acme, '3', '1']));
      expect(streamed).toEqual({ event: 'done', text: 'w1 w2 w3 ' });
      // The key passes through as the SDK sent it; the gateway's own headers stay behind.
      expect(up.seen.headers.map((h) => h['x-api-key'])).toEqual([
        'sk-ant-python-secret-0123',
        'sk-ant-python-secret-0123',
      ]);
      expect(up.seen.headers.some((h) => 'x-killswitch-tenant' in h)).toBe(false);

      const run = py('anthropic_stream.py', [e.gw.url, acme, '1000', '1']);
      await until(() => run.lines.length >= 3, 90_000, 'three streamed deltas');
      const f = await e.halt({ tenant: 'acme' }, 'stop claude', { wait: 5000 });
      expect(f.fleet.complete).toBe(true);
      const r = await outcome(run);
      expect(r.event).toBe('error');
      expect(r.message).toContain(`flip #${f.flip.seq} at level tenant`);
      expect(r.message).toContain('stop claude');
      // The stream's own error event (the Messages API's format), the flip in `error.killswitch`.
      expect(r.body).toMatchObject({
        type: 'error',
        error: {
          type: 'api_error',
          killswitch: { code: 'KS_ABORTED', flip: { seq: f.flip.seq, level: 'tenant' } },
        },
      });
      expect(run.lines.filter((l) => l.event === 'chunk').length).toBeLessThan(1000);
      await until(() => up.seen.cut === 1, 5000, 'the upstream stream to be cut');
      const after = run.lines.length;

      const requests = up.seen.requests;
      const refused = await outcome(py('anthropic_stream.py', [e.gw.url, acme, '3', '0']));
      expect(refused).toMatchObject({ event: 'error', type: 'PermissionDeniedError', status: 403 });
      expect(refused.message).toContain(`flip #${f.flip.seq}`);
      expect(refused.body).toMatchObject({
        type: 'error',
        error: {
          type: 'permission_error',
          killswitch: { code: 'KS_HALTED', flip: { seq: f.flip.seq, level: 'tenant' } },
        },
      });
      expect(up.seen.requests).toBe(requests); // nothing sent upstream
      expect(run.lines.length).toBe(after);
      expect(up.seen.completed).toBe(2);
    }, 240_000);
  },
);
