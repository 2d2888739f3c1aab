"""The Acme example end to end with the scripted interpreter: approve, reject and revise at the
executor's plan gate (decided in the stream's loop body, as the example's users do), and the
action dispatcher receiving hydrated products."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from streams import check_stream, finish, of_type

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.acme.app import build_runtime, low_stock, restock_prompt

Event = dict[str, Any]


async def run(
    outcome: Literal["approve", "reject", "revise"],
) -> tuple[list[Event], list[dict[str, Any]]]:
    orders: list[dict[str, Any]] = []
    runtime = build_runtime(orders)
    events: list[Event] = []
    async for event in runtime.query(restock_prompt(), thread_id="acme-test"):
        events.append(event)
        if event["type"] == "approval-required":
            assert orders == []  # nothing is ordered before the decision
            partial = {"quantity": 20} if outcome == "revise" else None
            handed = await runtime.respond_to_approval(
                event["data"]["id"], outcome, "noted", partial, approver="qa"
            )
            assert handed is None  # this stream goes on
    check_stream(events)
    return events, orders


def plan_moves(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(e["data"]["from"], e["data"]["to"]) for e in of_type(events, "plan-status-change")]


def results(events: list[Event]) -> dict[str, Any]:
    return {e["toolName"]: e["result"] for e in of_type(events, "tool-invocation", state="result")}


async def test_approved_plan_is_executed_with_the_hydrated_products() -> None:
    events, orders = await run("approve")
    assert plan_moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "approved"),
        ("approved", "executing"),
        ("executing", "executed"),
    ]
    # The plan kind's display aliases ride along.
    assert [e["data"]["toAlias"] for e in of_type(events, "plan-status-change")] == [
        "Proposed",
        "Awaiting sign-off",
        "Signed off",
        "Ordering",
        "Ordered",
    ]
    (gate,) = of_type(events, "approval-required")
    assert (gate["data"]["kind"], gate["data"]["target"]) == ("plan", "restock-1")
    assert gate["data"]["agent"] == "executor"
    expected_skus = {p.sku for p in low_stock("main")}
    assert {o["sku"] for o in orders} == expected_skus
    assert {o["action"] for o in orders} == {"reorder_products", "hold_inventory"}
    (decision,) = of_type(events, "approval-decision")
    assert decision["data"]["approver"] == "qa"
    done = results(events)
    assert done["storePlan"] == {"planId": "restock-1", "status": "draft"}
    executed = done["executePlan"]
    assert executed["entitiesAffected"] == len(orders)
    assert executed["summary"] == f"{len(orders)} order lines"
    assert (executed["planId"], executed["status"]) == ("restock-1", "executed")
    assert executed["details"]["resolvedActions"] == gate["data"]["payload"]["actions"]
    assert finish(events)["finishReason"] == "stop"


@pytest.mark.parametrize("outcome", ["reject", "revise"])
async def test_a_plan_not_approved_goes_back_to_draft_and_nothing_is_ordered(
    outcome: Literal["reject", "revise"],
) -> None:
    events, orders = await run(outcome)
    assert plan_moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "draft"),
    ]
    assert orders == []
    done = results(events)
    assert done["storePlan"] == {"planId": "restock-1", "status": "draft"}
    if outcome == "revise":
        assert done["executePlan"] == {
            "rejected": True,
            "should_revise": True,
            "plan_id": "restock-1",
            "partial": {"quantity": 20},
            "feedback": "noted",
            "status": "draft",
        }
    else:
        assert done["executePlan"] == {
            "error": {"message": "Plan restock-1 rejected: noted", "code": "PLAN_REJECTED"}
        }
    assert finish(events)["finishReason"] == "stop"
