import {
  request as httpRequest,
  Agent as HttpAgent,
  type ClientRequest,
  type IncomingMessage,
} from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { randomBytes } from 'node:crypto';
import {
  ACK_STREAM_CONTENT_TYPE,
  isAckStreamAnswer,
  isAckStreamHello,
} from '../../src/protocol/ack-stream.js';
import { ApiPath } from '../../src/protocol/paths.js';
import { delay, type BackoffCurve } from '../../src/internal/backoff.js';
import type { Clock } from '../../src/internal/clock.js';

/** The answer of `POST /v1/acks` (KS-6.2), validated by the member. */
export interface AckAnswerText {
  readonly status: number;
  readonly text: string;
  /** KS-17.7.10 the nonce the request carried, which a signed answer must be signed over. */
  readonly nonce?: string;
}

/**
 * One source's side of a shared acknowledgement channel. The channel asks for the seq to
 * acknowledge when it builds a batch, reads the member's own clock just before sending
 * (KS-6.2.2), and hands every member its own result.
 */
export interface AckMember {
  readonly workerId: string;
  readonly release: string | undefined;
  /** The member's lease length; the batch is abandoned after the shortest. KS-6.3.7 */
  readonly staleAfterMs: number;
  /** The member's clock: `sentAt` is read from it. */
  readonly clock: Clock;
  /**
   * KS-17.7.10 the member checks answers' signatures: every request it is in carries a fresh
   * random nonce (in the batch form), for the control plane to sign its answer over.
   */
  readonly signedAnswers?: boolean;
  /**
   * What to acknowledge now: the newest applied seq, with the log and the hash of that record
   * (KS-6.4.3), or `undefined` when there is nothing to acknowledge.
   */
  toAck():
    | {
        readonly seq: number;
        readonly logId: string;
        readonly hash: string;
        /** KS-6.5.1 flips received that the member cannot enforce (sent until withdrawn). */
        readonly unenforced?: readonly { readonly seq: number; readonly reason: string }[];
      }
    | undefined;
  /**
   * The match reports to send with this acknowledgement, as a JSON array, taken (not sent
   * again); undefined when there are none. KS-16.4.1
   */
  takeMatched?(): string | undefined;
  /** A gateway's report of its seams as JSON (KS-15.5.3), sent with every acknowledgement. */
  describe?(): string | undefined;
  /** The answer to the acknowledgement of `seq` sent at `sentAt` (member's clock). */
  answered(seq: number, sentAt: number, answer: AckAnswerText): void;
  /** The acknowledgement failed (transport error, timeout). */
  failed(error: Error): void;
}

/** What identifies a channel: acknowledgements to one place with one credential and transport. */
interface ChannelKey {
  readonly base: string;
  readonly token: string | undefined;
  readonly fetch: typeof globalThis.fetch | undefined;
  readonly clock: Clock;
}

/** Most entries in one batch body (the server's default body limit is 64 KiB). */
const MAX_BATCH_BYTES = 48 * 1024;

/**
 * Longest an acknowledgement waits for the channel's other sources to apply the same seq
 * (KS-6.2.6). Only a channel with several sources ever waits, and only while some of them have
 * not applied the newest seq.
 */
export const ACK_HOLD_MS = 5;

/**
 * Longest a batch waits in all (KS-6.2.8): the wait of {@link ACK_HOLD_MS} starts again each time
 * one more member applies the newest seq, so a process whose fan-out takes longer than 5 ms (a
 * few hundred sources, a busy machine) sends one batch at its end rather than one every 5 ms in
 * the middle of it, up to this bound.
 */
export const ACK_HOLD_MAX_MS = 50;

const channels = new Map<string, AckChannel[]>();

/**
 * The acknowledgement channel for `key`, shared by every source of this process that
 * acknowledges to the same URL with the same token, fetch and clock (created on first use).
 * Callers must {@link AckChannel.leave} it when they stop.
 */
export function ackChannelFor(key: ChannelKey): AckChannel {
  const k = `${key.base}\n${key.token ?? ''}`;
  let list = channels.get(k);
  if (!list) channels.set(k, (list = []));
  let ch = list.find((c) => c.key.fetch === key.fetch && c.key.clock === key.clock);
  if (!ch) {
    ch = new AckChannel(key, () => {
      const l = channels.get(k);
      if (!l) return;
      const i = l.indexOf(ch!);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) channels.delete(k);
    });
    list.push(ch);
  }
  return ch;
}

