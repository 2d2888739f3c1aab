"""The app the live-model connected tests run in service processes (``--app live_app:spec``).

Tenant ``acme``; one specialist on a live Anthropic model whose base URL is the test's fake
provider server (``FAKE_ANTHROPIC_URL``), with one tool (``add``).
"""

from __future__ import annotations

import os
from typing import Any

from flowai_harness import (
    RetryPolicy,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


analyst = define_specialist(
    name="analyst",
    model="claude-sonnet-4-6",
    prompt="Add with the add tool.",
    tools=[add],
    retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.2, request_timeout=60),
)
spec = define_runtime(
    tenant=define_tenant("acme", "v1"),
    agents=[analyst],
    providers={
        "anthropic": {
            "apiKey": "fake-key",
            "baseUrl": os.environ.get("FAKE_ANTHROPIC_URL", "http://127.0.0.1:9"),
        }
    },
)
