"""Typed plans through the runtime: role-scoped plan tools, storing and validating a plan, its
lifecycle at the approval gate, and the action dispatcher with hydrated references.

A coordinator hands scripted work to a planner, an executor and an analyst (``call_agent``
with a nested script), so one stream shows a plan from storePlan to executed. Declaring plans
(TaggedUnion, define_plan) is tested in test_plans.py; the transition table in the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from streams import check_stream, of_type

from flowai_harness import (
    ApprovalOverrides,
    ApprovalPolicies,
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


def make_spec(*, planner_approval: Any = "default", **runtime_options: Any) -> RuntimeSpec:
    agents = [
        define_coordinator(
            "boss",
            model="claude-sonnet-4-6",
            prompt="Route planning, execution and questions.",
            routes=["planner", "executor", "analyst"],
        ),
        define_planner(
            "planner", model="claude-sonnet-4-6", prompt="Plan restocks.", approval=planner_approval
        ),
        define_executor("executor", model="claude-haiku-4-5", prompt="Execute approved plans."),
        define_specialist("analyst", model="claude-haiku-4-5", prompt="Answer questions."),
    ]
    return define_runtime(
        ("acme", "v1"),
        agents=agents,
        providers={"anthropic": {}},
        plans=[RESTOCK],
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


def handle_of(runtime: Runtime) -> dict[str, Any]:
    """A product_set reference created outside the model's context, as a plan cites it."""
    created = runtime.create_reference(PRODUCTS, STOCK)
    return {"kind": created["kind"], "id": created["id"]}


async def run(
    runtime: Runtime,
    prompt: str,
    outcome: str = "approve",
    thread: str = "t",
    **decision: Any,
) -> list[Event]:
    """Drain a query, deciding every gate with ``outcome`` from the loop body."""
    events: list[Event] = []
    async for event in runtime.query(prompt, thread):
        events.append(event)
        if event["type"] == "approval-required":
            runtime.respond_to_approval(event["id"], outcome, **decision)  # type: ignore[arg-type]
    check_stream(events)
    return events


def moves(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(e["from"], e["to"]) for e in of_type(events, "plan-status-change")]


def result_of(events: list[Event], tool: str) -> Any:
    (result,) = of_type(events, "tool-invocation", toolName=tool, state="result")
    return result["result"]


def results_of(events: list[Event], tool: str) -> list[Any]:
    return [e["result"] for e in of_type(events, "tool-invocation", toolName=tool, state="result")]


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
    ("analyst", "getPlan", True),
    ("analyst", "executePlan", False),
    ("analyst", "resolveRef", False),
    ("boss", "storePlan", False),
    ("boss", "getPlan", True),
    ("boss", "executePlan", False),
    ("boss", "glimpseRef", False),
]


@pytest.mark.parametrize(("agent", "tool", "allowed"), ROLE_TOOLS)
async def test_plan_tools_are_scoped_to_roles(
    open_shop: Callable[..., Runtime], dispatched: Dispatched, agent: str, tool: str, allowed: bool
) -> None:
    runtime = open_shop()
    handle = handle_of(runtime)
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
        conversation(ask("planner", store("p1", plan, spec_name), ("getPlan", {"planId": "p1"}))),
    )

    stored, read = results_of(events, "storePlan")[0], results_of(events, "getPlan")[0]
    assert stored["error"]["code"] == code
    assert of_type(events, "data-plan") == []
    assert moves(events) == []
    assert of_type(events, "approval-required") == []
    assert read["error"]["code"] == "PLAN_NOT_FOUND"


async def test_a_stored_plan_is_a_draft_of_typed_actions_and_context(
    open_shop: Callable[..., Runtime],
) -> None:
    runtime = open_shop(approval_policies=ApprovalPolicies(plans="always"))
    handle = handle_of(runtime)

    events = await run(
        runtime,
        conversation(ask("planner", store("p1", body(handle)), ("getPlan", {"planId": "p1"}))),
        outcome="revise",
    )

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
    assert moves(events)[0] == (None, "draft")
    assert events.index(plan) < events.index(of_type(events, "plan-status-change")[0])
    assert result_of(events, "getPlan") == {**expected, "status": "draft"}


# --- lifecycle ------------------------------------------------------------------------------


async def test_an_approved_plan_runs_through_its_whole_lifecycle(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    runtime = open_shop()
    handle = handle_of(runtime)

    events = await run(
        runtime,
        conversation(ask("planner", store("p1", body(handle))), ask("executor", execute("p1"))),
        approver="alice",
    )

    assert moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "approved"),
        ("approved", "executing"),
        ("executing", "executed"),
    ]
    (gate,) = of_type(events, "approval-required")
    assert (gate["kind"], gate["target"], gate["resourceId"]) == ("plan", "p1", "acme")
    assert gate["payload"]["planId"] == "p1"
    assert gate["payload"]["actions"] == of_type(events, "data-plan")[0]["data"]["actions"]
    store_call = of_type(events, "tool-invocation", toolName="storePlan", state="call")[0]
    assert gate["correlationId"] == store_call["toolInvocationId"]
    (decision,) = of_type(events, "approval-decision")
    assert decision["approver"] == "alice"
    # The gate shows between draft and the decision; the result follows the approval.
    assert events.index(of_type(events, "plan-status-change", to="pending_approval")[0]) < (
        events.index(gate)
    )
    assert result_of(events, "storePlan") == {"planId": "p1", "status": "approved"}
    assert result_of(events, "executePlan") == {
        "planId": "p1",
        "status": "executed",
        "result": {"entitiesAffected": 2, "summary": "ordered", "details": {"po": 7}},
    }
    assert len(dispatched) == 1
    assert events[-1]["finishReason"] == "stop"


