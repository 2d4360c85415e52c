/**
 * Entry point of the drill's embedded control plane (`dist/src/drill/control-plane-process.js`),
 * forked by the drill with an IPC channel. It runs in its own process, as `killswitch serve`
 * would in production, so the effect sink and the LLM server (which share the drill's event loop)
 * do not delay the stream it measures. Its clock is the drill clock (KS-9.2.4). KS-9.2.5
 *
 * IPC: receives `{ type: 'start', dataDir, staleAfterMs, heartbeatMs, tokens, signingKeyPem }`, answers
 * `{ type: 'ready', url }` or `{ type: 'failed', message }`; `{ type: 'stop' }` closes and exits.
 */
import { join } from 'node:path';
import { FileFlipLogStore } from '../../../providers/file/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../auth/token-authenticator.js';
import { startControlPlane, type ControlPlane } from '../../server/control-plane.js';
import { systemClock } from '../../internal/clock.js';
import { SigningKey } from '../../integrity/signing-key.js';

interface StartMessage {
  readonly type: 'start';
  readonly dataDir: string;
  readonly staleAfterMs: number;
  readonly heartbeatMs: number;
  /** KS-17.9.3: the drill's own control plane checks tokens like any other. */
  readonly tokens: readonly TokenSpec[];
  /**
   * Its signing key (PKCS#8 PEM), fresh per drill: records, snapshots and acknowledgement answers
   * are signed as with `serve --signing-key`, and the drill's workers get the public key.
   */
  readonly signingKeyPem?: string;
}

if (typeof process.send !== 'function') {
  process.stderr.write(
    'drill control plane: must be started by `killswitch drill` (it needs an IPC channel)\n',
  );
  process.exit(2);
}

const send = (msg: unknown): void => {
  if (process.connected) process.send?.(msg);
};
/** The drill's one time basis (KS-9.2.4): wall labels are monotonic readings. */
const DRILL_CLOCK = { ...systemClock, wallNow: systemClock.now };
let cp: ControlPlane | undefined;
let store: FileFlipLogStore | undefined;

process.on('message', (raw: unknown) => {
  const msg = raw as StartMessage | { type: 'stop' };
  if (msg.type === 'start' && store === undefined) {
    const signingKey =
      msg.signingKeyPem === undefined ? undefined : SigningKey.fromPem(msg.signingKeyPem);
    store = new FileFlipLogStore({
      path: join(msg.dataDir, 'flips.jsonl'),
      logger: { warn: () => undefined },
      // The records' `at` on the drill clock too: a lever's "accepted" time is its record's (KS-9.2.4).
      clock: DRILL_CLOCK,
      ...(signingKey === undefined ? {} : { signingKey }),
    });
    const s = store;
    s.open()
      .then(() =>
        startControlPlane({
          store: s,
          port: 0,
          auth: new TokenAuthenticator({ tokens: msg.tokens }),
          staleAfterMs: msg.staleAfterMs,
          heartbeatMs: msg.heartbeatMs,
          ...(signingKey === undefined ? {} : { signingKey }),
          // A drill pulls levers (and resumes) back to back at every level, many rounds: the flip
          // rate limit (KS-17.8.3) is not what it measures; every other limit stays at its default.
          maxFlipsPerSecond: 100_000,
          logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
          // One time basis for append, ack and complete times and the workers' reports: the
          // labels are monotonic readings, which processes on one machine share (KS-9.2.4).
          clock: DRILL_CLOCK,
        }),
      )
      .then(
        (started) => {
          cp = started;
          send({ type: 'ready', url: started.url });
        },
        (err: unknown) => {
          send({ type: 'failed', message: String((err as Error)?.message ?? err) });
          setTimeout(() => process.exit(1), 20);
        },
      );
  } else if (msg.type === 'stop') {
    void (async () => {
      await cp?.close().catch(() => undefined);
      await store?.close().catch(() => undefined);
      send({ type: 'stopped' });
      setTimeout(() => process.exit(0), 20);
    })();
  }
});

// The drill that forked us went away: nothing would ever stop us.
process.on('disconnect', () => process.exit(1));
