import { EventSource, type FetchLike, type FetchLikeResponse } from 'eventsource';
import { InvalidOptionError } from '../../src/errors.js';
import { delay } from '../../src/internal/backoff.js';
import { isClock, systemClock, type Clock } from '../../src/internal/clock.js';
import { exerciseFlipPath, warmUpWireRecords } from '../../src/model/warm-flip-path.js';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  parseFlipRecord,
  recordJson,
  verifyRecordHash,
  type FlipRecord,
} from '../../src/model/flip-record.js';
import { KillState, type KillSnapshot } from '../../src/model/kill-state.js';
import { matchActivity } from '../../src/guard/worker-activity.js';
import {
  ackAnswerSchema,
  MAX_MATCH_REPORTS,
  MAX_UNENFORCED,
  type MatchReport,
} from '../../src/protocol/acks.js';
import { ApiPath, LAST_EVENT_ID_HEADER, StreamQuery } from '../../src/protocol/paths.js';
import {
  heartbeatSchema,
  splitSnapshotData,
  StreamEvent,
} from '../../src/protocol/stream-events.js';
import {
  LogDivergedError,
  MAX_LOG_ID_LENGTH,
  describePosition,
  divergence,
  type LogPosition,
} from '../../src/protocol/log-position.js';
import { isIdText } from '../../src/protocol/text.js';
import { StreamSignatures, publicKeyRingOf } from './stream-signatures.js';
import {
  SourceStatus,
  type FlipSource,
  type FlipSourceListener,
} from '../../src/source/flip-source.js';
import { AckChannel, ackChannelFor, type AckAnswerText, type AckMember } from './ack-channel.js';
import type { GatewayReport } from '../../src/protocol/acks.js';
import {
  answerTrouble,
  httpTrouble,
  inert,
  isEventStream,
  networkTrouble,
  readRefusal,
  type ConnectionTrouble,
  type StreamAnswer,
} from './connection-trouble.js';
import {
  ConnectionState,
  createConnection,
  stepConnection,
  statusAfter,
  type Connection,
  type ConnectionAction,
  type ConnectionEvent,
} from './connection-state.js';
import { freshness, renewedLease } from './lease.js';
import { nodeStreamFetch } from './node-stream-fetch.js';
import { tlsFetch } from '../../src/client/tls-fetch.js';
import { intOption } from '../../src/internal/int-option.js';

/** Reconnection policy. KS-6.3.3 */
export interface RemoteBackoffOptions {
  /** First delay after a failure. @default 100 (ms) */
  readonly initialMs?: number;
  /** Ceiling of the delay. @default 5000 (ms) */
  readonly maxMs?: number;
  /** Growth per consecutive failure. @default 2 */
  readonly factor?: number;
  /** Fraction of the delay that is random (0 = none, 1 = full jitter). @default 0.5 */
  readonly jitter?: number;
  /** Source of randomness in [0, 1). @default Math.random */
  readonly random?: () => number;
}

/** Options of {@link RemoteFlipSource}. */
export interface RemoteFlipSourceOptions {
  /** Control plane base URLs (`http://127.0.0.1:7070`); the source moves to the next on failure. */
  readonly urls: readonly string[];
  /** Bearer token sent on the stream and on acknowledgements. @default none */
  readonly token?: string | undefined;
  /** This worker's id (sent as `worker` and in acks). */
  readonly workerId: string;
  /** This worker's release (sent as `release`). @default none */
  readonly release?: string | undefined;
  /**
   * Lease length: the source fails closed when no acknowledgement renewed it, or nothing arrived
   * on the stream, for this long. The server's value is used when it is shorter. @default 3000 (ms)
   */
  readonly staleAfterMs?: number;
  /** Acknowledge at least this often. Must be below `staleAfterMs`. @default 1000 (ms) */
  readonly heartbeatMs?: number;
  /** Reconnection backoff. */
  readonly backoff?: RemoteBackoffOptions;
  /** fetch used by the stream and acknowledgements (tests inject faults). @default node:http (own sockets, released on stop) */
  readonly fetch?: typeof globalThis.fetch;
  /**
   * For an https control plane whose certificate a CA of yours signs (KS-17.10.1): the stream and
   * acknowledgements go through `tlsFetch({ ca })`, which accepts only certificates that CA signs.
   * Ignored when `fetch` is given. `NODE_EXTRA_CA_CERTS` works too, without this.
   */
  readonly tls?: { readonly ca: string | Buffer | readonly (string | Buffer)[] };
  /**
   * Clock and timers. The lease and stale detection read its monotonic `now()` only, so a step of
   * the wall clock does not move them (KS-6.3.11). @default systemClock
   */
  readonly clock?: Clock;
  /**
   * Where to report why the source is not fresh: the first failure and each change of cause (a
   * refused token, a refused connection, not a killswitch server, a log that went backwards), and
   * the recovery after one, never each retry. KS-16.2.1
   * @default console.warn, prefixed `[kill-switch]`
   */
  readonly logger?: { warn(message: string): void };
  /**
   * The log this worker must follow (KS-6.4.2): a control plane serving another log is refused
   * from the first contact. @default the log of the first snapshot applied (from then on the
   * source refuses any other)
   */
  readonly logId?: string;
  /**
   * Send this source's acknowledgements in one batch with the other sources of this process that
   * acknowledge to the same URL with the same token, fetch and clock (KS-6.2.6); `false` gives it
   * a channel of its own. @default true
   */
  readonly shareAcks?: boolean;
  /**
   * The control plane's public signing key(s), PEM (KS-17.7.9): every snapshot and record on the
   * stream must then carry a signature that verifies under one of them, or the source fails
   * closed naming the record (stream-signatures.ts). @default signatures are not checked
   */
  readonly publicKeys?: string | readonly string[];
  /**
   * A gateway's report of its seams (KS-15.5.3), asked for each acknowledgement and sent with it
   * (the console shows the member as a gateway, with its calls in flight per seam). A control
   * plane that refuses the field (an older one) gets acknowledgements without it from then on.
   * @default none (an ordinary worker)
   */
  readonly gatewayReport?: () => GatewayReport | undefined;
}

/** An acknowledgement answer as {@link ackAnswerSchema} returns it. */
export type AckAnswer = ReturnType<typeof ackAnswerSchema.parse>;
const HEX64_RE = /^[0-9a-f]{64}$/;

/**
 * The fast path of the acknowledgement answer's check: the answer exactly as
 * `ackAnswerSchema.safeParse(raw).data` would give it (its fields in the schema's order, unknown
 * ones left out) when it certainly satisfies the schema, else undefined (zod then decides). At
 * least as strict as the schema (test/remote/ack-answer-check.test.ts checks the two agree). A
 * process checks one answer per flip, after its fan-out, when zod's code is cold: about 100 µs
 * on the shared cores while the other processes are still applying the flip (issue 19); this is
 * a few.
 */
