/**
 * A Mastra agent under the kill switch, in three lines (`guardRun` in agent.ts). A scripted
 * model (no network) asks for a slow `send_update` tool each turn; runs follow one another until a
 * flip halts the tenant: the tool in flight is aborted and the run ends with the HaltedError
 * naming the flip. To use a real model, replace the scripted one in agent.ts with your provider's
 * (e.g. `openai('gpt-5')` from `@ai-sdk/openai`) and set its API key.
 *
 * Run: `npm start` in one terminal (the control plane), then `npm run build && node
 * dist/examples/mastra/main.js`, and flip: `npx killswitch flip --tenant acme --reason test`.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { OpenFeature } from '@openfeature/server-sdk';
import {
  EffectGuard,
  HaltedError,
  KillSwitchProvider,
  MemorySideEffectLedger,
} from 'openfeature-kill-switch';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';
import { handleTicket } from './agent.js';

const env = process.env;
const url = env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411';
const dataDir = resolve(env['KILLSWITCH_DATA_DIR'] ?? './.killswitch');
const tenant = env['EXAMPLE_TENANT'] ?? 'acme';
const log = (line: string) => process.stdout.write(`${line}\n`);

const token =
  env['KILLSWITCH_TOKEN'] ??
  (await readFile(join(dataDir, 'admin.token'), 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  ));
const provider = new KillSwitchProvider({
  source: new RemoteFlipSource({
    urls: [url],
    workerId: `mastra-example-${process.pid}`,
    release: 'v1',
    ...(token !== undefined ? { token } : {}),
  }),
});
await OpenFeature.setProviderAndWait('mastra-example', provider);
await provider.waitUntilFresh({ timeoutMs: 10_000 });
const guard = new EffectGuard({
  client: OpenFeature.getClient('mastra-example'),
  ledger: new MemorySideEffectLedger(),
});

log(
  `following ${url} as tenant ${tenant}; flip with: npx killswitch flip --tenant ${tenant} --reason test`,
);
for (let n = 1; ; n++) {
  const runId = `ticket-${n}`;
  log(`run ${runId}: started`);
  try {
    log(`run ${runId}: done (${await handleTicket(guard, runId, tenant)})`);
  } catch (err) {
    if (!(err instanceof HaltedError)) throw err;
    log(`run ${runId}: HALTED by flip #${err.flip?.seq ?? '?'} (${err.code}): ${err.message}`);
    break;
  }
}
await guard.close();
await OpenFeature.close();
