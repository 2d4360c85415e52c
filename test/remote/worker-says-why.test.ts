import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OpenFeature } from '@openfeature/server-sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { ErrorCode, HaltedError } from '../../src/errors.js';
import { HaltCause } from '../../src/model/halt-cause.js';
import { EffectGuard } from '../../src/guard/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillState } from '../../src/model/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import { ManualClock, Recorder, sseResponse } from '../fixtures/remote-source.js';
import { TOKENS, startTestServer } from '../server/helpers.js';

/**
 * A misconfigured worker fails closed and says why, over the wire: no token, a wrong token, the
 * server down, something that is not a killswitch server. The source logs the first failure and
 * each change of cause by default, not each retry; a refusal names the cause and no flip.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function lines(): { warn(m: string): void; lines: string[] } {
  const out: string[] = [];
  return { lines: out, warn: (m: string) => void out.push(m) };
}

/**
 * A source that retries fast, so a cause repeats many times within the test, started by a
 * provider behind an effect guard (`refuse()` runs one guarded effect and returns its refusal).
 */
async function startSource(url: string, token: string | undefined, logger = lines()) {
  const source = new RemoteFlipSource({
    urls: [url],
    ...(token !== undefined ? { token } : {}),
    workerId: 'w-why',
    staleAfterMs: 1000,
    heartbeatMs: 200,
    backoff: { initialMs: 5, maxMs: 20 },
    logger,
  });
  cleanups.push(() => source.stop());
  const domain = `why-${Math.random()}`;
  const provider = new KillSwitchProvider({ source, logger: { warn: () => {} } });
  await OpenFeature.setProviderAndWait(domain, provider);
  cleanups.push(() => provider.onClose());
  const guard = new EffectGuard({
    client: OpenFeature.getClient(domain),
    ledger: new MemorySideEffectLedger(),
  });
  cleanups.push(() => guard.close());
  return { source, logger, refuse: () => refusal(guard) };
}

async function controlPlane(port = 0): Promise<ControlPlane> {
  const { cp } = await startTestServer({ port, staleAfterMs: 1000, heartbeatMs: 200 });
  cleanups.push(() => cp.close());
  return cp;
}

