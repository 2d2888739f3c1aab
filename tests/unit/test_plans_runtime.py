"""Typed plans through the runtime: role-scoped plan tools, storing and validating a plan (a
draft), its lifecycle at the executor's approval gate, and the action dispatcher with
hydrated references.

A coordinator hands scripted work to a planner, an executor and specialists (``call_agent``
with a nested script), so one stream shows a plan from storePlan to executed. Declaring plans
(TaggedUnion, define_plan) is tested in test_plans.py; the transition table in the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from streams import check_stream, drain, finish, of_type

from flowai_harness import (
    ApprovalOverrides,
    ApprovalPolicies,
    EventStream,
    RequireApprovers,
    Runtime,
    RuntimeSpec,
    TaggedUnion,
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_reference,
    define_runtime,
    define_specialist,
)
from flowai_harness.errors import ApprovalAlreadyResolvedError
from flowai_harness.references import ReferenceHandle

Event = dict[str, Any]
Dispatched = list[tuple[list[dict[str, Any]], dict[str, Any]]]
OpenRuntime = Callable[..., Runtime]


class Product(pydantic.BaseModel):
    sku: str
    name: str
    on_hand: int


class ReorderProducts(pydantic.BaseModel):
    kind: Literal["reorder_products"]
    products: ReferenceHandle
    quantity: int = pydantic.Field(ge=1)


class HoldInventory(pydantic.BaseModel):
    kind: Literal["hold_inventory"]
    sku: str
    reason: str


class RestockPlan(pydantic.BaseModel):
    reason: str
    actions: list[TaggedUnion(ReorderProducts, HoldInventory)]  # type: ignore[valid-type]


# A value the model never sees: its glimpse is only a count.
SECRET = "supplier price 4.17 per kg"
STOCK = [
    {"sku": "A-100", "name": f"Espresso beans ({SECRET})", "on_hand": 4},
    {"sku": "C-007", "name": "Cold brew concentrate", "on_hand": 0},
]
PRODUCTS = define_reference(
    "product_set", list[Product], glimpse=lambda value: {"count": len(value)}
)
RESTOCK = define_plan("restock", RestockPlan)
DEADLINE_FEEDBACK = "no decision before the approval deadline"


def make_spec(
    *,
    planner_approval: Any = "default",
    executor_approval: Any = "default",
    executor_timeout: float | None = None,
    **runtime_options: Any,
) -> RuntimeSpec:
    agents = [
        define_coordinator(
            "boss",
            model="claude-sonnet-4-6",
            prompt="Route planning, execution and questions.",
            routes=["planner", "executor", "analyst", "auditor"],
        ),
        define_planner(
            "planner",
            model="claude-sonnet-4-6",
            prompt="Plan restocks.",
            plan=RESTOCK,
            approval=planner_approval,
        ),
        define_executor(
            "executor",
            model="claude-haiku-4-5",
            prompt="Execute approved plans.",
            plan=RESTOCK,
            approval=executor_approval,
            approval_timeout=executor_timeout,
        ),
        define_specialist("analyst", model="claude-haiku-4-5", prompt="Answer questions."),
        # A specialist has no role tools; the plans toolkit lets it read plans.
        define_specialist(
            "auditor", model="claude-haiku-4-5", prompt="Check plans.", toolkits=["plans"]
        ),
    ]
    # No plans=[RESTOCK]: the agents' plan kind is attached to the runtime.
    return define_runtime(
        ("acme", "v1"),
        agents=agents,
        providers={"anthropic": {}},
        references=[PRODUCTS],
        **runtime_options,
    )


@pytest.fixture
def dispatched() -> Dispatched:
    """Every (actions, ctx) the recording dispatcher was called with."""
    return []


@pytest.fixture
def recording(dispatched: Dispatched) -> Callable[..., Any]:
    """A dispatcher that records its calls and reports every action as one entity."""

    def dispatch(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]:
        dispatched.append((actions, ctx))
        return {"entitiesAffected": len(actions), "summary": "ordered", "details": {"po": 7}}

    return dispatch


@pytest.fixture
def open_shop(open_runtime: OpenRuntime, recording: Any) -> Callable[..., Runtime]:
    def open_(
        *, dispatcher: Any = recording, log_path: Path | None = None, **spec_options: Any
    ) -> Runtime:
        return open_runtime(
            make_spec(**spec_options),
            interpreter="scripted",
            action_dispatcher=dispatcher,
            log_path=log_path,
        )

    return open_


# --- scripts --------------------------------------------------------------------------------


def ask(agent: str, *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A coordinator's script entry handing ``agent`` a script of tool calls."""
    nested = {"script": [{"tool": tool, "args": args} for tool, args in calls]}
    return {"tool": "call_agent", "args": {"agent": agent, "prompt": json.dumps(nested)}}


