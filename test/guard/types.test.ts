import type { Client, MultiProvider } from '@openfeature/server-sdk';
import { describe, expectTypeOf, it } from 'vitest';
import type { HaltedError } from '../../src/errors.js';
import type {
  DuplicateEffectError,
  EffectBody,
  EffectGuard,
  FailClosedKillStrategy,
  GuardedEffect,
} from '../../src/guard/index.js';
import type {
  EffectStatus,
  FileSideEffectLedger,
  LedgerEntry,
  LedgerEvent,
  MemorySideEffectLedger,
  SideEffectLedger,
} from '../../src/ledger/index.js';

describe('KS-4.4 / KS-4.6.2 public types', () => {
  it('ledgers implement SideEffectLedger and EffectStatus is a string union', () => {
    expectTypeOf<MemorySideEffectLedger>().toExtend<SideEffectLedger>();
    expectTypeOf<FileSideEffectLedger>().toExtend<SideEffectLedger>();
    expectTypeOf<EffectStatus>().toEqualTypeOf<
      'intent' | 'landed' | 'failed' | 'aborted' | 'refused' | 'landed-after-halt' | 'cancelled'
    >();
    expectTypeOf<LedgerEntry['history']>().toEqualTypeOf<readonly LedgerEvent[]>();
  });

  it('guard.run returns the body result type and the errors are KillSwitchErrors', () => {
    expectTypeOf<EffectGuard['run']>().parameters.toEqualTypeOf<
      [GuardedEffect<unknown>, EffectBody<unknown>]
    >();
    const run = (g: EffectGuard) =>
      g.run({ context: {}, runId: 'r', step: 's', capability: 'c' }, async () => 42);
    expectTypeOf(run).returns.toEqualTypeOf<Promise<number>>();
    expectTypeOf<DuplicateEffectError['state']>().toEqualTypeOf<
      'landed' | 'in-doubt' | 'in-flight'
    >();
    expectTypeOf<HaltedError['code']>().toExtend<string>();
  });

  it('FailClosedKillStrategy is a MultiProvider strategy', () => {
    expectTypeOf<FailClosedKillStrategy>().toExtend<
      NonNullable<ConstructorParameters<typeof MultiProvider>[1]>
    >();
    expectTypeOf<ConstructorParameters<typeof EffectGuard>[0]['client']>().toEqualTypeOf<Client>();
  });
});
