import { readFile } from 'node:fs/promises';
import { foldLedgerEvents, parseLedgerEvent } from '../../ledger/side-effect-ledger.js';
import { SPAWN_CAPABILITY } from '../../scope/spawn-child-run.js';
import { type LedgerView } from '../measure/measure.js';

/**
 * Reads worker ledgers as {@link LedgerView}s, read-only: a live worker may still be appending
 * (fleet mode), so the file is never opened for writing (opening a FileSideEffectLedger would cut
 * a torn tail under the writer). A last line without its newline is being written and is skipped;
 * any other bad line makes the ledger unreadable, which fails the check.
 */
export async function readLedgers(
  files: readonly { workerId: string; path: string }[],
): Promise<{ views: LedgerView[]; unreadable: string[] }> {
  const views: LedgerView[] = [];
  const unreadable: string[] = [];
  for (const f of files) {
    try {
      const text = await readFile(f.path, 'utf8');
      const complete = text.slice(0, text.lastIndexOf('\n') + 1);
      const events = complete
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l, i) => {
          try {
            return parseLedgerEvent(JSON.parse(l));
          } catch (err) {
            throw new Error(`line ${i + 1}: ${(err as Error).message}`);
          }
        });
      for (const e of foldLedgerEvents(events)) {
        // A run-tree spawn is an effect on the tree, not on the sink: the tree figures check it.
        if (e.capability === SPAWN_CAPABILITY) continue;
        // A model call through the drill's gateway (KS-9.7) is an effect on the LLM, not on the
        // sink: the sink checks the gateway's tool calls. (A literal: the gateway's modules load
        // prom-client, an optional peer the drill does not need.)
        if (e.step?.startsWith('llm:') === true) continue;
        views.push({
          key: e.key,
          workerId: f.workerId,
          statuses: e.history.map((h) => h.status),
          context: e.context,
        });
      }
    } catch (err) {
      unreadable.push(`${f.path}: ${(err as Error).message}`);
    }
  }
  return { views, unreadable };
}
