import { createHash } from 'node:crypto';
import { authorize, mayRead, Role, type Principal } from '../auth/principal.js';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { KILL_FLAG_KEYS, isKillFlag, levelOfFlag } from '../model/flags.js';
import type { FlipRecord } from '../model/flip-record.js';
import { KillState, type KillSnapshot } from '../model/kill-state.js';
import { SELECTOR_KEYS, levelOf, runPathProblem, type KillContext } from '../model/selector.js';
import { HttpError, readJsonBody, sendJson } from '../server/internal/http-io.js';
import type { Route, RouteContext } from '../server/router.js';

/**
 * Whether a control plane vouches for the kill state it holds. `ok: false` makes every OFREP
 * answer fail closed: `STALE` when it stopped following its store (it may be behind), `ERROR` when
 * it lost track of the log or is closing. KS-12.1.5
 */
export type Vouch =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'STALE' | 'ERROR'; readonly detail: string };

/** What the OFREP routes read from the control plane. */
export interface OfrepStateView {
  /** The current kill state (the control plane's fold of the log). */
  snapshot(): KillSnapshot;
  /** Whether that state can be trusted right now; read on every request. */
  vouch(): Vouch;
}

/** Options of {@link ofrepRoutes}. */
export interface OfrepRoutesOptions {
  /** The control plane's state. Required. */
  readonly view: OfrepStateView;
  /** Largest request body. @default 65536 bytes */
  readonly maxBodyBytes?: number;
  /**
   * The smallest poll interval announced by `GET /ofrep/v1/configuration` to polling (bulk)
   * clients. It is advice only: a client may poll slower, and staleness is then its poll interval.
   * @default 1000 ms
   */
  readonly minPollingIntervalMs?: number;
}

/** One flag's OFREP evaluation (success shape). */
export interface OfrepEvaluation {
  readonly key: string;
  readonly value: boolean;
  readonly reason: string;
  readonly variant: string;
  readonly metadata: Readonly<Record<string, string | number | boolean>>;
}

/** The OFREP failure shape (`FLAG_NOT_FOUND`, `PARSE_ERROR`, `INVALID_CONTEXT`, `GENERAL`). */
export interface OfrepFailure {
  readonly key?: string;
  readonly errorCode: 'FLAG_NOT_FOUND' | 'PARSE_ERROR' | 'INVALID_CONTEXT' | 'GENERAL';
  readonly errorDetails: string;
}

/** The routes' paths. */
export const OFREP_PATHS = {
  single: '/ofrep/v1/evaluate/flags/:key',
  bulk: '/ofrep/v1/evaluate/flags',
  configuration: '/ofrep/v1/configuration',
} as const;

const ANONYMOUS_VIEWER: Principal = Object.freeze({
  name: 'anonymous',
  role: Role.VIEWER,
  scopes: [],
  resume: false,
});

/**
 * The OpenFeature Remote Evaluation Protocol on the control plane, as route-table entries
 * (KS-5.1.10), so workers in any language evaluate the kill flags over HTTP. KS-12.1
 *
 * - `POST /ofrep/v1/evaluate/flags/{key}`: one kill flag for the body's `context`; a key that is
 *   not a kill flag answers 404 `FLAG_NOT_FOUND`. KS-12.1.1
 * - `POST /ofrep/v1/evaluate/flags`: every kill flag, with a strong `ETag` over the answer;
 *   `If-None-Match` with that tag answers 304. KS-12.1.2
 * - `GET /ofrep/v1/configuration`: boolean flags only, caching disabled, the minimum poll interval.
 *
 * Every route needs a token (any role; KS-12.1.4). Answers are `cache-control: no-store`. When the
 * view does not vouch for its state, every kill flag answers
 * `{ value: true, variant: 'fail-closed', reason: 'STALE' | 'ERROR' }` with status 200 — not an
 * error status, because an OFREP client turns an error into its caller's default, which may be
 * `false`. KS-12.1.5
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` when `view` is missing or a number is out of range
 * @example
 * ```ts
 * const cp = await startControlPlane({ store, routes: [] });
 * cp.router.add(...ofrepRoutes({ view: cp }));
 * ```
 */
