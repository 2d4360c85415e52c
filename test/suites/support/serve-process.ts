/**
 * Helpers for the KS-13 suites that drive `killswitch serve` as a child process: start it on a
 * data directory and a port, read its start line, kill it, run other CLI commands, and POST over
 * node:http with a fresh connection per request (a pooled socket left over from a killed server
 * would turn the next round's first request into a spurious failure).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { resolve } from 'node:path';
import type { TokenSpec } from '../../../src/auth/index.js';

/** The compiled CLI (`npm run build` first; `npm test` runs it as `pretest`). */
export const CLI = resolve('dist/src/cli/main.js');

/** Tokens every suite's server accepts. */
export const SUITE_TOKENS = {
  admin: 'suite-admin-token-0123456789abcdef',
  viewer: 'suite-viewer-token-0123456789abcdef',
  worker: 'suite-worker-token-0123456789abcdef',
} as const;

export const SUITE_TOKEN_SPECS: TokenSpec[] = [
  { name: 'suite-admin', token: SUITE_TOKENS.admin, role: 'admin' },
  { name: 'suite-viewer', token: SUITE_TOKENS.viewer, role: 'viewer' },
  // KS-17.2.1: workers acknowledge with a worker credential.
  { name: 'suite-worker', token: SUITE_TOKENS.worker, role: 'worker', workers: ['*'] },
];

/** Fails with a clear message when dist/ is missing. */
export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
}

/** Options of {@link startServe}. */
export interface ServeOptions {
  readonly dataDir: string;
  /** 0 picks a free one. @default 0 */
  readonly port?: number;
  readonly staleAfterMs?: number;
  readonly heartbeatMs?: number;
  /** Give up waiting for the start line after this long. @default 20000 ms */
  readonly startTimeoutMs?: number;
  /**
   * The flip log (`--store`): a `postgres://…?schema=…` URL, a file path or `memory`.
   * @default the file log in `dataDir`
   */
  readonly store?: string;
  /** The tokens it accepts (`KILLSWITCH_TOKENS`). @default {@link SUITE_TOKEN_SPECS} */
  readonly tokens?: readonly TokenSpec[];
  /**
   * `--max-flips-per-second`. The suites drive flips in bursts; the rate limit has its own
   * suite (KS-17.8.3). @default 100000
   */
  readonly maxFlipsPerSecond?: number;
  /** `--replica-timeout-ms` (replicas sharing a PostgreSQL fleet, KS-6.6). @default serve's */
  readonly replicaTimeoutMs?: number;
  /** More `serve` flags (`--signing-key <file>`, ...). */
  readonly extraArgs?: readonly string[];
}

/** A running `killswitch serve` child. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly port: number;
  /** What the server wrote to stderr so far. */
  stderr(): string;
  /** Sends a signal and resolves with how it ended. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The outcome of a child that was expected not to start. */
export interface ServeFailure {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function serveArgs(o: ServeOptions): string[] {
  return [
    CLI,
    'serve',
    '--json',
    '--data-dir',
    o.dataDir,
    '--port',
    String(o.port ?? 0),
    ...(o.staleAfterMs === undefined ? [] : ['--stale-after-ms', String(o.staleAfterMs)]),
    ...(o.heartbeatMs === undefined ? [] : ['--heartbeat-ms', String(o.heartbeatMs)]),
    ...(o.store === undefined ? [] : ['--store', o.store]),
    ...(o.replicaTimeoutMs === undefined
      ? []
      : ['--replica-timeout-ms', String(o.replicaTimeoutMs)]),
    '--max-flips-per-second',
    String(o.maxFlipsPerSecond ?? 100_000),
    ...(o.extraArgs ?? []),
  ];
}

function serveEnv(tokens: readonly TokenSpec[] = SUITE_TOKEN_SPECS): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['KILLSWITCH_ADMIN_TOKEN'];
  delete env['KILLSWITCH_DATA_DIR'];
  env['KILLSWITCH_TOKENS'] = JSON.stringify(tokens);
  return env;
}

/**
 * Starts `killswitch serve --json` and resolves once it printed its URL. Rejects with the child's
 * stderr when it exits first (use {@link serveExpectingFailure} for that case).
 */
