import { ErrorCode, KillSwitchError } from '../errors.js';
import {
  formatSelector,
  SELECTOR_KEYS,
  selectorMatches,
  type Selector,
} from '../model/selector.js';

/**
 * Roles. KS-5.2.1, KS-17.2.1
 * - `viewer`: reads (state, log, stream, workers); with `scopes`, reads only those (KS-17.4);
 * - `worker`: reads everything it must enforce, and acknowledges and streams as the worker ids
 *   its `workers` binding names; never flips;
 * - `operator`: a viewer of its scopes that may flip within them;
 * - `admin`: everything.
 */
export const Role = {
  VIEWER: 'viewer',
  WORKER: 'worker',
  OPERATOR: 'operator',
  ADMIN: 'admin',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/**
 * Who a request is: the token's name (it becomes a flip's `actor`), its role, the selectors an
 * operator may flip (and a scoped viewer may read), and whether it may resume.
 */
export interface Principal {
  readonly name: string;
  readonly role: Role;
  /**
   * For an operator: the selectors it may flip within, and read (KS-17.4). A flip's selector is
   * within a scope when it names every attribute the scope names with the same value (it may be
   * narrower). For a viewer: the selectors it may read (empty: everything). Empty for workers;
   * ignored for admins.
   */
  readonly scopes: readonly Selector[];
  /** May lift halts (within its scopes). KS-5.2.3 */
  readonly resume: boolean;
  /**
   * The worker ids this token may acknowledge and stream as: exact ids, or prefixes ending in `*`
   * (`'w-*'`). Required for the `worker` role; optional for viewers and operators; absent, a
   * non-admin may not act as any worker (KS-17.2.1). Ignored for admins (they may act as any
   * worker). KS-5.2.9
   */
  readonly workers?: readonly string[];
  /** When the token stops being accepted, epoch ms (absent: never). KS-17.3.1 */
  readonly expiresAt?: number;
}

/** The halt a resume would lift, as far as authorisation needs it. KS-17.5.1 */
export interface HaltOwner {
  /** The halt's `actor` (a token name, or whoever appended it through the library). */
  readonly actor: string;
  /** The role of the current token with that name; undefined when no current token has it. */
  readonly actorRole: Role | undefined;
  /** The halt's seq, for the message. */
  readonly seq?: number;
}

/** What a request wants to do, for {@link authorize}. */
export type Action =
  | { readonly kind: 'read' }
  | { readonly kind: 'ack'; readonly workerId?: string }
  | { readonly kind: 'halt'; readonly selector: Selector }
  | {
      readonly kind: 'resume';
      readonly selector: Selector;
      /** The active halt it lifts; when given, an operator may not lift an admin's halt. */
      readonly halt?: HaltOwner;
    };

/** True when `selector` is within `scope` (names everything the scope names, equally). */
export function withinScope(selector: Selector, scope: Selector): boolean {
  return selectorMatches(scope, selector);
}

/**
 * True when a flip with this selector can stop something inside `scope`: every attribute both
 * name has the same value. The global halt, a capability frozen for all tenants and a halted run
 * are compatible with a tenant's scope; another tenant's halt is not. KS-17.4.1
 */
export function compatibleWithScope(selector: Selector, scope: Selector): boolean {
  for (const k of SELECTOR_KEYS) {
    const a = selector[k];
    const b = scope[k];
    if (a !== undefined && b !== undefined && a !== b) return false;
  }
  return true;
}

/**
 * True when a principal reads every flip, halt and reason: admins, workers (a worker enforces
 * every halt, so it must see them all), and viewers without scopes. KS-17.4.1
 */
export function readsAll(principal: Principal): boolean {
  if (principal.role === Role.ADMIN || principal.role === Role.WORKER) return true;
  if (principal.role === Role.VIEWER) return principal.scopes.length === 0;
  return false;
}

/**
 * True when a principal may see a flip (or an active halt) with this selector: everything for
 * {@link readsAll} principals; for operators and scoped viewers, selectors compatible with one of
 * their scopes (what can stop something they look after), never another tenant's. KS-17.4.1
 */
export function mayRead(principal: Principal, selector: Selector): boolean {
  if (readsAll(principal)) return true;
  return principal.scopes.some((s) => compatibleWithScope(selector, s));
}

/**
 * The near-miss values of a flip's match reports (KS-16.4.1) a principal may read. They are values
 * workers saw in other contexts, so another tenant's id can be among them; a report does not say
 * which attribute a value belongs to. A principal that reads everything gets them all; any other
 * gets a value only when the flip's selector with that value put in place of each of its
 * attributes stays readable to it, so nothing is shown that could be another tenant's. With
 * `selector` unknown (undefined), a scoped principal gets none. KS-17.4.1
 */
export function visibleSimilar(
  principal: Principal,
  selector: Selector | undefined,
  similar: readonly string[],
): readonly string[] {
  if (readsAll(principal) || similar.length === 0) return similar;
  if (selector === undefined) return [];
  const keys = SELECTOR_KEYS.filter((k) => selector[k] !== undefined);
  return similar.filter((v) => keys.every((k) => mayRead(principal, { ...selector, [k]: v })));
}

/**
 * True when a worker id matches one of a binding's patterns: an exact id, a prefix ending in `*`
 * (`'w-*'` matches `w-1`, never `w-` alone nor `x-w-1`), or `*` (any id; worker tokens only).
 * KS-5.2.9, KS-17.2.1
 */
export function workerMatches(patterns: readonly string[], workerId: string): boolean {
  for (const p of patterns) {
    if (p === '*') return true;
    if (p.endsWith('*')) {
      const prefix = p.slice(0, -1);
      if (prefix.length > 0 && workerId.length > prefix.length && workerId.startsWith(prefix))
        return true;
    } else if (p === workerId) return true;
  }
  return false;
}

/**
 * Decides whether a principal may do an action. KS-5.2.2, KS-5.2.3, KS-5.2.4, KS-17.2.1, KS-17.5.1
 *
 * - `read` (state, log, stream, workers): every role (what it sees is {@link mayRead}'s business);
 * - `ack` (acknowledge, or stream as a worker id): an admin as any id; a worker credential (the
 *   `worker` role, or a viewer or operator with a `workers` binding) as the ids its binding
 *   matches; nobody else;
 * - `halt`: admin, or an operator whose scopes contain the selector;
 * - `resume`: as halt, and the principal must hold the resume permission; an operator may not lift
 *   a halt whose actor is an admin or no current token (only its own or another operator's).
 *
 * @throws {KillSwitchError} `KS_FORBIDDEN` naming what is missing
 */
export function authorize(principal: Principal, action: Action): void {
  if (action.kind === 'read') return;
  if (action.kind === 'ack') {
    if (principal.role === Role.ADMIN) return;
    if (principal.workers === undefined) {
      throw new KillSwitchError(
        ErrorCode.FORBIDDEN,
        `token '${principal.name}' (${principal.role}) may not act as a worker: acknowledging and streaming as a worker need a worker credential (role worker, or a workers binding)`,
      );
    }
    const id = action.workerId;
    if (id !== undefined && !workerMatches(principal.workers, id)) {
      throw new KillSwitchError(
        ErrorCode.FORBIDDEN,
        `token '${principal.name}' may not act as worker '${id}' (allowed: ${principal.workers.join(' ') || 'none'})`,
      );
    }
    return;
  }
  if (principal.role === Role.VIEWER || principal.role === Role.WORKER) {
    throw new KillSwitchError(
      ErrorCode.FORBIDDEN,
      `token '${principal.name}' is a ${principal.role} and may not flip`,
    );
  }
  if (
    principal.role === Role.OPERATOR &&
    !principal.scopes.some((s) => withinScope(action.selector, s))
  ) {
    throw new KillSwitchError(
      ErrorCode.FORBIDDEN,
      `token '${principal.name}' may not flip ${formatSelector(action.selector)} (allowed: ${
        principal.scopes.map(formatSelector).join(' ') || 'nothing'
      })`,
    );
  }
  if (action.kind === 'resume' && !principal.resume) {
    throw new KillSwitchError(
      ErrorCode.FORBIDDEN,
      `token '${principal.name}' lacks the resume permission`,
    );
  }
  // KS-17.5.1: an operator lifts its own and other operators' halts, never an admin's (nor one
  // whose author no current token names: who placed it cannot be told, so it counts as an admin's).
  const halt = action.kind === 'resume' ? action.halt : undefined;
  if (
    halt !== undefined &&
    principal.role === Role.OPERATOR &&
    halt.actor !== principal.name &&
    halt.actorRole !== Role.OPERATOR
  ) {
    const at = halt.seq === undefined ? '' : ` #${halt.seq}`;
    const by =
      halt.actorRole === undefined
        ? `'${halt.actor}', which no current token names`
        : `${halt.actorRole} '${halt.actor}'`;
    throw new KillSwitchError(
      ErrorCode.FORBIDDEN,
      `token '${principal.name}' may not lift the halt${at} placed by ${by}: an operator lifts only halts placed by operators; ask an admin`,
    );
  }
}
