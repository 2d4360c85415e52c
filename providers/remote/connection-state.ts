import { SourceStatus } from '../../src/source/flip-source.js';

/**
 * The remote source's stream connection as one named state machine: a pure function from a
 * state and an event to the next state and the one thing to do (open a stream, wait out a
 * backoff, close). The source performs the action; everything that decides when to connect,
 * where, and whether to resume or ask for a snapshot lives here and is tested without timers or
 * sockets. KS-6.3.2, KS-6.3.3, KS-6.3.5, KS-6.3.9, KS-6.3.10, KS-6.3.13
 *
 * ```
 * stopped --start--> requested --answered--> answered --progressed--> progressed
 *    ^                   |  ^                    |                        |
 *    |                   |  +------retry------ waiting <-------failed------+
 *   stop (from any)      +---------failed-------->^ (resync: waiting, or requested at once)
 * ```
 */
export const ConnectionState = {
  /** Not started, or stopped: no stream, no timer. */
  STOPPED: 'stopped',
  /** Waiting out a backoff before the next connection attempt. */
  WAITING: 'waiting',
  /** A stream was requested; nothing answered yet. */
  REQUESTED: 'requested',
  /** The TCP connection is up (or the injected fetch answered); nothing applied yet. */
  ANSWERED: 'answered',
  /** Something was applied on this connection, or a heartbeat arrived on it. */
  PROGRESSED: 'progressed',
} as const;
/** A {@link ConnectionState} value. */
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/** Resumed connections that may fail in a row before the source asks for a snapshot. KS-6.3.10 */
export const MAX_RESUME_FAILURES = 3;

/** The whole connection state: the named state and the counters the transitions read. */
export interface Connection {
  /** Where the connection is. */
  readonly state: ConnectionState;
  /** Whether a snapshot was applied since start (there is a state to resume from). */
  readonly hasState: boolean;
  /** Why a snapshot is awaited (a gap, a malformed event, a failed check); else undefined. KS-6.3.2 */
  readonly resync: string | undefined;
  /** Whether the current (or last) connection resumes by `Last-Event-ID` instead of asking for a snapshot. KS-6.3.5 */
  readonly resuming: boolean;
  /** Consecutive failures since the last valid event: the backoff's attempt. KS-6.3.9 */
  readonly attempt: number;
  /** Consecutive resumed connections that were answered and failed without progress. KS-6.3.10 */
  readonly resumeFailures: number;
  /** Index of the URL of the current (or next) connection, in `[0, urlCount)`. KS-6.3.3 */
  readonly urlIndex: number;
  /** How many URLs the source has (>= 1). */
  readonly urlCount: number;
}

/** What happened to the connection. */
export type ConnectionEvent =
  /** `start()`: forget the resync and the applied state, connect for a snapshot. */
  | { readonly type: 'start' }
  /** `stop()`. */
  | { readonly type: 'stop' }
  /** The backoff ran out, or that URL just answered an acknowledgement (KS-6.3.13). */
  | { readonly type: 'retry' }
  /** The stream request got a TCP connection (or the injected fetch answered). */
  | { readonly type: 'answered' }
  /** A well-formed event arrived: the backoff starts over (KS-6.3.9). */
  | { readonly type: 'received' }
  /** A snapshot was applied. */
  | { readonly type: 'snapshot' }
  /** A flip was applied, or a heartbeat accepted, on this connection. */
  | { readonly type: 'progressed' }
  /** The stream failed, was refused, or showed a log that does not continue ours. */
  | { readonly type: 'failed' }
  /** The state cannot be continued from this stream: fetch a snapshot. KS-6.3.2, KS-6.3.4 */
  | { readonly type: 'resync'; readonly reason: string };

/** What the source must do after a transition. */
export type ConnectionAction =
  /** Nothing. */
  | { readonly do: 'none' }
  /** Drop any stream and open one to `urlIndex`: resuming, or asking for a snapshot. */
  | { readonly do: 'connect' }
  /**
   * Drop any stream and (re)arm the one reconnection timer for the backoff of `attempt`, with
   * or without jitter; when it fires, send `retry`.
   */
  | { readonly do: 'wait'; readonly attempt: number; readonly jitter: boolean }
  /** Drop the stream and the reconnection timer. */
  | { readonly do: 'close' };

/** A transition's result. */
export interface ConnectionStep {
  readonly next: Connection;
  readonly action: ConnectionAction;
}

const NONE: ConnectionAction = { do: 'none' };
const CONNECT: ConnectionAction = { do: 'connect' };

/**
 * The connection of a source with `urlCount` URLs before its first start.
 *
 * @example createConnection(2) // { state: 'stopped', urlIndex: 0, attempt: 0, ... }
 */
export function createConnection(urlCount: number): Connection {
  return {
    state: ConnectionState.STOPPED,
    hasState: false,
    resync: undefined,
    resuming: false,
    attempt: 0,
    resumeFailures: 0,
    urlIndex: 0,
    urlCount: Math.max(1, urlCount),
  };
}

/** Whether a stream is open (requested, answered or progressed). */
export function isConnected(c: Connection): boolean {
  return (
    c.state === ConnectionState.REQUESTED ||
    c.state === ConnectionState.ANSWERED ||
    c.state === ConnectionState.PROGRESSED
  );
}

/**
 * A new connection attempt: it resumes by `Last-Event-ID` when there is a state, no snapshot is
 * awaited and fewer than MAX_RESUME_FAILURES resumes failed in a row; else it asks for a
 * snapshot. KS-6.3.5, KS-6.3.10
 */
