"""The app of the client-reach connected tests (``--app client_app:spec``).

Tenant ``acme``; one scripted specialist ``worker`` with a fast tool (``add``), a slow one
(``slow``) and a gated one (``wipe``, approval always), and a reference kind ``rows``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowai_harness import (
    define_reference,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


@define_tool("slow", {"ms": int}, description="Wait, then answer.")
async def slow(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    await asyncio.sleep(args["ms"] / 1000)
    return {"slept": args["ms"]}


@define_tool("wipe", {"table": str}, description="Delete a table's rows.", approval="always")
def wipe(args: dict[str, Any], ctx: Any) -> dict[str, str]:
    return {"wiped": args["table"]}


ROWS = define_reference("rows", list[int], glimpse=lambda value: {"count": len(value)})

worker = define_specialist(
    name="worker", model="claude-haiku-4-5", prompt="Use the tools.", tools=[add, slow, wipe]
)
spec = define_runtime(
    tenant=define_tenant("acme", "v1"),
    agents=[worker],
    providers={"anthropic": {}},
    references=[ROWS],
)
