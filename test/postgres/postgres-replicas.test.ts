import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import type { FlipRecord } from '../../src/model/flip-record.js';
import { verifyChain } from '../../src/store/verify-chain.js';
import { SseReader } from '../server/sse-reader.js';
import { CLI, startServe, type ServeProcess } from '../suites/support/serve-process.js';
import { PG_URL, RUN_PG, dropSchemas, schemaName, until } from './pg-harness.js';

// Replicas are real `killswitch serve` processes on the compiled CLI (`npm run build` first).
const TOKEN = 'pg-replica-admin-token-0123456789';

const schemas = new Set<string>();
const children = new Set<ChildProcess>();
const readers = new Set<SseReader>();
const dirs: string[] = [];

afterEach(async () => {
  for (const r of readers) r.close();
  readers.clear();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

type Replica = ServeProcess;

/** Starts `killswitch serve --store postgres://…?schema=… --port 0` and waits for its start line. */
async function startReplica(schema: string): Promise<Replica> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-pg-replica-'));
  dirs.push(dataDir);
  const replica = await startServe({
    dataDir,
    store: `${PG_URL}?schema=${schema}`,
    heartbeatMs: 200,
    tokens: [{ name: 'admin', token: TOKEN, role: 'admin' }],
  });
  children.add(replica.child);
  return replica;
}

async function flip(
  r: Replica,
  body: Record<string, unknown>,
): Promise<{ status: number; json: { flip: FlipRecord; duplicate: boolean } }> {
  const res = await fetch(`${r.url}/v1/flips`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    json: (await res.json()) as { flip: FlipRecord; duplicate: boolean },
  };
}

/** Follows a replica's stream and collects its flip events. */
async function follow(
  r: Replica,
  lastEventId?: number,
): Promise<{ flips: FlipRecord[]; snapshotSeq: number | undefined }> {
  const { res, reader } = await SseReader.open(`${r.url}/v1/stream`, {
    authorization: `Bearer ${TOKEN}`,
    ...(lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) }),
  });
  readers.add(reader);
  expect(res.status).toBe(200);
  const out: { flips: FlipRecord[]; snapshotSeq: number | undefined } = {
    flips: [],
    snapshotSeq: undefined,
  };
  if (lastEventId === undefined) {
    const first = await reader.nextNonHeartbeat(10_000);
    expect(first.event).toBe('snapshot');
    out.snapshotSeq = Number(first.id);
  }
  void (async () => {
    try {
      for (;;) {
        const e = await reader.nextNonHeartbeat(60_000);
        if (e.event === 'flip') out.flips.push(JSON.parse(e.data) as FlipRecord);
      }
    } catch {
      // closed
    }
  })();
  return out;
}

const halt = (id: string, tenant = 'acme') => ({
  id,
  action: 'halt',
  selector: { tenant },
  reason: `replica test ${id}`,
});

describe.runIf(RUN_PG)('KS-8.7.2 the replica tests run the compiled CLI', () => {
  it('finds dist/src/cli/main.js (run npm run build)', () => {
    expect(existsSync(CLI)).toBe(true);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.5.2 a flip accepted by replica A reaches the subscribers of replica B',
  () => {
    it('streams the flip posted to A on B, with the same seq, id and hash', async () => {
      const schema = schemaName('replica');
      schemas.add(schema);
      const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
      const onB = await follow(b);
      expect(onB.snapshotSeq).toBe(0);
      const posted = await flip(a, halt('from-a'));
      expect(posted.status).toBe(201);
      await until(() => onB.flips.length >= 1, 'the flip on B', 10_000);
      expect(onB.flips).toEqual([posted.json.flip]);
    });
  },
);

describe.runIf(RUN_PG)(
  'KS-8.3.1 concurrent flips on two replicas form one dense chain both replicas stream',
  () => {
    it('20 flips posted to A and B at once: both streams and the log show seqs 1..20 in one chain', async () => {
      const schema = schemaName('replica');
      schemas.add(schema);
      const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
      const [onA, onB] = await Promise.all([follow(a), follow(b)]);
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => flip(i % 2 ? a : b, halt(`c-${i}`, `t${i % 3}`))),
      );
      expect(answers.map((x) => x.status)).toEqual(Array(20).fill(201));
      await until(
        () => onA.flips.length >= 20 && onB.flips.length >= 20,
        'twenty flips on both streams',
        15_000,
      );
      expect(onA.flips.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(onB.flips).toEqual(onA.flips);
      expect(verifyChain(onA.flips)).toHaveLength(20);
      const store = new PostgresFlipLogStore({ connectionString: PG_URL, schema });
      try {
        expect(await store.read()).toEqual(onA.flips);
      } finally {
        await store.close();
      }
    });
  },
);

describe.runIf(RUN_PG)(
  'KS-8.5.3 a replica killed with SIGKILL mid-burst loses nothing the other replica serves',
  () => {
    it('a client of the dead replica resumes on the live one by Last-Event-ID with nothing missed', async () => {
      const schema = schemaName('replica');
      schemas.add(schema);
      const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
      const onA = await follow(a);
      let posted = 0;
      const acked: FlipRecord[] = [];
      const burst = (async () => {
        for (let i = 0; i < 40; i++) {
          const r = await flip(i % 2 ? a : b, halt(`k-${i}`)).catch(() => undefined);
          posted++;
          if (r?.status === 201) acked.push(r.json.flip);
        }
      })();
      await until(() => onA.flips.length >= 8, 'the first flips on A', 15_000);
      a.child.kill('SIGKILL');
      const last = onA.flips.at(-1)!.seq;
      const resumed = await follow(b, last);
      await burst;
      expect(posted).toBe(40);
      const head = Math.max(...acked.map((r) => r.seq));
      await until(
        () => (resumed.flips.at(-1)?.seq ?? last) >= head,
        'the resumed stream to reach the head',
        15_000,
      );
      const seen = [...onA.flips.filter((r) => r.seq <= last), ...resumed.flips];
      expect(seen.map((r) => r.seq)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
      expect(verifyChain(seen)).toHaveLength(seen.length);
      const bySeq = new Map(seen.map((r) => [r.seq, r]));
      for (const r of acked) expect(bySeq.get(r.seq)).toEqual(r);
    });
  },
);
