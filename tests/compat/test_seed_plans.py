"""The seed's plan lifecycle, written as its users write it (SEED-REFERENCE §1.1, §3, §4, §7,
§9): ``storePlan`` stores a draft, the gate is at ``executePlan`` (auto-approved when the
executing agent's plan rule is ``never``), approve runs the action dispatcher with hydrated
references, reject and revise send the plan back to draft; display aliases; the two
walkthroughs (the coordinator-planner-executor smoke and the inventory scenario's).

Only the seed's names, call forms and event field paths are used. The scripted interpreter
stands in for the model: the coordinator's script hands the planner a ``storePlan`` script and
the executor an ``executePlan`` script, each followed by ``getPlan`` to read the stored status.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from flowai_harness import (
    ApprovalOverrides,
    ApprovalPolicies,
    ApprovalPolicyPatch,
    PlanDisplayAlias,
    TaggedUnion,
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_reference,
    define_runtime,
    define_specialist,
    define_tool,
)

Event = dict[str, Any]
Dispatched = list[tuple[list[dict[str, Any]], dict[str, Any]]]

# --- the inventory scenario's contracts (SEED-REFERENCE §9, example B) ------------------------


class InventoryProductSet(BaseModel):
    product_ids: list[str]
    reason: str
    summary: str


def product_set_glimpse(value: Any) -> dict[str, Any]:
    # The seed does not say whether the callback gets the value as given or as validated.
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return {
        "count": len(value["product_ids"]),
        "first_ids": value["product_ids"][:3],
        "summary": value["summary"],
    }


PRODUCT_SET = define_reference(
    "InventoryProductSet", InventoryProductSet, ttl_ms=3_600_000, glimpse=product_set_glimpse
)
LOW_STOCK = {
    "product_ids": ["p-001", "p-002", "p-003", "p-004"],
    "reason": "below safety stock",
    "summary": "4 products below safety stock in the north warehouse",
}


class ProductSetHandle(BaseModel):
    kind: Literal["InventoryProductSet"]
    id: str


class ReorderProducts(BaseModel):
    kind: Literal["reorder_products"]
    name: str
    reason: str
    quantity: int = Field(ge=1)
    references: list[ProductSetHandle] = Field(min_length=1, max_length=1)


class HoldInventory(BaseModel):
    kind: Literal["hold_inventory"]
    name: str
    reason: str
    holdbackUnits: int = Field(ge=1)
    references: list[ProductSetHandle] = Field(min_length=1, max_length=1)


class InventoryScenarioPlan(BaseModel):
    objective: str
    actions: list[TaggedUnion(ReorderProducts, HoldInventory)]  # type: ignore[valid-type]
    assumptions: list[str]


ALIASES = {
    "draft": "Proposed",
    "approved": "Signed off",
    "executing": "Ordering",
    "executed": "Ordered",
    "failed": "Failed",
}
INVENTORY_PLAN = define_plan(
    "InventoryScenarioPlan", InventoryScenarioPlan, display_aliases=ALIASES
)


@define_tool(
    "resolveProductSet",
    {"sql": str},
    description="Run one read-only query for products; returns a handle and a glimpse.",
)
def resolve_product_set(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if not args["sql"].lstrip().upper().startswith(("SELECT", "WITH")):
        raise ValueError("only a single read-only SELECT/WITH query is allowed")
    handle: dict[str, Any] = ctx.references.create(PRODUCT_SET, LOW_STOCK)
    return {"kind": handle["kind"], "id": handle["id"], "glimpse": handle["glimpse"]}


def inventory_spec(
    *,
    coordinator: dict[str, Any] | None = None,
    planner: dict[str, Any] | None = None,
    executor: dict[str, Any] | None = None,
    **runtime_options: Any,
) -> Any:
    agents = [
        define_coordinator(
            name="coordinator",
            model="claude-opus-4-8",
            prompt="Route planning to the planner and execution to the executor.",
            routes=["planner", "executor", "auditor"],
            **(coordinator or {}),
        ),
        define_planner(
            name="planner",
            model="claude-opus-4-8",
            prompt="Draft inventory plans over product-set references.",
            plan=INVENTORY_PLAN,
            tools=[resolve_product_set],
            max_turns=50,
            **(planner or {}),
        ),
        define_executor(
            name="executor",
            model="claude-sonnet-4-6",
            prompt="Call executePlan; never resolve ids manually.",
            plan=INVENTORY_PLAN,
            **(executor or {}),
        ),
        define_specialist(
            name="auditor",
            model="claude-haiku-4-5",
            prompt="Read plans.",
            toolkits=["plans"],
        ),
    ]
    return define_runtime(
        tenant=("acme", "v1"),
        agents=agents,
        references=[PRODUCT_SET],
        providers={"anthropic": {"apiKeyEnv": "ANTHROPIC_API_KEY"}},
        **runtime_options,
    )


def recording_dispatcher(dispatched: Dispatched) -> Any:
    def dispatch(actions: list[dict[str, Any]], ctx: Any) -> dict[str, Any]:
        dispatched.append((actions, dict(ctx)))
        return {"entitiesAffected": len(actions), "summary": "2 actions", "details": {"po": 7}}

    return dispatch


def call_agent(agent: str, *calls: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool": "call_agent",
        "args": {"agent": agent, "prompt": json.dumps({"script": list(calls)})},
    }


def plan_body(handle: dict[str, Any]) -> dict[str, Any]:
    ref = {"kind": handle["kind"], "id": handle["id"]}
    return {
        "objective": "Keep the north warehouse stocked",
        "actions": [
            {
                "kind": "reorder_products",
                "name": "Reorder low stock",
                "reason": "below safety stock",
                "quantity": 40,
                "references": [ref],
            },
            {
                "kind": "hold_inventory",
                "name": "Hold back for QA",
                "reason": "quality check",
                "holdbackUnits": 5,
                "references": [ref],
            },
        ],
        "assumptions": ["supplier lead time is a week"],
    }


def plan_then_execute(handle: dict[str, Any], plan_id: str = "plan-1") -> str:
    """The scripted conversation: resolve + storePlan + getPlan, then executePlan + getPlan."""
    return json.dumps(
        {
            "script": [
                call_agent(
                    "planner",
                    {"tool": "resolveProductSet", "args": {"sql": "SELECT product_id FROM stock"}},
                    {
                        "tool": "storePlan",
                        "args": {
                            "specName": "InventoryScenarioPlan",
                            "planId": plan_id,
                            "body": plan_body(handle),
                        },
                    },
                    {"tool": "getPlan", "args": {"planId": plan_id}},
                ),
                call_agent(
                    "executor",
                    {"tool": "executePlan", "args": {"planId": plan_id}},
                    {"tool": "getPlan", "args": {"planId": plan_id}},
                ),
            ]
        }
    )


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


def results(events: list[Event], tool: str) -> list[Any]:
    return [
        e["result"]
        for e in events
        if e["type"] == "tool-invocation" and e["toolName"] == tool and e["state"] == "result"
    ]


def moves(events: list[Event]) -> list[tuple[Any, str]]:
    return [(e["data"]["from"], e["data"]["to"]) for e in of_type(events, "plan-status-change")]


def gate_events(events: list[Event]) -> list[str]:
    """executePlan's call and result and the approval events, in stream order."""
    seen = []
    for e in events:
        if e["type"] == "tool-invocation" and e["toolName"] == "executePlan":
            seen.append(f"executePlan {e['state']}")
        elif e["type"] in ("approval-required", "approval-decision"):
            seen.append(e["type"])
    return seen


