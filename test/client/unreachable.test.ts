import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '../../src/client/index.js';
import { runCli } from '../fixtures/run-cli.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterAll(async () => {
  for (const c of sockets) c.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
});

/** A loopback TCP server doing `onConnection`; answers its port. */
async function tcp(onConnection: (c: Socket) => void): Promise<number> {
  const s = createServer((c) => {
    sockets.push(c);
    onConnection(c);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

async function failure(url: string, timeoutMs = 5000): Promise<{ code: string; message: string }> {
  const err = await new ControlPlaneClient({ url, timeoutMs }).health().then(
    () => undefined,
    (e: unknown) => e as { code: string; message: string },
  );
  expect(err).toBeDefined();
  return err!;
}

describe('KS-5.3.15 KS-5.3.6 an unreachable control plane is named with its URL and the cause, not "fetch failed"', () => {
  it('a closed port: connection refused (ECONNREFUSED)', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const e = await failure(url);
    expect(e.code).toBe('KS_UNREACHABLE');
    expect(e.message).toBe(
      `cannot reach the control plane at ${url}: connection refused (is the control plane running, and on this port?) (ECONNREFUSED)`,
    );
  });

  it('a host DNS does not know: host not found', async () => {
    const e = await failure('http://no-such-host.invalid:7411');
    expect(e.message).toMatch(
      /at http:\/\/no-such-host\.invalid:7411: host not found.* \((ENOTFOUND|EAI_AGAIN)\)$/,
    );
  });

  it('https to a server that does not speak TLS: the TLS handshake failed, with its code', async () => {
    const port = await tcp((c) => c.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const e = await failure(`https://127.0.0.1:${port}`);
    expect(e.message).toMatch(
      /: TLS handshake failed \((ERR_SSL_\w+|EPROTO)\): is the URL's scheme/,
    );
  });

  it('a server that never answers: no answer within the time limit (timeout)', async () => {
    const port = await tcp(() => undefined);
    const e = await failure(`http://127.0.0.1:${port}`, 200);
    expect(e.message).toMatch(/: no answer within 200 ms \(timeout\)$/);
  });

  it('a port fetch blocks (port 1): says so instead of "fetch failed"', async () => {
    const e = await failure('http://127.0.0.1:1');
    expect(e.message).not.toMatch(/fetch failed/);
    expect(e.message).toMatch(/blocked "bad port"/);
  });

  it('killswitch status names the URL and the cause and exits 3, in text and in JSON', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const text = await runCli(['status', '--url', url]);
    expect(text.code).toBe(3);
    expect(text.stderr).toContain(
      `cannot reach the control plane at ${url}: connection refused (is the control plane running, and on this port?) (ECONNREFUSED)`,
    );
    const json = await runCli(['status', '--url', url, '--json']);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { code: 'KS_UNREACHABLE', message: expect.stringContaining('ECONNREFUSED') as string },
    });
  });
});
