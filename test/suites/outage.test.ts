/**
 * KS-13.2 Outage suite: several workers (each a child process running a RemoteFlipSource behind
 * a KillSwitchProvider, test/fixtures/suite-worker.ts) follow `killswitch serve` (a child
 * process). The control plane goes away three ways: SIGKILL (connections reset), SIGTERM (a
 * clean stop: streams ended) and SIGSTOP (a hung process: sockets stay open, nothing answers).
 * Every worker must answer fail-closed within staleAfterMs plus a margin; the delay is measured
 * and printed. A flip is then written to the log while the control plane is down (an operator
 * appending offline), the control plane comes back on the same port and data directory, and every
 * worker must catch up (apply that flip), acknowledge it (GET /v1/workers) and acknowledge the
 * next flip, which answers complete with every worker acknowledged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import {
  SUITE_RELEASE,
  SUITE_TOKENS,
  assertBuilt,
  markSuiteReleaseGreen,
  httpJson,
  startServe,
  waitFor,
  type ServeProcess,
} from './support/serve-process.js';

const WORKER = resolve('dist/test/fixtures/suite-worker.js');
const WORKERS = 4;
const STALE_MS = 1000;
const HEARTBEAT_MS = 200;
/**
 * Generous on purpose: these machines are 2-core and shared with the rest of `npm test`; the
 * figure that matters is printed. The design bound is staleAfterMs after the last successful
 * renewal, which is before the outage began.
 */
const MARGIN_MS = 1500;
const PROBE_TENANT = 'outage-probe';

interface Answer {
  readonly at: number;
  readonly value: boolean;
  readonly variant: string;
  readonly reason: string;
  readonly seq: number;
}

class WorkerProcess {
  readonly answers: Answer[] = [];
  readonly child: ChildProcess;
  #buf = '';

  constructor(
    readonly id: string,
    url: string,
  ) {
    this.child = spawn(
      process.execPath,
      [WORKER, url, id, SUITE_TOKENS.worker, String(STALE_MS), String(HEARTBEAT_MS), PROBE_TENANT],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    this.child.stdout!.on('data', (c: Buffer) => {
      this.#buf += c.toString('utf8');
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        const o = JSON.parse(line) as Answer & { type: string };
        if (o.type === 'answer') this.answers.push(o);
      }
    });
  }

  get last(): Answer | undefined {
    return this.answers.at(-1);
  }

  /** The first answer with this variant at or after `since`. */
  firstSince(variant: string, since: number): Answer | undefined {
    return this.answers.find((a) => a.variant === variant && a.at >= since);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }
}

let dir: string | undefined;
let server: ServeProcess | undefined;
const workers: WorkerProcess[] = [];

