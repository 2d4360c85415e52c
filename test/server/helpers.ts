/* eslint-disable @typescript-eslint/no-explicit-any -- test helper: answers are asserted field by field */
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../src/auth/index.js';
import {
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../src/server/index.js';

/** The tokens every server test uses: one per role and an out-of-scope operator. */
export const TOKENS = {
  viewer: 'viewer-token-0123456789',
  operator: 'operator-acme-0123456789',
  operatorNoResume: 'operator-noresume-0123456789',
  capOperator: 'operator-refund-0123456789',
  admin: 'admin-token-0123456789abc',
  expired: 'expired-token-0123456789',
  worker: 'worker-token-0123456789ab',
} as const;

export const TOKEN_SPECS: TokenSpec[] = [
  { name: 'vera', token: TOKENS.viewer, role: 'viewer' },
  {
    name: 'otto',
    token: TOKENS.operator,
    role: 'operator',
    scopes: [{ tenant: 'acme' }],
    resume: true,
  },
  { name: 'olga', token: TOKENS.operatorNoResume, role: 'operator', scopes: [{ tenant: 'acme' }] },
  {
    name: 'cora',
    token: TOKENS.capOperator,
    role: 'operator',
    scopes: [{ capability: 'payments.refund' }],
    resume: true,
  },
  { name: 'ada', token: TOKENS.admin, role: 'admin' },
  { name: 'old', token: TOKENS.expired, role: 'admin', expiresAt: '2001-01-01T00:00:00.000Z' },
  // KS-17.2.1: only worker credentials acknowledge; this one may act as any id no other token holds.
  { name: 'wes', token: TOKENS.worker, role: 'worker', workers: ['*'] },
];

export const silentLogger = { info: () => {}, warn: () => {}, error: () => {} };

export async function startTestServer(
  options: Partial<ControlPlaneOptions> = {},
): Promise<{ cp: ControlPlane; store: MemoryFlipLogStore | ControlPlaneOptions['store'] }> {
  const store = options.store ?? new MemoryFlipLogStore();
  const cp = await startControlPlane({
    port: 0,
    auth: new TokenAuthenticator({ tokens: TOKEN_SPECS }),
    logger: silentLogger,
    // Tests append in bursts; the flip rate limit has its own tests (KS-17.8.3).
    maxFlipsPerSecond: 100_000,
    ...options,
    store,
  });
  return { cp, store };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export async function call(
  cp: ControlPlane,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; json: any }> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined && headers['content-type'] === undefined)
    headers['content-type'] = 'application/json';
  const res = await fetch(cp.url + path, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, json };
}

export const halt = (tenant = 'acme', extra: Record<string, unknown> = {}) => ({
  action: 'halt',
  selector: { tenant },
  reason: 'incident 42',
  ...extra,
});
