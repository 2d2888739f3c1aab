"""The embedded runtime: tools called from scripted turns, routing, cancellation, threads.

The scripted interpreter makes "the model" call the tools a prompt lists, so each test says
which calls happen and checks what the user sees: the stream, the handlers' calls, the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from streams import check_stream, drain, finish, labels, of_type, terminal

from flowai_harness import (
    MissingToolHandlerError,
    Runtime,
    RuntimeSpec,
    SpecError,
    TestingConfig,
    ToolContext,
    ToolDefinition,
    ToolError,
    UnknownAgentError,
    create_runtime,
    define_coordinator,
    define_runtime,
    define_specialist,
    define_tool,
)

Seen = list[tuple[dict[str, Any], ToolContext]]

ADD = define_tool("add", {"a": int, "b": int}, description="Add two integers.")
FAIL = define_tool("fail", {"reason": str}, description="Raises what the test binds.")
ANSWER = define_tool("answer", {}, description="Returns what the test binds.")


def make_spec(*tools: ToolDefinition) -> RuntimeSpec:
    calculator = define_specialist(
        name="calculator",
        model="claude-haiku-4-5",
        prompt="You add numbers with the add tool.",
        tools=tools,
    )
    router = define_coordinator(
        name="router",
        model="claude-sonnet-4-6",
        prompt="Route arithmetic to the calculator.",
        routes=["calculator"],
    )
    return define_runtime(
        tenant=("acme", "v1"), agents=[router, calculator], providers={"anthropic": {}}
    )


def call(tool: str, **args: Any) -> str:
    return json.dumps({"tool": tool, "args": args})


def script(*calls: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in calls]})


def adder(seen: Seen) -> Callable[[dict[str, Any], ToolContext], dict[str, int]]:
    def add(args: dict[str, Any], ctx: ToolContext) -> dict[str, int]:
        seen.append((args, ctx))
        return {"sum": args["a"] + args["b"]}

    return add


def async_adder(seen: Seen) -> Callable[[dict[str, Any], ToolContext], Any]:
    async def add(args: dict[str, Any], ctx: ToolContext) -> dict[str, int]:
        seen.append((args, ctx))
        return {"sum": args["a"] + args["b"]}

    return add


def calculator_runtime(seen: Seen, **options: Any) -> Runtime:
    return create_runtime(make_spec(ADD.bind(adder(seen))), interpreter="scripted", **options)


@pytest.fixture
def seen() -> Seen:
    """Every (args, ctx) an add handler was called with."""
    return []


def results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return of_type(events, "tool-invocation", state="result")


# --- handlers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make_handler", [adder, async_adder], ids=["sync", "async"])
@pytest.mark.parametrize("how", ["decorator", "bind", "tool_bindings"])
async def test_scripted_call_runs_the_handler_and_answers_with_its_result(
    seen: Seen, make_handler: Callable[[Seen], Any], how: str
) -> None:
    handler = make_handler(seen)
    tool, bindings = {
        "decorator": (ADD(handler), {}),
        "bind": (ADD.bind(handler), {}),
        "tool_bindings": (ADD, {"add": handler}),
    }[how]
    runtime = create_runtime(make_spec(tool), interpreter="scripted", tool_bindings=bindings)

    events = await drain(runtime.run_specialist("calculator", call("add", a=1, b=2)))

    assert [args for args, _ in seen] == [{"a": 1, "b": 2}]
    (call_event,) = of_type(events, "tool-invocation", state="call")
    assert call_event["toolName"] == "add"
    assert call_event["args"] == {"a": 1, "b": 2}
    assert call_event["agent"] == "calculator"
    (result,) = results(events)
    assert result["result"] == {"sum": 3}
    assert not result.get("isError")
    assert of_type(events, "text")[-1]["text"] == '{"sum":3}'
    assert finish(events)["finishReason"] == "stop"


async def test_tool_bindings_override_the_handler_bound_with_define_tool(seen: Seen) -> None:
    bound: Seen = []
    runtime = create_runtime(
        make_spec(ADD.bind(adder(bound))),
        interpreter="scripted",
        tool_bindings={"add": adder(seen)},
    )

    await drain(runtime.run_specialist("calculator", call("add", a=1, b=2)))

    assert bound == []
    assert len(seen) == 1


async def test_handler_gets_services_and_the_invocation_it_answers(seen: Seen) -> None:
    database = object()
    runtime = calculator_runtime(seen, services={"db": database})

    events = await drain(runtime.run_specialist("calculator", call("add", a=1, b=2), "t-ctx"))

    ((_, ctx),) = seen
    (call_event,) = of_type(events, "tool-invocation", state="call")
    assert ctx.services["db"] is database
    assert ctx.tool_use_id == call_event["toolInvocationId"]
    assert ctx.tool_name == "add"
    assert ctx.agent == "calculator"
    assert ctx.thread_id == "t-ctx"
    assert ctx.run_id == "run-1"


async def test_progress_shows_while_an_async_handler_still_runs() -> None:
    release = asyncio.Event()

    async def add(args: dict[str, Any], ctx: ToolContext) -> dict[str, int]:
        ctx.progress("fetching", phase_index=0, total_phases=2, milestone="started")
        await release.wait()  # set only by a consumer that saw the progress
        return {"sum": args["a"] + args["b"]}

    runtime = create_runtime(make_spec(ADD.bind(add)), interpreter="scripted")

    async def consume() -> list[dict[str, Any]]:
        events = []
        async for event in runtime.run_specialist("calculator", call("add", a=1, b=2), "t-p"):
            events.append(event)
            if event["type"] == "tool-progress":
                assert not release.is_set()
                release.set()
        return events

    events = await asyncio.wait_for(consume(), timeout=10)

    check_stream(events)
    (progress,) = of_type(events, "tool-progress")
    call_event = of_type(events, "tool-invocation", state="call")[0]
    assert progress["toolName"] == "add"
    assert progress["toolCallId"] == call_event["toolInvocationId"]
    assert (progress["label"], progress["phaseIndex"], progress["totalPhases"]) == (
        "fetching",
        0,
        2,
    )
    assert progress["milestone"] == "started"
    # Logged once, as it came, not again with the result.
    assert len(of_type(runtime.replay("t-p").events, "tool-progress")) == 1


async def test_emitted_events_come_between_the_call_and_its_result() -> None:
    def add(args: dict[str, Any], ctx: ToolContext) -> dict[str, int]:
        ctx.emit("adding", {"a": args["a"]})
        ctx.progress("half way", fraction=0.5)
        return {"sum": args["a"] + args["b"]}

    runtime = create_runtime(make_spec(ADD.bind(add)), interpreter="scripted")

    events = await drain(runtime.run_specialist("calculator", call("add", a=1, b=2)))

    tool_events = [e for e in events if "toolInvocationId" in e and e["type"] != "tool-agent"]
    assert [e["type"] for e in tool_events] == [
        "tool-invocation",
        "custom",
        "tool-progress",
        "tool-invocation",
    ]
    call_id = tool_events[0]["toolInvocationId"]
    assert tool_events[1] == {
        "type": "custom",
        "name": "adding",
        "data": {"a": 1},
        "toolInvocationId": call_id,
    }
    assert tool_events[2]["message"] == "half way"
    assert tool_events[2]["fraction"] == 0.5
    assert tool_events[3]["state"] == "result"


async def test_script_entries_run_in_order_with_numbered_invocation_ids(seen: Seen) -> None:
    runtime = calculator_runtime(seen)
    prompt = script(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2}), ("add", {"a": 3, "b": 3}))

    events = await drain(runtime.run_specialist("calculator", prompt))

    ids = [e["toolInvocationId"] for e in of_type(events, "tool-invocation", state="call")]
    assert ids == ["scripted-tool-1", "scripted-tool-2", "scripted-tool-3"]
    assert [ctx.tool_use_id for _, ctx in seen] == ids
    assert [args["a"] for args, _ in seen] == [1, 2, 3]
    assert [r["result"] for r in results(events)] == [{"sum": 2}, {"sum": 4}, {"sum": 6}]
    # The turn after the last entry answers with the last result.
    assert of_type(events, "text")[-1]["text"] == '{"sum":6}'
    assert [s["step"] for s in of_type(events, "step-start")] == [1, 2, 3, 4]


async def test_invalid_args_are_refused_before_the_handler_runs(seen: Seen) -> None:
    runtime = calculator_runtime(seen)
    prompt = script(("add", {"a": "one"}), ("add", {"a": 1, "b": 2}))

    events = await drain(runtime.run_specialist("calculator", prompt))

    assert [args for args, _ in seen] == [{"a": 1, "b": 2}]
    refused, added = results(events)
    assert refused["isError"] is True
    assert refused["result"]["error"]["code"] == "TOOL_ARGS_INVALID"
    assert "/a" in refused["result"]["error"]["message"]
    assert added["result"] == {"sum": 3}
    assert finish(events)["finishReason"] == "stop"


class LegacyHTTPError(Exception):
    """Like urllib's HTTPError: a ``code`` attribute that is a status number."""

    code = 404


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RuntimeError("boom"), "TOOL_FAILED"),
        (ToolError("quota exceeded", code="TOOL_QUOTA"), "TOOL_QUOTA"),
        (LegacyHTTPError("not found"), "TOOL_FAILED"),
    ],
    ids=["plain", "coded", "non-string-code"],
)
async def test_a_failing_handler_gives_an_error_result_and_the_run_goes_on(
    seen: Seen, error: Exception, code: str
) -> None:
    def fail(args: dict[str, Any], ctx: ToolContext) -> None:
        raise error

    runtime = create_runtime(
        make_spec(ADD.bind(adder(seen)), FAIL.bind(fail)), interpreter="scripted"
    )
    prompt = script(("fail", {"reason": "x"}), ("add", {"a": 40, "b": 2}))

    events = await drain(runtime.run_specialist("calculator", prompt, "t-fail"))

    failed, added = results(events)
    assert failed["isError"] is True
    assert failed["result"]["error"]["code"] == code
    assert str(error.args[0]) in failed["result"]["error"]["message"]
    assert added["result"] == {"sum": 42}
    assert finish(events)["finishReason"] == "stop"
    assert runtime.replay("t-fail").status == "idle"


