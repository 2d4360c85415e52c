import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../auth/principal.js';
import type { RequestTarget } from './request-target.js';

/** HTTP methods a route can serve. */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What a route handler gets. */
export interface RouteContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The request target as a URL (built on first use). */
  readonly url: URL;
  /** The request target's path as sent, its query (`''` when none) and parameters on demand. */
  readonly target: RequestTarget;
  /** `:name` segments of the route's path, decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** The authenticated caller; undefined only on `public` routes. */
  readonly principal: Principal | undefined;
  /** Reads and parses the JSON body (size-limited, KS-5.1.6). */
  readonly body: () => Promise<unknown>;
}

/**
 * One entry of the route table. Later parts (Alertmanager webhook, /metrics, OFREP, the web
 * console) mount themselves by adding routes, either through `startControlPlane({ routes })` or
 * `controlPlane.router.add(...)`.
 *
 * @example
 * ```ts
 * const metrics: Route = { method: 'GET', path: '/metrics', auth: 'public', handle: ({ res }) => res.end('…') };
 * ```
 */
export interface Route {
  readonly method: HttpMethod;
  /** `/v1/flips`, `/ofrep/v1/evaluate/flags/:key`, or a prefix ending in `/*` (`/console/*`). */
  readonly path: string;
  /** `public`: no token needed; `authenticated`: a valid token (then the handler authorises). */
  readonly auth: 'public' | 'authenticated';
  handle(ctx: RouteContext): Promise<void> | void;
}

/** What {@link Router.match} found. */
export type RouteMatch =
  | { readonly kind: 'found'; readonly route: Route; readonly params: Record<string, string> }
  | { readonly kind: 'method-not-allowed'; readonly allow: readonly string[] }
  | { readonly kind: 'not-found' };

interface Compiled {
  readonly route: Route;
  readonly segments: readonly string[];
  readonly prefix: boolean;
}

/**
 * A small route table: exact segments, `:param` segments and `/*` prefixes; the first route
 * added wins. Unknown paths answer 404, known paths with another method 405 with `Allow`.
 * KS-5.1.7
 */
export class Router {
  readonly #routes: Compiled[] = [];
  /**
   * Routes without `:param` or prefix, by path then method, that no route added before them
   * takes from them: what {@link Router.match} finds for that method and path by its walk, found
   * with two map lookups (every request is matched, the flip route's among them).
   */
  readonly #exact = new Map<string, Map<string, Route>>();

  /** Adds routes; a method+path pair already present is refused. */
  add(...routes: readonly Route[]): this {
    for (const route of routes) {
      if (!route.path.startsWith('/'))
        throw new TypeError(`route path must start with '/': ${route.path}`);
      if (
        this.#routes.some((c) => c.route.method === route.method && c.route.path === route.path)
      ) {
        throw new TypeError(`route ${route.method} ${route.path} is already mounted`);
      }
      const prefix = route.path.endsWith('/*');
      const path = prefix ? route.path.slice(0, -2) : route.path;
      const compiled: Compiled = { route, prefix, segments: path.split('/').slice(1) };
      if (
        !prefix &&
        !compiled.segments.some((seg) => seg.startsWith(':')) &&
        !this.#routes.some(
          (c) => c.route.method === route.method && matchPath(c, compiled.segments) !== undefined,
        )
      ) {
        let byMethod = this.#exact.get(route.path);
        if (byMethod === undefined) this.#exact.set(route.path, (byMethod = new Map()));
        byMethod.set(route.method, route);
      }
      this.#routes.push(compiled);
    }
    return this;
  }

  /** Every mounted route, in order. */
  routes(): Route[] {
    return this.#routes.map((c) => c.route);
  }

  match(method: string, pathname: string): RouteMatch {
    const exact = this.#exact.get(pathname)?.get(method);
    if (exact !== undefined) return { kind: 'found', route: exact, params: {} };
    const parts = pathname.split('/').slice(1);
    const allow = new Set<string>();
    for (const c of this.#routes) {
      const params = matchPath(c, parts);
      if (params === undefined) continue;
      if (c.route.method === method || (method === 'HEAD' && c.route.method === 'GET')) {
        return { kind: 'found', route: c.route, params };
      }
      allow.add(c.route.method);
    }
    if (allow.size > 0) return { kind: 'method-not-allowed', allow: [...allow].sort() };
    return { kind: 'not-found' };
  }
}

function matchPath(c: Compiled, parts: readonly string[]): Record<string, string> | undefined {
  if (c.prefix ? parts.length < c.segments.length : parts.length !== c.segments.length)
    return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < c.segments.length; i++) {
    const seg = c.segments[i]!;
    const part = parts[i]!;
    if (seg.startsWith(':')) {
      if (part === '') return undefined;
      let value: string;
      try {
        value = decodeURIComponent(part);
      } catch {
        return undefined;
      }
      params[seg.slice(1)] = value;
    } else if (seg !== part) {
      return undefined;
    }
  }
  return params;
}
