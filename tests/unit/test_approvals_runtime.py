"""Approval gates through the runtime: a gated tool waits for a human, decisions and their
typed errors, the rule hierarchy, deadlines, and pauses that outlive their process.

The scripted interpreter makes "the model" call ``pay``; its handler records every call, so
each test can say whether it ran. Pure rule logic (precedence, predicate ids) is tested in
test_approvals.py; the engine's own tables in core/engine/tests/approvals.rs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _approval_process as process_a
import pytest
from streams import check_stream, drain, of_type

from flowai_harness import (
    ApprovalOverrides,
    ApprovalPolicies,
    EventStream,
    Runtime,
    RuntimeSpec,
    SpecError,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness import runtime as runtime_module
from flowai_harness.errors import (
    ApprovalAlreadyResolvedError,
    InvalidInputError,
    UnknownApprovalError,
    UnknownApprovalTargetError,
)

Event = dict[str, Any]
Calls = list[tuple[str, dict[str, Any]]]
OpenRuntime = Callable[..., Runtime]

PAY_5 = json.dumps({"tool": "pay", "args": {"amount": 5}})
GATE = "appr:t/run-1/scripted-tool-1"
HOUR = 3600.0


def make_spec(
    *,
    pay: Any = "always",
    approval: Any = "default",
    tool_approvals: dict[str, Any] | None = None,
    agent_timeout: float | None = None,
    tenant: str = "acme",
    **runtime_options: Any,
) -> RuntimeSpec:
    """A clerk with ``pay`` (its own rule: ``pay``) and an ungated ``note``."""
    clerk = define_specialist(
        "clerk",
        model="claude-haiku-4-5",
        prompt="You pay invoices.",
        tools=[
            define_tool("pay", {"amount": int}, description="Pay an invoice.", approval=pay),
            define_tool("note", {"text": str}, description="Write a note.", approval="never"),
        ],
        approval=approval,
        tool_approvals=tool_approvals,
        approval_timeout=agent_timeout,
    )
    return define_runtime(
        (tenant, "v1"), agents=[clerk], providers={"anthropic": {}}, **runtime_options
    )


@pytest.fixture
def calls() -> Calls:
    """Every (tool, args) a handler was called with."""
    return []


@pytest.fixture
def open_clerk(open_runtime: OpenRuntime, calls: Calls) -> Callable[..., Runtime]:
    """A scripted clerk runtime over ``make_spec(**spec_options)`` recording its calls."""

    def recorder(name: str, asynchronous: bool) -> Callable[[dict[str, Any], Any], Any]:
        def handler(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
            calls.append((name, args))
            return {"done": name, **args}

        async def async_handler(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
            await asyncio.sleep(0)  # gives the event loop a turn mid-run
            return handler(args, ctx)

        return async_handler if asynchronous else handler

    def open_(
        log_path: Path | None = None, *, async_tools: bool = False, **spec_options: Any
    ) -> Runtime:
        return open_runtime(
            make_spec(**spec_options),
            interpreter="scripted",
            tool_bindings={name: recorder(name, async_tools) for name in ("pay", "note")},
            log_path=log_path,
        )

    return open_


async def until(stream: EventStream, kind: str) -> list[Event]:
    """The stream's events up to and including the first of type ``kind``."""
    events = [await anext(stream)]
    while events[-1]["type"] != kind:
        events.append(await anext(stream))
    return events


async def decide_at_gate(
    stream: EventStream, decide: Callable[[Event], Any], *, waiting: bool
) -> list[Event]:
    """Drain ``stream``, calling ``decide(approval-required event)`` at its gate: in the loop
    body, or (``waiting``) from another task once the stream waits at the gate."""
    events: list[Event] = []
    if not waiting:
        async for event in stream:
            events.append(event)
            if event["type"] == "approval-required":
                decide(event)
        check_stream(events)
        return events
    gates: asyncio.Queue[Event] = asyncio.Queue()

    async def consume() -> None:
        async for event in stream:
            events.append(event)
            if event["type"] == "approval-required":
                gates.put_nowait(event)

    consumer = asyncio.create_task(consume())
    gate = asyncio.create_task(gates.get())
    # The consumer runs on from the put to the gate's wait before this task wakes.
    await asyncio.wait({consumer, gate}, return_when=asyncio.FIRST_COMPLETED)
    assert gate.done(), f"the stream ended without a gate: {events}"
    decide(gate.result())
    await consumer
    check_stream(events)
    return events