class Reading(pydantic.BaseModel):
    sensor: str
    values: list[float]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (Reading(sensor="s1", values=[1.5, 2.0]), {"sensor": "s1", "values": [1.5, 2.0]}),
        ([Reading(sensor="s2", values=[])], [{"sensor": "s2", "values": []}]),
        ("plain text", "plain text"),
        (None, None),
    ],
    ids=["model", "list-of-models", "str", "none"],
)
async def test_handler_return_values_become_json(returned: Any, expected: Any) -> None:
    runtime = create_runtime(
        make_spec(ANSWER.bind(lambda args, ctx: returned)), interpreter="scripted"
    )

    events = await drain(runtime.run_specialist("calculator", call("answer")))

    (result,) = results(events)
    assert result["result"] == expected
    assert not result.get("isError")


async def test_a_non_json_return_value_is_an_error_result() -> None:
    runtime = create_runtime(
        make_spec(ANSWER.bind(lambda args, ctx: object())), interpreter="scripted"
    )

    events = await drain(runtime.run_specialist("calculator", call("answer")))

    (result,) = results(events)
    assert result["isError"] is True
    assert result["result"]["error"]["code"] == "TOOL_OUTPUT_INVALID"
    assert finish(events)["finishReason"] == "stop"


async def test_output_not_matching_the_output_schema_is_an_error_result() -> None:
    checked = define_tool("answer", {}, output_schema={"total": int})
    runtime = create_runtime(
        make_spec(checked.bind(lambda args, ctx: {"total": "many"})), interpreter="scripted"
    )

    events = await drain(runtime.run_specialist("calculator", call("answer")))

    (result,) = results(events)
    assert result["isError"] is True
    assert result["result"]["error"]["code"] == "TOOL_OUTPUT_INVALID"