async def open_shop(dispatched: Dispatched, **spec_options: Any) -> tuple[Any, dict[str, Any]]:
    """The runtime, and the handle the planner's tool will produce (ids are content hashes)."""
    runtime = create_runtime(
        inventory_spec(**spec_options),
        interpreter="scripted",
        action_dispatcher=recording_dispatcher(dispatched),
    )
    handle = await runtime.create_reference(PRODUCT_SET, LOW_STOCK)
    return runtime, handle


# --- the gate at executePlan ------------------------------------------------------------------


async def test_approve_at_execute_plan_runs_the_dispatcher_with_hydrated_references() -> None:
    dispatched: Dispatched = []
    # Example B: the coordinator's approval patch (plans=always) is the runtime floor.
    runtime, handle = await open_shop(
        dispatched, coordinator={"approval": ApprovalPolicyPatch(plans="always")}
    )
    approvals: list[dict[str, Any]] = []
    dispatched_at_gate: Dispatched | None = None

    events = []
    async for event in runtime.query(plan_then_execute(handle), thread_id="t-approve"):
        events.append(event)
        if event["type"] == "approval-required":
            approvals.append(event["data"])
            dispatched_at_gate = list(dispatched)
            await runtime.respond_to_approval(event["data"]["id"], "approve")

    # storePlan stored a draft; it was never gated.
    stored, executed = results(events, "getPlan")
    assert stored["status"] == "draft"
    assert executed["status"] == "executed"
    # The gate is at executePlan: call, approval-required, approval-decision, result.
    assert gate_events(events) == [
        "executePlan call",
        "approval-required",
        "approval-decision",
        "executePlan result",
    ]
    (approval,) = approvals
    assert approval["kind"] == "plan"
    assert approval["target"] == "plan-1"
    assert approval["correlationId"] == "plan-1"
    assert approval["resourceId"] == "acme"
    assert approval["threadId"] == "t-approve"
    assert [a["kind"] for a in approval["payload"]["actions"]] == [
        "reorder_products",
        "hold_inventory",
    ]
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"]["id"] == approval["id"]
    assert decision["data"]["outcome"] == {"outcome": "approve"}
    # The seed's moves, in order: draft, then pending_approval (display only), then approved.
    assert [to for _, to in moves(events)][:3] == ["draft", "pending_approval", "approved"]
    assert moves(events)[1:3] == [("draft", "pending_approval"), ("pending_approval", "approved")]
    assert all(e["data"]["planId"] == "plan-1" for e in of_type(events, "plan-status-change"))
    # The dispatcher ran once, after the approval, with every action and the real data.
    assert dispatched_at_gate == []
    ((actions, ctx),) = dispatched
    assert [a["kind"] for a in actions] == ["reorder_products", "hold_inventory"]
    ref = {"kind": "InventoryProductSet", "id": handle["id"]}
    assert [a["references"] for a in actions] == [[ref], [ref]]
    assert actions[0]["payload"]["quantity"] == 40
    assert actions[1]["payload"]["holdbackUnits"] == 5
    assert ctx["resolved_refs"] == {"InventoryProductSet": {handle["id"]: LOW_STOCK}}
    # The tool result is the dispatcher's, with resolvedActions in details.
    (result,) = results(events, "executePlan")
    assert result["entitiesAffected"] == 2
    assert result["summary"] == "2 actions"
    assert result["details"]["po"] == 7
    assert "resolvedActions" in result["details"]
    assert [e["finishReason"] for e in of_type(events, "finish")] == ["stop"]


