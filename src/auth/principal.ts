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
}

/** What a request wants to do, for {@link authorize}. */
export type Action =
  | { readonly kind: 'read' }
  | { readonly kind: 'ack' }
  | { readonly kind: 'halt'; readonly selector: Selector }
  | { readonly kind: 'resume'; readonly selector: Selector };

/** True when `selector` is within `scope` (names everything the scope names, equally). */
export function withinScope(selector: Selector, scope: Selector): boolean {
  return selectorMatches(scope, selector);
}

/**
 * Decides whether a principal may do an action. KS-5.2.2, KS-5.2.3, KS-5.2.4
 *
 * - `read` (state, log, stream, workers) and `ack`: every role;
 * - `halt`: admin, or an operator whose scopes contain the selector;
 * - `resume`: as halt, and the principal must hold the resume permission.
 *
 * @throws {KillSwitchError} `KS_FORBIDDEN` naming what is missing
 */
export function authorize(principal: Principal, action: Action): void {
  if (action.kind === 'read' || action.kind === 'ack') return;
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
