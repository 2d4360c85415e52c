import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  PostgresFlipLogStore,
  type PostgresFlipLogStoreOptions,
} from '../../providers/postgres/index.js';
import { ErrorCode, InvalidOptionError, LogCorruptError } from '../../src/errors.js';
import { SCHEMA_VERSION } from '../../providers/postgres/index.js';
import type { FlipInput, FlipRecord } from '../../src/model/flip-record.js';
import { verifyChain } from '../../src/store/verify-chain.js';
import { systemClock } from '../../src/internal/clock.js';
import {
  PG_URL,
  RUN_PG,
  admin,
  dropSchemas,
  schemaName,
  startProxy,
  until,
  type CuttableProxy,
} from './pg-harness.js';

const schemas = new Set<string>();
const stores = new Set<PostgresFlipLogStore>();
const proxies = new Set<CuttableProxy>();
const warnings: string[] = [];
const logger = { warn: (m: string) => warnings.push(m) };

function fresh(tag: string): string {
  const s = schemaName(tag);
  schemas.add(s);
  return s;
}

function store(
  schema: string,
  over: Partial<PostgresFlipLogStoreOptions> = {},
): PostgresFlipLogStore {
  const s = new PostgresFlipLogStore({
    connectionString: PG_URL,
    schema,
    poolSize: 3,
    logger,
    ...over,
  });
  stores.add(s);
  return s;
}

const halt = (id: string, over: Partial<FlipInput> = {}): FlipInput => ({
  id,
  actor: 'oncall',
  action: 'halt',
  selector: { tenant: 'acme' },
  reason: `reason of ${id}`,
  ...over,
});

afterEach(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  stores.clear();
  for (const p of proxies) await p.close();
  proxies.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
});