def conversation(*entries: dict[str, Any]) -> str:
    return json.dumps({"script": list(entries)})


def body(handle: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    products = {"kind": "product_set", "id": "ref_" + "0" * 32} if handle is None else handle
    plan = {
        "reason": "below reorder point",
        "actions": [
            {"kind": "reorder_products", "products": products, "quantity": 50},
            {"kind": "hold_inventory", "sku": "C-007", "reason": "QA check"},
        ],
    }
    return plan | changes


def store(plan_id: str, plan: dict[str, Any], spec_name: str = "restock") -> tuple[str, Any]:
    return ("storePlan", {"specName": spec_name, "planId": plan_id, "body": plan})


def execute(plan_id: str) -> tuple[str, Any]:
    return ("executePlan", {"planId": plan_id})


def get(plan_id: str) -> tuple[str, Any]:
    return ("getPlan", {"planId": plan_id})


async def handle_of(runtime: Runtime) -> dict[str, Any]:
    """A product_set reference created outside the model's context, as a plan cites it."""
    created = await runtime.create_reference(PRODUCTS, STOCK)
    return {"kind": created["kind"], "id": created["id"]}


def store_then_execute(handle: dict[str, Any], *after: tuple[str, Any]) -> str:
    """The planner stores plan p1 (a draft); the executor executes it, then runs ``after``."""
    return conversation(
        ask("planner", store("p1", body(handle))), ask("executor", execute("p1"), *after)
    )


async def run(
    runtime: Runtime,
    prompt: str,
    outcome: str | list[str] = "approve",
    thread: str = "t",
    *,
    waiting: bool = False,
    at_gate: Callable[[Event], None] | None = None,
    **decision: Any,
) -> list[Event]:
    """Drain a query, deciding each gate with ``outcome`` (one for all, or a list in gate
    order): from the loop body (the seed's way), or (``waiting``) from another task while the
    stream waits at the gate. ``at_gate(gate)`` runs at each gate before its decision."""
    outcomes = itertools.repeat(outcome) if isinstance(outcome, str) else iter(outcome)
    events: list[Event] = []

    async def decide(gate: Event) -> None:
        if at_gate is not None:
            at_gate(gate)
        chosen = next(outcomes, None)
        assert chosen is not None, f"more gates than outcomes: {gate}"
        handed = await runtime.respond_to_approval(gate["data"]["id"], chosen, **decision)  # type: ignore[arg-type]
        assert handed is None  # the stream at the gate goes on

    if not waiting:
        async for event in runtime.query(prompt, thread):
            events.append(event)
            if event["type"] == "approval-required":
                await decide(event)
        check_stream(events)
        return events
    gates: asyncio.Queue[Event] = asyncio.Queue()

    async def consume() -> None:
        async for event in runtime.query(prompt, thread):
            events.append(event)
            if event["type"] == "approval-required":
                gates.put_nowait(event)

    consumer = asyncio.create_task(consume())
    while True:
        gate = asyncio.create_task(gates.get())
        # The consumer runs on from the put to the gate's wait before this task wakes.
        await asyncio.wait({consumer, gate}, return_when=asyncio.FIRST_COMPLETED)
        if not gate.done():
            gate.cancel()
            break
        await decide(gate.result())
    await consumer
    check_stream(events)
    return events


def moves(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(e["data"]["from"], e["data"]["to"]) for e in of_type(events, "plan-status-change")]


def result_of(events: list[Event], tool: str) -> Any:
    (result,) = of_type(events, "tool-invocation", toolName=tool, state="result")
    return result["result"]


def results_of(events: list[Event], tool: str) -> list[Any]:
    return [e["result"] for e in of_type(events, "tool-invocation", toolName=tool, state="result")]


def planned(events: list[Event]) -> list[dict[str, Any]]:
    """The stored plan's actions, as data-plan showed them."""
    (plan,) = of_type(events, "data-plan")
    actions: list[dict[str, Any]] = plan["data"]["actions"]
    return actions


WAITING = pytest.mark.parametrize("waiting", [False, True], ids=["in the loop", "while it waits"])
APPROVED = [("draft", "pending_approval"), ("pending_approval", "approved")]
EXECUTED = [("approved", "executing"), ("executing", "executed")]


# --- role-scoped tools ----------------------------------------------------------------------


ROLE_TOOLS = [
    ("planner", "storePlan", True),
    ("planner", "getPlan", True),
    ("planner", "executePlan", False),
    ("planner", "resolveRef", False),
    ("planner", "glimpseRef", False),
    ("executor", "storePlan", False),
    ("executor", "getPlan", True),
    ("executor", "executePlan", True),
    ("executor", "resolveRef", True),
    ("executor", "glimpseRef", True),
    ("analyst", "storePlan", False),
    ("analyst", "getPlan", False),
    ("analyst", "executePlan", False),
    ("analyst", "resolveRef", False),
    ("auditor", "getPlan", True),
    ("auditor", "storePlan", False),
    ("auditor", "executePlan", False),
    ("auditor", "resolveRef", False),
    ("boss", "storePlan", False),
    ("boss", "getPlan", False),
    ("boss", "executePlan", False),
    ("boss", "glimpseRef", False),
]


@pytest.mark.parametrize(("agent", "tool", "allowed"), ROLE_TOOLS)
async def test_plan_tools_are_scoped_to_roles(
    open_shop: Callable[..., Runtime], dispatched: Dispatched, agent: str, tool: str, allowed: bool
) -> None:
    runtime = open_shop()
    handle = await handle_of(runtime)
    args = {
        "storePlan": store("p1", body(handle))[1],
        "getPlan": {"planId": "p1"},
        "executePlan": {"planId": "p1"},
        "resolveRef": {"ref": handle},
        "glimpseRef": {"ref": handle},
    }[tool]
    entry = {"tool": tool, "args": args} if agent == "boss" else ask(agent, (tool, args))

    events = await run(runtime, conversation(entry))

    result = result_of(events, tool)
    refused = isinstance(result, dict) and result.get("error", {}).get("code") == (
        "TOOL_NOT_ALLOWED_FOR_ROLE"
    )
    assert refused is not allowed, result
    if refused:
        assert tool in result["error"]["message"]
        assert moves(events) == []
        assert dispatched == []


# --- storing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "spec_name", "code"),
    [
        (body(actions=[{"kind": "burn_inventory", "sku": "A-100"}]), "restock", "PLAN_INVALID"),
        (body(actions=[{"kind": "hold_inventory", "sku": "A-100"}]), "restock", "PLAN_INVALID"),
        (body(actions=[{"sku": "A-100", "reason": "x"}]), "restock", "PLAN_INVALID"),
        (
            body(actions=[{"kind": "reorder_products", "products": {}, "quantity": 0}]),
            "restock",
            "PLAN_INVALID",
        ),
        ({"actions": []}, "restock", "PLAN_INVALID"),
        (body(actions="reorder everything"), "restock", "PLAN_INVALID"),
        (body(), "restock_v2", "PLAN_UNKNOWN_SPEC"),
    ],
    ids=[
        "unknown kind",
        "missing field",
        "no kind",
        "bad values",
        "no context",
        "not a list",
        "unknown spec",
    ],
)
async def test_store_plan_refuses_an_invalid_body_as_a_tool_error(
    open_shop: Callable[..., Runtime], plan: dict[str, Any], spec_name: str, code: str
) -> None:
    runtime = open_shop()

    events = await run(
        runtime,
        conversation(ask("planner", store("p1", plan, spec_name), get("p1"))),
    )

    stored, read = results_of(events, "storePlan")[0], results_of(events, "getPlan")[0]
    assert stored["error"]["code"] == code
    assert of_type(events, "data-plan") == []
    assert moves(events) == []
    assert of_type(events, "approval-required") == []
    assert read["error"]["code"] == "PLAN_NOT_FOUND"


