/**
 * A TCP proxy for one client that can cut its connections three ways, for the KS-13.3 reconnect
 * suite (the named faults of test/wire/fault-proxy.ts are exercised there; this one cuts at a
 * random byte of the next chunk, anywhere: inside an event, inside HTTP chunk framing, inside the
 * response head):
 * - `reset`: destroy both sides now;
 * - `mid`: forward the first `fraction` of the next chunk from the server, then destroy;
 * - `fin`: end the client's side cleanly (the server "closed" the stream).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export type CutMode = 'reset' | 'mid' | 'fin';

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  cutFraction: number | undefined;
}

export class CutProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  readonly #target: number;
  /** Connections cut so far, by mode. */
  readonly cuts: Record<CutMode, number> = { reset: 0, mid: 0, fin: 0 };
  accepted = 0;

  private constructor(target: number) {
    this.#target = target;
    this.#server = createServer((c) => this.#onClient(c));
  }

  static async start(targetPort: number): Promise<CutProxy> {
    const p = new CutProxy(targetPort);
    await new Promise<void>((r) => p.#server.listen(0, '127.0.0.1', r));
    return p;
  }

  get url(): string {
    const a = this.#server.address();
    if (a === null || typeof a === 'string') throw new Error('not listening');
    return `http://127.0.0.1:${a.port}`;
  }

  #onClient(client: Socket): void {
    this.accepted++;
    const upstream = connect(this.#target, '127.0.0.1');
    const pair: Pair = { client, upstream, cutFraction: undefined };
    this.#pairs.add(pair);
    const end = () => {
      if (!this.#pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (c: Buffer) => {
      if (!upstream.write(c)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (c: Buffer) => {
      if (pair.cutFraction !== undefined) {
        const n = Math.max(0, Math.min(c.length - 1, Math.floor(c.length * pair.cutFraction)));
        pair.cutFraction = undefined;
        this.cuts.mid++;
        client.write(c.subarray(0, n), () => end());
        return;
      }
      if (!client.write(c)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
  }

  /** Cuts every open connection of this client. `fraction` (0..1) is where `mid` cuts. */
  cut(mode: CutMode, fraction = 0.5): void {
    for (const p of [...this.#pairs]) {
      if (mode === 'mid') {
        p.cutFraction = fraction;
      } else if (mode === 'fin') {
        this.cuts.fin++;
        this.#pairs.delete(p);
        p.upstream.destroy();
        p.client.end();
      } else {
        this.cuts.reset++;
        this.#pairs.delete(p);
        p.client.destroy();
        p.upstream.destroy();
      }
    }
  }

  async close(): Promise<void> {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.#pairs.clear();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
