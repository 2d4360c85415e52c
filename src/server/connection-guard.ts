import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { systemClock, type Clock } from '../internal/clock.js';
import { intOption } from '../internal/int-option.js';

/** Connection limits of a control plane (KS-17.8.1). Times in milliseconds. */
export interface ConnectionLimits {
  /**
   * A connection must send a whole request head within this (the first request: counted from
   * the connection; later ones: Node's own `headersTimeout`). @default 10000
   */
  readonly headersTimeoutMs: number;
  /** A request (head and body) must arrive within this. Streams are not bound by it. @default 30000 */
  readonly requestTimeoutMs: number;
  /** A connection idle between requests is closed after this. @default 5000 */
  readonly keepAliveTimeoutMs: number;
  /** Connections held at most. @default from the descriptor limit, see {@link defaultMaxConnections} */
  readonly maxConnections: number;
  /**
   * Room kept for flips: above `maxConnections - reservedConnections`, each new connection closes
   * the oldest one that carries nothing; up to `maxConnections` are held when none can be closed.
   * @default a tenth of maxConnections, from 4 to 64
   */
  readonly reservedConnections: number;
}

/** What a socket carries, for the guard. */
interface Tracked {
  readonly socket: Socket;
  readonly since: number;
  /** Requests whose answer has not finished (a stream counts until it closes). */
  busy: number;
  /** Requests seen on this connection. */
  requests: number;
  /** When it last became idle (its last answer finished). */
  idleSince: number;
}

/** Counters of a {@link ConnectionGuard}, for tests and metrics. */
export interface ConnectionStats {
  readonly open: number;
  /** Idle connections closed to make room. */
  readonly evicted: number;
  /** New connections refused: the cap was reached and nothing could be closed. */
  readonly refused: number;
  /** Connections closed for sending no request head in time, or idling too long. */
  readonly timedOut: number;
}

/**
 * 80 % of the soft descriptor limit (`ulimit -n`, read from `/proc/self/limits`; 1024 when it
 * cannot be read) less 64 for files, the store and outgoing connections, between 64 and 8192.
 * KS-17.8.1
 */
export function defaultMaxConnections(limitsFile = '/proc/self/limits'): number {
  let soft = 1024;
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync(limitsFile, 'utf8'));
    if (m !== null) soft = m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
  } catch {
    // Not Linux: the common default.
  }
  return Math.max(64, Math.min(8192, Math.floor(soft * 0.8) - 64));
}

/** The limits with every default filled in and each value checked. */
export function connectionLimits(o: Partial<ConnectionLimits> = {}): ConnectionLimits {
  const maxConnections = intOption(
    'maxConnections',
    o.maxConnections ?? defaultMaxConnections(),
    2,
  );
  const reservedConnections = intOption(
    'reservedConnections',
    o.reservedConnections ?? Math.max(4, Math.min(64, Math.floor(maxConnections / 10))),
    1,
    maxConnections - 1,
  );
  return {
    headersTimeoutMs: intOption('headersTimeoutMs', o.headersTimeoutMs ?? 10_000, 100, 3_600_000),
    requestTimeoutMs: intOption('requestTimeoutMs', o.requestTimeoutMs ?? 30_000, 100, 3_600_000),
    keepAliveTimeoutMs: intOption(
      'keepAliveTimeoutMs',
      o.keepAliveTimeoutMs ?? 5000,
      100,
      3_600_000,
    ),
    maxConnections,
    reservedConnections,
  };
}

/**
 * Keeps a server answering under a flood of idle or slow connections (KS-17.8.1):
 *
 * - a connection that sends no whole request head within `headersTimeoutMs` of connecting, or
 *   sits idle between requests longer than `keepAliveTimeoutMs`, is closed (Node's own timers
 *   cover a request's head and body once it started: `headersTimeout`, `requestTimeout`, checked
 *   every second);
 * - at most `maxConnections` are held. Above `maxConnections - reservedConnections`, each new
 *   connection closes the oldest one that carries nothing (no request yet, or idle between
 *   requests), so an attacker's sockets make room for an operator's flip, never the reverse;
 *   a connection with a request in progress or an open stream is never closed to make room. When
 *   every held connection is busy and the cap is reached, the new connection is closed.
 *
 * Kept off the server's request path: one listener per connection and one sweep per second.
 */
