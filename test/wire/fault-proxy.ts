import { createServer, connect, type Server, type Socket } from 'node:net';

/** How {@link FaultProxy.cut} ends a connection. */
export type CutMode = 'reset' | 'mid' | 'fin';

/** One proxied connection: the client's socket and ours to the server. */
interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  /** Request lines seen on this connection. */
  readonly requests: string[];
  /** Set by `cut('mid', f)`: forward this fraction of the next chunk from the server, then cut. */
  cutFraction: number | undefined;
}

/**
 * A small TCP proxy between clients and a control plane that injects named faults:
 * - `stall()`: stop forwarding in both directions, sockets left open (a hung server or network);
 * - `cutNextEvent()`: forward half of the next chunk that carries an `event: flip`, then cut the
 *   connection (a connection dropped in the middle of an event);
 * - `slowReader()`: stop reading from the server for clients, so the server's socket does not
 *   drain (a subscriber that reads too slowly);
 * - `dropAll()`: reset every open connection;
 * - `cut(mode, fraction)`: cut every open connection by a reset, by a clean end of the client's
 *   side (`fin`, the server "closed" the stream), or `mid`: at a given fraction of the next chunk
 *   from the server, whatever it holds (inside an event, inside HTTP chunk framing, inside the
 *   response head); used by the KS-13.3 reconnect suite.
 * The target port can change (a restarted server on a new port is not needed: restart on the
 * same port), and new connections are refused while `refuse` is set.
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  #targetPort: number;
  #stalled = false;
  #cutNext = false;
  #slow = false;
  #swallow = false;
  /** First line of every HTTP request seen (`GET /v1/stream?... HTTP/1.1`). */
  readonly requests: string[] = [];
  /** Connections accepted so far. */
  accepted = 0;
  /** Connections cut by {@link cutNextEvent}. */
  cuts = 0;
  /** Connections cut by {@link cut}, by mode. */
  readonly cutsByMode: Record<CutMode, number> = { reset: 0, mid: 0, fin: 0 };

  private constructor(targetPort: number) {
    this.#targetPort = targetPort;
    this.#server = createServer((client) => this.#onClient(client));
  }

  /** Starts a proxy on 127.0.0.1 (random port) in front of 127.0.0.1:`targetPort`. */
  static async start(targetPort: number): Promise<FaultProxy> {
    const p = new FaultProxy(targetPort);
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    return p;
  }

  get port(): number {
    const a = this.#server.address();
    if (a === null || typeof a === 'string') throw new Error('proxy not listening');
    return a.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Open proxied connections. */
  get open(): number {
    return this.#pairs.size;
  }

  /** The request lines of each open connection (to tell which one was left open). */
  get openRequests(): string[][] {
    return [...this.#pairs].map((p) => p.requests);
  }

  set targetPort(port: number) {
    this.#targetPort = port;
  }

  #onClient(client: Socket): void {
    this.accepted++;
    const upstream = connect(this.#targetPort, '127.0.0.1');
    const pair: Pair = { client, upstream, requests: [], cutFraction: undefined };
    this.#pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const end = () => {
      if (!this.#pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => {
      for (const m of chunk
        .toString('latin1')
        .matchAll(/(?:^|\r\n)((?:GET|POST|PUT|DELETE) [^\r\n]+)/g)) {
        this.requests.push(m[1]!);
        pair.requests.push(m[1]!);
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => {
      if (!this.#stalled) client.resume();
    });
    upstream.on('data', (chunk: Buffer) => {
      if (pair.cutFraction !== undefined) {
        const n = Math.max(
          0,
          Math.min(chunk.length - 1, Math.floor(chunk.length * pair.cutFraction)),
        );
        pair.cutFraction = undefined;
        this.cutsByMode.mid++;
        client.write(chunk.subarray(0, n), () => end());
        return;
      }
      if (this.#swallow && chunk.includes('event: flip')) {
        // Remove one whole flip event and keep the connection: the client sees a gap.
        // With chunked transfer encoding the event is framed as `<hex>\r\n<event>\r\n`: remove
        // the frame too, or the client's HTTP parser (not the SSE layer) would fail.
        let start = chunk.indexOf('event: flip');
        let end = chunk.indexOf('\n\n', start);
        if (end >= 0) {
          end += 2;
          const before = chunk.subarray(0, start).toString('latin1');
          const frame = /(^|\r\n)([0-9a-fA-F]+)\r\n$/.exec(before);
          if (frame && chunk.subarray(end, end + 2).toString('latin1') === '\r\n') {
            start = frame.index + frame[1]!.length;
            end += 2;
          }
          this.#swallow = false;
          chunk = Buffer.concat([chunk.subarray(0, start), chunk.subarray(end)]);
        }
      }
      if (this.#cutNext && chunk.includes('event: flip')) {
        this.#cutNext = false;
        this.cuts++;
        // Cut inside the event's JSON: the client has a partial event it must never apply.
        const start = chunk.indexOf('event: flip');
        const data = chunk.indexOf('data:', start);
        const at = data < 0 ? start + 5 : data + 12;
        client.write(chunk.subarray(0, Math.min(at, chunk.length - 1)), () => end());
        return;
      }
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => {
      if (!this.#stalled && !this.#slow) upstream.resume();
    });
    if (this.#stalled) {
      client.pause();
      upstream.pause();
    } else if (this.#slow) upstream.pause();
  }

  /** Stop forwarding anything, both ways, on every connection (open and new). */
  stall(): void {
    this.#stalled = true;
    for (const { client, upstream } of this.#pairs) {
      client.pause();
      upstream.pause();
    }
  }

  /** Forward again. */
  unstall(): void {
    this.#stalled = false;
    this.#slow = false;
    for (const { client, upstream } of this.#pairs) {
      client.resume();
      upstream.resume();
    }
  }

  /** Stop reading what the server sends (requests still go through). */
  slowReader(): void {
    this.#slow = true;
    for (const { upstream } of this.#pairs) upstream.pause();
  }

  /** Cut the connection carrying the next flip event in the middle of it. */
  cutNextEvent(): void {
    this.#cutNext = true;
  }

  /** Remove the next flip event from the stream it travels on, leaving the connection up. */
  swallowNextFlip(): void {
    this.#swallow = true;
  }

  /** Cuts every open connection (see the class comment); `fraction` (0..1) is where `mid` cuts. */
  cut(mode: CutMode, fraction = 0.5): void {
    for (const p of [...this.#pairs]) {
      if (mode === 'mid') {
        p.cutFraction = fraction;
        continue;
      }
      this.cutsByMode[mode]++;
      this.#pairs.delete(p);
      p.upstream.destroy();
      if (mode === 'fin') p.client.end();
      else p.client.destroy();
    }
  }

  /** Reset every open connection. */
  dropAll(): void {
    for (const { client, upstream } of [...this.#pairs]) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
