import { createTool } from '@mastra/core/tools';
import { z } from 'zod';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** The agent's one tool: a slow side effect that stops when its signal aborts. */
export const tools = {
  send_update: createTool({
    id: 'send_update',
    description: 'Sends the customer an update (takes 400 ms)',
    inputSchema: z.object({ ticket: z.string() }),
    execute: ({ ticket }, { abortSignal }) =>
      new Promise<string>((done, fail) => {
        const t = setTimeout(() => {
          log(`  tool send_update landed for ${ticket}`);
          done('sent');
        }, 400);
        abortSignal?.addEventListener('abort', () => {
          clearTimeout(t);
          log(`  tool send_update aborted for ${ticket}`);
          fail(abortSignal.reason as Error);
        });
      }),
  }),
};
