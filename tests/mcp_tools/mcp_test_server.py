"""A small MCP server the tests use as agents' tools, built on the SDK's low-level server.

``python mcp_test_server.py stdio`` serves over stdin/stdout; ``python mcp_test_server.py
http`` serves Streamable HTTP on a free loopback port and prints ``PORT <n>`` on its first
line. ``--bad-schema`` adds a tool whose input schema the engine cannot enforce (``if``).
With ``MCP_TEST_TOKEN`` set, HTTP requests without ``Authorization: Bearer <token>`` get 401.
``MCP_TEST_LOG`` names a file each ``record`` call appends its key to (the tests count side
effects there).

Tools: ``forecast`` (structured output with an output schema), ``shout`` (text), ``fail``
(an error result), ``refuse`` (a JSON-RPC error), ``slow`` (sleeps), ``crash`` (the process
exits mid-call), ``pid`` (which process answers), ``record`` (the side effect).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

TOOLS = [
    types.Tool(
        name="forecast",
        description="The weather forecast for a city.",
        input_schema={
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "summary": {"type": "string"},
            },
            "required": ["city", "days", "summary"],
        },
    ),
    types.Tool(
        name="shout",
        description="The text in capitals.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    ),
    types.Tool(
        name="fail",
        description="Always reports an error.",
        input_schema={"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
    types.Tool(name="refuse", input_schema={"type": "object", "properties": {}}),
    types.Tool(
        name="slow",
        input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}},
    ),
    types.Tool(name="crash", input_schema={"type": "object", "properties": {}}),
    types.Tool(name="pid", input_schema={"type": "object", "properties": {}}),
    types.Tool(
        name="record",
        input_schema={
            "type": "object",
            "properties": {"key": {"type": "string"}},
            "required": ["key"],
        },
    ),
]
BAD_SCHEMA_TOOL = types.Tool(
    name="picky",
    input_schema={
        "type": "object",
        "if": {"properties": {"a": {"const": 1}}},
        "then": {"required": ["b"]},
    },
)


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)])


def _record(path: str, key: str) -> str:
    with open(path, "a") as out:
        out.write(key + "\n")
    with open(path) as log:
        return f"recorded {key} ({len(log.read().splitlines())} so far)"


async def call(name: str, args: dict[str, Any]) -> types.CallToolResult:
    if name == "forecast":
        days = int(args.get("days", 1))
        result = {"city": args["city"], "days": days, "summary": f"sunny for {days} day(s)"}
        return types.CallToolResult(
            content=[types.TextContent(text=result["summary"])], structured_content=result
        )
    if name == "shout":
        return _text(str(args.get("text", "")).upper())
    if name == "fail":
        return types.CallToolResult(
            content=[types.TextContent(text=f"cannot: {args.get('reason', 'no reason')}")],
            is_error=True,
        )
    if name == "refuse":
        raise MCPError(types.INVALID_PARAMS, "refused on purpose")
    if name == "slow":
        await asyncio.sleep(float(args.get("seconds", 1)))
        return _text("done")
    if name == "crash":
        os._exit(3)
    if name == "pid":
        return _text(str(os.getpid()))
    if name == "record":
        return _text(_record(os.environ["MCP_TEST_LOG"], args["key"]))
    raise MCPError(types.METHOD_NOT_FOUND, f"no tool {name!r}")


def server(bad_schema: bool) -> Server[Any]:
    tools = [*TOOLS, BAD_SCHEMA_TOOL] if bad_schema else TOOLS

    async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await call(params.name, params.arguments or {})

    return Server("flowai-test-tools", on_list_tools=on_list_tools, on_call_tool=on_call_tool)


class RequireToken:
    """401 for a request without the expected bearer token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != (
            self.expected
        ):
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"token required"})
            return
        await self.app(scope, receive, send)


async def serve_stdio(app: Server[Any]) -> None:
    async with stdio_server() as (read, write):
        await app.run(read, write, app.create_initialization_options())


async def serve_http(app: Server[Any]) -> None:
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    asgi: Any = app.streamable_http_app(host="127.0.0.1")
    token = os.environ.get("MCP_TEST_TOKEN")
    if token:
        asgi = RequireToken(asgi, token)
    config = uvicorn.Config(asgi, log_level="warning", lifespan="on", ws="none")
    await uvicorn.Server(config).serve(sockets=[listener])


if __name__ == "__main__":
    app = server("--bad-schema" in sys.argv)
    asyncio.run(serve_http(app) if "http" in sys.argv[1:2] else serve_stdio(app))