export function ofrepRoutes(options: OfrepRoutesOptions): Route[] {
  const view = options?.view;
  if (
    view === undefined ||
    typeof view.snapshot !== 'function' ||
    typeof view.vouch !== 'function'
  ) {
    throw new InvalidOptionError('view', 'an object with snapshot() and vouch()', view);
  }
  const maxBodyBytes = options.maxBodyBytes ?? 65_536;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new InvalidOptionError('maxBodyBytes', 'a positive integer (bytes)', maxBodyBytes);
  }
  const minPollingIntervalMs = options.minPollingIntervalMs ?? 1000;
  if (!Number.isSafeInteger(minPollingIntervalMs) || minPollingIntervalMs < 0) {
    throw new InvalidOptionError(
      'minPollingIntervalMs',
      'a non-negative integer (ms)',
      minPollingIntervalMs,
    );
  }
  const evaluator = new OfrepEvaluator(view);

  const single = async (c: RouteContext): Promise<void> => {
    authorize(c.principal ?? ANONYMOUS_VIEWER, { kind: 'read' });
    const key = c.params.key ?? '';
    const request = await readRequest(c, maxBodyBytes, key);
    if (request.kind === 'failure') {
      sendJson(c.res, 400, request.failure);
      return;
    }
    mayEvaluate(c.principal ?? ANONYMOUS_VIEWER, request.context);
    if (!isKillFlag(key)) {
      const body: OfrepFailure = {
        key,
        errorCode: 'FLAG_NOT_FOUND',
        errorDetails: `${key} is not a kill flag (${KILL_FLAG_KEYS.join(', ')})`,
      };
      sendJson(c.res, 404, body);
      return;
    }
    // `cacheable: false`: a kill flag must be evaluated again for every effect.
    sendJson(c.res, 200, { ...evaluator.evaluate(key, request.context), cacheable: false });
  };

  const bulk = async (c: RouteContext): Promise<void> => {
    authorize(c.principal ?? ANONYMOUS_VIEWER, { kind: 'read' });
    const request = await readRequest(c, maxBodyBytes, undefined);
    if (request.kind === 'failure') {
      sendJson(c.res, 400, {
        errorCode: request.failure.errorCode,
        errorDetails: request.failure.errorDetails,
      });
      return;
    }
    mayEvaluate(c.principal ?? ANONYMOUS_VIEWER, request.context);
    const flags = KILL_FLAG_KEYS.map((k) => evaluator.evaluate(k, request.context));
    const text = JSON.stringify({ flags });
    // A strong tag over the exact answer for this context: it changes whenever an answer changes
    // (value, variant, reason, the flip it names) and when the state's seq moves. KS-12.1.2
    const etag = `"${createHash('sha256').update(text).digest('base64url').slice(0, 27)}"`;
    if (matchesIfNoneMatch(c.req.headers['if-none-match'], etag)) {
      c.res.writeHead(304, { etag, 'cache-control': 'no-store' });
      c.res.end();
      return;
    }
    c.res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      etag,
    });
    c.res.end(text);
  };

  const configuration = (c: RouteContext): void => {
    authorize(c.principal ?? ANONYMOUS_VIEWER, { kind: 'read' });
    sendJson(c.res, 200, {
      name: 'openfeature-kill-switch',
      capabilities: {
        cacheInvalidation: { polling: { enabled: true, minPollingIntervalMs } },
        flagEvaluation: { supportedTypes: ['boolean'] },
        // A cached kill flag is a kill flag that cannot be flipped: server providers must not cache.
        caching: { enabled: false },
      },
    });
  };

  return [
    { method: 'POST', path: OFREP_PATHS.single, auth: 'authenticated', handle: single },
    { method: 'POST', path: OFREP_PATHS.bulk, auth: 'authenticated', handle: bulk },
    {
      method: 'GET',
      path: OFREP_PATHS.configuration,
      auth: 'authenticated',
      handle: configuration,
    },
  ];
}

type ParsedRequest =
  | { readonly kind: 'ok'; readonly context: Readonly<Record<string, unknown>> }
  | { readonly kind: 'failure'; readonly failure: OfrepFailure };

/**
 * Reads `{ context? }`. A body that cannot be read at all is a 400 `PARSE_ERROR` (there is no
 * context to evaluate); an empty body is an empty context (the reference clients send `{}`).
 */
async function readRequest(
  c: RouteContext,
  maxBodyBytes: number,
  key: string | undefined,
): Promise<ParsedRequest> {
  const failure = (errorCode: OfrepFailure['errorCode'], errorDetails: string): ParsedRequest => ({
    kind: 'failure',
    failure: { ...(key === undefined ? {} : { key }), errorCode, errorDetails },
  });
  let raw: unknown;
  const length = c.req.headers['content-length'];
  if (length === '0') {
    raw = {};
  } else {
    try {
      raw = await readJsonBody(c.req, maxBodyBytes);
    } catch (err) {
      // 413 and 415 keep their HTTP meaning; only an unreadable body is an OFREP parse error.
      if (err instanceof HttpError && err.status === 400) {
        return failure('PARSE_ERROR', err.message);
      }
      throw err;
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return failure('PARSE_ERROR', 'the body must be a JSON object { "context": { ... } }');
  }
  const context = (raw as { context?: unknown }).context;
  if (context === undefined) return { kind: 'ok', context: {} };
  if (typeof context !== 'object' || context === null || Array.isArray(context)) {
    return failure('INVALID_CONTEXT', 'context must be a JSON object');
  }
  return { kind: 'ok', context: context as Record<string, unknown> };
}

/** RFC 9110 If-None-Match for a strong tag: `*`, or a list in which the tag (or W/tag) appears. */
function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .includes(etag);
}

