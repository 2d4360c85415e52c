import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpenFeature } from '@openfeature/server-sdk';
import { ErrorCode, KillSwitchError } from '../../src/errors.js';
import { HaltCause } from '../../src/model/halt-cause.js';
import { DrainPermit } from '../../src/guard/drain-permit.js';
import type { KillDecision } from '../../src/guard/kill-decision.js';
import {
  OperationState,
  StoppableOperation,
  type LateOutcome,
  type OperationStop,
} from '../../src/guard/stoppable-operation.js';
import { killHarness, type KillHarness } from '../schedule/kill-harness.js';

let h: KillHarness;
beforeAll(async () => {
  h = await killHarness();
});
afterAll(async () => {
  await h.close();
  await OpenFeature.close();
});
let run = 0;
/** A context no other test halts. */
const fresh = () => ({ tenant: `t-${++run}`, runId: `r-${run}` });

class StopError extends Error {
  constructor(
    readonly state: string,
    readonly from: string,
  ) {
    super(`${from} -> ${state}`);
  }
}

const ops: StoppableOperation[] = [];
afterEach(() => {
  // An operation left live would keep its watch; none of the tests leaves one.
  for (const op of ops.splice(0)) op.cancel(new Error('test over'));
  expect(h.watcher.size).toBe(0);
});

function op(context = fresh(), permit?: DrainPermit): StoppableOperation {
  const o = new StoppableOperation({
    watcher: h.watcher,
    context,
    ...(permit !== undefined ? { permit } : {}),
    haltError: (s) => new StopError(s.state, s.from),
  });
  ops.push(o);
  return o;
}

const HALT: KillDecision = { halted: true, cause: HaltCause.HALTED, reason: 'test' };
const never = new Promise<never>(() => undefined);

/** An operation brought to `state` through legal transitions only. */
function inState(state: OperationState): StoppableOperation {
  const o = op();
  switch (state) {
    case 'watching':
      break;
    case 'checking':
      o.check();
      break;
    case 'running':
      o.check();
      o.start();
      break;
    case 'settled':
      o.check();
      o.settle();
      break;
    case 'refused':
      o.check();
      o.refuse(HALT);
      break;
    case 'aborted':
      o.check();
      o.start();
      o.halt(HALT);
      break;
    case 'cancelled':
      o.cancel(new StopError('cancelled', 'owner'));
      break;
  }
  expect(o.state).toBe(state);
  return o;
}

const STATES = Object.values(OperationState);
const STOPPED = ['refused', 'aborted', 'cancelled'];

/** The owner's transitions, and the states each may start from (KS-4.10.3). */
const MOVES: readonly [string, (o: StoppableOperation) => unknown, readonly string[], string][] = [
  ['check', (o) => o.check(), ['watching'], 'checking'],
  ['refuse', (o) => o.refuse(HALT), ['watching', 'checking'], 'refused'],
  ['start', (o) => o.start(), ['checking'], 'running'],
  ['settle', (o) => o.settle(), ['checking', 'running'], 'settled'],
  ['run', (o) => void o.run(() => never).catch(() => undefined), ['checking'], 'running'],
];

describe('KS-4.10.3 every transition outside the diagram is refused and changes nothing', () => {
  for (const [verb, move, from, to] of MOVES) {
    for (const state of STATES) {
      const legal = from.includes(state);
      it(`${verb} from ${state} ${legal ? `moves to ${to}` : 'is refused'}`, () => {
        const o = inState(state);
        if (legal) {
          move(o);
          expect(o.state).toBe(to);
          return;
        }
        let thrown: unknown;
        try {
          move(o);
        } catch (err) {
          thrown = err;
        }
        if (STOPPED.includes(state)) {
          // Refused with the reason it stopped, so an owner's next step rethrows the halt.
          expect(thrown).toBeInstanceOf(StopError);
          expect(thrown).toBe(o.stopped?.error);
        } else {
          expect(thrown).toBeInstanceOf(KillSwitchError);
          expect(thrown).toMatchObject({ code: ErrorCode.INTERNAL });
          expect((thrown as Error).message).toContain(`cannot ${verb} while ${state}`);
        }
        expect(o.state).toBe(state);
      });
    }
  }

  it('cancel stops every live state and nothing else', () => {
    for (const state of STATES) {
      const o = inState(state);
      const live = ['watching', 'checking', 'running'].includes(state);
      expect(o.cancel(new Error('owner')), state).toBe(live);
      expect(o.state, state).toBe(live ? 'cancelled' : state);
      if (live) expect(o.stopped).toMatchObject({ by: 'owner', from: state, decision: undefined });
    }
  });
});