# --- agents -----------------------------------------------------------------------------------


async def test_coordinator_routes_to_a_specialist_with_call_agent(seen: Seen) -> None:
    runtime = calculator_runtime(seen)
    nested = call("add", a=2, b=3)
    prompt = json.dumps(
        {
            "script": [
                {"tool": "call_agent", "args": {"agent": "calculator", "prompt": nested}},
                {"tool": "call_agent", "args": {"agent": "router", "prompt": "loop"}},
            ]
        }
    )

    events = await drain(runtime.query(prompt, "t-route"))

    sub_agents = [e for e in events if e["type"] == "tool-agent" and "targetAgent" in e]
    routed_call, refused_call = of_type(sub_agents, "tool-agent", state="call")
    routed, refused = of_type(sub_agents, "tool-agent", state="result")
    assert routed_call["agentName"] == "calculator", "the agent being called"
    assert routed_call["agent"] == "router"
    assert routed_call["targetAgent"] == "calculator"
    assert routed_call["prompt"] == nested
    # The sub-agent's run is in the stream, between the routing call and its result.
    assert [args for args, _ in seen] == [{"a": 2, "b": 3}]
    inner = events[events.index(routed_call) + 1 : events.index(routed)]
    assert of_type(inner, "tool-invocation", state="result", agent="calculator")
    (summary,) = of_type(inner, "data-tool-agent")
    answers = [
        e["usage"]
        for e in runtime.replay("t-route").events
        if e["type"] == "model-response" and e["agent"] == "calculator"
    ]
    prompt_tokens = sum(usage["promptTokens"] for usage in answers)
    completion_tokens = sum(usage["completionTokens"] for usage in answers)
    assert summary["data"] == {
        "agentName": "calculator",
        "model": "claude-haiku-4-5",
        "provider": "anthropic",
        "agent": "router",
        "usage": {
            "promptTokens": prompt_tokens,
            "completionTokens": completion_tokens,
            "totalTokens": prompt_tokens + completion_tokens,
            "cacheReadInputTokens": 0,
            "cacheCreationInputTokens": 0,
        },
    }
    assert routed["toolInvocationId"] == routed_call["toolInvocationId"]
    assert routed["result"] == '{"sum":5}'
    assert not routed.get("isError")
    # A route the coordinator does not have is refused; the model sees why.
    assert refused_call["targetAgent"] == "router"
    assert refused["isError"] is True
    assert refused["result"]["error"]["code"] == "ROUTE_NOT_ALLOWED"
    assert finish(events)["finishReason"] == "stop"


