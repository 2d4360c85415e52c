"""A Python agent's MCP call through the kill-switch gateway, with the official `mcp` client.

usage: mcp_call.py <gateway mcp url> <tool> <arguments json> <_meta json>
Prints JSON lines: {"event": "tools", ...}, {"event": "calling"}, then {"event": "result", ...}
or {"event": "error", "type", "code", "message", "data"} (the typed error the client raised).
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.shared.exceptions import MCPError


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def main() -> None:
    url, tool, args, meta = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    async with Client(url) as client:
        tools = await client.list_tools()
        emit(event="tools", names=sorted(t.name for t in tools.tools))
        emit(event="calling")
        try:
            result = await client.call_tool(tool, args, meta=meta)
        except MCPError as e:
            emit(event="error", type=type(e).__name__, code=e.error.code, message=e.error.message, data=e.error.data)
            return
        emit(event="result", content=[c.model_dump(mode="json") for c in result.content], isError=bool(result.is_error))


asyncio.run(main())
