"""The seed's approval gates on tools, written as its users write them (SEED-REFERENCE §1.1,
§1.2, §2, §4, §7): approve, reject and revise with ``await runtime.respond_to_approval(...)``
from inside the ``async for``, the original stream continuing; the rule hierarchy, overrides
and dynamic predicates in both forms.

Only the seed's names, call forms and event field paths are used. The scripted interpreter
stands in for the model: the coordinator's script hands the worker a script that calls the
tool. Plan gates are in test_seed_plans.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowai_harness import (
    ApprovalOverrides,
    ApprovalPolicies,
    ApprovalPolicyPatch,
    create_runtime,
    define_coordinator,
    define_runtime,
    define_specialist,
    define_tool,
)

Event = dict[str, Any]
Calls = list[tuple[dict[str, Any], dict[str, Any]]]


def pay_tool(paid: list[dict[str, Any]], **options: Any) -> Any:
    """The ``pay`` tool with ``options`` (approval, binding_id) passed to define_tool."""
    pay = define_tool("pay", {"amount": int, "to": str}, description="Pay a supplier.", **options)

    @pay
    def _pay(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        paid.append(args)
        return {"paid": args["amount"], "to": args["to"]}

    return _pay


def payments_spec(
    tools: list[Any],
    *,
    worker: dict[str, Any] | None = None,
    tenant: str = "acme",
    **runtime_options: Any,
) -> Any:
    """A coordinator routing to a ``worker`` specialist that has ``tools``."""
    specialist = define_specialist(
        name="worker",
        model="claude-haiku-4-5",
        prompt="You pay suppliers.",
        tools=tools,
        **(worker or {}),
    )
    coordinator = define_coordinator(
        name="boss",
        model="claude-sonnet-4-6",
        routes=["worker"],
        prompt="Route payments to the worker.",
    )
    return define_runtime(
        tenant=(tenant, "v1"),
        agents=[coordinator, specialist],
        providers={"anthropic": {"apiKey": "unused"}},
        **runtime_options,
    )


def worker_calls(*calls: dict[str, Any]) -> str:
    """A coordinator script handing the worker a script of ``calls``."""
    nested = json.dumps({"script": list(calls)})
    return json.dumps(
        {"script": [{"tool": "call_agent", "args": {"agent": "worker", "prompt": nested}}]}
    )


def pay_prompt(amount: int = 120, tool: str = "pay") -> str:
    return worker_calls({"tool": tool, "args": {"amount": amount, "to": "bob"}})


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


def tool_events(events: list[Event], tool: str = "pay") -> list[tuple[str, str]]:
    """The tool's call/result and the approval events, in stream order."""
    seen = []
    for e in events:
        if e["type"] == "tool-invocation" and e["toolName"] == tool:
            seen.append((e["type"], e["state"]))
        elif e["type"] in ("approval-required", "approval-decision"):
            seen.append((e["type"], ""))
    return seen


GATED = [
    ("tool-invocation", "call"),
    ("approval-required", ""),
    ("approval-decision", ""),
    ("tool-invocation", "result"),
]
UNGATED = [("tool-invocation", "call"), ("tool-invocation", "result")]


async def run_and_approve(runtime: Any, prompt: str, thread_id: str) -> list[Event]:
    """Iterate a query, approving every gate from inside the loop."""
    events = []
    async for event in runtime.query(prompt, thread_id=thread_id):
        events.append(event)
        if event["type"] == "approval-required":
            await runtime.respond_to_approval(event["data"]["id"], "approve")
    return events


# --- approve / reject / revise ----------------------------------------------------------------