async def test_reject_returns_the_plan_to_draft_with_an_error_naming_the_reason() -> None:
    dispatched: Dispatched = []
    runtime, handle = await open_shop(dispatched)

    events = []
    async for event in runtime.query(plan_then_execute(handle), thread_id="t-reject"):
        events.append(event)
        if event["type"] == "approval-required":
            await runtime.respond_to_approval(event["data"]["id"], "reject", "not this week")

    assert dispatched == []
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"]["outcome"] == {"outcome": "reject"}
    assert decision["data"]["feedback"] == "not this week"
    (result,) = results(events, "executePlan")
    assert "Plan plan-1 rejected: not this week" in json.dumps(result)
    assert [plan["status"] for plan in results(events, "getPlan")] == ["draft", "draft"]
    assert [e["finishReason"] for e in of_type(events, "finish")] == ["stop"]


async def test_revise_returns_the_plan_to_draft_and_says_should_revise() -> None:
    dispatched: Dispatched = []
    runtime, handle = await open_shop(dispatched)

    events = []
    async for event in runtime.query(plan_then_execute(handle), thread_id="t-revise"):
        events.append(event)
        if event["type"] == "approval-required":
            await runtime.respond_to_approval(
                event["data"]["id"], "revise", "order 20, not 40", {"quantity": 20}
            )

    assert dispatched == []
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"]["outcome"] == {"outcome": "revise", "partial": {"quantity": 20}}
    assert decision["data"]["feedback"] == "order 20, not 40"
    (result,) = results(events, "executePlan")
    assert {key: result[key] for key in ("rejected", "should_revise", "plan_id", "partial")} == {
        "rejected": True,
        "should_revise": True,
        "plan_id": "plan-1",
        "partial": {"quantity": 20},
    }
    assert [plan["status"] for plan in results(events, "getPlan")] == ["draft", "draft"]


