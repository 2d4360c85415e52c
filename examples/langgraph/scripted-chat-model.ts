import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, type BaseMessage } from '@langchain/core/messages';
import type { ChatResult } from '@langchain/core/outputs';

/** A chat model that answers from a script (no network): three `send_update` calls, then a summary. */
export class ScriptedChatModel extends BaseChatModel {
  #call = 0;

  constructor(readonly ticket: string) {
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
    options.signal?.throwIfAborted();
    const n = this.#call++;
    const message =
      n < 3
        ? new AIMessage({
            content: '',
            tool_calls: [
              {
                id: `${this.ticket}-call-${n}`,
                name: 'send_update',
                args: { ticket: this.ticket },
                type: 'tool_call',
              },
            ],
          })
        : new AIMessage(`3 updates sent for ${this.ticket}`);
    return {
      generations: [{ message, text: typeof message.content === 'string' ? message.content : '' }],
    };
  }
}
