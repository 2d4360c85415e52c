/**
 * KS-6.3.11 over the wire: a worker process whose wall clock is stepped (libfaketime, Debian's
 * `faketime` package, with the monotonic clock left alone as an NTP step or `date -s` leaves it)
 * while its control plane is frozen (SIGSTOP: sockets open, nothing answers). It fails closed
 * within its lease as in the control run with no step: the clock set back 10 minutes does not keep
 * it open, an hour forward does not cut a valid lease short.
 *
 * Without libfaketime the suite is skipped locally and fails under CI=true (`.ci/run` installs it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  SUITE_TOKENS,
  assertBuilt,
  startServe,
  type ServeProcess,
} from './support/serve-process.js';

const WORKER = resolve('dist/test/fixtures/lease-worker.js');
const STALE_AFTER_MS = 1500;
const HEARTBEAT_MS = 200;
const IN_CI = process.env['CI'] === 'true';

/** Debian's libfaketime (package `libfaketime`, pulled in by `faketime`); KS_LIBFAKETIME overrides. */
const LIBFAKETIME =
  process.env['KS_LIBFAKETIME'] ??
  [
    '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/faketime/libfaketime.so.1',
  ].find((p) => existsSync(p)) ??
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const FOUND = existsSync(LIBFAKETIME);

const children = new Set<ChildProcess>();
const servers = new Set<ServeProcess>();
const dirs: string[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of servers) {
    s.child.kill('SIGCONT');
    await s.stop('SIGKILL');
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Line {
  readonly type: string;
  readonly status?: string;
  readonly detail?: string;
  /** The worker's (stepped) wall clock when it printed the line. */
  readonly wall: number;
  /** When this process read the line (performance.now()). */
  readonly t: number;
}

/** The lease-worker fixture under libfaketime, its offset read from `offsetFile` on every call. */
function steppedWorker(url: string, offsetFile: string) {
  const child = spawn(
    process.execPath,
    [WORKER, url, 'w-clock', SUITE_TOKENS.worker, String(STALE_AFTER_MS), String(HEARTBEAT_MS)],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        ...process.env,
        LD_PRELOAD: LIBFAKETIME,
        FAKETIME_TIMESTAMP_FILE: offsetFile,
        FAKETIME_NO_CACHE: '1',
        // A stepped system clock moves CLOCK_REALTIME only; CLOCK_MONOTONIC goes on.
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      },
    },
  );
  children.add(child);
  const lines: Line[] = [];
  let buf = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push({ ...(JSON.parse(text) as Omit<Line, 't'>), t: performance.now() });
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  return {
    lines,
    stderr: () => err,
    get status() {
      return lines.filter((l) => l.type === 'status').at(-1)?.status;
    },
    /** The worker's wall clock minus ours, read now (ms). */
    async wallOffset(): Promise<number> {
      const n = lines.length;
      child.stdin!.write('ping\n');
      await until(() => lines.slice(n).some((l) => l.type === 'ping'), 'a ping line', 5000);
      const ping = lines.slice(n).find((l) => l.type === 'ping')!;
      return ping.wall - Date.now();
    },
  };
}

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sets the worker's clock offset (libfaketime's relative syntax, in seconds). */
const setOffset = (file: string, seconds: number) =>
  writeFile(file, `${seconds >= 0 ? '+' : ''}${seconds}\n`);

describe.runIf(FOUND || IN_CI)('KS-6.3.11 a worker process under a stepped wall clock', () => {
  it(`finds libfaketime (${LIBFAKETIME}; apt-get install faketime) and the compiled worker`, () => {
    expect(existsSync(LIBFAKETIME), `${LIBFAKETIME}: apt-get install -y faketime`).toBe(true);
    assertBuilt();
    expect(existsSync(WORKER), `${WORKER} (run npm run build)`).toBe(true);
  });

  it(
    'with the control plane frozen, it fails closed within its lease whether its clock is stepped back 10 minutes or forward an hour, as in the control run',
    { timeout: 60_000 },
    async () => {
      assertBuilt();
      const dir = await mkdtemp(join(tmpdir(), 'ks-clock-step-'));
      dirs.push(dir);
      const offsetFile = join(dir, 'faketime-offset');
      await setOffset(offsetFile, 0);
      const server = await startServe({
        dataDir: join(dir, 'data'),
        staleAfterMs: STALE_AFTER_MS,
        heartbeatMs: HEARTBEAT_MS,
      });
      servers.add(server);
      const w = steppedWorker(server.url.replace(/\/$/, ''), offsetFile);
      await until(() => w.status === 'open', `the worker to open (${w.stderr()})`);

      /**
       * Freezes the control plane, runs `during` (the clock steps), and returns how long after
       * the freeze the worker failed closed; then thaws it and waits for the worker to reopen.
       */
      const frozenFailClosedAfter = async (during: () => Promise<void>): Promise<number> => {
        const frozenAt = performance.now();
        const from = w.lines.length;
        server.child.kill('SIGSTOP');
        await during();
        const stale = () =>
          w.lines.slice(from).find((l) => l.type === 'status' && l.status === 'stale');
        await until(() => stale() !== undefined, 'the worker to fail closed', 20_000);
        const after = stale()!.t - frozenAt;
        server.child.kill('SIGCONT');
        await until(() => w.status === 'open', 'the worker to reopen after the thaw');
        await setOffset(offsetFile, 0);
        return after;
      };

      // The control run: nothing stepped.
      const control = await frozenFailClosedAfter(async () => undefined);

      // Back 10 minutes as the server freezes; set right again 500 ms later (the run:
      // a wall-clock lease stayed open, still open 6 s after the clock was set right).
      const back = await frozenFailClosedAfter(async () => {
        await setOffset(offsetFile, -600);
        expect(await w.wallOffset()).toBeLessThan(-590_000);
        await sleep(500);
        await setOffset(offsetFile, 0);
      });

      // An hour forward while the control plane answers: a valid lease is not cut short.
      const steppedAt = performance.now();
      const from = w.lines.length;
      await setOffset(offsetFile, 3600);
      expect(await w.wallOffset()).toBeGreaterThan(3_590_000);
      await sleep(2 * STALE_AFTER_MS);
      expect(
        w.lines.slice(from).filter((l) => l.type === 'status' && l.status !== 'open'),
        `no status change in the ${Math.round(performance.now() - steppedAt)} ms after the step`,
      ).toEqual([]);
      expect(w.status).toBe('open');
      // Then frozen with the clock an hour ahead: it fails closed when its lease ends, not at once.
      const forward = await frozenFailClosedAfter(async () => {
        await setOffset(offsetFile, 7200);
      });

      // Each run fails closed within its lease (plus scheduling slack on a loaded machine), and
      // none earlier than a lease renewed at most a heartbeat or so before the freeze allows.
      const slack = 1500;
      for (const [name, ms] of Object.entries({ control, back, forward })) {
        expect(ms, `${name}: failed closed ${Math.round(ms)} ms after the freeze`).toBeLessThan(
          STALE_AFTER_MS + slack,
        );
        expect(ms, `${name}: failed closed ${Math.round(ms)} ms after the freeze`).toBeGreaterThan(
          STALE_AFTER_MS / 3,
        );
      }
      // And the stepped runs are like the control run.
      expect(Math.abs(back - control)).toBeLessThan(slack);
      expect(Math.abs(forward - control)).toBeLessThan(slack);
    },
  );
});