describe('KS-8.1.3 bad options fail at construction with KS_INVALID_OPTION', () => {
  const cases: [string, PostgresFlipLogStoreOptions, string][] = [
    ['no connection at all', {}, 'connectionString'],
    ['a URL that is not postgres://', { connectionString: 'mysql://x' }, 'connectionString'],
    ['both a URL and a pool', { connectionString: PG_URL, pool: {} as pg.Pool }, 'pool'],
    ['an upper-case schema', { connectionString: PG_URL, schema: 'Kill' }, 'schema'],
    ['a schema that could inject SQL', { connectionString: PG_URL, schema: 'a"; drop' }, 'schema'],
    ['a pg_ schema', { connectionString: PG_URL, schema: 'pg_kill' }, 'schema'],
    ['a 49-character schema', { connectionString: PG_URL, schema: 'a'.repeat(49) }, 'schema'],
    ['a poll interval of 0', { connectionString: PG_URL, pollIntervalMs: 0 }, 'pollIntervalMs'],
    [
      'a fractional timeout',
      { connectionString: PG_URL, statementTimeoutMs: 1.5 },
      'statementTimeoutMs',
    ],
    ['a logger without warn', { connectionString: PG_URL, logger: {} as never }, 'logger'],
  ];
  it.each(cases)('refuses %s', (_what, options, option) => {
    const err = (() => {
      try {
        new PostgresFlipLogStore(options);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err).toMatchObject({ code: ErrorCode.INVALID_OPTION, option });
  });
});

describe.runIf(RUN_PG)(
  'KS-8.1.1 the schema is created once, even by replicas starting at once',
  () => {
    it('six stores opening one new schema at the same moment all succeed and share one log', async () => {
      const schema = fresh('mig');
      const replicas = Array.from({ length: 6 }, () => store(schema));
      await Promise.all(replicas.map((r) => r.open()));
      const results = await Promise.all(replicas.map((r, i) => r.append(halt(`m${i}`))));
      expect(results.map((r) => r.record.seq).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
      const triggers = await admin<{ tgname: string }>(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname`,
        [`"${schema}".flips`],
      );
      expect(triggers.map((t) => t.tgname)).toEqual([
        'flips_check_insert',
        'flips_insert_only',
        'flips_notify',
      ]);
      const meta = await admin<{ value: string }>(
        `SELECT value FROM "${schema}".meta WHERE key = 'schema_version'`,
      );
      expect(meta).toEqual([{ value: String(SCHEMA_VERSION) }]);
    });

    it('opening an existing schema again changes nothing and keeps the log', async () => {
      const schema = fresh('mig');
      const a = store(schema);
      await a.append(halt('x'));
      await a.close();
      const b = store(schema);
      await b.open();
      expect((await b.read()).map((r) => r.id)).toEqual(['x']);
    });
  },
);

describe.runIf(RUN_PG)('KS-8.1.2 a schema newer than the library is refused', () => {
  it('fails open with KS_STORE_UNAVAILABLE and writes nothing', async () => {
    const schema = fresh('ver');
    const a = store(schema);
    await a.append(halt('x'));
    await a.close();
    await admin(
      `UPDATE "${schema}".meta SET value = '${SCHEMA_VERSION + 1}' WHERE key = 'schema_version'`,
    );
    const b = store(schema);
    await expect(b.open()).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: /newer/,
    });
    await expect(b.append(halt('y'))).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    expect(await admin(`SELECT id FROM "${schema}".flips`)).toEqual([{ id: 'x' }]);
  });
});

describe.runIf(RUN_PG)('KS-8.2.2 the flips table is insert-only', () => {
  it('refuses UPDATE, DELETE and TRUNCATE, even from a superuser, and the rows stay as they were', async () => {
    const schema = fresh('ro');
    const s = store(schema);
    await s.append(halt('a'));
    await s.append(halt('b'));
    const before = await admin(`SELECT * FROM "${schema}".flips ORDER BY seq`);
    for (const sql of [
      `UPDATE "${schema}".flips SET reason = 'edited' WHERE seq = 1`,
      `UPDATE "${schema}".flips SET reason = reason WHERE false`,
      `DELETE FROM "${schema}".flips WHERE seq = 2`,
      `TRUNCATE "${schema}".flips`,
    ]) {
      await expect(admin(sql), sql).rejects.toMatchObject({
        code: 'KS002',
        message: /insert-only/,
      });
    }
    expect(await admin(`SELECT * FROM "${schema}".flips ORDER BY seq`)).toEqual(before);
  });

  it('grants no role UPDATE, DELETE or TRUNCATE on the table', async () => {
    const schema = fresh('ro');
    await store(schema).open();
    const grants = await admin<{ privilege_type: string }>(
      `SELECT DISTINCT privilege_type FROM information_schema.table_privileges
        WHERE table_schema = $1 AND table_name = 'flips'`,
      [schema],
    );
    const kinds = grants.map((g) => g.privilege_type);
    expect(kinds).toContain('INSERT');
    expect(kinds).not.toContain('UPDATE');
    expect(kinds).not.toContain('DELETE');
    expect(kinds).not.toContain('TRUNCATE');
  });
});

describe.runIf(RUN_PG)(
  'KS-8.2.3 the database refuses an insert that does not extend the chain',
  () => {
    it('refuses a skipped seq, a wrong prev and a wrong hash from a writer that bypasses the store', async () => {
      const schema = fresh('ins');
      const s = store(schema);
      const { record } = await s.append(halt('a'));
      const row = (
        await admin<Record<string, unknown>>(`SELECT * FROM "${schema}".flips WHERE seq = 1`)
      )[0]!;
      const insert = (over: Record<string, unknown>) => {
        const r: Record<string, unknown> = { ...row, id: 'forged', ...over };
        const cols = Object.keys(r);
        return admin(
          `INSERT INTO "${schema}".flips (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`,
          cols.map((c) => (c === 'selector' ? JSON.stringify(r[c]) : r[c])),
        );
      };
      await expect(insert({ seq: 3, prev: record.hash })).rejects.toMatchObject({ code: 'KS001' });
      await expect(insert({ seq: 2 })).rejects.toMatchObject({ code: 'KS001', message: /prev/ });
      await expect(insert({ seq: 2, prev: record.hash })).rejects.toMatchObject({ code: 'KS001' });
      expect((await s.read()).map((r) => r.id)).toEqual(['a']);
    });
  },
);

/** Edits one row as a superuser with the insert-only trigger briefly disabled. */
async function tamper(schema: string, sql: string): Promise<void> {
  await admin(
    `BEGIN; ALTER TABLE "${schema}".flips DISABLE TRIGGER flips_insert_only; ${sql};
     ALTER TABLE "${schema}".flips ENABLE TRIGGER flips_insert_only; COMMIT`,
  );
}

describe.runIf(RUN_PG)('KS-8.4.1 open verifies the whole log and names the first bad seq', () => {
  async function logOfFive(): Promise<string> {
    const schema = fresh('tamper');
    const s = store(schema);
    for (let i = 1; i <= 5; i++) await s.append(halt(`t${i}`));
    await s.close();
    return schema;
  }
  const cases: [string, (schema: string) => string, number, RegExp][] = [
    [
      'an edited body (the hash no longer matches)',
      (s) =>
        `UPDATE "${s}".flips SET body = replace(body, 'reason of t3', 'reason of tX') WHERE seq = 3`,
      3,
      /hash/,
    ],
    [
      'an edited reason column',
      (s) => `UPDATE "${s}".flips SET reason = 'nothing happened' WHERE seq = 3`,
      3,
      /reason column/,
    ],
    [
      'an edited selector column',
      (s) => `UPDATE "${s}".flips SET selector = '{}' WHERE seq = 4`,
      4,
      /selector column/,
    ],
    [
      'a deleted middle row',
      (s) => `DELETE FROM "${s}".flips WHERE seq = 2`,
      2,
      /seq 3 where seq 2/,
    ],
    [
      'a re-hashed edit (the next record no longer links to it)',
      (s) =>
        `UPDATE "${s}".flips SET body = replace(body, 'reason of t2', 'reason of tY'),
           reason = 'reason of tY' WHERE seq = 2;
         UPDATE "${s}".flips SET hash = encode(sha256(convert_to(body, 'UTF8')), 'hex') WHERE seq = 2`,
      3,
      /prev/,
    ],
    [
      'a body with the same content but not byte-exact canonical JSON',
      (s) =>
        `UPDATE "${s}".flips SET body = '{"action"' || substr(body, 10) WHERE seq = 5;
         UPDATE "${s}".flips SET body = replace(body, '"action":', '"action" :'),
           hash = encode(sha256(convert_to(replace(body, '"action":', '"action" :'), 'UTF8')), 'hex') WHERE seq = 5`,
      5,
      /hash|canonical/,
    ],
  ];
  it.each(cases)('fails open with KS_LOG_CORRUPT on %s', async (_what, sql, seq, message) => {
    const schema = await logOfFive();
    await tamper(schema, sql(schema));
    const s = store(schema);
    const err = await s.open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LogCorruptError);
    expect(err).toMatchObject({ code: ErrorCode.LOG_CORRUPT, seq });
    expect((err as Error).message).toMatch(message);
    await expect(s.append(halt('after'))).rejects.toMatchObject({ code: ErrorCode.LOG_CORRUPT });
  });
});

describe.runIf(RUN_PG)('KS-8.4.2 a break found while following fails the store closed', () => {
  it('stops delivering and refuses every later call with the LogCorruptError', async () => {
    const schema = fresh('follow');
    const a = store(schema, { pollIntervalMs: 20 });
    const b = store(schema);
    await a.append(halt('a1'));
    const got: FlipRecord[] = [];
    a.subscribe((r) => got.push(r));
    await b.append(halt('b1'));
    await until(() => got.length === 1, 'the first delivery');
    // Forge seq 3 behind the store's back: a row whose hash does not match its body.
    const row = (
      await admin<Record<string, unknown>>(`SELECT * FROM "${schema}".flips WHERE seq = 2`)
    )[0]!;
    await admin(
      `BEGIN; ALTER TABLE "${schema}".flips DISABLE TRIGGER flips_check_insert;
       INSERT INTO "${schema}".flips SELECT 3, 'forged', at, actor, action, selector, reason, mode, release, source,
         '${String(row['hash'])}', repeat('a', 64), replace(replace(body, '"seq":2', '"seq":3'), '"id":"b1"', '"id":"forged"')
         FROM "${schema}".flips WHERE seq = 2;
       ALTER TABLE "${schema}".flips ENABLE TRIGGER flips_check_insert; COMMIT`,
    );
    await until(
      () => warnings.some((w) => w.includes(schema) && w.includes('corrupt at seq 3')),
      'the corruption warning',
    );
    expect(got.map((r) => r.id)).toEqual(['b1']);
    await expect(a.append(halt('a2'))).rejects.toBeInstanceOf(LogCorruptError);
    await expect(a.read()).rejects.toMatchObject({ code: ErrorCode.LOG_CORRUPT, seq: 3 });
    expect(() => a.subscribe(() => undefined)).toThrow(LogCorruptError);
    expect(a.followStatus().state).toBe('failed');
  });
});

describe.runIf(RUN_PG)('KS-8.3.3 replicas racing with one id append it once', () => {
  it('the same flip from two replicas at once: one appends, the other gets the stored record', async () => {
    const schema = fresh('race');
    const a = store(schema);
    const b = store(schema);
    await Promise.all([a.open(), b.open()]);
    for (let round = 0; round < 10; round++) {
      const [x, y] = await Promise.all([
        a.append(halt(`same-${round}`)),
        b.append(halt(`same-${round}`)),
      ]);
      expect([x.duplicate, y.duplicate].sort()).toEqual([false, true]);
      expect(x.record).toEqual(y.record);
    }
    expect(verifyChain(await a.read())).toHaveLength(10);
  });

  it('different flips with one id from two replicas at once: one appends, the other gets KS_ID_CONFLICT', async () => {
    const schema = fresh('race');
    const a = store(schema);
    const b = store(schema);
    await Promise.all([a.open(), b.open()]);
    for (let round = 0; round < 10; round++) {
      const settled = await Promise.allSettled([
        a.append(halt(`id-${round}`, { reason: 'from a' })),
        b.append(halt(`id-${round}`, { reason: 'from b' })),
      ]);
      const ok = settled.filter((s) => s.status === 'fulfilled');
      const failed = settled.filter((s) => s.status === 'rejected');
      expect(ok).toHaveLength(1);
      expect(failed).toHaveLength(1);
      expect((failed[0] as PromiseRejectedResult).reason).toMatchObject({
        code: ErrorCode.ID_CONFLICT,
      });
    }
    expect(await a.read()).toHaveLength(10);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.3.2 without the database an append fails and is never acknowledged',
  () => {
    it('fails open with KS_STORE_UNAVAILABLE when nothing listens at the address', async () => {
      const s = new PostgresFlipLogStore({
        connectionString: 'postgres://postgres@127.0.0.1:1/test',
        connectTimeoutMs: 500,
        logger,
      });
      stores.add(s);
      await expect(s.open()).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
      await expect(s.append(halt('x'))).rejects.toMatchObject({
        code: ErrorCode.STORE_UNAVAILABLE,
      });
    });

    it('rejects appends while the connection is cut, writes none of them, and works again once it is back', async () => {
      const schema = fresh('cut');
      const proxy = await startProxy();
      proxies.add(proxy);
      const s = store(schema, { connectionString: proxy.url, connectTimeoutMs: 500 });
      const direct = store(schema);
      await s.append(halt('before'));
      await proxy.cut();
      for (let i = 0; i < 3; i++) {
        await expect(s.append(halt(`during-${i}`))).rejects.toMatchObject({
          code: ErrorCode.STORE_UNAVAILABLE,
        });
      }
      await expect(s.read()).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
      expect((await direct.read()).map((r) => r.id)).toEqual(['before']);
      await proxy.restore();
      const after = await s.append(halt('after'));
      expect(after.record.seq).toBe(2);
      expect((await direct.read()).map((r) => r.id)).toEqual(['before', 'after']);
    });

    it('a retry with the same id after a failure appends the flip once', async () => {
      const schema = fresh('cut');
      const proxy = await startProxy();
      proxies.add(proxy);
      const s = store(schema, { connectionString: proxy.url, connectTimeoutMs: 500 });
      await s.append(halt('first'));
      await proxy.cut();
      await expect(s.append(halt('retried'))).rejects.toMatchObject({
        code: ErrorCode.STORE_UNAVAILABLE,
      });
      await proxy.restore();
      const again = await s.append(halt('retried'));
      const twice = await s.append(halt('retried'));
      expect(again.record.seq).toBe(2);
      expect(twice).toEqual({ record: again.record, duplicate: true });
    });
  },
);

describe.runIf(RUN_PG)('KS-8.6.1 a lost idle connection does not crash the process', () => {
  it('keeps working after every backend of the store is terminated', async () => {
    const schema = fresh('idle');
    const s = store(schema);
    await s.append(halt('a'));
    const killed = await admin<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1`,
      [`killswitch:${schema}`],
    );
    expect(killed.length).toBeGreaterThan(0);
    // The pool learns of each dead connection when it notices; a retry with the same id is safe.
    let appended: FlipRecord | undefined;
    for (let i = 0; i < 5 && appended === undefined; i++) {
      appended = await s.append(halt('b')).then(
        (r) => r.record,
        () => undefined,
      );
    }
    expect(appended?.seq).toBe(2);
  });

  it('close ends the pool it created but not a pool it was given', async () => {
    const schema = fresh('pool');
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    try {
      const s = new PostgresFlipLogStore({ pool, schema, logger });
      await s.append(halt('a'));
      await s.close();
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      const again = new PostgresFlipLogStore({ pool, schema, logger });
      stores.add(again);
      expect((await again.read()).map((r) => r.id)).toEqual(['a']);
    } finally {
      for (const s of stores) await s.close();
      stores.clear();
      await pool.end();
    }
  });
});

describe.runIf(RUN_PG)('KS-8.5.5 an append resolves after this store’s subscribers saw it', () => {
  it('has delivered the record by the time append resolves', async () => {
    const schema = fresh('own');
    const s = store(schema);
    const got: FlipRecord[] = [];
    await s.open();
    s.subscribe((r) => got.push(r));
    for (let i = 0; i < 5; i++) {
      const { record } = await s.append(halt(`o${i}`));
      expect(got.at(-1)).toEqual(record);
    }
    expect(got.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.5.2 a subscriber gets records appended by another store exactly once, in order',
  () => {
    it('delivers a burst of concurrent appends from two other replicas', async () => {
      const schema = fresh('sub');
      const reader = store(schema, { pollIntervalMs: 3_600_000 });
      const w1 = store(schema);
      const w2 = store(schema);
      await Promise.all([reader.open(), w1.open(), w2.open()]);
      const got: FlipRecord[] = [];
      reader.subscribe((r) => got.push(r));
      const acks = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? w1 : w2).append(halt(`burst-${i}`))),
      );
      await until(() => got.length >= 40, '40 deliveries');
      expect(got.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      for (const a of acks) expect(got[a.record.seq - 1]).toEqual(a.record);
      expect(verifyChain(got)).toHaveLength(40);
    });
  },
);

async function listenerPid(schema: string): Promise<number | undefined> {
  const rows = await admin<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
    [`killswitch-listen:${schema}`],
  );
  return rows[0]?.pid;
}

describe.runIf(RUN_PG)(
  'KS-8.5.3 KS-8.5.6 a lost LISTEN connection is re-established, nothing is lost, followStatus tells',
  () => {
    it('delivers, exactly once and in order, records appended while the listener was terminated', async () => {
      const schema = fresh('relisten');
      // No poll: only the reconnect's catch-up can recover the records.
      const reader = store(schema, { pollIntervalMs: 3_600_000 });
      const writer = store(schema);
      await Promise.all([reader.open(), writer.open()]);
      const got: FlipRecord[] = [];
      reader.subscribe((r) => got.push(r));
      await writer.append(halt('w0'));
      await until(() => got.length === 1, 'the first delivery');
      let pid: number | undefined;
      for (let i = 0; i < 200 && pid === undefined; i++) pid = await listenerPid(schema);
      expect(pid).toBeDefined();
      await admin('SELECT pg_terminate_backend($1)', [pid]);
      for (let i = 1; i <= 5; i++) await writer.append(halt(`w${i}`));
      await until(() => got.length >= 6, 'the records appended while the listener was down');
      expect(got.map((r) => r.id)).toEqual(['w0', 'w1', 'w2', 'w3', 'w4', 'w5']);
      let again: number | undefined;
      for (let i = 0; i < 400 && (again === undefined || again === pid); i++)
        again = await listenerPid(schema);
      expect(again).toBeDefined();
      expect(again).not.toBe(pid);
      await writer.append(halt('w6'));
      await until(() => got.length >= 7, 'a delivery woken by the new listener');
      expect(got.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(warnings.some((w) => w.includes(schema) && w.includes('LISTEN connection lost'))).toBe(
        true,
      );
      await until(() => reader.followStatus().state === 'listening', 'the listening state');
      expect(reader.followStatus()).toMatchObject({
        deliveredSeq: 7,
        caughtUpAt: expect.any(String),
      });
      expect(writer.followStatus().state).toBe('idle');
    });
  },
);

describe.runIf(RUN_PG)('KS-12.5.4 the follow status reports its age on a monotonic clock', () => {
  it('a step of the wall clock moves the caughtUpAt label, never caughtUpAgeMs', async () => {
    const schema = fresh('age');
    let wallStep = 0;
    const clock = { ...systemClock, wallNow: () => Date.now() + wallStep };
    const reader = store(schema, { clock, pollIntervalMs: 60_000 });
    const writer = store(schema);
    await Promise.all([reader.open(), writer.open()]);
    const got: FlipRecord[] = [];
    reader.subscribe((r) => got.push(r));
    await writer.append(halt('age-1'));
    await until(
      () => got.length >= 1 && reader.followStatus().caughtUpAgeMs !== undefined,
      'a catch-up',
    );
    const before = reader.followStatus();
    wallStep = 600_000; // ten minutes forward
    const forward = reader.followStatus();
    expect(forward.caughtUpAt).toBe(before.caughtUpAt);
    expect(forward.caughtUpAgeMs).toBeGreaterThanOrEqual(before.caughtUpAgeMs ?? Infinity);
    expect(forward.caughtUpAgeMs).toBeLessThan(5_000);
    wallStep = -600_000; // ten minutes back
    await new Promise((r) => setTimeout(r, 50));
    const back = reader.followStatus();
    expect(back.caughtUpAgeMs).toBeGreaterThanOrEqual(40);
    expect(back.caughtUpAgeMs).toBeLessThan(5_000);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.5.4 a notification that never comes costs at most one poll interval',
  () => {
    it('delivers records inserted without a NOTIFY', async () => {
      const schema = fresh('poll');
      const reader = store(schema, { pollIntervalMs: 50 });
      const writer = store(schema);
      await Promise.all([reader.open(), writer.open()]);
      const got: FlipRecord[] = [];
      reader.subscribe((r) => got.push(r));
      await admin(`ALTER TABLE "${schema}".flips DISABLE TRIGGER flips_notify`);
      for (let i = 0; i < 3; i++) await writer.append(halt(`silent-${i}`));
      await until(() => got.length >= 3, 'the polled records');
      expect(got.map((r) => r.id)).toEqual(['silent-0', 'silent-1', 'silent-2']);
      await admin(`ALTER TABLE "${schema}".flips ENABLE TRIGGER flips_notify`);
    });
  },
);

describe('KS-8.1.3 the schema can come from the URL', () => {
  it('takes ?schema= from the connection string and refuses a different schema option', () => {
    const s = new PostgresFlipLogStore({ connectionString: `${PG_URL}?schema=ks_from_url` });
    expect(s.schema).toBe('ks_from_url');
    expect(
      () => new PostgresFlipLogStore({ connectionString: `${PG_URL}?schema=a`, schema: 'b' }),
    ).toThrow(InvalidOptionError);
    expect(
      () => new PostgresFlipLogStore({ connectionString: `${PG_URL}?schema=Bad-Name` }),
    ).toThrow(expect.objectContaining({ option: 'schema' }));
    void s.close();
  });

  it('does not echo a password in the error for a URL that is not postgres://', () => {
    expect(() => new PostgresFlipLogStore({ connectionString: 'mysql://u:secret@h/db' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('secret') as unknown }),
    );
  });
});

describe.runIf(RUN_PG)('KS-8.1.1 a store opened with ?schema= uses that schema', () => {
  it('writes into the schema the URL names', async () => {
    const schema = fresh('url');
    const s = new PostgresFlipLogStore({ connectionString: `${PG_URL}?schema=${schema}`, logger });
    stores.add(s);
    await s.append(halt('u'));
    expect(await admin(`SELECT id FROM "${schema}".flips`)).toEqual([{ id: 'u' }]);
  });
});

describe.runIf(RUN_PG)(
  'KS-8.3.4 concurrent appends to one store share transactions (group commit)',
  () => {
    it('writes 20 concurrent appends in fewer than 20 transactions, as one dense chain', async () => {
      const schema = fresh('group');
      const s = store(schema);
      await s.open();
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => s.append(halt(`g${i}`))),
      );
      expect(results.map((r) => r.record.seq).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      const tx = await admin<{ n: string }>(
        `SELECT count(DISTINCT xmin::text) AS n FROM "${schema}".flips`,
      );
      expect(Number(tx[0]!.n)).toBeLessThan(20);
      expect(verifyChain(await s.read())).toHaveLength(20);
    });

    it('answers a retry and a conflicting reuse of an id inside one batch like separate appends', async () => {
      const schema = fresh('group');
      const s = store(schema);
      await s.open();
      // Hold the writer busy so the next appends queue up into one batch.
      const first = s.append(halt('busy'));
      const settled = await Promise.allSettled([
        s.append(halt('x')),
        s.append(halt('x')),
        s.append(halt('x', { reason: 'another reason' })),
        s.append(halt('y')),
      ]);
      await first;
      const [a, b, c, d] = settled;
      expect(a).toMatchObject({ status: 'fulfilled', value: { duplicate: false } });
      expect(b).toMatchObject({ status: 'fulfilled', value: { duplicate: true } });
      expect((b as PromiseFulfilledResult<{ record: FlipRecord }>).value.record).toEqual(
        (a as PromiseFulfilledResult<{ record: FlipRecord }>).value.record,
      );
      expect(c).toMatchObject({ status: 'rejected', reason: { code: ErrorCode.ID_CONFLICT } });
      expect(d).toMatchObject({ status: 'fulfilled', value: { duplicate: false } });
      expect((await s.read()).map((r) => r.id)).toEqual(['busy', 'x', 'y']);
    });

    it('acknowledges none of a batch whose transaction fails', async () => {
      const schema = fresh('group');
      const proxy = await startProxy();
      proxies.add(proxy);
      const s = store(schema, { connectionString: proxy.url, connectTimeoutMs: 500 });
      await s.append(halt('before'));
      await proxy.cut();
      const settled = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => s.append(halt(`lost-${i}`))),
      );
      for (const r of settled) {
        expect(r).toMatchObject({
          status: 'rejected',
          reason: { code: ErrorCode.STORE_UNAVAILABLE },
        });
      }
      const direct = store(schema);
      expect((await direct.read()).map((r) => r.id)).toEqual(['before']);
    });
  },
);

describe.runIf(RUN_PG)('KS-8.2.1 each row keeps the exact canonical JSON its hash covers', () => {
  it('body hashes byte for byte (in SQL) to the hash column and names every field', async () => {
    const schema = fresh('body');
    const s = store(schema);
    const { record } = await s.append(
      halt('b1', { reason: 'naïve ✓ “quotes” \u0000 nul', source: 'operator', mode: 'hold' }),
    );
    const [row] = await admin<{ body: string; ok: boolean; reason: string }>(
      `SELECT body, reason, hash = encode(sha256(convert_to(body, 'UTF8')), 'hex') AS ok
         FROM "${schema}".flips WHERE seq = 1`,
    );
    expect(row!.ok).toBe(true);
    const { hash: _hash, ...rest } = record;
    expect(JSON.parse(row!.body)).toEqual(rest);
    // PostgreSQL text cannot hold U+0000: the column copy has U+FFFD, the body is exact.
    expect(row!.reason).toBe('naïve ✓ “quotes” \uFFFD nul');
    expect((await store(schema).read())[0]).toEqual(record);
  });
});

describe.runIf(RUN_PG)('KS-8.5.1 an insert notifies the schema channel when it commits', () => {
  it('a plain LISTEN client receives the seq and hash of each appended flip', async () => {
    const schema = fresh('notify');
    const s = store(schema);
    await s.open();
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const payloads: string[] = [];
      client.on('notification', (m) => {
        if (m.channel === `ks_flips_${schema}`) payloads.push(m.payload ?? '');
      });
      await client.query(`LISTEN "ks_flips_${schema}"`);
      await s.append(halt('n1'));
      await s.append(halt('n2'));
      await until(() => payloads.length >= 2, 'two notifications');
      // KS-8.5.1 `seq:hash` since schema version 2 (KS-8.5.7).
      const records = await admin<{ seq: string; hash: string }>(
        `SELECT seq::text AS seq, hash FROM "${schema}".flips ORDER BY seq`,
      );
      expect(payloads).toEqual(records.map((r) => `${r.seq}:${r.hash}`));
    } finally {
      await client.end();
    }
  });
});

describe.runIf(RUN_PG)('KS-2.7.3 the log has an identity in meta.log_id', () => {
  it('gives a new schema a random log_id that replicas and restarts all read', async () => {
    const schema = fresh('lid');
    const a = store(schema);
    const b = store(schema);
    const id = await a.logId();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await b.logId()).toBe(id);
    await a.append(halt('x'));
    await a.close();
    const c = store(schema);
    expect(await c.logId()).toBe(id);
    expect(await store(fresh('lid')).logId()).not.toBe(id);
  });

  it('upgrades a version-1 log with records to version 2 with an identity derived from seq 1', async () => {
    const schema = fresh('lidup');
    const a = store(schema);
    const { record } = await a.append(halt('x'));
    await a.append(halt('y'));
    await a.close();
    // What a version-1 library left: no log_id, schema_version 1.
    await admin(`DELETE FROM "${schema}".meta WHERE key = 'log_id'`);
    await admin(`UPDATE "${schema}".meta SET value = '1' WHERE key = 'schema_version'`);
    const b = store(schema);
    expect(await b.logId()).toBe(`h-${record.hash.slice(0, 32)}`);
    expect((await b.read()).map((r) => r.id)).toEqual(['x', 'y']);
    const meta = await admin<{ key: string; value: string }>(
      `SELECT key, value FROM "${schema}".meta ORDER BY key`,
    );
    expect(meta).toEqual([
      { key: 'log_id', value: `h-${record.hash.slice(0, 32)}` },
      { key: 'schema_version', value: String(SCHEMA_VERSION) },
    ]);
  });

  it('refuses to open a schema whose log_id is missing or not an id', async () => {
    const schema = fresh('lidbad');
    const a = store(schema);
    await a.append(halt('x'));
    await a.close();
    await admin(`UPDATE "${schema}".meta SET value = 'not an id!' WHERE key = 'log_id'`);
    await expect(store(schema).open()).rejects.toMatchObject({
      code: ErrorCode.STORE_UNAVAILABLE,
      message: /log_id/,
    });
  });
});

describe.runIf(RUN_PG)(
  'KS-8.5.7 a following store notices the log moving backwards on its next poll',
  () => {
    /** What a superuser can do despite the insert-only trigger: disable it and cut the tail. */
    async function cutTail(schema: string, after: number): Promise<void> {
      await admin(
        `BEGIN; ALTER TABLE "${schema}".flips DISABLE TRIGGER flips_insert_only; ` +
          `DELETE FROM "${schema}".flips WHERE seq > ${after}; ` +
          `ALTER TABLE "${schema}".flips ENABLE TRIGGER flips_insert_only; COMMIT`,
      );
    }

    it('fails with KS_LOG_DIVERGED naming both sides once the tail is deleted, with no new record', async () => {
      const schema = fresh('cut');
      const s = store(schema, { pollIntervalMs: 50 });
      const got: number[] = [];
      s.subscribe((r) => got.push(r.seq));
      await s.open();
      for (const id of ['a', 'b', 'c']) await s.append(halt(id));
      await until(() => got.length === 3, 'three deliveries');
      await cutTail(schema, 1);
      await until(() => s.followStatus().state === 'failed', 'the store to fail', 5000);
      const st = s.followStatus();
      expect(st.failure).toMatch(
        /database now holds log \S+ at seq 1 .* delivered log \S+ at seq 3/,
      );
      expect(st.failure).toMatch(/moved backwards/);
      await expect(s.append(halt('d'))).rejects.toMatchObject({ code: ErrorCode.LOG_DIVERGED });
      expect(got).toEqual([1, 2, 3]);
    });

    it('fails as forked when another writer reuses the cut seq', async () => {
      const schema = fresh('fork');
      const s = store(schema, { pollIntervalMs: 3_600_000 });
      s.subscribe(() => undefined);
      await s.open();
      for (const id of ['a', 'b']) await s.append(halt(id));
      await cutTail(schema, 1);
      const other = store(schema);
      await other.append(halt('other'));
      // The NOTIFY of the other writer's seq 2 wakes the follower, which finds seq 2 changed.
      await until(() => s.followStatus().state === 'failed', 'the store to fail', 5000);
      expect(s.followStatus().failure).toMatch(/at seq 2 .* at seq 2 .*forked/);
    });
  },
);
