import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { selectorEquals, type Selector } from '../../src/model/selector.js';

/**
 * A local stand-in for LaunchDarkly's streaming service, speaking the server-side SDK's stream
 * protocol (`GET /all`, SSE events `put` with every flag and `patch` with one flag) on a loopback
 * port, so the real `@launchdarkly/node-server-sdk` runs here without any network. It serves one
 * boolean flag, `kill-switch`, with one targeting rule per active halt: the rule's clauses are
 * the halt's selector (every attribute equal), a halt `{}` is the fallthrough. LaunchDarkly flags
 * have no notion of "any matching halt wins" with exact-selector resumes; the rules list is kept
 * like the fold (a resume removes exactly its selector).
 */
export class LdStreamServer {
  readonly #server: Server;
  readonly #clients = new Set<ServerResponse>();
  #halts: Selector[] = [];
  #version = 1;
  #port = 0;
  /** Requests per path (`/all`, ...), to check that nothing else was called. */
  readonly requests = new Map<string, number>();

  constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Open stream connections. */
  get connections(): number {
    return this.#clients.size;
  }

  async start(port = 0): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => resolve());
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  /** The stream dies: every connection is cut and new ones are refused (the port is closed). */
  async stop(): Promise<void> {
    for (const c of this.#clients) c.destroy();
    this.#clients.clear();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /** Cuts every stream connection but keeps listening (the SDK reconnects and gets a `put`). */
  dropConnections(): void {
    for (const c of this.#clients) c.destroy();
    this.#clients.clear();
  }

  halt(selector: Selector): void {
    this.#halts = [...this.#halts.filter((h) => !selectorEquals(h, selector)), selector];
    this.#patch();
  }

  resume(selector: Selector): void {
    this.#halts = this.#halts.filter((h) => !selectorEquals(h, selector));
    this.#patch();
  }

  /** The `kill-switch` flag as LaunchDarkly's flag JSON. Variation 0 = true (halted). */
  flag(): Record<string, unknown> {
    const global = this.#halts.some((h) => Object.keys(h).length === 0);
    const rules = this.#halts
      .filter((h) => Object.keys(h).length > 0)
      .map((h, i) => ({
        id: `halt-${i}`,
        variation: 0,
        trackEvents: false,
        clauses: Object.entries(h).map(([attribute, value]) => ({
          contextKind: 'user',
          attribute,
          op: 'in',
          values: [value],
          negate: false,
        })),
      }));
    return {
      key: 'kill-switch',
      version: this.#version,
      on: true,
      variations: [true, false],
      // A flag switched off in LaunchDarkly serves its off variation: halted.
      offVariation: 0,
      fallthrough: { variation: global ? 0 : 1 },
      targets: [],
      contextTargets: [],
      rules,
      prerequisites: [],
      salt: 'kill',
      trackEvents: false,
      trackEventsFallthrough: false,
      clientSide: false,
      deleted: false,
    };
  }

  #patch(): void {
    this.#version += 1;
    const data = JSON.stringify({ path: '/flags/kill-switch', data: this.flag() });
    for (const c of this.#clients) c.write(`event: patch\ndata: ${data}\n\n`);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    this.requests.set(path, (this.requests.get(path) ?? 0) + 1);
    if (req.method !== 'GET' || path !== '/all') {
      res.writeHead(404).end();
      return;
    }
    req.socket.setNoDelay(true);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    const put = JSON.stringify({
      path: '/',
      data: { flags: { 'kill-switch': this.flag() }, segments: {} },
    });
    res.write(`event: put\ndata: ${put}\n\n`);
    this.#clients.add(res);
    res.on('close', () => this.#clients.delete(res));
  }
}