/**
 * Sends the acknowledgements of several sources of one process in one `POST /v1/acks`
 * (`{ "acks": [...] }`, KS-6.2.6) instead of one request per source: after a flip, a process
 * holding a thousand subscribers sends a few requests rather than a thousand, which leaves the
 * CPU of both ends to the fan-out. A batch of one uses the single form.
 *
 * Per source nothing changes (KS-6.2.2, KS-6.3.7): its clock is read just before the batch is
 * sent, its lease is extended by that answer only when the answer's head is not beyond the seq it
 * acknowledged, at most one acknowledgement of it is in flight (the channel keeps one batch in
 * flight), one not answered within its `staleAfterMs` is abandoned, and its newest applied seq
 * goes next.
 */
export class AckChannel {
  readonly key: ChannelKey;
  /** Each member and the start of its entry (`{"workerId":...,"seq":`), built once. */
  readonly #members = new Map<AckMember, string>();
  readonly #wanted = new Set<AckMember>();
  readonly #onEmpty: () => void;
  #inFlight: AbortController | undefined;
  #flushQueued = false;
  /** The newest seq a member asked to acknowledge, and the members that asked for it. */
  #newest = -1;
  readonly #atNewest = new Set<AckMember>();
  #hold: ReturnType<typeof setTimeout> | undefined;
  /** When the current hold began, and when a member last applied the newest seq (performance.now()). */
  #holdSince = 0;
  #lastProgress = 0;
  /** False once the server refused a batch: send single acknowledgements from then on. */
  #batching = true;
  #agent: HttpAgent | HttpsAgent | undefined;
  /** The acknowledgement stream lines go on, once its server answered it (KS-6.7). */
  #stream: AckLineStream | undefined;
  /** A stream being opened (the first, or the next one when the current one is due to end). */
  #opening: AckLineStream | undefined;
  /** No stream is tried before this (clock time): after a failed one, or a server without it. */
  #streamRetryAt = -Infinity;
  /** Consecutive streams that failed to open: each doubles the wait before the next try. */
  #streamFailures = 0;
  #rotateTimer: unknown;

  constructor(key: ChannelKey, onEmpty: () => void) {
    this.key = key;
    this.#onEmpty = onEmpty;
  }

  /** Members currently using the channel. */
  get size(): number {
    return this.#members.size;
  }

  join(member: AckMember): void {
    const release =
      member.release === undefined ? '' : `,"release":${JSON.stringify(member.release)}`;
    this.#members.set(member, `{"workerId":${JSON.stringify(member.workerId)}${release},"seq":`);
  }