@pytest.mark.parametrize("outcome", ["reject", "revise"])
async def test_reject_and_revise_send_the_plan_back_to_draft(
    open_shop: Callable[..., Runtime], dispatched: Dispatched, outcome: str
) -> None:
    runtime = open_shop()
    handle = handle_of(runtime)

    events = await run(
        runtime,
        conversation(
            ask("planner", store("p1", body(handle))),
            ask("executor", execute("p1"), ("getPlan", {"planId": "p1"})),
        ),
        outcome=outcome,
        feedback="order 20, not 50",
        partial={"quantity": 20},
    )

    assert moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "draft"),
    ]
    stored = result_of(events, "storePlan")
    if outcome == "revise":
        assert stored["should_revise"] is True
        assert stored["partial"] == {"quantity": 20}
    else:
        assert stored["error"]["code"] == "PLAN_REJECTED"
        assert "order 20, not 50" in stored["error"]["message"]
    executed = result_of(events, "executePlan")
    assert executed["error"]["code"] == "PLAN_INVALID_TRANSITION"
    assert "draft" in executed["error"]["message"]
    assert result_of(events, "getPlan")["status"] == "draft"
    assert dispatched == []


async def test_execute_plan_of_an_unknown_plan_is_a_tool_error(
    open_shop: Callable[..., Runtime], dispatched: Dispatched
) -> None:
    events = await run(open_shop(), conversation(ask("executor", execute("nope"))))

    assert result_of(events, "executePlan")["error"]["code"] == "PLAN_NOT_FOUND"
    assert dispatched == []


# Each level of the plans channel set against the one below it.
PLAN_LEVELS = {
    "policy floor gates": ({}, True),
    "policy floor runs": ({"approval_policies": ApprovalPolicies(plans="never")}, False),
    "agent over policy": ({"planner_approval": {"plans": "never"}}, False),
    "agent default inherits": (
        {"approval_policies": ApprovalPolicies(plans="never"), "planner_approval": "default"},
        False,
    ),
    "agent gates over policy": (
        {"approval_policies": ApprovalPolicies(plans="never"), "planner_approval": "always"},
        True,
    ),
    "override over agent": (
        {
            "planner_approval": {"plans": "always"},
            "approval_overrides": ApprovalOverrides(agents={"planner": {"plans": "never"}}),
        },
        False,
    ),
    "predicate over the body": (
        {
            "approval_policies": ApprovalPolicies(
                plans=lambda args, ctx: len(args["body"]["actions"]) > 1
            )
        },
        True,
    ),
}


@pytest.mark.parametrize(("options", "gated"), PLAN_LEVELS.values(), ids=PLAN_LEVELS.keys())
async def test_the_plans_channel_follows_the_most_specific_rule(
    open_shop: Callable[..., Runtime], options: dict[str, Any], gated: bool
) -> None:
    runtime = open_shop(**options)

    events = await run(runtime, conversation(ask("planner", store("p1", body(handle_of(runtime))))))

    assert bool(of_type(events, "approval-required")) is gated
    expected = [(None, "draft"), ("draft", "pending_approval"), ("pending_approval", "approved")]
    assert moves(events) == (expected if gated else [(None, "draft"), ("draft", "approved")])
    assert result_of(events, "storePlan") == {"planId": "p1", "status": "approved"}


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
    handle = handle_of(runtime)

    events = await run(
        runtime,
        conversation(ask("planner", store("p1", body(handle))), ask("executor", execute("p1"))),
    )

    ((actions, ctx),) = dispatched
    assert [action["kind"] for action in actions] == ["reorder_products", "hold_inventory"]
    assert actions == of_type(events, "data-plan")[0]["data"]["actions"]
    assert ctx["resolved_refs"] == {"product_set": {handle["id"]: STOCK}}
    assert (ctx["plan_id"], ctx["spec_name"]) == ("p1", "restock")
    assert ctx["context"] == {"reason": "below reorder point"}
    assert ctx["thread_id"] == "t"
    # None is a fine answer: executed, with no result.
    assert result_of(events, "executePlan") == {
        "planId": "p1",
        "status": "executed",
        "result": None,
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
    handle = handle_of(runtime)

    events = await run(
        runtime,
        conversation(ask("planner", store("p1", body(handle))), ask("executor", execute("p1"))),
    )

    assert moves(events)[-2:] == [("approved", "executing"), ("executing", "failed")]
    error = result_of(events, "executePlan")["error"]
    assert error["code"] == "PLAN_FAILED"
    assert "must return None or {entitiesAffected: int >= 0" in error["message"]
    assert events[-1]["finishReason"] == "stop"  # the model sees the failure; the run goes on


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
    handle = handle_of(runtime)

    events = await run(
        runtime,
        conversation(
            ask("planner", store("p1", body(handle))),
            ask("executor", execute("p1"), ("getPlan", {"planId": "p1"})),
        ),
    )

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

    events = await run(
        runtime,
        conversation(ask("planner", store("p1", body(missing))), ask("executor", execute("p1"))),
    )

    assert moves(events)[-1] == ("executing", "failed")
    error = result_of(events, "executePlan")["error"]
    assert error["code"] == "PLAN_FAILED"
    assert "REFERENCE_NOT_FOUND" in error["message"]
    assert dispatched == []
    assert runtime.replay("t").status == "idle"


def test_the_dispatcher_must_be_callable() -> None:
    with pytest.raises(ValueError, match="action_dispatcher must be callable"):
        create_runtime(make_spec(), interpreter="scripted", action_dispatcher="orders")  # type: ignore[arg-type]
