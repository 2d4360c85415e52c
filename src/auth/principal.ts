import { ErrorCode, KillSwitchError } from '../errors.js';
import { formatSelector, selectorMatches, type Selector } from '../model/selector.js';

/** Roles, weakest first. KS-5.2.1 */
export const Role = { VIEWER: 'viewer', OPERATOR: 'operator', ADMIN: 'admin' } as const;
export type Role = (typeof Role)[keyof typeof Role];

/**
 * Who a request is: the token's name (it becomes a flip's `actor`), its role, the selectors an
 * operator may flip, and whether it may resume.
 */
export interface Principal {
  readonly name: string;
  readonly role: Role;
  /**
   * For an operator: the selectors it may flip within. A flip's selector is within a scope when
   * it names every attribute the scope names with the same value (it may be narrower). Empty for
   * viewers; ignored for admins (they may flip anything).
   */
  readonly scopes: readonly Selector[];
  /** May lift halts (within its scopes). KS-5.2.3 */
  readonly resume: boolean;
  /**
   * The worker ids this token may acknowledge and stream as: exact ids, or prefixes ending in `*`
   * (`'w-*'`). Absent: an unbound token (it may act only as ids no binding reserves and no other
   * token holds, see `WorkerClaims`). Ignored for admins (they may act as any worker). KS-5.2.9
   */
  readonly workers?: readonly string[];
}

/** What a request wants to do, for {@link authorize}. */
export type Action =
  | { readonly kind: 'read' }
  | { readonly kind: 'ack'; readonly workerId?: string }
  | { readonly kind: 'halt'; readonly selector: Selector }
  | { readonly kind: 'resume'; readonly selector: Selector };

/** True when `selector` is within `scope` (names everything the scope names, equally). */
export function withinScope(selector: Selector, scope: Selector): boolean {
  return selectorMatches(scope, selector);
}

/**
 * True when a worker id matches one of a binding's patterns: an exact id, or a prefix ending in
 * `*` (`'w-*'` matches `w-1`, never `w-` alone nor `x-w-1`). KS-5.2.9
 */
export function workerMatches(patterns: readonly string[], workerId: string): boolean {
  for (const p of patterns) {
    if (p.endsWith('*')) {
      const prefix = p.slice(0, -1);
      if (prefix.length > 0 && workerId.length > prefix.length && workerId.startsWith(prefix))
        return true;
    } else if (p === workerId) return true;
  }
  return false;
}

/**
 * Decides whether a principal may do an action. KS-5.2.2, KS-5.2.3, KS-5.2.4
 *
 * - `read` (state, log, stream, workers) and `ack`: every role; an `ack` naming a worker id is
 *   refused when the principal is bound to worker ids (`workers`) that do not match it (admins may
 *   act as any worker) KS-5.2.9;
 * - `halt`: admin, or an operator whose scopes contain the selector;
 * - `resume`: as halt, and the principal must hold the resume permission.
 *
 * @throws {KillSwitchError} `KS_FORBIDDEN` naming what is missing
 */
export function authorize(principal: Principal, action: Action): void {
  if (action.kind === 'read') return;
  if (action.kind === 'ack') {
    const id = action.workerId;
    if (
      id !== undefined &&
      principal.role !== Role.ADMIN &&
      principal.workers !== undefined &&
      !workerMatches(principal.workers, id)
    ) {
      throw new KillSwitchError(
        ErrorCode.FORBIDDEN,
        `token '${principal.name}' may not act as worker '${id}' (allowed: ${principal.workers.join(' ') || 'none'})`,
      );
    }
    return;
  }
  if (principal.role === Role.VIEWER) {
    throw new KillSwitchError(
      ErrorCode.FORBIDDEN,
      `token '${principal.name}' is a viewer and may not flip`,
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
}