afterAll(async () => {
  for (const w of workers) await w.stop();
  if (server !== undefined) {
    server.child.kill('SIGCONT');
    await server.stop('SIGKILL');
  }
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

interface WorkerRow {
  id: string;
  connected: boolean;
  lastAckSeq: number | null;
}

async function fleet(url: string): Promise<{ head: number; workers: WorkerRow[] }> {
  const a = await httpJson(`${url}/v1/workers`, 'GET', { token: SUITE_TOKENS.viewer });
  expect(a.status).toBe(200);
  return a.json as { head: number; workers: WorkerRow[] };
}

/** Every worker connected and acknowledged `seq` (the control plane's own record). */
async function allAcknowledged(url: string, seq: number): Promise<boolean> {
  const f = await fleet(url);
  return workers.every((w) =>
    f.workers.some((r) => r.id === w.id && r.connected && (r.lastAckSeq ?? -1) >= seq),
  );
}

describe('KS-13.2.1 KS-13.2.2 with the control plane gone, every worker fails closed within staleAfterMs; when it returns they catch up and acknowledge', () => {
  it('SIGKILL, SIGTERM and SIGSTOP outages: fail-closed delay measured and bounded, catch-up acknowledged', async () => {
    assertBuilt();
    dir = await mkdtemp(join(tmpdir(), 'ks-suite-outage-'));
    server = await startServe({
      dataDir: dir,
      port: 0,
      staleAfterMs: STALE_MS,
      heartbeatMs: HEARTBEAT_MS,
    });
    const port = server.port;
    const url = server.url;
    await markSuiteReleaseGreen(url);
    for (let i = 0; i < WORKERS; i++) workers.push(new WorkerProcess(`outage-w${i}`, url));
    await waitFor(
      () => workers.every((w) => w.last?.variant === 'running'),
      20_000,
      'every worker running (fresh, not halted)',
    );
    await waitFor(() => allAcknowledged(url, 0), 10_000, 'every worker acknowledged', 50);

    const figures: Record<string, number[]> = {};
    let halted = false;
    for (const kind of ['SIGKILL', 'SIGTERM', 'SIGSTOP'] as const) {
      // --- the outage ---------------------------------------------------------------------
      const victim = server;
      const downAt = Date.now();
      victim.child.kill(kind);
      await waitFor(
        () => workers.every((w) => w.firstSince('fail-closed', downAt) !== undefined),
        STALE_MS * 10,
        `${kind}: every worker fail-closed`,
      );
      const delays = workers.map((w) => w.firstSince('fail-closed', downAt)!.at - downAt);
      figures[kind] = delays;
      console.log(
        `[outage] ${kind}: control plane down -> worker fail-closed (ms): ${delays.join(', ')} ` +
          `(staleAfterMs ${STALE_MS}, heartbeatMs ${HEARTBEAT_MS})`,
      );
      for (const w of workers) {
        const a = w.firstSince('fail-closed', downAt)!;
        expect(a.value, `${w.id} answers halted while failing closed`).toBe(true);
      }
      for (const d of delays) expect(d).toBeLessThanOrEqual(STALE_MS + MARGIN_MS);

      // A hung process still holds the port and the log's lock: take it down for good.
      if (kind === 'SIGSTOP') victim.child.kill('SIGKILL');
      await victim.exited;

      // --- a flip written while the control plane is down ----------------------------------
      halted = !halted;
      const store = new FileFlipLogStore({
        path: join(dir, 'flips.jsonl'),
        logger: { warn: () => {} }, // it takes over the dead server's lock claim
      });
      await store.open();
      const { record: offline } = await store.append({
        actor: 'suite-offline',
        action: halted ? 'halt' : 'resume',
        selector: { tenant: PROBE_TENANT },
        reason: `written during the ${kind} outage`,
      });
      await store.close();

      // --- the control plane returns ---------------------------------------------------------
      const backAt = Date.now();
      server = await startServe({
        dataDir: dir,
        port,
        staleAfterMs: STALE_MS,
        heartbeatMs: HEARTBEAT_MS,
      });
      const wantVariant = halted ? 'halted' : 'running';
      await waitFor(
        () =>
          workers.every(
            (w) =>
              w.last !== undefined && w.last.variant === wantVariant && w.last.seq >= offline.seq,
          ),
        20_000,
        `${kind}: every worker applied the offline flip ${offline.seq}`,
      );
      await waitFor(
        () => allAcknowledged(url, offline.seq),
        10_000,
        `${kind}: every worker acknowledged seq ${offline.seq}`,
        50,
      );
      const caughtUp = workers.map((w) => w.firstSince(wantVariant, backAt)!.at - backAt);
      console.log(
        `[outage] ${kind}: back -> worker applied the missed flip (ms): ${caughtUp.join(', ')}`,
      );

      // The next flip through the API is acknowledged by the whole fleet, not waited out.
      halted = !halted;
      const answer = await httpJson(`${url}/v1/flips`, 'POST', {
        token: SUITE_TOKENS.admin,
        body: {
          action: halted ? 'halt' : 'resume',
          selector: { tenant: PROBE_TENANT },
          reason: `after the ${kind} outage`,
          release: SUITE_RELEASE, // serve gates resumes on a green release (KS-10.5.3)
          wait: 10_000,
        },
      });
      expect(answer.status, JSON.stringify(answer.json)).toBe(201);
      const acked = (answer.json.fleet.acknowledged as { workerId: string }[]).map(
        (a) => a.workerId,
      );
      expect(answer.json.fleet.complete).toBe(true);
      expect(acked.sort()).toEqual(workers.map((w) => w.id).sort());
      await waitFor(
        () => workers.every((w) => w.last?.variant === (halted ? 'halted' : 'running')),
        10_000,
        `${kind}: every worker applied the flip after the outage`,
      );
    }
    console.log(`[outage] figures ${JSON.stringify(figures)}`);
  }, 120_000);
});

describe('KS-13.2.3 a control plane signalled the moment it announced its URL still stops cleanly', () => {
  it('SIGTERM on reading the start line, 10 times: exit 0 every time', async () => {
    assertBuilt();
    const d = await mkdtemp(join(tmpdir(), 'ks-suite-sigterm-'));
    try {
      const codes: (number | null)[] = [];
      for (let i = 0; i < 10; i++) {
        const s = await startServe({ dataDir: d, port: 0 });
        const exit = await s.stop('SIGTERM'); // at once: the supervisor saw "ready"
        codes.push(exit.code);
      }
      expect(codes).toEqual(Array.from({ length: 10 }, () => 0));
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  }, 60_000);
});
