/**
 * The control plane's route paths (KS-5.1, KS-6). Server routes, the typed client, the remote
 * flip source and the drill take them from here, so a path changes in one place.
 */
export const ApiPath = {
  /** `GET`: liveness and whether the control plane vouches for its state. KS-5.1.9 */
  HEALTH: '/healthz',
  /** `POST`: a flip; `GET`: a page of the log. KS-5.1.1, KS-5.1.2 */
  FLIPS: '/v1/flips',
  /** `GET`: the fleet's answer for one flip (the console). KS-11.1 */
  FLIP_FLEET: '/v1/flips/:seq/fleet',
  /** `GET`: the current kill state. KS-5.1.2 */
  STATE: '/v1/state',
  /** `GET`: the SSE stream. KS-6.1 */
  STREAM: '/v1/stream',
  /** `POST`: acknowledgements. KS-6.2 */
  ACKS: '/v1/acks',
  /** `POST`: acknowledgements as lines of one long-lived request. KS-6.7 */
  ACK_STREAM: '/v1/acks/stream',
  /** `GET`: the fleet. KS-5.1.9 */
  WORKERS: '/v1/workers',
  /** `POST`/`GET`: release verdicts. KS-10.5.1 */
  RELEASES: '/v1/releases',
  /** `GET`: the log's head as a checkpoint, signed when the control plane holds a key. KS-17.7.4 */
  CHECKPOINT: '/v1/checkpoint',
  /** `POST`: Prometheus Alertmanager's webhook. KS-11 */
  ALERTMANAGER: '/v1/alerts/alertmanager',
} as const;
/** One of {@link ApiPath}'s values. */
export type ApiPath = (typeof ApiPath)[keyof typeof ApiPath];

/** Query parameters of `GET /v1/stream`. KS-6.1 */
export const StreamQuery = {
  /** The worker id the stream is opened as (the fleet counts it). */
  WORKER: 'worker',
  /** The release the worker runs. */
  RELEASE: 'release',
  /** `1`: a snapshot even when `Last-Event-ID` is sent. */
  SNAPSHOT: 'snapshot',
} as const;

/** Query parameters of `GET /v1/flips`. KS-5.1.2 */
export const LogQuery = { AFTER: 'after', LIMIT: 'limit' } as const;

/** The request header a stream client resumes by (lower case, as Node gives headers). KS-6.1.4 */
export const LAST_EVENT_ID_HEADER = 'last-event-id';

/** `content-type` of the stream. */
export const STREAM_CONTENT_TYPE = 'text/event-stream; charset=utf-8';

/**
 * Response headers of `GET /v1/stream` (and of `HEAD`, which gets the first two only): never
 * cached, and no proxy buffering (`x-accel-buffering`), so a flip is not held in a buffer.
 */
export const STREAM_HEADERS = Object.freeze({
  'content-type': STREAM_CONTENT_TYPE,
  'cache-control': 'no-store',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
} as const);
