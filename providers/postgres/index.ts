export {
  PostgresFlipLogStore,
  type PostgresFlipLogStoreOptions,
  type PostgresFollowStatus,
  type PostgresStoreTimers,
} from './postgres-flip-log-store.js';
