import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

/** A running fake LLM. */
export interface LlmServer {
  readonly url: string;
  /** Calls `fn` with the moment (performance.now()) the socket of a request with this id closed. */
  onSocketClose(requestId: string, fn: (at: number) => void): void;
  /** Requests that are streaming right now. */
  readonly streaming: number;
  close(): Promise<void>;
}

/**
 * A slow local "LLM": `POST /v1/generate` streams one token every `tokenMs` as Server-Sent
 * Events, `tokens` of them, like a hosted model under load. It notes when each request's socket
 * closes, so the agent can show how fast an aborted call really let go of its connection.
 */
export async function startLlmServer(options: {
  readonly tokens?: number;
  readonly tokenMs?: number;
}): Promise<LlmServer> {
  const tokens = options.tokens ?? 40;
  const tokenMs = options.tokenMs ?? 50;
  const closeWatchers = new Map<string, (at: number) => void>();
  let streaming = 0;
  const server: Server = createServer((req, res) => {
    const id = String(req.headers['x-request-id'] ?? '');
    req.resume();
    streaming++;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    let i = 0;
    const timer = setInterval(() => {
      if (i === tokens) {
        clearInterval(timer);
        res.end('data: [DONE]\n\n');
        return;
      }
      res.write(`data: ${JSON.stringify({ token: `tok${i++} ` })}\n\n`);
    }, tokenMs);
    res.socket?.setNoDelay(true);
    const onClose = (): void => {
      const at = performance.now();
      clearInterval(timer);
      streaming--;
      closeWatchers.get(id)?.(at);
      closeWatchers.delete(id);
    };
    req.socket.once('close', onClose);
    // A stream that finished leaves the socket to the next request (no listener pile-up).
    res.once('finish', () => {
      req.socket.off('close', onClose);
      clearInterval(timer);
      streaming--;
      closeWatchers.delete(id);
    });
  });
  // A fresh connection per call: a closed socket is then exactly one aborted call.
  server.keepAliveTimeout = 1;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    onSocketClose: (id, fn) => closeWatchers.set(id, fn),
    get streaming() {
      return streaming;
    },
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
