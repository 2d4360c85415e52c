import { authorize } from '../../auth/principal.js';
import type { WorkerClaims } from '../../auth/worker-claims.js';
import { streamQuerySchema } from '../../protocol/flip-request.js';
import { ApiPath, LAST_EVENT_ID_HEADER, STREAM_HEADERS } from '../../protocol/paths.js';
import type { SnapshotData } from '../../protocol/stream-events.js';
import type { FleetTracker } from '../fleet-tracker.js';
import type { FlipLimits } from '../flip-limits.js';
import type { LogFollower } from '../log-follower.js';
import type { Route } from '../router.js';
import type { SharedSnapshot } from '../shared-snapshot.js';
import type { StreamCredentials } from '../stream-credentials.js';
import type { StreamHub } from '../stream-hub.js';
import type { StreamLimits } from '../stream-limits.js';
import { ANONYMOUS, byteLength, parseQuery } from './route-support.js';
import { readViewOf, snapshotFor } from '../read-view.js';

/** How long a stream resuming at a halt streamed early waits for it to be durable. KS-2.4.9 */
const EARLY_WAIT_MS = 1000;

/** What {@link streamRoutes} uses of the control plane. */
export interface StreamRouteParts {
  /** The log followed: its state, replay ring and identity. */
  readonly follower: LogFollower;
  /** This replica's workers (a stream naming a worker counts as its connection). */
  readonly tracker: FleetTracker;
  /** Which token acts as which worker id (KS-5.2.9). */
  readonly claims: WorkerClaims;
  /** The bound on workers (KS-17.8.4). */
  readonly limits: FlipLimits;
  /** Stream slots in total and per token (KS-17.8.2). */
  readonly streamLimits: StreamLimits;
  /** The tokens streams were opened with, to end them on revocation (KS-17.6.1). */
  readonly streamCredentials: StreamCredentials;
  /** One encoded snapshot per seq, shared by every stream that opens on it. */
  readonly sharedSnapshot: SharedSnapshot;
  /** The open streams. */
  readonly hub: StreamHub;
  /** The `retry:` the stream announces (ms). */
  readonly retryMs: number;
  /** The most a subscriber may have pending (bytes, KS-6.1.5). */
  readonly maxBufferedBytes: number;
  /** Throws 503 unless the control plane vouches for its state (KS-12.5.2). */
  requireVouching(): void;
  /**
   * How long a stream resuming beyond this replica's head waits for its log to catch up before it
   * gets a snapshot (KS-6.1.4): on a log other replicas append to, a replica a few records behind
   * is ordinary. 0 where nobody else appends (the file and memory stores). @default 0
   */
  readonly catchUpMs?: number;
}

/**
 * `GET /v1/stream` (any authenticated role; `?worker=` acts as that worker): a `snapshot` event or
 * the missed `flip` events after `Last-Event-ID`, then every flip and heartbeat. KS-6.1
 */
export function streamRoutes(p: StreamRouteParts): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.STREAM,
      auth: 'authenticated',
      handle: async ({ req, res, url, principal }) => {
        const q = parseQuery(streamQuerySchema, url, 'stream query');
        const who = principal ?? ANONYMOUS;
        authorize(who, { kind: 'read' });
        // KS-5.2.9: streaming as a worker id is acting as it (the fleet counts the connection).
        if (q.worker !== undefined) {
          p.claims.check(who, q.worker);
          // KS-17.8.4: a new worker beyond maxWorkers is refused; none is dropped.
          if (!p.tracker.has(q.worker)) p.limits.checkNewWorker(p.tracker.size, q.worker);
        }
        const lastId = req.headers[LAST_EVENT_ID_HEADER];
        const s =
          typeof lastId === 'string' && /^\d{1,16}$/.test(lastId.trim())
            ? Number(lastId.trim())
            : undefined;
        // KS-6.1.4 a client resuming beyond this replica's head (it came from a replica ahead on
        // the same shared log): wait, bounded, for the log to reach it, then replay exactly.
        // KS-2.4.9 likewise a worker resuming at a halt streamed early, before it is durable.
        const early = p.follower.earlyHead;
        const catchUpMs =
          s !== undefined && early !== undefined && s <= early
            ? Math.max(p.catchUpMs ?? 0, EARLY_WAIT_MS)
            : (p.catchUpMs ?? 0);
        if (q.snapshot !== '1' && s !== undefined && s > p.follower.state.seq && catchUpMs > 0) {
          await p.follower.waitApplied(s, undefined, catchUpMs);
          if (req.destroyed || res.destroyed) return;
        }
        p.requireVouching();
        // KS-17.4.1 a scoped reader's stream: its own snapshot, skips for what it may not read.
        // A stream acting as a worker reads everything (a worker enforces every halt, KS-17.2.1).
        const view = q.worker === undefined ? readViewOf(who) : undefined;
        const state = p.follower.state;
        const head = state.seq;
        const chunks: Buffer[] = [Buffer.from(`retry: ${p.retryMs}\n\n`)];
        // KS-6.1.4: replay exactly what was missed; KS-6.1.6: a snapshot when that is out of reach.
        // A scoped reader always starts from its snapshot: the replay ring holds unfiltered events.
        const replay =
          q.snapshot !== '1' && s !== undefined && view === undefined
            ? p.follower.replaySince(s, head)
            : undefined;
        // A replay bigger than a subscriber may have pending would be dropped at the next write
        // and start over: a snapshot (the active halts only) resynchronises it instead.
        if (replay !== undefined && byteLength(replay) <= p.maxBufferedBytes) {
          chunks.push(...replay);
        } else {
          // KS-17.8.2: one encoded snapshot per seq, shared by every stream that opens on it.
          // KS-6.4.1 it names the log it is of.
          chunks.push(
            p.sharedSnapshot.get(head, view?.key ?? '*', (): SnapshotData => ({
              ...snapshotFor(state.toSnapshot(), view),
              logId: p.follower.logId,
            })),
          );
        }
        if (req.method === 'HEAD') {
          // A HEAD must not become a subscriber that never receives a body.
          res.writeHead(200, {
            'content-type': STREAM_HEADERS['content-type'],
            'cache-control': STREAM_HEADERS['cache-control'],
          });
          res.end();
          return;
        }
        // KS-17.8.2: a slot, or 429 before anything is written or tracked.
        const freeSlot = p.streamLimits.acquire(who.name, q.worker, () => res.destroy());
        req.socket.setNoDelay(true);
        res.writeHead(200, STREAM_HEADERS);
        // Each chunk written as is: the snapshot and replayed events are shared buffers.
        res.socket?.cork();
        for (const c of chunks) res.write(c);
        res.socket?.uncork();
        const unhold = p.streamCredentials.hold(who, () => res.destroy());
        let disconnect: () => void = () => {
          freeSlot();
          unhold();
        };
        if (q.worker !== undefined) {
          const untrack = p.tracker.connect(q.worker, q.release);
          const release = p.claims.open(who, q.worker);
          disconnect = () => {
            freeSlot();
            unhold();
            untrack();
            release();
          };
        }
        p.hub.add(res, q.worker, disconnect, byteLength(chunks), view, head);
      },
    },
  ];
}
