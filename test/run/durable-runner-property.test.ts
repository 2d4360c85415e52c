import { InMemoryProvider, OpenFeature } from '@openfeature/server-sdk';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import {
  DurableRunner,
  MemoryRunJournal,
  type RunFunction,
  type RunRecord,
} from '../../src/run/index.js';

afterAll(async () => {
  await OpenFeature.close();
});

/** A journal whose step records fail to be written when the plan says so (a death between ledger and journal). */
class FlakyJournal extends MemoryRunJournal {
  constructor(private readonly failStep: (step: string) => boolean) {
    super();
  }
  override async append(record: RunRecord): Promise<void> {
    if (record.type === 'step' && this.failStep(record.step)) throw new Error('disk gone');
    return super.append(record);
  }
}

const SEED = Number(process.env['KS_RUN_SEED'] ?? Date.now() % 2 ** 31);

describe('KS-10.2.3 over random crash points, a run resumed until it completes sends every effect exactly once', () => {
  it(`holds for random crashes between steps and lost journal writes (seed ${SEED})`, async () => {
    await OpenFeature.setProviderAndWait(
      'run-prop',
      new InMemoryProvider({
        'kill-switch': {
          variants: { on: true, off: false },
          defaultVariant: 'off',
          disabled: false,
        },
      }),
    );
    const client = OpenFeature.getClient('run-prop');
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
        fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
        async (steps, crashPlan, lossPlan) => {
          const ledger = new MemorySideEffectLedger();
          const guard = new EffectGuard({ client, ledger });
          let crashes = 0;
          let losses = 0;
          const journal = new FlakyJournal(() => lossPlan[losses++ % 64] === true && losses < 32);
          const sent: string[] = [];
          const fn: RunFunction<unknown, number> = async (run) => {
            let total = 0;
            for (let i = 0; i < steps; i++) {
              total += await run.step(`s${i}`, { capability: 'c' }, async (_sig, { key }) => {
                sent.push(key);
                return i;
              });
              if (crashPlan[crashes++ % 64] === true && crashes < 32) throw new Error('crash');
            }
            return total;
          };
          const runner = (w: number) => new DurableRunner({ guard, journal, workerId: `w${w}` });
          let out: number | undefined;
          await runner(0)
            .start({ runId: 'r' }, fn)
            .then((v) => (out = v))
            .catch(() => undefined);
          for (let w = 1; out === undefined && w < 200; w++) {
            await runner(w)
              .resume('r', fn)
              .then((v) => (out = v))
              .catch(() => undefined);
          }
          await guard.close();
          expect(out).toBe((steps * (steps - 1)) / 2);
          expect(sent).toEqual(Array.from({ length: steps }, (_, i) => `r/s${i}`));
          expect((await journal.run('r'))?.status).toBe('completed');
        },
      ),
      { seed: SEED, numRuns: 100 },
    );
  });
});