function requested(c: Connection): Connection {
  const resuming = c.hasState && c.resync === undefined && c.resumeFailures < MAX_RESUME_FAILURES;
  return changed(c, { state: ConnectionState.REQUESTED, resuming });
}

/**
 * `c` with the fields of `patch` replaced, built as one object literal with every field. Not
 * `{ ...c, ...patch }`: on Node 20 a spread followed by overriding members takes V8's slow path
 * (~1.5 µs a step, against ~0.04 µs for a literal) and leaves an object in dictionary mode that
 * every later read and spread pays for again; every source steps twice per flip and once per
 * heartbeat (issue 19: the largest single item of a subscriber's CPU per flip at 1,000 sources).
 */
function changed(c: Connection, patch: Partial<Connection>): Connection {
  return {
    state: patch.state ?? c.state,
    hasState: patch.hasState ?? c.hasState,
    resync: 'resync' in patch ? patch.resync : c.resync,
    resuming: patch.resuming ?? c.resuming,
    attempt: patch.attempt ?? c.attempt,
    resumeFailures: patch.resumeFailures ?? c.resumeFailures,
    urlIndex: patch.urlIndex ?? c.urlIndex,
    urlCount: patch.urlCount ?? c.urlCount,
  };
}

/**
 * The next connection state and what to do, for `event` in state `c`. Events that do not apply
 * in a state (an answer after the stream was dropped, a retry while connected) change nothing.
 *
 * @example
 * ```ts
 * const { next, action } = stepConnection(c, { type: 'failed' });
 * // next.state === 'waiting', action: { do: 'wait', attempt: c.attempt, jitter: true }
 * ```
 */
export function stepConnection(c: Connection, event: ConnectionEvent): ConnectionStep {
  const connected = isConnected(c);
  switch (event.type) {
    case 'start':
      if (c.state !== ConnectionState.STOPPED) return { next: c, action: NONE };
      return {
        next: requested(changed(c, { hasState: false, resync: undefined })),
        action: CONNECT,
      };
    case 'stop':
      if (c.state === ConnectionState.STOPPED) return { next: c, action: NONE };
      return { next: changed(c, { state: ConnectionState.STOPPED }), action: { do: 'close' } };
    case 'retry':
      if (c.state !== ConnectionState.WAITING) return { next: c, action: NONE };
      return { next: requested(c), action: CONNECT };
    case 'answered':
      if (c.state !== ConnectionState.REQUESTED) return { next: c, action: NONE };
      return { next: changed(c, { state: ConnectionState.ANSWERED }), action: NONE };
    case 'received':
      if (!connected || c.attempt === 0) return { next: c, action: NONE };
      return { next: changed(c, { attempt: 0 }), action: NONE };
    case 'snapshot':
      if (!connected) return { next: c, action: NONE };
      return {
        next: changed(c, { hasState: true, resync: undefined, attempt: 0, resumeFailures: 0 }),
        action: NONE,
      };
    case 'progressed':
      if (!connected) return { next: c, action: NONE };
      // Every flip and heartbeat of a stream that already progressed: nothing changes.
      if (c.state === ConnectionState.PROGRESSED && c.attempt === 0 && c.resumeFailures === 0)
        return { next: c, action: NONE };
      return {
        next: changed(c, { state: ConnectionState.PROGRESSED, attempt: 0, resumeFailures: 0 }),
        action: NONE,
      };
    case 'failed': {
      if (c.state === ConnectionState.STOPPED) return { next: c, action: NONE };
      // Only a replay on a connection that was answered and then failed before any progress
      // counts: a refused connection says nothing about the replay (KS-6.3.10). A failure
      // while already waiting (an acknowledgement answer from another log) moves on to the
      // next URL and re-arms the one wait.
      const replayFailed = c.resuming && c.state === ConnectionState.ANSWERED;
      return {
        next: changed(c, {
          state: ConnectionState.WAITING,
          urlIndex: (c.urlIndex + 1) % c.urlCount,
          attempt: c.attempt + 1,
          resumeFailures: c.resumeFailures + (replayFailed ? 1 : 0),
        }),
        action: { do: 'wait', attempt: c.attempt, jitter: true },
      };
    }
    case 'resync': {
      if (c.state === ConnectionState.STOPPED) return { next: c, action: NONE };
      const awaiting = changed(c, { resync: event.reason });
      if (!connected) return { next: awaiting, action: NONE };
      // Not a transport failure: reconnect on the same URL, at once the first time, but count
      // it, so a server that keeps sending bad events is not hammered.
      const counted = changed(awaiting, { attempt: c.attempt + 1 });
      if (c.attempt === 0) return { next: requested(counted), action: CONNECT };
      return {
        next: changed(counted, { state: ConnectionState.WAITING }),
        action: { do: 'wait', attempt: c.attempt, jitter: false },
      };
    }
  }
}

/**
 * The source's status after a freshness verdict (KS-6.3.6): `open` while fresh; when not fresh,
 * `connecting` until it was fresh once, `stale` after. `closed` stays closed (only `start()`
 * leaves it, to `connecting`).
 *
 * @param previous - the status before the verdict
 * @example statusAfter('connecting', false) // 'connecting'; statusAfter('open', false) // 'stale'
 */
export function statusAfter(previous: SourceStatus, fresh: boolean): SourceStatus {
  if (previous === SourceStatus.CLOSED) return SourceStatus.CLOSED;
  if (fresh) return SourceStatus.OPEN;
  return previous === SourceStatus.CONNECTING ? SourceStatus.CONNECTING : SourceStatus.STALE;
}