/**
 * KS-17.4.3 a reader with scopes (an operator, a scoped viewer) evaluates only contexts compatible
 * with one of them: an answer names the halting flip (actor, reason, selector) and says whether a
 * context is halted at all, so evaluating another tenant's context would read that tenant's halts
 * and reasons. Every halt that matches a compatible context is readable by it (its attributes are
 * the context's), so nothing else needs filtering. Readers of everything (admin, worker, an
 * unscoped viewer) evaluate any context.
 *
 * @throws {KillSwitchError} `KS_FORBIDDEN` (403) naming the token and the context
 */
function mayEvaluate(principal: Principal, context: Readonly<Record<string, unknown>>): void {
  const selector: Record<string, string> = {};
  for (const k of SELECTOR_KEYS) {
    const v = context[k];
    if (typeof v === 'string') selector[k] = v;
  }
  if (mayRead(principal, selector)) return;
  throw new KillSwitchError(
    ErrorCode.FORBIDDEN,
    `token '${principal.name}' may not evaluate context ${JSON.stringify(selector)}: it reads only its scopes (${principal.scopes.map((sc) => JSON.stringify(sc)).join(', ')}), KS-17.4.3`,
  );
}

/** Evaluates kill flags against the view's state, rebuilding the fold only when the state moved. */
class OfrepEvaluator {
  readonly #view: OfrepStateView;
  #state: KillState | undefined;
  readonly #halted = new WeakMap<FlipRecord, Readonly<Record<string, string | number | boolean>>>();

  constructor(view: OfrepStateView) {
    this.#view = view;
  }

  evaluate(key: string, context: Readonly<Record<string, unknown>>): OfrepEvaluation {
    // KS-12.1.5: read on every request; a state the server does not vouch for is never served.
    let vouch: Vouch;
    let snapshot: KillSnapshot;
    try {
      vouch = this.#view.vouch();
      snapshot = this.#view.snapshot();
    } catch (err) {
      return failClosed(key, 'ERROR', `the control plane cannot read its state: ${String(err)}`);
    }
    if (!vouch.ok) return failClosed(key, vouch.reason, vouch.detail);
    // KS-12.1.3 (as KS-3.2.4): a kill attribute of the wrong type could hide a match.
    for (const k of SELECTOR_KEYS) {
      const v = context[k];
      if (v !== undefined && typeof v !== 'string') {
        return failClosed(key, 'ERROR', `context attribute ${k} is not a string`);
      }
    }
    // KS-1.5.4: a run path that cannot be read could hide an ancestor's halt.
    const pathProblem = runPathProblem(context);
    if (pathProblem !== undefined) return failClosed(key, 'ERROR', pathProblem);
    let state = this.#state;
    if (state === undefined || state.seq !== snapshot.seq || state.hash !== snapshot.hash) {
      try {
        state = KillState.fromSnapshot(snapshot);
      } catch (err) {
        return failClosed(key, 'ERROR', `invalid kill state: ${(err as Error).message}`);
      }
      this.#state = state;
    }
    const level = levelOfFlag(key);
    const ctx = context as KillContext;
    const hit =
      level === undefined
        ? undefined
        : level === 'any'
          ? state.match(ctx)
          : state.match(ctx, level);
    if (hit === undefined) {
      return {
        key,
        value: false,
        variant: 'running',
        reason: 'TARGETING_MATCH',
        metadata: { stateSeq: state.seq },
      };
    }
    return {
      key,
      value: true,
      variant: 'halted',
      reason: 'TARGETING_MATCH',
      metadata: this.#metadata(hit, state.seq),
    };
  }

  /** The same keys as KillSwitchProvider's flagMetadata (KS-3.1.3), so the guard names the flip. */
  #metadata(r: FlipRecord, stateSeq: number): Readonly<Record<string, string | number | boolean>> {
    let m = this.#halted.get(r);
    if (m === undefined) {
      m = {
        seq: r.seq,
        id: r.id,
        actor: r.actor,
        reason: r.reason,
        level: levelOf(r.selector),
        at: r.at,
        selector: JSON.stringify(r.selector),
        ...(r.mode === undefined ? {} : { mode: r.mode }),
        ...(r.selector.runId === undefined ? {} : { haltedRunId: r.selector.runId }),
      };
      this.#halted.set(r, m);
    }
    return { ...m, stateSeq };
  }
}

function failClosed(key: string, reason: 'STALE' | 'ERROR', detail: string): OfrepEvaluation {
  return { key, value: true, variant: 'fail-closed', reason, metadata: { failClosed: detail } };
}
