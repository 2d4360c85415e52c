/**
 * KS-17.7.10 over the wire: a heartbeat does not renew a worker's lease (only an acknowledgement
 * answer does, KS-6.2.2), but both were unsigned, so someone on the path could keep a worker
 * fresh forever with the control plane gone: a genuinely signed snapshot replayed, heartbeats
 * and acknowledgement answers forged, every flip withheld. A worker given public keys now renews
 * only on an answer signed over the nonce of its own acknowledgement: the forger's answers, and
 * a genuine answer replayed, renew nothing, and the worker fails closed when its lease runs out.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { RemoteFlipSource } from '../../../providers/remote/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import { attachSignature, signRecord } from '../../../src/integrity/record-signatures.js';
import { ackAnswerStatement, snapshotStatement } from '../../../src/integrity/statements.js';
import { GENESIS_HASH, chainRecord, parseFlipInput } from '../../../src/model/flip-record.js';
import { KillState } from '../../../src/model/kill-state.js';
import {
  encodeEvent,
  encodeSnapshotEvent,
  StreamEvent,
  type SnapshotData,
} from '../../../src/protocol/stream-events.js';
import { SourceStatus } from '../../../src/source/index.js';
import { SigningKey, startControlPlane } from '../../../src/server/index.js';
import { PublicKeyRing } from '../../../src/integrity/signing-key.js';
import { RecordingListener } from '../support/recording-listener.js';

const FLEET = 'ks-fleet-token-0123456789abc';
const SPECS: TokenSpec[] = [{ name: 'fleet', token: FLEET, role: 'worker', workers: ['w-*'] }];
const key = SigningKey.generate();
const LOG = 'log-signed-ack-test';
const STALE_MS = 1000;

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

const halt = chainRecord(
  parseFlipInput({
    id: 'h1',
    actor: 'oncall',
    action: 'halt',
    selector: { tenant: 'acme' },
    reason: 'INC-8',
  }),
  { seq: 0, hash: GENESIS_HASH },
  new Date('2026-12-05T20:00:00.000Z'),
);
attachSignature(halt, signRecord(key, LOG, 1, halt.hash));

/**
 * The man in the middle with the control plane gone: a genuinely signed snapshot at seq 1 (a
 * copy), forged heartbeats at that head every 100 ms, and acknowledgement answers that always say
 * "you are up to date", unsigned or with a signature copied from a genuine answer to another
 * acknowledgement (`replayed`).
 */
async function forger(answerSig?: string): Promise<{ url: string; acks: () => number }> {
  const snapshot: SnapshotData = { ...KillState.fold([halt]).toSnapshot(), logId: LOG };
  const snapshotEvent = encodeSnapshotEvent(snapshot, (json) => key.sign(snapshotStatement(json)));
  const open = new Set<ServerResponse>();
  let acks = 0;
  const beat = setInterval(() => {
    const data = { head: 1, at: new Date().toISOString(), logId: LOG, hash: halt.hash };
    for (const res of open) res.write(encodeEvent(StreamEvent.HEARTBEAT, data));
  }, 100);
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/v1/stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write('retry: 100\n\n');
      res.write(snapshotEvent);
      open.add(res);
      res.on('close', () => open.delete(res));
      return;
    }
    if (req.method === 'POST' && req.url === '/v1/acks') {
      req.resume();
      req.on('end', () => {
        acks++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            head: 1,
            serverTime: new Date().toISOString(),
            staleAfterMs: STALE_MS,
            logId: LOG,
            hash: halt.hash,
            ...(answerSig === undefined ? {} : { sig: answerSig }),
          }),
        );
      });
      return;
    }
    req.resume();
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":{"code":"KS_NOT_FOUND","message":"forger"}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        clearInterval(beat);
        for (const res of open) res.destroy();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, acks: () => acks };
}

