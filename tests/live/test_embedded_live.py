"""The embedded runtime with live models: the official SDKs talk HTTP to the fake provider
server (flowai_harness.testing), which speaks the Anthropic and OpenAI wire protocols.

What a user relies on: text streams as it comes and is not repeated; tool calls (parallel
ones too) run and their results go back to the model; a transient failure is retried after
the provider's retry-after; a failing model falls back to the next of its chain, across
providers; an exhausted chain ends the run with MODEL_FAILED; cancel() aborts the HTTP
stream; a recorded thread replays without any provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from flowai_harness import (
    RetryPolicy,
    Runtime,
    create_runtime,
    define_coordinator,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness.testing import FakeProvider, ToolCall, Turn, Usage, overloaded, rate_limited

Event = dict[str, Any]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def lookup_tool(calls: list[dict[str, Any]]) -> Any:
    def lookup(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        calls.append(args)
        return {"city": args["city"], "temp_c": 20 + len(calls)}

    return define_tool(
        "lookup",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        description="Weather for a city",
    ).bind(lookup)


@pytest.fixture
async def runtimes() -> AsyncIterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for runtime in made:
        await runtime.aclose()


@pytest.fixture
def runtime_for(fake: FakeProvider, runtimes: list[Runtime]) -> Callable[..., Runtime]:
    def make(*agents: Any, log_path: Path | None = None) -> Runtime:
        spec = define_runtime(
            tenant=("acme", "v1"), agents=list(agents), providers=fake.provider_settings()
        )
        runtime = create_runtime(spec, interpreter="live", log_path=log_path)
        runtimes.append(runtime)
        return runtime

    return make


async def collect(stream: Any) -> list[Event]:
    return [event async for event in stream]


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


def _run_of(events: list[Event]) -> str:
    request_id: str = of(events, "step-start")[0]["requestId"]
    return request_id.split("/")[2]


FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


async def test_text_streams_as_it_comes_and_is_not_repeated(
    fake: FakeProvider, runtime_for: Callable[..., Runtime]
) -> None:
    fake.add(Turn(text=["Hel", "lo ", "there", "!"], usage=Usage(input_tokens=12, output_tokens=4)))
    agent = define_specialist(name="greeter", model="claude-sonnet-4-6", prompt="Greet.")
    rt = runtime_for(agent)
    events = await collect(rt.run_specialist("greeter", "hi", "t1"))
    texts = [e["text"] for e in of(events, "text")]
    assert texts == ["Hel", "lo ", "there", "!"], "one text event per streamed chunk, no repeat"
    assert {e["requestId"] for e in of(events, "text")} == {
        "acme/t1/" + _run_of(events) + "/model-1/1"
    }
    finish = of(events, "finish")[0]
    assert finish["finishReason"] == "stop"
    assert finish["usage"]["promptTokens"] == 12
    assert finish["usage"]["completionTokens"] == 4
    # Live models are priced: the run says what it cost.
    cost = of(events, "data-cost-summary")[0]["data"]
    assert cost["totalPromptTokens"] == 12
    assert events[-1]["type"] == "tool-agent"
    assert events[-1]["result"] == "Hello there!"
    (request,) = fake.requests
    assert request.api == "anthropic"
    assert request.body["stream"] is True
    assert request.body["system"][0]["text"].startswith("Greet.")


async def test_parallel_tool_calls_run_and_their_results_go_back(
    fake: FakeProvider, runtime_for: Callable[..., Runtime]
) -> None:
    fake.add(
        Turn(
            text="Checking both.",
            tool_calls=[
                ToolCall("lookup", {"city": "Oslo"}, id="call_a"),
                ToolCall("lookup", {"city": "Rome"}, id="call_b"),
            ],
        ),
        Turn(text="Oslo 21, Rome 22."),
    )
    calls: list[dict[str, Any]] = []
    agent = define_specialist(
        name="weather", model="gpt-5-mini", prompt="Answer.", tools=[lookup_tool(calls)]
    )
    rt = runtime_for(agent)
    events = await collect(rt.run_specialist("weather", "Oslo and Rome?", "t2"))
    assert sorted(c["city"] for c in calls) == ["Oslo", "Rome"]
    results = [e for e in of(events, "tool-invocation") if e["state"] == "result"]
    assert [r["toolInvocationId"] for r in results] == ["call_a", "call_b"]
    assert events[-1]["result"] == "Oslo 21, Rome 22."
    first, second = fake.requests
    assert first.api == second.api == "openai"
    # The second request carries the assistant's calls and one tool message per result.
    messages = second.body["messages"]
    assistant = next(m for m in messages if m["role"] == "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    tool_messages = [m for m in messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_a", "call_b"]
    assert orjson.loads(tool_messages[0]["content"])["city"] == "Oslo"


async def test_rate_limit_is_retried_after_the_providers_retry_after(
    fake: FakeProvider, tmp_path: Path, runtime_for: Callable[..., Runtime]
) -> None:
    fake.add(Turn(fault=rate_limited(retry_after_ms=150)), Turn(text="Done."))
    agent = define_specialist(name="a", model="claude-sonnet-4-6", prompt="p", retry=FAST_RETRY)
    rt = runtime_for(agent, log_path=tmp_path / "log")
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await collect(rt.run_specialist("a", "go", "t3"))
    waited = loop.time() - started
    assert events[-1]["result"] == "Done."
    assert len(fake.requests) == 2
    assert waited >= 0.15, "the retry waited for the provider's retry-after"
    failures = [e for e in rt.replay("t3").events if e["type"] == "model-failure"]
    assert [f["kind"] for f in failures] == ["rate_limited"]
    assert failures[0]["retryAfterMs"] == 150
    assert failures[0]["recovery"]["action"] == "retry"


async def test_a_failing_model_falls_back_across_providers(
    fake: FakeProvider, runtime_for: Callable[..., Runtime]
) -> None:
    fake.add(Turn(fault=overloaded(), api="anthropic", times=None), Turn(text="From OpenAI."))
    agent = define_specialist(
        name="a",
        model="claude-sonnet-4-6",
        prompt="p",
        fallback=["gpt-5-mini"],
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02),
    )
    rt = runtime_for(agent)
    events = await collect(rt.run_specialist("a", "go", "t4"))
    assert events[-1]["result"] == "From OpenAI."
    assert [r.api for r in fake.requests] == ["anthropic", "anthropic", "openai"]
    steps = of(events, "step-start")
    assert [(s["provider"], s["model"]) for s in steps] == [
        ("anthropic", "claude-sonnet-4-6"),
        ("anthropic", "claude-sonnet-4-6"),
        ("openai", "gpt-5-mini"),
    ], "each attempt is a step of its own, naming the model asked"


async def test_an_exhausted_chain_ends_the_run_with_model_failed(
    fake: FakeProvider, runtime_for: Callable[..., Runtime]
) -> None:
    fake.add(Turn(fault=overloaded(), times=None))
    agent = define_specialist(
        name="a",
        model="claude-sonnet-4-6",
        prompt="p",
        fallback=["claude-haiku-4-5"],
        retry=RetryPolicy(max_attempts=1),
    )
    rt = runtime_for(agent)
    events = await collect(rt.run_specialist("a", "go", "t5"))
    error = events[-1]
    assert error["type"] == "error"
    assert error["error"]["code"] == "MODEL_FAILED"
    assert "claude-sonnet-4-6" in error["error"]["message"]
    assert "claude-haiku-4-5" in error["error"]["message"]
    assert len(fake.requests) == 2


async def test_cancel_aborts_the_stream_mid_answer(
    fake: FakeProvider, runtime_for: Callable[..., Runtime]
) -> None:
    fake.add(Turn(text=["one ", "two ", "three"], stall_after=1))
    agent = define_specialist(name="a", model="claude-sonnet-4-6", prompt="p")
    rt = runtime_for(agent)
    stream = rt.run_specialist("a", "go", "t6")
    events: list[Event] = []
    async for event in stream:
        events.append(event)
        if event["type"] == "text":
            await rt.cancel("t6")
    assert [e["text"] for e in of(events, "text")] == ["one "]
    assert of(events, "finish")[0]["finishReason"] == "cancelled"
    (request,) = fake.requests
    assert await request.wait_finished(5) == "disconnected", "the HTTP stream was closed"


async def test_a_live_thread_replays_and_continues_without_the_first_answers(
    fake: FakeProvider, tmp_path: Path, runtime_for: Callable[..., Runtime]
) -> None:
    calls: list[dict[str, Any]] = []
    fake.add(
        Turn(tool_calls=[ToolCall("lookup", {"city": "Oslo"}, id="c1")]),
        Turn(text="It is 21 in Oslo."),
    )
    coordinator = define_coordinator(
        name="router", model="claude-sonnet-4-6", prompt="Route.", routes=["weather"]
    )
    weather = define_specialist(
        name="weather",
        model="claude-sonnet-4-6",
        prompt="Answer.",
        tools=[lookup_tool(calls)],
        stateful=True,  # specialists are stateless by default (the seed's rule)
    )
    log = tmp_path / "log"
    rt = runtime_for(coordinator, weather, log_path=log)
    first = await collect(rt.run_specialist("weather", "Oslo?", "t7"))
    assert first[-1]["result"] == "It is 21 in Oslo."
    assert len(fake.requests) == 2

    # A new process on the same log: nothing is asked of the provider to rebuild the
    # thread, and the next question carries the whole conversation so far.
    fake.add(Turn(text="Still 21."))
    again = runtime_for(coordinator, weather, log_path=log)
    second = await collect(again.run_specialist("weather", "And now?", "t7"))
    assert second[-1]["result"] == "Still 21."
    assert len(fake.requests) == 3
    history = fake.requests[2].body["messages"]
    text = orjson.dumps(history).decode()
    for said in ("Oslo?", "It is 21 in Oslo.", "And now?"):
        assert said in text
    assert len(calls) == 1, "the tool did not run again"


async def test_the_recorded_live_thread_replays_with_no_provider(
    golden_dir: Path, scenarios: Any, tmp_path: Path
) -> None:
    """tests/golden/acme/live.jsonl was recorded from a live model (scenarios.py): it
    replays to its snapshot and its events with nothing listening on any provider URL (the
    Rust golden tests also rebuild it byte for byte from the inputs read back from it)."""
    import json
    import shutil

    (tmp_path / "acme").mkdir()
    shutil.copy(golden_dir / "acme" / "live.jsonl", tmp_path / "acme" / "live.jsonl")
    unreachable = {"anthropic": {"apiKey": "k", "baseUrl": "http://127.0.0.1:9"}}
    async with create_runtime(
        scenarios.spec(unreachable), interpreter="live", log_path=tmp_path
    ) as runtime:
        replayed = runtime.replay("live")
        expected = json.loads((golden_dir / "expected" / "live.json").read_text())
        assert replayed.snapshot == expected
        kinds = [e["type"] for e in replayed.events]
        assert kinds.count("model-response") == 2
        assert kinds.count("model-failure") == 1
        assert replayed.status == "idle"