  /**
   * The member stopped: it is dropped from any batch to come, and an answer in flight is no
   * longer delivered to it. The last member to leave closes the channel (aborts what is in flight
   * and releases its socket). KS-6.3.8
   */
  leave(member: AckMember): void {
    this.#members.delete(member);
    this.#wanted.delete(member);
    this.#atNewest.delete(member);
    if (this.#members.size > 0) {
      // The others may have been waiting for this one.
      if (this.#wanted.size > 0) this.#schedule();
      return;
    }
    if (this.#hold !== undefined) clearTimeout(this.#hold);
    this.#hold = undefined;
    this.#inFlight?.abort();
    this.#inFlight = undefined;
    this.#closeStreams();
    this.#agent?.destroy();
    this.#agent = undefined;
    this.#onEmpty();
  }

  /**
   * Asks for an acknowledgement of the member's newest applied seq. Requests made in the same
   * turn of the event loop go in one batch; while a batch is in flight they wait for it.
   *
   * A flip reaches the sources of one process one socket at a time, often over several turns of
   * the event loop. Sending the first source's acknowledgement at once put a request (about
   * 0.35 ms of CPU when cold) between it and the rest, in the middle of the fan-out. So while some
   * members have not applied the newest seq any member asked for, the batch waits for them, at
   * most {@link ACK_HOLD_MS} after the last of them applied it and {@link ACK_HOLD_MAX_MS} in
   * all; once every member has, it goes at the end of that turn. A channel with one member never
   * waits. KS-6.2.6, KS-6.2.8
   */
  request(member: AckMember): void {
    if (!this.#members.has(member)) return;
    this.#wanted.add(member);
    const seq = member.toAck()?.seq;
    let progressed = false;
    if (seq !== undefined) {
      if (seq > this.#newest) {
        this.#newest = seq;
        this.#atNewest.clear();
      }
      if (seq === this.#newest && !this.#atNewest.has(member)) {
        this.#atNewest.add(member);
        progressed = true;
      }
    }
    this.#schedule(progressed);
  }

  /**
   * Sends what is wanted at the end of this turn when every member applied the newest seq, else
   * holds it (KS-6.2.6): the hold starts ACK_HOLD_MS over when `progressed` (one more member
   * applied it), until ACK_HOLD_MAX_MS after it began (KS-6.2.8).
   */
  #schedule(progressed = false): void {
    if (this.#inFlight || this.#flushQueued) return;
    if (this.#atNewest.size < this.#members.size) {
      if (this.#hold === undefined) {
        this.#holdSince = this.#lastProgress = performance.now();
        this.#hold = setTimeout(this.#holdEnded, ACK_HOLD_MS);
      } else if (progressed) {
        // Read when the timer fires (no timer moved per member: a process applies a flip for
        // hundreds of them in a few milliseconds).
        this.#lastProgress = performance.now();
      }
      return;
    }
    this.#queueFlush();
  }

  /** The hold's timer fired: it goes on while members progress (KS-6.2.8), else the batch goes. */
  readonly #holdEnded = (): void => {
    const now = performance.now();
    // A tenth of the shortest lease of the members at most (KS-6.2.8): a short lease (a test's,
    // a few hundred ms) is renewed by these very acknowledgements.
    let most = ACK_HOLD_MAX_MS;
    for (const m of this.#members.keys()) most = Math.min(most, m.staleAfterMs / 10);
    const until = Math.min(
      this.#lastProgress + ACK_HOLD_MS,
      this.#holdSince + Math.max(ACK_HOLD_MS, most),
    );
    if (until - now >= 1) {
      this.#hold = setTimeout(this.#holdEnded, until - now);
      return;
    }
    this.#hold = undefined;
    // Counted afresh from the next requests: a member that never reaches this seq (its stream is
    // down, or the log was replaced and seqs started again) must not hold every later batch as
    // well.
    this.#newest = -1;
    this.#atNewest.clear();
    this.#queueFlush();
  };

  #queueFlush(): void {
    if (this.#hold !== undefined) clearTimeout(this.#hold);
    this.#hold = undefined;
    if (this.#inFlight || this.#flushQueued || this.#members.size === 0) return;
    this.#flushQueued = true;
    setImmediate(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#inFlight || this.#wanted.size === 0) return;
    const batch: { member: AckMember; seq: number; sentAt: number }[] = [];
    const entries: string[] = [];
    let bytes = 0;
    for (const member of this.#wanted) {
      const at = member.toAck();
      if (at === undefined) {
        this.#wanted.delete(member);
        continue;
      }
      const seq = at.seq;
      const matched = member.takeMatched?.();
      const nacks =
        at.unenforced === undefined || at.unenforced.length === 0
          ? ''
          : `,"unenforced":${JSON.stringify(at.unenforced.map((u) => ({ seq: u.seq, reason: u.reason })))}`;
      const gateway = member.describe?.();
      const entry = `${this.#members.get(member)!}${seq},"logId":${JSON.stringify(at.logId)},"hash":"${at.hash}"${
        matched === undefined ? '' : `,"matched":${matched}`
      }${nacks}${gateway === undefined ? '' : `,"gateway":${gateway}`}}`;
      if (batch.length > 0 && (!this.#batching || bytes + entry.length > MAX_BATCH_BYTES)) break;
      this.#wanted.delete(member);
      // KS-6.2.2: each member's clock is read before the request is sent.
      batch.push({ member, seq, sentAt: member.clock.now() });
      entries.push(entry);
      bytes += entry.length + 1;
    }
    if (batch.length === 0) return;
    const single = batch.length === 1;
    const nonce = batch.some((b) => b.member.signedAnswers === true)
      ? randomBytes(18).toString('base64url')
      : undefined;
    const body =
      nonce !== undefined
        ? `{"acks":[${entries.join(',')}],"nonce":"${nonce}"}`
        : single
          ? entries[0]!
          : `{"acks":[${entries.join(',')}]}`;
    const controller = new AbortController();
    this.#inFlight = controller;
    // KS-6.3.7: abandoned after the shortest lease of the batch.
    const limit = Math.min(...batch.map((b) => b.member.staleAfterMs));
    const clock = this.key.clock;
    const timeout = clock.setTimeout(() => controller.abort(), limit);
    const deliver = (fn: (b: (typeof batch)[number]) => void) => {
      for (const b of batch) {
        if (!this.#members.has(b.member)) continue; // stopped meanwhile
        try {
          fn(b);
        } catch {
          // a member's failure is its own; the others still get their answer
        }
      }
    };
    this.#post(body, controller.signal)
      .then((answer) => {
        if (controller.signal.aborted) throw new Error('acknowledgement abandoned');
        // A server without batches (KS-6.2.6) refuses the body: fall back to single acks. The
        // members keep their lease as it was (failed closed if it runs out) until then.
        if (!single && (answer.status === 400 || answer.status === 404)) this.#batching = false;
        const given = nonce === undefined ? answer : { ...answer, nonce };
        deliver((b) => b.member.answered(b.seq, b.sentAt, given));
      })
      .catch((err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        deliver((b) => b.member.failed(e));
      })
      .finally(() => {
        clock.clearTimeout(timeout);
        if (this.#inFlight === controller) this.#inFlight = undefined;
        if (this.#members.size === 0) return;
        // Refused as a batch: each member goes again, one at a time.
        if (!single && !this.#batching) {
          for (const b of batch) if (this.#members.has(b.member)) this.#wanted.add(b.member);
        }
        // What was asked for meanwhile goes next, held like any other batch (KS-6.2.8): a batch
        // answered in the middle of a fan-out does not send the next one there too.
        if (this.#wanted.size > 0) this.#schedule();
      });
  }

  /** Whether the channel uses an acknowledgement stream (transport: node:http, KS-6.7). */
  get streaming(): boolean {
    return this.#stream !== undefined;
  }

  /**
   * Sends one body: as a line of the acknowledgement stream when one is open (KS-6.7), else as
   * `POST /v1/acks`. A stream cut before the line's answer came sends the same body again as a
   * request: an acknowledgement counted twice renews nothing it should not (the server keeps the
   * newest), one never sent would let a lease run out.
   */
  async #post(body: string, signal: AbortSignal): Promise<AckAnswerText> {
    if (this.key.fetch === undefined) {
      this.#maybeOpenStream();
      const stream = this.#stream;
      if (stream !== undefined) {
        try {
          return await stream.send(body, signal);
        } catch (err) {
          if (this.#stream === stream) this.#streamFailed(stream);
          if (signal.aborted || !(err instanceof AckStreamCut)) throw err;
          // the line may or may not have been read: send it as a request instead
        }
      }
    }
    return this.#request(body, signal);
  }

  /** Opens a stream in the background when none is open or opening and none failed lately. */
  #maybeOpenStream(): void {
    if (this.#stream !== undefined || this.#opening !== undefined) return;
    if (this.#members.size === 0 || this.key.clock.now() < this.#streamRetryAt) return;
    this.#openStream();
  }

  #openStream(): void {
    const stream = new AckLineStream(this.key, ACK_STREAM_OPEN_TIMEOUT_MS);
    this.#opening = stream;
    stream.ready.then(
      (hello) => {
        if (this.#opening !== stream) return stream.end();
        this.#opening = undefined;
        if (this.#members.size === 0) return stream.end();
        // Make before break: the stream it replaces answers the lines it holds, then ends.
        const previous = this.#stream;
        this.#stream = stream;
        this.#streamFailures = 0;
        previous?.end();
        stream.closed.then(() => {
          if (this.#stream === stream) this.#stream = undefined;
        });
        const clock = this.key.clock;
        if (this.#rotateTimer !== undefined) clock.clearTimeout(this.#rotateTimer);
        // Before the server's request timeout ends the body for us: the next stream opens, and
        // takes over once it is answered.
        this.#rotateTimer = clock.setTimeout(
          () => {
            this.#rotateTimer = undefined;
            if (this.#stream === stream && this.#opening === undefined) this.#openStream();
          },
          Math.max(ACK_STREAM_MIN_LIFE_MS, hello.endAfterMs),
        );
      },
      (err: unknown) => {
        if (this.#opening !== stream) return;
        this.#opening = undefined;
        // No answer head and hello in time (a proxy that holds request bodies until they end),
        // or a server without the route: acknowledgements stay requests, and a stream is tried
        // again later, less often each time.
        const unsupported = err instanceof AckStreamRefused && err.unsupported;
        this.#streamFailures++;
        const wait = unsupported
          ? ACK_STREAM_UNSUPPORTED_RETRY_MS
          : delay(this.#streamFailures - 1, ACK_STREAM_BACKOFF);
        this.#streamRetryAt = this.key.clock.now() + wait;
      },
    );
  }

  /** The stream broke under a line (cut, or an answer later than the lease): back to requests. */
  #streamFailed(stream: AckLineStream): void {
    stream.destroy(new AckStreamCut('acknowledgement stream given up'));
    this.#stream = undefined;
    this.#streamFailures++;
    this.#streamRetryAt =
      this.key.clock.now() + delay(this.#streamFailures - 1, ACK_STREAM_BACKOFF);
  }

  #closeStreams(): void {
    if (this.#rotateTimer !== undefined) this.key.clock.clearTimeout(this.#rotateTimer);
    this.#rotateTimer = undefined;
    this.#stream?.destroy(new AckStreamCut('acknowledgement channel closed'));
    this.#opening?.destroy(new AckStreamCut('acknowledgement channel closed'));
    this.#stream = this.#opening = undefined;
  }

  /** POSTs JSON: the injected fetch when there is one, else node:http with the channel's own agent. */
  async #request(body: string, signal: AbortSignal): Promise<AckAnswerText> {
    const url = `${this.key.base}${ApiPath.ACKS}`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.key.token !== undefined) headers['authorization'] = `Bearer ${this.key.token}`;
    if (this.key.fetch) {
      const res = await this.key.fetch(url, { method: 'POST', headers, body, signal });
      return { status: res.status, text: await res.text() };
    }
    const target = new URL(url);
    const https = target.protocol === 'https:';
    this.#agent ??= https
      ? new HttpsAgent({ keepAlive: true, maxSockets: 1 })
      : new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const agent = this.#agent;
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(
        target,
        {
          method: 'POST',
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          agent,
          signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

/**
 * How long a new acknowledgement stream may take to be answered before it is given up and
 * requests are kept. Acknowledgements go as requests while it opens, so waiting costs nothing but
 * the idle connection; giving up costs the stream for 30 s at least. It was 1 s: a control plane
 * sending snapshots to a thousand workers at their start, or a worker process busy for a second
 * (its timers run before the socket's data in the loop's next turn), gave up most streams, and
 * their acknowledgements landed as requests in the middle of every fan-out (issue 19; 6 of the 8
 * subscriber processes of a bench:propagation run at load 9).
 */
export const ACK_STREAM_OPEN_TIMEOUT_MS = 10_000;
/** Wait before trying a stream again after one failed (doubling per failure, to the maximum). */
const ACK_STREAM_RETRY_MS = 30_000;
const ACK_STREAM_MAX_RETRY_MS = 15 * 60_000;
/** The stream is tried again after 30 s, doubling up to 15 min, without jitter. */
const ACK_STREAM_BACKOFF: BackoffCurve = {
  initialMs: ACK_STREAM_RETRY_MS,
  factor: 2,
  maxMs: ACK_STREAM_MAX_RETRY_MS,
  jitter: 0,
};
/** Wait before trying again at a server without the stream route. */
const ACK_STREAM_UNSUPPORTED_RETRY_MS = 60 * 60_000;
/** A stream is replaced no sooner than this, whatever the server says. */
const ACK_STREAM_MIN_LIFE_MS = 1000;

/** The stream ended or broke before a line's answer came; the line may not have been read. */
class AckStreamCut extends Error {}

/** The server answered the stream's request with something other than an open stream. */
class AckStreamRefused extends Error {
  readonly unsupported: boolean;
  constructor(message: string, unsupported: boolean) {
    super(message);
    this.unsupported = unsupported;
  }
}

/**
 * One `POST /v1/acks/stream` (KS-6.7): lines out, one answer line per line back, in order. It is
 * `ready` once the server's hello line arrived; a request that gets no answer head and hello
 * within `openTimeoutMs` is given up (something between holds the body until it ends).
 */
class AckLineStream {
  readonly ready: Promise<{ readonly endAfterMs: number }>;
  /** Resolves when the stream is over, whichever way. */
  readonly closed: Promise<void>;
  readonly #req: ClientRequest;
  readonly #waiting: { resolve: (a: AckAnswerText) => void; reject: (e: Error) => void }[] = [];
  #text = '';
  #hello = false;
  #over: Error | undefined;
  #ended = false;
  #onClosed!: () => void;

  constructor(key: ChannelKey, openTimeoutMs: number) {
    this.closed = new Promise<void>((resolve) => (this.#onClosed = resolve));
    const target = new URL(`${key.base}${ApiPath.ACK_STREAM}`);
    const https = target.protocol === 'https:';
    const headers: Record<string, string> = { 'content-type': ACK_STREAM_CONTENT_TYPE };
    if (key.token !== undefined) headers['authorization'] = `Bearer ${key.token}`;
    // Its own connection (agent: false): a long request must not hold the socket requests use.
    const req = (https ? httpsRequest : httpRequest)(target, {
      method: 'POST',
      headers,
      agent: false,
    });
    this.#req = req;
    let settle!: { resolve: (h: { endAfterMs: number }) => void; reject: (e: Error) => void };
    this.ready = new Promise((resolve, reject) => (settle = { resolve, reject }));
    this.ready.catch(() => {});
    const clock = key.clock;
    const timer = clock.setTimeout(() => {
      this.destroy(
        new AckStreamRefused(
          `no answer to the acknowledgement stream within ${openTimeoutMs} ms`,
          false,
        ),
      );
    }, openTimeoutMs);
    this.#fail = (err: Error) => {
      clock.clearTimeout(timer);
      settle.reject(err);
    };
    req.on('socket', (socket) => {
      socket.setNoDelay(true);
      socket.unref();
    });
    req.on('response', (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        res.resume();
        const status = res.statusCode ?? 0;
        this.destroy(
          new AckStreamRefused(
            `the acknowledgement stream was answered ${status}`,
            status === 404 || status === 405 || status === 415,
          ),
        );
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        this.#text += chunk;
        for (let i = this.#text.indexOf('\n'); i >= 0; i = this.#text.indexOf('\n')) {
          const line = this.#text.slice(0, i);
          this.#text = this.#text.slice(i + 1);
          if (line.trim() !== '')
            this.#line(line, (h) => {
              clock.clearTimeout(timer);
              settle.resolve(h);
            });
          if (this.#over !== undefined) return;
        }
      });
      res.on('end', () => this.destroy(new AckStreamCut('the acknowledgement stream ended')));
      res.on('error', (err) => this.destroy(new AckStreamCut(err.message)));
    });
    req.on('error', (err) => this.destroy(new AckStreamCut(err.message)));
    req.on('close', () => this.destroy(new AckStreamCut('the acknowledgement stream closed')));
    req.flushHeaders();
  }

  #fail: (err: Error) => void;

  #line(line: string, onHello: (h: { endAfterMs: number }) => void): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      this.destroy(new AckStreamCut('the acknowledgement stream sent a line that is not JSON'));
      return;
    }
    if (!this.#hello) {
      if (!isAckStreamHello(parsed)) {
        this.destroy(new AckStreamRefused('the acknowledgement stream did not open', true));
        return;
      }
      this.#hello = true;
      onHello(parsed);
      return;
    }
    const waiter = this.#waiting.shift();
    if (waiter === undefined || !isAckStreamAnswer(parsed)) {
      this.destroy(new AckStreamCut('the acknowledgement stream answered out of turn'));
      return;
    }
    waiter.resolve({ status: parsed.status, text: JSON.stringify(parsed.body) });
    if (this.#ended && this.#waiting.length === 0) this.destroy(new AckStreamCut('ended'));
  }

  /** Sends one body as a line; resolves with its answer. Rejects with AckStreamCut when cut. */
  send(body: string, signal: AbortSignal): Promise<AckAnswerText> {
    if (this.#over !== undefined || this.#ended) {
      return Promise.reject(new AckStreamCut('the acknowledgement stream is over'));
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (a: AckAnswerText) => {
          signal.removeEventListener('abort', onAbort);
          resolve(a);
        },
        reject: (e: Error) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      // Answers come in order: one that did not come in time will not; the stream is given up.
      const onAbort = () => waiter.reject(new Error('acknowledgement abandoned'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
      this.#req.write(`${body}\n`);
    });
  }

  /** No more lines: the body ends; lines sent are still answered, then the stream closes. */
  end(): void {
    if (this.#ended || this.#over !== undefined) return;
    this.#ended = true;
    this.#req.end();
    if (this.#waiting.length === 0) this.destroy(new AckStreamCut('ended'));
  }

  /** Ends the stream now; every line still waiting is rejected with `err`. */
  destroy(err: Error): void {
    if (this.#over !== undefined) return;
    this.#over = err;
    this.#fail(err);
    for (const w of this.#waiting.splice(0)) w.reject(err);
    this.#req.destroy();
    this.#onClosed();
  }
}
