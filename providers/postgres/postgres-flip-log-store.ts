import type pg from 'pg';
import { ErrorCode, KillSwitchError } from '../../src/errors.js';
import type { FlipInput, FlipRecord } from '../../src/model/flip-record.js';
import type {
  AppendResult,
  FlipLogStore,
  LogHead,
  ReadOptions,
  RecordListener,
} from '../../src/store/flip-log-store.js';

/** Options of {@link PostgresFlipLogStore}. */
export interface PostgresFlipLogStoreOptions {
  /** `postgres://user@host:port/db`; give this or `pool`. */
  readonly connectionString?: string;
  /** An existing pool (not ended by `close`); give this or `connectionString`. */
  readonly pool?: pg.Pool;
  /** The PostgreSQL schema holding the log. @default 'killswitch' */
  readonly schema?: string;
  /** Clock for `at`. @default () => new Date() */
  readonly now?: () => Date;
  /** Where warnings go. @default console */
  readonly logger?: { warn(msg: string): void };
}

/** The PostgreSQL flip log (work in progress: the implementation lands in the next commit). */
export class PostgresFlipLogStore implements FlipLogStore {
  readonly kind = 'postgres';

  constructor(_options: PostgresFlipLogStoreOptions) {}

  async open(): Promise<void> {
    throw unavailable();
  }
  async append(_input: FlipInput): Promise<AppendResult> {
    throw unavailable();
  }
  async read(_options?: ReadOptions): Promise<FlipRecord[]> {
    throw unavailable();
  }
  async head(): Promise<LogHead> {
    throw unavailable();
  }
  subscribe(_listener: RecordListener): () => void {
    throw unavailable();
  }
  async close(): Promise<void> {}
}

function unavailable(): KillSwitchError {
  return new KillSwitchError(ErrorCode.STORE_UNAVAILABLE, 'postgres store not implemented yet');
}
