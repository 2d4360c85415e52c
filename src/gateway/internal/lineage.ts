import type { IncomingHttpHeaders } from 'node:http';
import { ValidationError, type ValidationIssue } from '../../errors.js';
import { ID_PATTERN } from '../../protocol/text.js';

/**
 * The lineage a call carries over the wire (COORDINATION "Interfaces decided up front"): MCP
 * `params._meta["dev.killswitch/lineage"]`, headers `x-killswitch-tenant`, `-feature`,
 * `-run-path` (run ids root to self, comma-joined), or W3C `baggage` keys `killswitch.tenant`,
 * `killswitch.feature`, `killswitch.run_path`.
 *
 * The run trees work owns the shared parser (src/lineage); until it is published this module
 * reads the agreed wire forms with the same rules (ids per src/protocol/text.ts, depth at most 64).
 */
export interface Lineage {
  readonly tenant?: string;
  readonly feature?: string;
  /** Run ids from the root to the calling run; empty when the call names no run. */
  readonly runPath: readonly string[];
}

export const LINEAGE_META_KEY = 'dev.killswitch/lineage';
export const LineageHeader = {
  TENANT: 'x-killswitch-tenant',
  FEATURE: 'x-killswitch-feature',
  RUN_PATH: 'x-killswitch-run-path',
} as const;
export const MAX_RUN_DEPTH = 64;
const MAX_ID = 256;

function checkId(
  v: unknown,
  path: (string | number)[],
  issues: ValidationIssue[],
): string | undefined {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID || !ID_PATTERN.test(v)) {
    issues.push({
      path,
      message: `must be 1-${MAX_ID} letters, digits or ._:@/+=- (received ${JSON.stringify(v)?.slice(0, 80)})`,
    });
    return undefined;
  }
  return v;
}

function checkPath(
  ids: readonly unknown[],
  path: (string | number)[],
  issues: ValidationIssue[],
): string[] {
  if (ids.length > MAX_RUN_DEPTH) {
    issues.push({
      path,
      message: `must hold at most ${MAX_RUN_DEPTH} run ids (received ${ids.length})`,
    });
    return [];
  }
  const out: string[] = [];
  ids.forEach((id, i) => {
    const ok = checkId(id, [...path, i], issues);
    if (ok !== undefined) out.push(ok);
  });
  return out;
}

function single(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h.join(',') : h;
}

/** Reads `killswitch.*` members of a W3C baggage header (percent-decoded values). */
function fromBaggage(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === undefined) return out;
  for (const member of raw.split(',')) {
    const [kv] = member.split(';');
    const eq = kv?.indexOf('=') ?? -1;
    if (kv === undefined || eq < 0) continue;
    const k = kv.slice(0, eq).trim();
    if (!k.startsWith('killswitch.')) continue;
    try {
      out[k] = decodeURIComponent(kv.slice(eq + 1).trim());
    } catch {
      out[k] = kv.slice(eq + 1).trim();
    }
  }
  return out;
}

/**
 * The lineage of an HTTP request: the `x-killswitch-*` headers, else W3C baggage.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed id or a path deeper than 64: a
 *   call whose lineage cannot be read is refused, never run without it (a run halt would miss it)
 */
export function lineageFromHeaders(headers: IncomingHttpHeaders): Lineage {
  const issues: ValidationIssue[] = [];
  const bag = fromBaggage(single(headers['baggage']));
  const tenantRaw = single(headers[LineageHeader.TENANT]) ?? bag['killswitch.tenant'];
  const featureRaw = single(headers[LineageHeader.FEATURE]) ?? bag['killswitch.feature'];
  const pathRaw = single(headers[LineageHeader.RUN_PATH]) ?? bag['killswitch.run_path'];
  const tenant =
    tenantRaw === undefined ? undefined : checkId(tenantRaw.trim(), [LineageHeader.TENANT], issues);
  const feature =
    featureRaw === undefined
      ? undefined
      : checkId(featureRaw.trim(), [LineageHeader.FEATURE], issues);
  const runPath =
    pathRaw === undefined || pathRaw.trim() === ''
      ? []
      : checkPath(
          pathRaw.split(',').map((s) => s.trim()),
          [LineageHeader.RUN_PATH],
          issues,
        );
  if (issues.length > 0) throw new ValidationError('lineage headers', issues);
  return {
    ...(tenant !== undefined ? { tenant } : {}),
    ...(feature !== undefined ? { feature } : {}),
    runPath,
  };
}

/**
 * The lineage in an MCP request's `_meta`, or undefined when it carries none.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed lineage object
 */
export function lineageFromMeta(meta: unknown): Lineage | undefined {
  if (meta === null || typeof meta !== 'object') return undefined;
  const raw = (meta as Record<string, unknown>)[LINEAGE_META_KEY];
  if (raw === undefined) return undefined;
  const issues: ValidationIssue[] = [];
  const base = ['_meta', LINEAGE_META_KEY];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ValidationError('lineage', [{ path: base, message: 'must be an object' }]);
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'tenant' && k !== 'feature' && k !== 'runPath')
      issues.push({ path: [...base, k], message: 'is not a lineage field' });
  }
  const tenant =
    o.tenant === undefined ? undefined : checkId(o.tenant, [...base, 'tenant'], issues);
  const feature =
    o.feature === undefined ? undefined : checkId(o.feature, [...base, 'feature'], issues);
  let runPath: string[] = [];
  if (o.runPath !== undefined) {
    if (!Array.isArray(o.runPath))
      issues.push({ path: [...base, 'runPath'], message: 'must be an array' });
    else runPath = checkPath(o.runPath, [...base, 'runPath'], issues);
  }
  if (issues.length > 0) throw new ValidationError('lineage', issues);
  return {
    ...(tenant !== undefined ? { tenant } : {}),
    ...(feature !== undefined ? { feature } : {}),
    runPath,
  };
}

/** `over` wins field by field; a run path given in `over` replaces the other's. */
export function mergeLineage(base: Lineage, over: Lineage | undefined): Lineage {
  if (over === undefined) return base;
  const tenant = over.tenant ?? base.tenant;
  const feature = over.feature ?? base.feature;
  return {
    ...(tenant !== undefined ? { tenant } : {}),
    ...(feature !== undefined ? { feature } : {}),
    runPath: over.runPath.length > 0 ? over.runPath : base.runPath,
  };
}