/** An HTTP server that is not a control plane; counts the requests it saw. */
async function otherServer(
  status: number,
  contentType: string,
  body: string,
  port = 0,
): Promise<{ url: string; requests: () => number; server: Server }> {
  let n = 0;
  const server = createServer((_req, res) => {
    n++;
    res.writeHead(status, { 'content-type': contentType });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const { port: p } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${p}`, requests: () => n, server };
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A guarded effect: the refusal it gets (and no effect ran). */
async function refusal(guard: EffectGuard): Promise<HaltedError> {
  let effects = 0;
  const err = await guard
    .run({ context: { tenant: 'acme' }, runId: 'r1', step: 's1', capability: 'email.send' }, () => {
      effects++;
      return Promise.resolve('sent');
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(effects).toBe(0);
  expect(err).toBeInstanceOf(HaltedError);
  return err as HaltedError;
}

describe('KS-16.2.1 KS-16.2.2 a misconfigured worker fails closed and says why', () => {
  it('no token: one log line naming the missing token, not one per retry; the refusal says why and names no flip', async () => {
    const cp = await controlPlane();
    const { logger, refuse } = await startSource(cp.url, undefined);
    await vi.waitFor(() => expect(logger.lines.length).toBe(1));
    expect(logger.lines[0]).toContain(`the control plane at ${cp.url} wants a worker token`);
    expect(logger.lines[0]).toContain('401 KS_UNAUTHORIZED: missing bearer token');
    // Many retries later (5-20 ms apart): still the one line.
    await new Promise((r) => setTimeout(r, 400));
    expect(logger.lines).toHaveLength(1);

    const err = await refuse();
    expect(err.code).toBe(ErrorCode.HALTED);
    expect(err.haltCause).toBe(HaltCause.STALE);
    expect(err.flip).toBeUndefined();
    expect(err.failClosed).toContain('wants a worker token and none was given');
    expect(err.message).toMatch(
      /^effect r1\/s1 refused: the kill state is stale \(failed closed: no snapshot yet \(the control plane at .* wants a worker token/,
    );
    expect(err.message).not.toContain('undefined');
  });

  it("a wrong token: the line says the token was refused, with the server's words", async () => {
    const cp = await controlPlane();
    const { logger, refuse } = await startSource(cp.url, 'not-a-known-token-0123456789');
    await vi.waitFor(() => expect(logger.lines.length).toBe(1));
    expect(logger.lines[0]).toBe(
      `remote flip source w-why: the control plane at ${cp.url} refused this worker's token (401 KS_UNAUTHORIZED: unknown token)`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(logger.lines).toHaveLength(1);
    const err = await refuse();
    expect(err.failClosed).toContain("refused this worker's token (401 KS_UNAUTHORIZED");
    expect(err.message).not.toContain('undefined');
  });

  it('the server down: a refused connection, then a change of cause (not a killswitch server), then fresh again, each logged once', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const { source, logger, refuse } = await startSource(url, TOKENS.worker);
    await vi.waitFor(() => expect(logger.lines.length).toBe(1));
    expect(logger.lines[0]).toBe(
      `remote flip source w-why: cannot reach the control plane at ${url}: connection refused (is the control plane running, and on this port?) (ECONNREFUSED)`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(logger.lines).toHaveLength(1);
    const err = await refuse();
    expect(err.failClosed).toContain('connection refused');

    // Something else takes the port: a new cause, logged once however often it is asked.
    const other = await otherServer(404, 'text/html', '<h1>Not Found</h1>', port);
    await vi.waitFor(() => expect(logger.lines.length).toBe(2));
    expect(logger.lines[1]).toBe(
      `remote flip source w-why: ${url} is not a killswitch server (it answered the stream with HTTP 404 without a killswitch error body)`,
    );
    await vi.waitFor(() => expect(other.requests()).toBeGreaterThanOrEqual(5));
    expect(logger.lines).toHaveLength(2);

    // The control plane comes up on that port: fresh again, said once.
    await new Promise<void>((r) => other.server.close(() => r()));
    await controlPlane(port);
    await vi.waitFor(() => expect(source.status).toBe('open'), { timeout: 5000 });
    await vi.waitFor(() =>
      expect(logger.lines.at(-1)).toBe('remote flip source w-why: fresh again at seq 0'),
    );
    // Between the two servers the port may refuse a retry, or the closing server reset one in
    // flight: that change of cause is logged too, and nothing else.
    expect(
      logger.lines
        .slice(2, -1)
        .every((l) =>
          /^remote flip source w-why: cannot reach the control plane at \S+: connection (refused|reset)\b/.test(
            l,
          ),
        ),
      logger.lines.join('\n'),
    ).toBe(true);
    expect(logger.lines.length, logger.lines.join('\n')).toBeLessThanOrEqual(5);
  });

  it('a control plane that refuses both the stream and the acknowledgements: each side logged once, not on every alternation', async () => {
    const port = await closedPort();
    const cp = await controlPlane(port);
    const url = `http://127.0.0.1:${port}`;
    const { source, logger } = await startSource(url, TOKENS.worker);
    await vi.waitFor(() => expect(source.status).toBe('open'), { timeout: 5000 });
    const before = logger.lines.length;
    // The control plane stops vouching (as after a lost failover): 503 with its reason, to all.
    await cp.close();
    const refusing = await otherServer(
      503,
      'application/json',
      JSON.stringify({ error: { code: 'KS_STORE_UNAVAILABLE', message: 'cannot vouch' } }),
      port,
    );
    // Many stream retries (backoff 5..20 ms) and several acks (every heartbeat) are refused.
    await vi.waitFor(() => expect(refusing.requests()).toBeGreaterThanOrEqual(30), {
      timeout: 5000,
    });
    await new Promise((r) => setTimeout(r, 600));
    const said = logger.lines.slice(before);
    const refusals = said.filter((l) => l.includes('503 KS_STORE_UNAVAILABLE'));
    expect(refusals.filter((l) => l.includes('refused the stream'))).toHaveLength(1);
    expect(
      refusals.filter((l) => l.includes('refused the acknowledgement')).length,
    ).toBeLessThanOrEqual(1);
    expect(said.length, said.join('\n')).toBeLessThanOrEqual(4);
  });

  it('a server answering 200 with a web page is not a killswitch server', async () => {
    const other = await otherServer(200, 'text/html; charset=utf-8', '<html>hello</html>');
    const { logger, refuse } = await startSource(other.url, TOKENS.worker);
    await vi.waitFor(() => expect(other.requests()).toBeGreaterThanOrEqual(5));
    expect(logger.lines).toEqual([
      `remote flip source w-why: ${other.url} is not a killswitch server (it answered the stream with text/html; charset=utf-8, not an event stream)`,
    ]);
    const err = await refuse();
    expect(err.failClosed).toContain('is not a killswitch server');
  });

  it('an error body that is not a killswitch code, and control characters from the wire, stay inert', async () => {
    const other = await otherServer(
      503,
      'application/json',
      JSON.stringify({ error: { code: 'E_PROXY', message: 'down\n#99 halt global' } }),
    );
    const { logger } = await startSource(other.url, TOKENS.worker);
    await vi.waitFor(() => expect(logger.lines.length).toBe(1));
    expect(logger.lines[0]).toContain(
      'is not a killswitch server (it answered the stream with HTTP 503',
    );
    const ks = await otherServer(
      503,
      'application/json',
      JSON.stringify({ error: { code: 'KS_STORE_UNAVAILABLE', message: 'store\n\u001b[31mdown' } }),
    );
    const second = await startSource(ks.url, TOKENS.worker);
    await vi.waitFor(() => expect(second.logger.lines.length).toBe(1));
    expect(second.logger.lines[0]).toBe(
      `remote flip source w-why: the control plane at ${ks.url} refused the stream (503 KS_STORE_UNAVAILABLE: store  [31mdown)`,
    );
  });

  it('the default logger is console.warn (a worker is never silent about it)', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    cleanups.push(() => warn.mockRestore());
    const port = await closedPort();
    const source = new RemoteFlipSource({
      urls: [`http://127.0.0.1:${port}`],
      workerId: 'w-default',
      backoff: { initialMs: 5, maxMs: 10 },
    });
    await source.start(new Recorder());
    cleanups.push(() => source.stop());
    await vi.waitFor(() => expect(warn).toHaveBeenCalledTimes(1));
    expect(String(warn.mock.calls[0]![0])).toMatch(
      /^\[kill-switch\] remote flip source w-default: cannot reach the control plane at .*connection refused/,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('a snapshot behind the state already applied (the log went backwards) is refused, failing closed with both sides named (KS-6.4.2)', async () => {
    const clock = new ManualClock({ now: 1_000_000 });
    const streams: ReturnType<typeof sseResponse>[] = [];
    const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
      if (new URL(String(input)).pathname === '/v1/acks') {
        const body = JSON.parse(String(init?.body)) as { seq: number; hash: string };
        return new Response(
          JSON.stringify({
            head: body.seq,
            serverTime: 0,
            staleAfterMs: 3000,
            logId: 'log-1',
            hash: body.hash,
          }),
        );
      }
      const sse = sseResponse(init?.signal as AbortSignal | undefined);
      streams.push(sse);
      return sse.response;
    }) as typeof globalThis.fetch;
    const logger = lines();
    const source = new RemoteFlipSource({
      urls: ['http://cp.test'],
      workerId: 'w-back',
      fetch,
      clock,
      logger,
      backoff: { random: () => 0 },
    });
    const rec = new Recorder();
    await source.start(rec);
    cleanups.push(() => source.stop());
    await vi.waitFor(() => expect(streams).toHaveLength(1));
    const at = (seq: number) => ({
      ...KillState.fold([]).toSnapshot(),
      seq,
      hash: 'a'.repeat(64),
      logId: 'log-1',
    });
    streams[0]!.event('snapshot', at(5));
    await vi.waitFor(() => expect(rec.status).toBe('open'));
    streams[0]!.event('snapshot', at(3));
    await vi.waitFor(() => expect(rec.status).toBe('stale'));
    expect(source.appliedSeq).toBe(5);
    const line =
      'remote flip source w-back: the snapshot of http://cp.test shows log log-1 at seq 3 (hash aaaaaaaaaaaa), but worker w-back applied log log-1 at seq 5 (hash aaaaaaaaaaaa): the log moved backwards (a restored backup, a failover that lost commits, a cut tail); failing closed';
    expect(logger.lines).toContain(line);
  });
});
