import type { QueueJournal, QueueJournalRecord } from './queue-journal.js';

/** A journal in memory, for tests and for callers that journal elsewhere. */
export class MemoryQueueJournal implements QueueJournal {
  readonly #records: QueueJournalRecord[] = [];

  async append(record: QueueJournalRecord): Promise<void> {
    this.#records.push(structuredClone(record));
  }

  async read(): Promise<QueueJournalRecord[]> {
    return structuredClone(this.#records);
  }

  async close(): Promise<void> {}
}
