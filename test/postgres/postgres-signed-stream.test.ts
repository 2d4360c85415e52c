/**
 * KS-17.7.8, KS-17.7.9 over the wire with real PostgreSQL and `killswitch serve`: replica A holds
 * the signing key, replica B (misconfigured) does not. A worker given the public key follows A.
 * The superuser forges a resume that chains exactly, with a garbage signature. A's store refuses
 * it (A stops vouching and ends its streams); the worker fails over to B, which replays the forged
 * record from its ring, and the worker refuses it naming seq 2, then refuses B's unsigned
 * snapshot. The halt stays applied throughout.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { SigningKey } from '../../src/integrity/signing-key.js';
import { SourceStatus } from '../../src/source/index.js';
import { RecordingListener } from '../suites/support/recording-listener.js';
import {
  SUITE_TOKENS,
  assertBuilt,
  httpJson,
  startServe,
  waitFor,
  type ServeProcess,
} from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, dropSchemas, forgeRecord, schemaName } from './pg-harness.js';

const schemas = new Set<string>();
const dirs: string[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function replica(schema: string, keyFile?: string): Promise<ServeProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-pg-signed-'));
  dirs.push(dataDir);
  const p = await startServe({
    dataDir,
    heartbeatMs: 200,
    store: `${PG_URL}?schema=${schema}`,
    ...(keyFile === undefined ? {} : { extraArgs: ['--signing-key', keyFile] }),
  });
  cleanups.push(() => p.stop('SIGKILL'));
  return p;
}

describe.runIf(RUN_PG)(
  'KS-17.7.9 a worker refuses a forged PostgreSQL record on the stream',
  () => {
    it('A refuses the forged resume, B replays it, the worker refuses it naming seq 2 and stays halted', async () => {
      assertBuilt();
      const schema = schemaName('sigstream');
      schemas.add(schema);
      const dir = await mkdtemp(join(tmpdir(), 'ks-pg-key-'));
      dirs.push(dir);
      const key = SigningKey.generate();
      const keyFile = join(dir, 'signing.pem');
      await key.save(keyFile);
      await chmod(keyFile, 0o600);
      await writeFile(join(dir, 'signing.pub'), key.publicKeyPem);

      const a = await replica(schema, keyFile);
      const b = await replica(schema);
      const warnings: string[] = [];
      const listener = new RecordingListener();
      const source = new RemoteFlipSource({
        urls: [a.url, b.url],
        token: SUITE_TOKENS.worker,
        workerId: 'w-signed',
        publicKeys: key.publicKeyPem,
        staleAfterMs: 2000,
        heartbeatMs: 200,
        backoff: { initialMs: 50, maxMs: 300 },
        logger: { warn: (m) => warnings.push(m) },
      });
      cleanups.push(() => source.stop());
      await source.start(listener);
      await waitFor(() => listener.snapshots === 1, 10_000, 'the signed snapshot from A');

      const halted = await httpJson(`${a.url}/v1/flips`, 'POST', {
        token: SUITE_TOKENS.admin,
        body: {
          action: 'halt',
          selector: { tenant: 'acme' },
          reason: 'INC-7',
        },
      });
      expect(halted.status, JSON.stringify(halted.json)).toBeLessThan(300);
      await waitFor(() => listener.applied.includes(1), 10_000, 'the signed halt applied');
      // B has followed seq 1 too (it would replay from there).
      await waitFor(
        async () =>
          (await httpJson(`${b.url}/v1/state`, 'GET', { token: SUITE_TOKENS.admin })).json?.seq ===
          1,
        10_000,
        'B at seq 1',
      );

      const head = { seq: 1, hash: listener.hashes.get(1)! };
      await forgeRecord(schema, head, `${key.kid}:${'A'.repeat(86)}`);

      await waitFor(
        () => warnings.some((m) => /record seq 2: signature does not verify under key/.test(m)),
        20_000,
        "the worker's refusal of seq 2",
      );
      expect(listener.applied).not.toContain(2);
      expect(listener.state.get({ tenant: 'acme' })?.action).toBe('halt');
      // A refused the forged record itself: it no longer vouches (503) and says why.
      const aState = await httpJson(`${a.url}/v1/state`, 'GET', { token: SUITE_TOKENS.admin });
      expect(aState.status).toBe(503);
      await waitFor(
        () => /seq 2: signature does not verify/.test(a.stderr()),
        10_000,
        "A's log line",
      );
      // After refusing the record the worker asks B for a snapshot, which B cannot sign.
      await waitFor(
        () => warnings.some((m) => /snapshot at seq 2 is not signed/.test(m)),
        10_000,
        "the refusal of B's unsigned snapshot",
      );
      expect(listener.applied).not.toContain(2);
      expect(source.status).not.toBe(SourceStatus.OPEN);
    }, 90_000);
  },
);
