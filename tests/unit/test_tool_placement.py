"""Tool placement: ``placement="inline"`` is a field of the tool, not of what the engine
sees; the embedded runtime runs an inline tool like any other; two definitions of one tool
that disagree on placement are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowai_harness import create_runtime, define_runtime, define_specialist, define_tool
from flowai_harness.errors import DuplicateToolError, SpecError


def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


def test_placement_defaults_to_the_worker_and_takes_inline() -> None:
    assert define_tool("t", {}).placement == "worker"
    tool = define_tool("add", {"a": int, "b": int}, placement="inline")

    assert tool.placement == "inline"
    assert tool.bind(add).placement == "inline"
    # The engine does not see it: the declaration is unchanged.
    assert tool.declaration() == define_tool("add", {"a": int, "b": int}).declaration()
    assert tool != define_tool("add", {"a": int, "b": int})


def test_unknown_placement_is_refused() -> None:
    with pytest.raises(SpecError, match="placement must be one of inline, worker"):
        define_tool("t", {}, placement="sidecar")  # type: ignore[arg-type]


def test_one_tool_placed_two_ways_is_refused() -> None:
    on_worker = define_tool("add", {"a": int, "b": int}).bind(add)
    inline = define_tool("add", {"a": int, "b": int}, placement="inline").bind(add)
    agents = [
        define_specialist(name="one", model="claude-haiku-4-5", prompt="p", tools=[on_worker]),
        define_specialist(name="two", model="claude-haiku-4-5", prompt="p", tools=[inline]),
    ]
    with pytest.raises(DuplicateToolError, match="two different definitions"):
        define_runtime(tenant=("acme", "v1"), agents=agents, providers={"anthropic": {}})


async def test_the_embedded_runtime_runs_an_inline_tool_in_its_process() -> None:
    tool = define_tool("add", {"a": int, "b": int}, placement="inline").bind(add)
    agent = define_specialist(name="w", model="claude-haiku-4-5", prompt="p", tools=[tool])
    spec = define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})
    runtime = create_runtime(spec, interpreter="scripted")
    prompt = json.dumps({"tool": "add", "args": {"a": 2, "b": 3}})

    events = [event async for event in runtime.query(prompt, "t1")]

    results = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"]
    assert [r["result"] for r in results] == [{"sum": 5}]
