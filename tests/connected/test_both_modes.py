"""One driver, two transports: the same scenarios, with the same live model answers, stream
the same events from the embedded runtime and from the distributed services.

Scenarios: a tool loop, routing through the coordinator, an approval gate approved, one
rejected and one needing two approvers, a retried rate limit, a fallback across providers,
and a run cancelled at its gate. Each runs first on an
embedded ``create_runtime(spec, interpreter="live")`` and then through ``connect()`` against
the runtime service (``--interpreter live``) with tool and model workers; the fake provider
server answers both with the same script. The streams must be equal, except for what only
time decides (latency figures) and how the text deltas were cut (a model worker merges the
deltas that wait for the broker), so consecutive text of one model call is compared joined;
a model failure's latency and retry time are the clock's.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka_helpers import HERE, live_runtime_args, live_worker_args
from processes import Service
from redis.asyncio import Redis

from flowai_harness import Runtime, connect, create_runtime
from flowai_harness.kafka import bus
from flowai_harness.testing import FakeProvider, ToolCall, Turn, Usage, overloaded, rate_limited

pytestmark = pytest.mark.connected

Event = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    turns: tuple[Turn, ...]
    agent: str | None = None
    # At the gate: "approve", "reject", "approve2" (alice, then bob on approval-progress)
    # or "cancel".
    at_gate: str | None = None
    expect_last: str = "tool-agent"
    notes: list[str] = field(default_factory=list)


def _usage(n: int) -> Usage:
    return Usage(input_tokens=100 + n, output_tokens=10 + n)


SCENARIOS = (
    Scenario(
        "tools",
        "What is 2 + 3?",
        (
            Turn(tool_calls=[ToolCall("add", {"a": 2, "b": 3}, id="toolu_t1")], usage=_usage(1)),
            Turn(text=["It ", "is ", "5."], usage=_usage(2)),
        ),
        agent="analyst",
    ),
    Scenario(
        "routing",
        "Please add 4 and 5.",
        (
            Turn(
                tool_calls=[
                    ToolCall("call_agent", {"agent": "analyst", "prompt": "4 + 5"}, id="toolu_r1")
                ],
                usage=_usage(3),
            ),
            Turn(tool_calls=[ToolCall("add", {"a": 4, "b": 5}, id="toolu_r2")], usage=_usage(4)),
            Turn(text="9.", usage=_usage(5)),
            Turn(text="The analyst says 9.", usage=_usage(6)),
        ),
    ),
    Scenario(
        "gate",
        "Pay 7.",
        (
            Turn(tool_calls=[ToolCall("pay", {"amount": 7}, id="toolu_g1")], usage=_usage(7)),
            Turn(text="Paid.", usage=_usage(8)),
        ),
        agent="clerk",
        at_gate="approve",
    ),
    Scenario(
        "retry",
        "Say hi.",
        (Turn(fault=rate_limited(retry_after_ms=80)), Turn(text="Hi.", usage=_usage(9))),
        agent="analyst",
    ),
    Scenario(
        "fallback",
        "Say hello.",
        (
            Turn(fault=overloaded(), api="anthropic", times=2),
            Turn(text="Hello from the fallback.", api="openai", usage=_usage(10)),
        ),
        agent="analyst",
    ),
    Scenario(
        "reject",
        "Pay 8.",
        (
            Turn(tool_calls=[ToolCall("pay", {"amount": 8}, id="toolu_j1")], usage=_usage(12)),
            Turn(text="Not paid, then.", usage=_usage(13)),
        ),
        agent="clerk",
        at_gate="reject",
    ),
    Scenario(
        "two-person",
        "Move 100.",
        (
            Turn(
                tool_calls=[ToolCall("transfer", {"amount": 100}, id="toolu_q1")],
                usage=_usage(14),
            ),
            Turn(text="Moved.", usage=_usage(15)),
        ),
        agent="clerk",
        at_gate="approve2",
    ),
    Scenario(
        "cancel",
        "Pay 9.",
        (Turn(tool_calls=[ToolCall("pay", {"amount": 9}, id="toolu_c1")], usage=_usage(11)),),
        agent="clerk",
        at_gate="cancel",
    ),
)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        monkeypatch.setenv("FAKE_ANTHROPIC_URL", server.anthropic_url)
        monkeypatch.setenv("FAKE_OPENAI_URL", server.openai_url)
        yield server


def live_app() -> Any:
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module("live_app")
    finally:
        sys.path.remove(str(HERE))


def gate_action(scenario: Scenario, event: Event) -> tuple[str, str | None] | None:
    """What the scenario's human does on ``event``: (outcome, approver), or ("cancel", None)."""
    if event["type"] == "approval-progress" and scenario.at_gate == "approve2":
        return "approve", "bob"
    if event["type"] != "approval-required":
        return None
    return {
        "approve": ("approve", "alice"),
        "approve2": ("approve", "alice"),
        "reject": ("reject", "alice"),
        "cancel": ("cancel", None),
    }[scenario.at_gate or "cancel"]


