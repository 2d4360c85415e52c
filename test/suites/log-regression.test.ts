/**
 * KS-6.4 over the wire, real processes: a log that moves backwards, or a replica on another log,
 * never leaves a worker open or a control plane vouching. Each case starts `killswitch serve`
 * processes and follows them with the real RemoteFlipSource.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { Recorder } from '../fixtures/remote-source.js';
import {
  SUITE_TOKENS,
  assertBuilt,
  httpJson,
  startServe,
  type ServeProcess,
} from './support/serve-process.js';

const dirs: string[] = [];
const servers = new Set<ServeProcess>();
const sources = new Set<RemoteFlipSource>();

beforeAll(() => assertBuilt());
afterEach(async () => {
  for (const s of sources) await s.stop();
  sources.clear();
  for (const s of servers) if (s.child.exitCode === null) await s.stop('SIGKILL');
  servers.clear();
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dataDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ks-regress-'));
  dirs.push(d);
  return d;
}

async function serve(dir: string, port = 0): Promise<ServeProcess> {
  const s = await startServe({ dataDir: dir, port, staleAfterMs: 1500, heartbeatMs: 200 });
  servers.add(s);
  return s;
}

function worker(
  urls: string[],
  id: string,
  warnings: string[],
): { source: RemoteFlipSource; rec: Recorder } {
  const source = new RemoteFlipSource({
    urls,
    token: SUITE_TOKENS.worker,
    workerId: id,
    staleAfterMs: 1500,
    heartbeatMs: 200,
    backoff: { initialMs: 50, maxMs: 200 },
    logger: { warn: (m) => warnings.push(m) },
  });
  sources.add(source);
  const rec = new Recorder();
  return { source, rec };
}

async function halt(url: string, tenant: string) {
  return httpJson(`${url}/v1/flips`, 'POST', {
    token: SUITE_TOKENS.admin,
    body: { action: 'halt', selector: { tenant }, reason: `regression test ${tenant}` },
  });
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('KS-6.4.1 KS-6.4.2 KS-6.4.3 KS-6.4.5 a file log replaced by an older copy', () => {
  it('the worker fails closed naming both sides, the restarted server stops vouching and answers no flip 2xx', async () => {
    const dir = await dataDir();
    const a = await serve(dir);
    const warnings: string[] = [];
    const { source, rec } = worker([a.url], 'w-file', warnings);
    await source.start(rec);
    await until(() => rec.status === 'open', 'the worker to open');
    expect((await halt(a.url, 't1')).status).toBe(201);
    // The backup: the log (and its identity) after seq 1, with its head file as a backup of the
    // data directory holds it (the log alone, without it, is refused at open: KS-17.7.5).
    await until(
      () =>
        readFile(join(dir, 'flips.jsonl.head'), 'utf8').then(
          (t) => (JSON.parse(t) as { seq: number }).seq === 1,
          () => false,
        ),
      'the head file to name seq 1 (written just after the acknowledgement)',
    );
    await copyFile(join(dir, 'flips.jsonl'), join(dir, 'backup.jsonl'));
    await copyFile(join(dir, 'flips.jsonl.head'), join(dir, 'backup.jsonl.head'));
    expect((await halt(a.url, 't2')).status).toBe(201);
    expect((await halt(a.url, 't3')).status).toBe(201);
    await until(() => source.appliedSeq === 3, 'the worker to apply seq 3');
    await a.stop('SIGTERM');
    servers.delete(a);
    await copyFile(join(dir, 'backup.jsonl'), join(dir, 'flips.jsonl'));
    await copyFile(join(dir, 'backup.jsonl.head'), join(dir, 'flips.jsonl.head'));
    const b = await serve(dir, a.port);
    // The worker refuses the restored log: stale, and never open again on it.
    await until(() => rec.status === 'stale', 'the worker to fail closed');
    await until(
      () =>
        warnings.some((w) =>
          /at seq 1 .*but worker w-file applied log \S+ at seq 3 .*moved backwards/.test(w),
        ),
      'the worker to name both sides',
    );
    // Its acknowledgements prove to the server that its log moved backwards: it stops vouching.
    await until(
      async () => (await httpJson(`${b.url}/healthz`, 'GET')).status === 503,
      'healthz 503',
    );
    const health = await httpJson(`${b.url}/healthz`, 'GET');
    expect(health.json.ok).toBe(false);
    expect(health.json.reason).toMatch(
      /the file store holds log \S+ at seq 1 .*but worker w-file applied log \S+ at seq 3 .*moved backwards/,
    );
    const refused = await halt(b.url, 't9');
    expect(refused.status).toBe(503);
    // Not vouching means every surface refuses or fails closed (KS-6.4.4, KS-12.1.5):
    // acknowledgements and new streams answer 503, OFREP answers an unhalted tenant halted.
    const ack = await httpJson(`${b.url}/v1/acks`, 'POST', {
      token: SUITE_TOKENS.worker,
      body: { workerId: 'w-other', seq: 1 },
    });
    expect(ack.status, JSON.stringify(ack.json)).toBe(503);
    const stream = await httpJson(`${b.url}/v1/stream`, 'GET', {
      token: SUITE_TOKENS.viewer,
      timeoutMs: 5000,
    });
    expect(stream.status).toBe(503);
    const ofrep = await httpJson(`${b.url}/ofrep/v1/evaluate/flags/kill-switch`, 'POST', {
      token: SUITE_TOKENS.worker,
      body: { context: { targetingKey: 'x', tenant: 'never-halted' } },
    });
    expect(ofrep.json, JSON.stringify(ofrep.json)).toMatchObject({
      value: true,
      variant: 'fail-closed',
    });
    expect(source.appliedSeq).toBe(3);
    expect(rec.status).toBe('stale');
  });
});

describe('KS-6.4.2 a worker whose URL list holds a replica on another log', () => {
  it('never applies the other log: it fails closed naming both logs, and opens again on its own log', async () => {
    const rightDir = await dataDir();
    const right = Object.assign(await serve(rightDir), { dataDir: rightDir });
    const other = await serve(await dataDir());
    expect((await halt(right.url, 'everyone')).status).toBe(201);
    const warnings: string[] = [];
    const { source, rec } = worker([right.url, other.url], 'w-urls', warnings);
    await source.start(rec);
    await until(() => rec.status === 'open', 'the worker to open on its log');
    const halted = rec.snapshots.at(-1)!;
    expect(halted.halts.map((h) => h.selector.tenant)).toEqual(['everyone']);
    // The right replica goes away: the worker moves to the other one, on an empty log.
    await right.stop('SIGKILL');
    servers.delete(right);
    await until(
      () =>
        warnings.some((w) =>
          /shows log \S+ at seq 0 .*but worker w-urls applied log \S+ at seq 1 .*another log/.test(
            w,
          ),
        ),
      'the worker to refuse the other log',
    );
    expect(rec.status).toBe('stale');
    // Nothing of the other log was applied: the halt it had is still the last state.
    expect(rec.snapshots.at(-1)).toEqual(halted);
    expect(source.appliedSeq).toBe(1);
    // Its acknowledgements are refused by the other replica (409), which itself is fine.
    const h = await httpJson(`${other.url}/healthz`, 'GET');
    expect(h.status).toBe(200);
    // The right replica comes back (same data, same port): the worker is fresh again on it.
    const back = await serve(right.dataDir, right.port);
    expect(back.url).toBe(right.url);
    await until(() => rec.status === 'open', 'the worker to open again on its own log');
    expect(source.appliedSeq).toBe(1);
  });
});
