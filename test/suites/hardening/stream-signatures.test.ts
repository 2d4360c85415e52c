/**
 * KS-17.7.9 over the wire: a worker given the control plane's public key (`publicKeys`) applies
 * only what the key holder signed. A control plane without the key, and a server that is not the
 * key holder (here one that replays a genuinely signed snapshot, then forges a resume that chains
 * exactly), are refused, the record named, and the worker stays failed closed.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { RemoteFlipSource } from '../../../providers/remote/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import { attachSignature, signRecord } from '../../../src/integrity/record-signatures.js';
import { snapshotStatement } from '../../../src/integrity/statements.js';
import { GENESIS_HASH, chainRecord, parseFlipInput } from '../../../src/model/flip-record.js';
import { KillState } from '../../../src/model/kill-state.js';
import { SourceStatus } from '../../../src/source/index.js';
import {
  encodeFlipEvent,
  encodeSnapshotEvent,
  type SnapshotData,
} from '../../../src/protocol/stream-events.js';
// The public entry point: library users build their key from it.
import { SigningKey, startControlPlane } from '../../../src/server/index.js';
import { RecordingListener } from '../support/recording-listener.js';

const FLEET = 'ks-fleet-token-0123456789abc';
const SPECS: TokenSpec[] = [{ name: 'fleet', token: FLEET, role: 'worker', workers: ['w-*'] }];
const key = SigningKey.generate();
const intruder = SigningKey.generate();
const LOG = 'log-signed-stream-test';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function worker(url: string, publicKeys?: string, workerId = 'w-1') {
  const warnings: string[] = [];
  const source = new RemoteFlipSource({
    urls: [url],
    token: FLEET,
    workerId,
    staleAfterMs: 2000,
    heartbeatMs: 200,
    backoff: { initialMs: 50, maxMs: 200 },
    logger: { warn: (m) => warnings.push(m) },
    ...(publicKeys === undefined ? {} : { publicKeys }),
  });
  cleanups.push(() => source.stop());
  const listener = new RecordingListener();
  return { source, listener, warnings };
}

/** The halt at seq 1 and a resume chained onto it that nobody with the key signed. */
const halt = chainRecord(
  parseFlipInput({
    id: 'h1',
    actor: 'oncall',
    action: 'halt',
    selector: { tenant: 'acme' },
    reason: 'INC-7',
  }),
  { seq: 0, hash: GENESIS_HASH },
  new Date('2026-12-05T20:00:00.000Z'),
);
attachSignature(halt, signRecord(key, LOG, 1, halt.hash));
function resume() {
  return chainRecord(
    parseFlipInput({
      id: 'r2',
      actor: 'admin',
      action: 'resume',
      selector: { tenant: 'acme' },
      reason: 'all clear',
    }),
    halt,
    new Date('2026-12-05T20:01:00.000Z'),
  );
}

/**
 * A server that is not the key holder: it sends a snapshot at seq 1 signed with the key (a copy
 * of a genuine one) and then the given flip event, and keeps the stream open.
 */
