"""A small app for the distributed services: `--app service_app:runtime` (from examples/).

One agent with one tool. Run by hand or with compose (docs/services.md): the runtime service
decides, a tool worker runs `lookup_order`, the approval service handles approvals.
With the scripted interpreter a prompt is a JSON tool script, e.g.
`{"tool": "lookup_order", "args": {"order_id": "A-1001"}}`.
"""

from __future__ import annotations

from typing import Any

from flowai_harness import (
    ToolContext,
    define_runtime,
    define_specialist,
    define_tool,
)

ORDERS = {
    "A-1001": {"status": "shipped", "items": 3},
    "A-1002": {"status": "packing", "items": 1},
}


@define_tool("lookup_order", {"order_id": str}, description="Find an order by its id.")
def lookup_order(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ctx.progress(f"looking up {args['order_id']}", fraction=0.5)
    order = ORDERS.get(args["order_id"])
    if order is None:
        return {"found": False, "order_id": args["order_id"]}
    return {"found": True, "order_id": args["order_id"], **order}


support = define_specialist(
    name="support",
    model="claude-haiku-4-5",
    prompt="You answer questions about orders with the lookup_order tool.",
    tools=[lookup_order],
)

runtime = define_runtime(
    tenant=("acme", "v1"), agents=[support], providers={"anthropic": {"apiKey": "unused"}}
)