export function startServe(o: ServeOptions): Promise<ServeProcess> {
  const child = spawn(process.execPath, serveArgs(o), {
    env: serveEnv(o.tokens),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => done({ code, signal })),
  );
  child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start within ${o.startTimeoutMs ?? 20_000} ms: ${err}`));
    }, o.startTimeoutMs ?? 20_000);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (code ${code}, signal ${signal}) before starting: ${err}`));
    });
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      clearTimeout(timer);
      let url: string;
      try {
        url = (JSON.parse(line) as { url: string }).url;
      } catch {
        reject(new Error(`serve printed an unexpected start line: ${line}`));
        return;
      }
      const stop = (signal: NodeJS.Signals = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return exited;
      };
      resolveStart({
        child,
        pid: child.pid!,
        url,
        port: Number(new URL(url).port),
        stderr: () => err,
        stop,
        exited,
      });
    });
  });
}

/** Runs `killswitch serve` on a data directory where it must refuse to start. */
export function serveExpectingFailure(o: ServeOptions): Promise<ServeFailure> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      serveArgs(o),
      { env: serveEnv(o.tokens), timeout: o.startTimeoutMs ?? 20_000 },
      (error, stdout, stderr) => {
        const code =
          error === null
            ? 0
            : typeof error.code === 'number'
              ? error.code
              : (null as number | null);
        done({ code, signal: (error?.signal ?? null) as NodeJS.Signals | null, stdout, stderr });
      },
    );
  });
}

/** Runs another CLI command (`verify`, ...) to completion. */
export function runCli(
  args: readonly string[],
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: timeoutMs, env: serveEnv() },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        done({ code, stdout, stderr });
      },
    );
  });
}

/** An HTTP answer: status and parsed JSON (or the raw text). */
export interface Answer {
  readonly status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are asserted field by field
  readonly json: any;
}

/**
 * One HTTP request on a connection of its own (`agent: false`). Rejects on a transport error
 * (refused, reset, the server killed mid-answer): the caller decides what an unanswered request
 * means.
 */
export function httpJson(
  url: string,
  method: string,
  options: { token?: string; body?: unknown; timeoutMs?: number } = {},
): Promise<Answer> {
  return new Promise((done, fail) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const req = request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', fail);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = text;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          // keep the text
        }
        done({ status: res.statusCode ?? 0, json });
      });
    });
    req.setTimeout(options.timeoutMs ?? 15_000, () =>
      req.destroy(new Error(`${method} ${url} timed out`)),
    );
    req.on('error', fail);
    req.end(payload);
  });
}

/** The release every suite's workers report. */
export const SUITE_RELEASE = 'suite';

/**
 * Marks the suites' release green (KS-10.5.1), so resumes through `killswitch serve`, which
 * gates them on a green release (KS-10.5.3), can name it. The verdict lives in the data
 * directory and survives restarts.
 */
export async function markSuiteReleaseGreen(url: string): Promise<void> {
  const a = await httpJson(`${url}/v1/releases`, 'POST', {
    token: SUITE_TOKENS.admin,
    body: { release: SUITE_RELEASE, status: 'green', reason: 'KS-13 suites' },
  });
  if (a.status !== 201)
    throw new Error(`marking ${SUITE_RELEASE} green: ${a.status} ${JSON.stringify(a.json)}`);
}

/** Polls `pred` every `everyMs` until it holds; rejects after `ms` naming `what`. */
export async function waitFor(
  pred: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  everyMs = 20,
): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A seed from `KS_SUITE_SEED` (to replay a failure) or a fresh one; always printed. */
export function suiteSeed(suite: string): number {
  const fromEnv = process.env['KS_SUITE_SEED'];
  const seed =
    fromEnv !== undefined && fromEnv !== ''
      ? Number(fromEnv)
      : (Date.now() ^ (process.pid << 8)) >>> 0;
  console.log(`[${suite}] seed ${seed} (replay with KS_SUITE_SEED=${seed})`);
  return seed;
}

/** A small seeded PRNG (mulberry32), so a printed seed replays the same schedule. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
