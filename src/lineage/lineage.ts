import { z } from 'zod';
import { ValidationError, type ValidationIssue } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import { ID_ALPHABET_MESSAGE, ID_PATTERN, isIdText } from '../protocol/text.js';

/**
 * The deepest run tree a lineage may describe: a run path of at most this many run ids, root
 * first. Deeper paths are refused (KS-1.6.2) so a forged header cannot make every evaluation
 * probe an unbounded list. KS-1.5.4
 */
export const MAX_RUN_DEPTH = 64;

/** The longest run id, tenant or feature a lineage may carry (characters). KS-1.6.2 */
export const MAX_LINEAGE_ID_LENGTH = 128;

/**
 * The longest header value or baggage header this module reads (characters). A run path at full
 * depth with ids at full length fits (64 x 129); a W3C `baggage` header is 8192 bytes at most.
 */
export const MAX_LINEAGE_TEXT_LENGTH = 9000;

/**
 * Where a run's lineage travels with its work (DESIGN section 2): the MCP `_meta` key, the HTTP
 * headers, the W3C `baggage` keys and the queue job data field. One home for these names, so the
 * gateway, the queues and the tool services cannot drift apart. KS-1.6.1
 */
export const LineageWire = {
  /** MCP `params._meta[META_KEY]` = `{ tenant?, feature?, runPath }`. */
  META_KEY: 'dev.killswitch/lineage',
  /** HTTP header: the tenant. */
  TENANT_HEADER: 'x-killswitch-tenant',
  /** HTTP header: the feature. */
  FEATURE_HEADER: 'x-killswitch-feature',
  /** HTTP header: the run ids from the root to the run itself, comma-joined. */
  RUN_PATH_HEADER: 'x-killswitch-run-path',
  /** The W3C baggage header. */
  BAGGAGE_HEADER: 'baggage',
  /** Baggage key: the tenant. */
  BAGGAGE_TENANT: 'killswitch.tenant',
  /** Baggage key: the feature. */
  BAGGAGE_FEATURE: 'killswitch.feature',
  /** Baggage key: the run path, comma-joined root to self (percent-encoded as baggage values are). */
  BAGGAGE_RUN_PATH: 'killswitch.run_path',
  /** Queue job data field holding the lineage object. */
  JOB_FIELD: 'lineage',
} as const;

/**
 * The portable lineage of a unit of work: who it runs for and where it sits in its run tree.
 * `runPath` lists the run ids from the root run to this run (its own id last); empty when the
 * work belongs to no run. Children inherit tenant and feature. KS-1.6.1
 */
export interface Lineage {
  readonly tenant?: string;
  readonly feature?: string;
  /** Run ids from the root to this run, its own id last; at most {@link MAX_RUN_DEPTH}. */
  readonly runPath: readonly string[];
}

/**
 * The evaluation-context attributes a lineage stands for: `runId` is the last element of
 * `runPath` (absent when the path is empty).
 */
export interface LineageContext {
  readonly tenant?: string;
  readonly feature?: string;
  readonly runId?: string;
  readonly runPath?: readonly string[];
}

const lineageId = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_LINEAGE_ID_LENGTH, `must be at most ${MAX_LINEAGE_ID_LENGTH} characters`)
  .regex(ID_PATTERN, ID_ALPHABET_MESSAGE);

/** zod schema of a lineage object (MCP `_meta` value, queue job data field). KS-1.6.2 */
export const lineageSchema = z
  .strictObject({
    tenant: lineageId.optional(),
    feature: lineageId.optional(),
    runPath: z.array(lineageId).max(MAX_RUN_DEPTH, `must be at most ${MAX_RUN_DEPTH} run ids deep`),
  })
  .superRefine((l, ctx) => {
    const seen = new Set<string>();
    l.runPath.forEach((id, i) => {
      if (seen.has(id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['runPath', i],
          message: `run id ${id} appears twice (a run cannot be its own ancestor)`,
        });
      }
      seen.add(id);
    });
  });

/**
 * Validates a lineage object, as it arrives in MCP `_meta` or in queue job data.
 *
 * @param input - anything (parsed JSON)
 * @returns a frozen lineage (a frozen copy of its run path)
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every problem: unknown keys, an id that is
 *   empty, too long or outside the id alphabet (so no control character), a path deeper than
 *   {@link MAX_RUN_DEPTH}, a run id repeated
 * @example parseLineage({ tenant: 'acme', runPath: ['root', 'child'] })
 */
