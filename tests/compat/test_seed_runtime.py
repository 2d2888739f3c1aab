"""The seed's documented usage, written as its users write it (SEED-REFERENCE §1, §2, §7):
hello world, the interpreters, streams, cancel, event hooks, tool contexts.

These tests use only the seed's names and forms. When one fails, code written for the
flowai-harness 1.0 alpha no longer runs here unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowai_harness import (
    ModelSpec,
    TestingConfig,
    ToolkitSpec,
    create_runtime,
    define_coordinator,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)


def hello_spec() -> Any:
    tenant = define_tenant("acme", "v1")
    specialist = define_specialist(
        name="greeter", model="claude-haiku-4-5", prompt="You greet the user politely."
    )
    coordinator = define_coordinator(
        name="hello_coordinator",
        model="claude-sonnet-4-6",
        routes=["greeter"],
        prompt="Route greeting requests to the greeter specialist.",
    )
    return define_runtime(
        tenant=tenant,
        agents=[coordinator, specialist],
        providers={"anthropic": {"apiKey": "unused"}},
    )


async def test_the_hello_world_streams_the_seeds_seven_events() -> None:
    runtime = create_runtime(
        hello_spec(), testing=TestingConfig(mock_response="hello from the Rust runtime")
    )

    events = [event async for event in runtime.query("Say hello", thread_id="thread-1")]

    assert [e["type"] for e in events] == [
        "tool-agent",
        "step-start",
        "text",
        "text",
        "data-latency-summary",
        "finish",
        "tool-agent",
    ]
    first, *_, last = events
    assert (first["agentName"], first["state"]) == ("hello_coordinator", "call")
    assert (last["agentName"], last["state"]) == ("hello_coordinator", "result")
    assert first["toolInvocationId"] == last["toolInvocationId"]
    assert "Received: Say hello" in events[2]["text"]
    assert "hello from the Rust runtime" in events[3]["text"]
    latency = events[4]["data"]
    assert latency["totalDurationMs"] == 0
    assert latency["phases"]["llmCalls"] == 1
    assert (events[5]["finishReason"], events[5]["usage"]["promptTokens"]) == ("stop", 50)
    assert events[5]["usage"]["completionTokens"] == 25
    assert events[5]["usage"]["totalTokens"] == 75


async def test_testing_config_is_a_typed_dict_too() -> None:
    runtime = create_runtime(hello_spec(), testing={"mock_response": "hi"})

    events = [event async for event in runtime.query("Say hello", thread_id="t")]

    assert [e["text"] for e in events if e["type"] == "text"] == ["Received: Say hello", "hi"]


def test_testing_config_refuses_unknown_keys_and_non_strings() -> None:
    with pytest.raises(ValueError, match="mock_respons"):
        TestingConfig(mock_respons="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TestingConfig(mock_response=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either"):
        create_runtime(
            hello_spec(), testing=TestingConfig(mock_response="x"), interpreter="scripted"
        )


async def test_noop_is_the_default_interpreter() -> None:
    runtime = create_runtime(hello_spec())

    events = [event async for event in runtime.query("anything", thread_id="t")]

    inner = [e["type"] for e in events if e["type"] != "tool-agent"]
    assert inner == ["step-start", "finish"]


lookup = define_tool("lookup", {"q": str}, description="Look something up.")


@lookup
def _lookup(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"found": args["q"].upper()}


async def test_scripted_calls_run_the_tools_and_answer_with_the_result() -> None:
    analyst = define_specialist(
        name="analyst", model="claude-haiku-4-5", prompt="Analyse.", tools=[_lookup]
    )
    spec = define_runtime(
        tenant=("acme", "v1"), agents=[analyst], providers={"anthropic": {"apiKey": "x"}}
    )
    runtime = create_runtime(spec, interpreter="scripted")
    prompt = json.dumps({"tool": "lookup", "args": {"q": "orders"}})

    events = [event async for event in runtime.run_specialist("analyst", prompt)]

    call, result = [e for e in events if e["type"] == "tool-invocation"]
    assert (call["toolInvocationId"], call["state"], call["toolName"]) == (
        "scripted-tool-1",
        "call",
        "lookup",
    )
    assert (result["state"], result["result"]) == ("result", {"found": "ORDERS"})
    texts = [e["text"] for e in events if e["type"] == "text"]
    assert json.loads(texts[-1]) == {"found": "ORDERS"}
    # A prompt that is not a script is echoed back as text.
    echoed = [e async for e in runtime.run_specialist("analyst", "just text")]
    assert [e["text"] for e in echoed if e["type"] == "text"] == ["just text"]


async def test_a_coordinator_script_calls_an_agent_with_a_nested_script() -> None:
    analyst = define_specialist(
        name="analyst", model="claude-haiku-4-5", prompt="Analyse.", tools=[_lookup]
    )
    boss = define_coordinator(
        name="boss", model="claude-sonnet-4-6", prompt="Route.", routes=["analyst"]
    )
    spec = define_runtime(
        tenant=("acme", "v1"), agents=[boss, analyst], providers={"anthropic": {"apiKey": "x"}}
    )
    runtime = create_runtime(spec, interpreter="scripted")
    nested = json.dumps({"tool": "lookup", "args": {"q": "x"}})
    prompt = json.dumps(
        {"script": [{"tool": "call_agent", "args": {"agent": "analyst", "prompt": nested}}]}
    )

    events = [event async for event in runtime.query(prompt, thread_id="t")]

    calls = [e for e in events if e["type"] == "tool-agent" and e["state"] == "call"]
    assert [c["agentName"] for c in calls] == ["boss", "analyst"]
    usage = [e["data"] for e in events if e["type"] == "data-tool-agent"]
    assert usage[0]["agentName"] == "analyst"
    assert set(usage[0]["usage"]) >= {"promptTokens", "completionTokens", "totalTokens"}


async def test_event_hooks_see_every_event_in_order() -> None:
    seen: list[dict[str, Any]] = []
    runtime = create_runtime(
        hello_spec(), testing=TestingConfig(mock_response="hi"), event_hooks=[seen.append]
    )

    events = [event async for event in runtime.query("Say hello", thread_id="t")]

    assert seen == events


async def test_stream_cancel_ends_the_run() -> None:
    slow = define_tool("slow", {}, description="Takes a while.")
    calls: list[str] = []

    @slow
    def _slow(args: dict[str, Any], ctx: Any) -> str:
        calls.append("ran")
        return "done"

    worker = define_specialist(name="worker", model="claude-haiku-4-5", prompt="w", tools=[_slow])
    spec = define_runtime(tenant=("acme", "v1"), agents=[worker], providers={"anthropic": {}})
    runtime = create_runtime(spec, interpreter="scripted")
    stream = runtime.run_specialist(
        "worker", json.dumps({"script": [{"tool": "slow"}, {"tool": "slow"}]})
    )

    events = []
    async for event in stream:
        events.append(event)
        if event["type"] == "tool-invocation" and event["state"] == "result":
            stream.cancel()

    assert calls == ["ran"]
    assert [e["finishReason"] for e in events if e["type"] == "finish"] == ["cancelled"]


async def test_the_tool_context_is_a_mapping_with_the_services() -> None:
    seen: dict[str, Any] = {}
    probe = define_tool("probe", {})

    @probe
    def _probe(args: dict[str, Any], ctx: Any) -> str:
        seen.update(
            services=ctx["services"]["db"],
            by_key=ctx["db"],
            by_attribute=ctx.db,
            by_get=ctx.get("db"),
            tool_use_id=ctx["tool_use_id"],
            keys=set(ctx.keys()),
            as_dict=set(ctx.as_dict()),
        )
        return "ok"

    worker = define_specialist(name="worker", model="claude-haiku-4-5", prompt="w", tools=[_probe])
    spec = define_runtime(tenant=("acme", "v1"), agents=[worker], providers={"anthropic": {}})
    runtime = create_runtime(spec, interpreter="scripted", services={"db": "the-db"})

    _ = [e async for e in runtime.run_specialist("worker", json.dumps({"tool": "probe"}))]

    assert seen["services"] == seen["by_key"] == seen["by_attribute"] == seen["by_get"]
    assert seen["tool_use_id"] == "scripted-tool-1"
    assert {"tool_use_id", "services", "references", "db"} <= seen["keys"]
    assert seen["as_dict"] == seen["keys"]


def test_reserved_service_names_are_refused() -> None:
    with pytest.raises(ValueError, match="tool_use_id"):
        create_runtime(hello_spec(), services={"tool_use_id": 1})


def test_model_spec_and_toolkits_wherever_a_model_goes() -> None:
    analyst = define_specialist(
        name="analyst",
        model=ModelSpec("gpt-4o"),
        prompt="Analyse.",
        toolkits=[ToolkitSpec("references", config={"tools": ["glimpseRef"]})],
    )
    spec = define_runtime(
        tenant=("acme", "v1"), agents=[analyst], providers={"openai-compatible": {"apiKey": "x"}}
    )

    compiled = json.loads(spec.compiled)
    assert compiled["agents"][0]["provider"] == "openai"
    assert compiled["compiled"]["analyst"]["builtin_tools"] == ["glimpseRef"]
    with pytest.raises(ValueError, match="catalog"):
        define_runtime(
            tenant=("acme", "v1"),
            agents=[
                define_specialist(
                    name="a", model="claude-haiku-4-5", prompt="p", toolkits=["catalog"]
                )
            ],
            providers={"anthropic": {}},
        )
