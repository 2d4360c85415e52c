import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { ControlPlaneClient } from '../../src/client/index.js';
import { FileSideEffectLedger } from '../../src/ledger/index.js';
import { FileRunJournal } from '../../src/run/index.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';

// Runs compiled code: `npm run build` first (the `pretest` script does).
const WORKER = resolve('dist/test/fixtures/run-worker.js');
const quiet = { warn: () => undefined };
const run = promisify(execFile);

/** The outside world the run's effects reach: records each arrival; can hold a think or an effect. */
class Sink {
  readonly effects: { key: string; worker: string }[] = [];
  readonly thinks: { after: string; worker: string }[] = [];
  holdThinkAfter: string | undefined;
  holdEffect: string | undefined;
  readonly #server: Server;
  readonly #waiters = new Set<() => void>();
  url = '';

  constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', this.url);
    req.resume();
    if (u.pathname === '/effect') {
      const key = String(req.headers['idempotency-key']);
      this.effects.push({ key, worker: String(req.headers['x-worker']) });
      this.#notify();
      if (this.holdEffect !== undefined && key.endsWith(`/${this.holdEffect}`)) return; // never answers
      res.end('ok');
      return;
    }
    const after = u.searchParams.get('after') ?? '';
    this.thinks.push({ after, worker: u.searchParams.get('worker') ?? '' });
    this.#notify();
    if (after === this.holdThinkAfter) return; // the worker thinks forever (until it is killed)
    res.end('thought');
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  async until(cond: () => boolean, ms = 15_000): Promise<void> {
    if (cond()) return;
    await new Promise<void>((ok, fail) => {
      const t = setTimeout(() => {
        this.#waiters.delete(check);
        fail(new Error('timed out waiting for the sink'));
      }, ms);
      const check = (): void => {
        if (!cond()) return;
        clearTimeout(t);
        this.#waiters.delete(check);
        ok();
      };
      this.#waiters.add(check);
    });
  }

  close(): Promise<void> {
    return new Promise((r) => {
      this.#server.close(() => r());
      this.#server.closeAllConnections();
    });
  }
}

