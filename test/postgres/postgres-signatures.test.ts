/**
 * KS-17.7.8 (KS-17.7.2, KS-17.7.3 on PostgreSQL, schema version 5): records are signed in the transaction
 * that appends them, the signature in the `sig` column; a record inserted by someone who can write
 * the database but does not hold the key (here the superuser, through the owner's append_flip or
 * with the triggers off) is refused by every store that reads it: on open, on read, and by a
 * follower that already delivered the records before it, naming the record.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  PostgresFlipLogStore,
  type PostgresFlipLogStoreOptions,
} from '../../providers/postgres/index.js';
import { PublicKeyRing, SigningKey } from '../../src/integrity/signing-key.js';
import { signRecord, signatureOf } from '../../src/integrity/record-signatures.js';
import { recordStatement } from '../../src/integrity/statements.js';
import type { FlipRecord } from '../../src/model/flip-record.js';
import {
  PG_URL,
  RUN_PG,
  admin,
  dropSchemas,
  forgeRecord,
  schemaName,
  until,
} from './pg-harness.js';

const schemas = new Set<string>();
const stores = new Set<PostgresFlipLogStore>();
const warnings: string[] = [];
const logger = { warn: (m: string) => warnings.push(m) };
const key = SigningKey.generate();
const other = SigningKey.generate();

function store(schema: string, over: Partial<PostgresFlipLogStoreOptions> = {}) {
  const s = new PostgresFlipLogStore({
    connectionString: PG_URL,
    schema,
    poolSize: 3,
    pollIntervalMs: 50,
    logger,
    ...over,
  });
  stores.add(s);
  return s;
}

afterEach(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  stores.clear();
  warnings.length = 0;
});
afterAll(() => dropSchemas(schemas));

function fresh(): string {
  const s = schemaName('sig');
  schemas.add(s);
  return s;
}

const forge = (
  schema: string,
  head: FlipRecord,
  sig: string | undefined,
  options: { triggersOff?: boolean } = {},
): Promise<FlipRecord> => forgeRecord(schema, head, sig, options);

const halt = {
  actor: 'oncall',
  action: 'halt',
  selector: { tenant: 'acme' },
  reason: 'INC-7',
} as const;

describe.runIf(RUN_PG)(
  'KS-17.7.8 PostgreSQL records are signed as they are appended (KS-17.7.2)',
  () => {
    it('every record appended with a key has a signature in its row that verifies, and goes with the record', async () => {
      const schema = fresh();
      const s = store(schema, { signingKey: key });
      const a = await s.append(halt);
      const b = await s.append({ ...halt, action: 'resume', release: 'v1', reason: 'fixed' });
      const logId = await s.logId();
      const rows = await admin<{ seq: string; hash: string; sig: string | null }>(
        `SELECT seq::text AS seq, hash, sig FROM "${schema}".flips ORDER BY seq`,
      );
      expect(rows).toHaveLength(2);
      const ring = PublicKeyRing.of(key);
      for (const r of rows) {
        expect(r.sig).toMatch(new RegExp(`^${key.kid}:`));
        expect(ring.verify(recordStatement(logId, Number(r.seq), r.hash), r.sig!)).toBe(true);
      }
      // KS-17.7.9 the records the store returns carry their signatures for the stream.
      expect(signatureOf(a.record)).toBe(rows[0]!.sig);
      expect(signatureOf(b.record)).toBe(rows[1]!.sig);
      const reader = store(schema, { publicKeys: ring });
      const read = await reader.read();
      expect(read.map((r) => signatureOf(r))).toEqual(rows.map((r) => r.sig));
    });

    it('the insert check refuses an unsigned record after a signed one, even through append_flip', async () => {
      const schema = fresh();
      const s = store(schema, { signingKey: key });
      const { record } = await s.append(halt);
      const err = (await forge(schema, record, undefined).catch((e: unknown) => e)) as {
        code?: string;
        message?: string;
      };
      expect(err.code).toBe('KS001');
      expect(err.message).toMatch(/flip seq 2: not signed, though seq 1 before it is/);
      // A store without the key cannot append to a signed log either: nothing is written.
      const keyless = store(schema);
      await expect(keyless.append({ ...halt, id: 'x' })).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
        message: expect.stringMatching(/not signed, though seq 1 before it is/),
      });
      expect(await admin(`SELECT count(*)::int AS n FROM "${schema}".flips`)).toEqual([{ n: 1 }]);
    });
  },
);

describe.runIf(RUN_PG)(
  'KS-17.7.8 a record the key holder did not sign is refused by PostgreSQL stores (KS-17.7.3)',
  () => {
    it('a forged resume with a signature by another key: open and read refuse it naming its seq', async () => {
      const schema = fresh();
      const s = store(schema, { signingKey: key });
      const { record } = await s.append(halt);
      const logId = await s.logId();
      const forged = await forge(schema, record, signRecord(other, logId, 2, '0'.repeat(64)));
      expect(forged.seq).toBe(2);
      const opener = store(schema, { publicKeys: PublicKeyRing.of(key) });
      await expect(opener.open()).rejects.toMatchObject({
        code: 'KS_LOG_CORRUPT',
        seq: 2,
        message: expect.stringMatching(
          /signed by key [0-9a-f]{16}, which is not among the known keys/,
        ),
      });
      // The writer's own store refuses the read too (it holds the key, so it checks with it).
      await expect(s.read({ after: 1 })).rejects.toMatchObject({ code: 'KS_LOG_CORRUPT', seq: 2 });
    });

    it('a follower that delivered seq 1 refuses the forged seq 2 (a garbage signature) and delivers nothing more', async () => {
      const schema = fresh();
      const writer = store(schema, { signingKey: key });
      const { record } = await writer.append(halt);
      const follower = store(schema, { publicKeys: PublicKeyRing.of(key) });
      await follower.open();
      const seen: number[] = [];
      follower.subscribe((r) => seen.push(r.seq));
      await writer.append({ ...halt, id: 'second', selector: { tenant: 'b' } });
      await until(() => seen.includes(2), 'the signed seq 2');
      const head = (await writer.read()).at(-1)!;
      expect(head.seq).toBe(2);
      expect(head.prev).toBe(record.hash);
      await forge(schema, head, `${key.kid}:${'A'.repeat(86)}`);
      await until(() => follower.followStatus().state === 'failed', 'the follower to refuse seq 3');
      expect(follower.followStatus().failure).toMatch(/seq 3: signature does not verify under key/);
      expect(seen).toEqual([2]);
    });

    it('with the triggers off (a superuser), an unsigned record after signed ones is refused even by a store without keys', async () => {
      const schema = fresh();
      const s = store(schema, { signingKey: key });
      const { record } = await s.append(halt);
      await forge(schema, record, undefined, { triggersOff: true });
      const keyless = store(schema);
      await expect(keyless.open()).rejects.toMatchObject({
        code: 'KS_LOG_CORRUPT',
        seq: 2,
        // The keyed store latched signatures when it opened the empty log (KS-17.7.11), so the
        // keyless reader refuses the record by the latch, before the head rule would.
        message: expect.stringMatching(
          /not signed, though a control plane with a signing key requires signatures after seq 0/,
        ),
      });
    });

    it('a log from before signatures opens with a key (warned), and the first signed append covers it', async () => {
      const schema = fresh();
      const plain = store(schema);
      await plain.append(halt);
      await plain.close();
      const signer = store(schema, { signingKey: key });
      await signer.open();
      expect(warnings.join('\n')).toMatch(/no record is signed yet \(1 records\)/);
      await signer.append({ ...halt, id: 'later' });
      const checker = store(schema, { publicKeys: PublicKeyRing.of(key) });
      expect((await checker.read()).map((r) => [r.seq, signatureOf(r) !== undefined])).toEqual([
        [1, false],
        [2, true],
      ]);
    });
  },
);
