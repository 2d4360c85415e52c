/**
 * The wire protocol between the control plane and its clients (spec KS-5, KS-6): route paths and
 * query names, stream event names and headers, request schemas, answer types, and the id and
 * text rules. The server, the typed client, the remote flip source and the drill import it from
 * here, so the two halves of the product cannot drift apart.
 */
export {
  ApiPath,
  StreamQuery,
  LogQuery,
  LAST_EVENT_ID_HEADER,
  STREAM_CONTENT_TYPE,
  STREAM_HEADERS,
} from './paths.js';
export {
  StreamEvent,
  encodeEvent,
  heartbeatSchema,
  sigDataSchema,
  splitSnapshotData,
  type HeartbeatData,
  type SigData,
  type SnapshotData,
} from './stream-events.js';
export {
  Divergence,
  LogDivergedError,
  MAX_LOG_ID_LENGTH,
  describePosition,
  divergence,
  hashSchema,
  logIdSchema,
  logPositionSchema,
  type LogPosition,
} from './log-position.js';
export {
  ackRequestSchema,
  ackAnswerSchema,
  safeParseAck,
  parseAcks,
  workerIdSchema,
  releaseNameSchema,
  MAX_ACK_BATCH,
  MAX_UNENFORCED,
  unenforcedSchema,
  type Unenforced,
  MAX_WORKER_ID_LENGTH,
  MAX_RELEASE_LENGTH,
  MAX_MATCH_REPORTS,
  matchReportSchema,
  type AckRequest,
  type MatchReport,
} from './acks.js';
export {
  flipRequestSchema,
  flipQuerySchema,
  logQuerySchema,
  streamQuerySchema,
  MAX_WAIT_MS,
  type FlipRequest,
} from './flip-request.js';
export type {
  AckAnswer,
  AckedWorker,
  ErrorBody,
  FlipAnswer,
  FleetMatch,
  FlipFleetStatus,
  HealthAnswer,
  Laggard,
  UnenforcedWorker,
  UnknownReplica,
  ReplicaInfo,
  LogAnswer,
  WorkerInfo,
  WorkersAnswer,
} from './answers.js';
export {
  ReleaseStatus,
  releaseRequestSchema,
  type ReleaseRecord,
  type ReleaseRequest,
  type ReleasesAnswer,
} from './releases.js';
export {
  ID_CHARACTERS,
  ID_PATTERN,
  ID_ALPHABET_MESSAGE,
  hasControlCharacters,
  isIdText,
  isSafeText,
  idText,
  safeText,
} from './text.js';
