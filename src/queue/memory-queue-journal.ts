import type { QueueJournal, QueueJournalRecord } from './queue-journal.js';

/** A journal in memory, for tests and for callers that journal elsewhere. */
export class MemoryQueueJournal implements QueueJournal {
  readonly #records: QueueJournalRecord[] = [];

  async append(record: QueueJournalRecord): Promise<void> {
    this.#records.push(structuredClone(record));
  }

  async appendAll(records: readonly QueueJournalRecord[]): Promise<void> {
    for (const r of records) this.#records.push(structuredClone(r));
  }

  async read(): Promise<QueueJournalRecord[]> {
    return structuredClone(this.#records);
  }

  async close(): Promise<void> {}
}
