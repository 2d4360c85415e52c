import type { ServerResponse } from 'node:http';
import type { FlipRecord } from '../model/flip-record.js';
import { encodeSkipEvent } from '../protocol/stream-events.js';
import type { ReadView } from './read-view.js';

/** Options of {@link StreamHub}. */
export interface StreamHubOptions {
  /** Disconnect a subscriber with more than this many bytes pending. @default 1048576 */
  readonly maxBufferedBytes: number;
  /** Told when a slow subscriber is dropped. */
  readonly onDrop?: (info: {
    readonly workerId: string | undefined;
    readonly pending: number;
  }) => void;
}

interface Subscriber {
  readonly res: ServerResponse;
  readonly workerId: string | undefined;
  /** Extra bytes allowed while the first write (snapshot or replay) drains; 0 once it has. */
  allowance: number;
  /** A scoped reader's view (KS-17.4.1): flips outside it are sent as `skip` events. */
  readonly view: ReadView | undefined;
  /**
   * The seq of the last flip this subscriber was sent (its snapshot's or replay's head at first):
   * a record streamed early (KS-2.4.9) and broadcast again once durable reaches it once.
   */
  seq: number;
  /**
   * Whether its events go to its socket as chunks framed by the hub (see {@link StreamHub}): its
   * response is chunked and its head was in the socket when it was added.
   */
  readonly framed: boolean;
}

const CRLF = Buffer.from('\r\n', 'latin1');

/** `event` as one HTTP/1.1 chunk (RFC 9112 section 7.1): size in hex, CRLF, the bytes, CRLF. */
function chunkOf(event: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${event.length.toString(16)}\r\n`, 'latin1'), event, CRLF]);
}

/**
 * Whether the hub may write chunks it framed itself straight to the response's socket: the
 * response is chunked and Node already put its head in the socket. Unknown to this Node (the
 * internal flag absent): no, the response writes them.
 */
function framedByHub(res: ServerResponse): boolean {
  return res.chunkedEncoding === true && (res as { _headerSent?: unknown })._headerSent === true;
}

/**
 * The open SSE responses. Each event is encoded once by the caller and the same buffer written to
 * every subscriber (the fan-out costs one write per socket). On a chunked response (HTTP/1.1, the
 * streams' case) the hub frames the event as one chunk once per broadcast and writes that buffer
 * to each socket itself: a response's own write sends four pieces per event (size, CRLF, the
 * bytes, CRLF), corks the socket and queues a tick to uncork it, for every subscriber. It does so
 * only while the response holds nothing of its own (its head sent, no output queued, not ended),
 * so the bytes on the wire are the ones the response would have written, in the same order;
 * otherwise the response writes the event. KS-5.1.12 A subscriber whose socket does not
 * drain is destroyed once more than `maxBufferedBytes` are pending, rather than buffered without
 * bound; it reconnects and resumes by `Last-Event-ID`. KS-6.1.5
 */
export class StreamHub {
  readonly #subs = new Set<Subscriber>();
  readonly #max: number;
  readonly #onDrop: StreamHubOptions['onDrop'];
  #dropped = 0;

  constructor(options: StreamHubOptions) {
    this.#max = options.maxBufferedBytes;
    this.#onDrop = options.onDrop;
  }

  /** Number of open subscribers. */
  get size(): number {
    return this.#subs.size;
  }

  /** Subscribers dropped for reading too slowly, since start. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Adds a subscriber whose headers and first events were already written; it leaves the hub when
   * its response closes.
   *
   * The first write (snapshot or replay, `initialBytes` long) is allowed on top of the bound
   * until it has drained: dropping a subscriber before it could read its snapshot would make it
   * reconnect into the same snapshot forever (a large kill state on a slow link). Once its pending
   * bytes fall under the bound, the bound applies as usual. KS-6.1.5, KS-6.1.6
   *
   * @param seq - the seq its first write (snapshot or replay) brought it to: flips up to it are
   *   not sent to it again (KS-2.4.9)
   */
  add(
    res: ServerResponse,
    workerId: string | undefined,
    onClose: () => void,
    initialBytes = 0,
    view?: ReadView,
    seq = 0,
  ): void {
    const sub: Subscriber = {
      res,
      workerId,
      allowance: initialBytes,
      view,
      seq,
      framed: framedByHub(res),
    };
    this.#subs.add(sub);
    res.once('close', () => {
      this.#subs.delete(sub);
      onClose();
    });
  }

  /**
   * Writes one encoded event to every subscriber, now. A response write only queues the bytes
   * (Node corks the socket and flushes it on the next tick); the broadcast usually runs inside
   * the append's promise chain, so that tick would come only after the flip's own HTTP answer
   * was computed and written. Uncorking here sends each subscriber's bytes during the loop.
   *
   * @param event - the encoded event, the same buffer for every subscriber
   * @param record - the flip it encodes, when it is one: scoped readers that may not read it get
   *   a `skip` event instead (KS-17.4.1); a subscriber already sent this seq (a halt streamed
   *   early, KS-2.4.9, or its snapshot's head) gets nothing
   */
  broadcast(event: Buffer, record?: FlipRecord): void {
    let skip: Buffer | undefined;
    // Each framed once per broadcast, on first use (KS-5.1.12).
    let eventChunk: Buffer | undefined;
    let skipChunk: Buffer | undefined;
    for (const sub of this.#subs) {
      const res = sub.res;
      if (res.destroyed) continue;
      if (record !== undefined) {
        if (record.seq <= sub.seq) continue;
        sub.seq = record.seq;
      }
      // KS-17.4.1 a scoped reader gets the record's position only, encoded once per broadcast.
      const skipped =
        record !== undefined && sub.view !== undefined && !sub.view.mayRead(record.selector);
      if (skipped) skip ??= encodeSkipEvent(record);
      const socket = res.socket;
      if (
        sub.framed &&
        socket != null &&
        socket.writable &&
        !res.writableEnded &&
        res.writableLength === socket.writableLength
      ) {
        socket.write(skipped ? (skipChunk ??= chunkOf(skip!)) : (eventChunk ??= chunkOf(event)));
      } else res.write(skipped ? skip! : event);
      // Sent now, not on the tick Node would uncork a corked socket on.
      if ((socket?.writableCorked ?? 0) > 0) socket?.uncork();
      this.#check(sub);
    }
  }

  /** Ends every stream (server shutdown). */
  closeAll(): void {
    for (const sub of this.#subs) sub.res.end();
    this.#subs.clear();
  }

  #check(sub: Subscriber): boolean {
    // writableLength counts what the response and its socket still hold: bytes the peer did not read.
    const pending = sub.res.writableLength;
    if (pending <= this.#max) {
      sub.allowance = 0;
      return true;
    }
    if (pending <= this.#max + sub.allowance) return true;
    this.#subs.delete(sub);
    this.#dropped++;
    sub.res.destroy();
    this.#onDrop?.({ workerId: sub.workerId, pending });
    return false;
  }
}
