export {
  PostgresFlipLogStore,
  type PostgresFlipLogStoreOptions,
  type PostgresFollowStatus,
} from './postgres-flip-log-store.js';
