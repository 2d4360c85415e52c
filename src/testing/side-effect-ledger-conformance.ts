import { afterEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.js';
import { EffectStatus, inDoubt, type LedgerEvent, type SideEffectLedger } from '../ledger/index.js';

/** How a conformance run creates (and optionally reopens) a ledger. */
export interface LedgerHarness {
  create(): Promise<SideEffectLedger>;
  /** Closes the ledger and opens a new instance on the same storage. */
  reopen?(ledger: SideEffectLedger): Promise<SideEffectLedger>;
  cleanup?(): Promise<void>;
}

const t0 = Date.parse('2026-01-01T00:00:00.000Z');
let clock = 0;
/** A ledger event for `key` (`run/step`) at a time one second after the previous one. */
export function ev(
  key: string,
  status: LedgerEvent['status'],
  extra: Partial<LedgerEvent> = {},
): LedgerEvent {
  clock += 1000;
  return {
    key,
    status,
    at: new Date(t0 + clock).toISOString(),
    runId: key.split('/')[0]!,
    step: key.split('/')[1] ?? 's',
    capability: 'cap.a',
    context: { tenant: 'acme', runId: key.split('/')[0]!, capability: 'cap.a' },
    ...extra,
  };
}

/**
 * The behaviour every SideEffectLedger shares (memory, file, and later PostgreSQL): run it from the
 * backend's own test file. KS-4.4.8
 */
export function describeLedgerConformance(name: string, harness: LedgerHarness): void {
  describe(`${name}: KS-4.4 side-effect ledger conformance`, () => {
    let ledger: SideEffectLedger | undefined;
    afterEach(async () => {
      await ledger?.close();
      ledger = undefined;
      await harness.cleanup?.();
    });

    describe('KS-4.4.2 events are validated before anything is stored', () => {
      it('rejects a bad event with KS_INVALID_INPUT listing every issue, and stores nothing', async () => {
        ledger = await harness.create();
        const bad = {
          ...ev('r1/a', 'intent'),
          status: 'exploded',
          at: 'yesterday',
        } as unknown as LedgerEvent;
        const err = await ledger.append(bad).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).code).toBe('KS_INVALID_INPUT');
        expect(
          [...new Set((err as ValidationError).issues.map((i) => i.path.join('.')))].sort(),
        ).toEqual(['at', 'status']);
        expect(await ledger.entries()).toEqual([]);
      });
    });

    describe('KS-4.4.3 KS-4.4.6 entries fold the events of each key; the compensation is kept with its intent', () => {
      it('keeps the first intent, the last status, the full history and the landed-after-halt flag', async () => {
        ledger = await harness.create();
        const intent = ev('r1/a', 'intent', {
          attempt: 1,
          compensation: { action: 'undo.a', args: { id: 1 } },
        });
        await ledger.append(intent);
        await ledger.append(ev('r1/a', 'aborted', { flipSeq: 7 }));
        await ledger.append(ev('r1/a', 'landed-after-halt'));
        await ledger.append(ev('r1/b', 'refused', { flipSeq: 7 }));
        const [a, b] = await ledger.entries();
        expect(a?.key).toBe('r1/a');
        expect(a?.intent).toEqual(intent);
        expect(a?.status).toBe('landed-after-halt');
        expect(a?.history.map((e) => e.status)).toEqual(['intent', 'aborted', 'landed-after-halt']);
        expect(a?.landedAfterHalt).toBe(true);
        expect(a?.landed).toBe(true);
        expect(a?.inDoubt).toBe(false);
        expect(a?.attempts).toBe(1);
        expect(a?.compensation).toEqual({ action: 'undo.a', args: { id: 1 } });
        expect(b?.intent).toBeUndefined();
        expect(b?.status).toBe('refused');
        expect(b?.landed).toBe(false);
      });

      it('filters by key, runId, status, capability and since', async () => {
        ledger = await harness.create();
        await ledger.append(ev('r1/a', 'intent'));
        await ledger.append(ev('r1/a', 'landed'));
        await ledger.append(
          ev('r2/a', 'intent', {
            capability: 'cap.b',
            context: { capability: 'cap.b', runId: 'r2' },
          }),
        );
        const mid = new Date(t0 + clock + 1);
        await ledger.append(ev('r3/a', 'intent'));
        await ledger.append(ev('r3/a', 'failed'));
        const keys = async (f: Parameters<SideEffectLedger['entries']>[0]) =>
          (await ledger!.entries(f)).map((e) => e.key);
        expect(await keys({ key: 'r2/a' })).toEqual(['r2/a']);
        expect(await keys({ key: 'nope' })).toEqual([]);
        expect(await keys({ runId: 'r1' })).toEqual(['r1/a']);
        expect(await keys({ status: EffectStatus.INTENT })).toEqual(['r2/a']);
        expect(await keys({ status: ['landed', 'failed'] })).toEqual(['r1/a', 'r3/a']);
        expect(await keys({ capability: 'cap.b' })).toEqual(['r2/a']);
        expect(await keys({ since: mid })).toEqual(['r3/a']);
        expect(await keys({ since: mid.toISOString(), runId: 'r1' })).toEqual([]);
      });
    });

    describe('KS-4.4.5 in doubt means an intent or an abort with no outcome after it', () => {
      it('lists exactly those keys', async () => {
        ledger = await harness.create();
        await ledger.append(ev('r1/a', 'intent'));
        await ledger.append(ev('r1/b', 'intent'));
        await ledger.append(ev('r1/b', 'landed'));
        await ledger.append(ev('r1/c', 'intent'));
        await ledger.append(ev('r1/c', 'aborted'));
        await ledger.append(ev('r1/d', 'intent'));
        await ledger.append(ev('r1/d', 'aborted'));
        await ledger.append(ev('r1/d', 'cancelled'));
        expect((await inDoubt(ledger)).map((e) => e.key)).toEqual(['r1/a', 'r1/c']);
      });
    });

    if (harness.reopen) {
      describe('KS-4.5.1 appended events survive a reopen', () => {
        it('a new instance folds to the same entries', async () => {
          ledger = await harness.create();
          await ledger.append(ev('r1/a', 'intent', { attempt: 1 }));
          await ledger.append(ev('r1/a', 'landed', { result: { id: 'x' } }));
          await ledger.append(ev('r1/b', 'intent', { attempt: 1 }));
          const before = await ledger.entries();
          ledger = await harness.reopen!(ledger);
          expect(await ledger.entries()).toEqual(before);
          expect((await ledger.entries({ key: 'r1/a' }))[0]?.result).toEqual({ id: 'x' });
        });
      });
    }

    describe('KS-4.4.7 a closed ledger refuses', () => {
      it('rejects append and entries with KS_STORE_CLOSED', async () => {
        const l = await harness.create();
        await l.close();
        await expect(l.append(ev('r1/a', 'intent'))).rejects.toMatchObject({
          code: 'KS_STORE_CLOSED',
        });
        await expect(l.entries()).rejects.toMatchObject({ code: 'KS_STORE_CLOSED' });
      });
    });
  });
}
