import { jsonSchema, tool } from 'ai';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** The agent's one tool: a slow side effect that stops when its signal aborts. */
export const tools = {
  send_update: tool({
    description: 'Sends the customer an update (takes 400 ms)',
    inputSchema: jsonSchema<{ ticket: string }>({
      type: 'object',
      properties: { ticket: { type: 'string' } },
      required: ['ticket'],
    }),
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
