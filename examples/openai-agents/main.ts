/**
 * An OpenAI Agents SDK agent under the kill switch, in three lines (see `guardRun` below). A
 * scripted model (no network) asks for a slow `send_update` tool each turn; runs follow one
 * another until a flip halts the tenant: the tool in flight is aborted and the run ends with the
 * HaltedError naming the flip. To use a real model, give the agent a model name (e.g. 'gpt-5')
 * and set OPENAI_API_KEY.
 *
 * Run: `npm start` in one terminal (the control plane), then `npm run build && node
 * dist/examples/openai-agents/main.js`, and flip: `npx killswitch flip --tenant acme --reason test`.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Agent, setTracingDisabled, tool } from '@openai/agents';
import { OpenFeature } from '@openfeature/server-sdk';
import {
  EffectGuard,
  HaltedError,
  KillSwitchProvider,
  MemorySideEffectLedger,
} from 'openfeature-kill-switch';
import { guardRun } from 'openfeature-kill-switch/openai-agents';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';
import { z } from 'zod';
import { ScriptedModel } from './scripted-model.js';

const env = process.env;
const url = env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411';
const dataDir = resolve(env['KILLSWITCH_DATA_DIR'] ?? './.killswitch');
const tenant = env['EXAMPLE_TENANT'] ?? 'acme';
const log = (line: string) => process.stdout.write(`${line}\n`);
if (env['OPENAI_API_KEY'] === undefined) setTracingDisabled(true); // no trace export without a key

const token =
  env['KILLSWITCH_TOKEN'] ??
  (await readFile(join(dataDir, 'admin.token'), 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  ));
const provider = new KillSwitchProvider({
  source: new RemoteFlipSource({
    urls: [url],
    workerId: `openai-agents-example-${process.pid}`,
    release: 'v1',
    ...(token !== undefined ? { token } : {}),
  }),
});
await OpenFeature.setProviderAndWait('openai-agents-example', provider);
while (provider.sourceStatus !== 'open') await new Promise((r) => setTimeout(r, 10));
const guard = new EffectGuard({
  client: OpenFeature.getClient('openai-agents-example'),
  ledger: new MemorySideEffectLedger(),
});

const sendUpdate = tool({
  name: 'send_update',
  description: 'Sends the customer an update (takes 400 ms)',
  parameters: z.object({ ticket: z.string() }),
  execute: ({ ticket }, _context, details) =>
    new Promise<string>((done, fail) => {
      const t = setTimeout(() => {
        log(`  tool send_update landed for ${ticket}`);
        done('sent');
      }, 400);
      details?.signal?.addEventListener('abort', () => {
        clearTimeout(t);
        log(`  tool send_update aborted for ${ticket}`);
        fail(details.signal!.reason as Error);
      });
    }),
});

log(
  `following ${url} as tenant ${tenant}; flip with: npx killswitch flip --tenant ${tenant} --reason test`,
);
for (let n = 1; ; n++) {
  const runId = `ticket-${n}`;
  log(`run ${runId}: started`);
  const agent = new Agent({
    name: 'support',
    instructions: 'Keep the customer updated.',
    model: new ScriptedModel(runId),
    tools: [sendUpdate],
  });
  try {
    // The three lines: a run, then the SDK's own runner through it.
    const run = guardRun(guard, { runId, tenant });
    const result = await run.run(agent, `Handle ${runId}`, { maxTurns: 10 });
    log(`run ${runId}: done (${String(result.finalOutput)})`);
  } catch (err) {
    if (!(err instanceof HaltedError)) throw err;
    log(`run ${runId}: HALTED by flip #${err.flip?.seq ?? '?'} (${err.code}): ${err.message}`);
    break;
  }
}
await guard.close();
await OpenFeature.close();