async def test_a_stored_plan_is_a_draft_of_typed_actions_and_context_with_no_gate(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    # Plans need approval everywhere here: still, storing one asks nobody.
    runtime = open_shop(
        approval_policies=ApprovalPolicies(plans="always"), planner_approval="always"
    )
    handle = await handle_of(runtime)

    events = await run(runtime, conversation(ask("planner", store("p1", body(handle)), get("p1"))))

    (plan,) = of_type(events, "data-plan")
    reorder, hold = body(handle)["actions"]
    expected = {
        "planId": "p1",
        "specName": "restock",
        "actions": [
            {"kind": "reorder_products", "payload": reorder, "references": [handle]},
            {"kind": "hold_inventory", "payload": hold, "references": []},
        ],
        "context": {"reason": "below reorder point"},
    }
    assert plan["data"] == expected
    assert result_of(events, "storePlan") == {"planId": "p1", "status": "draft"}
    (created,) = of_type(events, "plan-status-change")
    assert created == {
        "type": "plan-status-change",
        "data": {"planId": "p1", "from": None, "to": "draft"},
    }
    assert events.index(plan) < events.index(created)
    assert of_type(events, "approval-required") == []
    assert result_of(events, "getPlan") == {**expected, "status": "draft"}
    assert dispatched == []


# --- the gate at executePlan ----------------------------------------------------------------


@WAITING
async def test_an_approved_plan_runs_through_its_whole_lifecycle(
    open_shop: Callable[..., Runtime], dispatched: Dispatched, waiting: bool
) -> None:
    runtime = open_shop()
    handle = await handle_of(runtime)

    def at_gate(gate: Event) -> None:
        assert dispatched == []  # nothing runs before the decision
        assert runtime.replay("t").status == "awaiting-approval"

    events = await run(
        runtime,
        store_then_execute(handle, get("p1")),
        waiting=waiting,
        at_gate=at_gate,
        approver="alice",
    )

    assert moves(events) == [(None, "draft"), *APPROVED, *EXECUTED]
    assert result_of(events, "storePlan") == {"planId": "p1", "status": "draft"}
    (execute_call,) = of_type(events, "tool-invocation", toolName="executePlan", state="call")
    (gate,) = of_type(events, "approval-required")
    actions = planned(events)
    assert gate["data"] == {
        "id": f"appr:t/run-1/{execute_call['toolInvocationId']}",
        "kind": "plan",
        "target": "p1",
        "payload": {
            "planId": "p1",
            "specName": "restock",
            "status": "pending_approval",
            "actions": actions,
            "context": {"reason": "below reorder point"},
        },
        "resourceId": "acme",
        "threadId": "t",
        "correlationId": "p1",
        "expiresAt": None,
        "agent": "executor",
    }
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"] == {
        "id": gate["data"]["id"],
        "outcome": {"outcome": "approve"},
        "approver": "alice",
    }
    # The gate opens on the executor's call, shows after pending_approval, and the plan
    # runs only after the decision.
    (execute_result,) = of_type(events, "tool-invocation", toolName="executePlan", state="result")
    order = [
        events.index(execute_call),
        events.index(of_type(events, "plan-status-change", to="pending_approval")[0]),
        events.index(gate),
        events.index(decision),
        events.index(of_type(events, "plan-status-change", to="approved")[0]),
        events.index(of_type(events, "plan-status-change", to="executing")[0]),
        events.index(of_type(events, "plan-status-change", to="executed")[0]),
        events.index(execute_result),
    ]
    assert order == sorted(order)
    # The dispatcher's own answer, with the plan's actions, its id and its new status.
    assert execute_result["result"] == {
        "entitiesAffected": 2,
        "summary": "ordered",
        "details": {"po": 7, "resolvedActions": actions},
        "planId": "p1",
        "status": "executed",
    }
    assert result_of(events, "getPlan")["status"] == "executed"
    assert len(dispatched) == 1
    assert finish(events)["finishReason"] == "stop"