async def test_approve_runs_the_handler_and_the_original_stream_continues() -> None:
    paid: list[dict[str, Any]] = []
    hooked: list[Event] = []
    runtime = create_runtime(
        payments_spec([pay_tool(paid, approval="always")]),
        interpreter="scripted",
        event_hooks=[hooked.append],
    )
    paid_at_gate: list[dict[str, Any]] | None = None
    approval: dict[str, Any] = {}

    events = []
    async for event in runtime.query(pay_prompt(120), thread_id="t-approve"):
        events.append(event)
        if event["type"] == "approval-required":
            approval = event["data"]
            paid_at_gate = list(paid)
            await runtime.respond_to_approval(event["data"]["id"], "approve")

    assert paid_at_gate == []  # the handler never runs before an approve decision
    assert paid == [{"amount": 120, "to": "bob"}]
    assert tool_events(events) == GATED
    call = next(e for e in events if e["type"] == "tool-invocation" and e["toolName"] == "pay")
    assert isinstance(approval["id"], str)
    assert approval["id"]
    assert approval["kind"] == "tool"
    assert approval["target"] == "pay"
    assert approval["payload"] == {"amount": 120, "to": "bob"}
    assert approval["resourceId"] == "acme"
    assert approval["threadId"] == "t-approve"
    assert approval["correlationId"] == call["toolInvocationId"]
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"]["id"] == approval["id"]
    assert decision["data"]["outcome"] == {"outcome": "approve"}
    (result,) = [
        e
        for e in events
        if e["type"] == "tool-invocation" and e["toolName"] == "pay" and e["state"] == "result"
    ]
    assert result["result"] == {"paid": 120, "to": "bob"}
    # The same stream went on to the end of the run.
    assert [e["finishReason"] for e in of_type(events, "finish")] == ["stop"]
    assert (events[-1]["type"], events[-1]["agentName"], events[-1]["state"]) == (
        "tool-agent",
        "boss",
        "result",
    )
    # Event hooks are called synchronously with every event dict, the gate's included.
    assert hooked == events


@pytest.mark.parametrize("outcome", ["reject", "revise"])
async def test_reject_and_revise_never_run_the_handler_and_the_model_sees_the_feedback(
    outcome: str,
) -> None:
    paid: list[dict[str, Any]] = []
    runtime = create_runtime(
        payments_spec([pay_tool(paid, approval="always")]), interpreter="scripted"
    )
    partial = {"amount": 50} if outcome == "revise" else None

    events = []
    async for event in runtime.query(pay_prompt(120), thread_id=f"t-{outcome}"):
        events.append(event)
        if event["type"] == "approval-required":
            await runtime.respond_to_approval(
                event["data"]["id"], outcome, "over this week's budget", partial
            )

    assert paid == []
    assert tool_events(events) == GATED
    (decision,) = of_type(events, "approval-decision")
    expected_outcome: dict[str, Any] = {"outcome": outcome}
    if partial is not None:
        expected_outcome["partial"] = partial
    assert decision["data"]["outcome"] == expected_outcome
    assert decision["data"]["feedback"] == "over this week's budget"
    # For tools, revise counts as reject: an error result containing the feedback.
    (result,) = [
        e
        for e in events
        if e["type"] == "tool-invocation" and e["toolName"] == "pay" and e["state"] == "result"
    ]
    assert "over this week's budget" in json.dumps(result["result"])
    assert [e["finishReason"] for e in of_type(events, "finish")] == ["stop"]


async def test_a_gate_in_a_directly_run_specialist_with_an_async_handler() -> None:
    paid: list[dict[str, Any]] = []
    transfer = define_tool("transfer", {"amount": int}, approval="always")

    @transfer
    async def _transfer(args: dict[str, Any], ctx: Any) -> dict[str, int]:
        paid.append(args)
        return {"sent": args["amount"]}

    runtime = create_runtime(payments_spec([_transfer]), interpreter="scripted")
    prompt = json.dumps({"tool": "transfer", "args": {"amount": 9}})

    events = []
    async for event in runtime.run_specialist("worker", prompt, thread_id="t-direct"):
        events.append(event)
        if event["type"] == "approval-required":
            assert event["data"]["threadId"] == "t-direct"
            await runtime.respond_to_approval(event["data"]["id"], "approve")

    assert paid == [{"amount": 9}]
    assert tool_events(events, "transfer") == GATED
    assert [e["finishReason"] for e in of_type(events, "finish")] == ["stop"]


