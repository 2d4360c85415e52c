/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { mountAlertmanager } from '../../src/server/alertmanager-webhook.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';

const T = {
  admin: 'am-admin-token-0123456789',
  alertmanager: 'am-operator-token-0123456789',
  viewer: 'am-viewer-token-0123456789',
} as const;

let cp: ControlPlane | undefined;
let store: MemoryFlipLogStore;

afterEach(async () => {
  await cp?.close();
  cp = undefined;
});

async function start(): Promise<ControlPlane> {
  store = new MemoryFlipLogStore();
  cp = await startControlPlane({
    store,
    port: 0,
    auth: new TokenAuthenticator({
      tokens: [
        { name: 'ada', token: T.admin, role: 'admin' },
        {
          name: 'alertmanager',
          token: T.alertmanager,
          role: 'operator',
          scopes: [{ capability: 'payments.refund' }, { tenant: 'acme' }],
        },
        { name: 'vera', token: T.viewer, role: 'viewer' },
      ],
    }),
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  mountAlertmanager(cp, store);
  return cp;
}

function alert(
  labels: Record<string, string>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    status: 'firing',
    labels: { alertname: 'RefundRateHigh', ...labels },
    annotations: { summary: 'refunds at 40/s' },
    startsAt: '2026-11-24T03:00:00.000Z',
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: 'http://prometheus.invalid/graph',
    fingerprint: 'a1b2c3d4e5f60718',
    ...extra,
  };
}

function payload(alerts: unknown[], status = 'firing'): Record<string, unknown> {
  return {
    version: '4',
    groupKey: '{}:{alertname="RefundRateHigh"}',
    truncatedAlerts: 0,
    status,
    receiver: 'killswitch',
    groupLabels: { alertname: 'RefundRateHigh' },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.invalid',
    alerts,
  };
}

async function post(
  body: unknown,
  token: string | null = T.alertmanager,
): Promise<{ status: number; json: any }> {
  const res = await fetch(`${cp!.url}/v1/alerts/alertmanager`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

const CAP = { killswitch_level: 'capability', capability: 'payments.refund' };

describe('KS-11.5.3 a firing alert halts its scope, once', () => {
  it('appends one halt with source alertmanager, the alert in the reason and the token as actor', async () => {
    await start();
    const r = await post(payload([alert({ ...CAP, killswitch_mode: 'hold' })]));
    expect(r.status).toBe(200);
    expect(r.json.halts).toEqual([
      expect.objectContaining({
        outcome: 'halted',
        selector: { capability: 'payments.refund' },
        seq: 1,
      }),
    ]);
    const [rec] = await store.read();
    expect(rec).toMatchObject({
      action: 'halt',
      actor: 'alertmanager',
      source: 'alertmanager',
      mode: 'hold',
      selector: { capability: 'payments.refund' },
    });
    expect(rec!.reason).toContain('RefundRateHigh firing: refunds at 40/s');
    expect(rec!.reason).toContain('a1b2c3d4e5f60718');
    expect(cp!.snapshot().halts).toHaveLength(1);
  });

  it('a flood of 1,000 alerts (repeats and distinct alerts on one scope, concurrent) makes one record', async () => {
    await start();
    const requests: Promise<{ status: number }>[] = [];
    for (let i = 0; i < 1000; i++) {
      // Half are Alertmanager repeating one alert, half are distinct alerts naming the same scope.
      const a =
        i % 2 === 0
          ? alert(CAP)
          : alert({ ...CAP, instance: `pod-${i}` }, { fingerprint: `fp-${i}` });
      requests.push(post(payload([a])));
      if (requests.length >= 50) {
        for (const r of await Promise.all(requests.splice(0))) expect(r.status).toBe(200);
      }
    }
    for (const r of await Promise.all(requests)) expect(r.status).toBe(200);
    const records = await store.read();
    expect(records).toHaveLength(1);
    expect(records[0]!.selector).toEqual({ capability: 'payments.refund' });
  });

  it('one payload with many alerts makes one halt per distinct selector and counts the alerts', async () => {
    await start();
    const alerts = [
      ...Array.from({ length: 20 }, (_, i) => alert(CAP, { fingerprint: `c-${i}` })),
      ...Array.from({ length: 5 }, (_, i) =>
        alert({ killswitch_level: 'tenant', tenant: 'acme' }, { fingerprint: `t-${i}` }),
      ),
    ];
    const r = await post(payload(alerts), T.admin);
    expect(r.status).toBe(200);
    expect(r.json.halts.map((h: any) => [h.outcome, h.alerts])).toEqual([
      ['halted', 20],
      ['halted', 5],
    ]);
    expect(await store.read()).toHaveLength(2);
  });

  it('an alert episode delivered again after a human resumed does not halt again; a new episode does', async () => {
    await start();
    expect((await post(payload([alert(CAP)]))).status).toBe(200);
    await store.append({
      actor: 'ada',
      action: 'resume',
      selector: { capability: 'payments.refund' },
      reason: 'fixed',
      release: 'v2',
    });
    // Wait for the control plane to fold the resume.
    for (let i = 0; i < 100 && cp!.snapshot().seq < 2; i++)
      await new Promise((r) => setTimeout(r, 5));
    const again = await post(payload([alert(CAP)]));
    expect(again.json.halts[0].outcome).toBe('duplicate');
    expect(await store.read()).toHaveLength(2);
    const next = await post(payload([alert(CAP, { startsAt: '2026-11-24T05:00:00.000Z' })]));
    expect(next.json.halts[0].outcome).toBe('halted');
    expect((await store.read()).map((r) => r.action)).toEqual(['halt', 'resume', 'halt']);
  });
});

describe('KS-11.5.4 resolved alerts never resume', () => {
  it('a resolved notification leaves the halt in place and appends nothing', async () => {
    await start();
    await post(payload([alert(CAP)]));
    const r = await post(payload([alert(CAP, { status: 'resolved' })], 'resolved'));
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ halts: [], ignoredResolved: 1 });
    expect(await store.read()).toHaveLength(1);
    expect(cp!.snapshot().halts).toHaveLength(1);
  });
});

describe('KS-11.5.1 KS-11.5.2 malformed payloads answer 400 and append nothing', () => {
  const cases: [string, unknown, RegExp][] = [
    ['not JSON', '{"version": "4", ', /not valid JSON/],
    ['an empty body', '', /empty/],
    ['an array', [], /Alertmanager payload/],
    ['a wrong version', { ...payload([alert(CAP)]), version: '3' }, /version/],
    ['no alerts', payload([]), /alerts/],
    [
      'labels that are not strings',
      payload([alert({ ...CAP, capability: 42 as unknown as string })]),
      /capability/,
    ],
    [
      'a firing alert without killswitch_level',
      payload([alert({ capability: 'payments.refund' })]),
      /killswitch_level/,
    ],
    ['an unknown level', payload([alert({ killswitch_level: 'planet' })]), /killswitch_level/],
    [
      'a capability level without the capability label',
      payload([alert({ killswitch_level: 'capability' })]),
      /capability: required/,
    ],
    ['a run level without run_id', payload([alert({ killswitch_level: 'run' })]), /run_id/],
    [
      'a bad queue mode',
      payload([alert({ ...CAP, killswitch_mode: 'explode' })]),
      /killswitch_mode/,
    ],
    [
      'a label with a control character',
      payload([alert({ killswitch_level: 'tenant', tenant: 'ac\u0000me' })]),
      /tenant/,
    ],
    ['an alert with a bad status', payload([alert(CAP, { status: 'pending' })]), /status/],
  ];
  for (const [name, body, message] of cases) {
    it(`${name}`, async () => {
      await start();
      const r = await post(body, T.admin);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe('KS_INVALID_INPUT');
      expect(JSON.stringify(r.json.error)).toMatch(message);
      expect(await store.read()).toHaveLength(0);
    });
  }

  it('one bad alert among good ones appends nothing, and the 400 lists the bad one by index', async () => {
    await start();
    const r = await post(
      payload([
        alert(CAP),
        alert({ killswitch_level: 'tenant' }),
        alert(CAP, { fingerprint: 'x' }),
      ]),
      T.admin,
    );
    expect(r.status).toBe(400);
    expect(r.json.error.issues).toEqual([
      { path: ['alerts', 1, 'labels', 'tenant'], message: expect.any(String) },
    ]);
    expect(await store.read()).toHaveLength(0);
  });
});

describe('KS-11.5.5 the webhook needs a token allowed to halt what the alerts name', () => {
  it('no token: 401; a viewer: 403; nothing appended', async () => {
    await start();
    expect((await post(payload([alert(CAP)]), null)).status).toBe(401);
    const v = await post(payload([alert(CAP)]), T.viewer);
    expect(v.status).toBe(403);
    expect(v.json.error.code).toBe('KS_FORBIDDEN');
    expect(await store.read()).toHaveLength(0);
  });

  it('an operator outside its scopes gets 403 for the whole payload, even when some alerts are in scope', async () => {
    await start();
    const r = await post(
      payload([
        alert(CAP),
        alert({ killswitch_level: 'tenant', tenant: 'globex' }, { fingerprint: 'g' }),
      ]),
    );
    expect(r.status).toBe(403);
    expect(await store.read()).toHaveLength(0);
    const global = await post(payload([alert({ killswitch_level: 'global' })]));
    expect(global.status).toBe(403);
    // An admin may halt everything from an alert, when the level says so explicitly.
    const admin = await post(payload([alert({ killswitch_level: 'global' })]), T.admin);
    expect(admin.status).toBe(200);
    expect((await store.read()).map((r) => r.selector)).toEqual([{}]);
  });
});