async def run_embedded(runtime: Runtime, scenario: Scenario, thread: str) -> list[Event]:
    stream = (
        runtime.run_specialist(scenario.agent, scenario.prompt, thread)
        if scenario.agent
        else runtime.query(scenario.prompt, thread)
    )
    events: list[Event] = []
    async for event in stream:
        events.append(event)
        action = gate_action(scenario, event)
        if action is None:
            continue
        outcome, approver = action
        if outcome == "cancel":
            stream.cancel()
        else:
            await runtime.respond_to_approval(
                event["data"]["id"],
                outcome,
                "not now",
                approver=approver,  # type: ignore[arg-type]
            )
    return events


async def run_remote(client: Any, scenario: Scenario, thread: str) -> list[Event]:
    stream = client.query(scenario.prompt, thread, agent=scenario.agent)
    events: list[Event] = []
    async for event in stream:
        events.append(event)
        action = gate_action(scenario, event)
        if action is None:
            continue
        outcome, approver = action
        if outcome == "cancel":
            stream.cancel()
        else:
            await client.respond_to_approval(
                event["data"]["id"], outcome, "not now", approver=approver
            )
    return events


def comparable(events: list[Event]) -> list[Event]:
    """The stream without what only time decides, with each model call's text joined."""
    out: list[Event] = []
    for event in events:
        if event["type"] == "data-latency-summary":
            continue
        previous = out[-1] if out else None
        if (
            previous is not None
            and event["type"] in ("text", "reasoning")
            and previous["type"] == event["type"]
            and previous.get("requestId") == event.get("requestId")
        ):
            out[-1] = {**previous, "text": previous["text"] + event["text"]}
            continue
        if event["type"] == "model-failure":
            # How long the call took, and so when the retry is due, is the clock's.
            event = {k: v for k, v in event.items() if k != "latencyMs"}
            event["recovery"] = {k: v for k, v in event["recovery"].items() if k != "at"}
        out.append(dict(event))
    return out


async def test_embedded_and_distributed_stream_the_same_events(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    fake: FakeProvider,
) -> None:
    app = live_app()
    embedded: dict[str, list[Event]] = {}
    async with create_runtime(app.make_spec(), interpreter="live") as runtime:
        for scenario in SCENARIOS:
            fake.add(*scenario.turns)
            embedded[scenario.name] = await run_embedded(runtime, scenario, f"both-{scenario.name}")
    embedded_calls = len(fake.requests)

    env = {"FAKE_ANTHROPIC_URL": fake.anthropic_url, "FAKE_OPENAI_URL": fake.openai_url}
    spawn("runtime", *live_runtime_args(kafka_bootstrap, topics.prefix), env=env)
    spawn("workers", *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "all"), env=env)
    remote: dict[str, list[Event]] = {}
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        for scenario in SCENARIOS:
            fake.add(*scenario.turns)
            remote[scenario.name] = await run_remote(client, scenario, f"both-{scenario.name}")

    assert len(fake.requests) == 2 * embedded_calls, "each mode made the same model calls"
    for scenario in SCENARIOS:
        here, there = comparable(embedded[scenario.name]), comparable(remote[scenario.name])
        assert [e["type"] for e in there] == [e["type"] for e in here], scenario.name
        assert there == here, scenario.name
    # The scenarios do what they say.
    assert any(e["type"] == "approval-decision" for e in embedded["gate"])
    finish = [e for e in embedded["cancel"] if e["type"] == "finish"]
    assert finish[0]["finishReason"] == "cancelled"
    fallback_steps = [e for e in embedded["fallback"] if e["type"] == "step-start"]
    assert [s["provider"] for s in fallback_steps] == ["anthropic", "anthropic", "openai"]
    assert sum(e["type"] == "step-start" for e in embedded["retry"]) == 2
    rejected = [e for e in embedded["reject"] if e["type"] == "tool-invocation"][-1]
    assert rejected["result"]["error"]["code"] == "APPROVAL_REJECTED"
    progress = [e["data"] for e in embedded["two-person"] if e["type"] == "approval-progress"]
    assert [(p["approver"], p["approvals"], p["approvalsRequired"]) for p in progress] == [
        ("alice", 1, 2)
    ]
    moved = [e for e in embedded["two-person"] if e["type"] == "tool-invocation"][-1]
    assert moved["result"] == {"moved": 100}
