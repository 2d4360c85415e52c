/**
 * A LangGraph (`langchain` createAgent) agent under the kill switch: the middleware guards every
 * tool and model call, and `ks.invoke` runs the thread as one run (the thread id is the run id).
 * A scripted chat model (no network) asks for a slow `send_update` tool each turn; threads follow
 * one another until a flip halts the tenant: the tool in flight is aborted and the run ends with
 * the HaltedError naming the flip. To use a real model, replace the scripted one with e.g.
 * `new ChatOpenAI({ model: 'gpt-5' })` from `@langchain/openai` and set its API key.
 *
 * Run: `npm start` in one terminal (the control plane), then `npm run build && node
 * dist/examples/langgraph/main.js`, and flip: `npx killswitch flip --tenant acme --reason test`.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MemorySaver } from '@langchain/langgraph';
import { OpenFeature } from '@openfeature/server-sdk';
import { createAgent, tool } from 'langchain';
import {
  EffectGuard,
  HaltedError,
  KillSwitchProvider,
  MemorySideEffectLedger,
} from 'openfeature-kill-switch';
import { killSwitch } from 'openfeature-kill-switch/langgraph';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';
import { z } from 'zod';
import { ScriptedChatModel } from './scripted-chat-model.js';

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
    workerId: `langgraph-example-${process.pid}`,
    release: 'v1',
    ...(token !== undefined ? { token } : {}),
  }),
});
await OpenFeature.setProviderAndWait('langgraph-example', provider);
while (provider.sourceStatus !== 'open') await new Promise((r) => setTimeout(r, 10));
const guard = new EffectGuard({
  client: OpenFeature.getClient('langgraph-example'),
  ledger: new MemorySideEffectLedger(),
});

const sendUpdate = tool(
  ({ ticket }, config) =>
    new Promise<string>((done, fail) => {
      const t = setTimeout(() => {
        log(`  tool send_update landed for ${ticket}`);
        done('sent');
      }, 400);
      config.signal?.addEventListener('abort', () => {
        clearTimeout(t);
        log(`  tool send_update aborted for ${ticket}`);
        fail(config.signal!.reason as Error);
      });
    }),
  {
    name: 'send_update',
    description: 'Sends the customer an update (takes 400 ms)',
    schema: z.object({ ticket: z.string() }),
  },
);

// The three lines: the kill switch, the agent with its middleware, and each thread through ks.invoke.
const ks = killSwitch(guard, { tenant });
const checkpointer = new MemorySaver();

log(
  `following ${url} as tenant ${tenant}; flip with: npx killswitch flip --tenant ${tenant} --reason test`,
);
for (let n = 1; ; n++) {
  const runId = `ticket-${n}`;
  log(`run ${runId}: started`);
  const agent = createAgent({
    model: new ScriptedChatModel(runId),
    tools: [sendUpdate],
    middleware: [ks.middleware],
    checkpointer,
  });
  try {
    const result = await ks.invoke(
      agent,
      { messages: [{ role: 'user', content: `Handle ${runId}` }] },
      { configurable: { thread_id: runId } },
    );
    log(`run ${runId}: done (${String(result.messages.at(-1)?.content)})`);
  } catch (err) {
    if (!(err instanceof HaltedError)) throw err;
    log(`run ${runId}: HALTED by flip #${err.flip?.seq ?? '?'} (${err.code}): ${err.message}`);
    break;
  }
}
await guard.close();
await OpenFeature.close();
