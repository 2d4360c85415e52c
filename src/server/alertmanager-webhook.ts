import { createHash } from 'node:crypto';
import { z } from 'zod';
import { authorize, Role, type Principal } from '../auth/principal.js';
import { ErrorCode, KillSwitchError, ValidationError, type ValidationIssue } from '../errors.js';
import { Mutex } from '../internal/mutex.js';
import { toIssues } from '../internal/zod-issues.js';
import { canonicalJson } from '../model/canonical-json.js';
import type { FlipRecord, QueueMode } from '../model/flip-record.js';
import type { KillSnapshot } from '../model/kill-state.js';
import {
  selectorEquals,
  selectorSchema,
  normalizeSelector,
  type Selector,
} from '../model/selector.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { ApiPath } from '../protocol/paths.js';
import { sendJson } from './internal/http-io.js';
import type { Route, RouteContext, Router } from './router.js';
import { FlipLimits } from './flip-limits.js';

/** The path Alertmanager posts to. KS-11.5.1 */
export const ALERTMANAGER_PATH = ApiPath.ALERTMANAGER;

/** The flip `source` of every halt this webhook appends. */
export const ALERTMANAGER_SOURCE = 'alertmanager';

/** The alert labels the webhook reads (Prometheus label names use snake_case). KS-11.5.2 */
export const AlertLabel = {
  LEVEL: 'killswitch_level',
  MODE: 'killswitch_mode',
  TENANT: 'tenant',
  FEATURE: 'feature',
  CAPABILITY: 'capability',
  RUN_ID: 'run_id',
} as const;

const labelMap = z.record(z.string(), z.string());

const alertSchema = z.object({
  status: z.enum(['firing', 'resolved']),
  labels: labelMap,
  annotations: labelMap.optional(),
  startsAt: z.string().max(64).optional(),
  endsAt: z.string().max(64).optional(),
  generatorURL: z.string().optional(),
  fingerprint: z.string().max(128).optional(),
});

/**
 * The Alertmanager webhook payload (version 4), validated with zod. Unknown extra fields are
 * allowed (Alertmanager adds fields over time); the ones the webhook reads are checked. KS-11.5.1
 */
export const alertmanagerPayloadSchema = z.object({
  version: z.literal('4'),
  groupKey: z.string().max(4096).optional(),
  truncatedAlerts: z.number().int().min(0).optional(),
  status: z.enum(['firing', 'resolved']),
  receiver: z.string().max(1024).optional(),
  groupLabels: labelMap.optional(),
  commonLabels: labelMap.optional(),
  commonAnnotations: labelMap.optional(),
  externalURL: z.string().optional(),
  alerts: z.array(alertSchema).min(1, 'must hold at least one alert').max(1000),
});
/** The body Alertmanager posts, as the webhook reads it. */
export type AlertmanagerPayload = z.infer<typeof alertmanagerPayloadSchema>;

/** What the webhook did with one distinct selector. */
export interface AlertHaltOutcome {
  readonly selector: Selector;
  /** `halted`: a record was appended; `already-halted`: an active halt has exactly this selector
   * (nothing appended); `duplicate`: this alert episode already made its flip earlier. */
  readonly outcome: 'halted' | 'already-halted' | 'duplicate';
  /** The flip that holds (appended, or the one already active). */
  readonly seq: number;
  readonly id: string;
  /** Firing alerts of this payload that mapped to this selector. */
  readonly alerts: number;
}

/** Answer of `POST /v1/alerts/alertmanager`. */
export interface AlertmanagerAnswer {
  readonly halts: readonly AlertHaltOutcome[];
  /** Resolved alerts: never resume anything (KS-11.5.4). */
  readonly ignoredResolved: number;
}

