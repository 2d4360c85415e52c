/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlipFleetStatus } from '../../src/server/index.js';
import { gatewayEnv, until, type GatewayEnv } from './harness.js';

/**
 * An OpenAI-compatible upstream written by hand: `/v1/chat/completions` streams 64 KB events as
 * fast as its client takes them (or one every `paceMs`), until its client goes away (noted in
 * `closed`).
 */
async function floodingUpstream(paceMs?: number) {
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
          if (paceMs !== undefined) {
            setTimeout(pump, paceMs);
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

/**
 * The client that stops reading (test/gateway/python/slow_reader.py): Python's standard library
 * only, so any python3 runs it (KILLSWITCH_PYTHON, the environment .ci/run makes, when set). A
 * Node client cannot make its receive buffer small (net.Socket has no SO_RCVBUF): on loopback the
 * kernel's autotuned buffers took the cut's end every time.
 */
const PYTHON = process.env['KILLSWITCH_PYTHON'] ?? 'python3';
const SLOW_READER = join(fileURLToPath(new URL('.', import.meta.url)), 'python', 'slow_reader.py');

function slowReader(gatewayUrl: string, tenant: string) {
  const u = new URL(gatewayUrl);
  const child: ChildProcessWithoutNullStreams = spawn(PYTHON, [
    SLOW_READER,
    u.hostname,
    u.port,
    tenant,
  ]);
  const lines: any[] = [];
  let buf = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    child,
    lines,
    exited,
    stderr: () => err,
    /** Tells the client to read on. */
    readOn: () => child.stdin.end('read\n'),
  };
}

let e: GatewayEnv | undefined;
let up: Awaited<ReturnType<typeof floodingUpstream>> | undefined;
let reader: ReturnType<typeof slowReader> | undefined;
afterEach(async () => {
  if (reader !== undefined && reader.child.exitCode === null) reader.child.kill();
  reader = undefined;
  await e?.close();
  await up?.close();
  e = up = undefined;
});

describe('KS-15.2.8 a halt that cuts an LLM call is enforced once the upstream is closed and the client has the end', () => {
  it('a client that reads: the cut is enforced at once, the flip completes with nothing unenforced', async () => {
    // Paced: a client in this process, on a loaded machine, must not fall a second behind a flood.
    up = await floodingUpstream(20);
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

  it('a client that stops reading (small SO_RCVBUF): unenforced, naming the client, while its end is blocked; enforced once its connection is reset after 1 s', async () => {
    up = await floodingUpstream();
    e = await gatewayEnv({ config: { llm: { openai: up.url } } });
    reader = slowReader(e.gw.url, 'acme');
    const r0 = reader;
    await until(() => r0.lines.length > 0 || r0.child.exitCode !== null, 10_000, 'the head').catch(
      () => undefined,
    );
    expect(r0.lines[0], r0.stderr()).toMatchObject({ event: 'stopped' });
    expect(r0.lines[0].rcvbuf).toBeLessThan(65536);
    // Every buffer between the upstream and the client is full: the upstream cannot write.
    await until(() => up!.state.blocked, 10_000, 'the stream to back up to the upstream');
    await new Promise((r) => setTimeout(r, 300)); // the gateway's lease renewed at the head
    const t0 = performance.now();
    const r = await e.halt({ tenant: 'acme' }, 'stop acme');
    const seq = r.flip.seq as number;
    // The fleet's view of the flip, sampled until it completes: the client's end is blocked for
    // 1 s, a window a loaded machine may answer a `wait` too late to see, but not to sample.
    const seen: { ms: number; s: FlipFleetStatus }[] = [];
    await until(
      () => {
        const s = e!.cp.tracker.status(seq);
        if (s !== undefined) seen.push({ ms: performance.now() - t0, s });
        return s?.complete === true;
      },
      10_000,
      'the flip to complete',
    );
    const before = seen.filter((x) => !x.s.complete);
    const done = seen.find((x) => x.s.complete)!;
    // Not enforced from the moment it was applied: never acknowledged as stopped before, and
    // listed unenforced (not as a laggard) from its first report until the flip completes.
    const first = before.findIndex((x) => x.s.unenforced.length > 0);
    expect(first).toBeGreaterThanOrEqual(0);
    for (const [i, { s }] of before.entries()) {
      expect(s.acknowledged).toEqual([]);
      if (i >= first) {
        expect(s.laggards).toEqual([]);
        expect(s.unenforced.map((u) => u.workerId)).toEqual(['gateway-1']);
      }
    }
    // The upstream was closed at once; the client that has not taken the end is named.
    const named = before.filter((x) => x.s.unenforced.some((u) => /^the client/.test(u.reason)));
    expect(named.length, JSON.stringify(seen.at(0))).toBeGreaterThan(0);
    expect(named[0]!.s.unenforced).toEqual([
      {
        workerId: 'gateway-1',
        reason: expect.stringMatching(
          /^the client of a call cut on LLM upstream chat\.completions has not taken the end of its response \(\d+ bytes waiting\): output from before the halt may still reach it$/,
        ),
        at: expect.any(String),
      },
    ]);
    expect(up.state.closed).toBe(1);
    expect(r0.lines).toHaveLength(1); // still blocked: it has read nothing since the head

    // After 1 s the client's connection is reset: the report is withdrawn, the flip completes.
    expect(done.ms).toBeGreaterThanOrEqual(1000);
    const after = done.s;
    expect(after.unenforced).toEqual([]);
    expect(after.acknowledged.map((a) => a.workerId)).toEqual(['gateway-1']);
    expect(e.gw.unenforced).toEqual([]);
    expect(up.state.closed).toBe(1);

    // What the client gets when it reads on: what its kernel held, then the reset; never the
    // cut's end as a well-formed response.
    r0.readOn();
    expect(await r0.exited, r0.stderr()).toBe(0);
    const end = r0.lines[1];
    expect(end).toMatchObject({ event: 'end', how: 'reset', wellFormedEnd: false });
  }, 30_000);
});
