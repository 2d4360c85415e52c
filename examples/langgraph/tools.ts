import { tool } from 'langchain';
import { z } from 'zod';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** The agent's one tool: a slow side effect that stops when its signal aborts. */
export const sendUpdate = tool(
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