def log_lines(root: Path, thread: str, tenant: str = "acme") -> list[bytes]:
    return (root / tenant / f"{thread}.jsonl").read_bytes().splitlines()


def payloads(lines: list[bytes]) -> list[Event]:
    return [json.loads(line)["payload"] for line in lines]


def streamed(events: list[Event]) -> list[Event]:
    """Logged events as a stream showed them (without the internal run-start)."""
    return [event for event in events if event["type"] != "run-start"]


def position(events: list[Event], kind: str, **fields: Any) -> int:
    (index,) = [
        i
        for i, event in enumerate(events)
        if event["type"] == kind and all(event.get(k) == v for k, v in fields.items())
    ]
    return index


# --- a gated tool ---------------------------------------------------------------------------


@pytest.mark.parametrize("waiting", [False, True], ids=["in the loop", "while it waits"])
async def test_a_gated_tool_runs_only_after_approve(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk()
    handed: list[EventStream] = []

    def approve(gate: Event) -> None:
        assert calls == []  # not before the decision
        assert runtime.replay("t").status == "awaiting-approval"
        handed.append(runtime.respond_to_approval(gate["id"], "approve", approver="alice"))

    stream = runtime.run_specialist("clerk", PAY_5, "t")
    events = await decide_at_gate(stream, approve, waiting=waiting)

    assert calls == [("pay", {"amount": 5})]
    (required,) = of_type(events, "approval-required")
    assert required == {
        "type": "approval-required",
        "id": GATE,
        "kind": "tool",
        "target": "pay",
        "payload": {"amount": 5},
        "resourceId": "acme",
        "threadId": "t",
        "correlationId": "scripted-tool-1",
        "expiresAt": None,
    }
    (decision,) = of_type(events, "approval-decision")
    assert decision == {
        "type": "approval-decision",
        "id": GATE,
        "outcome": {"outcome": "approve"},
        "approver": "alice",
    }
    call = position(events, "tool-invocation", state="call")
    result = position(events, "tool-invocation", state="result")
    gate, decided = position(events, "approval-required"), position(events, "approval-decision")
    assert call < gate < decided < result
    assert events[result]["result"] == {"done": "pay", "amount": 5}
    assert events[-1]["finishReason"] == "stop"
    # The stream at the gate took the rest of the run; the decision's own stream is empty.
    assert [event async for event in handed[0]] == []


async def test_reject_never_runs_the_handler_and_the_model_sees_the_feedback(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk()

    def reject(gate: Event) -> None:
        runtime.respond_to_approval(gate["id"], "reject", "not on a Friday", approver="bob")

    events = await decide_at_gate(
        runtime.run_specialist("clerk", PAY_5, "t"), reject, waiting=False
    )

    assert calls == []
    (decision,) = of_type(events, "approval-decision")
    assert decision["outcome"] == {"outcome": "reject"}
    assert decision["feedback"] == "not on a Friday"
    (result,) = of_type(events, "tool-invocation", state="result")
    assert result["isError"] is True
    assert result["result"] == {
        "error": {"message": "not on a Friday", "code": "APPROVAL_REJECTED"}
    }
    # The scripted model answers with the last result it saw: the rejection.
    assert "not on a Friday" in of_type(events, "text")[-1]["text"]
    assert events[-1]["finishReason"] == "stop"


async def test_revise_on_a_tool_returns_the_feedback_and_partial_without_running_it(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk()

    def revise(gate: Event) -> None:
        runtime.respond_to_approval(gate["id"], "revise", "pay 4", {"amount": 4})

    events = await decide_at_gate(runtime.run_specialist("clerk", PAY_5, "t"), revise, waiting=True)

    assert calls == []
    (decision,) = of_type(events, "approval-decision")
    assert decision["outcome"] == {"outcome": "revise", "partial": {"amount": 4}}
    assert "approver" not in decision
    (result,) = of_type(events, "tool-invocation", state="result")
    assert not result.get("isError")
    assert result["result"] == {
        "should_revise": True,
        "feedback": "pay 4",
        "partial": {"amount": 4},
    }
    assert events[-1]["finishReason"] == "stop"


# --- decisions that are refused -------------------------------------------------------------


async def paused(runtime: Runtime, thread: str = "t") -> list[Event]:
    """Run the clerk until its payment waits at the gate; leave it there."""
    events = []
    async for event in runtime.run_specialist("clerk", PAY_5, thread):
        events.append(event)
        if event["type"] == "approval-required":
            break
    check_stream(events, complete=False)
    return events


@pytest.mark.parametrize(
    "approval_id",
    [
        "appr:t/run-1/scripted-tool-9",
        "appr:t/run-2/scripted-tool-1",
        "appr:nowhere/run-1/x",
        "not-an-approval",
        "",
    ],
)
async def test_an_unknown_approval_id_is_a_typed_error(
    tmp_path: Path, open_clerk: Callable[..., Runtime], approval_id: str
) -> None:
    runtime = open_clerk(tmp_path)
    await paused(runtime)
    before = log_lines(tmp_path, "t")

    with pytest.raises(UnknownApprovalError) as caught:
        runtime.respond_to_approval(approval_id, "approve")

    assert isinstance(caught.value, LookupError)
    assert caught.value.code == "UNKNOWN_APPROVAL"
    assert log_lines(tmp_path, "t") == before  # a refused decision logs nothing
    assert runtime.replay("t").status == "awaiting-approval"


@pytest.mark.parametrize("second", ["approve", "reject"])
async def test_the_first_decision_wins(
    open_clerk: Callable[..., Runtime], calls: Calls, second: str
) -> None:
    runtime = open_clerk()
    before = await paused(runtime)
    await drain(runtime.respond_to_approval(GATE, "approve", approver="alice"), after=before)

    with pytest.raises(ApprovalAlreadyResolvedError) as caught:
        runtime.respond_to_approval(GATE, second, approver="mallory")  # type: ignore[arg-type]

    assert caught.value.code == "APPROVAL_ALREADY_RESOLVED"
    assert calls == [("pay", {"amount": 5})]
    (decision,) = of_type(runtime.replay("t").events, "approval-decision")
    assert decision["approver"] == "alice"


async def test_another_tenants_approval_reads_as_unknown(
    tmp_path: Path, open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    acme = open_clerk(tmp_path)
    before = await paused(acme)
    globex = open_clerk(tmp_path, tenant="globex")

    with pytest.raises(UnknownApprovalError):
        globex.respond_to_approval(GATE, "approve")

    assert calls == []
    assert acme.replay("t").status == "awaiting-approval"
    assert globex.thread_ids() == []
    events = await drain(acme.respond_to_approval(GATE, "approve"), after=before)
    assert events[-1]["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5})]


@pytest.mark.parametrize("outcome", ["maybe", "APPROVE", "", None, 1])
async def test_a_bad_outcome_is_invalid_input(
    tmp_path: Path, open_clerk: Callable[..., Runtime], outcome: Any
) -> None:
    runtime = open_clerk(tmp_path)
    await paused(runtime)
    before = log_lines(tmp_path, "t")

    with pytest.raises(InvalidInputError, match="approve, reject, revise"):
        runtime.respond_to_approval(GATE, outcome)

    assert log_lines(tmp_path, "t") == before
    events = await drain(
        runtime.respond_to_approval(GATE, "approve"), after=streamed(payloads(before))
    )
    assert events[-1]["finishReason"] == "stop"


async def test_the_approver_is_recorded_in_the_event_and_the_log(
    tmp_path: Path, open_clerk: Callable[..., Runtime]
) -> None:
    runtime = open_clerk(tmp_path)
    before = await paused(runtime)

    events = await drain(
        runtime.respond_to_approval(GATE, "reject", "no", approver="alice"), after=before
    )

    (decision,) = of_type(events, "approval-decision")

    assert decision["approver"] == "alice"
    (logged,) = [
        entry
        for entry in map(json.loads, log_lines(tmp_path, "t"))
        if entry["payload"]["type"] == "approval-decision"
    ]
    assert logged["payload"] == decision
    # Replayed by a runtime that never saw the decision happen.
    (replayed,) = of_type(open_clerk(tmp_path).replay("t").events, "approval-decision")
    assert replayed["approver"] == "alice"


# --- rules ----------------------------------------------------------------------------------


def amount_over_100(args: dict[str, Any], ctx: Any) -> bool:
    return bool(args["amount"] > 100)


def broken_predicate(args: dict[str, Any], ctx: Any) -> bool:
    raise KeyError("currency")


async def async_never(args: dict[str, Any], ctx: Any) -> bool:
    return False


async def is_gated(runtime: Runtime, calls: Calls, amount: int = 5) -> bool:
    """Run one payment; reject it if it is gated. True when it was gated (and never ran)."""
    prompt = json.dumps({"tool": "pay", "args": {"amount": amount}})

    def reject(gate: Event) -> None:
        runtime.respond_to_approval(gate["id"], "reject")

    events = await decide_at_gate(
        runtime.run_specialist("clerk", prompt, "t"), reject, waiting=False
    )
    gated = bool(of_type(events, "approval-required"))
    ran = [args for tool, args in calls if tool == "pay" and args["amount"] == amount]
    assert len(ran) == (0 if gated else 1)
    calls.clear()
    return gated


@pytest.mark.parametrize(
    ("rule", "amount", "gated"),
    [
        ("never", 5, False),
        ("always", 5, True),
        (amount_over_100, 500, True),
        (amount_over_100, 5, False),
        (broken_predicate, 5, True),
        (async_never, 5, False),
    ],
    ids=["never", "always", "predicate-true", "predicate-false", "predicate-raises", "async"],
)
async def test_rules(
    open_clerk: Callable[..., Runtime], calls: Calls, rule: Any, amount: int, gated: bool
) -> None:
    assert await is_gated(open_clerk(pay=rule), calls, amount) is gated


async def test_a_predicate_sees_the_args_and_the_call(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    seen: list[tuple[Any, Any]] = []

    def record(args: Any, ctx: Any) -> bool:
        seen.append((args, ctx))
        return False

    await is_gated(open_clerk(pay=record), calls, 7)

    ((args, ctx),) = seen
    assert args == {"amount": 7}
    assert (ctx["agent"], ctx["tool"], ctx["tenant"]) == ("clerk", "pay", "acme")
    assert ctx["thread_id"] == "t"


# Each level set against the one below it; the rest stay at their defaults.
LEVELS = {
    "policy floor gates": ({"approval_policies": ApprovalPolicies(tools="always")}, True),
    "policy floor runs": ({"approval_policies": ApprovalPolicies()}, False),
    "agent patch over policy": (
        {"approval_policies": ApprovalPolicies(tools="always"), "approval": {"tools": "never"}},
        False,
    ),
    "agent default inherits policy": (
        {"approval_policies": ApprovalPolicies(tools="always"), "approval": "default"},
        True,
    ),
    "agent patch gates": ({"approval": "always"}, True),
    "tool over agent": ({"approval": {"tools": "never"}, "pay": "always"}, True),
    "tool over agent, other way": ({"approval": {"tools": "always"}, "pay": "never"}, False),
    "agent tool_approvals over tool": (
        {"pay": "always", "tool_approvals": {"pay": "never"}},
        False,
    ),
    "override agent over tool_approvals": (
        {
            "tool_approvals": {"pay": "never"},
            "approval_overrides": ApprovalOverrides(agents={"clerk": {"tools": "always"}}),
        },
        True,
    ),
    "override tool over override agent": (
        {
            "pay": "never",
            "approval_overrides": ApprovalOverrides(
                agents={"clerk": {"tools": "always"}}, tools={"pay": "never"}
            ),
        },
        False,
    ),
    "override tool over tool_approvals": (
        {
            "tool_approvals": {"pay": "never"},
            "approval_overrides": ApprovalOverrides(tools={"pay": "always"}),
        },
        True,
    ),
}


@pytest.mark.parametrize(("options", "gated"), LEVELS.values(), ids=LEVELS.keys())
async def test_the_most_specific_level_wins(
    open_clerk: Callable[..., Runtime], calls: Calls, options: dict[str, Any], gated: bool
) -> None:
    assert await is_gated(open_clerk(**{"pay": "default", **options}), calls) is gated


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (ApprovalOverrides(agents={"cashier": "always"}), "'cashier'"),
        (ApprovalOverrides(tools={"refund": "always"}), "'refund'"),
    ],
)
def test_overrides_naming_unknown_agents_or_tools_are_spec_errors(
    overrides: ApprovalOverrides, named: str
) -> None:
    with pytest.raises(UnknownApprovalTargetError, match=named) as caught:
        make_spec(approval_overrides=overrides)

    assert isinstance(caught.value, SpecError)


# --- deadlines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeouts",
    [
        {"approval_timeout": 0.05},
        {"approval_timeout": HOUR, "agent_timeout": 0.05},
        {"agent_timeout": 0.05},
    ],
    ids=["runtime", "agent over runtime", "agent"],
)
async def test_a_gate_nobody_decides_is_rejected_at_its_deadline(
    open_clerk: Callable[..., Runtime], calls: Calls, timeouts: dict[str, float]
) -> None:
    runtime = open_clerk(**timeouts)
    started = time.time_ns() // 1_000_000

    # Nobody decides: the stream must end by itself.
    events = await drain(runtime.run_specialist("clerk", PAY_5, "t"))

    assert calls == []
    (required,) = of_type(events, "approval-required")
    assert required["expiresAt"] >= started + 50
    (decision,) = of_type(events, "approval-decision")
    assert decision["outcome"] == {"outcome": "reject"}
    assert decision["reason"] == "timeout"
    assert "approver" not in decision
    (result,) = of_type(events, "tool-invocation", state="result")
    assert result["result"]["error"]["code"] == "APPROVAL_REJECTED"
    assert events[-1]["finishReason"] == "stop"
    with pytest.raises(ApprovalAlreadyResolvedError):
        runtime.respond_to_approval(GATE, "approve")


async def test_the_agents_longer_timeout_wins_over_the_runtimes(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(approval_timeout=0.05, agent_timeout=HOUR)
    started = time.time_ns() // 1_000_000

    before = await paused(runtime)

    assert before[-1]["expiresAt"] >= started + 3_600_000
    await drain(runtime.respond_to_approval(GATE, "approve"), after=before)
    assert calls == [("pay", {"amount": 5})]


async def test_a_decision_after_the_deadline_finds_it_resolved_even_with_no_stream_waiting(
    open_clerk: Callable[..., Runtime], calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = open_clerk(approval_timeout=HOUR)
    prompt = json.dumps(
        {
            "script": [
                {"tool": "pay", "args": {"amount": 5}},
                {"tool": "note", "args": {"text": "x"}},
            ]
        }
    )
    async for event in runtime.run_specialist("clerk", prompt, "t"):
        if event["type"] == "approval-required":
            break
    # The hour passes: the runtime reads the clock, and the engine decides with that time.
    monkeypatch.setattr(runtime_module, "_now_ms", lambda: event["expiresAt"])

    with pytest.raises(ApprovalAlreadyResolvedError, match=r"runtime\.resume\('t'\)"):
        runtime.respond_to_approval(GATE, "approve", approver="late")

    (decision,) = of_type(runtime.replay("t").events, "approval-decision")
    assert (decision["outcome"], decision["reason"]) == ({"outcome": "reject"}, "timeout")
    # The run goes on past the rejected payment; resume runs whatever it still waits for.
    events = await drain(runtime.resume("t"), after=streamed(runtime.replay("t").events))
    assert events[-1]["finishReason"] == "stop"
    assert calls == [("note", {"text": "x"})]
    assert runtime.replay("t").status == "idle"


# --- leaving, cancelling, resuming ----------------------------------------------------------


@pytest.mark.parametrize("waiting", [False, True], ids=["in the loop", "while it waits"])
async def test_cancel_at_a_gate_ends_the_run_cancelled(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk()
    stream = runtime.run_specialist("clerk", PAY_5, "t")

    events = await decide_at_gate(stream, lambda gate: stream.cancel(), waiting=waiting)

    assert events[-1]["type"] == "finish"
    assert events[-1]["finishReason"] == "cancelled"
    assert calls == []
    replay = runtime.replay("t")
    assert replay.status == "idle"
    assert replay.snapshot["lastRun"] == {"runId": "run-1", "outcome": "cancelled"}
    with pytest.raises(UnknownApprovalError):
        runtime.respond_to_approval(GATE, "approve")


@pytest.mark.parametrize("async_tools", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kept", [False, True], ids=["dropped", "kept in a variable"])
async def test_leaving_the_loop_at_a_gate_leaves_the_run_paused(
    open_clerk: Callable[..., Runtime], calls: Calls, kept: bool, async_tools: bool
) -> None:
    # With async tools the event loop closes the left stream while the decided run goes on
    # (a tool call per loop turn); closing it must not cancel that run.
    runtime = open_clerk(async_tools=async_tools)
    prompt = json.dumps(
        {
            "script": [
                {"tool": "pay", "args": {"amount": 5}},
                {"tool": "note", "args": {"text": "ok"}},
            ]
        }
    )
    kept_stream = runtime.run_specialist("clerk", prompt, "t") if kept else None
    seen = []
    async for event in kept_stream or runtime.run_specialist("clerk", prompt, "t"):
        seen.append(event)
        if event["type"] == "approval-required":
            break

    replay = runtime.replay("t")
    assert replay.status == "awaiting-approval"
    assert replay.snapshot["lastRun"] is None
    assert not of_type(replay.events, "finish")
    events = await drain(runtime.respond_to_approval(GATE, "approve"), after=seen)
    assert events[0]["type"] == "approval-decision"
    assert events[-1]["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5}), ("note", {"text": "ok"})]


async def test_resume_at_a_gate_waits_for_the_decision(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk()
    before = await paused(runtime)
    resumed = asyncio.create_task(drain(runtime.resume("t"), after=before))
    await asyncio.sleep(0)  # one turn of the loop: the resumed stream is now at the gate

    handed = runtime.respond_to_approval(GATE, "approve", approver="alice")

    events = await resumed
    assert [event async for event in handed] == []
    assert events[0] == {**events[0], "type": "approval-decision", "approver": "alice"}
    assert events[-1]["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5})]


async def test_resume_at_a_gate_ends_at_its_deadline(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(approval_timeout=0.05)
    before = await paused(runtime)

    events = await drain(runtime.resume("t"), after=before)

    assert events[0]["type"] == "approval-decision"
    assert events[0]["reason"] == "timeout"
    assert events[-1]["finishReason"] == "stop"
    assert calls == []


# --- a pause that outlives its process ------------------------------------------------------


async def pause_in_process_a(log_path: Path, calls_file: Path, ending: str) -> str:
    """Start process A, read the approval id it prints at the gate, and let it exit or kill
    it. Returns the approval id."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        process_a.__file__,
        str(log_path),
        str(calls_file),
        "hang" if ending == "is killed" else "exit",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    if ending == "is killed":
        child.send_signal(signal.SIGKILL)
    _, err = await asyncio.wait_for(child.communicate(), timeout=30)
    assert line, err.decode()
    assert child.returncode == (-signal.SIGKILL if ending == "is killed" else 0), err.decode()
    return line.decode().strip()


@pytest.mark.parametrize("ending", ["exits", "is killed"])
@pytest.mark.parametrize("continue_with", ["the decision's stream", "resume"])
async def test_a_run_paused_in_another_process_is_decided_and_finished_here(
    tmp_path: Path, ending: str, continue_with: str
) -> None:
    calls_file = tmp_path / "calls.jsonl"
    approval_id = await pause_in_process_a(tmp_path, calls_file, ending)
    thread = process_a.THREAD
    before = log_lines(tmp_path, thread)
    assert process_a.read_calls(calls_file) == [["note", {"text": "checked"}]]
    runtime = process_a.open_runtime(tmp_path, calls_file)
    try:
        assert runtime.replay(thread).status == "awaiting-approval"
        streamed_before = streamed(payloads(before))
        assert approval_id == streamed_before[-1]["id"]

        decided = runtime.respond_to_approval(approval_id, "approve", approver="alice")
        if continue_with == "resume":
            del decided  # dropped unread: resume re-issues what the run waits for
            streamed_before += of_type(runtime.replay(thread).events, "approval-decision")
            events = await drain(runtime.resume(thread), after=streamed_before)
        else:
            events = await drain(decided, after=streamed_before)
    finally:
        runtime.close()

    assert events[-1]["finishReason"] == "stop"
    # Every tool ran once: the note before the gate in A, the rest here.
    assert process_a.read_calls(calls_file) == [
        ["note", {"text": "checked"}],
        ["pay", {"amount": 120}],
        ["note", {"text": "paid"}],
    ]
    after = log_lines(tmp_path, thread)
    assert after[: len(before)] == before  # nothing A logged was rewritten or repeated
    new = payloads(after[len(before) :])
    assert new[0]["type"] == "approval-decision"
    assert new[0]["approver"] == "alice"
    assert not of_type(new, "run-start")
    # Only new model turns: as many step-starts as this process streamed, none of A's again.
    assert len(of_type(new, "step-start")) == len(of_type(events, "step-start"))
    assert [e["step"] for e in of_type(payloads(after), "step-start")] == [1, 2, 3, 4]
    calls_logged = [e["toolInvocationId"] for e in of_type(new, "tool-invocation", state="call")]
    assert calls_logged == ["scripted-tool-3"]  # the pay call (tool 2) is answered, not made again
    assert [json.loads(line)["seq"] for line in after] == list(range(1, len(after) + 1))