export class ConnectionGuard {
  readonly limits: ConnectionLimits;
  readonly #tracked = new Map<Socket, Tracked>();
  readonly #now: () => number;
  readonly #onEvict: ((why: string) => void) | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #evicted = 0;
  #refused = 0;
  #timedOut = 0;
  /** Last time a refusal was reported, so a flood logs once a minute at most. */
  #reportedAt = -Infinity;

  constructor(
    server: Server,
    limits: ConnectionLimits,
    options: { readonly clock?: Clock; readonly onEvict?: (why: string) => void } = {},
  ) {
    this.limits = limits;
    const clock = options.clock ?? systemClock;
    this.#now = () => clock.now();
    this.#onEvict = options.onEvict;
    server.headersTimeout = limits.headersTimeoutMs;
    server.requestTimeout = limits.requestTimeoutMs;
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    // A TLS handshake must not outlast a request head either.
    (server as Server & { handshakeTimeout?: number }).handshakeTimeout = limits.headersTimeoutMs;
    server.on('connection', (socket: Socket) => this.#onConnection(socket));
    server.on('request', (req: { socket: Socket }, res: NodeJS.EventEmitter) =>
      this.#onRequest(req.socket, res),
    );
    this.#sweep = setInterval(() => this.#expire(), 1000);
    this.#sweep.unref();
  }

  stats(): ConnectionStats {
    return {
      open: this.#tracked.size,
      evicted: this.#evicted,
      refused: this.#refused,
      timedOut: this.#timedOut,
    };
  }

  /** Stops the sweep (the server closes its sockets itself). */
  close(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  #onConnection(socket: Socket): void {
    const { maxConnections, reservedConnections } = this.limits;
    if (this.#tracked.size >= maxConnections - reservedConnections) {
      if (!this.#evictOldestIdle() && this.#tracked.size >= maxConnections) {
        this.#refused++;
        this.#report(
          `refused a connection: ${this.#tracked.size} connections are held, all busy (maxConnections ${maxConnections})`,
        );
        socket.destroy();
        return;
      }
    }
    const now = this.#now();
    const t: Tracked = { socket, since: now, busy: 0, requests: 0, idleSince: now };
    this.#tracked.set(socket, t);
    socket.once('close', () => this.#tracked.delete(socket));
  }

  #onRequest(socket: Socket, res: NodeJS.EventEmitter): void {
    const t = this.#tracked.get(socket) ?? this.#tracked.get(parentOf(socket));
    if (t === undefined) return;
    t.busy++;
    t.requests++;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      t.busy--;
      t.idleSince = this.#now();
    };
    // A response emits 'close' once, after 'finish' or when its connection went first: one plain
    // listener (no once wrappers) on an object that lives for this request only.
    res.on('close', finish);
  }

  /** Closes the oldest connection that carries nothing. @returns whether one was closed */
  #evictOldestIdle(): boolean {
    // Map order is insertion order: the first idle one found is the oldest.
    for (const t of this.#tracked.values()) {
      if (t.busy > 0) continue;
      this.#tracked.delete(t.socket);
      t.socket.destroy();
      this.#evicted++;
      this.#report(
        `closing idle connections to make room (${this.#tracked.size + 1} held, limit ${this.limits.maxConnections - this.limits.reservedConnections} before the reserve)`,
      );
      return true;
    }
    return false;
  }

  #expire(): void {
    const now = this.#now();
    const { headersTimeoutMs, keepAliveTimeoutMs } = this.limits;
    for (const t of this.#tracked.values()) {
      if (t.busy > 0) continue;
      const late =
        t.requests === 0
          ? now - t.since > headersTimeoutMs
          : now - t.idleSince > keepAliveTimeoutMs + 1000;
      if (!late) continue;
      this.#tracked.delete(t.socket);
      t.socket.destroy();
      this.#timedOut++;
    }
  }

  #report(message: string): void {
    const now = this.#now();
    if (now - this.#reportedAt < 60_000) return;
    this.#reportedAt = now;
    this.#onEvict?.(message);
  }
}

/** The TCP socket under a TLS socket (the `connection` event sees that one). */
function parentOf(socket: Socket): Socket {
  return ((socket as Socket & { _parent?: Socket })._parent ?? socket) as Socket;
}
