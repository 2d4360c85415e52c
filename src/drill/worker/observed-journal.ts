import type { QueueJournal, QueueJournalRecord } from '../../queue/queue-journal.js';

/** A queue journal that tells the worker what was appended, after it is durable. */
export class ObservedJournal implements QueueJournal {
  readonly #inner: QueueJournal;
  readonly #onAppend: (records: readonly QueueJournalRecord[]) => Promise<void>;
  constructor(
    inner: QueueJournal,
    onAppend: (records: readonly QueueJournalRecord[]) => Promise<void>,
  ) {
    this.#inner = inner;
    this.#onAppend = onAppend;
  }
  async append(record: QueueJournalRecord): Promise<void> {
    await this.#inner.append(record);
    await this.#onAppend([record]);
  }
  async appendAll(records: readonly QueueJournalRecord[]): Promise<void> {
    await this.#inner.appendAll(records);
    await this.#onAppend(records);
  }
  read(): Promise<QueueJournalRecord[]> {
    return this.#inner.read();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}
