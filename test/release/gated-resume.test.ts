import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { ReleaseGate } from '../../src/server/release-gate.js';
import type { ControlPlane } from '../../src/server/index.js';
import { TOKENS, call, startTestServer } from '../server/helpers.js';

let dir = '';
let cp: ControlPlane | undefined;
let gate: ReleaseGate | undefined;
const stops: (() => Promise<void> | void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-release-'));
});
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
  await cp?.close();
  await gate?.close();
  cp = undefined;
  gate = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function server(options: { staleAfterMs?: number } = {}): Promise<ControlPlane> {
  gate = new ReleaseGate({ path: join(dir, 'releases.jsonl'), logger: { warn() {} } });
  ({ cp } = await startTestServer({ releaseGate: gate, ...options }));
  return cp!;
}

const admin = { token: TOKENS.admin };
const halt = (c: ControlPlane, tenant = 'acme') =>
  call(c, 'POST', '/v1/flips', {
    ...admin,
    body: { action: 'halt', selector: { tenant }, reason: 'incident' },
  });
const resume = (c: ControlPlane, release?: string, extra: Record<string, unknown> = {}) =>
  call(c, 'POST', '/v1/flips', {
    ...admin,
    body: {
      action: 'resume',
      selector: { tenant: 'acme' },
      reason: 'fixed',
      ...(release !== undefined ? { release } : {}),
      ...extra,
    },
  });
const mark = (c: ControlPlane, release: string, status: string, token: string = TOKENS.admin) =>
  call(c, 'POST', '/v1/releases', {
    token,
    body: { release, status, reason: `${status} by test` },
  });

