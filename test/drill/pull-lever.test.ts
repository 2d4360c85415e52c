import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import { ControlPlaneClient } from '../../src/client/control-plane-client.js';
import { pullLever } from '../../src/drill/run/pull-lever.js';
import { ReleaseGate } from '../../src/server/release-gate.js';
import type { ControlPlane } from '../../src/server/index.js';
import { openLogFile } from '../fixtures/log-file-handle.js';
import { TOKENS, bearer, startTestServer } from '../server/helpers.js';
import { SseReader } from '../server/sse-reader.js';
import { progress, scenarioFrom } from './drill-helpers.js';

let cp: ControlPlane | undefined;
let gate: ReleaseGate | undefined;
let dir: string | undefined;
let store: FileFlipLogStore | undefined;
let reader: SseReader | undefined;
afterEach(async () => {
  reader?.close();
  await cp?.close();
  await store?.close();
  store = reader = undefined;
  await gate?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  cp = gate = dir = undefined;
});

/** One tenant lever whose resume is gated on `drill-r1`, held briefly, on no workers. */
async function pull(token: string) {
  const scenario = await scenarioFrom('ci.json', (raw) => ({
    ...raw,
    timings: { warmupMs: 0, observeMs: 100, waitMs: 200, freshWithinMs: 3_000 },
    levers: [{ selector: { tenant: 'acme' }, resume: { release: 'drill-r1' } }],
  }));
  const p = progress();
  const lever = await pullLever({
    client: new ControlPlaneClient({ url: cp!.url, token }),
    lever: scenario.levers[0]!,
    index: 0,
    total: 1,
    runTag: 'test',
    scenario,
    log: p.log,
    fleetMode: true,
  });
  return { lever, lines: p.lines };
}

describe('KS-9.1.3 a lever whose resume names a release marks it green first, through the typed client', () => {
  it('passes the release gate when the drill may mark releases', async () => {
    dir = await mkdtemp(join(tmpdir(), 'drill-gate-'));
    gate = new ReleaseGate({ path: join(dir, 'releases.jsonl'), logger: { warn() {} } });
    ({ cp } = await startTestServer({ releaseGate: gate }));
    const { lever, lines } = await pull(TOKENS.admin);
    expect(lever.resume, lines.join('\n')).toMatchObject({ ok: true, release: 'drill-r1' });
    const releases = await new ControlPlaneClient({
      url: cp!.url,
      token: TOKENS.viewer,
    }).releases();
    expect(JSON.stringify(releases)).toContain('drill-r1');
  });

  it('fails the resume, naming the refusal, when the drill may not mark releases', async () => {
    dir = await mkdtemp(join(tmpdir(), 'drill-gate-'));
    gate = new ReleaseGate({ path: join(dir, 'releases.jsonl'), logger: { warn() {} } });
    ({ cp } = await startTestServer({ releaseGate: gate }));
    const { lever } = await pull(TOKENS.operator);
    expect(lever.resume?.ok).toBe(false);
    expect(lever.resume?.detail).toMatch(/^marking release drill-r1 green failed: /);
  });

  it('resumes ungated on a control plane without a release gate (404)', async () => {
    ({ cp } = await startTestServer());
    const { lever, lines } = await pull(TOKENS.operator);
    expect(lever.resume, lines.join('\n')).toMatchObject({ ok: true, release: 'drill-r1' });
  });
});

describe('KS-9.3.2 a lever is accepted when the control plane took the flip, not when its write became durable', () => {
  it('a halt streamed while its write is in flight (KS-2.4.9) reaches a worker no earlier than the lever’s accepted time', async () => {
    dir = await mkdtemp(join(tmpdir(), 'drill-accepted-'));
    // A slow disk: every fdatasync takes 60 ms more, so durability comes well after the stream.
    store = new FileFlipLogStore({
      path: join(dir, 'flips.jsonl'),
      logger: { warn() {} },
      openFile: (path) =>
        openLogFile(path, async (datasync) => {
          await new Promise((r) => setTimeout(r, 60));
          return datasync();
        }),
    });
    ({ cp } = await startTestServer({ store }));
    const opened = await SseReader.open(`${cp.url}/v1/stream`, bearer(TOKENS.admin));
    reader = opened.reader;
    expect((await reader.next()).event).toBe('snapshot');
    const seen = (async () => {
      for (;;) {
        const e = await reader!.nextNonHeartbeat(5000);
        if (e.event === 'flip') return Date.now();
      }
    })();
    const { lever, lines } = await pull(TOKENS.admin);
    const seenAt = await seen;
    expect(lever.acceptedAt, lines.join('\n')).toBeTypeOf('number');
    // The stream had the halt before the write was durable, so before the fleet's appendedAt;
    // time-to-stop counted from that would be negative.
    expect(lever.acceptedAt!).toBeLessThanOrEqual(seenAt);
  });
});
