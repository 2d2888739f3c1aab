"""The app of the plan-approval connected test, run by all three services
(``--app plan_approval_app:app``).

Tenant ``acme``. A coordinator routes to a planner, an executor and a clerk. The planner's
``find_products`` keeps the low-stock products as a reference (in Redis, through
``ctx.references``) and stores a typed restock plan citing it; plans always need approval.
The executor executes the approved plan through :func:`dispatch`, which receives the
products hydrated from Redis. The clerk's ``delete_rows`` is gated (approval always).

Side effects are counted in Redis under ``FLOWAI_TEST_NS`` (the test's topic prefix), so the
test can tell that each happened exactly once: ``<ns>:dispatched`` (plan id -> count,
``<ns>:ordered`` the skus ordered) and ``<ns>:deleted`` (table -> count).

``app.approvers`` lets only alice and bob decide for acme.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import pydantic
import redis

from flowai_harness import (
    ApprovalPolicies,
    TaggedUnion,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_reference,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness.references import ReferenceHandle
from flowai_harness.specs import RuntimeSpec

_redis = redis.Redis.from_url(os.environ.get("FLOWAI_REDIS_URL", "redis://127.0.0.1:6379/0"))

STOCK = [
    {"sku": "A-100", "name": "Espresso beans 1kg", "on_hand": 4},
    {"sku": "C-007", "name": "Cold brew concentrate", "on_hand": 0},
]


def _ns() -> str:
    return os.environ["FLOWAI_TEST_NS"]


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


PRODUCTS = define_reference("product_set", list[Product], glimpse=lambda v: {"count": len(v)})
RESTOCK = define_plan("restock", RestockPlan)


@define_tool("find_products", {}, description="Low-stock products, as a product_set reference.")
def find_products(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    handle: dict[str, Any] = ctx.references.create(PRODUCTS, STOCK)
    return handle


@define_tool("delete_rows", {"table": str}, description="Delete a table's rows.", approval="always")
def delete_rows(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    count = _redis.hincrby(f"{_ns()}:deleted", args["table"], 1)
    return {"deleted": args["table"], "times": count}


def big_export(args: dict[str, Any], ctx: Any) -> bool:
    """A dynamic rule: exports of more than 100 rows need a human."""
    return bool(args["rows"] > 100)


@define_tool("export_rows", {"rows": int}, description="Export rows.", approval=big_export)
def export_rows(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    count = _redis.hincrby(f"{_ns()}:exported", str(args["rows"]), 1)
    return {"exported": args["rows"], "times": count}


def dispatch(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]:
    """The action dispatcher: orders every referenced product, once per plan."""
    products = ctx["resolved_refs"]["product_set"]
    ordered = [
        product["sku"]
        for action in actions
        if action["kind"] == "reorder_products"
        for product in products[action["payload"]["products"]["id"]]
    ]
    pipe = _redis.pipeline()
    pipe.hincrby(f"{_ns()}:dispatched", ctx["plan_id"], 1)
    pipe.rpush(f"{_ns()}:ordered", *ordered)
    pipe.execute()
    return {"entitiesAffected": len(ordered), "summary": f"ordered {', '.join(ordered)}"}


def app() -> RuntimeSpec:
    agents = [
        define_coordinator(
            "boss",
            model="claude-sonnet-4-6",
            prompt="Route planning, execution and clerical work.",
            routes=["planner", "executor", "clerk", "night_clerk"],
        ),
        define_planner(
            "planner",
            model="claude-sonnet-4-6",
            prompt="Plan restocks.",
            plan=RESTOCK,
            tools=[find_products],
        ),
        define_executor(
            "executor", model="claude-haiku-4-5", prompt="Execute approved plans.", plan=RESTOCK
        ),
        define_specialist(
            "clerk", model="claude-haiku-4-5", prompt="Clean tables.", tools=[delete_rows]
        ),
        # Approvals raised by the night clerk expire after half a second.
        define_specialist(
            "night_clerk",
            model="claude-haiku-4-5",
            prompt="Clean tables at night; export on request.",
            tools=[delete_rows, export_rows],
            approval_timeout=0.5,
        ),
    ]
    return define_runtime(
        ("acme", "v1"),
        agents=agents,
        providers={"anthropic": {}},
        plans=[RESTOCK],
        references=[PRODUCTS],
        approval_policies=ApprovalPolicies(plans="always", tools="never"),
    )


app.action_dispatcher = dispatch  # type: ignore[attr-defined]
app.approvers = {"acme": {"alice", "bob"}}  # type: ignore[attr-defined]
