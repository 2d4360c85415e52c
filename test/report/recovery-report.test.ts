import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../providers/file/index.js';
import {
  FileSideEffectLedger,
  foldLedgerEvents,
  type LedgerEvent,
} from '../../src/ledger/index.js';
import { PostgresSideEffectLedger } from '../../providers/postgres-ledger/index.js';
import { PG_URL, RUN_PG, dropSchemas, schemaName } from '../postgres/pg-harness.js';
import {
  buildRecoveryReport,
  compensationsOf,
  countEffects,
  formatRecoveryReport,
} from '../../src/report/index.js';
import { foldRunRecords } from '../../src/run/index.js';

const CLI = resolve('dist/src/cli/main.js');
const run = promisify(execFile);

const t0 = Date.parse('2026-01-01T00:00:00.000Z');
let tick = 0;
function ev(
  key: string,
  status: LedgerEvent['status'],
  extra: Partial<LedgerEvent> = {},
): LedgerEvent {
  tick += 1000;
  const [runId, step] = key.split('/') as [string, string];
  return {
    key,
    status,
    at: new Date(t0 + tick).toISOString(),
    runId,
    step,
    capability: extra.capability ?? 'orders.write',
    context: {
      tenant: runId.startsWith('b') ? 'beta' : 'acme',
      runId,
      capability: extra.capability ?? 'orders.write',
    },
    ...extra,
  };
}

/** A ledger after an incident: one run finished, one halted mid-flight, one refused. */
function incident(): LedgerEvent[] {
  tick = 0;
  return [
    ev('a1/s1', 'intent', {
      attempt: 1,
      compensation: { action: 'orders.revert', args: { id: 1 } },
    }),
    ev('a1/s1', 'landed'),
    ev('a1/s2', 'intent', {
      attempt: 1,
      compensation: { action: 'orders.revert', args: { id: 2 } },
    }),
    ev('a1/s2', 'landed'),
    ev('a2/s1', 'intent', {
      attempt: 1,
      compensation: { action: 'orders.revert', args: { id: 3 } },
    }),
    ev('a2/s1', 'aborted', { flipSeq: 4 }),
    ev('a2/s2', 'intent', {
      attempt: 1,
      capability: 'email.send',
      compensation: { action: 'email.recall' },
    }),
    ev('a2/s2', 'aborted', { flipSeq: 4, capability: 'email.send' }),
    ev('a2/s2', 'landed-after-halt', { capability: 'email.send' }),
    ev('a2/s3', 'intent', { attempt: 1 }),
    ev('a2/s3', 'aborted', { flipSeq: 4 }),
    ev('a2/s3', 'cancelled'),
    ev('a2/s4', 'refused', { flipSeq: 4 }),
    ev('b1/s1', 'intent', { attempt: 1 }),
    ev('b1/s1', 'failed', { detail: '503' }),
    ev('b1/s2', 'refused', { flipSeq: 5 }),
  ];
}

describe('KS-10.4.1 the report counts intended vs landed per run, in doubt, landed after halt, refused, aborted, cancelled', () => {
  it('gives each run and the totals', () => {
    const r = buildRecoveryReport(foldLedgerEvents(incident()));
    expect(r.runs.map((x) => [x.runId, x.counts])).toEqual([
      [
        'a1',
        {
          intended: 2,
          landed: 2,
          landedAfterHalt: 0,
          inDoubt: 0,
          failed: 0,
          refused: 0,
          aborted: 0,
          cancelled: 0,
        },
      ],
      [
        'a2',
        {
          intended: 3,
          landed: 1,
          landedAfterHalt: 1,
          inDoubt: 1,
          failed: 0,
          refused: 1,
          aborted: 3,
          cancelled: 1,
        },
      ],
      [
        'b1',
        {
          intended: 1,
          landed: 0,
          landedAfterHalt: 0,
          inDoubt: 0,
          failed: 1,
          refused: 1,
          aborted: 0,
          cancelled: 0,
        },
      ],
    ]);
    expect(r.totals).toEqual({
      intended: 6,
      landed: 3,
      landedAfterHalt: 1,
      inDoubt: 1,
      failed: 1,
      refused: 2,
      aborted: 3,
      cancelled: 1,
    });
    expect(r.inDoubt.map((e) => [e.key, e.status, e.flipSeq])).toEqual([['a2/s1', 'aborted', 4]]);
    expect(r.landedAfterHalt.map((e) => e.key)).toEqual(['a2/s2']);
  });

  it('every key is counted once as landed, in doubt, or settled without landing (fast-check)', () => {
    const status = fc.constantFrom<LedgerEvent['status']>(
      'intent',
      'landed',
      'failed',
      'aborted',
      'refused',
      'landed-after-halt',
      'cancelled',
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), status), { maxLength: 40 }),
        (steps) => {
          tick = 0;
          const entries = foldLedgerEvents(steps.map(([k, s]) => ev(`r/s${k}`, s)));
          const c = countEffects(entries);
          const landedOrDoubt = entries.filter((e) => e.landed || e.inDoubt).length;
          expect(c.landed + c.inDoubt).toBeGreaterThanOrEqual(landedOrDoubt);
          expect(c.landed).toBeLessThanOrEqual(entries.length);
          expect(c.landedAfterHalt).toBeLessThanOrEqual(c.landed);
        },
      ),
      { seed: Number(process.env['KS_REPORT_SEED'] ?? 42), verbose: true },
    );
  });
});

