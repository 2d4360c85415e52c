export {
  PostgresFlipLogStore,
  type PostgresFlipLogStoreOptions,
  type PostgresFollowStatus,
} from './postgres-flip-log-store.js';
export { servingRoleGrantsSql, SCHEMA_VERSION } from './internal/schema-sql.js';
