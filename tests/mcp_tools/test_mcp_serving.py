"""Serving an agent's tools over MCP, checked with the SDK's own client.

Over stdio the server is ``flowai mcp python mcp_test_app:runtime`` in a process of its own
(the CLI, ``Runtime.serve_mcp_stdio``); over Streamable HTTP it listens on a real loopback
socket. Every call runs through the engine: arguments are validated, a gated tool answers
with a tool error saying it needs approval (and never runs), and the calls are logged in the
server's thread, where a replay finds them. The Origin check refuses a foreign page's origin
with 403.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp_helpers import HERE, recorded

from flowai_harness import create_runtime, define_coordinator, define_runtime
from flowai_harness.errors import UnknownAgentError, UsageError
from flowai_harness.mcp import APPROVAL_REQUIRED, McpServer, create_mcp_runtime, list_tools

sys.path.insert(0, str(HERE))
import mcp_test_app as app


def _text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


def _tool_results(events: list[dict[str, Any]]) -> list[Any]:
    return [
        e["result"] for e in events if e["type"] == "tool-invocation" and e["state"] == "result"
    ]


def test_list_mcp_tools_offers_the_agents_own_tools() -> None:
    runtime = create_runtime(app.spec)
    tools = {tool["name"]: tool for tool in runtime.list_mcp_tools("clerk")}
    assert sorted(tools) == ["add", "nap", "pay", "refund"]
    assert tools["add"]["description"] == "Add two integers."
    assert tools["add"]["inputSchema"] == app.add.input_schema
    assert tools["add"]["outputSchema"] == app.add.output_schema
    assert "outputSchema" not in tools["pay"]
    assert list_tools(runtime, agent="clerk") == runtime.list_mcp_tools("clerk")


def test_expose_agent_tools_adds_the_builtin_tools_but_never_call_agent() -> None:
    coordinator = define_coordinator(
        name="boss", model="claude-haiku-4-5", prompt="Route.", routes=["clerk"]
    )
    spec = define_runtime(
        tenant=("acme", "v1"), agents=[coordinator, app.clerk], providers={"anthropic": {}}
    )
    runtime = create_runtime(spec)
    assert runtime.list_mcp_tools("boss", expose_agent_tools=True) == []
    executor = create_runtime(app.spec)
    assert [t["name"] for t in executor.list_mcp_tools("executor")] == ["add"]
    exposed = {t["name"]: t for t in executor.list_mcp_tools("executor", expose_agent_tools=True)}
    assert sorted(exposed) == ["add", "executePlan", "getPlan", "glimpseRef", "resolveRef"]
    # The schema the engine checks executePlan's arguments against.
    assert exposed["executePlan"]["inputSchema"]["required"] == ["planId"]
    with pytest.raises(UnknownAgentError, match="clerk"):
        runtime.list_mcp_tools("nobody")


async def test_stdio_server_answers_the_sdk_client_through_the_engine(
    tmp_path: Path, record_log: Path
) -> None:
    runlog = tmp_path / "runlog"
    server = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "flowai_harness.cli",
            "mcp",
            "python",
            "mcp_test_app:runtime",
            "--agent",
            "clerk",
            "--thread-id",
            "served",
        ],
        env={
            "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
            "MCP_TEST_RUNLOG": str(runlog),
            "MCP_TEST_LOG": str(record_log),
        },
    )
    async with Client(server) as client:
        listed = await client.list_tools()
        assert sorted(tool.name for tool in listed.tools) == ["add", "nap", "pay", "refund"]

        added = await client.call_tool("add", {"a": 2, "b": 40})
        assert not added.is_error
        assert added.structured_content == {"sum": 42}
        assert orjson.loads(_text(added)) == {"sum": 42}

        invalid = await client.call_tool("add", {"a": "two"})
        assert invalid.is_error
        assert "TOOL_ARGS_INVALID" in _text(invalid)

        gated = await client.call_tool("pay", {"amount": 5})
        assert gated.is_error
        assert APPROVAL_REQUIRED in _text(gated)
        assert "needs approval" in _text(gated)

    assert recorded(record_log) == [], "the gated tool did not run"
    # What the served calls logged in their thread, replayed from the run log alone.
    events = create_runtime(app.spec, log_path=runlog).replay("served").events
    results = _tool_results(events)
    assert results[0] == {"sum": 42}
    assert results[1]["error"]["code"] == "TOOL_ARGS_INVALID"
    assert [e["type"] for e in events].count("approval-required") == 1
    finishes = [e["finishReason"] for e in events if e["type"] == "finish"]
    assert finishes == ["stop", "stop", "cancelled"]


async def test_http_server_answers_the_sdk_client_over_a_socket(record_log: Path) -> None:
    runtime = create_runtime(app.spec)
    server = McpServer(runtime, "clerk", thread_id="over-http")
    async with server.http(port=0) as url, Client(url) as client:
        listed = await client.list_tools()
        assert sorted(tool.name for tool in listed.tools) == ["add", "nap", "pay", "refund"]
        added = await client.call_tool("add", {"a": 1, "b": 2})
        assert added.structured_content == {"sum": 3}
        # A predicate gate: under the limit it runs, over it it needs a person.
        small = await client.call_tool("refund", {"amount": 10})
        assert not small.is_error, _text(small)
        large = await client.call_tool("refund", {"amount": 500})
        assert large.is_error
        assert APPROVAL_REQUIRED in _text(large)
        unknown = await client.call_tool("transfer", {})
        assert unknown.is_error
        assert "no tool 'transfer'" in _text(unknown)
    assert recorded(record_log) == ["refunded 10"]
    assert _tool_results(runtime.replay("over-http").events)[:2] == [{"sum": 3}, "refunded 10"]


async def test_a_call_past_its_time_limit_is_an_error_and_the_thread_goes_on() -> None:
    runtime = create_runtime(app.spec)
    server = McpServer(runtime, "clerk", thread_id="slow", call_timeout_secs=0.2)
    late = await server.call_tool("nap", {"seconds": 30})
    assert late.is_error
    assert "TOOL_TIMEOUT" in _text(late)
    after = await server.call_tool("add", {"a": 1, "b": 1})
    assert after.structured_content == {"sum": 2}
    finishes = [e["finishReason"] for e in runtime.replay("slow").events if e["type"] == "finish"]
    assert finishes == ["cancelled", "stop"]


async def test_origin_check_refuses_a_foreign_origin_with_403() -> None:
    server = McpServer(create_runtime(app.spec), "clerk")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}

    async def post(url: str, origin: str | None) -> httpx2.Response:
        extra = {} if origin is None else {"origin": origin}
        async with httpx2.AsyncClient() as http:
            return await http.post(url, json=initialize, headers={**headers, **extra})

    async with server.http(port=0) as url:
        port = url.split(":")[2].split("/")[0]
        refused = await post(url, "http://evil.example")
        assert refused.status_code == 403
        assert "evil.example" in refused.text
        assert (await post(url, f"http://localhost:{port}")).status_code == 200
        assert (await post(url, None)).status_code == 200, "a client that is not a page"

    async with server.http(port=0, allowed_origins=["https://app.example"]) as url:
        assert (await post(url, "https://app.example")).status_code == 200
        assert (await post(url, "http://evil.example")).status_code == 403

    async with server.http(port=0, require_origin=False) as url:
        assert (await post(url, "http://evil.example")).status_code == 200


async def test_create_mcp_runtime_serves_plain_tools_without_credentials() -> None:
    runtime = create_mcp_runtime(tools=[app.add])
    assert runtime.resource_id == "flowai-mcp"
    server = McpServer(runtime, "mcp")
    assert (await server.call_tool("add", {"a": 3, "b": 4})).structured_content == {"sum": 7}


async def test_blocking_serve_refuses_to_run_inside_an_event_loop() -> None:
    runtime = create_runtime(app.spec)
    with pytest.raises(UsageError, match="McpServer"):
        runtime.serve_mcp_stdio("clerk")
    with pytest.raises(UsageError, match="streamable-http"):
        async with McpServer(runtime, "clerk").http(port=0, transport="sse"):
            pass


def test_the_cli_refuses_a_target_that_is_not_a_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    from flowai_harness.cli import main

    assert main(["mcp", "python", "mcp_test_app:clerk", "--agent", "clerk"]) == 2
    assert "must name a Runtime" in capsys.readouterr().err
    assert main(["mcp", "python", "mcp_test_app:nothing", "--agent", "clerk"]) == 2
    assert "no attribute 'nothing'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _accepting(port: int, process: asyncio.subprocess.Process, within: float) -> None:
    """Wait until the server process accepts connections on ``port`` (fail if it exits)."""
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert process.returncode is None, "the MCP server process exited"
            assert time.monotonic() < deadline, f"nothing listens on {port} after {within} s"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def test_serve_mcp_http_from_the_cli_answers_the_sdk_client(record_log: Path) -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m", "flowai_harness.cli", "mcp", "python", "mcp_test_app:runtime", "--agent", "clerk",
        "--transport", "streamable-http", "--port", str(port),
        "--allow-origin", "https://app.example",
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])},
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await _accepting(port, process, within=60)
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url) as client:
            added = await client.call_tool("add", {"a": 20, "b": 22})
            assert added.structured_content == {"sum": 42}
        async with httpx2.AsyncClient() as http:
            foreign = await http.post(url, json={}, headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403
    finally:
        process.terminate()
        # The server shuts down, then ends as SIGTERM ends a process (uvicorn re-raises it).
        assert await process.wait() in (0, -signal.SIGTERM)
