"""Replay: a thread rebuilt from its run log alone, without running a tool or a model."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streams import check_stream, drain

from flowai_harness import Runtime, TestingConfig

OpenRuntime = Callable[..., Runtime]


class Counting:
    """Tool handlers for the golden spec that count their calls."""

    def __init__(self) -> None:
        self.calls = 0

    def add(self, args: dict[str, Any], ctx: Any) -> dict[str, int]:
        self.calls += 1
        ctx.emit("adding", args)
        return {"sum": args["a"] + args["b"]}

    def explode(self, args: dict[str, Any], ctx: Any) -> None:
        self.calls += 1
        raise RuntimeError(args["reason"])

    def bindings(self) -> dict[str, Callable[..., Any]]:
        return {"add": self.add, "explode": self.explode}


@pytest.fixture
def tools_prompt(scenarios: types.ModuleType) -> str:
    prompt: str = scenarios.script(
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": "one"}),
        ("explode", {"reason": "boom"}),
        ("add", {"a": 40, "b": 2}),
    )
    return prompt


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def runtime(
    open_runtime: OpenRuntime, scenarios: types.ModuleType, tmp_path: Path, counting: Counting
) -> Runtime:
    return open_runtime(
        scenarios.spec(),
        interpreter="scripted",
        tool_bindings=counting.bindings(),
        log_path=tmp_path,
    )


async def test_replay_runs_no_tool_and_no_model(
    runtime: Runtime,
    counting: Counting,
    tools_prompt: str,
    open_runtime: OpenRuntime,
    scenarios: types.ModuleType,
    tmp_path: Path,
) -> None:
    await drain(runtime.run_specialist("calculator", tools_prompt, "t"))
    ran = counting.calls
    snapshot = runtime.replay("t").snapshot
    assert ran == 3  # the call with invalid args never reached a handler

    # Another runtime whose "model" would answer differently and whose tools count anew:
    # replay takes every answer and every result from the log.
    elsewhere = Counting()
    other = open_runtime(
        scenarios.spec(),
        testing=TestingConfig(mock_response="a different answer"),
        tool_bindings=elsewhere.bindings(),
        log_path=tmp_path,
    )
    replayed = other.replay("t")

    assert counting.calls == ran
    assert elsewhere.calls == 0
    assert replayed.snapshot == snapshot
    assert "a different answer" not in str(replayed.events)


async def test_replaying_twice_gives_the_same_thread(runtime: Runtime, tools_prompt: str) -> None:
    await drain(runtime.run_specialist("calculator", tools_prompt, "t"))
    await drain(runtime.query("and then?", "t"))

    first, second = runtime.replay("t"), runtime.replay("t")

    assert first.snapshot == second.snapshot
    assert first.entries == second.entries
    assert first.status == second.status == "idle"


async def test_replay_events_are_the_streamed_events_with_the_internal_ones(
    runtime: Runtime, tools_prompt: str
) -> None:
    streamed_1 = await drain(runtime.run_specialist("calculator", tools_prompt, "t"))
    streamed_2 = await drain(runtime.query("and then?", "t"))

    events = runtime.replay("t").events

    internal = ("run-start", "model-response")
    # A replayed event is the streamed one plus its position in the log.
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    events = [{k: v for k, v in e.items() if k != "seq"} for e in events]
    assert [e for e in events if e["type"] not in internal] == [*streamed_1, *streamed_2]
    starts = [e for e in events if e["type"] == "run-start"]
    assert starts == [
        {
            "type": "run-start",
            "runId": "run-1",
            "agent": "calculator",
            "prompt": tools_prompt,
            "v": 2,
        },
        {"type": "run-start", "runId": "run-2", "agent": "router", "prompt": "and then?", "v": 2},
    ]
    # Every model turn logged its answer: one per step-start (no retries here).
    answers = [e for e in events if e["type"] == "model-response"]
    assert len(answers) == len([e for e in events if e["type"] == "step-start"])
    assert {a["provider"] for a in answers} == {"scripted"}


async def test_replay_entries_are_numbered_envelopes_without_gaps(
    runtime: Runtime, tools_prompt: str
) -> None:
    await drain(runtime.run_specialist("calculator", tools_prompt, "t"))
    await drain(runtime.query("and then?", "t"))

    replay = runtime.replay("t")
    entries = replay.entries

    assert replay.thread_id == "t"
    assert replay.lines == len(entries) == len(replay.events)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert [e["id"] for e in entries] == [f"acme/t/{e['seq']}" for e in entries]
    assert {(e["schema"], e["tenant"], e["thread_id"]) for e in entries} == {
        ("flowai.v1.RuntimeEvent", "acme", "t")
    }
    assert [{**e["payload"], "seq": e["seq"]} for e in entries] == replay.events
    # Every event belongs to the run its run-start opened.
    run_id = None
    for entry in entries:
        if entry["payload"]["type"] == "run-start":
            run_id = entry["payload"]["runId"]
        assert entry["run_id"] == run_id
    assert replay.snapshot["lastSeq"] == len(entries)


async def test_replay_status_follows_the_run(runtime: Runtime, scenarios: types.ModuleType) -> None:
    stream = runtime.run_specialist("calculator", scenarios.script(("add", {"a": 1, "b": 2})), "t")

    events = []
    statuses = []
    async for event in stream:
        events.append(event)
        if event["type"] == "tool-invocation" and event["state"] == "call":
            statuses.append(runtime.replay("t").status)
    statuses.append(runtime.replay("t").status)

    check_stream(events)
    assert statuses == ["awaiting-tool", "idle"]


async def test_replaying_a_prefix_gives_the_thread_as_it_was_then(
    runtime: Runtime,
    tools_prompt: str,
    open_runtime: OpenRuntime,
    scenarios: types.ModuleType,
    tmp_path: Path,
) -> None:
    await drain(runtime.run_specialist("calculator", tools_prompt, "t"))
    after_first_run = runtime.replay("t")
    await drain(runtime.query("and then?", "t"))

    prefix = (tmp_path / "acme" / "t.jsonl").read_bytes().splitlines()[: after_first_run.lines]
    (tmp_path / "prefix" / "acme").mkdir(parents=True)
    (tmp_path / "prefix" / "acme" / "t.jsonl").write_bytes(b"\n".join(prefix) + b"\n")
    other = open_runtime(scenarios.spec(), interpreter="scripted", log_path=tmp_path / "prefix")

    assert other.replay("t").snapshot == after_first_run.snapshot
