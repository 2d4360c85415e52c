import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import type { KillContext } from '../model/selector.js';

/** How a run's latest execution ended, or `running` while one is under way (or died). KS-10.1.5 */
export const RunStatus = {
  /** Started or resumed, and not ended: running now, or its worker died (resume it). */
  RUNNING: 'running',
  /** The run function resolved. */
  COMPLETED: 'completed',
  /** A halt refused or aborted one of its effects while it ran. */
  HALTED: 'halted',
  /** A halt matched the run before its first effect; nothing ran. */
  REFUSED: 'refused',
  /** An effect's intent has no outcome and the step is not idempotent: a person must decide. */
  IN_DOUBT: 'in-doubt',
  /** The run function rejected for another reason. */
  FAILED: 'failed',
} as const;
/** One of {@link RunStatus}'s values. */
export type RunStatus = (typeof RunStatus)[keyof typeof RunStatus];

/** Statuses an `ended` record may carry (every one but `running`). */
export type RunEndStatus = Exclude<RunStatus, 'running'>;

interface RecordBase {
  readonly runId: string;
  /** ISO 8601 UTC instant the record was written. */
  readonly at: string;
  /** The worker that wrote it. */
  readonly workerId: string;
}

/** A run began; carries what a resume needs: its kill context and its input. */
export interface RunStartedRecord extends RecordBase {
  readonly type: 'started';
  /** The run's kill attributes besides `runId` and `capability` (tenant, feature). */
  readonly context: KillContext;
  /** The run's input (JSON). */
  readonly input?: unknown;
}

/** Another execution of the run began (after a crash, a halt, or on another worker). */
export interface RunResumedRecord extends RecordBase {
  readonly type: 'resumed';
}

/** A step's effect landed; its result is what a resumed run gets back without dispatching. */
export interface RunStepRecord extends RecordBase {
  readonly type: 'step';
  readonly step: string;
  /** The ledger key of the step's effect. */
  readonly key: string;
  /** The step's result (JSON); absent when the step returned nothing. */
  readonly result?: unknown;
  /** True when the result came from the ledger (the effect landed in an earlier execution). */
  readonly fromLedger?: boolean;
}

/** An execution ended. */
export interface RunEndedRecord extends RecordBase {
  readonly type: 'ended';
  readonly status: RunEndStatus;
  /** The step that stopped it, when one did. */
  readonly step?: string;
  /** The flip that halted it, when the provider named one. */
  readonly flipSeq?: number;
  /** The error's code (`KS_HALTED`, `KS_DUPLICATE_EFFECT`, ...), when it had one. */
  readonly code?: string;
  /** What happened, for people. */
  readonly detail?: string;
  /** The run function's result (JSON), on `completed`. */
  readonly output?: unknown;
}

/** One line of the run journal. KS-10.1.2 */
export type RunRecord = RunStartedRecord | RunResumedRecord | RunStepRecord | RunEndedRecord;

const isoInstant = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'must be an ISO 8601 UTC instant');
const name = z.string().min(1, 'must not be empty').max(1024, 'must be at most 1024 characters');
const ctxValue = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');
const base = { runId: name, at: isoInstant, workerId: name };

/** zod schema of a {@link RunRecord}. KS-10.1.2 */
export const runRecordSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('started'),
    ...base,
    context: z.strictObject({
      tenant: ctxValue.optional(),
      feature: ctxValue.optional(),
      // KS-10.1.7: the run's ancestry, so a resume on another worker checks every ancestor.
      runPath: z.array(ctxValue).min(1).max(64).optional(),
    }),
    input: z.unknown().optional(),
  }),
  z.strictObject({ type: z.literal('resumed'), ...base }),
  z.strictObject({
    type: z.literal('step'),
    ...base,
    step: name,
    key: name,
    result: z.unknown().optional(),
    fromLedger: z.boolean().optional(),
  }),
  z.strictObject({
    type: z.literal('ended'),
    ...base,
    status: z.enum(['completed', 'halted', 'refused', 'in-doubt', 'failed']),
    step: name.optional(),
    flipSeq: z.number().int().min(1).optional(),
    code: z.string().max(64).optional(),
    detail: z.string().max(4096).optional(),
    output: z.unknown().optional(),
  }),
]);

/**
 * Validates a record and returns it without undefined fields.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every issue
 */
export function parseRunRecord(input: unknown): RunRecord {
  const r = runRecordSchema.safeParse(input);
  if (!r.success) throw new ValidationError('run record', toIssues(r.error));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r.data)) if (v !== undefined) out[k] = v;
  if (out['type'] === 'started') {
    const c: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(out['context'] as object)) if (v !== undefined) c[k] = v;
    out['context'] = c;
  }
  return out as unknown as RunRecord;
}

/** A landed step as the journal remembers it. */
export interface RunStepState {
  readonly key: string;
  readonly result?: unknown;
  readonly at: string;
  readonly workerId: string;
}

/** The fold of one run's records. KS-10.1.5 */
export interface RunState {
  readonly runId: string;
  readonly context: KillContext;
  readonly input?: unknown;
  readonly status: RunStatus;
  /** Landed steps by name. */
  readonly steps: Readonly<Record<string, RunStepState>>;
  /** Executions so far (the start and each resume). */
  readonly executions: number;
  /** Workers that executed it, in order of first appearance. */
  readonly workers: readonly string[];
  /** The last `ended` record, if any. */
  readonly lastEnd?: RunEndedRecord;
  /** The output of a completed run. */
  readonly output?: unknown;
  /** Time of the first and the last record. */
  readonly startedAt: string;
  readonly updatedAt: string;
}

/**
 * Folds one more record into a run's state. Pure. A record of a run that was never started is
 * ignored (the file can hold runs started elsewhere only through `started`). KS-10.1.5
 */
export function foldRunRecord(state: RunState | undefined, r: RunRecord): RunState | undefined {
  if (state === undefined) {
    if (r.type !== 'started') return undefined;
    return {
      runId: r.runId,
      context: r.context,
      ...('input' in r ? { input: r.input } : {}),
      status: RunStatus.RUNNING,
      steps: {},
      executions: 1,
      workers: [r.workerId],
      startedAt: r.at,
      updatedAt: r.at,
    };
  }
  const workers = state.workers.includes(r.workerId)
    ? state.workers
    : [...state.workers, r.workerId];
  const common = { ...state, workers, updatedAt: r.at };
  switch (r.type) {
    case 'started':
      // A second start of the same id is refused before it is written; ignore one if present.
      return common;
    case 'resumed':
      return { ...common, status: RunStatus.RUNNING, executions: state.executions + 1 };
    case 'step':
      return {
        ...common,
        steps: {
          ...state.steps,
          [r.step]: {
            key: r.key,
            ...('result' in r ? { result: r.result } : {}),
            at: r.at,
            workerId: r.workerId,
          },
        },
      };
    case 'ended':
      return {
        ...common,
        status: r.status,
        lastEnd: r,
        ...(r.status === RunStatus.COMPLETED && 'output' in r ? { output: r.output } : {}),
      };
  }
}

/** Folds records into run states, in order of each run's start. */
export function foldRunRecords(records: Iterable<RunRecord>): Map<string, RunState> {
  const runs = new Map<string, RunState>();
  for (const r of records) {
    const next = foldRunRecord(runs.get(r.runId), r);
    if (next !== undefined) runs.set(r.runId, next);
  }
  return runs;
}
