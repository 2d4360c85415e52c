import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { RemoteFlipSource, type RemoteFlipSourceOptions } from '../../providers/remote/index.js';
import { startControlPlane } from '../../src/server/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { KillState, type FlipRecord, type KillSnapshot } from '../../src/model/index.js';
import type { FlipSourceListener, SourceStatus } from '../../src/source/index.js';

/** The admin token every wire test uses (configured on the server, sent by the clients). */
export const ADMIN_TOKEN = 'wire-test-admin-token-0123456789';

/** A control plane on a file log in a temp dir; `restart()` reopens the same file on the same port. */
export class WireServer {
  readonly dir: string;
  readonly options: WireServerOptions;
  port = 0;
  #handle: Awaited<ReturnType<typeof startControlPlane>> | undefined;
  #store: FileFlipLogStore | undefined;

  private constructor(dir: string, options: WireServerOptions) {
    this.dir = dir;
    this.options = options;
  }

  static async start(options: WireServerOptions = {}): Promise<WireServer> {
    const s = new WireServer(await mkdtemp(join(tmpdir(), 'ks-wire-')), options);
    await s.#listen();
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get logPath(): string {
    return join(this.dir, 'flips.log');
  }

  async #listen(): Promise<void> {
    this.#store = new FileFlipLogStore({ path: this.logPath, fsync: false });
    await this.#store.open();
    this.#handle = await startControlPlane({
      store: this.#store,
      host: '127.0.0.1',
      port: this.port,
      heartbeatMs: this.options.heartbeatMs ?? 200,
      // The wire suites append bursts of hundreds of flips: not what the rate limit is for.
      maxFlipsPerSecond: 100_000,
      staleAfterMs: this.options.staleAfterMs ?? 1000,
      auth: new TokenAuthenticator({
        tokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
      }),
      ...(this.options.maxBufferedBytes !== undefined
        ? { maxBufferedBytes: this.options.maxBufferedBytes }
        : {}),
      ...(this.options.requestTimeoutMs !== undefined
        ? { requestTimeoutMs: this.options.requestTimeoutMs }
        : {}),
    });
    this.port = this.#handle.port;
  }

  /** The running server's counters (subscribers, dropped slow readers, head). */
  stats(): { subscribers: number; dropped: number; head: number } {
    if (!this.#handle) throw new Error('server not running');
    return this.#handle.stats();
  }

  /** Stops the server and closes its store (the log stays on disk). */
  async stop(): Promise<void> {
    await this.#handle?.close();
    this.#handle = undefined;
    await this.#store?.close();
    this.#store = undefined;
  }

  /** Starts again on the same port with the same log file. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#listen();
  }

  /** The log as the file holds it. */
  async records(): Promise<FlipRecord[]> {
    if (this.#store) return this.#store.read();
    const store = new FileFlipLogStore({ path: this.logPath });
    await store.open();
    try {
      return await store.read();
    } finally {
      await store.close();
    }
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface WireServerOptions {
  readonly heartbeatMs?: number;
  readonly staleAfterMs?: number;
  readonly maxBufferedBytes?: number;
  /** Node's request timeout (an acknowledgement stream ends its body after half of it). */
  readonly requestTimeoutMs?: number;
}

let flipCounter = 0;

/** POST /v1/flips (a halt of a fresh tenant unless told otherwise); resolves with the answer body. */
export async function postFlip(
  url: string,
  input: Partial<{
    action: 'halt' | 'resume';
    selector: Record<string, string>;
    reason: string;
    wait: number;
  }> = {},
): Promise<{ flip: FlipRecord } & Record<string, unknown>> {
  const res = await fetch(`${url}/v1/flips`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      action: input.action ?? 'halt',
      selector: input.selector ?? { tenant: `t${++flipCounter}` },
      reason: input.reason ?? 'wire test',
      ...(input.wait !== undefined ? { wait: input.wait } : {}),
    }),
  });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 201)
    throw new Error(`POST /v1/flips ${res.status}: ${text}`);
  return JSON.parse(text) as { flip: FlipRecord };
}

