/**
 * The remote source's connection as a pure state machine: events in, the next state and one
 * action out; no timer, no socket.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConnectionState,
  MAX_RESUME_FAILURES,
  createConnection,
  isConnected,
  statusAfter,
  stepConnection,
  type Connection,
  type ConnectionAction,
  type ConnectionEvent,
} from '../../providers/remote/connection-state.js';

/** Runs `events` from `c`, returning the last state and every action, in order. */
function run(
  c: Connection,
  ...events: ConnectionEvent[]
): { c: Connection; actions: ConnectionAction[] } {
  const actions: ConnectionAction[] = [];
  for (const e of events) {
    const step = stepConnection(c, e);
    c = step.next;
    actions.push(step.action);
  }
  return { c, actions };
}

const START: ConnectionEvent = { type: 'start' };
const FAILED: ConnectionEvent = { type: 'failed' };
const RETRY: ConnectionEvent = { type: 'retry' };
const ANSWERED: ConnectionEvent = { type: 'answered' };
const SNAPSHOT: ConnectionEvent = { type: 'snapshot' };
const PROGRESSED: ConnectionEvent = { type: 'progressed' };

/** A started source that applied a snapshot on its first connection (to URL 0 of 2). */
function withState(): Connection {
  return run(createConnection(2), START, ANSWERED, SNAPSHOT, PROGRESSED).c;
}

describe('KS-6.3.5 a connection resumes by Last-Event-ID only with a state and no resync pending', () => {
  it('the first connection after start asks for a snapshot', () => {
    const { c, actions } = run(createConnection(2), START);
    expect(c.state).toBe(ConnectionState.REQUESTED);
    expect(c.resuming).toBe(false);
    expect(actions).toEqual([{ do: 'connect' }]);
  });

  it('after a snapshot was applied, the next connection resumes', () => {
    const { c } = run(withState(), FAILED, RETRY);
    expect(c.state).toBe(ConnectionState.REQUESTED);
    expect(c.resuming).toBe(true);
  });

  it('a start forgets the state and the resync of the previous run', () => {
    const stopped = run(withState(), { type: 'resync', reason: 'gap' }, { type: 'stop' }).c;
    const { c } = run(stopped, START);
    expect(c).toMatchObject({ hasState: false, resync: undefined, resuming: false });
  });
});

describe('KS-6.3.3 KS-6.3.9 a failure moves to the next URL and waits out a growing backoff', () => {
  it('waits with the attempt before the failure, with jitter, and wraps around the URLs', () => {
    const { c, actions } = run(withState(), FAILED, RETRY, FAILED, RETRY, FAILED);
    expect(actions.filter((a) => a.do === 'wait')).toEqual([
      { do: 'wait', attempt: 0, jitter: true },
      { do: 'wait', attempt: 1, jitter: true },
      { do: 'wait', attempt: 2, jitter: true },
    ]);
    expect(c.state).toBe(ConnectionState.WAITING);
    expect(c.urlIndex).toBe(1); // 0 -> 1 -> 0 -> 1
    expect(c.attempt).toBe(3);
  });

  it('a well-formed event resets the count', () => {
    const failedTwice = run(withState(), FAILED, RETRY, FAILED, RETRY).c;
    expect(failedTwice.attempt).toBe(2);
    expect(run(failedTwice, { type: 'received' }).c.attempt).toBe(0);
  });

  it('a failure while already waiting (an ack answer from another log) re-arms the one wait', () => {
    const waiting = run(withState(), FAILED).c;
    const { c, actions } = run(waiting, FAILED);
    expect(actions).toEqual([{ do: 'wait', attempt: 1, jitter: true }]);
    expect(c).toMatchObject({ state: ConnectionState.WAITING, urlIndex: 0, attempt: 2 });
  });
});

describe('KS-6.3.10 three resumed connections answered and failed without progress ask for a snapshot', () => {
  it('counts answered-then-failed replays and falls back to a snapshot at the limit', () => {
    let c = run(withState(), FAILED).c;
    for (let i = 0; i < MAX_RESUME_FAILURES; i++) {
      c = run(c, RETRY).c;
      expect(c.resuming).toBe(true);
      c = run(c, ANSWERED, FAILED).c;
    }
    expect(c.resumeFailures).toBe(MAX_RESUME_FAILURES);
    expect(run(c, RETRY).c.resuming).toBe(false);
  });

  it('a refused connection (never answered) and a failure while waiting do not count', () => {
    const { c } = run(withState(), FAILED, RETRY, FAILED, FAILED, RETRY, FAILED);
    expect(c.resumeFailures).toBe(0);
  });

  it('progress on a connection (a flip or a heartbeat) and a snapshot reset the count', () => {
    const twice = run(withState(), FAILED, RETRY, ANSWERED, FAILED, RETRY, ANSWERED, FAILED).c;
    expect(twice.resumeFailures).toBe(2);
    expect(run(twice, RETRY, ANSWERED, PROGRESSED).c.resumeFailures).toBe(0);
    expect(run(twice, RETRY, ANSWERED, SNAPSHOT).c.resumeFailures).toBe(0);
  });
});

