"""Time travel and fork in the embedded runtime: ``replay(thread, at=SEQ)`` shows a thread
as it was after one of its events, ``fork`` starts a new thread from that point (a logged
``fork`` fact; the source untouched; a gate re-opened under the fork's own approval id), and
both stay inside the runtime's tenant."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streams import drain, finish, of_type

from flowai_harness import Runtime, RuntimeSpec, define_runtime, define_specialist, define_tool
from flowai_harness.errors import (
    ForkUnavailableError,
    InvalidInputError,
    UnknownApprovalError,
    UnknownThreadError,
)

OpenRuntime = Callable[..., Runtime]
PAY_5 = json.dumps({"tool": "pay", "args": {"amount": 5}})


def clerk_spec(tenant: str = "acme") -> RuntimeSpec:
    clerk = define_specialist(
        "clerk",
        model="claude-haiku-4-5",
        prompt="You pay invoices.",
        tools=[define_tool("pay", {"amount": int}, description="Pay.", approval="always")],
    )
    return define_runtime((tenant, "v1"), agents=[clerk], providers={"anthropic": {}})


async def paused(runtime: Runtime, thread: str) -> None:
    """Run the clerk until its payment waits at the gate; leave it there."""
    async for event in runtime.run_specialist("clerk", PAY_5, thread):
        if event["type"] == "approval-required":
            break


@pytest.fixture
def paid() -> list[int]:
    return []


@pytest.fixture
def clerk(open_runtime: OpenRuntime, tmp_path: Path, paid: list[int]) -> Runtime:
    def pay(args: dict[str, Any], ctx: Any) -> dict[str, bool]:
        paid.append(args["amount"])
        return {"paid": True}

    return open_runtime(
        clerk_spec(), interpreter="scripted", tool_bindings={"pay": pay}, log_path=tmp_path
    )


async def test_replay_at_a_seq_is_the_thread_as_it_was_after_that_event(clerk: Runtime) -> None:
    await drain(clerk.run_specialist("clerk", "hello", "t"))
    first_run = len(clerk.replay("t").events)
    await paused(clerk, "t")
    whole = clerk.replay("t")

    then = clerk.replay("t", at=first_run)
    assert then.status == "idle"
    assert then.lines == first_run
    assert then.events == whole.events[:first_run]
    assert [e["seq"] for e in then.events] == list(range(1, first_run + 1))
    assert then.snapshot["lastSeq"] == first_run
    assert then.snapshot["runs"] == 1

    (gate,) = of_type(whole.events, "approval-required")
    at_gate = clerk.replay("t", at=gate["seq"])
    assert at_gate.status == "awaiting-approval"
    assert at_gate.snapshot["run"]["pending"]["approval"]["id"] == gate["data"]["id"]
    assert clerk.replay("t").status == "awaiting-approval", "replay changed nothing"

    for bad in (0, whole.lines + 1, -1):
        with pytest.raises(InvalidInputError, match=rf"has {whole.lines} events"):
            clerk.replay("t", at=bad)


async def test_a_fork_between_runs_has_the_history_and_goes_its_own_way(
    clerk: Runtime, tmp_path: Path
) -> None:
    await drain(clerk.run_specialist("clerk", "first", "t"))
    at = clerk.replay("t").lines
    await drain(clerk.run_specialist("clerk", "second", "t"))
    source_file = tmp_path / "acme" / "t.jsonl"
    source_bytes = source_file.read_bytes()

    fork = clerk.fork("t", at=at, new_thread_id="t2")

    assert fork.thread_id == "t2"
    assert fork.status == "idle"
    assert fork.events[:at] == clerk.replay("t", at=at).events
    assert fork.events[-1] == {
        "type": "fork",
        "data": {"sourceThreadId": "t", "sourceSeq": at},
        "seq": at + 1,
    }
    assert source_file.read_bytes() == source_bytes, "the source is untouched"
    assert clerk.replay("t2").events == fork.events, "the fork is logged"

    events = await drain(clerk.run_specialist("clerk", "another second", "t2"))
    assert finish(events)["finishReason"] == "stop"
    prompts = [m["content"] for m in clerk.replay("t2").snapshot["messages"] if m["role"] == "user"]
    assert prompts == ["first", "another second"]
    assert "t2" in clerk.thread_ids()


async def test_a_fork_at_a_gate_waits_there_under_a_new_approval_id(
    clerk: Runtime, paid: list[int]
) -> None:
    await paused(clerk, "t")
    (gate,) = of_type(clerk.replay("t").events, "approval-required")

    fork = clerk.fork("t", at=gate["seq"], new_thread_id="t-retry")

    assert fork.status == "awaiting-approval"
    new_id = fork.snapshot["run"]["pending"]["approval"]["id"]
    assert new_id != gate["data"]["id"]
    assert new_id.startswith("appr:t-retry/")
    assert [e["type"] for e in fork.events[-2:]] == ["fork", "approval-required"]

    stream = await clerk.respond_to_approval(new_id, "approve")
    assert stream is not None, "no stream here waits at the fork's gate"
    # The rest of the fork's run, from its gate on (what came before was never streamed).
    events = [event async for event in stream]
    assert [e["type"] for e in events][:2] == ["approval-decision", "tool-invocation"]
    assert finish(events)["finishReason"] == "stop"
    assert paid == [5]
    assert clerk.replay("t").status == "awaiting-approval", "the source still waits"
    assert clerk.replay("t-retry").status == "idle"


async def test_forks_that_cannot_start_are_refused(clerk: Runtime) -> None:
    await paused(clerk, "t")
    await drain(clerk.run_specialist("clerk", "hello", "other"))
    run_start = 1
    with pytest.raises(ForkUnavailableError, match="running"):
        clerk.fork("t", at=run_start, new_thread_id="x")
    with pytest.raises(ForkUnavailableError, match="exists already"):
        clerk.fork("t", at=1, new_thread_id="other")
    with pytest.raises(ForkUnavailableError, match=r"events; fork at a seq"):
        clerk.fork("t", at=999, new_thread_id="x")
    with pytest.raises(UnknownThreadError):
        clerk.fork("nope", at=1, new_thread_id="x")
    assert "x" not in clerk.thread_ids()


async def test_replay_and_fork_stay_inside_the_tenant(
    clerk: Runtime, open_runtime: OpenRuntime, tmp_path: Path
) -> None:
    await drain(clerk.run_specialist("clerk", "hello", "t"))
    other = open_runtime(
        clerk_spec("globex"),
        interpreter="scripted",
        tool_bindings={"pay": lambda args, ctx: None},
        log_path=tmp_path,
    )
    with pytest.raises(UnknownThreadError):
        other.replay("t", at=1)
    with pytest.raises(UnknownThreadError):
        other.fork("t", at=1, new_thread_id="mine")
    with pytest.raises(UnknownApprovalError):
        await other.respond_to_approval("appr:t/run-1/scripted-tool-1", "approve")
