import { OpenFeature } from '@openfeature/server-sdk';
import {
  DuplicateEffectError,
  EffectGuard,
  FileSideEffectLedger,
  HaltedError,
  KillSwitchProvider,
} from 'openfeature-kill-switch';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';

const env = process.env;
const provider = new KillSwitchProvider({
  source: new RemoteFlipSource({
    urls: [env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411'],
    token: env['KILLSWITCH_TOKEN'], // a worker token (locally: .killswitch/admin.token)
    workerId: 'worker-1',
    release: 'v42',
  }),
});
await OpenFeature.setProviderAndWait(provider); // READY at once, every answer halted until fresh
await provider.waitUntilFresh({ timeoutMs: 5000 }); // or throws KS_STALE saying why (token, URL)
const ledger = new FileSideEffectLedger({ path: env['LEDGER_PATH'] ?? './ledger.jsonl' });
const guard = new EffectGuard({ client: OpenFeature.getClient(), ledger });

const runId = env['RUN_ID'] ?? 'ticket-4711'; // one agent run; its steps are its effects
const turn = 1;
const body = JSON.stringify({ order: 'A-1001', amount: 25 });
try {
  const res = await guard.run(
    {
      context: { tenant: 'acme', feature: 'auto-reply' },
      runId,
      step: `${turn}:refund`, // key = run + step: a resumed run repeats no effect
      capability: 'payments.refund',
    },
    (signal, { key }) =>
      fetch(env['REFUNDS_URL'] ?? 'http://127.0.0.1:9000/refunds', {
        method: 'POST',
        signal, // aborted the moment a matching halt arrives
        headers: { 'idempotency-key': key },
        body,
      }),
  );
  console.log(`refund sent: HTTP ${res.status}`);
} catch (err) {
  // KS_HALTED or KS_ABORTED: the flip, or why it failed closed. KS_DUPLICATE_EFFECT: this step
  // already landed (run it again and the refund is not sent twice).
  if (err instanceof HaltedError || err instanceof DuplicateEffectError) console.log(err.message);
  else throw err;
} finally {
  await guard.close(); // waits for the ledger writes
  await ledger.close();
  await OpenFeature.close(); // stops the source: the process exits
}