async def test_a_prompt_that_is_not_json_is_echoed(seen: Seen) -> None:
    runtime = calculator_runtime(seen)

    events = await drain(runtime.query("Say hello", "t-echo"))

    assert [(e["agent"], e["text"]) for e in of_type(events, "text")] == [("router", "Say hello")]
    assert finish(events)["finishReason"] == "stop"


async def test_an_invalid_script_ends_the_run_with_an_error(seen: Seen) -> None:
    runtime = calculator_runtime(seen)

    events = await drain(runtime.run_specialist("calculator", '{"script": [{"nope": 1}]}', "t"))

    assert terminal(events)["type"] == "error"
    assert terminal(events)["error"]["code"] == "SCRIPT_INVALID"
    assert not of_type(events, "finish")
    # The run is over: the thread takes the next query.
    again = await drain(runtime.query("next", "t"))
    assert finish(again)["finishReason"] == "stop"


async def test_run_specialist_runs_that_agent_on_a_fresh_thread(seen: Seen) -> None:
    runtime = calculator_runtime(seen)

    first = runtime.run_specialist("calculator", "hi")
    events = await drain(first)
    second = runtime.run_specialist("calculator", "hi")
    await drain(second)

    assert {s["agent"] for s in of_type(events, "step-start")} == {"calculator"}
    assert of_type(events, "text")[-1]["text"] == "hi"
    assert first.thread_id != second.thread_id
    assert sorted(runtime.thread_ids()) == sorted([first.thread_id, second.thread_id])


@pytest.mark.parametrize("name", ["nobody", "router"])
def test_run_specialist_refuses_a_name_that_is_no_specialist(seen: Seen, name: str) -> None:
    runtime = calculator_runtime(seen)

    with pytest.raises(UnknownAgentError, match="calculator"):
        runtime.run_specialist(name, "hi")


# --- create_runtime ---------------------------------------------------------------------------


def test_every_tool_an_agent_uses_needs_a_handler() -> None:
    with pytest.raises(MissingToolHandlerError, match=r"'add' \(used by calculator\)"):
        create_runtime(make_spec(ADD), interpreter="scripted")


def test_testing_and_interpreter_together_are_refused(seen: Seen) -> None:
    with pytest.raises(SpecError, match="either"):
        create_runtime(
            make_spec(ADD.bind(adder(seen))),
            testing=TestingConfig(mock_response="hi"),
            interpreter="scripted",
        )


async def test_without_an_interpreter_the_seeds_noop_runs(seen: Seen) -> None:
    runtime = create_runtime(make_spec(ADD.bind(adder(seen))))

    events = await drain(runtime.query(call("add", a=1, b=2), "t"))

    assert labels(events) == ["tool-agent/call", "step-start", "finish", "tool-agent/result"]
    assert seen == [], "noop calls no tool"