function worker(url: string, publicKeys: string | undefined) {
  const warnings: string[] = [];
  const source = new RemoteFlipSource({
    urls: [url],
    token: FLEET,
    workerId: 'w-1',
    staleAfterMs: STALE_MS,
    heartbeatMs: 150,
    backoff: { initialMs: 50, maxMs: 200 },
    // One channel of its own: the forged answers must not reach another test's source.
    shareAcks: false,
    logger: { warn: (m) => warnings.push(m) },
    ...(publicKeys === undefined ? {} : { publicKeys }),
  });
  cleanups.push(() => source.stop());
  const listener = new RecordingListener();
  void source.start(listener);
  return { source, listener, warnings };
}

/** Whether the source was OPEN at every check over `ms` (checked every 50 ms). */
async function openThroughout(source: RemoteFlipSource, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (source.status !== SourceStatus.OPEN) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

describe('KS-17.7.10 only a signed acknowledgement answer renews the lease of a worker with keys', () => {
  it('the hole, without keys: forged heartbeats and answers keep a worker open for 3 leases with no control plane', async () => {
    const f = await forger();
    const w = worker(f.url, undefined);
    await until(() => w.source.status === SourceStatus.OPEN, 'open on the forger');
    expect(await openThroughout(w.source, 3 * STALE_MS)).toBe(true);
  });

  it('with keys, the same forger never renews the lease: the worker fails closed, naming the unsigned answer', async () => {
    const f = await forger();
    const w = worker(f.url, key.publicKeyPem);
    // The signed snapshot applies (the halt stays enforced), but nothing renews the lease.
    await until(() => w.listener.snapshots === 1, 'the signed snapshot applied');
    await until(() => f.acks() >= 3, 'several acknowledgements answered');
    await until(
      () => w.warnings.some((m) => /renews nothing: the answer is not signed/.test(m)),
      'the refusal',
    );
    expect(await openThroughout(w.source, 50)).toBe(false);
    await new Promise((r) => setTimeout(r, STALE_MS));
    expect(w.source.status).not.toBe(SourceStatus.OPEN);
  });

  it('a genuine signature replayed from another acknowledgement renews nothing', async () => {
    const replayed = key.sign(
      ackAnswerStatement('captured-nonce-0123456789', {
        logId: LOG,
        head: 1,
        hash: halt.hash,
        staleAfterMs: STALE_MS,
      }),
    );
    const f = await forger(replayed);
    const w = worker(f.url, key.publicKeyPem);
    await until(
      () => w.warnings.some((m) => /does not verify for this acknowledgement/.test(m)),
      'the refusal of the replayed answer',
    );
    await new Promise((r) => setTimeout(r, STALE_MS));
    expect(w.source.status).not.toBe(SourceStatus.OPEN);
  });

  it('a control plane holding the key signs each answer over the nonce: the worker with keys stays open, and its lease ends when the control plane is gone', async () => {
    const cp = await startControlPlane({
      store: new MemoryFlipLogStore(),
      port: 0,
      auth: new TokenAuthenticator({ tokens: SPECS }),
      heartbeatMs: 150,
      signingKey: key,
      logger: { info() {}, warn() {}, error() {} },
    });
    let closed = false;
    cleanups.push(() => (closed ? undefined : cp.close()));
    const w = worker(cp.url, key.publicKeyPem);
    await until(() => w.source.status === SourceStatus.OPEN, 'open on the key holder');
    expect(await openThroughout(w.source, 2 * STALE_MS)).toBe(true);
    // The acknowledgement's answer carries a signature over a nonce the worker sent.
    const res = await fetch(`${cp.url}/v1/acks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${FLEET}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        acks: [{ workerId: 'w-probe', seq: 0 }],
        nonce: 'probe-nonce-0123456789',
      }),
    });
    const answer = (await res.json()) as {
      logId: string;
      head: number;
      hash: string;
      staleAfterMs: number;
      sig: string;
    };
    expect(answer.sig).toMatch(new RegExp(`^${key.kid}:`));
    expect(
      PublicKeyRing.of(key).verify(
        ackAnswerStatement('probe-nonce-0123456789', answer),
        answer.sig,
      ),
    ).toBe(true);
    closed = true;
    await cp.close();
    await until(() => w.source.status !== SourceStatus.OPEN, 'failed closed', 2 * STALE_MS + 1000);
  });
});