/** Options of {@link alertmanagerRoute}. */
export interface AlertmanagerRouteOptions {
  /** The flip log the halts are appended to (the control plane's store). */
  readonly store: FlipLogStore;
  /** The current kill state (`controlPlane.snapshot`), to make one halt per selector. */
  readonly state: () => KillSnapshot;
  /**
   * The control plane's bounds (`controlPlane.limits`): distinct halts per post, active halts,
   * the token's flip rate (KS-17.8.3). @default a FlipLimits of its own with the defaults
   */
  readonly limits?: FlipLimits;
}

interface Planned {
  readonly selector: Selector;
  readonly mode: QueueMode;
  readonly id: string;
  readonly reason: string;
  alerts: number;
}

const ANONYMOUS_ADMIN: Principal = {
  name: 'anonymous',
  role: Role.ADMIN,
  scopes: [],
  resume: true,
};

/**
 * `POST /v1/alerts/alertmanager`: firing Prometheus Alertmanager alerts halt the scope their
 * labels name (KS-11.5). Per request:
 *
 * 1. the payload is validated with zod and every firing alert mapped to a selector
 *    (`killswitch_level` = capability | run | tenant | feature | global, with `capability`
 *    [+ `tenant`], `run_id`, `tenant` or `feature`; `killswitch_mode` = discard | hold | drain);
 *    any problem answers 400 listing every issue and appends nothing (KS-11.5.1, KS-11.5.2);
 * 2. the token must be allowed to halt every selector (an operator scoped to them, or an admin),
 *    else 403 and nothing appended (KS-11.5.5);
 * 3. per distinct selector, one halt: nothing is appended while an active halt has exactly that
 *    selector, and the flip id is derived from the selector and the first alert's fingerprint
 *    and start, so Alertmanager's retries and repeats of one alert episode are one flip
 *    (KS-11.5.3). Requests are serialised, so a flood of alerts makes one record;
 * 4. resolved alerts are counted and otherwise ignored: resuming stays a human decision behind
 *    the release gate (KS-11.5.4).
 *
 * @param options - the store to append to and the current state
 * @returns the route; mount it with `router.add(...)` or `startControlPlane({ routes })`
 * @example
 * ```ts
 * cp.router.add(alertmanagerRoute({ store, state: () => cp.snapshot() }));
 * ```
 */
export function alertmanagerRoute(options: AlertmanagerRouteOptions): Route {
  const { store, state } = options;
  const limits = options.limits ?? new FlipLimits();
  if (store === undefined || typeof store.append !== 'function') {
    throw new KillSwitchError(ErrorCode.INVALID_OPTION, 'option store: expected a FlipLogStore');
  }
  if (typeof state !== 'function') {
    throw new KillSwitchError(ErrorCode.INVALID_OPTION, 'option state: expected a function');
  }
  const mutex = new Mutex();
  /** Halts this route appended that the state may not show yet (it follows the store). */
  const recent = new Map<string, FlipRecord>();

  return {
    method: 'POST',
    path: ALERTMANAGER_PATH,
    auth: 'authenticated',
    async handle({ res, principal, body }: RouteContext): Promise<void> {
      const raw = await body();
      const parsed = alertmanagerPayloadSchema.safeParse(raw);
      if (!parsed.success)
        throw new ValidationError('Alertmanager payload', toIssues(parsed.error));
      const payload = parsed.data;
      const { planned, ignoredResolved } = plan(payload);
      const who = principal ?? ANONYMOUS_ADMIN;
      // Every selector is authorised before anything is appended: all or nothing.
      for (const p of planned) authorize(who, { kind: 'halt', selector: p.selector });
      // KS-17.8.3: an alert storm is refused whole (413), never turned into hundreds of halts.
      limits.checkAlertHalts(planned.length);

      const halts = await mutex.run(async () => {
        // KS-17.8.3: the halts this post adds stay within maxActiveHalts and the token's rate,
        // checked before the first append (all or nothing).
        const snap0 = state();
        const adding = planned.filter(
          (p) =>
            snap0.halts.find((h) => selectorEquals(h.selector, p.selector)) === undefined &&
            activeRecent(recent, canonicalJson(p.selector), snap0) === undefined,
        ).length;
        limits.checkActiveHalts(snap0.halts.length, adding);
        if (adding > 0) limits.takeFlip(who.name, adding);
        const out: AlertHaltOutcome[] = [];
        for (const p of planned) {
          const key = canonicalJson(p.selector);
          const snap = state();
          const active =
            snap.halts.find((h) => selectorEquals(h.selector, p.selector)) ??
            activeRecent(recent, key, snap);
          if (active !== undefined) {
            out.push({
              selector: p.selector,
              outcome: 'already-halted',
              seq: active.seq,
              id: active.id,
              alerts: p.alerts,
            });
            continue;
          }
          const result = await appendOnce(store, who, p);
          if (!result.duplicate) recent.set(key, result.record);
          out.push({
            selector: p.selector,
            outcome: result.duplicate ? 'duplicate' : 'halted',
            seq: result.record.seq,
            id: result.record.id,
            alerts: p.alerts,
          });
        }
        return out;
      });
      const answer: AlertmanagerAnswer = { halts, ignoredResolved };
      sendJson(res, 200, answer);
    },
  };
}