export function fastAckAnswer(raw: unknown): AckAnswer | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  if (Object.getPrototypeOf(raw) !== Object.prototype) return undefined;
  const { head, serverTime, staleAfterMs, logId, hash, sig } = raw as Record<string, unknown>;
  if (typeof head !== 'number' || !Number.isSafeInteger(head) || head < 0) return undefined;
  const label = typeof serverTime === 'string' && serverTime.length <= 64;
  if (!label && (typeof serverTime !== 'number' || !Number.isFinite(serverTime))) return undefined;
  const at = serverTime as string | number;
  if (typeof staleAfterMs !== 'number' || !Number.isSafeInteger(staleAfterMs) || staleAfterMs < 1)
    return undefined;
  if (!isIdText(logId, MAX_LOG_ID_LENGTH)) return undefined;
  if (typeof hash !== 'string' || !HEX64_RE.test(hash)) return undefined;
  if (sig === undefined) return { head, serverTime: at, staleAfterMs, logId, hash };
  if (typeof sig !== 'string' || sig.length < 1 || sig.length > 256) return undefined;
  return { head, serverTime: at, staleAfterMs, logId, hash, sig };
}

let lastAckAnswer: { text: string; answer: AckAnswer | undefined } | undefined;

/**
 * The acknowledgement answer in `text`, checked; undefined when it is not a valid answer. The
 * members of a batch (KS-6.2.6) all receive the same answer text: it is checked once (a pure
 * function of the text, so the last result is reused).
 */
export function parseAckAnswer(text: string): AckAnswer | undefined {
  if (lastAckAnswer?.text === text) return lastAckAnswer.answer;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  let answer = fastAckAnswer(raw);
  if (answer === undefined) {
    const r = ackAnswerSchema.safeParse(raw);
    answer = r.success ? r.data : undefined;
  }
  lastAckAnswer = { text, answer };
  return answer;
}

/**
 * Parsing and hashing are pure functions of the event bytes, and every subscriber in a process
 * receives the same bytes; caching the validated result lets 1,000 subscribers in one process
 * pay for one validation instead of 1,000. Only successful parses are cached; the hash check of
 * each is made once, when first needed (after a halt is applied, before a resume is).
 */
const parsedRecords = new Map<string, WireRecord>();
const PARSE_CACHE_SIZE = 256;

let warmed = false;

/**
 * zod compiles a schema on its first parse and V8 optimises hot code only after many calls; a
 * worker sees its first flip after a long idle time, so without this the first (most important)
 * flip pays for compilation. Once per process, at start: about 200 validations (~10 ms).
 */
/** The halt path is run on a private state at most this often per process (see keepFlipPathWarm). */
const KEEP_WARM_EVERY_MS = 5000;
let lastWarmAt = Number.NEGATIVE_INFINITY;

/**
 * Keeps the code a flip runs compiled while the worker idles: on a heartbeat, at most every
 * KEEP_WARM_EVERY_MS per process, the halt path runs on a private state (exerciseFlipPath).
 * Without it the first flip after a long idle finds that code flushed and compiles it on the way
 * to stopping (issue 19: the drill's first lever was the slow one).
 */
function keepFlipPathWarm(now: number): void {
  if (now - lastWarmAt < KEEP_WARM_EVERY_MS) return;
  lastWarmAt = now;
  exerciseFlipPath();
}

function warmValidation(): void {
  if (warmed) return;
  warmed = true;
  const record = chainRecord(
    parseFlipInput({
      actor: 'warm-up',
      action: 'halt',
      selector: { tenant: 'warm-up' },
      reason: 'warm-up',
    }),
    { seq: 0, hash: GENESIS_HASH },
    new Date(0),
  );
  const data = JSON.stringify(record);
  for (let i = 0; i < 200; i++) verifyRecordHash(parseFlipRecord(JSON.parse(data)));
  for (let i = 0; i < 20; i++) exerciseFlipPath();
  void exerciseSourcePath().catch(() => undefined);
}

/** A heartbeat as a worker reads it: its `at` label may be an older server's epoch ms. */
type ReceivedHeartbeat = ReturnType<typeof heartbeatSchema.parse>;

/** The last heartbeat checked: every subscriber of the process receives the same bytes each beat. */
let lastHeartbeat: { data: string; beat: ReceivedHeartbeat | undefined } | undefined;

/** The heartbeat's data when valid, else undefined. */
function parseHeartbeat(data: string): ReceivedHeartbeat | undefined {
  if (lastHeartbeat !== undefined && lastHeartbeat.data === data) return lastHeartbeat.beat;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    parsed = undefined;
  }
  const r = heartbeatSchema.safeParse(parsed);
  const beat = r.success ? r.data : undefined;
  lastHeartbeat = { data, beat };
  return beat;
}

const defaultLogger = { warn: (m: string) => console.warn(`[kill-switch] ${m}`) };

/** The last halt's match report: every source of the process applies the same record in turn. */
let lastMatch: { record: FlipRecord; report: MatchReport | undefined } | undefined;

/** What a halt matched in this process when applied (KS-16.4.1); undefined when it cannot say. */
function matchReportFor(record: FlipRecord): MatchReport | undefined {
  if (lastMatch?.record === record) return lastMatch.report;
  const m = matchActivity(record.selector);
  const report = m === undefined ? undefined : { seq: record.seq, ...m };
  lastMatch = { record, report };
  return report;
}

/** The sources of this process whose halt waits for its check (KS-6.3.14), in arrival order. */
let haltChecks: (() => void)[] = [];

/**
 * Runs the waiting halt checks of this process's sources: every one of them, even when a
 * listener throws during one (its error is thrown once all ran), so no source's halt stays
 * unchecked past this turn (KS-6.3.14).
 */