async def test_respond_to_approval_errors_not_found_already_resolved_and_cross_tenant() -> None:
    paid: list[dict[str, Any]] = []
    runtime = create_runtime(
        payments_spec([pay_tool(paid, approval="always")]), interpreter="scripted"
    )
    elsewhere = create_runtime(
        payments_spec([pay_tool([], approval="always")], tenant="globex"), interpreter="scripted"
    )
    errors: dict[str, BaseException] = {}

    async for event in runtime.query(pay_prompt(), thread_id="t-errors"):
        if event["type"] != "approval-required":
            continue
        approval_id = event["data"]["id"]
        with pytest.raises(Exception) as unknown:  # noqa: PT011 - the seed names no type
            await runtime.respond_to_approval(approval_id + "-nope", "approve")
        errors["unknown"] = unknown.value
        with pytest.raises(Exception) as cross:  # noqa: PT011
            await elsewhere.respond_to_approval(approval_id, "approve")
        errors["cross-tenant"] = cross.value
        with pytest.raises(ValueError, match="maybe"):
            await runtime.respond_to_approval(approval_id, "maybe")  # type: ignore[arg-type]
        await runtime.respond_to_approval(approval_id, "approve")
        with pytest.raises(Exception) as twice:  # noqa: PT011
            await runtime.respond_to_approval(approval_id, "reject")
        errors["resolved"] = twice.value

    # Another tenant's approval reads exactly like an unknown one.
    assert type(errors["cross-tenant"]) is type(errors["unknown"])
    assert type(errors["resolved"]) is not type(errors["unknown"])
    assert paid == [{"amount": 120, "to": "bob"}]  # the first decision won


# --- the hierarchy: runtime floor < agent patch < tool rule < agent tool_approvals -----------


@pytest.mark.parametrize(
    ("runtime_options", "worker", "tool_approval", "gated"),
    [
        # The tool's own rule beats the runtime floor ...
        ({"approval_policies": ApprovalPolicies(tools="always")}, {}, "never", False),
        ({"approval_policies": ApprovalPolicies(tools="never")}, {}, "always", True),
        # ... and the agent's patch.
        ({}, {"approval": ApprovalPolicyPatch(tools="always")}, "never", False),
        ({}, {"approval": ApprovalPolicyPatch(tools="never")}, "always", True),
        # The agent's tool_approvals entry beats the tool's own rule.
        ({}, {"tool_approvals": {"pay": "always"}}, "never", True),
        ({}, {"tool_approvals": {"pay": "never"}}, "always", False),
        # Overrides tighten or relax whatever the agent and the tool declare.
        (
            {"approval_overrides": ApprovalOverrides(tools={"worker": {"pay": "always"}})},
            {"tool_approvals": {"pay": "never"}},
            "never",
            True,
        ),
        (
            {"approval_overrides": ApprovalOverrides(tools={"worker": {"pay": "never"}})},
            {"tool_approvals": {"pay": "always"}},
            "always",
            False,
        ),
    ],
)
async def test_the_most_specific_rule_wins(
    runtime_options: dict[str, Any], worker: dict[str, Any], tool_approval: str, gated: bool
) -> None:
    paid: list[dict[str, Any]] = []
    spec = payments_spec([pay_tool(paid, approval=tool_approval)], worker=worker, **runtime_options)
    runtime = create_runtime(spec, interpreter="scripted")

    events = await run_and_approve(runtime, pay_prompt(), "t-rules")

    assert tool_events(events) == (GATED if gated else UNGATED)
    assert paid == [{"amount": 120, "to": "bob"}]


def test_overrides_for_unknown_agents_are_rejected() -> None:
    tools = [pay_tool([], approval="never")]
    with pytest.raises(ValueError, match="ghost"):
        payments_spec(
            tools,
            approval_overrides=ApprovalOverrides(
                agents={"ghost": ApprovalPolicyPatch(tools="always")}
            ),
        )
    with pytest.raises(ValueError, match="ghost"):
        payments_spec(
            tools, approval_overrides=ApprovalOverrides(tools={"ghost": {"pay": "always"}})
        )


