import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { KillSwitchError, ErrorCode, ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import {
  levelOf,
  normalizeSelector,
  selectorSchema,
  type Level,
  type Selector,
} from '../model/selector.js';

const name = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9._-]+$/, 'must use only letters, digits and ._-');

const ms = (min: number, max: number) => z.number().int().min(min).max(max);

/**
 * A run tree: one root run in one worker fans out child runs over every worker (DESIGN section 2),
 * so a lever on the root's run id measures a halt on a whole tree. The root spawns its children
 * (`spawnChildRun`, a guarded effect) round-robin over the workers; each child's lineage crosses
 * to its worker with the work and lands in that worker's tree queue, which runs `concurrency` child
 * runs at once (the rest wait queued). Running children emit effects with retries and wait on a
 * follow-up timer after each; every `grandchildEvery`-th child a worker receives spawns one grandchild on
 * the next worker. After
 * a halt on the root is lifted the root spawns the same children again (same steps, same ids).
 * KS-9.1.6
 */
export const treeSchema = z.strictObject({
  /** The root run's id: a lever with `{ runId: rootRunId }` halts the whole tree. @default 'tree' */
  rootRunId: name.default('tree'),
  /** The worker the root run lives in. @default 'w1' */
  rootWorker: z
    .string()
    .regex(/^w\d+$/, 'must be a worker id (w1, w2, ...)')
    .default('w1'),
  /** Child runs the root spawns, spread round-robin over every worker. @default 32 */
  children: z.number().int().min(1).max(1_000).default(32),
  /** Every n-th child a worker receives spawns one grandchild on the next worker; 0 for none. @default 2 */
  grandchildEvery: z.number().int().min(0).max(1_000).default(2),
  /** Child runs a worker runs at once; the others wait in its tree queue. @default 2 */
  concurrency: z.number().int().min(1).max(64).default(2),
  /** The follow-up timer a running child waits on after each effect, ms. @default 1000 */
  followUpMs: ms(1, 600_000).default(1_000),
});

/** Shape of the synthetic agent traffic every drill worker runs. KS-9.1.2 */
export const trafficSchema = z.strictObject({
  /** Tenants the runs are spread over (at least two, so a tenant halt has a cohort left). */
  tenants: z.array(name).min(2).max(32),
  /** Features the runs are spread over. */
  features: z.array(name).min(2).max(32),
  /** Tool capabilities the runs call (each effect goes to the sink). */
  capabilities: z.array(name).min(2).max(32),
  /** Concurrent agent runs per worker. @default 4 */
  runsPerWorker: z.number().int().min(1).max(64).default(4),
  /** Pause between the steps of a run, in ms. @default 20 */
  stepPauseMs: ms(0, 60_000).default(20),
  /** A halted run re-checks its kill flag this often, in ms. @default 50 */
  parkMs: ms(1, 60_000).default(50),
  /** The slow LLM: tokens per answer and the gap between tokens (ms). */
  llm: z
    .strictObject({
      tokens: z.number().int().min(1).max(10_000).default(6),
      tokenIntervalMs: ms(0, 60_000).default(15),
    })
    .prefault({}),
  /** Work a tool does before it emits its effect (an abortable wait), in ms. @default 10 */
  toolLatencyMs: ms(0, 60_000).default(10),
  /** Share of first attempts the sink rejects (503), so retries with back-off happen. @default 0.1 */
  failureRate: z.number().min(0).max(0.9).default(0.1),
  /** Retry back-off: base delay (ms, doubled per attempt) and attempts in all. */
  retry: z
    .strictObject({
      baseMs: ms(1, 600_000).default(60),
      maxAttempts: z.number().int().min(1).max(20).default(4),
    })
    .prefault({}),
  /** A scheduled follow-up timer every `everySteps` steps, firing after `delayMs`. */
  timers: z
    .strictObject({
      everySteps: z.number().int().min(1).max(1_000).default(3),
      delayMs: ms(1, 3_600_000).default(250),
    })
    .prefault({}),
  /** A queued task every `enqueueEverySteps` steps; the consumer takes one every `consumeEveryMs`. */
  queue: z
    .strictObject({
      enqueueEverySteps: z.number().int().min(1).max(1_000).default(2),
      consumeEveryMs: ms(1, 60_000).default(100),
      /** Back-pressure: producers skip enqueueing while this many tasks wait. @default 40 */
      maxDepth: z.number().int().min(1).max(100_000).default(40),
    })
    .prefault({}),
  /** A run tree for a run-tree lever (absent: no tree). */
  tree: treeSchema.optional(),
});