export function parseLineage(input: unknown): Lineage {
  const r = lineageSchema.safeParse(input);
  if (!r.success) throw new ValidationError('lineage', toIssues(r.error));
  return freeze(r.data);
}

/** Like {@link parseLineage}, returning the issues instead of throwing. */
export function safeParseLineage(
  input: unknown,
): { ok: true; lineage: Lineage } | { ok: false; error: ValidationError } {
  try {
    return { ok: true, lineage: parseLineage(input) };
  } catch (e) {
    if (e instanceof ValidationError) return { ok: false, error: e };
    throw e;
  }
}

function freeze(l: {
  tenant?: string | undefined;
  feature?: string | undefined;
  runPath: readonly string[];
}): Lineage {
  const out: { tenant?: string; feature?: string; runPath: readonly string[] } = {
    runPath: Object.freeze([...l.runPath]),
  };
  if (l.tenant !== undefined) out.tenant = l.tenant;
  if (l.feature !== undefined) out.feature = l.feature;
  return Object.freeze(out);
}

/**
 * The comma-joined form of a run path (root first), as the `x-killswitch-run-path` header and the
 * `killswitch.run_path` baggage value carry it. Ids cannot contain commas (id alphabet).
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a path that would not parse back
 */
export function formatRunPath(runPath: readonly string[]): string {
  parseLineage({ runPath });
  return runPath.join(',');
}

/**
 * Parses a comma-joined run path. The empty string is the empty path.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for text too long, an empty element (`a,,b`), an
 *   element with white space or control characters, too deep a path, a repeated id
 */
export function parseRunPath(text: string, what = 'run path'): readonly string[] {
  if (typeof text !== 'string') {
    throw new ValidationError(what, [{ path: [], message: 'must be a string' }]);
  }
  if (text.length > MAX_LINEAGE_TEXT_LENGTH) {
    throw new ValidationError(what, [
      { path: [], message: `must be at most ${MAX_LINEAGE_TEXT_LENGTH} characters` },
    ]);
  }
  if (text === '') return Object.freeze([]);
  const parts = text.split(',');
  if (parts.length > MAX_RUN_DEPTH) {
    throw new ValidationError(what, [
      {
        path: [],
        message: `must be at most ${MAX_RUN_DEPTH} run ids deep, received ${parts.length}`,
      },
    ]);
  }
  const r = lineageSchema.safeParse({ runPath: parts });
  if (!r.success) throw new ValidationError(what, toIssues(r.error));
  return Object.freeze(r.data.runPath);
}

/**
 * The evaluation context a lineage stands for: tenant, feature, `runId` (the path's last element)
 * and `runPath`. Spread it into an OpenFeature evaluation context or a guard context.
 */
export function lineageContext(lineage: Lineage): LineageContext {
  const out: { tenant?: string; feature?: string; runId?: string; runPath?: readonly string[] } =
    {};
  if (lineage.tenant !== undefined) out.tenant = lineage.tenant;
  if (lineage.feature !== undefined) out.feature = lineage.feature;
  const n = lineage.runPath.length;
  if (n > 0) {
    out.runId = lineage.runPath[n - 1]!;
    out.runPath = lineage.runPath;
  }
  return out;
}

/**
 * The lineage of an evaluation context that names `runId` and optionally `runPath`.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` when `runPath` does not end with `runId`, or any
 *   part is malformed
 */
export function lineageOfContext(ctx: {
  readonly tenant?: string | undefined;
  readonly feature?: string | undefined;
  readonly runId?: string | undefined;
  readonly runPath?: readonly string[] | undefined;
}): Lineage {
  const runPath = ctx.runPath ?? (ctx.runId === undefined ? [] : [ctx.runId]);
  const l = parseLineage(dropUndefined({ tenant: ctx.tenant, feature: ctx.feature, runPath }));
  const last = l.runPath[l.runPath.length - 1];
  if (ctx.runId !== undefined && last !== ctx.runId) {
    throw new ValidationError('lineage', [
      { path: ['runPath'], message: `must end with the context's runId ${ctx.runId}` },
    ]);
  }
  if (ctx.runId === undefined && last !== undefined) {
    throw new ValidationError('lineage', [
      { path: ['runId'], message: `must be present (runPath ends with ${last})` },
    ]);
  }
  return l;
}