# --- dynamic predicates ----------------------------------------------------------------------


def seed_ctx(ctx: Any) -> dict[str, Any]:
    """The seed's predicate ctx ``{kind, target, tenant}`` (fields added beside are allowed)."""
    return {key: ctx[key] for key in ("kind", "target", "tenant")}


LARGE_PAYMENT = {"kind": "dynamic", "value": "large_payment"}


@pytest.mark.parametrize(
    ("tool_approval", "worker", "runtime_options"),
    [
        (LARGE_PAYMENT, {}, {}),
        ("never", {"tool_approvals": {"pay": LARGE_PAYMENT}}, {}),
        (
            "never",
            {},
            {"approval_overrides": ApprovalOverrides(tools={"worker": {"pay": LARGE_PAYMENT}})},
        ),
    ],
    ids=["tool", "tool_approvals", "override"],
)
async def test_a_dynamic_rule_by_id_asks_its_registered_predicate(
    tool_approval: Any, worker: dict[str, Any], runtime_options: dict[str, Any]
) -> None:
    paid: list[dict[str, Any]] = []
    seen: Calls = []

    def large_payment(args: dict[str, Any], ctx: Any) -> bool:
        seen.append((args, seed_ctx(ctx)))
        return bool(args["amount"] > 100)

    spec = payments_spec([pay_tool(paid, approval=tool_approval)], worker=worker, **runtime_options)
    runtime = create_runtime(
        spec, interpreter="scripted", approval_predicates={"large_payment": large_payment}
    )

    large = await run_and_approve(runtime, pay_prompt(120), "t-large")
    small = await run_and_approve(runtime, pay_prompt(20), "t-small")

    assert seen == [
        ({"amount": 120, "to": "bob"}, {"kind": "tool", "target": "pay", "tenant": "acme"}),
        ({"amount": 20, "to": "bob"}, {"kind": "tool", "target": "pay", "tenant": "acme"}),
    ]
    assert tool_events(large) == GATED
    assert tool_events(small) == UNGATED
    assert paid == [{"amount": 120, "to": "bob"}, {"amount": 20, "to": "bob"}]


async def test_a_callable_rule_is_the_predicate_itself() -> None:
    paid: list[dict[str, Any]] = []
    seen: Calls = []

    def large_payment(args: dict[str, Any], ctx: Any) -> bool:
        seen.append((args, seed_ctx(ctx)))
        return bool(args["amount"] > 100)

    runtime = create_runtime(
        payments_spec([pay_tool(paid, approval=large_payment)]), interpreter="scripted"
    )

    large = await run_and_approve(runtime, pay_prompt(120), "t-large")
    small = await run_and_approve(runtime, pay_prompt(20), "t-small")

    assert tool_events(large) == GATED
    assert tool_events(small) == UNGATED
    assert [ctx for _, ctx in seen] == [{"kind": "tool", "target": "pay", "tenant": "acme"}] * 2


@pytest.mark.parametrize(
    ("binding_id", "rule_id"), [(None, "pay_approval"), ("big_money", "big_money")]
)
async def test_a_callable_rule_is_registered_as_a_dynamic_id(
    binding_id: str | None, rule_id: str
) -> None:
    # SEED-REFERENCE §1.1: a callable becomes a dynamic rule whose id is binding_id or
    # <name>_approval, with the callable as its handler. So the agent may gate another tool
    # with that id without passing approval_predicates (an unregistered id would fail
    # create_runtime).
    refunded: list[dict[str, Any]] = []
    refund = define_tool("refund", {"amount": int, "to": str})

    @refund
    def _refund(args: dict[str, Any], ctx: Any) -> str:
        refunded.append(args)
        return "refunded"

    def large(args: dict[str, Any], ctx: Any) -> bool:
        return bool(args["amount"] > 100)

    spec = payments_spec(
        [pay_tool([], approval=large, binding_id=binding_id), _refund],
        worker={"tool_approvals": {"refund": {"kind": "dynamic", "value": rule_id}}},
    )
    runtime = create_runtime(spec, interpreter="scripted")

    large_refund = await run_and_approve(runtime, pay_prompt(500, tool="refund"), "t-large")
    small_refund = await run_and_approve(runtime, pay_prompt(5, tool="refund"), "t-small")

    # The callable decides the refund's gate: only the large refund waits for a human.
    assert tool_events(large_refund, "refund") == GATED
    assert tool_events(small_refund, "refund") == UNGATED
    assert refunded == [{"amount": 500, "to": "bob"}, {"amount": 5, "to": "bob"}]


