"""The app the connected tests run in service processes (``--app flowai_test_app:spec``).

Tenant ``acme``; one scripted specialist with a fast tool (``add``) and a slow one (``slow``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowai_harness import define_runtime, define_specialist, define_tenant, define_tool


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


@define_tool("slow", {"ms": int}, description="Wait, then answer.")
async def slow(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    ctx.progress(f"sleeping {args['ms']} ms")
    await asyncio.sleep(args["ms"] / 1000)
    return {"slept": args["ms"]}


worker = define_specialist(
    name="worker", model="claude-haiku-4-5", prompt="Use the tools.", tools=[add, slow]
)
spec = define_runtime(
    tenant=define_tenant("acme", "v1"), agents=[worker], providers={"anthropic": {}}
)