function dropUndefined<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}

// ---------------------------------------------------------------- HTTP headers

/** Headers as fetch (`Headers`), Node (`IncomingHttpHeaders`) or a plain record give them. */
export type HeaderSource =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | undefined>>;

function readHeader(
  headers: HeaderSource,
  name: string,
  issues: ValidationIssue[],
): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    const v = (headers as { get(name: string): string | null }).get(name);
    return v === null ? undefined : v;
  }
  const rec = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
  let v: string | readonly string[] | undefined;
  for (const k of Object.keys(rec)) {
    if (k.toLowerCase() === name) {
      if (v !== undefined) issues.push({ path: [name], message: 'header appears twice' });
      v = rec[k];
    }
  }
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (v.length === 1) return v[0];
  issues.push({ path: [name], message: `header appears ${v.length} times` });
  return undefined;
}

/**
 * The `x-killswitch-*` headers of a lineage (the run path comma-joined, root first).
 *
 * @example fetch(url, { headers: { ...lineageToHeaders(lineage) } })
 */
export function lineageToHeaders(lineage: Lineage): Record<string, string> {
  const l = parseLineage(lineage);
  const out: Record<string, string> = {};
  if (l.tenant !== undefined) out[LineageWire.TENANT_HEADER] = l.tenant;
  if (l.feature !== undefined) out[LineageWire.FEATURE_HEADER] = l.feature;
  if (l.runPath.length > 0) out[LineageWire.RUN_PATH_HEADER] = l.runPath.join(',');
  return out;
}

/**
 * Reads a lineage from HTTP headers: the `x-killswitch-*` headers and the W3C `baggage` header's
 * `killswitch.*` members. When both carry one, they MUST be equal (a proxy that rewrote one of
 * them is not guessed around). KS-1.6.3
 *
 * @returns the lineage, or undefined when no header carries any part of one
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed or repeated header, a malformed
 *   baggage header, or headers and baggage that disagree
 */
export function lineageFromHeaders(headers: HeaderSource): Lineage | undefined {
  const issues: ValidationIssue[] = [];
  const tenant = readHeader(headers, LineageWire.TENANT_HEADER, issues);
  const feature = readHeader(headers, LineageWire.FEATURE_HEADER, issues);
  const runPathText = readHeader(headers, LineageWire.RUN_PATH_HEADER, issues);
  const baggageText = readHeader(headers, LineageWire.BAGGAGE_HEADER, issues);
  if (issues.length > 0) throw new ValidationError('lineage headers', issues);
  let fromHeaders: Lineage | undefined;
  if (tenant !== undefined || feature !== undefined || runPathText !== undefined) {
    const runPath =
      runPathText === undefined
        ? []
        : parseRunPath(runPathText, `${LineageWire.RUN_PATH_HEADER} header`);
    const r = lineageSchema.safeParse(dropUndefined({ tenant, feature, runPath }));
    if (!r.success) {
      throw new ValidationError(
        'lineage headers',
        toIssues(r.error).map((i) => ({ ...i, path: [headerOf(i.path[0]), ...i.path.slice(1)] })),
      );
    }
    fromHeaders = freeze(r.data);
  }
  const fromBaggage = baggageText === undefined ? undefined : lineageFromBaggage(baggageText);
  if (
    fromHeaders !== undefined &&
    fromBaggage !== undefined &&
    !sameLineage(fromHeaders, fromBaggage)
  ) {
    throw new ValidationError('lineage headers', [
      {
        path: [LineageWire.BAGGAGE_HEADER],
        message: `baggage lineage ${describeLineage(fromBaggage)} disagrees with the x-killswitch-* headers ${describeLineage(fromHeaders)}`,
      },
    ]);
  }
  return fromHeaders ?? fromBaggage;
}

function headerOf(key: string | number | undefined): string {
  if (key === 'tenant') return LineageWire.TENANT_HEADER;
  if (key === 'feature') return LineageWire.FEATURE_HEADER;
  return LineageWire.RUN_PATH_HEADER;
}

/** True when two lineages name the same tenant, feature and run path. */
export function sameLineage(a: Lineage, b: Lineage): boolean {
  return (
    a.tenant === b.tenant &&
    a.feature === b.feature &&
    a.runPath.length === b.runPath.length &&
    a.runPath.every((id, i) => id === b.runPath[i])
  );
}

