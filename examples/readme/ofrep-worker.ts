import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature } from '@openfeature/server-sdk';
import { EffectGuard, FileSideEffectLedger } from 'openfeature-kill-switch';
import { HaltPoller, timeoutFetch } from 'openfeature-kill-switch/ofrep';

await OpenFeature.setProviderAndWait(
  new OFREPProvider({
    baseUrl: process.env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411',
    headers: { authorization: `Bearer ${process.env['KILLSWITCH_TOKEN']}` },
    fetchImplementation: timeoutFetch({ timeoutMs: 1000 }),
  }),
);
const ledger = new FileSideEffectLedger({ path: process.env['LEDGER_PATH'] ?? './ledger.jsonl' });
const guard = new EffectGuard({ client: OpenFeature.getClient(), ledger });
const poller = new HaltPoller({ watcher: guard.watcher, intervalMs: 1000 });
poller.start();

try {
  await guard.run(
    { context: { tenant: 'acme' }, runId: 'ticket-7', step: 'notify', capability: 'email.send' },
    async (signal) => console.log(`sending (aborted: ${signal.aborted})`),
  );
} catch (err) {
  console.log((err as Error).message); // KS_HALTED: halted, or failed closed (and why)
} finally {
  poller.stop(); // shutdown: stop polling, then close what the worker opened
  await guard.close();
  await ledger.close();
  await OpenFeature.close();
}
