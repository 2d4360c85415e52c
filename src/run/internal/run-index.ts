import { foldRunRecord, type RunRecord, type RunState } from '../run-record.js';

/** The records of a journal and the fold of each run, kept up to date per record. */
export class RunIndex {
  #records: RunRecord[] = [];
  readonly #runs = new Map<string, RunState>();

  apply(r: RunRecord): void {
    this.#records.push(r);
    const next = foldRunRecord(this.#runs.get(r.runId), r);
    if (next !== undefined) this.#runs.set(r.runId, next);
  }

  run(runId: string): RunState | undefined {
    return this.#runs.get(runId);
  }

  runs(): RunState[] {
    return [...this.#runs.values()];
  }

  records(runId?: string): RunRecord[] {
    return runId === undefined
      ? [...this.#records]
      : this.#records.filter((r) => r.runId === runId);
  }

  clear(): void {
    this.#records = [];
    this.#runs.clear();
  }
}
