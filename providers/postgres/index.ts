export {
  PostgresFlipLogStore,
  type PostgresFlipLogStoreOptions,
} from './postgres-flip-log-store.js';