/**
 * Mounts {@link alertmanagerRoute} on a running control plane.
 *
 * @example
 * ```ts
 * mountAlertmanager(cp, store);
 * ```
 */
export function mountAlertmanager(
  cp: { readonly router: Router; snapshot(): KillSnapshot; readonly limits?: FlipLimits },
  store: FlipLogStore,
): void {
  cp.router.add(
    alertmanagerRoute({
      store,
      state: () => cp.snapshot(),
      ...(cp.limits === undefined ? {} : { limits: cp.limits }),
    }),
  );
}

/** A halt this route appended counts as active until the state has caught up with it. */
function activeRecent(
  recent: Map<string, FlipRecord>,
  key: string,
  snap: KillSnapshot,
): FlipRecord | undefined {
  const r = recent.get(key);
  if (r === undefined) return undefined;
  if (snap.seq >= r.seq) {
    // The state has it now: it answers for itself (it may have been resumed since).
    recent.delete(key);
    return undefined;
  }
  return r;
}

async function appendOnce(
  store: FlipLogStore,
  who: Principal,
  p: Planned,
): Promise<{ record: FlipRecord; duplicate: boolean }> {
  try {
    return await store.append({
      id: p.id,
      actor: who.name,
      action: 'halt',
      selector: p.selector,
      reason: p.reason,
      mode: p.mode,
      source: ALERTMANAGER_SOURCE,
    });
  } catch (err) {
    // The same alert episode delivered with another token (another actor) or wording: its flip
    // exists already; the first one stands.
    if (err instanceof KillSwitchError && err.code === ErrorCode.ID_CONFLICT) {
      const [record] = (await store.read()).filter((r) => r.id === p.id);
      if (record !== undefined) return { record, duplicate: true };
    }
    throw err;
  }
}

/** Maps every firing alert to a selector; throws one ValidationError listing every problem. */
function plan(payload: AlertmanagerPayload): { planned: Planned[]; ignoredResolved: number } {
  const issues: ValidationIssue[] = [];
  const bySelector = new Map<string, Planned>();
  let ignoredResolved = 0;
  payload.alerts.forEach((alert, i) => {
    if (alert.status === 'resolved') {
      ignoredResolved++;
      return;
    }
    const mapped = selectorOf(alert.labels, ['alerts', i, 'labels'], issues);
    if (mapped === undefined) return;
    const key = canonicalJson(mapped.selector);
    const existing = bySelector.get(key);
    if (existing !== undefined) {
      existing.alerts++;
      return;
    }
    const name = alert.labels['alertname'] ?? 'alert';
    const fingerprint = alert.fingerprint ?? digest(canonicalJson(alert.labels)).slice(0, 16);
    const since = alert.startsAt ?? '';
    const summary = alert.annotations?.['summary'] ?? alert.annotations?.['description'];
    const reason = clip(
      `Alertmanager: ${name} firing${summary ? `: ${summary}` : ''} (fingerprint ${fingerprint}${
        since ? `, since ${since}` : ''
      }${payload.receiver ? `, receiver ${payload.receiver}` : ''})`,
      2000,
    );
    bySelector.set(key, {
      selector: mapped.selector,
      mode: mapped.mode,
      // One alert episode (fingerprint + start) on one selector is one flip, whoever delivers it.
      id: `alertmanager-${digest(`${key}\n${fingerprint}\n${since}`).slice(0, 40)}`,
      reason,
      alerts: 1,
    });
  });
  if (issues.length > 0) throw new ValidationError('Alertmanager payload', issues);
  return { planned: [...bySelector.values()], ignoredResolved };
}

