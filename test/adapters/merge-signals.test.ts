import { afterEach, describe, expect, it } from 'vitest';
import { CallSignal, mergeSignals } from '../../src/adapters/internal/merge-signals.js';
import { RUN_WITH_OPERATION } from '../../src/guard/effect-guard.js';
import { effectKey } from '../../src/ledger/index.js';
import { deferred, killSwitchEnv, type KillSwitchEnv } from './harness.js';

describe('KS-14.1.3 mergeSignals: a call signal that follows its sources', () => {
  it('aborts with the first source to abort, and only once', () => {
    const a = new AbortController();
    const b = new AbortController();
    const m = mergeSignals(a.signal, undefined, b.signal);
    b.abort('second');
    a.abort('first');
    expect(m.signal.aborted).toBe(true);
    expect(m.signal.reason).toBe('second');
  });

  it('after dispose a source no longer reaches it (no listener left behind)', () => {
    const a = new AbortController();
    const b = new AbortController();
    const m = mergeSignals(a.signal, b.signal);
    m.dispose();
    a.abort('late');
    expect(m.signal.aborted).toBe(false);
  });

  it('passes a single signal through, and starts aborted when a source already is', () => {
    const a = new AbortController();
    expect(mergeSignals(undefined, a.signal).signal).toBe(a.signal);
    a.abort('gone');
    const m = mergeSignals(new AbortController().signal, a.signal);
    expect(m.signal.aborted).toBe(true);
    expect(m.signal.reason).toBe('gone');
  });
});

describe('KS-14.1.3 CallSignal: one call signal, merged only when read', () => {
  it('merges on first read: aborts with the first source to abort, and is the same signal each read', () => {
    const guard = new AbortController();
    const run = new AbortController();
    const call = new CallSignal(guard.signal, run.signal, undefined);
    const s = call.signal;
    expect(call.signal).toBe(s);
    run.abort('run stopped');
    guard.abort('halt');
    expect(s.aborted).toBe(true);
    expect(s.reason).toBe('run stopped');
  });

  it('link feeds a controller the caller made, with its own reason, from every source and also', () => {
    const guard = new AbortController();
    const framework = new AbortController();
    const call = new CallSignal(guard.signal, new AbortController().signal);
    const upstream = new AbortController();
    call.link(upstream, { reason: () => 'fixed', also: framework.signal });
    framework.abort('caller');
    expect(upstream.signal.reason).toBe('fixed');
    const other = new AbortController();
    call.link(other);
    guard.abort('halt');
    expect(other.signal.reason).toBe('halt');
  });

  it('dispose removes every listener: a later abort of a source reaches neither', () => {
    const guard = new AbortController();
    const run = new AbortController();
    const call = new CallSignal(guard.signal, run.signal);
    const merged = call.signal;
    const linked = new AbortController();
    call.link(linked);
    call.dispose();
    run.abort('late');
    expect(merged.aborted).toBe(false);
    expect(linked.signal.aborted).toBe(false);
    // Read after dispose: the guard's own signal, no new listener on the run's.
    expect(call.signal).toBe(merged);
    expect(new CallSignal(guard.signal, run.signal).signal.aborted).toBe(true);
  });

  it('a source already aborted aborts a link at once', () => {
    const run = new AbortController();
    run.abort('stopped before');
    const call = new CallSignal(new AbortController().signal, run.signal);
    const target = new AbortController();
    call.link(target);
    expect(target.signal.reason).toBe('stopped before');
    expect(call.signal.reason).toBe('stopped before');
  });

  it('a source given as a function is asked for its signal only when the signals are merged or linked', () => {
    let asked = 0;
    const run = new AbortController();
    const call = new CallSignal(new AbortController().signal, () => {
      asked++;
      return run.signal;
    });
    expect(asked).toBe(0);
    const s = call.signal;
    expect(asked).toBe(1);
    run.abort('run stopped');
    expect(s.reason).toBe('run stopped');
    call.dispose();
  });
});

describe('KS-14.1.3 a tool call linked to the guard operation itself, not to its signal', () => {
  const envs: KillSwitchEnv[] = [];
  afterEach(async () => {
    for (const e of envs.splice(0)) await e.close();
  });

  it('a halt mid-call aborts what the call linked in the turn the flip arrives, the caller gets KS_ABORTED, the ledger says aborted', async () => {
    const e = await killSwitchEnv();
    envs.push(e);
    const started = deferred();
    const upstream = new AbortController();
    let sawTurn: boolean | undefined;
    upstream.signal.addEventListener('abort', () => (sawTurn = e.turnedSinceArrival()));
    const effect = { runId: 'op-1', step: 'call-1', capability: 'crm.update' };
    const pending = e.guard[RUN_WITH_OPERATION](effect, (op) => {
      const call = new CallSignal(op, new AbortController().signal);
      call.link(upstream, { reason: () => 'cancelled upstream' });
      started.resolve();
      return new Promise<never>(() => undefined);
    }).catch((x: unknown) => x);
    await started.promise;
    const { seq } = await e.halt({ runId: 'op-1' });
    expect(upstream.signal.reason).toBe('cancelled upstream');
    expect(sawTurn).toBe(false);
    expect(await pending).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
    await e.guard.flush();
    const [entry] = await e.ledger.entries({ key: effectKey('op-1', 'call-1') });
    expect(entry?.history.map((x) => x.status)).toEqual(['intent', 'aborted']);
  });

  it('merged on read, it follows the operation and the others; after the call the operation signal is still readable', async () => {
    const e = await killSwitchEnv();
    envs.push(e);
    const run = new AbortController();
    let merged: AbortSignal | undefined;
    let opOf: { readonly signal: AbortSignal } | undefined;
    const value = await e.guard[RUN_WITH_OPERATION](
      {
        runId: 'op-2',
        step: 'call-1',
        capability: 'noop',
        result: { encode: (v) => v, decode: (v) => v as number },
      },
      async (op) => {
        opOf = op;
        const call = new CallSignal(op, run.signal);
        merged = call.signal;
        call.dispose();
        return 7;
      },
    );
    expect(value).toBe(7);
    run.abort('late');
    expect(merged?.aborted).toBe(false);
    expect(opOf?.signal.aborted).toBe(false);
    const [entry] = await e.ledger.entries({ key: effectKey('op-2', 'call-1') });
    expect(entry).toMatchObject({ status: 'landed', result: 7 });
  });

  it('a call to an operation that already stopped is aborted at once, by link and by read', () => {
    const stopped = {
      stopped: { error: 'halted before' },
      signal: AbortSignal.abort('halted before'),
      onStop: () => () => undefined,
    };
    const call = new CallSignal(stopped, new AbortController().signal);
    const target = new AbortController();
    call.link(target);
    expect(target.signal.reason).toBe('halted before');
    expect(call.signal.reason).toBe('halted before');
  });
});