/** `{tenant=acme, feature=x, runPath=root>child}` for messages. */
export function describeLineage(l: Lineage): string {
  const parts: string[] = [];
  if (l.tenant !== undefined) parts.push(`tenant=${l.tenant}`);
  if (l.feature !== undefined) parts.push(`feature=${l.feature}`);
  parts.push(`runPath=${l.runPath.join('>')}`);
  return `{${parts.join(', ')}}`;
}

// ---------------------------------------------------------------- W3C baggage

const BAGGAGE_KEY = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Sets the lineage's `killswitch.*` members in a W3C `baggage` header value, keeping every other
 * member of `existing` as it was (and dropping `killswitch.*` members the lineage does not name).
 *
 * @param existing - the current baggage header value, if any
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed lineage or existing header
 * @example headers.set('baggage', lineageToBaggage(lineage, headers.get('baggage') ?? undefined))
 */
export function lineageToBaggage(lineage: Lineage, existing?: string): string {
  const l = parseLineage(lineage);
  const kept =
    existing === undefined
      ? []
      : splitBaggage(existing)
          .filter((m) => !isLineageKey(m.key))
          .map((m) => m.raw);
  const ours: string[] = [];
  if (l.tenant !== undefined)
    ours.push(`${LineageWire.BAGGAGE_TENANT}=${encodeURIComponent(l.tenant)}`);
  if (l.feature !== undefined)
    ours.push(`${LineageWire.BAGGAGE_FEATURE}=${encodeURIComponent(l.feature)}`);
  if (l.runPath.length > 0) {
    ours.push(`${LineageWire.BAGGAGE_RUN_PATH}=${encodeURIComponent(l.runPath.join(','))}`);
  }
  return [...kept, ...ours].join(',');
}

function isLineageKey(key: string): boolean {
  return (
    key === LineageWire.BAGGAGE_TENANT ||
    key === LineageWire.BAGGAGE_FEATURE ||
    key === LineageWire.BAGGAGE_RUN_PATH
  );
}

interface BaggageMember {
  readonly key: string;
  readonly value: string;
  readonly raw: string;
}

/** Splits a baggage header strictly: every member is `key=value[;properties]`. */
function splitBaggage(text: string): BaggageMember[] {
  const what = `${LineageWire.BAGGAGE_HEADER} header`;
  if (typeof text !== 'string')
    throw new ValidationError(what, [{ path: [], message: 'must be a string' }]);
  if (text.length > MAX_LINEAGE_TEXT_LENGTH) {
    throw new ValidationError(what, [
      { path: [], message: `must be at most ${MAX_LINEAGE_TEXT_LENGTH} characters` },
    ]);
  }
  const out: BaggageMember[] = [];
  const issues: ValidationIssue[] = [];
  text.split(',').forEach((part, i) => {
    const raw = part.trim();
    if (raw === '') return;
    const eq = raw.indexOf('=');
    const key = eq < 0 ? '' : raw.slice(0, eq).trim();
    if (eq < 0 || !BAGGAGE_KEY.test(key)) {
      // A member we cannot read could be a run path whose comma was not encoded: refuse rather
      // than read a shorter path (which would name an ancestor as the run itself).
      issues.push({
        path: [i],
        message: `member ${JSON.stringify(raw.slice(0, 40))} is not key=value`,
      });
      return;
    }
    const semi = raw.indexOf(';', eq);
    const value = (semi < 0 ? raw.slice(eq + 1) : raw.slice(eq + 1, semi)).trim();
    out.push({ key, value, raw });
  });
  if (issues.length > 0) throw new ValidationError(what, issues);
  return out;
}

/**
 * Reads the `killswitch.*` members of a W3C `baggage` header value; other members are ignored.
 *
 * @returns the lineage, or undefined when no `killswitch.*` member is present
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed header, a repeated or badly
 *   percent-encoded `killswitch.*` member, or a malformed lineage
 */