/**
 * A consumer like the provider: folds what the source delivers into a KillState (which itself
 * refuses out-of-order records) and records every applied seq and status with its time.
 */
export class FoldingListener implements FlipSourceListener {
  state = KillState.empty();
  /** What was applied, in order: `s<seq>` for a snapshot, the seq for a flip. */
  readonly applied: (number | string)[] = [];
  readonly statuses: { status: SourceStatus; at: number; detail: string | undefined }[] = [];
  readonly errors: string[] = [];
  #waiters: (() => void)[] = [];

  onSnapshot(s: KillSnapshot): void {
    this.state = KillState.fromSnapshot(s);
    this.applied.push(`s${s.seq}`);
    this.#wake();
  }
  onFlip(r: FlipRecord): void {
    try {
      this.state.apply(r);
    } catch (err) {
      this.errors.push((err as Error).message);
    }
    this.applied.push(r.seq);
    this.#wake();
  }
  onStatus(status: SourceStatus, detail?: string): void {
    this.statuses.push({ status, at: performance.now(), detail });
    this.#wake();
  }
  get status(): SourceStatus | undefined {
    return this.statuses[this.statuses.length - 1]?.status;
  }
  /** Flip seqs applied (snapshots left out). */
  get flips(): number[] {
    return this.applied.filter((s): s is number => typeof s === 'number');
  }
  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
  /** Resolves when `pred` holds (checked on every delivery), or rejects after `ms`. */
  until(pred: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `timed out waiting for ${what}; applied ${JSON.stringify(this.applied.slice(-20))}, status ${this.status}`,
            ),
          ),
        ms,
      );
      const check = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else this.#waiters.push(check);
      };
      this.#waiters.push(check);
    });
  }
}

/** A started remote source with its folding listener. */
export interface Client {
  readonly source: RemoteFlipSource;
  readonly listener: FoldingListener;
}

export async function startClient(
  url: string | string[],
  workerId: string,
  extra: Partial<RemoteFlipSourceOptions> = {},
): Promise<Client> {
  const source = new RemoteFlipSource({
    urls: Array.isArray(url) ? url : [url],
    token: ADMIN_TOKEN,
    workerId,
    release: 'wire',
    staleAfterMs: 1000,
    heartbeatMs: 200,
    backoff: { initialMs: 20, maxMs: 200 },
    ...extra,
  });
  const listener = new FoldingListener();
  await source.start(listener);
  return { source, listener };
}

/** Every flip applied once, in increasing order, and the state equal to the log's. */
export function expectConverged(
  client: Client,
  records: readonly FlipRecord[],
): string | undefined {
  const flips = client.listener.flips;
  for (let i = 1; i < flips.length; i++) {
    if (flips[i]! <= flips[i - 1]!)
      return `applied out of order or twice: ${JSON.stringify(flips)}`;
  }
  // No flip skipped except across a snapshot (which replaces the state).
  let cur = -1;
  for (const a of client.listener.applied) {
    if (typeof a === 'string') cur = Number(a.slice(1));
    else if (a !== cur + 1)
      return `flip ${a} applied after ${cur}: ${JSON.stringify(client.listener.applied)}`;
    else cur = a;
  }
  if (client.listener.errors.length) return `fold errors: ${client.listener.errors.join('; ')}`;
  const expected = KillState.fold(records).toSnapshot();
  const got = client.listener.state.toSnapshot();
  if (got.seq !== expected.seq || got.hash !== expected.hash)
    return `at ${got.seq}, log at ${expected.seq}`;
  if (
    JSON.stringify(got.halts.map((h) => h.seq)) !== JSON.stringify(expected.halts.map((h) => h.seq))
  ) {
    return 'active halts differ';
  }
  return undefined;
}