def test_a_tool_spec_keeps_the_callable_as_its_approval_handler() -> None:
    def large(args: dict[str, Any], ctx: Any) -> bool:
        return bool(args["amount"] > 100)

    pay = define_tool("pay", {"amount": int}, approval=large)

    assert pay.approval_handler is large  # type: ignore[attr-defined]


@pytest.mark.parametrize("form", ["by-id", "callable"])
async def test_a_predicate_that_raises_requires_approval(form: str) -> None:
    paid: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []

    def broken(args: dict[str, Any], ctx: Any) -> bool:
        asked.append(args)
        raise RuntimeError("the limits service is down")

    if form == "by-id":
        spec = payments_spec(
            [pay_tool(paid)],
            worker={"tool_approvals": {"pay": {"kind": "dynamic", "value": "limits"}}},
        )
        runtime = create_runtime(
            spec, interpreter="scripted", approval_predicates={"limits": broken}
        )
    else:
        runtime = create_runtime(
            payments_spec([pay_tool(paid, approval=broken)]), interpreter="scripted"
        )

    events = await run_and_approve(runtime, pay_prompt(1), "t-broken")

    assert asked == [{"amount": 1, "to": "bob"}]
    assert tool_events(events) == GATED
    assert paid == [{"amount": 1, "to": "bob"}]


NIGHT_SHIFT = {"kind": "dynamic", "value": "night_shift"}


@pytest.mark.parametrize(
    ("tool_approval", "worker", "runtime_options"),
    [
        (NIGHT_SHIFT, {}, {}),
        ("never", {}, {"approval_policies": ApprovalPolicies(tools=NIGHT_SHIFT)}),
        ("never", {}, {"approval_policies": ApprovalPolicies(plans=NIGHT_SHIFT)}),
        ("never", {"approval": ApprovalPolicyPatch(tools=NIGHT_SHIFT)}, {}),
        ("never", {"tool_approvals": {"pay": NIGHT_SHIFT}}, {}),
        (
            "never",
            {},
            {
                "approval_overrides": ApprovalOverrides(
                    agents={"worker": ApprovalPolicyPatch(tools=NIGHT_SHIFT)}
                )
            },
        ),
        (
            "never",
            {},
            {"approval_overrides": ApprovalOverrides(tools={"worker": {"pay": NIGHT_SHIFT}})},
        ),
    ],
    ids=[
        "tool",
        "policies-tools",
        "policies-plans",
        "agent-approval",
        "tool_approvals",
        "override-agents",
        "override-tools",
    ],
)
def test_an_unregistered_dynamic_id_fails_create_runtime(
    tool_approval: Any, worker: dict[str, Any], runtime_options: dict[str, Any]
) -> None:
    spec = payments_spec([pay_tool([], approval=tool_approval)], worker=worker, **runtime_options)

    # The seed names no exception type for this failure; the message must name the id.
    with pytest.raises(Exception, match="night_shift"):
        create_runtime(spec, interpreter="scripted")
    with pytest.raises(Exception, match="night_shift"):
        create_runtime(
            spec, interpreter="scripted", approval_predicates={"other": lambda args, ctx: True}
        )
    create_runtime(
        spec, interpreter="scripted", approval_predicates={"night_shift": lambda a, c: False}
    )
