import { describe, expectTypeOf, it } from 'vitest';
import type { EffectBody } from '../../src/guard/index.js';
import type { LedgerEntry, SideEffectLedger } from '../../src/ledger/index.js';
import type { PostgresSideEffectLedger } from '../../providers/postgres-ledger/index.js';
import { buildRecoveryReport, type RecoveryReport } from '../../src/report/index.js';
import type { DurableRunner, FileRunJournal, MemoryRunJournal } from '../../src/run/index.js';
import {
  type RunHandle,
  type RunJournal,
  type RunState,
  type RunStatus,
} from '../../src/run/index.js';
import type { ReleaseGate } from '../../src/server/index.js';
import { type ReleaseRecord } from '../../src/server/index.js';

describe('KS-10 public types', () => {
  it('journals are RunJournals; the PostgreSQL ledger is a SideEffectLedger', () => {
    expectTypeOf<MemoryRunJournal>().toExtend<RunJournal>();
    expectTypeOf<FileRunJournal>().toExtend<RunJournal>();
    expectTypeOf<PostgresSideEffectLedger>().toExtend<SideEffectLedger>();
  });

  it('a run step returns what its body returns; start and resume return the run function’s result', () => {
    expectTypeOf<RunHandle<{ to: string }>['input']>().toEqualTypeOf<{ to: string }>();
    expectTypeOf<RunHandle['step']>().parameter(2).toEqualTypeOf<EffectBody<unknown>>();
    expectTypeOf<DurableRunner['resume']>().returns.toEqualTypeOf<Promise<unknown>>();
    expectTypeOf<RunState['status']>().toEqualTypeOf<RunStatus>();
  });

  it('the report is built from ledger entries; a release record names its status', () => {
    expectTypeOf(buildRecoveryReport).parameter(0).toEqualTypeOf<readonly LedgerEntry[]>();
    expectTypeOf(buildRecoveryReport).returns.toEqualTypeOf<RecoveryReport>();
    expectTypeOf<ReleaseRecord['status']>().toEqualTypeOf<'green' | 'red' | 'override'>();
    expectTypeOf<ReleaseGate['checkResume']>().returns.toEqualTypeOf<Promise<void>>();
  });
});