async function impostor(flipEvent: Buffer): Promise<string> {
  const snapshot: SnapshotData = { ...KillState.fold([halt]).toSnapshot(), logId: LOG };
  const snapshotEvent = encodeSnapshotEvent(snapshot, (json) => key.sign(snapshotStatement(json)));
  const open = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/v1/stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write('retry: 100\n\n');
      res.write(snapshotEvent);
      res.write(flipEvent);
      open.add(res);
      res.on('close', () => open.delete(res));
      return;
    }
    req.resume();
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end('{"error":{"code":"KS_STORE_UNAVAILABLE","message":"impostor"}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const res of open) res.destroy();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('KS-17.7.9 a worker with public keys applies only what the key holder signed', () => {
  it('refuses the unsigned snapshot of a control plane that holds no key, naming it; without keys the same worker follows', async () => {
    const cp = await startControlPlane({
      store: new MemoryFlipLogStore(),
      port: 0,
      auth: new TokenAuthenticator({ tokens: SPECS }),
      heartbeatMs: 200,
      logger: { info() {}, warn() {}, error() {} },
    });
    cleanups.push(() => cp.close());
    const strict = worker(cp.url, key.publicKeyPem);
    void strict.source.start(strict.listener);
    await until(
      () => strict.warnings.some((w) => /snapshot at seq 0 is not signed/.test(w)),
      'the refusal',
    );
    expect(strict.listener.snapshots).toBe(0);
    expect(strict.source.status).not.toBe(SourceStatus.OPEN);

    const lax = worker(cp.url, undefined, 'w-2');
    void lax.source.start(lax.listener);
    await until(() => lax.listener.snapshots === 1, 'the lax worker to apply the snapshot');
    expect(lax.listener.applied).toEqual(['s0']);
  });

  it('refuses a forged resume with no signature (the record named) and stays halted', async () => {
    const url = await impostor(encodeFlipEvent(resume()));
    const w = worker(url, key.publicKeyPem);
    void w.source.start(w.listener);
    await until(
      () => w.warnings.some((m) => /record seq 2: record is not signed/.test(m)),
      'the refusal of seq 2',
    );
    expect(w.listener.applied).not.toContain(2);
    expect(w.listener.state.get({ tenant: 'acme' })?.action).toBe('halt');
    expect(w.source.status).not.toBe(SourceStatus.OPEN);
  });

  it('refuses a forged resume signed by another key, naming the key', async () => {
    const forged = resume();
    attachSignature(forged, signRecord(intruder, LOG, 2, forged.hash));
    const url = await impostor(encodeFlipEvent(forged));
    const w = worker(url, key.publicKeyPem);
    void w.source.start(w.listener);
    await until(
      () =>
        w.warnings.some((m) =>
          new RegExp(`record seq 2: signed by key ${intruder.kid}, which is not among`).test(m),
        ),
      'the refusal of seq 2',
    );
    expect(w.listener.applied).not.toContain(2);
    expect(w.listener.state.get({ tenant: 'acme' })?.action).toBe('halt');
  });

  it('refuses a snapshot whose signature does not verify (another key signed it)', async () => {
    const snapshot: SnapshotData = { ...KillState.fold([halt]).toSnapshot(), logId: LOG };
    // The same snapshot text, but the signature is the intruder's.
    const url = await (async () => {
      const event = encodeSnapshotEvent(snapshot, (json) => intruder.sign(snapshotStatement(json)));
      const server = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(event);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      cleanups.push(() => {
        server.closeAllConnections();
        server.close();
      });
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    })();
    const w = worker(url, key.publicKeyPem);
    void w.source.start(w.listener);
    await until(
      () => w.warnings.some((m) => /snapshot at seq 1: signature does not verify/.test(m)),
      'the refusal of the snapshot',
    );
    expect(w.listener.snapshots).toBe(0);
  });

  it('applies the same resume when the key holder signed it (the check passes what it should)', async () => {
    const signed = resume();
    attachSignature(signed, signRecord(key, LOG, 2, signed.hash));
    const url = await impostor(encodeFlipEvent(signed));
    const w = worker(url, key.publicKeyPem);
    void w.source.start(w.listener);
    await until(() => w.listener.applied.includes(2), 'seq 2 applied');
    expect(w.listener.applied).toEqual(['s1', 2]);
    expect(w.listener.state.get({ tenant: 'acme' })).toBeUndefined();
  });

  it('applies a signed halt (not drain) from the stream and keeps it: its check finds its signature (KS-6.3.14)', async () => {
    const halt2 = chainRecord(
      parseFlipInput({
        id: 'h2',
        actor: 'oncall',
        action: 'halt',
        selector: { tenant: 'beta' },
        reason: 'INC-8',
      }),
      halt,
      new Date('2026-12-05T20:01:00.000Z'),
    );
    attachSignature(halt2, signRecord(key, LOG, 2, halt2.hash));
    const url = await impostor(encodeFlipEvent(halt2));
    const w = worker(url, key.publicKeyPem);
    void w.source.start(w.listener);
    await until(() => w.listener.applied.includes(2), 'seq 2 applied');
    // Long enough for the check phase and a reconnection (backoff 50 ms) had the check failed.
    await new Promise((r) => setTimeout(r, 300));
    expect(w.listener.applied).toEqual(['s1', 2]);
    expect(w.source.appliedSeq).toBe(2);
    expect(w.warnings.filter((m) => m.includes('resynchronising'))).toEqual([]);
  });

  it('refuses a publicKeys option that holds no Ed25519 public key', () => {
    expect(
      () =>
        new RemoteFlipSource({
          urls: ['http://127.0.0.1:1'],
          workerId: 'w-1',
          publicKeys: 'not a key',
        }),
    ).toThrow(/publicKeys/);
  });
});
