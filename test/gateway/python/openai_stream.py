"""A Python agent streaming a chat completion through the kill-switch gateway with the official
`openai` client.

usage: openai_stream.py <gateway base url (ending /v1)> <headers json> <max_tokens> <stream: 1|0>
Prints JSON lines: {"event": "chunk", "n"} per streamed chunk, then {"event": "done", "text"} or
{"event": "error", "type", "status", "code", "message", "body"} (the typed error it raised).
"""

import json
import sys

import openai


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main() -> None:
    base, headers, max_tokens, stream = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    client = openai.OpenAI(api_key="sk-python-secret-0123", base_url=base, max_retries=0, default_headers=headers)
    text = ""
    try:
        if stream:
            n = 0
            for chunk in client.chat.completions.create(
                model="slow-1", messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens, stream=True
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    n += 1
                    text += chunk.choices[0].delta.content
                    emit(event="chunk", n=n)
        else:
            r = client.chat.completions.create(model="slow-1", messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens)
            text = r.choices[0].message.content or ""
    except openai.APIError as e:
        emit(
            event="error",
            type=type(e).__name__,
            status=getattr(e, "status_code", None),
            code=getattr(e, "code", None),
            message=str(e.message),
            body=e.body,
        )
        return
    emit(event="done", text=text)


main()
