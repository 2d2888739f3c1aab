"""Approval gates through the runtime: a gated tool waits for a human, decisions and their
typed errors, the rule hierarchy, deadlines, pauses that outlive their process, and the
two-person rule (a gate that needs several different approvers).

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _approval_process as process_a
import pytest
from streams import check_stream, drain, finish, of_type, terminal

from flowai_harness import (
    ApprovalOverrides,
    ApprovalPolicies,
    EventStream,
    RequireApprovers,
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
    ApproverAlreadyApprovedError,
    ApproverRequiredError,
    InvalidInputError,
    UnknownApprovalError,
    UnknownApprovalTargetError,
)

Event = dict[str, Any]
Calls = list[tuple[str, dict[str, Any]]]
OpenRuntime = Callable[..., Runtime]
Decide = Callable[[Event], Awaitable[Any]]

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


async def decide_at_gate(stream: EventStream, decide: Decide, *, waiting: bool) -> list[Event]:
    """Drain ``stream``, awaiting ``decide(approval-required event)`` at its gate: in the loop
    body (the seed's way), or (``waiting``) from another task once the stream waits at the
    gate. A run that meets no gate is drained without a decision."""
    events: list[Event] = []
    if not waiting:
        async for event in stream:
            events.append(event)
            if event["type"] == "approval-required":
                await decide(event)
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
    if gate.done():
        await decide(gate.result())
    else:
        gate.cancel()
    await consumer
    check_stream(events)
    return events


def log_lines(root: Path, thread: str, tenant: str = "acme") -> list[bytes]:
    return (root / tenant / f"{thread}.jsonl").read_bytes().splitlines()


def payloads(lines: list[bytes]) -> list[Event]:
    return [json.loads(line)["payload"] for line in lines]


def streamed(events: list[Event]) -> list[Event]:
    """Logged events as a stream showed them (without the internal run-start and
    model-response)."""
    return [event for event in events if event["type"] not in ("run-start", "model-response")]


async def rest_of_run(runtime: Runtime, approval_id: str, *args: Any, **kw: Any) -> EventStream:
    """Decide ``approval_id`` when no stream of this process waits at its gate: the decision
    gives the stream of the rest of the run."""
    stream = await runtime.respond_to_approval(approval_id, *args, **kw)
    assert isinstance(stream, EventStream), stream
    return stream


def position(events: list[Event], kind: str, **fields: Any) -> int:
    (index,) = [
        i
        for i, event in enumerate(events)
        if event["type"] == kind and all(event.get(k) == v for k, v in fields.items())
    ]
    return index


# --- a gated tool ---------------------------------------------------------------------------


WAITING = pytest.mark.parametrize("waiting", [False, True], ids=["in the loop", "while it waits"])


@WAITING
async def test_a_gated_tool_runs_only_after_approve(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk()
    answers: list[EventStream | None] = []

    async def approve(gate: Event) -> None:
        assert calls == []  # not before the decision
        assert runtime.replay("t").status == "awaiting-approval"
        answers.append(
            await runtime.respond_to_approval(gate["data"]["id"], "approve", approver="alice")
        )

    stream = runtime.run_specialist("clerk", PAY_5, "t")
    events = await decide_at_gate(stream, approve, waiting=waiting)

    assert calls == [("pay", {"amount": 5})]
    (required,) = of_type(events, "approval-required")
    assert required == {
        "type": "approval-required",
        "data": {
            "id": GATE,
            "kind": "tool",
            "target": "pay",
            "payload": {"amount": 5},
            "resourceId": "acme",
            "threadId": "t",
            "correlationId": "scripted-tool-1",
            "expiresAt": None,
            "agent": "clerk",
        },
    }
    (decision,) = of_type(events, "approval-decision")
    assert decision == {
        "type": "approval-decision",
        "data": {"id": GATE, "outcome": {"outcome": "approve"}, "approver": "alice"},
    }
    call = position(events, "tool-invocation", state="call")
    result = position(events, "tool-invocation", state="result")
    gate, decided = position(events, "approval-required"), position(events, "approval-decision")
    assert call < gate < decided < result
    assert events[result]["result"] == {"done": "pay", "amount": 5}
    assert finish(events)["finishReason"] == "stop"
    # The stream at the gate took the rest of the run: the decision hands back no stream.
    assert answers == [None]


@WAITING
async def test_reject_never_runs_the_handler_and_the_model_sees_the_feedback(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk()

    async def reject(gate: Event) -> None:
        handed = await runtime.respond_to_approval(
            gate["data"]["id"], "reject", "not on a Friday", approver="bob"
        )
        assert handed is None  # this stream goes on

    events = await decide_at_gate(
        runtime.run_specialist("clerk", PAY_5, "t"), reject, waiting=waiting
    )

    assert calls == []
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"] == {
        "id": GATE,
        "outcome": {"outcome": "reject"},
        "feedback": "not on a Friday",
        "approver": "bob",
    }
    (result,) = of_type(events, "tool-invocation", state="result")
    assert result["isError"] is True
    assert result["result"] == {
        "error": {"message": "the call was rejected: not on a Friday", "code": "APPROVAL_REJECTED"}
    }
    # The scripted model answers with the last result it saw: the rejection.
    assert "not on a Friday" in of_type(events, "text")[-1]["text"]
    assert finish(events)["finishReason"] == "stop"


@WAITING
async def test_revise_on_a_tool_is_a_rejection_with_the_feedback_and_never_runs_it(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk()

    async def revise(gate: Event) -> None:
        await runtime.respond_to_approval(gate["data"]["id"], "revise", "pay 4", {"amount": 4})

    events = await decide_at_gate(
        runtime.run_specialist("clerk", PAY_5, "t"), revise, waiting=waiting
    )

    assert calls == []  # neither the call as made nor the partial ran
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"]["outcome"] == {"outcome": "revise", "partial": {"amount": 4}}
    assert decision["data"]["feedback"] == "pay 4"
    assert "approver" not in decision["data"]
    # The seed: for tools, revise counts as reject.
    (result,) = of_type(events, "tool-invocation", state="result")
    assert result["isError"] is True
    assert result["result"] == {
        "error": {"message": "the call was rejected: pay 4", "code": "APPROVAL_REJECTED"}
    }
    assert finish(events)["finishReason"] == "stop"


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
        await runtime.respond_to_approval(approval_id, "approve")

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
    await drain(await rest_of_run(runtime, GATE, "approve", approver="alice"), after=before)

    with pytest.raises(ApprovalAlreadyResolvedError) as caught:
        await runtime.respond_to_approval(GATE, second, approver="mallory")  # type: ignore[arg-type]

    assert caught.value.code == "APPROVAL_ALREADY_RESOLVED"
    assert calls == [("pay", {"amount": 5})]
    (decision,) = of_type(runtime.replay("t").events, "approval-decision")
    assert decision["data"]["approver"] == "alice"


async def test_another_tenants_approval_reads_as_unknown(
    tmp_path: Path, open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    acme = open_clerk(tmp_path)
    before = await paused(acme)
    globex = open_clerk(tmp_path, tenant="globex")

    with pytest.raises(UnknownApprovalError):
        await globex.respond_to_approval(GATE, "approve")

    assert calls == []
    assert acme.replay("t").status == "awaiting-approval"
    assert globex.thread_ids() == []
    events = await drain(await rest_of_run(acme, GATE, "approve"), after=before)
    assert finish(events)["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5})]


@pytest.mark.parametrize("outcome", ["maybe", "APPROVE", "", None, 1])
async def test_a_bad_outcome_is_invalid_input(
    tmp_path: Path, open_clerk: Callable[..., Runtime], outcome: Any
) -> None:
    runtime = open_clerk(tmp_path)
    await paused(runtime)
    before = log_lines(tmp_path, "t")

    with pytest.raises(InvalidInputError, match="approve, reject, revise"):
        await runtime.respond_to_approval(GATE, outcome)

    assert log_lines(tmp_path, "t") == before
    events = await drain(
        await rest_of_run(runtime, GATE, "approve"), after=streamed(payloads(before))
    )
    assert finish(events)["finishReason"] == "stop"


async def test_the_approver_is_recorded_in_the_event_and_the_log(
    tmp_path: Path, open_clerk: Callable[..., Runtime]
) -> None:
    runtime = open_clerk(tmp_path)
    before = await paused(runtime)

    events = await drain(
        await rest_of_run(runtime, GATE, "reject", "no", approver="alice"), after=before
    )

    (decision,) = of_type(events, "approval-decision")

    assert decision["data"]["approver"] == "alice"
    (logged,) = [
        entry
        for entry in map(json.loads, log_lines(tmp_path, "t"))
        if entry["payload"]["type"] == "approval-decision"
    ]
    assert logged["payload"] == decision
    # Replayed by a runtime that never saw the decision happen.
    (replayed,) = of_type(open_clerk(tmp_path).replay("t").events, "approval-decision")
    assert replayed["data"]["approver"] == "alice"


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

    async def reject(gate: Event) -> None:
        await runtime.respond_to_approval(gate["data"]["id"], "reject")

    # Decided from another task: what these tests check is the rule, not the stream's way of
    # going on after a decision made in its loop body (the gated-tool tests above do that).
    events = await decide_at_gate(
        runtime.run_specialist("clerk", prompt, "t"), reject, waiting=True
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
    # The seed's {kind, target, tenant}, and the call's agent, tool and thread.
    assert (ctx["kind"], ctx["target"], ctx["tenant"]) == ("tool", "pay", "acme")
    assert (ctx["agent"], ctx["tool"], ctx["thread_id"]) == ("clerk", "pay", "t")


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

# The decision a deadline makes: a rejection with no approver.
TIMED_OUT = {
    "id": GATE,
    "outcome": {"outcome": "reject"},
    "feedback": "no decision before the approval deadline",
    "reason": "timeout",
}


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
    assert required["data"]["expiresAt"] >= started + 50
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"] == TIMED_OUT
    (result,) = of_type(events, "tool-invocation", state="result")
    assert result["result"] == {
        "error": {
            "message": "the call was rejected: no decision before the approval deadline",
            "code": "APPROVAL_REJECTED",
        }
    }
    assert finish(events)["finishReason"] == "stop"
    with pytest.raises(ApprovalAlreadyResolvedError):
        await runtime.respond_to_approval(GATE, "approve")


async def test_the_agents_longer_timeout_wins_over_the_runtimes(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(approval_timeout=0.05, agent_timeout=HOUR)
    started = time.time_ns() // 1_000_000

    before = await paused(runtime)

    assert before[-1]["data"]["expiresAt"] >= started + 3_600_000
    await drain(await rest_of_run(runtime, GATE, "approve"), after=before)
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
    # The hour passes: the runtime checks the clock, and stamps the engine's inputs with it
    # (the engine decides with that time).
    expires_at = event["data"]["expiresAt"]
    monkeypatch.setattr(runtime_module, "now_ms", lambda: expires_at)
    monkeypatch.setattr(runtime._driver, "clock", lambda: expires_at)

    with pytest.raises(ApprovalAlreadyResolvedError, match=r"runtime\.resume\('t'\)"):
        await runtime.respond_to_approval(GATE, "approve", approver="late")

    (decision,) = of_type(runtime.replay("t").events, "approval-decision")
    assert decision["data"] == TIMED_OUT
    # The run goes on past the rejected payment; resume runs whatever it still waits for.
    events = await drain(runtime.resume("t"), after=streamed(runtime.replay("t").events))
    assert finish(events)["finishReason"] == "stop"
    assert calls == [("note", {"text": "x"})]
    assert runtime.replay("t").status == "idle"


# --- leaving, cancelling, resuming ----------------------------------------------------------


@WAITING
async def test_cancel_at_a_gate_ends_the_run_cancelled(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk()
    stream = runtime.run_specialist("clerk", PAY_5, "t")

    async def cancel(gate: Event) -> None:
        stream.cancel()

    events = await decide_at_gate(stream, cancel, waiting=waiting)

    assert of_type(events, "approval-required")
    assert terminal(events)["type"] == "finish"
    assert finish(events)["finishReason"] == "cancelled"
    assert events[-1] == {
        "type": "tool-agent",
        "agentName": "clerk",
        "toolInvocationId": "run-1",
        "state": "result",
        "result": None,
    }
    assert calls == []
    assert not of_type(events, "tool-invocation", state="result")
    replay = runtime.replay("t")
    assert replay.status == "idle"
    assert replay.snapshot["lastRun"] == {"runId": "run-1", "outcome": "cancelled"}
    with pytest.raises(UnknownApprovalError):
        await runtime.respond_to_approval(GATE, "approve")


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
    events = await drain(await rest_of_run(runtime, GATE, "approve"), after=seen)
    assert events[0]["type"] == "approval-decision"
    assert finish(events)["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5}), ("note", {"text": "ok"})]


async def test_resume_at_a_gate_waits_for_the_decision(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk()
    before = await paused(runtime)
    resumed = asyncio.create_task(drain(runtime.resume("t"), after=before))
    await asyncio.sleep(0)  # one turn of the loop: the resumed stream is now at the gate

    handed = await runtime.respond_to_approval(GATE, "approve", approver="alice")

    events = await resumed
    assert handed is None  # the resumed stream waits at the gate and goes on
    assert events[0] == {
        "type": "approval-decision",
        "data": {"id": GATE, "outcome": {"outcome": "approve"}, "approver": "alice"},
    }
    assert finish(events)["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5})]


async def test_resume_at_a_gate_ends_at_its_deadline(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(approval_timeout=0.05)
    before = await paused(runtime)

    events = await drain(runtime.resume("t"), after=before)

    assert events[0] == {"type": "approval-decision", "data": TIMED_OUT}
    assert finish(events)["finishReason"] == "stop"
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
        assert approval_id == streamed_before[-1]["data"]["id"]

        decided = await rest_of_run(runtime, approval_id, "approve", approver="alice")
        if continue_with == "resume":
            del decided  # dropped unread: resume re-issues what the run waits for
            streamed_before += of_type(runtime.replay(thread).events, "approval-decision")
            events = await drain(runtime.resume(thread), after=streamed_before)
        else:
            events = await drain(decided, after=streamed_before)
    finally:
        runtime.close()

    assert finish(events)["finishReason"] == "stop"
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
    assert new[0]["data"]["approver"] == "alice"
    assert not of_type(new, "run-start")
    # Only new model turns: as many step-starts as this process streamed, none of A's again,
    # each with its logged model response.
    assert len(of_type(new, "step-start")) == len(of_type(events, "step-start"))
    assert len(of_type(new, "model-response")) == len(of_type(new, "step-start"))
    assert [e["step"] for e in of_type(payloads(after), "step-start")] == [1, 2, 3, 4]
    calls_logged = [e["toolInvocationId"] for e in of_type(new, "tool-invocation", state="call")]
    assert calls_logged == ["scripted-tool-3"]  # the pay call (tool 2) is answered, not made again
    assert [json.loads(line)["seq"] for line in after] == list(range(1, len(after) + 1))


# --- the two-person rule --------------------------------------------------------------------


def progress(approver: str, approvals: int, required: int = 2) -> Event:
    return {
        "type": "approval-progress",
        "data": {
            "id": GATE,
            "approver": approver,
            "approvals": approvals,
            "approvalsRequired": required,
        },
    }


def quorum_decision(approver: str, outcome: str = "approve", approvals: int = 2) -> Event:
    return {
        "type": "approval-decision",
        "data": {
            "id": GATE,
            "outcome": {"outcome": outcome},
            "approver": approver,
            "approvals": approvals,
            "approvalsRequired": 2,
        },
    }


def approve_as(runtime: Runtime, approver: str) -> Decide:
    async def approve(event: Event) -> Any:
        return await runtime.respond_to_approval(GATE, "approve", approver=approver)

    return approve


async def decided_in_the_loop(
    runtime: Runtime, at: dict[str, Decide], *, leave_at: str | None = None
) -> list[Event]:
    """The clerk's payment in thread t, awaiting ``at[type](event)`` in the loop body at each
    event of that type; leaves the loop after the first ``leave_at`` event (the run stays
    paused), else drains it."""
    events = []
    async for event in runtime.run_specialist("clerk", PAY_5, "t"):
        events.append(event)
        if event["type"] in at:
            await at[event["type"]](event)
        if event["type"] == leave_at:
            break
    check_stream(events, complete=leave_at is None)
    return events


@WAITING
async def test_two_approvers_open_the_gate_and_the_stream_shows_the_progress(
    open_clerk: Callable[..., Runtime], calls: Calls, waiting: bool
) -> None:
    runtime = open_clerk(pay=RequireApprovers(2))
    answers: list[EventStream | None] = []

    async def decide(event: Event) -> None:
        approver = {"approval-required": "alice", "approval-progress": "bob"}[event["type"]]
        assert calls == []  # nobody's approve ran it yet
        assert runtime.replay("t").status == "awaiting-approval"
        answers.append(await runtime.respond_to_approval(GATE, "approve", approver=approver))

    if waiting:
        # Decided from another task while the stream waits at the gate, each in its turn.
        events: list[Event] = []
        asks: asyncio.Queue[Event] = asyncio.Queue()

        async def consume() -> None:
            async for event in runtime.run_specialist("clerk", PAY_5, "t"):
                events.append(event)
                if event["type"] in ("approval-required", "approval-progress"):
                    asks.put_nowait(event)

        consumer = asyncio.create_task(consume())
        for _ in range(2):
            await decide(await asks.get())
        await consumer
        check_stream(events)
    else:
        events = await decided_in_the_loop(
            runtime, {"approval-required": decide, "approval-progress": decide}
        )

    assert calls == [("pay", {"amount": 5})]
    assert answers == [None, None]  # the stream at the gate went on both times
    (required,) = of_type(events, "approval-required")
    assert required["data"]["approvalsRequired"] == 2
    gate = position(events, "approval-required")
    assert events[gate + 1 : gate + 3] == [progress("alice", 1), quorum_decision("bob")]
    assert finish(events)["finishReason"] == "stop"


async def test_both_approvers_deciding_in_one_loop_turn_show_in_order(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(pay=RequireApprovers(2))

    async def both(gate: Event) -> None:
        # Both before the stream gets back to the gate: neither step may be lost.
        for approver in ("alice", "bob"):
            assert await approve_as(runtime, approver)(gate) is None

    events = await decided_in_the_loop(runtime, {"approval-required": both})

    gate = position(events, "approval-required")
    assert events[gate + 1 : gate + 3] == [progress("alice", 1), quorum_decision("bob")]
    assert calls == [("pay", {"amount": 5})]


async def test_a_repeat_or_nameless_approver_is_refused_and_logs_nothing(
    tmp_path: Path, open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(tmp_path, pay=RequireApprovers(2))
    before = await paused(runtime)
    await runtime.respond_to_approval(GATE, "approve", approver="alice")
    logged = log_lines(tmp_path, "t")

    with pytest.raises(ApproverAlreadyApprovedError, match="another person must approve") as twice:
        await runtime.respond_to_approval(GATE, "approve", approver="alice")
    with pytest.raises(ApproverRequiredError, match="must name its approver") as nameless:
        await runtime.respond_to_approval(GATE, "approve")
    with pytest.raises(ApproverRequiredError):
        await runtime.respond_to_approval(GATE, "reject", "no")

    assert twice.value.code == "APPROVER_ALREADY_APPROVED"
    assert nameless.value.code == "APPROVER_REQUIRED"
    assert isinstance(nameless.value, InvalidInputError)
    assert log_lines(tmp_path, "t") == logged
    assert calls == []
    assert runtime.replay("t").snapshot["run"]["pending"]["approval"]["approvers"] == ["alice"]
    events = await drain(
        await rest_of_run(runtime, GATE, "approve", approver="bob"),
        after=[*before, progress("alice", 1)],
    )
    assert events[0] == quorum_decision("bob")
    assert calls == [("pay", {"amount": 5})]


@pytest.mark.parametrize("rejecter", ["bob", "alice"])
async def test_a_reject_after_one_approve_closes_the_gate(
    open_clerk: Callable[..., Runtime], calls: Calls, rejecter: str
) -> None:
    runtime = open_clerk(pay=RequireApprovers(2))

    async def reject(event: Event) -> None:
        await runtime.respond_to_approval(GATE, "reject", "too much", approver=rejecter)

    events = await decided_in_the_loop(
        runtime, {"approval-required": approve_as(runtime, "alice"), "approval-progress": reject}
    )

    assert calls == []
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"] == {
        **quorum_decision(rejecter, "reject", approvals=1)["data"],
        "feedback": "too much",
    }
    (result,) = of_type(events, "tool-invocation", state="result")
    assert result["result"]["error"]["code"] == "APPROVAL_REJECTED"
    with pytest.raises(ApprovalAlreadyResolvedError):
        await runtime.respond_to_approval(GATE, "approve", approver="carol")


async def test_the_deadline_rejects_a_partly_approved_gate(
    open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    runtime = open_clerk(pay=RequireApprovers(2), approval_timeout=0.05)

    # Only alice approves; nobody else does, so the stream must end by itself.
    events = await decided_in_the_loop(runtime, {"approval-required": approve_as(runtime, "alice")})

    assert calls == []
    assert of_type(events, "approval-progress") == [progress("alice", 1)]
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"] == {**TIMED_OUT, "approvals": 1, "approvalsRequired": 2}
    assert finish(events)["finishReason"] == "stop"


async def test_a_second_runtime_on_the_log_completes_the_quorum(
    tmp_path: Path, open_clerk: Callable[..., Runtime], calls: Calls
) -> None:
    first = open_clerk(tmp_path, pay=RequireApprovers(2))
    # The first runtime leaves at the progress; the run stays paused with alice counted.
    seen = await decided_in_the_loop(
        first, {"approval-required": approve_as(first, "alice")}, leave_at="approval-progress"
    )
    assert seen[-1] == progress("alice", 1)
    first.close()

    # Another runtime on the same log_path knows alice approved, from the log alone.
    second = open_clerk(tmp_path, pay=RequireApprovers(2))
    replay = second.replay("t")
    assert replay.status == "awaiting-approval"
    assert replay.snapshot["run"]["pending"]["approval"] == {
        "id": GATE,
        "expiresAt": None,
        "approvalsRequired": 2,
        "approvers": ["alice"],
    }
    with pytest.raises(ApproverAlreadyApprovedError):
        await second.respond_to_approval(GATE, "approve", approver="alice")
    events = await drain(await rest_of_run(second, GATE, "approve", approver="bob"), after=seen)

    assert events[0] == quorum_decision("bob")
    assert finish(events)["finishReason"] == "stop"
    assert calls == [("pay", {"amount": 5})]
    logged = payloads(log_lines(tmp_path, "t"))
    assert [e["type"] for e in logged if e["type"].startswith("approval-")] == [
        "approval-required",
        "approval-progress",
        "approval-decision",
    ]


def test_a_quorum_rule_is_declared_wherever_a_rule_goes() -> None:
    spec = make_spec(
        pay=RequireApprovers(2),
        approval={"plans": {"kind": "always", "approvers_required": 3}},
        tool_approvals={"note": RequireApprovers(4)},
        approval_policies=ApprovalPolicies(plans=RequireApprovers(5)),
        approval_overrides=ApprovalOverrides(
            agents={"clerk": {"tools": RequireApprovers(6)}},
            tools={"clerk": {"pay": RequireApprovers(7)}, "note": RequireApprovers(8)},
        ),
    )

    # The engine compiled it: every level carries {"approvers": n}.
    compiled = json.loads(spec.compiled)
    (clerk,) = compiled["agents"]
    assert [tool["approval"] for tool in compiled["tools"]] == [{"approvers": 2}, "never"]
    assert clerk["approval"] == {"plans": {"approvers": 3}, "tools": "default"}
    assert clerk["tool_approvals"] == {"note": {"approvers": 4}}
    assert compiled["approvals"] == {
        "policies": {"plans": {"approvers": 5}, "tools": "never"},
        "overrides": {
            "agents": {"clerk": {"plans": "default", "tools": {"approvers": 6}}},
            "tools": {"note": {"approvers": 8}},
            "agent_tools": {"clerk": {"pay": {"approvers": 7}}},
        },
    }
    # The agent's prompt shows the rule that applies to each tool.
    assert "| pay | Pay an invoice. | always (7 approvers) |" in clerk["prompt"]
