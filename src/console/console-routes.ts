import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { authorize, Role, visibleSimilar, type Principal } from '../auth/principal.js';
import { ErrorCode, KillSwitchError } from '../errors.js';
import { ApiPath } from '../protocol/paths.js';
import type { FleetTracker } from '../server/fleet-tracker.js';
import { HttpError, sendJson } from '../server/internal/http-io.js';
import type { Route, RouteContext, Router } from '../server/router.js';
import { CONSOLE_CSS, CONSOLE_HTML } from './console-page.js';
import { CONSOLE_SCRIPT } from './console-script.js';

/**
 * The Content-Security-Policy of every console response (KS-11.1.1): scripts and styles only from
 * this server (no inline script, so an injected `<script>` cannot run even if escaping failed),
 * fetches only to this server, no frames, no forms posting anywhere, no plugins, no base
 * rewriting. The page needs nothing else.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

/** Headers sent with every console asset. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

function asset(text: string, type: string): Asset {
  const body = Buffer.from(text, 'utf8');
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, type, etag };
}

const ASSETS = {
  html: asset(CONSOLE_HTML, 'text/html; charset=utf-8'),
  css: asset(CONSOLE_CSS, 'text/css; charset=utf-8'),
  js: asset(CONSOLE_SCRIPT, 'text/javascript; charset=utf-8'),
} as const;

/** Options of {@link consoleRoutes}. */
export interface ConsoleRoutesOptions {
  /**
   * Per-flip acknowledgements: the control plane's fleet tracker (`controlPlane.tracker`), or
   * anything with its `status(seq)`, such as `{ status: (s) => controlPlane.fleetStatus(s) }`,
   * which answers for the whole fleet when replicas share it (KS-6.6).
   */
  readonly tracker: Pick<FleetTracker, 'status'>;
}

/**
 * The web console's routes (KS-11.1): `GET /` (the page), `GET /console/app.js` and
 * `GET /console/app.css` (public: static text with no data and no secret), and
 * `GET /v1/flips/:seq/fleet`, the fleet's answer for one flip (who acknowledged it and when the
 * stop was complete; viewer at least, KS-11.1.6).
 *
 * @param options - the tracker to read per-flip acknowledgements from
 * @returns routes to pass to `startControlPlane({ routes })` or `router.add(...)`
 * @example
 * ```ts
 * const cp = await startControlPlane({ store, auth });
 * cp.router.add(...consoleRoutes({ tracker: cp.tracker }));
 * ```
 */
export function consoleRoutes(options: ConsoleRoutesOptions): Route[] {
  const tracker = options.tracker;
  return [
    {
      method: 'GET',
      path: '/',
      auth: 'public',
      handle: ({ req, res }) => serve(req.headers['if-none-match'], res, ASSETS.html),
    },
    {
      method: 'GET',
      path: '/console/app.js',
      auth: 'public',
      handle: ({ req, res }) => serve(req.headers['if-none-match'], res, ASSETS.js),
    },
    {
      method: 'GET',
      path: '/console/app.css',
      auth: 'public',
      handle: ({ req, res }) => serve(req.headers['if-none-match'], res, ASSETS.css),
    },
    {
      method: 'GET',
      path: ApiPath.FLIP_FLEET,
      auth: 'authenticated',
      handle: (ctx) => flipFleet(ctx, tracker),
    },
  ];
}

/**
 * Mounts the console on a running control plane.
 *
 * @param cp - anything with the control plane's `router` and `tracker`
 * @example
 * ```ts
 * mountConsole(await startControlPlane({ store, auth }));
 * ```
 */
export function mountConsole(cp: {
  readonly router: Router;
  readonly tracker: FleetTracker;
  /** The whole fleet's answer when replicas share it (KS-6.6); the tracker's otherwise. */
  fleetStatus?(seq: number): ReturnType<FleetTracker['status']>;
}): void {
  const tracker =
    typeof cp.fleetStatus === 'function'
      ? { status: (seq: number) => cp.fleetStatus!(seq) }
      : cp.tracker;
  cp.router.add(...consoleRoutes({ tracker }));
}

function serve(ifNoneMatch: string | undefined, res: ServerResponse, a: Asset): void {
  if (ifNoneMatch !== undefined && ifNoneMatch === a.etag) {
    res.writeHead(304, { ...SECURITY_HEADERS, etag: a.etag, 'cache-control': 'no-cache' });
    res.end();
    return;
  }
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': a.type,
    'content-length': a.body.length,
    etag: a.etag,
    // Revalidate every time: after an upgrade the page and its script must match the server.
    'cache-control': 'no-cache',
  });
  res.end(res.req.method === 'HEAD' ? undefined : a.body);
}

const ANONYMOUS_ADMIN: Principal = {
  name: 'anonymous',
  role: Role.ADMIN,
  scopes: [],
  resume: true,
};

function flipFleet(
  { res, params, principal }: RouteContext,
  tracker: Pick<FleetTracker, 'status'>,
): void {
  // auth 'none' passes no principal; the control plane treats that caller as an anonymous admin.
  authorize(principal ?? ANONYMOUS_ADMIN, { kind: 'read' });
  const raw = params['seq'] ?? '';
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1) {
    throw new HttpError(400, ErrorCode.INVALID_INPUT, 'seq must be a positive integer', {
      issues: [{ path: ['seq'], message: 'must be a positive integer' }],
    });
  }
  const status = tracker.status(Number(raw));
  if (status === undefined) {
    throw new KillSwitchError(
      ErrorCode.NOT_FOUND,
      `flip ${raw} is not tracked (before this server started, or too old)`,
    );
  }
  // KS-17.4.1 this route carries no selector, so a scoped reader gets no near-miss values: they
  // are values workers saw in other contexts and can name another tenant.
  const who = principal ?? ANONYMOUS_ADMIN;
  const similar = status.matched?.similar;
  if (status.matched !== undefined && similar !== undefined && similar.length > 0) {
    const shown = visibleSimilar(who, undefined, similar);
    if (shown !== similar) {
      sendJson(res, 200, { ...status, matched: { ...status.matched, similar: shown } });
      return;
    }
  }
  sendJson(res, 200, status);
}
