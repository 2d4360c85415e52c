import { systemClock, type Clock } from '../internal/clock.js';
import { makeCheckpoint } from '../integrity/record-signatures.js';
import type { SigningKey } from '../integrity/signing-key.js';
import { ApiPath } from '../protocol/paths.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { sendJson } from './internal/http-io.js';
import type { Route } from './router.js';

/**
 * `GET /v1/checkpoint` (any authenticated role): the log's head `{ logId, seq, hash, at, sig? }`,
 * signed when the control plane holds a key, for a monitor to keep where the store's writer
 * cannot reach and compare later with `killswitch verify --expect-head` (KS-17.7.4). Mount it with
 * `controlPlane.router.add(...checkpointRoutes(store, key))`; `killswitch serve` does.
 *
 * @param store - the flip log the control plane serves
 * @param key - the control plane's signing key (KS-17.7.1), if any
 */
export function checkpointRoutes(
  store: FlipLogStore,
  key: SigningKey | undefined,
  clock: Clock = systemClock,
): Route[] {
  return [
    {
      method: 'GET',
      path: ApiPath.CHECKPOINT,
      auth: 'authenticated',
      handle: async ({ res }) => {
        const logId = await store.logId();
        const head = await store.head();
        sendJson(res, 200, makeCheckpoint({ logId, ...head }, new Date(clock.wallNow()), key));
      },
    },
  ];
}
