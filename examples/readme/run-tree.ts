import { OpenFeature } from '@openfeature/server-sdk';
import {
  EffectGuard,
  FileSideEffectLedger,
  HaltedError,
  KillSwitchProvider,
  runInScope,
  spawnChildRun,
} from 'openfeature-kill-switch';
import { lineageFromHeaders, lineageToHeaders } from 'openfeature-kill-switch/lineage';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';

const env = process.env;
const provider = new KillSwitchProvider({
  source: new RemoteFlipSource({
    urls: [env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411'],
    token: env['KILLSWITCH_TOKEN'],
    workerId: 'worker-1',
  }),
});
await OpenFeature.setProviderAndWait(provider);
await provider.waitUntilFresh({ timeoutMs: 5000 });
const ledger = new FileSideEffectLedger({ path: env['LEDGER_PATH'] ?? './ledger.jsonl' });
const guard = new EffectGuard({ client: OpenFeature.getClient(), ledger });

// A root run: everything started inside inherits its tenant, feature and run path.
await runInScope({ tenant: 'acme', feature: 'research', runPath: ['report-7'] }, () =>
  Promise.all(
    ['pricing', 'reviews'].map((topic) =>
      // A child run: its id is derived from the parent's and the step (a resumed parent derives
      // the same one), and the spawn is guarded (refused while any ancestor is halted).
      spawnChildRun(guard, `research-${topic}`, async (child) => {
        // Effects inside need no context: they carry the child's lineage (runPath root first).
        const res = await guard.run({ step: 'search', capability: 'search.read' }, (signal) =>
          fetch(env['TOOL_URL'] ?? 'http://127.0.0.1:9000/search', {
            method: 'POST',
            signal,
            // The lineage crosses to the tool service; there `runInScope(lineage, handler)`.
            headers: lineageToHeaders(child.lineage),
            body: JSON.stringify({ topic }),
          }),
        );
        console.log(`${child.runPath.join(' > ')}: HTTP ${res.status}`);
      }).catch((err: unknown) => {
        if (err instanceof HaltedError)
          console.log(err.message); // the parent is halted
        else throw err;
      }),
    ),
  ),
);

// The receiving side reads and validates it (refused with KS_INVALID_INPUT when malformed).
const arrived = lineageFromHeaders({ 'x-killswitch-run-path': 'report-7,research-pricing.1a2b' });
console.log(`a tool service would run under ${arrived?.runPath.join(' > ')}`);
await guard.close();
await ledger.close();
await OpenFeature.close();