@WAITING
@pytest.mark.parametrize("outcome", ["reject", "revise"])
async def test_reject_and_revise_send_the_plan_back_to_draft(
    open_shop: Callable[..., Runtime], dispatched: Dispatched, outcome: str, waiting: bool
) -> None:
    runtime = open_shop()
    handle = await handle_of(runtime)

    events = await run(
        runtime,
        store_then_execute(handle, get("p1")),
        outcome=outcome,
        waiting=waiting,
        feedback="order 20, not 50",
        partial={"quantity": 20},
    )

    assert moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "draft"),
    ]
    assert result_of(events, "storePlan") == {"planId": "p1", "status": "draft"}
    (executed,) = of_type(events, "tool-invocation", toolName="executePlan", state="result")
    if outcome == "revise":
        assert not executed.get("isError")
        assert executed["result"] == {
            "rejected": True,
            "should_revise": True,
            "plan_id": "p1",
            "partial": {"quantity": 20},
            "feedback": "order 20, not 50",
            "status": "draft",
        }
    else:
        assert executed["isError"] is True
        assert executed["result"] == {
            "error": {"message": "Plan p1 rejected: order 20, not 50", "code": "PLAN_REJECTED"}
        }
    assert result_of(events, "getPlan")["status"] == "draft"
    assert dispatched == []
    assert finish(events)["finishReason"] == "stop"