function runHaltChecks(): void {
  const due = haltChecks;
  haltChecks = [];
  let failure: { error: unknown } | undefined;
  for (const check of due) {
    try {
      check();
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure !== undefined) throw failure.error;
}

/**
 * KS-6.3.14 the check of a halt applied before it, in the check phase of this turn of the event
 * loop: once per process (one setImmediate), after every source whose socket had the halt in this
 * turn applied it.
 */
function queueHaltCheck(check: () => void): void {
  if (haltChecks.length === 0) setImmediate(runHaltChecks);
  haltChecks.push(check);
}

/** A flip event's record, shape-checked; its hash check is done (once) when asked. */
interface WireRecord {
  readonly record: FlipRecord;
  /** Whether the hash matches the content; undefined until checked. */
  hashOk: boolean | undefined;
}

/** The last event parsed: every subscriber of the process receives it in turn. */
let lastParsed: { data: string; parsed: WireRecord } | undefined;

/** The record's shape, checked once per event bytes per process (not its hash). */
function parseWireRecord(data: string): WireRecord {
  if (lastParsed !== undefined && lastParsed.data === data) return lastParsed.parsed;
  const parsed = parseWireRecordCached(data);
  lastParsed = { data, parsed };
  return parsed;
}

function parseWireRecordCached(data: string): WireRecord {
  const hit = parsedRecords.get(data);
  if (hit) return hit;
  const parsed: WireRecord = { record: parseFlipRecord(JSON.parse(data)), hashOk: undefined };
  if (parsedRecords.size >= PARSE_CACHE_SIZE) {
    const oldest = parsedRecords.keys().next();
    if (!oldest.done) parsedRecords.delete(oldest.value);
  }
  parsedRecords.set(data, parsed);
  return parsed;
}

/** Whether the record's hash matches its content, computed once per event bytes per process. */
function hashMatches(parsed: WireRecord): boolean {
  if (parsed.hashOk === undefined) parsed.hashOk = verifyRecordHash(parsed.record);
  return parsed.hashOk;
}

/**
 * A flip source that follows a control plane over SSE (`GET /v1/stream`) with the `eventsource`
 * package, applies flips strictly in seq order, acknowledges them (`POST /v1/acks`) and keeps a
 * lease that fails it closed when the control plane goes silent. KS-6.3
 *
 * Several sources in one process (one per tenant or queue, say) share one acknowledgement channel
 * per control plane URL and token: their acks go in one batched request (KS-6.2.6), while each
 * keeps its own lease. Every applied record is validated and hash-checked; the result is cached
 * by the event's bytes, so the sources of a process pay for one validation per record.
 *
 * States: `connecting` (no state yet) -> `open` (state applied and lease valid) <-> `stale`
 * (lease ran out, stream silent, or resynchronising) -> `closed` (stopped). Only `open` is
 * fresh; the provider answers halted in every other state.
 *
 * @example
 * ```ts
 * const source = new RemoteFlipSource({ urls: ['http://127.0.0.1:7070'], token, workerId: 'w1' });
 * const provider = new KillSwitchProvider({ source });
 * ```
 */
export class RemoteFlipSource implements FlipSource {
  readonly name: string;
  readonly #urls: readonly string[];
  readonly #token: string | undefined;
  readonly #workerId: string;
  readonly #release: string | undefined;
  readonly #staleAfterMs: number;
  readonly #heartbeatMs: number;
  readonly #backoff: Required<RemoteBackoffOptions>;
  readonly #fetch: typeof globalThis.fetch | undefined;
  readonly #clock: Clock;
  readonly #logger: { warn(message: string): void };
  /** KS-17.7.9 the stream's signatures, checked when `publicKeys` is given. */
  readonly #signatures: StreamSignatures | undefined;

  #listener: FlipSourceListener | undefined;
  /** The last cause of trouble (cleared when fresh again); it explains the status. KS-16.2.2 */
  #trouble: ConnectionTrouble | undefined;
  /**
   * The key of the stream's cause last logged, and of the acknowledgements' (`ack:…`): each side
   * logs a cause once, until it changes, so a control plane that refuses both the stream and the
   * acks is not logged on every alternation between them. KS-16.2.1
   */
  #loggedKey: string | undefined;
  #loggedAckKey: string | undefined;
  /** What the current connection's stream request answered. */
  #answer: StreamAnswer | undefined;
  /** Match reports of halts applied, sent with the next acknowledgement. KS-16.4.1 */
  #matchReports: MatchReport[] = [];
  /** What the listener was last told (KS-6.3.6); moved by statusAfter in #refresh. */
  #status: SourceStatus = SourceStatus.CLOSED;
  #statusDetail = '';

  /** Applied state: the log, seq and hash of the last record applied; `undefined` before any snapshot. */
  #applied: LogPosition | undefined;
  /** The log this source follows: the `logId` option, else the first snapshot's. KS-6.4.2 */
  #logId: string | undefined;
  readonly #expectedLogId: string | undefined;
  /** KS-6.5.1 flips this enforcement point cannot enforce, by seq, with the reason. */
  readonly #unenforced = new Map<number, string>();
  /**
   * Set when a control plane served a log that does not continue the applied one (another log,
   * behind, forked): the source fails closed naming both sides until a connection shows a log
   * that does. KS-6.4.2
   */
  #diverged: LogDivergedError | undefined;
  /**
   * The stream connection (stopped, waiting, requested, answered, progressed), with the resync
   * awaited and the backoff and resume counters; moved only by #step (connection-state.ts).
   */
  #conn: Connection;
  /** The open stream: set exactly while #conn is requested, answered or progressed. */
  #es: EventSource | undefined;
  /** Bumped whenever a stream is dropped, so its late events are ignored. */
  #generation = 0;
  /** The backoff's timer: set exactly while #conn is waiting. */
  #reconnectTimer: unknown;

  #leaseUntil = Number.NEGATIVE_INFINITY;
  #lastReceived = Number.NEGATIVE_INFINITY;
  #deadlineTimer: unknown;
  /** When #deadlineTimer fires (our clock). */
  #deadlineAt = Number.POSITIVE_INFINITY;
  #ackTimer: unknown;
  readonly #shareAcks: boolean;
  /** KS-15.5.3 the gateway's report; dropped when the control plane refuses the field. */
  #gatewayReport: (() => GatewayReport | undefined) | undefined;
  /** Where acknowledgements go (shared per process by default); set while started. */
  #ackChannel: AckChannel | undefined;
  readonly #ackMember: AckMember;
  /**
   * KS-6.3.14 a halt told to the listener (and in #applied) whose check waits for the check
   * phase: the position before it, which a failed check restores, and its match report.
   */
  #unchecked:
    { parsed: WireRecord; before: LogPosition; report: MatchReport | undefined } | undefined;

  /**
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for bad options
   */
  constructor(options: RemoteFlipSourceOptions) {
    const o = options as RemoteFlipSourceOptions | undefined;
    if (!o || typeof o !== 'object') throw new InvalidOptionError('options', 'an object', o);
    if (!Array.isArray(o.urls) || o.urls.length === 0) {
      throw new InvalidOptionError('urls', 'a non-empty array of http(s) URLs', o.urls);
    }
    for (const u of o.urls) {
      let ok = false;
      try {
        const p = new URL(u);
        ok = p.protocol === 'http:' || p.protocol === 'https:';
      } catch {
        ok = false;
      }
      if (!ok) throw new InvalidOptionError('urls', 'http(s) URLs', u);
    }
    if (typeof o.workerId !== 'string' || o.workerId.trim() === '') {
      throw new InvalidOptionError('workerId', 'a non-empty string', o.workerId);
    }
    if (o.token !== undefined && (typeof o.token !== 'string' || o.token === '')) {
      throw new InvalidOptionError('token', 'a non-empty string', o.token);
    }
    if (o.release !== undefined && (typeof o.release !== 'string' || o.release === '')) {
      throw new InvalidOptionError('release', 'a non-empty string', o.release);
    }
    if (o.staleAfterMs !== undefined) intOption('staleAfterMs', o.staleAfterMs, 1);
    if (o.heartbeatMs !== undefined) intOption('heartbeatMs', o.heartbeatMs, 1);
    const staleAfterMs = o.staleAfterMs ?? 3000;
    const heartbeatMs = o.heartbeatMs ?? 1000;
    if (heartbeatMs >= staleAfterMs) {
      throw new InvalidOptionError(
        'heartbeatMs',
        `less than staleAfterMs (${staleAfterMs})`,
        heartbeatMs,
      );
    }
    const b = o.backoff ?? {};
    if (b.initialMs !== undefined) intOption('backoff.initialMs', b.initialMs, 1);
    if (b.maxMs !== undefined) intOption('backoff.maxMs', b.maxMs, 1);
    if (b.factor !== undefined && !(b.factor >= 1)) {
      throw new InvalidOptionError('backoff.factor', 'a number >= 1', b.factor);
    }
    if (b.jitter !== undefined && !(b.jitter >= 0 && b.jitter <= 1)) {
      throw new InvalidOptionError('backoff.jitter', 'a number in [0, 1]', b.jitter);
    }
    if (o.fetch !== undefined && typeof o.fetch !== 'function') {
      throw new InvalidOptionError('fetch', 'a function', o.fetch);
    }
    if (o.clock !== undefined && !isClock(o.clock)) {
      throw new InvalidOptionError(
        'clock',
        'a Clock (now, wallNow, setTimeout, clearTimeout)',
        o.clock,
      );
    }
    if (o.shareAcks !== undefined && typeof o.shareAcks !== 'boolean') {
      throw new InvalidOptionError('shareAcks', 'a boolean', o.shareAcks);
    }
    this.#urls = o.urls.map((u) => u.replace(/\/+$/, ''));
    this.#token = o.token;
    this.#workerId = o.workerId;
    this.#release = o.release;
    this.#staleAfterMs = staleAfterMs;
    this.#heartbeatMs = heartbeatMs;
    this.#backoff = {
      initialMs: b.initialMs ?? 100,
      maxMs: b.maxMs ?? 5000,
      factor: b.factor ?? 2,
      jitter: b.jitter ?? 0.5,
      random: b.random ?? Math.random,
    };
    this.#fetch = o.fetch ?? (o.tls === undefined ? undefined : tlsFetch({ ca: o.tls.ca }));
    this.#clock = o.clock ?? systemClock;
    this.#logger = o.logger ?? defaultLogger;
    this.#shareAcks = o.shareAcks ?? true;
    if (o.gatewayReport !== undefined && typeof o.gatewayReport !== 'function')
      throw new InvalidOptionError('gatewayReport', 'a function', o.gatewayReport);
    this.#gatewayReport = o.gatewayReport;
    this.#signatures =
      o.publicKeys === undefined ? undefined : new StreamSignatures(publicKeyRingOf(o.publicKeys));
    if (o.logId !== undefined && !isIdText(o.logId, MAX_LOG_ID_LENGTH)) {
      throw new InvalidOptionError('logId', 'a log id (letters, digits, ._:@/+=-)', o.logId);
    }
    this.#expectedLogId = o.logId;
    this.#conn = createConnection(this.#urls.length);
    this.name = `remote:${this.#urls.join(',')}`;
    this.#ackMember = {
      workerId: this.#workerId,
      release: this.#release,
      staleAfterMs: this.#staleAfterMs,
      clock: this.#clock,
      signedAnswers: this.#signatures !== undefined,
      toAck: () => {
        // KS-6.3.14 never an unchecked halt: checked now (a failed check fails closed, and the
        // position before it is acknowledged, as it would have been).
        if (this.#unchecked !== undefined) this.#settle();
        if (this.#stopped || this.#applied === undefined) return undefined;
        if (this.#unenforced.size === 0) return this.#applied;
        const unenforced = [...this.#unenforced]
          .filter(([seq]) => seq <= this.#applied!.seq)
          .map(([seq, reason]) => ({ seq, reason }));
        return unenforced.length === 0 ? this.#applied : { ...this.#applied, unenforced };
      },
      takeMatched: () => {
        if (this.#matchReports.length === 0) return undefined;
        const json = JSON.stringify(this.#matchReports);
        this.#matchReports = [];
        return json;
      },
      describe: () => {
        const r = this.#gatewayReport?.();
        return r === undefined ? undefined : JSON.stringify(r);
      },
      answered: (seq, sentAt, answer) => {
        // An older control plane refuses the gateway's report (an unknown field): without it.
        if (
          answer.status === 400 &&
          this.#gatewayReport !== undefined &&
          answer.text.includes('gateway')
        ) {
          this.#gatewayReport = undefined;
          this.#logger.warn(
            `remote flip source ${this.#workerId}: the control plane does not take a gateway's report of its seams; acknowledging without it`,
          );
          this.#ack();
          return;
        }
        this.#onAckAnswer(seq, sentAt, answer);
      },
      failed: (err) => {
        if (this.#stopped) return;
        const base = this.#ackChannel?.key.base ?? this.#urls[0]!;
        this.#reportAck(
          err.message === 'acknowledgement abandoned'
            ? { key: 'timeout', message: `the acknowledgement to ${base} got no answer in time` }
            : networkTrouble(base, err),
        );
      },
    };
  }

  /**
   * Says that the flip at `seq`, which this enforcement point received, cannot be enforced here
   * (a negative acknowledgement, KS-6.5.1): every acknowledgement from now on carries it, so the
   * flip's fleet answer lists this worker as unenforced, never as stopped, until
   * {@link RemoteFlipSource.withdrawUnenforced} is called. A gateway calls it when it cannot cut
   * what a halt matches.
   *
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad seq or reason, or more than
   *   MAX_UNENFORCED (100) standing at once
   */
  reportUnenforced(seq: number, reason: string): void {
    if (!Number.isSafeInteger(seq) || seq < 1) {
      throw new InvalidOptionError('seq', 'a positive integer', seq);
    }
    if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 500) {
      throw new InvalidOptionError('reason', 'text of 1 to 500 characters', reason);
    }
    if (!this.#unenforced.has(seq) && this.#unenforced.size >= MAX_UNENFORCED) {
      throw new InvalidOptionError(
        'seq',
        `at most ${MAX_UNENFORCED} unenforced flips at once`,
        seq,
      );
    }
    this.#unenforced.set(seq, reason);
    this.#ack();
  }

  /** Withdraws a negative acknowledgement: the flip at `seq` is enforced now. KS-6.5.2 */
  withdrawUnenforced(seq: number): void {
    if (this.#unenforced.delete(seq)) this.#ack();
  }

  /** The current state (`connecting`, `open`, `stale`, `closed`). */
  get status(): SourceStatus {
    return this.#status;
  }

  /** Seq of the last record applied (0 before any state). */
  get appliedSeq(): number {
    return this.#applied?.seq ?? 0;
  }

  async start(listener: FlipSourceListener): Promise<void> {
    if (!this.#stopped)
      throw new InvalidOptionError('start', 'a stopped source', 'a started source');
    const action = this.#step({ type: 'start' });
    this.#listener = listener;
    this.#applied = undefined;
    this.#logId = this.#expectedLogId;
    this.#diverged = undefined;
    this.#leaseUntil = Number.NEGATIVE_INFINITY;
    this.#lastReceived = Number.NEGATIVE_INFINITY;
    this.#trouble = undefined;
    this.#unchecked = undefined;
    this.#loggedKey = this.#loggedAckKey = undefined;
    this.#setStatus(SourceStatus.CONNECTING, `connecting to ${this.#urls.join(', ')}`);
    warmValidation();
    this.#perform(action);
    this.#scheduleAck();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#unchecked = undefined; // KS-6.3.14 never acknowledged: the source closes
    this.#perform(this.#step({ type: 'stop' }));
    for (const t of [this.#deadlineTimer, this.#ackTimer]) {
      if (t !== undefined) this.#clock.clearTimeout(t);
    }
    this.#deadlineTimer = this.#ackTimer = undefined;
    // KS-6.3.8: our acknowledgement is dropped; the last source to leave a channel closes it.
    this.#ackChannel?.leave(this.#ackMember);
    this.#ackChannel = undefined;
    this.#setStatus(SourceStatus.CLOSED, 'stopped');
    this.#listener = undefined;
  }

  // ---- stream ------------------------------------------------------------------------------

  /** The source is stopped (or was never started). */
  get #stopped(): boolean {
    return this.#conn.state === ConnectionState.STOPPED;
  }

  /** Moves the connection state machine; returns what to do, for #perform. */
  #step(event: ConnectionEvent): ConnectionAction {
    const { next, action } = stepConnection(this.#conn, event);
    this.#conn = next;
    return action;
  }

  /** Does what a transition of the connection asks: the only place streams and the backoff timer start and end. */
  #perform(action: ConnectionAction): void {
    if (action.do === 'none') return;
    this.#dropStream();
    if (this.#reconnectTimer !== undefined) {
      this.#clock.clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = undefined;
    }
    if (action.do === 'connect') {
      this.#openStream();
    } else if (action.do === 'wait') {
      // KS-6.3.3, KS-6.3.9 (a resync waits without jitter: it is not a transport failure)
      const curve = action.jitter ? this.#backoff : { ...this.#backoff, jitter: 0 };
      const wait = delay(action.attempt, curve, this.#backoff.random);
      this.#reconnectTimer = this.#clock.setTimeout(() => {
        this.#reconnectTimer = undefined;
        this.#perform(this.#step({ type: 'retry' }));
      }, wait);
    }
  }

  /** Closes the stream, if one is open; its late events are ignored from now on. */
  #dropStream(): void {
    this.#generation++;
    this.#es?.close();
    this.#es = undefined;
  }

  /** Opens the stream the connection state asks for (KS-6.3.5: resume, or ask for a snapshot). */
  #openStream(): void {
    const generation = ++this.#generation;
    const base = this.#currentUrl();
    const url = new URL(`${base}${ApiPath.STREAM}`);
    url.searchParams.set(StreamQuery.WORKER, this.#workerId); // KS-6.3.1
    if (this.#release !== undefined) url.searchParams.set(StreamQuery.RELEASE, this.#release);
    // KS-6.3.10: a replay that keeps failing (too large for the server to send before it drops
    // us as a slow reader, say) is abandoned for a snapshot (decided by the state machine).
    const resume = this.#conn.resuming;
    if (!resume) url.searchParams.set(StreamQuery.SNAPSHOT, '1');
    const lastEventId = resume ? String(this.#applied!.seq) : undefined;
    const token = this.#token;
    const injected = this.#fetch;
    // A connection counts as answered (KS-6.3.10) once the TCP connection is up (or the injected
    // fetch answered): a refused connection says nothing about the replay.
    const answered = () => {
      if (generation === this.#generation) this.#step({ type: 'answered' });
    };
    const rawFetch: FetchLike = injected
      ? async (input, init) => {
          const res = await injected(input, init as RequestInit);
          answered();
          return res;
        }
      : (input, init) => nodeStreamFetch(input, init, answered);
    // What the stream request answered, kept to say why a connection failed (KS-16.2.1): the
    // body of a refusal is read here, as eventsource drops it.
    this.#answer = undefined;
    const baseFetch: FetchLike = async (input, init) => {
      let res: FetchLikeResponse;
      try {
        res = await rawFetch(input, init);
      } catch (error) {
        if (generation === this.#generation) this.#answer = { kind: 'network', error };
        throw error;
      }
      const stream = isEventStream(res);
      const body = stream ? '' : await readRefusal(res);
      if (generation === this.#generation) {
        const contentType = res.headers.get('content-type') ?? '';
        this.#answer = { kind: 'http', status: res.status, contentType, body };
      }
      return res;
    };
    // Our own Last-Event-ID (what we applied, not what the client last saw) and the token in a
    // header: eventsource's `fetch` hook is the supported way to add headers. KS-6.3.1
    const fetchWithHeaders: FetchLike = (input, init) => {
      const headers: typeof init.headers = { ...init.headers };
      if (token !== undefined) headers['Authorization'] = `Bearer ${token}`;
      delete headers['Last-Event-ID'];
      delete headers[LAST_EVENT_ID_HEADER];
      if (lastEventId !== undefined) headers['Last-Event-ID'] = lastEventId;
      return baseFetch(input, { ...init, headers });
    };
    const es = new EventSource(url, { fetch: fetchWithHeaders });
    this.#es = es;
    const live = () => generation === this.#generation && !this.#stopped;
    es.addEventListener(StreamEvent.SNAPSHOT, (ev) => {
      if (live()) this.#onSnapshotEvent(ev.data);
    });
    es.addEventListener(StreamEvent.FLIP, (ev) => {
      if (live()) this.#onFlipEvent(ev.data);
    });
    es.addEventListener(StreamEvent.HEARTBEAT, (ev) => {
      if (live()) this.#onHeartbeatEvent(ev.data);
    });
    es.addEventListener('error', (ev) => {
      if (!live()) return;
      this.#fail(this.#streamTrouble(base, (ev as { message?: string }).message));
    });
    this.#signatures?.attach(es); // KS-17.7.9 after the listeners above
  }

  /** Why the stream of the current connection (to `base`) failed. KS-16.2.1 */
  #streamTrouble(base: string, message: string | undefined): ConnectionTrouble {
    const answer = this.#answer;
    if (answer?.kind === 'network') return networkTrouble(base, answer.error);
    if (answer === undefined) return networkTrouble(base, new Error(message ?? 'no answer'));
    if (answer.status !== 200 || !/^text\/event-stream\b/i.test(answer.contentType))
      return answerTrouble(base, answer, this.#token !== undefined);
    return {
      key: 'stream-lost',
      message: `the stream from ${base} ended${message ? ` (${inert(message)})` : ''}; reconnecting`,
    };
  }

  /**
   * Records the cause of trouble and logs it when it is a new one: the first failure and each
   * change of cause, never each retry. KS-16.2.1
   */
  #report(trouble: ConnectionTrouble): void {
    this.#trouble = trouble;
    if (trouble.key.startsWith('ack:')) {
      if (trouble.key === this.#loggedAckKey) return;
      this.#loggedAckKey = trouble.key;
    } else {
      if (trouble.key === this.#loggedKey) return;
      this.#loggedKey = trouble.key;
    }
    this.#logger.warn(`remote flip source ${this.#workerId}: ${trouble.message}`);
  }

  /** An acknowledgement's trouble: its own causes, cleared by the next answer that renews. */
  #reportAck(trouble: ConnectionTrouble): void {
    this.#report({ key: `ack:${trouble.key}`, message: trouble.message });
  }

  /** The connection failed or ended: close it, move to the next URL, retry after a backoff. KS-6.3.3 */
  #fail(trouble: ConnectionTrouble): void {
    // KS-6.3.14 a halt waiting for its check is checked before the stream goes (a failed check
    // has then already failed the source closed, resynchronising).
    if (this.#unchecked !== undefined && !this.#settle()) return;
    const action = this.#step({ type: 'failed' });
    this.#report(trouble);
    this.#refresh();
    this.#perform(action);
  }

  /** Fail closed and fetch a fresh snapshot. KS-6.3.2, KS-6.3.4 */
  #resync(reason: string): void {
    if (this.#unchecked !== undefined && !this.#settle()) return;
    const action = this.#step({ type: 'resync', reason });
    this.#refresh();
    this.#report({ key: `resync:${reason}`, message: `resynchronising: ${inert(reason)}` });
    this.#perform(action);
  }

  #received(): void {
    this.#lastReceived = this.#clock.now();
  }

  #onSnapshotEvent(data: string): void {
    if (this.#unchecked !== undefined && !this.#settle()) return;
    let snapshot: KillSnapshot;
    let logId: string;
    try {
      const split = splitSnapshotData(JSON.parse(data));
      logId = split.logId;
      snapshot = KillState.fromSnapshot(split.snapshot).toSnapshot();
    } catch (err) {
      this.#resync(`malformed snapshot: ${(err as Error).message}`);
      return;
    }
    // KS-17.7.9 with public keys, only a snapshot the key holder signed.
    const unsigned = this.#signatures?.snapshotFault(data, snapshot.seq);
    if (unsigned !== undefined) {
      this.#resync(unsigned);
      return;
    }
    // KS-6.4.2 a snapshot of another log, or behind (or beside) what was applied, is refused.
    if (!this.#accept({ logId, seq: snapshot.seq, hash: snapshot.hash }, 'snapshot')) return;
    this.#received();
    this.#step({ type: 'snapshot' });
    this.#logId = logId;
    this.#applied = { logId, seq: snapshot.seq, hash: snapshot.hash };
    try {
      this.#listener?.onSnapshot(snapshot);
    } catch (err) {
      // The consumer did not take the state: we cannot claim it, so fail closed and start over.
      this.#resync(`listener refused the snapshot: ${(err as Error).message}`);
      return;
    }
    this.#refresh();
    this.#ackSoon(); // KS-6.2.1
  }

  #onFlipEvent(data: string): void {
    if (this.#unchecked !== undefined && !this.#settle()) return;
    let parsed: WireRecord;
    try {
      parsed = parseWireRecord(data);
    } catch (err) {
      this.#resync(`malformed flip: ${(err as Error).message}`);
      return;
    }
    const record = parsed.record;
    this.#received();
    this.#step({ type: 'received' });
    const applied = this.#applied;
    // Before any snapshot (or while waiting for one) a flip cannot be placed: wait for the snapshot.
    if (applied === undefined || this.#conn.resync !== undefined) return;
    if (record.seq <= applied.seq) return; // duplicate (replay overlap); KS-6.3.2
    if (record.seq !== applied.seq + 1) {
      this.#resync(`gap: expected seq ${applied.seq + 1}, received ${record.seq}`);
      return;
    }
    if (record.prev !== applied.hash) {
      this.#resync(`record ${record.seq} does not chain to ${applied.seq}`);
      return;
    }
    // KS-6.3.12: a halt is applied before its hash check (it can only stop more, and a record
    // failing the check fails the source closed, unacknowledged); a resume and a drain halt only
    // after. Not a `drain` halt: it lets queued work run, so one replacing a `hold` or `discard`
    // halt of the same selector stops less; checked first, like a resume.
    if (record.action !== 'halt' || record.mode === 'drain') {
      const refused = this.#fault(parsed, applied.logId);
      if (refused !== undefined) {
        this.#resync(refused);
        return;
      }
      this.#applied = { logId: applied.logId, seq: record.seq, hash: record.hash };
      try {
        this.#listener?.onFlip(record);
      } catch (err) {
        this.#resync(`listener refused flip ${record.seq}: ${(err as Error).message}`);
        return;
      }
      // KS-16.4.1 a drain halt's report, read while what it halts is still watched.
      this.#flipChecked(record, record.action === 'halt' ? matchReportFor(record) : undefined);
      return;
    }
    this.#applied = { logId: applied.logId, seq: record.seq, hash: record.hash };
    try {
      this.#listener?.onFlip(record);
    } catch (err) {
      // KS-6.3.12 a halt not yet checked never counts as applied: the position before it stays
      // (and is what is acknowledged while the source resynchronises).
      this.#applied = applied;
      this.#resync(`listener refused flip ${record.seq}: ${(err as Error).message}`);
      return;
    }
    // KS-6.3.14: the check waits for the check phase of this turn of the event loop, after the
    // other sources of this process applied the halt too. Until then nothing acknowledges it
    // (toAck checks it first), and any other event of this source checks it first. KS-16.4.1: the
    // match report is read now, while what it halts is still watched (the aborts follow the
    // event); it goes with an acknowledgement only once the halt is checked.
    this.#unchecked = { parsed, before: applied, report: matchReportFor(record) };
    // KS-17.7.9 a `sig` event signs only the event right after it: StreamSignatures drops it once
    // this event's listeners ran, so with public keys the check cannot wait for the check phase.
    if (this.#signatures !== undefined) {
      this.#settle();
      return;
    }
    queueHaltCheck(this.#checkHalt);
  }

  /** The hash (and KS-17.7.9 signature) fault of the record, or undefined when it checks. */
  #fault(parsed: WireRecord, logId: string): string | undefined {
    return hashMatches(parsed)
      ? this.#signatures?.flipFault(parsed.record, logId)
      : `record ${parsed.record.seq} hash does not match its content`;
  }

  /**
   * KS-6.3.14 checks the halt applied before its check, if any: on success it counts as applied
   * and is acknowledged; on failure the source fails closed (KS-6.3.12), the halt never counted.
   * Returns false when the source failed closed (the caller's event is then dropped).
   */
  #settle(): boolean {
    const u = this.#unchecked;
    if (u === undefined) return true;
    this.#unchecked = undefined;
    const record = u.parsed.record;
    const refused = this.#fault(u.parsed, u.before.logId);
    if (refused !== undefined) {
      // Never claimed as applied nor acknowledged; the source fails closed until a snapshot.
      this.#applied = u.before;
      this.#resync(refused);
      return false;
    }
    this.#flipChecked(record, u.report);
    return true;
  }

  /** Queued per halt (one bound function per source, no closure per event). */
  readonly #checkHalt = (): void => {
    if (!this.#stopped) this.#settle();
  };

  /** A flip applied and checked: the stream progressed, the lease is looked at, it is acknowledged. */
  #flipChecked(record: FlipRecord, report: MatchReport | undefined): void {
    this.#step({ type: 'progressed' });
    if (report !== undefined) {
      if (this.#matchReports.length >= MAX_MATCH_REPORTS) this.#matchReports.shift();
      this.#matchReports.push(report);
    }
    this.#refresh();
    this.#ackSoon(); // KS-6.2.1
  }

  #onHeartbeatEvent(data: string): void {
    if (this.#unchecked !== undefined && !this.#settle()) return;
    const beat = parseHeartbeat(data);
    if (beat === undefined) {
      this.#resync('malformed heartbeat');
      return;
    }
    keepFlipPathWarm(this.#clock.now());
    if (!this.#accept({ logId: beat.logId, seq: beat.head, hash: beat.hash }, 'heartbeat')) return;
    this.#received();
    this.#step({ type: 'progressed' }); // a heartbeat follows the replay: this stream is caught up
    this.#refresh();
  }

  /**
   * KS-6.4.2 whether a position a control plane shows (snapshot, heartbeat, ack answer) continues
   * the log this source applied. When it does not, the source fails closed with an error naming
   * both sides, drops the connection and tries the next URL; the applied state is kept, so only
   * a control plane on the applied log, at or beyond it, is accepted again.
   */
  #accept(seen: LogPosition, what: string, reference = this.#applied): boolean {
    const applied: LogPosition | undefined =
      reference ??
      (this.#logId === undefined ? undefined : { logId: this.#logId, seq: 0, hash: seen.hash });
    const kind = applied === undefined ? undefined : divergence(applied, seen);
    if (kind === undefined) {
      if (this.#diverged !== undefined) {
        this.#diverged = undefined;
        this.#logger?.warn(
          `remote flip source ${this.#workerId}: ${this.#currentUrl()} serves ${describePosition(seen)}, which continues the applied log`,
        );
      }
      return true;
    }
    this.#diverged = new LogDivergedError(kind, applied!, seen, {
      applied: `worker ${this.#workerId} applied`,
      seen: `the ${what} of ${this.#currentUrl()} shows`,
    });
    this.#fail({
      key: `diverged:${kind}:${seen.logId}:${seen.seq}`,
      message: this.#diverged.message,
    });
    return false;
  }

  #currentUrl(): string {
    return this.#urls[this.#conn.urlIndex]!;
  }

  // ---- acknowledgements and the lease (KS-6.2) ----------------------------------------------

  /**
   * Acknowledges once the events already read have been handled: the channel sends in the check
   * phase, once the other sources of this process that share it applied the same seq (at most
   * ACK_HOLD_MS after the last of them did, KS-6.2.8), and reads our newest applied seq only
   * then, so a burst costs one ack, not one per flip.
   */
  #ackSoon(): void {
    this.#ack();
  }

  /**
   * The heartbeat acknowledgement (KS-6.2.1: at least every `heartbeatMs`) runs at a fixed
   * cadence; acknowledgements of flips in between do not re-arm it, so applying a flip costs no
   * timer churn (a thousand subscribers in one process each re-arming a timer per flip was
   * measurable). The cadence is a grid of `heartbeatMs` on the clock (KS-6.2.9), not the time of
   * start: the sources of a process with the same `heartbeatMs`, started one after the other, fire
   * in the same turn and go in one batch (KS-6.2.6), where each used to send its own small batch,
   * spread over the second (250 sources: 10 to 20 lines a second per process, each costing both
   * ends CPU whenever it landed, in the middle of a fan-out too). Never later than `heartbeatMs`.
   */
  #scheduleAck(): void {
    if (this.#stopped || this.#ackTimer !== undefined) return;
    const every = this.#heartbeatMs;
    this.#ackTimer = this.#clock.setTimeout(
      () => {
        this.#ackTimer = undefined;
        this.#ack();
      },
      every - (((this.#clock.now() % every) + every) % every),
    );
  }

  #ack(): void {
    if (this.#stopped) return;
    this.#scheduleAck();
    if (this.#applied === undefined) return;
    const base = this.#currentUrl();
    let channel = this.#ackChannel;
    if (channel?.key.base !== base) {
      // Moved to another URL: acknowledge there (an answer still in flight elsewhere is dropped).
      channel?.leave(this.#ackMember);
      const key = { base, token: this.#token, fetch: this.#fetch, clock: this.#clock };
      channel = this.#shareAcks ? ackChannelFor(key) : new AckChannel(key, () => {});
      channel.join(this.#ackMember);
      this.#ackChannel = channel;
    }
    // KS-6.3.7: the channel keeps at most one of ours in flight and sends our newest seq next.
    channel.request(this.#ackMember);
  }

  /** KS-6.2.2: `sentAt` was read from our clock just before the acknowledgement of `seq` was sent. */
  #onAckAnswer(seq: number, sentAt: number, { status, text, nonce }: AckAnswerText): void {
    if (this.#stopped) return;
    if (this.#unchecked !== undefined && !this.#settle()) return;
    const base = this.#ackChannel?.key.base ?? this.#urls[0]!;
    if (status !== 200) {
      this.#reportAck(
        httpTrouble(base, 'the acknowledgement', status, text, this.#token !== undefined),
      );
      return;
    }
    try {
      const answer = parseAckAnswer(text);
      if (answer === undefined) throw new Error('malformed ack answer');
      // KS-17.7.10 with public keys, only the key holder's answer to this very request renews.
      const forged = this.#signatures?.ackAnswerFault(answer, nonce);
      if (forged !== undefined) {
        this.#reportAck({
          key: 'unsigned',
          message: `the acknowledgement answer of ${base} renews nothing: ${forged}`,
        });
        return;
      }
      const { logId, head, hash } = answer;
      // KS-6.4.2 an answer from a log that does not continue ours renews nothing. It is compared
      // with what was acknowledged (`seq`): the stream may have applied more meanwhile, on
      // another socket. At `seq` itself the hash is known only when nothing was applied since.
      const applied = this.#applied;
      const reference =
        applied === undefined || applied.seq === seq
          ? applied
          : { logId: applied.logId, seq, hash: head === seq ? hash : applied.hash };
      if (!this.#accept({ logId, seq: head, hash }, 'acknowledgement answer', reference)) return;
      // KS-6.2.2: extend only when we are not behind the server's head.
      this.#leaseUntil = renewedLease(
        this.#leaseUntil,
        { sentAt, ackedSeq: seq, head, serverStaleAfterMs: answer.staleAfterMs },
        this.#staleAfterMs,
      );
      if (this.#trouble?.key.startsWith('ack:')) this.#trouble = undefined;
      this.#loggedAckKey = undefined;
      this.#reconnectNow(base);
      this.#refresh();
    } catch (err) {
      this.#reportAck({
        key: 'malformed',
        message: `the acknowledgement to ${base} was answered with ${(err as Error).message}: not a killswitch server?`,
      });
    }
  }

  /**
   * KS-6.3.13 the control plane at `base` just answered an acknowledgement: when the stream is
   * waiting out a backoff to reconnect there, it reconnects now instead (after a control plane
   * restart the backoff may have grown to seconds while the server was already back).
   */
  #reconnectNow(base: string): void {
    if (this.#conn.state !== ConnectionState.WAITING || this.#currentUrl() !== base) return;
    this.#perform(this.#step({ type: 'retry' }));
  }

  // ---- the state machine -------------------------------------------------------------------

  /** Recomputes the status from the facts and arms the timer for the next deadline. KS-6.2.3 */
  #refresh(): void {
    if (this.#stopped) return;
    const now = this.#clock.now();
    const verdict = freshness(
      {
        diverged: this.#diverged?.message,
        hasState: this.#applied !== undefined,
        resyncing: this.#conn.resync,
        leaseUntil: this.#leaseUntil,
        lastReceived: this.#lastReceived,
        staleAfterMs: this.#staleAfterMs,
      },
      now,
    );
    // KS-16.2.2: the status says why, down to the cause of the trouble.
    const trouble = this.#trouble?.message;
    const status = statusAfter(this.#status, verdict.fresh);
    if (verdict.fresh) {
      if (this.#status !== SourceStatus.OPEN) {
        if (this.#loggedKey !== undefined || this.#loggedAckKey !== undefined) {
          this.#logger.warn(
            `remote flip source ${this.#workerId}: fresh again at seq ${this.#applied!.seq}`,
          );
        }
        this.#trouble = this.#loggedKey = this.#loggedAckKey = undefined;
      }
      this.#setStatus(status, 'fresh');
    } else if (status === SourceStatus.CONNECTING) {
      // never fresh yet: already failed closed, and `stale` would suggest it once was fresh
      if (trouble !== undefined) this.#setStatus(status, trouble);
    } else {
      const reason = verdict.reason;
      this.#setStatus(
        status,
        trouble === undefined || trouble === reason ? reason : `${reason}; ${trouble}`,
      );
    }
    if (verdict.fresh) {
      const next = verdict.until;
      // A timer already armed for no later than the next deadline is kept: it fires early at
      // worst, and this method then re-arms for the deadline it finds. Deadlines only move
      // later while fresh, so this saves re-arming a timer on every event. KS-6.3.6
      if (this.#deadlineTimer !== undefined && this.#deadlineAt <= next) return;
      if (this.#deadlineTimer !== undefined) this.#clock.clearTimeout(this.#deadlineTimer);
      this.#deadlineAt = next;
      this.#deadlineTimer = this.#clock.setTimeout(
        () => {
          this.#deadlineTimer = undefined;
          this.#refresh();
        },
        Math.max(0, next - now),
      );
    } else if (this.#deadlineTimer !== undefined) {
      this.#clock.clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = undefined;
    }
  }

  /** Tells the listener of each change of status or of why (KS-16.2.2). */
  #setStatus(status: SourceStatus, detail: string): void {
    if (status === this.#status && detail === this.#statusDetail) return;
    this.#status = status;
    this.#statusDetail = detail;
    this.#listener?.onStatus(status, detail);
  }
}

/**
 * Halt and resume pairs the private source applies after {@link warmUpWireRecords}, so the code
 * of a flip runs often enough at start for V8 to compile it past the interpreter: a handful of
 * records left the first real flip interpreted (issue 19: the first flip's CPU was 2.1x a warm
 * one's in bench:propagation's first-flip case, the second flip already warm).
 */
const WARM_UP_PAIRS = 100;
let warmUpStream: readonly string[] | undefined;

/** {@link warmUpWireRecords}, then WARM_UP_PAIRS halts and resumes of one private tenant, chained. */
export function warmUpStreamRecords(): readonly string[] {
  if (warmUpStream !== undefined) return warmUpStream;
  const out = [...warmUpWireRecords()];
  let head = parseFlipRecord(JSON.parse(out.at(-1)!));
  const at = new Date(0);
  for (let i = 0; i < 2 * WARM_UP_PAIRS; i++) {
    const flip = parseFlipInput({
      actor: 'warm-up',
      action: i % 2 === 0 ? 'halt' : 'resume',
      selector: { tenant: 'warm-up' },
      reason: 'warm-up',
    });
    head = chainRecord(flip, head, at);
    out.push(recordJson(head));
  }
  warmUpStream = Object.freeze(out);
  return warmUpStream;
}

/** Where the private warm-up source "connects": never resolved, its fetch answers in memory. */
const WARM_UP_URL = 'http://warm-up.invalid';
const WARM_UP_LOG_ID = 'warm-up';
/** The warm-up gives up (and stops its private source) after this long. */
const WARM_UP_LIMIT_MS = 2000;

/**
 * The whole stream path of a flip, run once per process at first start on a private source
 * (issue 19, the first flip is the one that matters): a RemoteFlipSource nobody listens to,
 * whose injected fetch serves, from memory, a snapshot of an empty private log, the halts and
 * resumes of {@link warmUpWireRecords} and answers its acknowledgements. So the first real flip
 * finds the event parser and dispatch, this class's flip handling, the record cache, the hash
 * check, the match report and the acknowledgement code compiled, instead of compiling them on
 * the way to stopping (measured in one process of 25 sources: the first flip's CPU about 2.5x a
 * warm one's without it). Shares nothing with the real sources: its own listener, log, URL and
 * acknowledgement channel (`shareAcks: false`); no socket; its timers are unref'd, so it never
 * keeps a process alive, and it stops itself when done or after WARM_UP_LIMIT_MS.
 *
 * @returns how many private records its source applied (all of them, unless it gave up)
 */
export async function exerciseSourcePath(): Promise<number> {
  const records = warmUpStreamRecords();
  const enc = new TextEncoder();
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input instanceof Request ? input.url : input));
    if (url.pathname !== ApiPath.STREAM) {
      // An acknowledgement (single or batched): answered at the seq it carries.
      const seq = records.length;
      const last = JSON.parse(records[seq - 1]!) as { hash: string };
      const body = JSON.stringify({
        head: seq,
        serverTime: new Date(0).toISOString(),
        staleAfterMs: 3000,
        logId: WARM_UP_LOG_ID,
        hash: last.hash,
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    }
    const snapshot = { ...KillState.empty().toSnapshot(), logId: WARM_UP_LOG_ID };
    let text = `event: ${StreamEvent.SNAPSHOT}\ndata: ${JSON.stringify(snapshot)}\n\n`;
    records.forEach((data, i) => {
      text += `event: ${StreamEvent.FLIP}\nid: ${i + 1}\ndata: ${data}\n\n`;
    });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(enc.encode(text));
        init?.signal?.addEventListener('abort', () => controller.close());
      },
    });
    return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  }) as typeof globalThis.fetch;
  const clock: Clock = {
    ...systemClock,
    setTimeout: (fn, ms) => {
      const t = setTimeout(fn, ms);
      t.unref();
      return t;
    },
  };
  const source = new RemoteFlipSource({
    urls: [WARM_UP_URL],
    workerId: 'warm-up',
    fetch,
    clock,
    shareAcks: false,
    logger: { warn: () => undefined },
  });
  let applied = 0;
  let finish = (): void => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const limit = setTimeout(finish, WARM_UP_LIMIT_MS);
  limit.unref();
  await source.start({
    onSnapshot: () => undefined,
    onFlip: (record) => {
      applied++;
      if (record.seq === records.length) finish();
    },
    onStatus: () => undefined,
  });
  try {
    await done;
    // Let the acknowledgement of the last record go out and be answered (the ack path warms too).
    await new Promise<void>((resolve) => setTimeout(resolve, 10).unref());
  } finally {
    clearTimeout(limit);
    await source.stop();
  }
  return applied;
}