interface Worker {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

let dir = '';
let store: FileFlipLogStore;
let cp: ControlPlane;
let sink: Sink;
const children = new Set<ChildProcess>();

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-run-proc-'));
  store = new FileFlipLogStore({ path: join(dir, 'flips.jsonl') });
  cp = await startControlPlane({
    store,
    port: 0,
    auth: 'none',
    logger: { info() {}, warn() {}, error() {} },
  });
  sink = new Sink();
  await sink.start();
});
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  await sink.close();
  await cp.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function worker(
  workerId: string,
  mode: 'start' | 'resume',
  tree?: { runId: string; runPath: string[] },
): Worker {
  const config = {
    url: cp.url,
    workerId,
    release: 'v1',
    ledger: join(dir, 'effects.jsonl'),
    journal: join(dir, 'runs.jsonl'),
    sink: sink.url,
    runId: tree?.runId ?? 'run-1',
    ...(tree !== undefined ? { runPath: tree.runPath } : {}),
    mode,
  };
  const child = spawn(process.execPath, [WORKER, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines: string[] = [];
  let stderr = '';
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
    (ok) => child.on('exit', (code, signal) => ok({ code, signal, stderr })),
  );
  return { child, lines, exit };
}

const admin = () => new ControlPlaneClient({ url: cp.url });

/** `killswitch report --json` over the shared ledger and run journal. */
async function report_(args: string[]) {
  const { stdout } = await run(process.execPath, [
    resolve('dist/src/cli/main.js'),
    'report',
    '--ledger',
    join(dir, 'effects.jsonl'),
    '--runs',
    join(dir, 'runs.jsonl'),
    '--json',
    ...args,
  ]);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- asserted field by field
  return JSON.parse(stdout) as any;
}

describe('KS-10.2.7 a run whose worker was SIGKILLed is resumed on another worker process', () => {
  it('the resume refuses while the run is halted, then continues from the journal with no effect repeated', async () => {
    // Worker A starts the run and is SIGKILLed while thinking after its second effect.
    sink.holdThinkAfter = 's2';
    const a = worker('worker-a', 'start');
    await sink.until(() => sink.thinks.some((t) => t.after === 's2'));
    a.child.kill('SIGKILL');
    expect((await a.exit).signal).toBe('SIGKILL');
    expect(sink.effects.map((e) => e.key)).toEqual(['run-1/s1', 'run-1/s2']);

    // The operator halts the run (durable in the flip log, not in any worker).
    const halt = await admin().flip({
      action: 'halt',
      selector: { runId: 'run-1' },
      reason: 'worker died mid-run; investigating',
    });

    // Worker B resumes it: the halt is seen before its first effect and the resume is refused.
    const b = worker('worker-b', 'resume');
    const bExit = await b.exit;
    expect(bExit.code, `${b.lines.join('\n')}\n${bExit.stderr}`).toBe(4);
    expect(b.lines).toContain(`refused KS_HALTED ${halt.flip.seq}`);
    expect(sink.effects).toHaveLength(2);

    // Lifted, worker C resumes and finishes: s1 and s2 are not sent again.
    await admin().flip({
      action: 'resume',
      selector: { runId: 'run-1' },
      reason: 'root cause fixed',
      release: 'v1',
    });
    sink.holdThinkAfter = undefined;
    const c = worker('worker-c', 'resume');
    const cExit = await c.exit;
    expect(cExit.code, `${c.lines.join('\n')}\n${cExit.stderr}`).toBe(0);
    expect(c.lines.at(-1)).toBe('completed s1:ok,s2:ok,s3:ok,s4:ok,s5:ok');
    expect(sink.effects).toEqual([
      { key: 'run-1/s1', worker: 'worker-a' },
      { key: 'run-1/s2', worker: 'worker-a' },
      { key: 'run-1/s3', worker: 'worker-c' },
      { key: 'run-1/s4', worker: 'worker-c' },
      { key: 'run-1/s5', worker: 'worker-c' },
    ]);

    const ledger = new FileSideEffectLedger({ path: join(dir, 'effects.jsonl'), logger: quiet });
    const entries = await ledger.entries();
    expect(entries.map((e) => [e.key, e.status, e.attempts])).toEqual(
      ['s1', 's2', 's3', 's4', 's5'].map((s) => [`run-1/${s}`, 'landed', 1]),
    );
    await ledger.close();
    const journal = new FileRunJournal({ path: join(dir, 'runs.jsonl'), logger: quiet });
    const state = await journal.run('run-1');
    expect(state).toMatchObject({
      status: 'completed',
      executions: 3,
      workers: ['worker-a', 'worker-b', 'worker-c'],
    });
    expect(
      (await journal.records('run-1')).filter((r) => r.type === 'ended').map((r) => r.status),
    ).toEqual(['refused', 'completed']);
    await journal.close();

    // KS-10.4.5 the recovery report joins the ledger and the journal.
    const report = await report_(['--run', 'run-1']);
    expect(report.runs).toMatchObject([
      {
        runId: 'run-1',
        counts: { intended: 5, landed: 5, inDoubt: 0 },
        journal: { status: 'completed', executions: 3, landedSteps: 5 },
      },
    ]);
    expect(report.compensations.map((c: { key: string }) => c.key)).toEqual(
      ['s5', 's4', 's3', 's2', 's1'].map((x) => `run-1/${x}`),
    );
  });

  it('a worker killed while its effect was in flight leaves it in doubt: the resume does not send it again', async () => {
    sink.holdEffect = 's3';
    const a = worker('worker-a', 'start');
    await sink.until(() => sink.effects.some((e) => e.key === 'run-1/s3'));
    a.child.kill('SIGKILL');
    await a.exit;
    sink.holdEffect = undefined;
    const c = worker('worker-c', 'resume');
    const cExit = await c.exit;
    expect(cExit.code, `${c.lines.join('\n')}\n${cExit.stderr}`).toBe(5);
    expect(c.lines.at(-1)).toMatch(/^stopped KS_DUPLICATE_EFFECT .*in doubt/);
    expect(sink.effects.map((e) => e.key)).toEqual(['run-1/s1', 'run-1/s2', 'run-1/s3']);
    const journal = new FileRunJournal({ path: join(dir, 'runs.jsonl'), logger: quiet });
    expect((await journal.run('run-1'))?.lastEnd).toMatchObject({
      status: 'in-doubt',
      step: 's3',
    });
    await journal.close();
    const report = await report_([]);
    expect(report.runs[0]).toMatchObject({
      counts: { intended: 3, landed: 2, inDoubt: 1 },
      journal: { status: 'in-doubt' },
    });
    expect(report.inDoubt.map((e: { key: string }) => e.key)).toEqual(['run-1/s3']);
  });
});

describe('KS-10.1.7 KS-10.4.6 a child run resumed on another worker checks every ancestor before its first effect', () => {
  it('the parent is halted: the resumed child is refused; after the resume it finishes with no effect repeated; report --run <parent> covers and prints the tree', async () => {
    const tree = { runId: 'child-1', runPath: ['parent-1', 'child-1'] };
    sink.holdThinkAfter = 's2';
    const a = worker('worker-a', 'start', tree);
    await sink.until(() => sink.thinks.some((t) => t.after === 's2'));
    a.child.kill('SIGKILL');
    expect((await a.exit).signal).toBe('SIGKILL');
    expect(sink.effects.map((e) => e.key)).toEqual(['child-1/s1', 'child-1/s2']);

    // The operator halts the PARENT; the child's worker is dead and no process knows the tree.
    const halt = await admin().flip({
      action: 'halt',
      selector: { runId: 'parent-1' },
      reason: 'parent misbehaving',
    });
    const b = worker('worker-b', 'resume', tree);
    const bExit = await b.exit;
    expect(bExit.code, `${b.lines.join('\n')}\n${bExit.stderr}`).toBe(4);
    expect(b.lines).toContain(`refused KS_HALTED ${halt.flip.seq}`);
    expect(sink.effects).toHaveLength(2);

    await admin().flip({
      action: 'resume',
      selector: { runId: 'parent-1' },
      reason: 'fixed',
      release: 'v1',
    });
    sink.holdThinkAfter = undefined;
    const c = worker('worker-c', 'resume', tree);
    const cExit = await c.exit;
    expect(cExit.code, `${c.lines.join('\n')}\n${cExit.stderr}`).toBe(0);
    expect(sink.effects.map((e) => e.key)).toEqual(
      ['s1', 's2', 's3', 's4', 's5'].map((s) => `child-1/${s}`),
    );

    // The journal and every ledger entry record the run path.
    const journal = new FileRunJournal({ path: join(dir, 'runs.jsonl'), logger: quiet });
    expect((await journal.run('child-1'))?.context).toEqual({
      tenant: 'acme',
      runPath: ['parent-1', 'child-1'],
    });
    await journal.close();
    const ledger = new FileSideEffectLedger({ path: join(dir, 'effects.jsonl'), logger: quiet });
    for (const e of await ledger.entries()) {
      expect(e.context.runPath).toEqual(['parent-1', 'child-1']);
    }
    await ledger.close();

    // The report on the parent covers its tree (the parent itself landed nothing here).
    const report = await report_(['--run', 'parent-1']);
    expect(report.runs).toMatchObject([
      {
        runId: 'child-1',
        runPath: ['parent-1', 'child-1'],
        counts: { intended: 5, landed: 5, inDoubt: 0 },
        journal: { status: 'completed', executions: 3 },
      },
    ]);
    const { stdout } = await run(process.execPath, [
      resolve('dist/src/cli/main.js'),
      'report',
      '--ledger',
      join(dir, 'effects.jsonl'),
      '--runs',
      join(dir, 'runs.jsonl'),
      '--run',
      'parent-1',
    ]);
    expect(stdout).toContain('run=parent-1 and its descendants');
    expect(stdout).toMatch(/^└ run child-1 \[completed/m);
    // A report on an unrelated run id does not include it.
    expect((await report_(['--run', 'other-parent'])).runs).toEqual([]);
  });
});