# --- which rule gates executePlan ------------------------------------------------------------


NEVER = ApprovalPolicyPatch(plans="never")


@pytest.mark.parametrize(
    "spec_options",
    [
        {"executor": {"approval": NEVER}},
        # Example A's form: both channels never on the executor.
        {"executor": {"approval": ApprovalPolicyPatch(plans="never", tools="never")}},
        {"approval_policies": ApprovalPolicies(plans="never")},
        # Without approval_policies, the coordinator's patch is the floor.
        {"coordinator": {"approval": NEVER}},
        {"approval_overrides": ApprovalOverrides(agents={"executor": NEVER})},
    ],
    ids=["executor", "executor-both", "policies", "coordinator-floor", "override"],
)
async def test_execute_plan_auto_approves_when_the_executors_plan_rule_is_never(
    spec_options: dict[str, Any],
) -> None:
    dispatched: Dispatched = []
    runtime, handle = await open_shop(dispatched, **spec_options)

    events = [e async for e in runtime.query(plan_then_execute(handle), thread_id="t-auto")]

    assert of_type(events, "approval-required") == []
    assert moves(events)[1] == ("draft", "approved")
    assert len(dispatched) == 1
    assert [plan["status"] for plan in results(events, "getPlan")] == ["draft", "executed"]


@pytest.mark.parametrize(
    "spec_options",
    [
        # The planner's rule does not matter: the executing agent's does.
        {"planner": {"approval": NEVER}},
        # An override tightens what the floor relaxed.
        {
            "approval_policies": ApprovalPolicies(plans="never"),
            "approval_overrides": ApprovalOverrides(
                agents={"executor": ApprovalPolicyPatch(plans="always")}
            ),
        },
    ],
    ids=["planner-never", "override-tightens"],
)
async def test_execute_plan_waits_when_the_executors_plan_rule_is_not_never(
    spec_options: dict[str, Any],
) -> None:
    dispatched: Dispatched = []
    runtime, handle = await open_shop(dispatched, **spec_options)

    gates = []
    async for event in runtime.query(plan_then_execute(handle), thread_id="t-gated"):
        if event["type"] == "approval-required":
            gates.append(event["data"]["target"])
            await runtime.respond_to_approval(event["data"]["id"], "approve")

    assert gates == ["plan-1"]
    assert len(dispatched) == 1


BIG_PLAN = {"kind": "dynamic", "value": "big_plan"}


@pytest.mark.parametrize(
    "spec_options",
    [
        {"approval_policies": ApprovalPolicies(plans=BIG_PLAN)},
        {"executor": {"approval": ApprovalPolicyPatch(plans=BIG_PLAN)}},
        {"executor": {"approval": {"plans": BIG_PLAN}}},
        {"approval_overrides": ApprovalOverrides(agents={"executor": {"plans": BIG_PLAN}})},
    ],
    ids=["policies", "executor-patch", "executor-dict", "override"],
)
async def test_a_dynamic_plan_rule_asks_its_predicate_with_the_plan_ctx(
    spec_options: dict[str, Any],
) -> None:
    dispatched: Dispatched = []
    contexts: list[dict[str, Any]] = []

    def big_plan(args: Any, ctx: Any) -> bool:
        contexts.append({key: ctx[key] for key in ("kind", "target", "tenant")})
        return True

    runtime = create_runtime(
        inventory_spec(**spec_options),
        interpreter="scripted",
        action_dispatcher=recording_dispatcher(dispatched),
        approval_predicates={"big_plan": big_plan},
    )
    handle = await runtime.create_reference(PRODUCT_SET, LOW_STOCK)

    gates = []
    async for event in runtime.query(plan_then_execute(handle), thread_id="t-dynamic"):
        if event["type"] == "approval-required":
            gates.append(event["data"]["kind"])
            await runtime.respond_to_approval(event["data"]["id"], "approve")

    # SEED-REFERENCE §4: dynamic rules are compiled for both channels; at a plan gate the
    # predicate's ctx is {kind: "plan", target: the plan id, tenant}.
    assert contexts == [{"kind": "plan", "target": "plan-1", "tenant": "acme"}]
    assert gates == ["plan"]
    assert len(dispatched) == 1


# --- the dispatcher's contract ---------------------------------------------------------------


