export type {
  FlipLogStore,
  AppendResult,
  LogHead,
  ReadOptions,
  RecordListener,
} from './flip-log-store.js';
export { verifyChain } from './verify-chain.js';
export { logIdFor } from './log-id.js';
