"""A Python agent calling the Anthropic Messages API through the kill-switch gateway with the
official `anthropic` client.

usage: anthropic_stream.py <gateway base url> <headers json> <max_tokens> <stream: 1|0>
Prints JSON lines: {"event": "chunk", "n"} per streamed text delta, then {"event": "done", "text"}
or {"event": "error", "type", "status", "message", "body"} (the typed error it raised).
"""

import json
import sys

import anthropic


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main() -> None:
    base, headers, max_tokens, stream = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    client = anthropic.Anthropic(api_key="sk-ant-python-secret-0123", base_url=base, max_retries=0, default_headers=headers)
    text = ""
    try:
        if stream:
            n = 0
            with client.messages.stream(
                model="claude-fake-1", max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}]
            ) as s:
                for delta in s.text_stream:
                    n += 1
                    text += delta
                    emit(event="chunk", n=n)
        else:
            r = client.messages.create(model="claude-fake-1", max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}])
            text = "".join(b.text for b in r.content if b.type == "text")
    except anthropic.APIError as e:
        emit(
            event="error",
            type=type(e).__name__,
            status=getattr(e, "status_code", None),
            message=str(e.message),
            body=e.body,
        )
        return
    emit(event="done", text=text)


main()
