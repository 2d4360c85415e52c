import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '../../src/client/index.js';
import { FileSideEffectLedger } from '../../src/ledger/index.js';
import { FileRunJournal } from '../../src/run/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import {
  spawnLineProcess,
  startFileControlPlane,
  type FileControlPlane,
  type LineProcess,
} from '../fixtures/process-fleet.js';

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

let plane: FileControlPlane;
let dir = '';
let cp: ControlPlane;
let sink: Sink;
const workers = new Set<LineProcess>();

beforeEach(async () => {
  plane = await startFileControlPlane('ks-run-proc-');
  ({ dir, cp } = plane);
  sink = new Sink();
  await sink.start();
});
afterEach(async () => {
  for (const { child: c } of workers)
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  workers.clear();
  await sink.close();
  await plane.close();
});

function worker(
  workerId: string,
  mode: 'start' | 'resume',
  tree?: { runId: string; runPath: string[] },
): LineProcess {
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
  const w = spawnLineProcess(WORKER, workerId, config);
  workers.add(w);
  return w;
}

const admin = () => new ControlPlaneClient({ url: cp.url });

/**
 * The walk both resume tests take (a run, or a child run of a tree): worker A starts the run and
 * is SIGKILLed while thinking after its second effect; the operator halts `haltRunId` (durable in
 * the flip log, not in any worker); worker B resumes the run, sees the halt before its first
 * effect and is refused; lifted, worker C resumes and finishes without sending s1 and s2 again.
 */
async function killHaltResume(o: {
  readonly tree?: { runId: string; runPath: string[] };
  readonly haltRunId: string;
  readonly haltReason: string;
  readonly resumeReason: string;
}): Promise<{ c: LineProcess }> {
  const runId = o.tree?.runId ?? 'run-1';
  sink.holdThinkAfter = 's2';
  const a = worker('worker-a', 'start', o.tree);
  await sink.until(() => sink.thinks.some((t) => t.after === 's2'));
  a.child.kill('SIGKILL');
  expect((await a.exit).signal).toBe('SIGKILL');
  expect(sink.effects.map((e) => e.key)).toEqual([`${runId}/s1`, `${runId}/s2`]);

  const halt = await admin().flip({
    action: 'halt',
    selector: { runId: o.haltRunId },
    reason: o.haltReason,
  });
  const b = worker('worker-b', 'resume', o.tree);
  const bExit = await b.exit;
  expect(bExit.code, `${b.lines.join('\n')}\n${bExit.stderr}`).toBe(4);
  expect(b.lines).toContain(`refused KS_HALTED ${halt.flip.seq}`);
  expect(sink.effects).toHaveLength(2);

  await admin().flip({
    action: 'resume',
    selector: { runId: o.haltRunId },
    reason: o.resumeReason,
    release: 'v1',
  });
  sink.holdThinkAfter = undefined;
  const c = worker('worker-c', 'resume', o.tree);
  const cExit = await c.exit;
  expect(cExit.code, `${c.lines.join('\n')}\n${cExit.stderr}`).toBe(0);
  return { c };
}

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
    const { c } = await killHaltResume({
      haltRunId: 'run-1',
      haltReason: 'worker died mid-run; investigating',
      resumeReason: 'root cause fixed',
    });
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
    // The operator halts the PARENT; the child's worker is dead and no process knows the tree.
    await killHaltResume({
      tree: { runId: 'child-1', runPath: ['parent-1', 'child-1'] },
      haltRunId: 'parent-1',
      haltReason: 'parent misbehaving',
      resumeReason: 'fixed',
    });
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