/** One lever of a scenario: a halt on a selector, then (optionally) its gated resume. KS-9.1.3 */
export const leverSchema = z.strictObject({
  /** A label for progress lines and the report (defaults to the selector's level). */
  label: name.optional(),
  /** What to halt. Its level (capability, run, tenant, feature, global) is derived from it. */
  selector: selectorSchema,
  /** Queue policy of the halt. @default the scenario's `queueMode` */
  mode: z.enum(['discard', 'hold', 'drain']).optional(),
  /**
   * The resume that follows. `release` names the release the resume is gated on; it is optional
   * until the release gate exists (the control plane then decides whether a resume needs one).
   * `false` leaves the halt in place (only sensible for the last lever).
   */
  resume: z.union([z.literal(false), z.strictObject({ release: name.optional() })]).default({}),
});

/** Pass/fail thresholds. KS-9.3.4 */
export const targetsSchema = z
  .strictObject({
    /** Matching effects dispatched after the stop was complete. @default 0 */
    maxEffectsAfterComplete: z.number().int().min(0).default(0),
    /** p99 of time-to-stop (flip accepted -> worker applied) per level, in ms. @default 50 */
    p99TimeToStopMs: z.number().positive().default(50),
    /** Retries and timers of a halted context that fire after their worker applied the halt. @default 0 */
    maxFiresAfterApplied: z.number().int().min(0).default(0),
    /** Every sink effect is in a ledger, no ledger landing is unseen, no orphan rows. @default true */
    ledgerConsistent: z.boolean().default(true),
    /**
     * Non-matching cohorts keep flowing while a halt is active: no refusals for them, and their
     * effect rate stays at least this share of the rate before the flip. @default 0.3
     */
    minOtherCohortRate: z.number().min(0).max(1).default(0.3),
    /**
     * A lever on the run tree's root must find at least this many of its descendants alive at the
     * flip (running, queued or waiting), on every worker: a small tree would pass by luck. @default 30
     */
    minTreeRuns: z.number().int().min(1).default(30),
  })
  .prefault({});

/** Timings of each lever, all in ms. */
export const timingsSchema = z
  .strictObject({
    /** Traffic runs this long before the first lever (and after each resume). @default 1500 */
    warmupMs: ms(0, 3_600_000).default(1_500),
    /** N of "T+N": how long a halt stays before its resume; queue depth is read at T+0 and T+N. @default 60000 */
    observeMs: ms(100, 3_600_000).default(60_000),
    /** Bound of the flip's `wait` for the fleet's acknowledgements. @default 5000 */
    waitMs: ms(100, 120_000).default(5_000),
    /** Before a lever every expected worker must have acknowledged within this. @default 3000 */
    freshWithinMs: ms(100, 600_000).default(3_000),
    /** How long to wait for workers to connect before the first lever. @default 15000 */
    connectTimeoutMs: ms(100, 600_000).default(15_000),
  })
  .prefault({});