export function lineageFromBaggage(text: string): Lineage | undefined {
  const what = `${LineageWire.BAGGAGE_HEADER} header`;
  const values = new Map<string, string>();
  const issues: ValidationIssue[] = [];
  for (const m of splitBaggage(text)) {
    if (!isLineageKey(m.key)) continue;
    if (values.has(m.key)) {
      issues.push({ path: [m.key], message: 'appears twice' });
      continue;
    }
    try {
      values.set(m.key, decodeURIComponent(m.value));
    } catch {
      issues.push({ path: [m.key], message: 'is not valid percent-encoding' });
    }
  }
  if (issues.length > 0) throw new ValidationError(what, issues);
  if (values.size === 0) return undefined;
  const runPathText = values.get(LineageWire.BAGGAGE_RUN_PATH);
  const runPath =
    runPathText === undefined
      ? []
      : parseRunPath(runPathText, `${what} ${LineageWire.BAGGAGE_RUN_PATH}`);
  const r = lineageSchema.safeParse(
    dropUndefined({
      tenant: values.get(LineageWire.BAGGAGE_TENANT),
      feature: values.get(LineageWire.BAGGAGE_FEATURE),
      runPath,
    }),
  );
  if (!r.success) {
    throw new ValidationError(
      what,
      toIssues(r.error).map((i) => ({
        ...i,
        path: [
          `killswitch.${i.path[0] === 'runPath' ? 'run_path' : String(i.path[0])}`,
          ...i.path.slice(1),
        ],
      })),
    );
  }
  return freeze(r.data);
}

// ---------------------------------------------------------------- MCP _meta

/**
 * An MCP `params._meta` object with the lineage under `dev.killswitch/lineage`, other keys kept.
 *
 * @example client.callTool({ name, arguments: args, _meta: lineageToMeta(lineage) })
 */
export function lineageToMeta(
  lineage: Lineage,
  meta?: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const l = parseLineage(lineage);
  return { ...meta, [LineageWire.META_KEY]: { ...l, runPath: [...l.runPath] } };
}

/**
 * Reads the lineage from an MCP `params._meta` object.
 *
 * @returns the lineage, or undefined when `_meta` is absent or has no lineage key
 * @throws {ValidationError} `KS_INVALID_INPUT` when `_meta` is not an object or the lineage is malformed
 */
export function lineageFromMeta(meta: unknown): Lineage | undefined {
  if (meta === undefined || meta === null) return undefined;
  if (typeof meta !== 'object' || Array.isArray(meta)) {
    throw new ValidationError('MCP _meta', [{ path: [], message: 'must be an object' }]);
  }
  if (!Object.prototype.hasOwnProperty.call(meta, LineageWire.META_KEY)) return undefined;
  const r = lineageSchema.safeParse((meta as Record<string, unknown>)[LineageWire.META_KEY]);
  if (!r.success) {
    throw new ValidationError(
      'MCP _meta lineage',
      toIssues(r.error).map((i) => ({ ...i, path: [LineageWire.META_KEY, ...i.path] })),
    );
  }
  return freeze(r.data);
}

// ---------------------------------------------------------------- queue job data

/**
 * Job data with the lineage in its `lineage` field (other fields kept).
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed lineage
 */
export function withLineage<T extends object>(data: T, lineage: Lineage): T & { lineage: Lineage } {
  const l = parseLineage(lineage);
  return { ...data, [LineageWire.JOB_FIELD]: { ...l, runPath: [...l.runPath] } } as T & {
    lineage: Lineage;
  };
}

/**
 * Reads the lineage from queue job data.
 *
 * @returns the lineage, or undefined when the data has no `lineage` field
 * @throws {ValidationError} `KS_INVALID_INPUT` when the field is present and malformed
 */
export function lineageFromJobData(data: unknown): Lineage | undefined {
  if (data === null || typeof data !== 'object') return undefined;
  if (!Object.prototype.hasOwnProperty.call(data, LineageWire.JOB_FIELD)) return undefined;
  const r = lineageSchema.safeParse((data as Record<string, unknown>)[LineageWire.JOB_FIELD]);
  if (!r.success) {
    throw new ValidationError(
      'job data lineage',
      toIssues(r.error).map((i) => ({ ...i, path: [LineageWire.JOB_FIELD, ...i.path] })),
    );
  }
  return freeze(r.data);
}

/** True when `v` could be a run id of a lineage (the fast check; no allocation). */
export function isLineageId(v: unknown): v is string {
  return isIdText(v, MAX_LINEAGE_ID_LENGTH);
}