async def test_a_plan_sent_back_to_draft_goes_through_the_gate_again(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    runtime = open_shop()
    handle = await handle_of(runtime)

    events = await run(
        runtime, store_then_execute(handle, execute("p1")), outcome=["reject", "approve"]
    )

    first, second = of_type(events, "approval-required")
    assert first["data"]["id"] != second["data"]["id"]
    assert first["data"]["target"] == second["data"]["target"] == "p1"
    assert moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "draft"),
        *APPROVED,
        *EXECUTED,
    ]
    rejected, ran = results_of(events, "executePlan")
    assert rejected["error"]["code"] == "PLAN_REJECTED"
    assert ran["status"] == "executed"
    assert len(dispatched) == 1


async def test_execute_plan_of_an_unknown_plan_is_a_tool_error(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    events = await run(open_shop(), conversation(ask("executor", execute("nope"))))

    assert result_of(events, "executePlan")["error"]["code"] == "PLAN_NOT_FOUND"
    assert of_type(events, "approval-required") == []
    assert dispatched == []


# Each level of the plans channel set against the one below it. The gate is the executing
# agent's: the planner's rule has no say.
PLAN_LEVELS = {
    "policy floor gates": ({}, True),
    "policy floor runs": ({"approval_policies": ApprovalPolicies(plans="never")}, False),
    "agent over policy": ({"executor_approval": {"plans": "never"}}, False),
    "agent default inherits": (
        {"approval_policies": ApprovalPolicies(plans="never"), "executor_approval": "default"},
        False,
    ),
    "agent gates over policy": (
        {"approval_policies": ApprovalPolicies(plans="never"), "executor_approval": "always"},
        True,
    ),
    "override over agent": (
        {
            "executor_approval": {"plans": "always"},
            "approval_overrides": ApprovalOverrides(agents={"executor": {"plans": "never"}}),
        },
        False,
    ),
    "planner's never is not the gate's": ({"planner_approval": {"plans": "never"}}, True),
    "planner's always is not the gate's": (
        {"approval_policies": ApprovalPolicies(plans="never"), "planner_approval": "always"},
        False,
    ),
    "predicate gates": (
        {"approval_policies": ApprovalPolicies(plans=lambda args, ctx: args["planId"] == "p1")},
        True,
    ),
    "predicate lets through": (
        {"approval_policies": ApprovalPolicies(plans=lambda args, ctx: args["planId"] != "p1")},
        False,
    ),
}


@pytest.mark.parametrize(("options", "gated"), PLAN_LEVELS.values(), ids=PLAN_LEVELS.keys())
async def test_the_plans_channel_follows_the_executors_most_specific_rule(
    open_shop: Callable[..., Runtime], dispatched: Dispatched, options: dict[str, Any], gated: bool
) -> None:
    runtime = open_shop(**options)

    events = await run(runtime, store_then_execute(await handle_of(runtime)))

    assert bool(of_type(events, "approval-required")) is gated
    # Without a gate the plan is approved at once: draft -> approved -> executing.
    approval = APPROVED if gated else [("draft", "approved")]
    assert moves(events) == [(None, "draft"), *approval, *EXECUTED]
    assert result_of(events, "storePlan") == {"planId": "p1", "status": "draft"}
    assert result_of(events, "executePlan")["status"] == "executed"
    assert len(dispatched) == 1


async def test_a_plan_under_the_two_person_rule_runs_after_the_second_approver(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    runtime = open_shop(executor_approval={"plans": RequireApprovers(2)})
    prompt = store_then_execute(await handle_of(runtime))
    events: list[Event] = []
    async for event in runtime.query(prompt, "t"):
        events.append(event)
        if event["type"] == "approval-required":
            await runtime.respond_to_approval(event["data"]["id"], "approve", approver="alice")
        elif event["type"] == "approval-progress":
            assert dispatched == []  # one approver is not enough
            assert runtime.replay("t").snapshot["plans"][0]["status"] == "pending_approval"
            await runtime.respond_to_approval(event["data"]["id"], "approve", approver="bob")
    check_stream(events)

    (gate,) = of_type(events, "approval-required")
    assert (gate["data"]["kind"], gate["data"]["approvalsRequired"]) == ("plan", 2)
    (counted,) = of_type(events, "approval-progress")
    assert (counted["data"]["approver"], counted["data"]["approvals"]) == ("alice", 1)
    (decision,) = of_type(events, "approval-decision")
    assert (decision["data"]["approver"], decision["data"]["approvals"]) == ("bob", 2)
    assert moves(events) == [(None, "draft"), *APPROVED, *EXECUTED]
    assert len(dispatched) == 1


async def test_a_plans_predicate_is_asked_about_the_plan(
    open_shop: Callable[..., Runtime],
) -> None:
    seen: list[tuple[Any, Any]] = []

    def record(args: Any, ctx: Any) -> bool:
        seen.append((args, ctx))
        return False

    runtime = open_shop(approval_policies=ApprovalPolicies(plans=record))

    await run(runtime, store_then_execute(await handle_of(runtime)))

    ((args, ctx),) = seen  # once, at executePlan; storing asks nothing
    assert args["planId"] == "p1"
    # The seed's {kind, target, tenant}, as the gate's approval-required would name them.
    assert (ctx["kind"], ctx["target"], ctx["tenant"]) == ("plan", "p1", "acme")
    assert (ctx["agent"], ctx["thread_id"]) == ("executor", "t")


async def test_a_plan_gate_nobody_decides_is_rejected_at_its_deadline(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    runtime = open_shop(executor_timeout=0.05)
    handle = await handle_of(runtime)
    started = time.time_ns() // 1_000_000

    # Nobody decides: the stream must end by itself.
    events = await drain(runtime.query(store_then_execute(handle, get("p1")), "t"))

    (gate,) = of_type(events, "approval-required")
    assert gate["data"]["expiresAt"] >= started + 50
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"] == {
        "id": gate["data"]["id"],
        "outcome": {"outcome": "reject"},
        "feedback": DEADLINE_FEEDBACK,
        "reason": "timeout",
    }
    assert moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "draft"),
    ]
    assert result_of(events, "executePlan") == {
        "error": {"message": f"Plan p1 rejected: {DEADLINE_FEEDBACK}", "code": "PLAN_REJECTED"}
    }
    assert result_of(events, "getPlan")["status"] == "draft"
    assert dispatched == []
    with pytest.raises(ApprovalAlreadyResolvedError):
        await runtime.respond_to_approval(gate["data"]["id"], "approve")