describe('KS-6.3.2 KS-6.3.4 a resync reconnects for a snapshot on the same URL', () => {
  it('at once the first time, then after a backoff without jitter; the snapshot clears it', () => {
    const first = run(withState(), { type: 'resync', reason: 'gap' });
    expect(first.actions).toEqual([{ do: 'connect' }]);
    expect(first.c).toMatchObject({
      state: ConnectionState.REQUESTED,
      resync: 'gap',
      resuming: false,
      urlIndex: 0,
      attempt: 1,
    });
    const second = run(first.c, ANSWERED, { type: 'resync', reason: 'malformed snapshot' });
    expect(second.actions.at(-1)).toEqual({ do: 'wait', attempt: 1, jitter: false });
    expect(second.c).toMatchObject({ state: ConnectionState.WAITING, urlIndex: 0 });
    const retried = run(second.c, RETRY);
    expect(retried.c.resuming).toBe(false);
    expect(run(retried.c, ANSWERED, SNAPSHOT).c).toMatchObject({ resync: undefined, attempt: 0 });
  });
});

describe('KS-6.3.13 KS-6.3.8 retry only from a wait; stop from anywhere', () => {
  it('a retry while connected changes nothing', () => {
    const c = withState();
    expect(stepConnection(c, RETRY)).toEqual({ next: c, action: { do: 'none' } });
  });

  it('stop closes from every state, and nothing but start moves a stopped connection', () => {
    const states = [
      run(createConnection(1), START).c,
      withState(),
      run(withState(), FAILED).c,
      run(createConnection(1), START, ANSWERED).c,
    ];
    for (const s of states) {
      const { next, action } = stepConnection(s, { type: 'stop' });
      expect(next.state).toBe(ConnectionState.STOPPED);
      expect(action).toEqual({ do: 'close' });
      for (const e of [FAILED, RETRY, ANSWERED, PROGRESSED, SNAPSHOT]) {
        expect(stepConnection(next, e).action).toEqual({ do: 'none' });
        expect(stepConnection(next, e).next.state).toBe(ConnectionState.STOPPED);
      }
    }
  });
});

describe('KS-6.3.6 the status: connecting until fresh once, then open <-> stale; closed stays', () => {
  it('follows the verdicts', () => {
    expect(statusAfter('connecting', false)).toBe('connecting');
    expect(statusAfter('connecting', true)).toBe('open');
    expect(statusAfter('open', false)).toBe('stale');
    expect(statusAfter('stale', true)).toBe('open');
    expect(statusAfter('stale', false)).toBe('stale');
    expect(statusAfter('closed', true)).toBe('closed');
  });
});

describe('KS-6.3.3 KS-6.3.5 KS-6.3.10 invariants over random event sequences', () => {
  const event: fc.Arbitrary<ConnectionEvent> = fc.oneof(
    fc.constantFrom<ConnectionEvent>(
      START,
      { type: 'stop' },
      RETRY,
      ANSWERED,
      { type: 'received' },
      SNAPSHOT,
      PROGRESSED,
      FAILED,
    ),
    fc
      .string({ minLength: 1, maxLength: 5 })
      .map((reason) => ({ type: 'resync', reason }) as const),
  );

  it('actions match the states they lead to, and the counters stay in range (seed printed on failure)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(event, { maxLength: 60 }), (n, evs) => {
        let c = createConnection(n);
        for (const e of evs) {
          const { next, action } = stepConnection(c, e);
          // One stream at a time: a stream is opened exactly when the state becomes requested
          // from elsewhere, a wait is armed exactly on entering (or re-entering) waiting.
          if (action.do === 'connect') expect(next.state).toBe(ConnectionState.REQUESTED);
          if (action.do === 'wait') {
            expect(next.state).toBe(ConnectionState.WAITING);
            expect(action.attempt).toBe(c.attempt);
          }
          if (action.do === 'close') expect(next.state).toBe(ConnectionState.STOPPED);
          if (action.do === 'none' && next.state !== c.state) {
            // only the progress of an open stream moves the state without an action
            expect(isConnected(c) && isConnected(next)).toBe(true);
          }
          expect(next.urlIndex).toBeGreaterThanOrEqual(0);
          expect(next.urlIndex).toBeLessThan(n);
          expect(next.resumeFailures).toBeLessThanOrEqual(MAX_RESUME_FAILURES);
          if (next.resuming && action.do === 'connect') {
            expect(next.hasState).toBe(true);
            expect(next.resync).toBeUndefined();
            expect(next.resumeFailures).toBeLessThan(MAX_RESUME_FAILURES);
          }
          c = next;
        }
      }),
    );
  });
});
