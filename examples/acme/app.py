"""The Acme restocking agents: a coordinator routes to a planner, an executor and a data analyst.

The planner finds low-stock products (kept as a reference, out of the model's context and the
run log), then stores a typed restock plan (a draft) whose actions point at that reference. The
executor's `executePlan` waits at the plans gate (plans need approval); once approved, the
action dispatcher runs it and receives the products themselves (`ctx["resolved_refs"]`).

`build_runtime()` gives the runtime; `restock_prompt()` the scripted conversation the demo and
the tests run (the scripted interpreter stands in for a model: a real one would copy the
reference handle from the tool result instead of computing it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from flowai_harness import (
    ApprovalPolicies,
    TaggedUnion,
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_reference,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
    layered_prompt,
)
from flowai_harness.references import reference_id
from flowai_harness.runtime import Runtime
from flowai_harness.specs import RuntimeSpec

TENANT = "acme"

# The warehouse the tools read: sku -> (name, on hand, reorder point).
WAREHOUSE: dict[str, tuple[str, int, int]] = {
    "A-100": ("Espresso beans 1kg", 4, 20),
    "A-200": ("Oat milk 1l", 40, 30),
    "B-310": ("Paper cups 12oz", 120, 500),
    "C-007": ("Cold brew concentrate", 0, 10),
}


class Product(BaseModel):
    sku: str
    name: str
    on_hand: int
    reorder_point: int


class RefHandle(BaseModel):
    kind: Literal["product_set"]
    id: str


class ReorderProducts(BaseModel):
    kind: Literal["reorder_products"]
    products: RefHandle
    quantity: int = Field(ge=1)


class HoldInventory(BaseModel):
    kind: Literal["hold_inventory"]
    products: RefHandle
    reason: str


class RestockPlan(BaseModel):
    summary: str
    actions: list[TaggedUnion(ReorderProducts, HoldInventory)]  # type: ignore[valid-type]


PRODUCT_SET = define_reference("product_set", list[Product], ttl_ms=24 * 3600 * 1000)
RESTOCK_PLAN = define_plan(
    "restock_plan",
    RestockPlan,
    display_aliases={
        "draft": "Proposed",
        "pending_approval": "Awaiting sign-off",
        "approved": "Signed off",
        "executing": "Ordering",
        "executed": "Ordered",
        "failed": "Failed",
    },
)


def low_stock(warehouse: str) -> list[Product]:
    return [
        Product(sku=sku, name=name, on_hand=on_hand, reorder_point=point)
        for sku, (name, on_hand, point) in sorted(WAREHOUSE.items())
        if on_hand < point
    ]


@define_tool(
    "find_low_stock_products",
    {"warehouse": str},
    description="Products below their reorder point, as a product_set reference.",
)
def find_low_stock_products(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    handle: dict[str, Any] = ctx.references.create(PRODUCT_SET, low_stock(args["warehouse"]))
    return handle


@define_tool("inventory_summary", {}, description="Counts of products and units on hand.")
def inventory_summary(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {
        "products": len(WAREHOUSE),
        "units": sum(on_hand for _, on_hand, _ in WAREHOUSE.values()),
    }


def build_spec() -> RuntimeSpec:
    planner = define_planner(
        name="planner",
        model="claude-sonnet-4-6",
        prompt=layered_prompt(
            identity="You plan restocking for Acme's warehouses.",
            operational_rules=[
                "Find low-stock products first; refer to them by their reference handle.",
                "Store one restock_plan; a human approves it before anything is ordered.",
            ],
        ),
        plan=RESTOCK_PLAN,
        tools=[find_low_stock_products],
    )
    executor = define_executor(
        name="executor",
        model="claude-haiku-4-5",
        prompt="You execute stored plans with executePlan; a human approves each first.",
        plan=RESTOCK_PLAN,
    )
    analyst = define_specialist(
        name="data_analyst",
        model="claude-haiku-4-5",
        prompt="You answer inventory questions.",
        tools=[inventory_summary],
    )
    coordinator = define_coordinator(
        name="acme_coordinator",
        model="claude-sonnet-4-6",
        routes=["planner", "executor", "data_analyst"],
        prompt=(
            "Route restocking to the planner, execution to the executor, questions to data_analyst."
        ),
    )
    return define_runtime(
        tenant=define_tenant(TENANT, "v1"),
        agents=[coordinator, planner, executor, analyst],
        providers={"anthropic": {"apiKeyEnv": "ANTHROPIC_API_KEY"}},
        references=[PRODUCT_SET],
        approval_policies=ApprovalPolicies(plans="always", tools="never"),
    )


Orders = list[dict[str, Any]]


def make_dispatcher(orders: Orders) -> Callable[[list[dict[str, Any]], dict[str, Any]], Any]:
    """The action dispatcher: places orders and holds with the hydrated products."""

    def dispatch(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]:
        product_sets = ctx["resolved_refs"]["product_set"]
        affected = 0
        for action in actions:
            payload = action["payload"]
            products = product_sets[payload["products"]["id"]]
            for product in products:
                orders.append(
                    {"action": action["kind"], "sku": product["sku"], **_details(payload)}
                )
                affected += 1
        return {"entitiesAffected": affected, "summary": f"{affected} order lines"}

    return dispatch


def _details(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k in ("quantity", "reason")}


def build_runtime(orders: Orders, log_path: str | os.PathLike[str] | None = None) -> Runtime:
    return create_runtime(
        build_spec(),
        interpreter="scripted",
        action_dispatcher=make_dispatcher(orders),
        log_path=log_path,
    )


def products_handle(warehouse: str = "main") -> dict[str, str]:
    """The handle find_low_stock_products will return (ids are content addresses)."""
    value = [p.model_dump(mode="json") for p in low_stock(warehouse)]
    return {"kind": "product_set", "id": reference_id(TENANT, "product_set", value)}


def restock_prompt(plan_id: str = "restock-1") -> str:
    """The scripted conversation: plan (a draft), then execute (stops at the approval gate)."""
    handle = products_handle()
    plan = {
        "summary": "Reorder what is below its reorder point; hold cold brew for QA.",
        "actions": [
            {"kind": "reorder_products", "products": handle, "quantity": 50},
            {"kind": "hold_inventory", "products": handle, "reason": "QA check before sale"},
        ],
    }
    planner = {
        "script": [
            {"tool": "find_low_stock_products", "args": {"warehouse": "main"}},
            {
                "tool": "storePlan",
                "args": {"specName": "restock_plan", "planId": plan_id, "body": plan},
            },
        ]
    }
    executor = {"tool": "executePlan", "args": {"planId": plan_id}}
    return json.dumps(
        {
            "script": [
                {"tool": "call_agent", "args": {"agent": "planner", "prompt": json.dumps(planner)}},
                {
                    "tool": "call_agent",
                    "args": {"agent": "executor", "prompt": json.dumps(executor)},
                },
            ]
        }
    )