async def test_a_plan_paused_at_its_gate_is_decided_by_another_runtime_on_the_log(
    tmp_path: Path,
    open_shop: Callable[..., Runtime],
    dispatched: Dispatched,
) -> None:
    first = open_shop(log_path=tmp_path)
    handle = await handle_of(first)
    before: list[Event] = []
    async for event in first.query(store_then_execute(handle), "t"):
        before.append(event)
        if event["type"] == "approval-required":
            break  # leaves the run paused at the gate, in the log
    check_stream(before, complete=False)
    gate = before[-1]["data"]
    first.close()
    second = open_shop(log_path=tmp_path)
    assert second.replay("t").status == "awaiting-approval"
    assert dispatched == []

    stream = await second.respond_to_approval(gate["id"], "approve", approver="alice")

    assert isinstance(stream, EventStream)  # no stream here waits: the rest of the run
    events = await drain(stream, after=before)
    assert events[0] == {
        "type": "approval-decision",
        "data": {"id": gate["id"], "outcome": {"outcome": "approve"}, "approver": "alice"},
    }
    assert moves(events) == [("pending_approval", "approved"), *EXECUTED]
    # The dispatcher ran here, with the references from the store under log_path.
    ((actions, ctx),) = dispatched
    assert actions == gate["payload"]["actions"]
    assert ctx["resolved_refs"] == {"product_set": {handle["id"]: STOCK}}
    assert result_of(events, "executePlan")["status"] == "executed"
    assert finish(events)["finishReason"] == "stop"
    # The first decision wins.
    with pytest.raises(ApprovalAlreadyResolvedError):
        await second.respond_to_approval(gate["id"], "reject", approver="mallory")