describe('KS-4.10.2 a halt in each state', () => {
  const expected: Record<string, string | undefined> = {
    watching: 'cancelled',
    checking: 'refused',
    running: 'aborted',
  };
  for (const state of STATES) {
    const to = expected[state];
    it(`${state}: ${to === undefined ? 'does nothing' : `becomes ${to}`}`, () => {
      const o = inState(state);
      const before = o.stopped;
      const signal = o.signal;
      const seen: OperationStop[] = [];
      o.onStop((s) => seen.push(s));
      const stopped = o.halt(HALT);
      if (to === undefined) {
        expect(stopped).toBe(false);
        expect(o.state).toBe(state);
        expect(o.stopped).toBe(before);
        // A listener added to a stopped operation learns of the stop at once; a settled one never stops.
        expect(seen).toHaveLength(STOPPED.includes(state) ? 1 : 0);
        expect(signal.aborted).toBe(STOPPED.includes(state));
        return;
      }
      expect(stopped).toBe(true);
      expect(o.state).toBe(to);
      expect(seen).toEqual([
        { state: to, from: state, by: 'halt', decision: HALT, error: o.stopped?.error },
      ]);
      expect(o.stopped?.error).toEqual(new StopError(to, state));
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBe(o.stopped?.error);
      // A second halt does nothing: the first one decided.
      expect(o.halt({ ...HALT, reason: 'again' })).toBe(false);
      expect(o.stopped?.decision).toBe(HALT);
    });
  }

  it('KS-4.10.1 a real flip reaches a watching operation through its watch, and only a matching one', async () => {
    const ctx = fresh();
    const watching = op(ctx);
    const other = op();
    expect(h.watcher.size).toBe(2);
    const seq = await h.halt({ tenant: ctx.tenant });
    expect(watching.state).toBe('cancelled');
    expect(watching.stopped?.decision?.flip?.seq).toBe(seq);
    expect(other.state).toBe('watching');
    // The stopped operation no longer watches; the live one does.
    expect(h.watcher.size).toBe(1);
    other.cancel(new Error('done'));
  });

  it('KS-4.10.1 a flip landing between the watch and the check refuses the check', async () => {
    const ctx = fresh();
    const o = op(ctx);
    o.check();
    await h.halt({ runId: ctx.runId });
    expect(o.state).toBe('refused');
    expect(o.stopped?.from).toBe('checking');
    expect(() => o.start()).toThrow(StopError);
  });

  it('KS-4.2.4 a flip aborts a running body and frees the caller at once; the body settles late', async () => {
    const ctx = fresh();
    const o = op(ctx);
    o.check();
    let release!: (v: string) => void;
    const late: LateOutcome[] = [];
    let bodySignal: AbortSignal | undefined;
    const p = o.run(
      (signal) => {
        bodySignal = signal;
        return new Promise<string>((r) => (release = r));
      },
      { onLate: (x) => late.push(x) },
    );
    const err = p.catch((e: unknown) => e);
    await h.halt({ tenant: ctx.tenant });
    expect(await err).toEqual(new StopError('aborted', 'running'));
    expect(bodySignal?.aborted).toBe(true);
    expect(late).toEqual([]);
    release('landed anyway');
    await Promise.resolve();
    await Promise.resolve();
    expect(late).toEqual([{ ok: true, value: 'landed anyway' }]);
    expect(o.state).toBe('aborted');
  });

  it('a settled operation no longer watches: a later flip does nothing', async () => {
    const ctx = fresh();
    const o = op(ctx);
    o.check();
    await expect(o.run(async () => 7)).resolves.toBe(7);
    expect(o.state).toBe('settled');
    expect(h.watcher.size).toBe(0);
    await h.halt({ tenant: ctx.tenant });
    expect(o.state).toBe('settled');
    expect(o.signal.aborted).toBe(false);
  });

  it('KS-4.8.4 a drain halt the permit covers does not stop it; a discard halt does', async () => {
    const ctx = fresh();
    const permit = new DrainPermit({
      admittedSeq: await h.halt({ tenant: 'nobody' }),
      context: ctx,
      taskId: 't',
    });
    const o = op(ctx, permit);
    o.check();
    o.start();
    await h.halt({ tenant: ctx.tenant }, 'drain');
    expect(o.state).toBe('running');
    await h.halt({ runId: ctx.runId }, 'discard');
    expect(o.state).toBe('aborted');
  });
});

describe('run, race and the owner', () => {
  it('a rejected body settles the operation, or sends it back to watching when the owner tries again', async () => {
    const once = op();
    once.check();
    await expect(once.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(once.state).toBe('settled');

    const retried = op();
    retried.check();
    await expect(
      retried.run(() => Promise.reject(new Error('flaky')), { again: () => true }),
    ).rejects.toThrow('flaky');
    expect(retried.state).toBe('watching');
    // Still watching between attempts: a halt in the back-off cancels it.
    expect(retried.halt(HALT)).toBe(true);
    expect(retried.state).toBe('cancelled');
  });

  it('a throwing `again` settles the operation and rejects with what it threw', async () => {
    const o = op();
    o.check();
    const p = o.run(() => Promise.reject(new Error('body')), {
      again: () => {
        throw new Error('policy');
      },
    });
    await expect(p).rejects.toThrow('policy');
    expect(o.state).toBe('settled');
  });

  it('a body that throws synchronously is a rejected body', async () => {
    const o = op();
    o.check();
    await expect(
      o.run(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    expect(o.state).toBe('settled');
  });

  it('race rejects at the stop, and at once when already stopped', async () => {
    const o = op();
    const waiting = o.race(never).catch((e: unknown) => e);
    o.cancel(new Error('owner cancelled'));
    expect(await waiting).toEqual(new Error('owner cancelled'));
    await expect(o.race(Promise.resolve(1))).rejects.toThrow('owner cancelled');
  });

  it('the signal created after the stop is already aborted with the stop error', () => {
    const o = op();
    o.check();
    expect(o.refuse(HALT)).toBe(o.stopped?.error);
    expect(o.stopped).toMatchObject({ by: 'check', from: 'checking', decision: HALT });
    expect(o.signal.aborted).toBe(true);
    expect(o.signal.reason).toEqual(new StopError('refused', 'checking'));
  });

  it('a removed stop listener is not called', () => {
    const o = op();
    const calls: string[] = [];
    const off = o.onStop(() => calls.push('removed'));
    o.onStop(() => calls.push('kept'));
    off();
    o.cancel(new Error('x'));
    expect(calls).toEqual(['kept']);
  });
});
