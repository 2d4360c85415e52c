import { OpenFeature, type EvaluationDetails } from '@openfeature/server-sdk';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { decide } from '../../src/guard/kill-decision.js';
import {
  EFFECT_STATUSES,
  MemorySideEffectLedger,
  parseLedgerEvent,
} from '../../src/ledger/index.js';
import { killSwitchBackend } from './backends.js';

afterAll(async () => {
  await OpenFeature.close();
});

const arbDetails: fc.Arbitrary<EvaluationDetails<boolean>> = fc.record(
  {
    flagKey: fc.constant('kill-switch'),
    flagMetadata: fc.constant({}),
    value: fc.oneof(
      fc.boolean(),
      fc.constantFrom('false', 0, null, undefined, {}) as fc.Arbitrary<never>,
    ),
    errorCode: fc.constantFrom('GENERAL', 'PARSE_ERROR', 'TYPE_MISMATCH') as fc.Arbitrary<never>,
    reason: fc.constantFrom('STATIC', 'TARGETING_MATCH', 'STALE', 'ERROR', 'DEFAULT', 'CACHED'),
    variant: fc.constantFrom('running', 'halted'),
  },
  { requiredKeys: ['flagKey', 'flagMetadata', 'value'] },
) as fc.Arbitrary<EvaluationDetails<boolean>>;

describe('KS-4.1.2 anything but exactly false without an errorCode is halted, with its cause', () => {
  it('holds for every resolution (property, seed printed on failure)', () => {
    fc.assert(
      fc.property(arbDetails, (d) => {
        const decision = decide(d);
        const running = d.value === false && d.errorCode === undefined;
        expect(decision.halted).toBe(!running);
        if (running) return;
        const expected =
          d.errorCode !== undefined || d.reason === 'ERROR'
            ? 'error'
            : d.reason === 'STALE'
              ? 'stale'
              : typeof d.value !== 'boolean'
                ? 'error'
                : 'halted';
        expect(decision.cause).toBe(expected);
      }),
      { numRuns: 2_000 },
    );
  });

  it('the named cases', () => {
    const base = { flagKey: 'kill-switch', flagMetadata: {} };
    expect(decide({ ...base, value: false }).halted).toBe(false);
    expect(decide({ ...base, value: true })).toMatchObject({ halted: true, cause: 'halted' });
    expect(decide({ ...base, value: true, reason: 'STALE' })).toMatchObject({ cause: 'stale' });
    expect(decide({ ...base, value: false, errorCode: 'GENERAL' as never })).toMatchObject({
      halted: true,
      cause: 'error',
    });
    expect(decide({ ...base, value: 'false' as never })).toMatchObject({
      halted: true,
      cause: 'error',
    });
  });
});

describe('KS-4.1.9 guard.check(ctx) answers the same decision as run and records nothing', () => {
  it('running, then halted by a flip that names it; the ledger stays empty', async () => {
    const b = await killSwitchBackend();
    const ledger = new MemorySideEffectLedger();
    const guard = new EffectGuard({ client: b.client, ledger, logger: { warn: () => {} } });
    try {
      const ctx = { tenant: 'acme', capability: 'email.send' };
      expect(await guard.check(ctx)).toMatchObject({ halted: false });
      await b.halt({ tenant: 'acme' });
      const d = await guard.check(ctx);
      expect(d).toMatchObject({ halted: true, cause: 'halted' });
      expect(d.flip?.selector).toEqual({ tenant: 'acme' });
      expect(await guard.check({ tenant: 'other' })).toMatchObject({ halted: false });
      await guard.flush();
      expect(await ledger.entries()).toEqual([]);
      // run refuses the same context, and that one is recorded.
      await expect(
        guard.run({ context: ctx, runId: 'r', step: 's', capability: 'email.send' }, async () => 1),
      ).rejects.toMatchObject({ code: 'KS_HALTED' });
      expect((await ledger.entries()).map((e) => e.last.status)).toEqual(['refused']);
    } finally {
      await guard.close();
    }
  });
});

describe('KS-4.4.1 the ledger statuses are exactly the seven of the spec', () => {
  it('EffectStatus lists them, and a ledger event with any other status is refused', () => {
    expect([...EFFECT_STATUSES].sort()).toEqual(
      ['intent', 'landed', 'failed', 'aborted', 'refused', 'landed-after-halt', 'cancelled'].sort(),
    );
    const event = {
      key: 'r/s',
      at: '2026-12-05T20:00:00.000Z',
      runId: 'r',
      step: 's',
      capability: 'c',
      context: {},
    };
    for (const status of EFFECT_STATUSES)
      expect(parseLedgerEvent({ ...event, status }).status).toBe(status);
    expect(() => parseLedgerEvent({ ...event, status: 'sent' })).toThrow();
  });
});