# --- the action dispatcher ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_dispatcher_gets_every_action_and_the_hydrated_references(
    tmp_path: Path,
    open_shop: Callable[..., Runtime],
    dispatched: Dispatched,
    kind: str,
) -> None:
    if kind == "async":

        async def dispatcher(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
            dispatched.append((actions, ctx))

    else:

        def dispatcher(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> None:  # type: ignore[misc]
            dispatched.append((actions, ctx))

    runtime = open_shop(dispatcher=dispatcher, log_path=tmp_path)
    handle = await handle_of(runtime)

    events = await run(runtime, store_then_execute(handle))

    ((actions, ctx),) = dispatched
    assert [action["kind"] for action in actions] == ["reorder_products", "hold_inventory"]
    assert actions == planned(events)
    assert ctx["resolved_refs"] == {"product_set": {handle["id"]: STOCK}}
    assert (ctx["plan_id"], ctx["spec_name"]) == ("p1", "restock")
    assert ctx["context"] == {"reason": "below reorder point"}
    assert ctx["thread_id"] == "t"
    # None is a fine answer: executed, an empty result.
    assert result_of(events, "executePlan") == {
        "entitiesAffected": 0,
        "details": {"resolvedActions": actions},
        "planId": "p1",
        "status": "executed",
    }
    # The model and the run log only ever had the handle.
    log = (tmp_path / "acme" / "t.jsonl").read_bytes()
    assert handle["id"].encode() in log
    assert SECRET.encode() not in log


@pytest.mark.parametrize(
    "answer",
    [
        "done",
        3,
        [],
        {"entitiesAffected": -1},
        {"entitiesAffected": "2"},
        {"entitiesAffected": 1.5},
        {"summary": "no count"},
        {"entitiesAffected": 1, "summary": 7},
        {"entitiesAffected": 1, "x": 1},
    ],
)
async def test_any_other_dispatcher_answer_fails_the_plan(
    open_shop: Callable[..., Runtime], answer: Any
) -> None:
    runtime = open_shop(dispatcher=lambda actions, ctx: answer)
    handle = await handle_of(runtime)

    events = await run(runtime, store_then_execute(handle))

    assert moves(events)[-2:] == [("approved", "executing"), ("executing", "failed")]
    error = result_of(events, "executePlan")["error"]
    assert error["code"] == "PLAN_FAILED"
    assert "must return None or {entitiesAffected: int >= 0" in error["message"]
    assert finish(events)["finishReason"] == "stop"  # the model sees the failure; the run goes on


def raising(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
    raise RuntimeError("warehouse API down")


async def async_raising(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
    raise RuntimeError("warehouse API down")


@pytest.mark.parametrize(
    ("dispatcher", "says"),
    [
        (raising, "RuntimeError: warehouse API down"),
        (async_raising, "RuntimeError: warehouse API down"),
        (None, "no action dispatcher; pass create_runtime(action_dispatcher=fn)"),
    ],
    ids=["raises", "async raises", "none"],
)
async def test_a_failing_or_missing_dispatcher_fails_the_plan_clearly(
    open_shop: Callable[..., Runtime], dispatcher: Any, says: str
) -> None:
    runtime = open_shop(dispatcher=dispatcher)
    handle = await handle_of(runtime)

    events = await run(runtime, store_then_execute(handle, get("p1")))

    assert moves(events)[-1] == ("executing", "failed")
    error = result_of(events, "executePlan")["error"]
    assert error["code"] == "PLAN_FAILED"
    assert says in error["message"]
    assert result_of(events, "getPlan")["status"] == "failed"


async def test_a_plan_citing_a_reference_that_is_gone_fails_before_any_action_runs(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    runtime = open_shop()
    missing = {"kind": "product_set", "id": "ref_" + "0" * 32}

    events = await run(runtime, store_then_execute(missing))

    assert moves(events)[-1] == ("executing", "failed")
    error = result_of(events, "executePlan")["error"]
    assert error["code"] == "PLAN_FAILED"
    assert "REFERENCE_NOT_FOUND" in error["message"]
    assert dispatched == []
    assert runtime.replay("t").status == "idle"


def test_the_dispatcher_must_be_callable() -> None:
    with pytest.raises(ValueError, match="action_dispatcher must be callable"):
        create_runtime(make_spec(), interpreter="scripted", action_dispatcher="orders")  # type: ignore[arg-type]
