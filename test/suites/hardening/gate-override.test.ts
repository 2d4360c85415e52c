/**
 * KS-17.2.3: an admin can pass the release gate with a recorded reason; nobody else can, and an
 * override is never silently ignored. Issue 15: "Any viewer can also stream as a worker on a red
 * release and so block every resume, with no admin override."
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReleaseGate } from '../../../src/server/release-gate.js';
import type { ControlPlane } from '../../../src/server/index.js';
import type { ReleaseRecord } from '../../../src/protocol/releases.js';
import { TOKENS, call, startTestServer } from '../../server/helpers.js';

let dir = '';
let cp: ControlPlane | undefined;
let gate: ReleaseGate | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ks-override-'));
});
afterEach(async () => {
  await cp?.close();
  await gate?.close();
  cp = undefined;
  gate = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function server(withGate = true): Promise<ControlPlane> {
  gate = withGate
    ? new ReleaseGate({ path: join(dir, 'releases.jsonl'), logger: { warn() {} } })
    : undefined;
  ({ cp } = await startTestServer(gate === undefined ? {} : { releaseGate: gate }));
  return cp!;
}

const flip = (c: ControlPlane, token: string, body: Record<string, unknown>) =>
  call(c, 'POST', '/v1/flips', { token, body });
const halt = (c: ControlPlane) =>
  flip(c, TOKENS.admin, { action: 'halt', selector: { tenant: 'acme' }, reason: 'incident' });
const resume = (c: ControlPlane, token: string, extra: Record<string, unknown> = {}) =>
  flip(c, token, {
    action: 'resume',
    selector: { tenant: 'acme' },
    reason: 'fixed',
    release: 'v9',
    ...extra,
  });

async function verdicts(): Promise<ReleaseRecord[]> {
  const text = await readFile(join(dir, 'releases.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as ReleaseRecord);
}

describe('KS-17.2.3 an admin overrides the release gate with a recorded reason', () => {
  it('a resume the gate refuses passes with overrideGate from an admin, recorded (chained) before the flip; the verdict stays', async () => {
    const c = await server();
    expect((await halt(c)).status).toBe(201);
    const refused = await resume(c, TOKENS.admin);
    expect(refused.status).toBe(409);
    const ok = await resume(c, TOKENS.admin, {
      overrideGate: 'INC-7: v9 rollback is safe, CTO ok',
    });
    expect(ok.status).toBe(201);
    const recs = await verdicts();
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({
      seq: 1,
      status: 'override',
      release: 'v9',
      reason: 'INC-7: v9 rollback is safe, CTO ok',
      actor: 'ada',
      flip: (ok.json as { flip: { id: string } }).flip.id,
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    // The override changed no verdict: v9 is still not green, and the list shows no v9.
    expect(await gate!.statusOf('v9')).toBeUndefined();
    // A new gate on the file reads the chain, override included.
    await cp!.close();
    cp = undefined;
    await gate!.close();
    const again = new ReleaseGate({ path: join(dir, 'releases.jsonl'), logger: { warn() {} } });
    expect(await again.list()).toEqual([]);
    await again.close();
  });

  it('an operator with resume, and a viewer, are refused 403 and nothing is recorded nor appended', async () => {
    const c = await server();
    // The operator's own halt, which it may lift (KS-17.5.1), but not past the gate.
    const own = await flip(c, TOKENS.operator, {
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'incident',
    });
    expect(own.status).toBe(201);
    const op = await resume(c, TOKENS.operator, { overrideGate: 'trust me' });
    expect(op.status).toBe(403);
    expect(JSON.stringify(op.json)).toMatch(/may not override the release gate/);
    const viewer = await resume(c, TOKENS.viewer, { overrideGate: 'trust me' });
    expect(viewer.status).toBe(403);
    expect(await verdicts()).toEqual([]);
    const log = await call(c, 'GET', '/v1/flips', { token: TOKENS.admin });
    expect((log.json as { flips: unknown[] }).flips).toHaveLength(1);
  });

  it('overrideGate on a halt, empty, or without a release gate is a 400, never ignored', async () => {
    const c = await server();
    const onHalt = await flip(c, TOKENS.admin, {
      action: 'halt',
      selector: { tenant: 'x' },
      reason: 'r',
      overrideGate: 'why',
    });
    expect(onHalt.status).toBe(400);
    expect(JSON.stringify(onHalt.json)).toMatch(/only a resume passes the release gate/);
    await halt(c);
    expect((await resume(c, TOKENS.admin, { overrideGate: '  ' })).status).toBe(400);
    await cp!.close();
    cp = undefined;
    await gate!.close();
    const bare = await server(false);
    await halt(bare);
    const none = await resume(bare, TOKENS.admin, { overrideGate: 'why' });
    expect(none.status).toBe(400);
    expect(JSON.stringify(none.json)).toMatch(/no release gate/);
  });
});
