"""MCP servers' tools as agent tools (``define_mcp_toolset``), on the embedded runtime.

The server is mcp_test_server.py, over stdio (started by the toolset) and over Streamable
HTTP (a process of its own); the agent calls its tools through the scripted interpreter, so
the engine validates the arguments, applies the approval rules and logs every result. A
server that crashes, answers too late or breaks the protocol gives the model a tool error and
the run goes on; a stdio server is started again on the next call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import recorded

from flowai_harness import (
    Runtime,
    create_runtime,
    define_mcp_toolset,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness.errors import (
    DuplicateToolError,
    InvalidSchemaError,
    McpServerError,
    SpecError,
)
from flowai_harness.mcp import McpToolset
from flowai_harness.specs import RuntimeSpec

Event = dict[str, Any]


def spec_with(*toolsets: McpToolset, tools: tuple[Any, ...] = ()) -> RuntimeSpec:
    agent = define_specialist(
        name="forecaster",
        model="claude-haiku-4-5",
        prompt="Answer with the tools.",
        tools=list(tools),
        toolkits=list(toolsets),
    )
    return define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})


async def run_script(
    runtime: Runtime, calls: list[tuple[str, dict[str, Any]]], thread: str
) -> list[Event]:
    prompt = json.dumps({"script": [{"tool": name, "args": args} for name, args in calls]})
    return [e async for e in runtime.run_specialist("forecaster", prompt, thread)]


def results(events: list[Event]) -> list[Any]:
    return [
        e["result"] for e in events if e["type"] == "tool-invocation" and e["state"] == "result"
    ]


def error_codes(events: list[Event]) -> list[str | None]:
    return [
        r["error"]["code"] if isinstance(r, dict) and "error" in r else None
        for r in results(events)
    ]


async def test_a_stdio_servers_tools_are_agent_tools(
    server_command: list[str], record_log: Path
) -> None:
    weather = define_mcp_toolset(
        "weather", command=server_command, prefix="wx_", env={"MCP_TEST_LOG": str(record_log)}
    )
    spec = spec_with(weather)
    names = [tool.name for tool in spec.tools]
    assert names[:3] == ["wx_forecast", "wx_shout", "wx_fail"]
    forecast = spec.tools[0]
    # The schemas the server listed, compiled by the engine like any tool's.
    assert forecast.input_schema["required"] == ["city"]
    assert forecast.output_schema is not None
    assert forecast.description == "The weather forecast for a city."

    async with create_runtime(spec, interpreter="scripted") as runtime:
        events = await run_script(
            runtime,
            [
                ("wx_forecast", {"city": "Oslo", "days": 2}),
                ("wx_shout", {"text": "hello"}),
                ("wx_forecast", {"city": ""}),
                ("wx_record", {"key": "once"}),
            ],
            "weather-1",
        )
    assert results(events)[:2] == [
        {"city": "Oslo", "days": 2, "summary": "sunny for 2 day(s)"},
        "HELLO",
    ]
    assert error_codes(events)[2] == "TOOL_ARGS_INVALID", "the engine checked the arguments"
    assert results(events)[3] == "recorded once (1 so far)"
    assert [e["finishReason"] for e in events if e["type"] == "finish"] == ["stop"]
    # The server is gone; the thread still replays from its log, calling nothing.
    replayed = runtime.replay("weather-1").events
    assert results(replayed) == results(events)
    assert recorded(record_log) == ["once"]


async def test_a_streamable_http_servers_tools_with_headers(
    http_server: Callable[..., Awaitable[str]],
) -> None:
    url = await http_server(token="s3cret")
    with pytest.raises(McpServerError, match="cannot list the tools"):
        define_mcp_toolset("locked", url=url).tool_definitions()
    remote = define_mcp_toolset(
        "remote", url=url, headers={"Authorization": "Bearer s3cret"}, tools=["forecast"]
    )
    spec = spec_with(remote)
    assert [tool.name for tool in spec.tools] == ["forecast"]
    async with create_runtime(spec, interpreter="scripted") as runtime:
        events = await run_script(runtime, [("forecast", {"city": "Rome"})], "http-1")
    assert results(events) == [{"city": "Rome", "days": 1, "summary": "sunny for 1 day(s)"}]


async def test_crashes_timeouts_and_protocol_errors_are_tool_errors(
    server_command: list[str],
) -> None:
    flaky = define_mcp_toolset("flaky", command=server_command, timeout=0.5)
    async with create_runtime(spec_with(flaky), interpreter="scripted") as runtime:
        events = await run_script(
            runtime,
            [
                ("pid", {}),
                ("crash", {}),
                ("pid", {}),
                ("fail", {"reason": "no data"}),
                ("refuse", {}),
                ("slow", {"seconds": 60}),
                ("shout", {"text": "still here"}),
            ],
            "flaky-1",
        )
    assert error_codes(events) == [
        None,
        "MCP_SERVER_UNAVAILABLE",
        None,
        "MCP_TOOL_ERROR",
        "MCP_PROTOCOL_ERROR",
        "TOOL_TIMEOUT",
        None,
    ]
    outputs = results(events)
    assert outputs[0] != outputs[2], "the crashed stdio server was started again"
    assert "cannot: no data" in outputs[3]["error"]["message"]
    assert "refused on purpose" in outputs[4]["error"]["message"]
    assert outputs[6] == "STILL HERE"
    finish = [e for e in events if e["type"] == "finish"]
    assert finish[0]["finishReason"] == "stop", "the run was never crashed"


async def test_approval_rules_apply_per_tool(server_command: list[str], record_log: Path) -> None:
    guarded = define_mcp_toolset(
        "guarded",
        command=server_command,
        env={"MCP_TEST_LOG": str(record_log)},
        approval={"record": "always"},
    )
    async with create_runtime(spec_with(guarded), interpreter="scripted") as runtime:
        stream = runtime.run_specialist(
            "forecaster",
            json.dumps(
                {
                    "script": [
                        {"tool": "shout", "args": {"text": "a"}},
                        {"tool": "record", "args": {"key": "k1"}},
                    ]
                }
            ),
            "gated-1",
        )
        seen: list[Event] = []
        async for event in stream:
            seen.append(event)
            if event["type"] == "approval-required":
                assert event["data"]["target"] == "record"
                assert recorded(record_log) == [], "nothing ran before the decision"
                await runtime.respond_to_approval(event["data"]["id"], "reject", "not today")
        assert error_codes(seen) == [None, "APPROVAL_REJECTED"]
        assert recorded(record_log) == []

        events = await run_script(runtime, [("shout", {"text": "b"})], "gated-2")
        assert results(events) == ["B"], "the other tools need no approval"


def test_a_schema_the_engine_cannot_enforce_is_refused_at_start_naming_the_tool(
    server_command: list[str],
) -> None:
    picky = define_mcp_toolset("picky", command=[*server_command, "--bad-schema"])
    with pytest.raises(InvalidSchemaError, match="picky") as refused:
        spec_with(picky)
    assert "if" in str(refused.value)
    # Without that tool the same server is fine.
    fine = define_mcp_toolset("fine", command=[*server_command, "--bad-schema"], tools=["shout"])
    assert [tool.name for tool in spec_with(fine).tools] == ["shout"]


def test_unusable_toolsets_are_refused_at_start(server_command: list[str], tmp_path: Path) -> None:
    missing = define_mcp_toolset("missing", command=server_command, tools=["forecast", "rain"])
    with pytest.raises(McpServerError, match="'rain'"):
        spec_with(missing)
    nowhere = define_mcp_toolset(
        "nowhere", command=[sys.executable, str(tmp_path / "absent.py")], connect_timeout=20
    )
    with pytest.raises(McpServerError, match="nowhere"):
        spec_with(nowhere)
    clash = define_mcp_toolset("clash", command=server_command, tools=["shout"])
    shout = define_tool("shout", {"text": str}).bind(lambda args, ctx: args["text"])
    with pytest.raises(DuplicateToolError, match="shout"):
        spec_with(clash, tools=(shout,))
    wrong_rule = define_mcp_toolset("rules", command=server_command, approval={"rain": "always"})
    with pytest.raises(McpServerError, match="'rain'"):
        spec_with(wrong_rule)


def test_define_mcp_toolset_checks_its_arguments() -> None:
    with pytest.raises(SpecError, match="exactly one"):
        define_mcp_toolset("both", command=["x"], url="http://127.0.0.1:1/mcp")
    with pytest.raises(SpecError, match="exactly one"):
        define_mcp_toolset("neither")
    with pytest.raises(SpecError, match="http"):
        define_mcp_toolset("ftp", url="ftp://example/mcp")
    with pytest.raises(SpecError, match="headers"):
        define_mcp_toolset("h", command=["x"], headers={"a": "b"})
    with pytest.raises(SpecError, match="timeout"):
        define_mcp_toolset("t", command=["x"], timeout=0)
    with pytest.raises(SpecError, match="approval"):
        define_mcp_toolset("a", command=["x"], approval="sometimes")  # type: ignore[arg-type]