const LEVEL_KEYS = {
  capability: { required: [AlertLabel.CAPABILITY], optional: [AlertLabel.TENANT] },
  run: { required: [AlertLabel.RUN_ID], optional: [] },
  tenant: { required: [AlertLabel.TENANT], optional: [] },
  feature: { required: [AlertLabel.FEATURE], optional: [] },
  global: { required: [], optional: [] },
} as const;

const LABEL_TO_SELECTOR = {
  [AlertLabel.CAPABILITY]: 'capability',
  [AlertLabel.TENANT]: 'tenant',
  [AlertLabel.FEATURE]: 'feature',
  [AlertLabel.RUN_ID]: 'runId',
} as const;

/**
 * The selector of one alert (KS-11.5.2). The level must be named: an alert without
 * `killswitch_level` is refused rather than guessed, so a routing mistake cannot become a global
 * halt, and labels the level does not use are ignored (a `tenant` label on a feature alert does
 * not narrow it).
 */
function selectorOf(
  labels: Readonly<Record<string, string>>,
  path: (string | number)[],
  issues: ValidationIssue[],
): { selector: Selector; mode: QueueMode } | undefined {
  const level = labels[AlertLabel.LEVEL];
  if (level === undefined || !Object.hasOwn(LEVEL_KEYS, level)) {
    issues.push({
      path: [...path, AlertLabel.LEVEL],
      message: `must be one of ${Object.keys(LEVEL_KEYS).join(', ')}${level === undefined ? '' : `, received ${JSON.stringify(level.slice(0, 40))}`}`,
    });
    return undefined;
  }
  const rule = LEVEL_KEYS[level as keyof typeof LEVEL_KEYS];
  const sel: Record<string, string> = {};
  let ok = true;
  for (const label of rule.required) {
    const v = labels[label];
    if (v === undefined) {
      issues.push({ path: [...path, label], message: `required for killswitch_level=${level}` });
      ok = false;
    } else sel[LABEL_TO_SELECTOR[label]] = v;
  }
  for (const label of rule.optional) {
    const v = labels[label];
    if (v !== undefined) sel[LABEL_TO_SELECTOR[label]] = v;
  }
  const modeLabel = labels[AlertLabel.MODE];
  let mode: QueueMode = 'discard';
  if (modeLabel !== undefined) {
    if (modeLabel === 'discard' || modeLabel === 'hold' || modeLabel === 'drain') mode = modeLabel;
    else {
      issues.push({ path: [...path, AlertLabel.MODE], message: 'must be discard, hold or drain' });
      ok = false;
    }
  }
  const r = selectorSchema.safeParse(sel);
  if (!r.success) {
    for (const i of toIssues(r.error)) {
      const sk = i.path[0];
      const label =
        Object.entries(LABEL_TO_SELECTOR).find(([, s]) => s === sk)?.[0] ?? String(sk ?? '');
      issues.push({ path: [...path, label], message: i.message });
    }
    return undefined;
  }
  return ok ? { selector: normalizeSelector(r.data), mode } : undefined;
}

function digest(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}
