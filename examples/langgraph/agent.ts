import { MemorySaver } from '@langchain/langgraph';
import { createAgent } from 'langchain';
import type { EffectGuard } from 'openfeature-kill-switch';
import { killSwitch } from 'openfeature-kill-switch/langgraph';
import { ScriptedChatModel } from './scripted-chat-model.js';
import { sendUpdate } from './tools.js';

const checkpointer = new MemorySaver();

/** One ticket, one thread, one run under the kill switch: a halt ends it with `HaltedError`. */
export async function handleTicket(guard: EffectGuard, runId: string, tenant: string) {
  const model = new ScriptedChatModel(runId); // or e.g. new ChatOpenAI({ model: 'gpt-5' })
  const ks = killSwitch(guard, { tenant });
  const agent = createAgent({
    model,
    tools: [sendUpdate],
    middleware: [ks.middleware],
    checkpointer,
  });
  const input = { messages: [{ role: 'user', content: `Handle ${runId}` }] };
  const result = await ks.invoke(agent, input, { configurable: { thread_id: runId } });
  return String(result.messages.at(-1)?.content);
}