/** zod schema of a drill scenario file (`spec/drills/*.json`). KS-9.1.1 */
export const scenarioSchema = z
  .strictObject({
    $schema: z.string().optional(),
    name,
    description: z.string().max(2_000).optional(),
    /** Worker processes. @default 8 */
    workers: z.number().int().min(1).max(64).default(8),
    /** Default queue policy of every halt. @default 'discard' */
    queueMode: z.enum(['discard', 'hold', 'drain']).default('discard'),
    /** Seed of the traffic's pseudo-random choices (failures), so a drill replays. @default 1 */
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .default(1),
    traffic: trafficSchema,
    /**
     * The gateway path (KS-9.7): one more fleet member, a kill-switch gateway in front of the slow
     * LLM and an MCP upstream whose tools land effects in the sink, with an agent that knows
     * nothing of the kill switch calling through it (`traffic.runsPerWorker` runs). Its worker
     * id is counted in every lever's time-to-stop and effects like a worker's. Absent: no gateway.
     */
    gateway: z
      .strictObject({
        /** The gateway's worker id. @default 'gw1' */
        workerId: name.regex(/^(?!w\d+$)/, 'must not be a worker id (w1, w2, ...)').default('gw1'),
      })
      .optional(),
    timings: timingsSchema,
    levers: z.array(leverSchema).min(1).max(64),
    targets: targetsSchema,
  })
  .superRefine((s, ctx) => {
    // A lever that matches no traffic measures nothing and would pass by luck: refuse it.
    s.levers.forEach((l, i) => {
      const sel = l.selector;
      const check = (key: 'tenant' | 'feature' | 'capability', list: readonly string[]) => {
        const v = sel[key];
        if (v !== undefined && !list.includes(v)) {
          ctx.addIssue({
            code: 'custom',
            path: ['levers', i, 'selector', key],
            message: `'${v}' is not one of traffic.${key === 'tenant' ? 'tenants' : key === 'feature' ? 'features' : 'capabilities'}`,
          });
        }
      };
      check('tenant', s.traffic.tenants);
      check('feature', s.traffic.features);
      check('capability', s.traffic.capabilities);
      if (
        sel.runId !== undefined &&
        sel.runId !== s.traffic.tree?.rootRunId &&
        !isDrillRun(sel.runId, s.workers, s.traffic.runsPerWorker)
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['levers', i, 'selector', 'runId'],
          message: `'${sel.runId}' is not a drill run (w<1..${s.workers}>-r<0..${s.traffic.runsPerWorker - 1}>${s.traffic.tree ? ` or the tree root ${s.traffic.tree.rootRunId}` : ''})`,
        });
      }
    });
    const tree = s.traffic.tree;
    if (tree !== undefined) {
      const w = Number(tree.rootWorker.slice(1));
      if (w < 1 || w > s.workers) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'tree', 'rootWorker'],
          message: `'${tree.rootWorker}' is not one of the ${s.workers} workers`,
        });
      }
      if (isDrillRun(tree.rootRunId, s.workers, s.traffic.runsPerWorker)) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'tree', 'rootRunId'],
          message: `'${tree.rootRunId}' is the id of a plain drill run`,
        });
      }
    }
  });

/** A validated scenario with every default applied. */
export type Scenario = z.output<typeof scenarioSchema>;
/** A validated lever. */
export type Lever = z.output<typeof leverSchema>;
/** A validated traffic shape. */
export type Traffic = z.output<typeof trafficSchema>;
/** A validated run tree. */
export type TreeShape = z.output<typeof treeSchema>;
/** Validated targets. */
export type Targets = z.output<typeof targetsSchema>;

/** The id of drill worker `i` (1-based), e.g. `w3`. */
export function workerIdOf(i: number): string {
  return `w${i}`;
}

/** The id of run `j` (0-based) of a drill worker, e.g. `w3-r0`. */
export function runIdOf(workerId: string, j: number): string {
  return `${workerId}-r${j}`;
}

function isDrillRun(runId: string, workers: number, runsPerWorker: number): boolean {
  const m = /^w(\d+)-r(\d+)$/.exec(runId);
  if (!m) return false;
  const w = Number(m[1]);
  const r = Number(m[2]);
  return w >= 1 && w <= workers && r >= 0 && r < runsPerWorker;
}

/** Whether a lever halts the scenario's run tree (its root's run id): a run-tree lever. */
export function isTreeLever(lever: Lever, s: Scenario): boolean {
  const root = s.traffic.tree?.rootRunId;
  return root !== undefined && lever.selector.runId === root;
}

/** A lever's selector, normalised, and its level. */
export function leverTarget(lever: Lever): { selector: Selector; level: Level; label: string } {
  const selector = normalizeSelector(lever.selector);
  const level = levelOf(selector);
  return { selector, level, label: lever.label ?? level };
}

/**
 * Validates a scenario and applies defaults.
 *
 * @param input - parsed JSON
 * @param overrides - command-line overrides (`--workers`)
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every issue
 * @example parseScenario(JSON.parse(text), { workers: 4 })
 */
export function parseScenario(
  input: unknown,
  overrides: { readonly workers?: number } = {},
): Scenario {
  const merged =
    overrides.workers !== undefined && typeof input === 'object' && input !== null
      ? { ...(input as Record<string, unknown>), workers: overrides.workers }
      : input;
  const r = scenarioSchema.safeParse(merged);
  if (!r.success) throw new ValidationError('drill scenario', toIssues(r.error));
  return r.data;
}

/**
 * Reads and validates a scenario file.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a bad scenario
 * @throws {KillSwitchError} `KS_INVALID_INPUT` when the file cannot be read or is not JSON
 */
export async function loadScenario(
  path: string,
  overrides: { readonly workers?: number } = {},
): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new KillSwitchError(
      ErrorCode.INVALID_INPUT,
      `cannot read scenario ${path}: ${(err as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new KillSwitchError(
      ErrorCode.INVALID_INPUT,
      `scenario ${path} is not JSON: ${(err as Error).message}`,
    );
  }
  return parseScenario(json, overrides);
}
