import type { HaltCause } from '../model/halt-cause.js';
import type { QueueMode } from '../model/flip-record.js';
import { selectorMatches, type KillContext, type Selector } from '../model/selector.js';

/**
 * A task a `discard` halt removed from a queue, with everything needed to enqueue it again.
 * Written (durably) before the task is removed, so no removed task is missing from the journal.
 * KS-7.2.2
 */
export interface DiscardedRecord {
  readonly type: 'discarded';
  /** Unique per record: a void names the discard it cancels. */
  readonly discardId: string;
  readonly queue: string;
  readonly taskId: string;
  readonly name: string;
  readonly payload: unknown;
  readonly context: KillContext;
  /** When the task was first enqueued (ISO 8601). */
  readonly enqueuedAt: string;
  /** The halt that discarded it, when the flag named one. */
  readonly haltSeq?: number;
  readonly haltId?: string;
  readonly mode: QueueMode;
  readonly cause: HaltCause;
  /** When it was journaled (ISO 8601). */
  readonly at: string;
}

/**
 * A discard did not happen after all: a worker took the task (or ran it) before it could be
 * removed. A void cancels exactly the discard record it names (another discarder, such as the
 * worker's admission, may have journaled the same task meanwhile, and that record stands).
 */
export interface VoidRecord {
  readonly type: 'void';
  readonly discardId: string;
  readonly queue: string;
  readonly taskId: string;
  readonly reason: string;
  readonly at: string;
}

/** A discarded task was enqueued again as `newTaskId`. */
export interface RequeuedRecord {
  readonly type: 'requeued';
  readonly queue: string;
  readonly taskId: string;
  readonly newTaskId: string;
  readonly at: string;
}

/** One line of a queue journal. */
export type QueueJournalRecord = DiscardedRecord | VoidRecord | RequeuedRecord;

/**
 * Where discarded tasks are journaled. `append` resolves only once the record is durable (the
 * file journal fsyncs). Default: {@link FileQueueJournal}.
 */
export interface QueueJournal {
  append(record: QueueJournalRecord): Promise<void>;
  /** Appends several records with one sync (a halt journals a whole backlog at once). */
  appendAll(records: readonly QueueJournalRecord[]): Promise<void>;
  /** Every record, in append order. */
  read(): Promise<QueueJournalRecord[]>;
  close(): Promise<void>;
}

/** Which discarded tasks to look at. */
export interface DiscardFilter {
  readonly queue?: string;
  /** Tasks whose context this selector matches. */
  readonly selector?: Selector;
  /** Tasks discarded by this halt. */
  readonly haltSeq?: number;
}

/**
 * Folds a journal to the tasks that are discarded and not yet requeued or voided, in journal
 * order (one per queue and task id: its latest discard).
 */
export function pendingDiscards(
  records: readonly QueueJournalRecord[],
  filter: DiscardFilter = {},
): DiscardedRecord[] {
  // task key -> live discard records of that task, by discardId
  const open = new Map<string, Map<string, DiscardedRecord>>();
  for (const r of records) {
    const k = `${r.queue}\u0000${r.taskId}`;
    if (r.type === 'discarded') {
      const live = open.get(k) ?? new Map<string, DiscardedRecord>();
      open.delete(k); // re-insert: journal order follows the latest discard
      live.set(r.discardId, r);
      open.set(k, live);
    } else if (r.type === 'void') {
      open.get(k)?.delete(r.discardId);
    } else open.delete(k);
  }
  const out: DiscardedRecord[] = [];
  for (const live of open.values()) {
    const latest = [...live.values()].at(-1);
    if (latest !== undefined) out.push(latest);
  }
  return out.filter(
    (r) =>
      (filter.queue === undefined || r.queue === filter.queue) &&
      (filter.selector === undefined || selectorMatches(filter.selector, r.context)) &&
      (filter.haltSeq === undefined || r.haltSeq === filter.haltSeq),
  );
}