def test_an_unknown_interpreter_is_refused(seen: Seen) -> None:
    with pytest.raises(SpecError, match="unknown interpreter 'oracle'"):
        create_runtime(make_spec(ADD.bind(adder(seen))), interpreter="oracle")  # type: ignore[arg-type]


# --- cancellation and threads -----------------------------------------------------------------


async def test_cancel_at_the_first_call_ends_the_run_before_any_tool_runs(seen: Seen) -> None:
    runtime = calculator_runtime(seen)
    stream = runtime.run_specialist(
        "calculator", script(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})), "t"
    )

    events = []
    async for event in stream:
        events.append(event)
        if event["type"] == "tool-invocation":
            stream.cancel()

    check_stream(events)
    assert stream.cancelled
    assert terminal(events)["type"] == "finish"
    assert finish(events)["finishReason"] == "cancelled"
    assert len(of_type(events, "tool-invocation", state="call")) == 1
    assert seen == []
    assert runtime.replay("t").snapshot["lastRun"] == {"runId": "run-1", "outcome": "cancelled"}


async def test_cancel_while_a_tool_runs_keeps_its_result_and_runs_no_more_tools() -> None:
    ran: list[int] = []

    def add(args: dict[str, Any], ctx: ToolContext) -> dict[str, int]:
        ran.append(args["a"])
        stream.cancel()
        return {"sum": args["a"] + args["b"]}

    runtime = create_runtime(make_spec(ADD.bind(add)), interpreter="scripted")
    stream = runtime.run_specialist(
        "calculator", script(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})), "t"
    )

    events = await drain(stream)

    assert ran == [1]
    assert [r["result"] for r in results(events)] == [{"sum": 2}]
    assert finish(events)["finishReason"] == "cancelled"


@pytest.mark.parametrize("leave", ["break", "aclose"])
async def test_leaving_the_loop_early_frees_the_thread(seen: Seen, leave: str) -> None:
    runtime = calculator_runtime(seen)
    prompt = script(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2}))

    if leave == "break":
        async for event in runtime.run_specialist("calculator", prompt, "t"):
            if event["type"] == "tool-invocation":
                break
    else:
        stream = runtime.run_specialist("calculator", prompt, "t")
        async for event in stream:
            if event["type"] == "tool-invocation":
                break
        await stream.aclose()

    events = await drain(runtime.query("again", "t"))

    assert finish(events)["finishReason"] == "stop"
    assert seen == []
    snapshot = runtime.replay("t").snapshot
    assert snapshot["runs"] == 2
    assert snapshot["status"] == "idle"


async def test_a_second_query_continues_the_conversation(seen: Seen) -> None:
    runtime = calculator_runtime(seen)

    await drain(runtime.query("first question", "t"))
    events = await drain(runtime.query("second question", "t"))

    assert of_type(events, "text")[-1]["text"] == "second question"
    replay = runtime.replay("t")
    assert replay.snapshot["runs"] == 2
    assert replay.snapshot["lastRun"] == {"runId": "run-2", "outcome": "stop"}

    def text(message: dict[str, Any]) -> str:
        content = message["content"]
        return content if isinstance(content, str) else content[0]["text"]

    assert [(m["role"], text(m)) for m in replay.snapshot["messages"]] == [
        ("user", "first question"),
        ("assistant", "first question"),
        ("user", "second question"),
        ("assistant", "second question"),
    ]


async def test_a_query_on_a_thread_mid_run_is_refused_and_not_logged(seen: Seen) -> None:
    runtime = calculator_runtime(seen)
    stream = runtime.run_specialist("calculator", call("add", a=1, b=2), "t")

    events = []
    async for event in stream:
        events.append(event)
        if event["type"] == "tool-invocation" and event["state"] == "call":
            logged_before = runtime.replay("t").entries
            refused = await drain(runtime.query("are you there?", "t"))
            logged_after = runtime.replay("t").entries

    check_stream(events)
    ((error,),) = [refused]
    assert error["type"] == "error"
    assert error["error"]["code"] == "THREAD_BUSY"
    assert logged_after == logged_before
    # The run it interrupted went on; the refused query left no trace.
    assert finish(events)["finishReason"] == "stop"
    replay = runtime.replay("t")
    assert replay.snapshot["runs"] == 1
    assert "are you there?" not in json.dumps(replay.entries)
