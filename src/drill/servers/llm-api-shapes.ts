/**
 * The wire shapes of the LLM APIs the slow server imitates (OpenAI chat completions, responses,
 * embeddings; Anthropic messages), streamed and not, so the official SDKs parse its answers.
 * Content is synthetic: token i is `t<i> `.
 */

/** The API routes the slow server answers besides `/v1/generate`. */
export const API_ROUTES = [
  '/v1/chat/completions',
  '/v1/responses',
  '/v1/embeddings',
  '/v1/messages',
] as const;
export type ApiRoute = (typeof API_ROUTES)[number];

/** How many tokens a request asks for (`max_tokens`, `max_output_tokens`), within bounds. */
export function requestedTokens(body: unknown, fallback: number): number {
  const b = (body ?? {}) as Record<string, unknown>;
  const n = b.max_tokens ?? b.max_output_tokens ?? b.max_completion_tokens;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 100_000 ? n : fallback;
}

const sse = (data: unknown, event?: string): string =>
  `${event !== undefined ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

/** What one streamed answer writes: its first events, one per token, and its last events. */
export interface StreamShape {
  readonly head: string;
  token(i: number): string;
  readonly tail: string;
}

/** The streamed answer of one API route, for one model name. */
export function streamShape(route: ApiRoute, model: string): StreamShape {
  const id = `slow-${Math.random().toString(36).slice(2, 10)}`;
  switch (route) {
    case '/v1/chat/completions': {
      const chunk = (delta: object, finish: string | null) => ({
        id,
        object: 'chat.completion.chunk',
        created: 0,
        model,
        choices: [{ index: 0, delta, finish_reason: finish }],
      });
      return {
        head: sse(chunk({ role: 'assistant', content: '' }, null)),
        token: (i) => sse(chunk({ content: `t${i} ` }, null)),
        tail: sse(chunk({}, 'stop')) + 'data: [DONE]\n\n',
      };
    }
    case '/v1/responses': {
      let seq = 0;
      const ev = (type: string, rest: object) =>
        sse({ type, sequence_number: seq++, ...rest }, type);
      const response = (status: string) => ({
        id,
        object: 'response',
        created_at: 0,
        model,
        status,
        output: [],
      });
      return {
        head: ev('response.created', { response: response('in_progress') }),
        token: (i) =>
          ev('response.output_text.delta', {
            item_id: `${id}-m`,
            output_index: 0,
            content_index: 0,
            delta: `t${i} `,
          }),
        get tail() {
          return ev('response.completed', { response: response('completed') });
        },
      };
    }
    case '/v1/messages': {
      return {
        head:
          sse(
            {
              type: 'message_start',
              message: {
                id,
                type: 'message',
                role: 'assistant',
                model,
                content: [],
                stop_reason: null,
                stop_sequence: null,
                usage: { input_tokens: 1, output_tokens: 0 },
              },
            },
            'message_start',
          ) +
          sse(
            { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
            'content_block_start',
          ),
        token: (i) =>
          sse(
            {
              type: 'content_block_delta',
              index: 0,
              delta: { type: 'text_delta', text: `t${i} ` },
            },
            'content_block_delta',
          ),
        tail:
          sse({ type: 'content_block_stop', index: 0 }, 'content_block_stop') +
          sse(
            {
              type: 'message_delta',
              delta: { stop_reason: 'end_turn', stop_sequence: null },
              usage: { output_tokens: 1 },
            },
            'message_delta',
          ) +
          sse({ type: 'message_stop' }, 'message_stop'),
      };
    }
    default:
      throw new Error(`${route} does not stream`);
  }
}

/** The whole answer of a non-streamed request with `n` tokens. */
export function wholeAnswer(route: ApiRoute, model: string, n: number): unknown {
  const text = Array.from({ length: n }, (_, i) => `t${i + 1} `).join('');
  const id = `slow-${Math.random().toString(36).slice(2, 10)}`;
  switch (route) {
    case '/v1/chat/completions':
      return {
        id,
        object: 'chat.completion',
        created: 0,
        model,
        choices: [
          { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' },
        ],
        usage: { prompt_tokens: 1, completion_tokens: n, total_tokens: n + 1 },
      };
    case '/v1/responses':
      return {
        id,
        object: 'response',
        created_at: 0,
        model,
        status: 'completed',
        output: [
          {
            type: 'message',
            id: `${id}-m`,
            role: 'assistant',
            status: 'completed',
            content: [{ type: 'output_text', text, annotations: [] }],
          },
        ],
      };
    case '/v1/embeddings':
      return {
        object: 'list',
        model,
        data: [
          { object: 'embedding', index: 0, embedding: Array.from({ length: 8 }, (_, i) => i / 8) },
        ],
        usage: { prompt_tokens: 1, total_tokens: 1 },
      };
    case '/v1/messages':
      return {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 1, output_tokens: n },
      };
  }
}