async def test_an_async_dispatcher_returning_none_is_an_empty_result() -> None:
    called: list[int] = []

    async def dispatch(actions: list[dict[str, Any]], ctx: Any) -> None:
        called.append(len(actions))

    runtime = create_runtime(
        inventory_spec(executor={"approval": NEVER}),
        interpreter="scripted",
        action_dispatcher=dispatch,
    )
    handle = await runtime.create_reference(PRODUCT_SET, LOW_STOCK)

    events = [e async for e in runtime.query(plan_then_execute(handle), thread_id="t-none")]

    assert called == [2]
    assert [plan["status"] for plan in results(events, "getPlan")] == ["draft", "executed"]


@pytest.mark.parametrize(
    "returned",
    [{"entitiesAffected": -1}, {"summary": "no count"}, "done", {"entitiesAffected": "two"}],
)
async def test_an_invalid_dispatcher_return_fails_execute_plan_and_the_plan(returned: Any) -> None:
    def dispatch(actions: list[dict[str, Any]], ctx: Any) -> Any:
        return returned

    runtime = create_runtime(
        inventory_spec(executor={"approval": NEVER}),
        interpreter="scripted",
        action_dispatcher=dispatch,
    )
    handle = await runtime.create_reference(PRODUCT_SET, LOW_STOCK)

    events = [e async for e in runtime.query(plan_then_execute(handle), thread_id="t-bad")]

    (result,) = results(events, "executePlan")
    assert result != returned
    assert [plan["status"] for plan in results(events, "getPlan")] == ["draft", "failed"]


# --- role scoping and validation -------------------------------------------------------------


async def test_plan_tools_are_scoped_by_role() -> None:
    dispatched: Dispatched = []
    runtime, handle = await open_shop(dispatched, executor={"approval": NEVER})
    store = {
        "tool": "storePlan",
        "args": {"specName": "InventoryScenarioPlan", "planId": "p-2", "body": plan_body(handle)},
    }
    prompt = json.dumps(
        {
            "script": [
                # The executor cannot store a plan, the planner cannot execute one.
                call_agent("executor", store),
                call_agent("planner", store, {"tool": "executePlan", "args": {"planId": "p-2"}}),
                # Other roles may only read it.
                call_agent(
                    "auditor",
                    {"tool": "getPlan", "args": {"planId": "p-2"}},
                    {"tool": "executePlan", "args": {"planId": "p-2"}},
                ),
            ]
        }
    )

    events = [e async for e in runtime.query(prompt, thread_id="t-roles")]

    stores = [
        e["agent"]
        for e in events
        if e["type"] == "tool-invocation" and e["toolName"] == "storePlan" and e["state"] == "call"
    ]
    assert stores == ["executor", "planner"]
    assert moves(events) == [(None, "draft")]  # only the planner's storePlan stored a plan
    assert dispatched == []
    assert of_type(events, "approval-required") == []
    (read,) = results(events, "getPlan")
    assert read["status"] == "draft"


async def test_store_plan_validates_the_body_against_the_plan_schema() -> None:
    dispatched: Dispatched = []
    runtime, handle = await open_shop(dispatched)
    body = plan_body(handle)
    body["actions"][0]["quantity"] = 0  # ge=1
    prompt = json.dumps(
        {
            "script": [
                call_agent(
                    "planner",
                    {
                        "tool": "storePlan",
                        "args": {
                            "specName": "InventoryScenarioPlan",
                            "planId": "p-3",
                            "body": body,
                        },
                    },
                )
            ]
        }
    )

    events = [e async for e in runtime.query(prompt, thread_id="t-invalid")]

    assert of_type(events, "plan-status-change") == []
    (result,) = results(events, "storePlan")
    assert "quantity" in json.dumps(result)


# --- declaring plans -------------------------------------------------------------------------


def test_display_aliases_label_the_five_statuses() -> None:
    assert [(a.status, a.alias) for a in INVENTORY_PLAN.display_aliases] == list(ALIASES.items())
    as_list = define_plan(
        "ListAliases",
        InventoryScenarioPlan,
        display_aliases=[PlanDisplayAlias(status="draft", alias="Proposed")],
    )
    assert [(a.status, a.alias) for a in as_list.display_aliases] == [("draft", "Proposed")]
    with pytest.raises(ValueError, match="archived"):
        define_plan("Bad", InventoryScenarioPlan, display_aliases={"archived": "Old"})


