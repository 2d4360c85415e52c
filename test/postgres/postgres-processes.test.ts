import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresFlipLogStore } from '../../providers/postgres/index.js';
import type { FlipRecord } from '../../src/model/flip-record.js';
import { verifyChain } from '../../src/store/verify-chain.js';
import { PG_URL, RUN_PG, dropSchemas, schemaName, until } from './pg-harness.js';

// Child processes run the compiled fixture (`npm run build` first; `npm test` does it).
const FIXTURE = resolve('dist/test/fixtures/pg-appender.js');

const schemas = new Set<string>();
const stores = new Set<PostgresFlipLogStore>();
const children = new Set<ChildProcess>();

afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  for (const s of stores) await s.close().catch(() => undefined);
  stores.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
});

interface Ack {
  readonly id: string;
  readonly seq: number;
  readonly hash: string;
  readonly duplicate: boolean;
}

/** One spawned appender and what it has printed so far. */
class Appender {
  readonly acks: Ack[] = [];
  readonly got: FlipRecord[] = [];
  ready = false;
  done = false;
  stderr = '';
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;

  constructor(schema: string, prefix: string, count: number, writers: number, follow = 0) {
    this.child = spawn(
      process.execPath,
      [FIXTURE, PG_URL, schema, prefix, String(count), String(writers), String(follow)],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    children.add(this.child);
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (line['ready'] === true) this.ready = true;
        else if (line['done'] === true) this.done = true;
        else if (line['got'] !== undefined) this.got.push(line['got'] as FlipRecord);
        else this.acks.push(line as unknown as Ack);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (c: string) => (this.stderr += c));
    this.exited = new Promise((r) => this.child.once('exit', (code) => r(code)));
  }

  go(): void {
    this.child.stdin!.end('go\n');
  }
}

function fresh(): string {
  const s = schemaName('proc');
  schemas.add(s);
  return s;
}

async function openStore(schema: string): Promise<PostgresFlipLogStore> {
  const s = new PostgresFlipLogStore({ connectionString: PG_URL, schema, poolSize: 3 });
  stores.add(s);
  await s.open();
  return s;
}

describe.runIf(RUN_PG)('KS-8.7.2 the multi-process tests run the compiled fixture', () => {
  it('finds dist/test/fixtures/pg-appender.js (run npm run build)', () => {
    expect(existsSync(FIXTURE)).toBe(true);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.3.1 KS-2.2.2 concurrent appends from several processes form one dense chain',
  () => {
    it('four processes with two writers each append 30 flips apiece: seqs 1..120, one chain, every ack stored', async () => {
      const schema = fresh();
      // Create the schema first so the children do not all migrate (that is tested elsewhere).
      const observer = await openStore(schema);
      const seen: FlipRecord[] = [];
      observer.subscribe((r) => seen.push(r));
      const procs = ['a', 'b', 'c', 'd'].map((p) => new Appender(schema, p, 30, 2));
      await until(() => procs.every((p) => p.ready), 'every appender ready', 20_000);
      for (const p of procs) p.go();
      const codes = await Promise.all(procs.map((p) => p.exited));
      expect(codes, procs.map((p) => p.stderr).join('\n')).toEqual([0, 0, 0, 0]);

      const records = await observer.read();
      expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
      expect(verifyChain(records)).toHaveLength(120);
      const acks = procs.flatMap((p) => p.acks);
      expect(acks).toHaveLength(120);
      for (const a of acks) {
        expect(a.duplicate).toBe(false);
        expect(records[a.seq - 1]).toMatchObject({ id: a.id, hash: a.hash });
      }
      // Writers really interleaved: the log is not four runs of 30.
      const switches = records.filter((r, i) => i > 0 && r.actor !== records[i - 1]!.actor).length;
      expect(switches).toBeGreaterThan(3);
      // KS-8.5.2 a subscriber in this process got every record of the other processes once, in order.
      await until(() => seen.length >= 120, '120 deliveries to the observer');
      expect(seen).toEqual(records);
    });
  },
);

describe.runIf(RUN_PG)(
  'KS-8.5.2 a subscriber in one process receives the records appended by another',
  () => {
    it('a child subscriber gets, once and in order, every flip this process appends', async () => {
      const schema = fresh();
      const writer = await openStore(schema);
      await writer.append({
        id: 'old',
        actor: 'me',
        action: 'halt',
        selector: {},
        reason: 'before',
      });
      const child = new Appender(schema, 'none', 0, 0, 20);
      await until(() => child.ready, 'the child subscriber', 20_000);
      const appended: FlipRecord[] = [];
      for (let i = 0; i < 20; i++) {
        appended.push(
          (
            await writer.append({
              id: `p-${i}`,
              actor: 'parent',
              action: 'halt',
              selector: { runId: `run-${i}` },
              reason: `flip ${i}`,
            })
          ).record,
        );
      }
      await until(() => child.got.length >= 20, 'twenty deliveries in the child', 20_000);
      expect(child.got).toEqual(appended);
      child.go();
      expect(await child.exited).toBe(0);
    });
  },
);

describe.runIf(RUN_PG)(
  'KS-2.4.1 KS-8.3.2 a writer process killed with SIGKILL mid-burst loses no acknowledged flip',
  () => {
    it('every printed ack is in the log, the chain stays dense, and the other writer carries on', async () => {
      const schema = fresh();
      const observer = await openStore(schema);
      const victim = new Appender(schema, 'victim', 0, 4);
      const survivor = new Appender(schema, 'survivor', 60, 2);
      await until(() => victim.ready && survivor.ready, 'both appenders ready', 20_000);
      victim.go();
      survivor.go();
      await until(() => victim.acks.length >= 25, 'some acknowledged appends', 20_000);
      victim.child.kill('SIGKILL');
      await victim.exited;
      expect(await survivor.exited, survivor.stderr).toBe(0);
      const after = await observer.append({
        id: 'after-kill',
        actor: 'me',
        action: 'resume',
        selector: {},
        reason: 'the lock died with the victim',
      });
      const records = await observer.read();
      expect(verifyChain(records)).toHaveLength(records.length);
      expect(after.record.seq).toBe(records.length);
      const byId = new Map(records.map((r) => [r.id, r]));
      for (const a of [...victim.acks, ...survivor.acks]) {
        expect(byId.get(a.id)).toMatchObject({ seq: a.seq, hash: a.hash });
      }
      expect(survivor.acks).toHaveLength(60);
    });
  },
);