describe('KS-10.5.1 / KS-10.5.5 releases are recorded by admins and read by anyone', () => {
  it('an admin records a verdict (201); operators and viewers may not (403); anyone lists; bad input is a 400 listing the issues', async () => {
    const c = await server();
    const r = await mark(c, 'v1', 'green');
    expect(r.status).toBe(201);
    expect(r.json.release).toMatchObject({ seq: 1, release: 'v1', status: 'green', actor: 'ada' });
    expect((await mark(c, 'v1', 'red', TOKENS.operator)).status).toBe(403);
    expect((await mark(c, 'v1', 'red', TOKENS.viewer)).json.error.code).toBe('KS_FORBIDDEN');
    const bad = await call(c, 'POST', '/v1/releases', {
      ...admin,
      body: { release: '', status: 'amber', extra: 1 },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.issues.map((i: { path: string[] }) => i.path.join('.')).sort()).toEqual([
      '',
      'release',
      'status',
    ]);
    await mark(c, 'v1', 'red');
    const list = await call(c, 'GET', '/v1/releases', { token: TOKENS.viewer });
    expect(list.status).toBe(200);
    expect(list.json.releases).toMatchObject([{ seq: 2, release: 'v1', status: 'red' }]);
    expect((await call(c, 'GET', '/v1/releases')).status).toBe(401);
  });
});

describe('KS-10.5.3 a resume must name a green release', () => {
  it('is refused with 409 and the reason (none named, unknown, red), appending nothing; passes once green', async () => {
    const c = await server();
    await halt(c);
    const none = await resume(c);
    expect(none.status).toBe(409);
    expect(none.json.error).toMatchObject({ code: 'KS_RESUME_REFUSED' });
    expect(none.json.error.message).toMatch(/must name the release/);
    expect((await resume(c, 'v2')).json.error.message).toMatch(/v2 has not been marked green/);
    await mark(c, 'v2', 'red');
    expect((await resume(c, 'v2')).json.error.message).toMatch(/release v2 is red/);
    expect(c.snapshot().seq).toBe(1);
    await mark(c, 'v2', 'green');
    const ok = await resume(c, 'v2');
    expect(ok.status).toBe(201);
    expect(ok.json.flip).toMatchObject({ seq: 2, action: 'resume', release: 'v2' });
  });

  it('KS-10.5.6 halts are not gated; a retried resume already in the log is answered as a duplicate', async () => {
    const c = await server();
    expect((await halt(c)).status).toBe(201);
    await mark(c, 'v2', 'green');
    const first = await resume(c, 'v2', { id: 'resume-1' });
    expect(first.status).toBe(201);
    await mark(c, 'v2', 'red');
    const again = await resume(c, 'v2', { id: 'resume-1' });
    expect(again.status).toBe(200);
    expect(again.json.duplicate).toBe(true);
  });
});

describe('KS-10.5.8 a library control plane is gated only when given a releaseGate', () => {
  it('with one, a resume naming no green release is refused (409); without one, it is appended (201)', async () => {
    const gated = await server();
    expect((await halt(gated)).status).toBe(201);
    expect((await resume(gated)).status).toBe(409);
    const { cp: plain } = await startTestServer({});
    stops.push(() => plain.close());
    expect((await halt(plain)).status).toBe(201);
    const r = await resume(plain);
    expect(r.status).toBe(201);
    expect(r.json.flip).toMatchObject({ action: 'resume', selector: { tenant: 'acme' } });
  });
});

describe('KS-10.5.4 a resume is refused while a connected worker reports a red release', () => {
  it('names the worker; passes once that worker is gone and its lease ran out', async () => {
    const c = await server({ staleAfterMs: 400 });
    await halt(c);
    await mark(c, 'v1', 'red');
    await mark(c, 'v2', 'green');
    const source = new RemoteFlipSource({
      urls: [c.url],
      token: TOKENS.worker,
      workerId: 'worker-old',
      release: 'v1',
      staleAfterMs: 400,
      heartbeatMs: 100,
    });
    let stopped = false;
    stops.push(async () => {
      if (!stopped) await source.stop();
    });
    await source.start({ onSnapshot() {}, onFlip() {}, onStatus() {} } as never);
    await until(async () => {
      const l = await call(c, 'GET', '/v1/releases', admin);
      return l.json.workers.some((w: { id: string }) => w.id === 'worker-old');
    });
    const refused = await resume(c, 'v2');
    expect(refused.status).toBe(409);
    expect(refused.json.error.message).toMatch(
      /1 connected worker\(s\) still run a red release: worker-old \(v1\)/,
    );
    await source.stop();
    stopped = true;
    await until(
      async () => (await call(c, 'GET', '/v1/releases', admin)).json.workers.length === 0,
    );
    expect((await resume(c, 'v2')).status).toBe(201);
  });
});

describe('KS-10.5.2 verdicts are durable', () => {
  it('a new gate on the same file reads them; a torn last line is cut; a bad line refuses; a second live gate is refused', async () => {
    const path = join(dir, 'releases.jsonl');
    const a = new ReleaseGate({ path, logger: { warn() {} } });
    await a.record({ release: 'v1', status: 'green' }, 'ada');
    await a.record({ release: 'v1', status: 'red', reason: 'bad deploy' }, 'ada');
    const b = new ReleaseGate({ path, logger: { warn() {} } });
    await expect(b.open()).rejects.toMatchObject({ code: 'KS_STORE_UNAVAILABLE' });
    await a.close();
    await appendFile(path, '{"seq":3,"release":"v1","sta');
    const warnings: string[] = [];
    const c = new ReleaseGate({ path, logger: { warn: (m) => warnings.push(m) } });
    expect(await c.list()).toMatchObject([{ seq: 2, status: 'red', reason: 'bad deploy' }]);
    expect(warnings.join()).toMatch(/torn last line/);
    await c.close();
    await writeFile(path, 'nope\n');
    await expect(new ReleaseGate({ path }).open()).rejects.toMatchObject({
      code: 'KS_JOURNAL_CORRUPT',
    });
    expect(() => new ReleaseGate({ path: '' })).toThrow(/option path/);
  });
});

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
