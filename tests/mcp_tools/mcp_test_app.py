"""The app the MCP serving tests serve (``flowai mcp python mcp_test_app:runtime``).

Agent ``clerk`` (a specialist) has ``add`` (structured output), ``pay`` (needs approval
always), ``refund`` (needs approval when the amount is over 100, a predicate) and ``nap``
(sleeps, to run past a call's time limit). ``MCP_TEST_RUNLOG`` names the folder of its run
logs, so a test can replay what a served call logged; ``MCP_TEST_LOG`` is where ``pay`` and
``refund`` would leave their side effect.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from flowai_harness import (
    Runtime,
    ToolContext,
    create_runtime,
    define_executor,
    define_plan,
    define_runtime,
    define_specialist,
    define_tool,
)


def _side_effect(what: str) -> str:
    with open(os.environ["MCP_TEST_LOG"], "a") as out:
        out.write(what + "\n")
    return what


def _add(args: dict[str, Any], ctx: ToolContext) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


async def _nap(args: dict[str, Any], ctx: ToolContext) -> str:
    await asyncio.sleep(args["seconds"])
    return "rested"


add = define_tool(
    "add",
    {"a": int, "b": int},
    description="Add two integers.",
    output_schema={
        "type": "object",
        "properties": {"sum": {"type": "integer"}},
        "required": ["sum"],
    },
).bind(_add)
pay = define_tool("pay", {"amount": int}, description="Pay an amount.", approval="always").bind(
    lambda args, ctx: _side_effect(f"paid {args['amount']}")
)
refund = define_tool(
    "refund",
    {"amount": int},
    description="Refund an amount.",
    approval=lambda args, ctx: args["amount"] > 100,
).bind(lambda args, ctx: _side_effect(f"refunded {args['amount']}"))
nap = define_tool("nap", {"seconds": float}, description="Sleep a while.").bind(_nap)

clerk = define_specialist(
    name="clerk", model="claude-haiku-4-5", prompt="Use the tools.", tools=[add, pay, refund, nap]
)
executor = define_executor(
    name="executor",
    model="claude-haiku-4-5",
    prompt="Run approved plans.",
    plan=define_plan("refunds", {"type": "object", "properties": {"actions": {"type": "array"}}}),
    tools=[add],
)
spec = define_runtime(tenant=("acme", "v1"), agents=[clerk, executor], providers={"anthropic": {}})


def runtime() -> Runtime:
    return create_runtime(spec, log_path=os.environ.get("MCP_TEST_RUNLOG"))