def test_a_plan_schema_needs_a_top_level_actions_array() -> None:
    class NoActions(BaseModel):
        objective: str

    with pytest.raises(ValueError, match="actions"):
        define_plan("NoActions", NoActions)


def test_planners_and_executors_need_a_plan() -> None:
    with pytest.raises((TypeError, ValueError)):
        define_planner(name="p", model="claude-opus-4-8", prompt="p")  # type: ignore[call-arg]
    with pytest.raises((TypeError, ValueError)):
        define_executor(name="e", model="claude-opus-4-8", prompt="e")  # type: ignore[call-arg]


def test_tagged_union_takes_literals_or_the_string_default_shorthand() -> None:
    class PriceChange(BaseModel):
        kind: str = "price_change"
        productId: str
        newPrice: float

    class Delist(BaseModel):
        kind: Literal["delist"]
        productId: str

    class Plan(BaseModel):
        actions: list[TaggedUnion(PriceChange, Delist)]  # type: ignore[valid-type]

    class Again(BaseModel):
        kind: Literal["price_change"]

    plan = define_plan("Shorthand", Plan)
    assert plan.name == "Shorthand"
    with pytest.raises(ValueError, match="price_change"):
        TaggedUnion(PriceChange, Again)
    with pytest.raises(ValueError, match="2"):
        TaggedUnion(PriceChange)


# --- the walkthroughs ------------------------------------------------------------------------


class PriceChangeAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["price_change"]
    productId: str
    newPrice: float
    reason: str


class CatalogActionPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[PriceChangeAction]


async def test_the_coordinator_planner_executor_smoke() -> None:
    # SEED-REFERENCE §9, example A: planner and executor set plans=never/tools=never, so
    # execution is auto-approved; a mock dispatcher returns entitiesAffected = len(actions).
    plan = define_plan("CatalogActionPlan", CatalogActionPlan)
    never = ApprovalPolicyPatch(plans="never", tools="never")
    spec = define_runtime(
        tenant=("acme", "v1"),
        agents=[
            define_coordinator(
                name="coordinator",
                model="claude-sonnet-4-6",
                prompt="Route to the planner, then the executor.",
                routes=["planner", "executor"],
            ),
            define_planner(
                name="planner", model="claude-sonnet-4-6", prompt="Plan.", plan=plan, approval=never
            ),
            define_executor(
                name="executor",
                model="claude-sonnet-4-6",
                prompt="Execute.",
                plan=plan,
                approval=never,
            ),
        ],
        providers={"anthropic": {"apiKey": "placeholder"}},
    )
    seen: list[list[dict[str, Any]]] = []

    def dispatch(actions: list[dict[str, Any]], ctx: Any) -> dict[str, Any]:
        seen.append(actions)
        return {"entitiesAffected": len(actions)}

    runtime = create_runtime(spec, interpreter="scripted", action_dispatcher=dispatch)
    body = {
        "actions": [
            {"kind": "price_change", "productId": "p-001", "newPrice": 6.49, "reason": "match"}
        ]
    }
    prompt = json.dumps(
        {
            "script": [
                call_agent(
                    "planner",
                    {
                        "tool": "storePlan",
                        "args": {
                            "specName": "CatalogActionPlan",
                            "planId": "plan-eval-price-change",
                            "body": body,
                        },
                    },
                ),
                call_agent(
                    "executor",
                    {"tool": "executePlan", "args": {"planId": "plan-eval-price-change"}},
                ),
            ]
        }
    )

    events = []
    async for event in runtime.query(prompt, thread_id="smoke"):
        events.append(event)
        if event["type"] == "approval-required":  # the smoke approves any gate
            await runtime.respond_to_approval(event["data"]["id"], "approve")

    agents = [e["agentName"] for e in of_type(events, "tool-agent") if e["state"] == "call"]
    assert agents == ["coordinator", "planner", "executor"]
    assert {e["data"]["planId"] for e in of_type(events, "plan-status-change")} == {
        "plan-eval-price-change"
    }
    assert of_type(events, "approval-required") == []
    (result,) = results(events, "executePlan")
    assert result["entitiesAffected"] == 1
    assert seen[0][0]["payload"]["newPrice"] == 6.49
    assert len(of_type(events, "finish")) == 1
