import type { CallbackManagerForLLMRun } from '@langchain/core/callbacks/manager';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, AIMessageChunk, type BaseMessage } from '@langchain/core/messages';
import { ChatGenerationChunk, type ChatResult } from '@langchain/core/outputs';

/** One answer of the scripted model: tool calls, or text streamed token by token. */
export type Turn =
  | { readonly toolCalls: readonly { id: string; name: string; input: Record<string, unknown> }[] }
  | { readonly text: readonly string[]; readonly tokenMs?: number };

/**
 * A LangChain chat model that answers from a script instead of the network. Its stream ends
 * silently (no error) when its signal aborts, as the OpenAI and Anthropic clients' streams do.
 */
export class ScriptedChatModel extends BaseChatModel {
  calls = 0;
  tokens = 0;
  readonly aborts: number[] = [];

  /**
   * @param script - the answer of the n-th call
   * @param onCall - awaited at the start of each call (a test's hook to act while a call is in flight)
   */
  constructor(
    readonly script: (call: number) => Turn,
    readonly onCall?: (call: number, signal: AbortSignal | undefined) => Promise<void>,
  ) {
    super({});
  }

  _llmType(): string {
    return 'scripted';
  }

  override bindTools(): this {
    return this;
  }

  async _generate(
    _messages: BaseMessage[],
    options: this['ParsedCallOptions'],
  ): Promise<ChatResult> {
    const n = this.calls++;
    await this.onCall?.(n, options.signal);
    const turn = this.script(n);
    options.signal?.throwIfAborted();
    if ('toolCalls' in turn) {
      const message = new AIMessage({
        content: '',
        tool_calls: turn.toolCalls.map((c) => ({
          id: c.id,
          name: c.name,
          args: c.input,
          type: 'tool_call' as const,
        })),
      });
      return { generations: [{ message, text: '' }] };
    }
    if (turn.tokenMs) {
      // A slow answer: one token at a time, stopping (silently) when the signal aborts.
      let text = '';
      for await (const chunk of this.#tokens(turn, options.signal)) text += chunk.text;
      return { generations: [{ message: new AIMessage(text), text }] };
    }
    const text = turn.text.join('');
    return { generations: [{ message: new AIMessage(text), text }] };
  }

  override async *_streamResponseChunks(
    _messages: BaseMessage[],
    options: this['ParsedCallOptions'],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    const turn = this.script(this.calls++);
    if ('toolCalls' in turn) {
      const message = new AIMessageChunk({
        content: '',
        tool_call_chunks: turn.toolCalls.map((c, index) => ({
          id: c.id,
          name: c.name,
          args: JSON.stringify(c.input),
          index,
          type: 'tool_call_chunk' as const,
        })),
      });
      yield new ChatGenerationChunk({ message, text: '' });
      return;
    }
    yield* this.#tokens(turn, options.signal, runManager);
  }

  async *#tokens(
    turn: Extract<Turn, { text: readonly string[] }>,
    signal: AbortSignal | undefined,
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    for (const t of turn.text) {
      if (turn.tokenMs) await new Promise((r) => setTimeout(r, turn.tokenMs));
      if (signal?.aborted) {
        this.aborts.push(performance.now());
        return;
      }
      this.tokens++;
      // LangGraph's "messages" stream mode hears tokens through this callback.
      await runManager?.handleLLMNewToken(t);
      yield new ChatGenerationChunk({ message: new AIMessageChunk({ content: t }), text: t });
    }
  }
}
