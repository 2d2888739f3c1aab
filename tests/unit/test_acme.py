"""The Acme example end to end with the scripted interpreter: approve, reject and revise at the
plan gate, and the action dispatcher receiving hydrated products."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from streams import check_stream

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.acme.app import build_runtime, low_stock, restock_prompt


async def run(outcome: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    orders: list[dict[str, Any]] = []
    runtime = build_runtime(orders)
    events: list[dict[str, Any]] = []
    async for event in runtime.query(restock_prompt(), thread_id="acme-test"):
        events.append(event)
        if event["type"] == "approval-required":
            partial = {"quantity": 20} if outcome == "revise" else None
            runtime.respond_to_approval(event["id"], outcome, "noted", partial, approver="qa")
    check_stream(events)
    return events, orders


def plan_moves(events: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(e["from"], e["to"]) for e in events if e["type"] == "plan-status-change"]


async def test_approved_plan_is_executed_with_the_hydrated_products() -> None:
    events, orders = await run("approve")
    assert plan_moves(events) == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "approved"),
        ("approved", "executing"),
        ("executing", "executed"),
    ]
    expected_skus = {p.sku for p in low_stock("main")}
    assert {o["sku"] for o in orders} == expected_skus
    assert {o["action"] for o in orders} == {"reorder_products", "hold_inventory"}
    decision = next(e for e in events if e["type"] == "approval-decision")
    assert decision["approver"] == "qa"
    assert events[-1]["type"] == "finish"


@pytest.mark.parametrize("outcome", ["reject", "revise"])
async def test_a_plan_not_approved_goes_back_to_draft_and_nothing_is_ordered(
    outcome: str,
) -> None:
    events, orders = await run(outcome)
    assert plan_moves(events)[-1] == ("pending_approval", "draft")
    assert orders == []
    results = {
        e["toolName"]: e
        for e in events
        if e["type"] == "tool-invocation" and e["state"] == "result"
    }
    store = results["storePlan"]["result"]
    if outcome == "revise":
        assert store["should_revise"] is True
        assert store["partial"] == {"quantity": 20}
    else:
        assert store["error"]["code"] == "PLAN_REJECTED"
    assert results["executePlan"]["result"]["error"]["code"] == "PLAN_INVALID_TRANSITION"