describe('KS-10.4.2 the compensation list comes from the actions effects declared', () => {
  it('lists landed, landed-after-halt and in-doubt effects that declared one, newest first; never a refused or cancelled one', () => {
    const c = compensationsOf(foldLedgerEvents(incident()));
    expect(c.map((x) => [x.key, x.action, x.args, x.state])).toEqual([
      ['a2/s2', 'email.recall', undefined, 'landed-after-halt'],
      ['a2/s1', 'orders.revert', { id: 3 }, 'in-doubt'],
      ['a1/s2', 'orders.revert', { id: 2 }, 'landed'],
      ['a1/s1', 'orders.revert', { id: 1 }, 'landed'],
    ]);
    const text = formatRecoveryReport(buildRecoveryReport(foldLedgerEvents(incident()))).join('\n');
    expect(text).toMatch(/orders.revert \{"id":3\}\s+undoes a2\/s1 \(in-doubt .*IN DOUBT/);
  });
});

describe('KS-10.4.3 the report filters by run, tenant, capability and since a flip', () => {
  it('keeps only matching entries', () => {
    const entries = foldLedgerEvents(incident());
    const keys = (f: Parameters<typeof buildRecoveryReport>[1]) =>
      buildRecoveryReport(entries, f).runs.flatMap((r) => r.effects.map((e) => e.key));
    expect(keys({ runId: 'a1' })).toEqual(['a1/s1', 'a1/s2']);
    expect(keys({ tenant: 'beta' })).toEqual(['b1/s1', 'b1/s2']);
    expect(keys({ capability: 'email.send' })).toEqual(['a2/s2']);
    expect(keys({ tenant: 'acme', capability: 'email.send' })).toEqual(['a2/s2']);
    expect(keys({ sinceSeq: 5 })).toEqual(['b1/s2']);
    // Since flip 5 was appended at t0+15s: b1/s1's failure (t0+15s) is touched too.
    expect(keys({ sinceSeq: 5, since: new Date(t0 + 15_000).toISOString() })).toEqual([
      'b1/s1',
      'b1/s2',
    ]);
  });
});

describe('KS-10.4.5 with a run journal, each run says where it stands', () => {
  it('adds status, executions and workers, and lists runs refused before any effect', () => {
    const runs = [
      ...foldRunRecords([
        {
          type: 'started',
          runId: 'a2',
          at: '2026-01-01T00:00:00.000Z',
          workerId: 'w1',
          context: { tenant: 'acme' },
        },
        {
          type: 'ended',
          runId: 'a2',
          at: '2026-01-01T00:01:00.000Z',
          workerId: 'w1',
          status: 'halted',
          flipSeq: 4,
          detail: 'halted',
        },
        {
          type: 'started',
          runId: 'a9',
          at: '2026-01-01T00:00:00.000Z',
          workerId: 'w2',
          context: { tenant: 'acme' },
        },
        {
          type: 'ended',
          runId: 'a9',
          at: '2026-01-01T00:00:01.000Z',
          workerId: 'w2',
          status: 'refused',
          flipSeq: 4,
        },
        {
          type: 'started',
          runId: 'b9',
          at: '2026-01-01T00:00:00.000Z',
          workerId: 'w2',
          context: { tenant: 'beta' },
        },
      ]).values(),
    ];
    const r = buildRecoveryReport(foldLedgerEvents(incident()), { tenant: 'acme' }, runs);
    expect(r.runs.map((x) => [x.runId, x.journal?.status, x.counts.intended])).toEqual([
      ['a1', undefined, 2],
      ['a2', 'halted', 3],
      ['a9', 'refused', 0],
    ]);
    expect(formatRecoveryReport(r).join('\n')).toMatch(
      /run a9 \[refused, 1 execution\(s\) on w2\]/,
    );
    // A filter only the ledger can answer leaves journal-only runs out.
    expect(
      buildRecoveryReport(
        foldLedgerEvents(incident()),
        { capability: 'email.send' },
        runs,
      ).runs.map((x) => x.runId),
    ).toEqual(['a2']);
  });
});

describe('KS-10.4.4 killswitch report reads a ledger file (read only) or PostgreSQL', () => {
  let dir = '';
  let ledgerPath = '';
  let logPath = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-report-'));
    ledgerPath = join(dir, 'effects.jsonl');
    logPath = join(dir, 'flips.jsonl');
    const ledger = new FileSideEffectLedger({ path: ledgerPath, logger: { warn() {} } });
    for (const e of incident()) await ledger.append(e);
    await ledger.close();
    const store = new FileFlipLogStore({ path: logPath });
    await store.open();
    for (let i = 1; i <= 5; i++)
      await store.append({
        actor: 'ops',
        action: 'halt',
        selector: { tenant: `t${i}` },
        reason: `r${i}`,
      });
    await store.close();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints the report as text and as JSON; --since-seq reads the flip time from --log', async () => {
    const text = await run(process.execPath, [CLI, 'report', '--ledger', ledgerPath]);
    expect(text.stdout).toContain(
      'totals: intended 6, landed 3 (1 after halt), in doubt 1, failed 1, refused 2, aborted 3, cancelled 1',
    );
    expect(text.stdout).toContain('run a2: intended 3, landed 1');
    const json = await run(process.execPath, [
      CLI,
      'report',
      '--ledger',
      ledgerPath,
      '--run',
      'a2',
      '--json',
    ]);
    const r = JSON.parse(json.stdout) as ReturnType<typeof buildRecoveryReport>;
    expect(r.runs.map((x) => x.runId)).toEqual(['a2']);
    expect(r.compensations.map((c) => c.key)).toEqual(['a2/s2', 'a2/s1']);
    const since = await run(process.execPath, [
      CLI,
      'report',
      '--ledger',
      ledgerPath,
      '--since-seq',
      '5',
      '--log',
      logPath,
      '--json',
    ]);
    const s = JSON.parse(since.stdout) as ReturnType<typeof buildRecoveryReport>;
    expect(s.filter.sinceSeq).toBe(5);
    // Every flip of the log was appended now, after every ledger event (2026-01-01): only flipSeq >= 5 matches.
    expect(s.runs.flatMap((x) => x.effects.map((e) => e.key))).toEqual(['b1/s2']);
  });

  it('refuses a missing ledger (exit 1), a bad flag (exit 2), and an unknown flip (exit 1)', async () => {
    const miss = await run(process.execPath, [
      CLI,
      'report',
      '--ledger',
      join(dir, 'nope.jsonl'),
    ]).catch((e: { code: number; stderr: string }) => e);
    expect(miss).toMatchObject({ code: 1 });
    expect((miss as { stderr: string }).stderr).toMatch(
      /no ledger file at .*: pass --ledger <file>/,
    );
    await expect(run(process.execPath, [CLI, 'report', '--since-seq', 'x'])).rejects.toMatchObject({
      code: 2,
    });
    await expect(
      run(process.execPath, [
        CLI,
        'report',
        '--ledger',
        ledgerPath,
        '--since-seq',
        '9',
        '--log',
        logPath,
      ]),
    ).rejects.toMatchObject({ code: 1 });
  });

  it.runIf(RUN_PG)('reads the PostgreSQL ledger named by a postgres:// URL', async () => {
    const schema = schemaName('report');
    const pgLedger = new PostgresSideEffectLedger({ connectionString: PG_URL, schema });
    try {
      for (const e of incident()) await pgLedger.append(e);
      const url = `${PG_URL}?schema=${schema}`;
      const out = await run(process.execPath, [
        CLI,
        'report',
        '--ledger',
        url,
        '--tenant',
        'acme',
        '--json',
      ]);
      const r = JSON.parse(out.stdout) as ReturnType<typeof buildRecoveryReport>;
      expect(r.runs.map((x) => x.runId)).toEqual(['a1', 'a2']);
      expect(r.totals.inDoubt).toBe(1);
    } finally {
      await pgLedger.close();
      await dropSchemas([schema]);
    }
  });
});
