"""The app the live-model connected tests run in service processes (``--app live_app:spec``)
and in the test process (``make_spec()``).

Tenant ``acme``. Every model is live; the providers' base URLs are the test's fake provider
server (``FAKE_ANTHROPIC_URL``, ``FAKE_OPENAI_URL``). Agents: ``router`` (coordinator) routes
to ``analyst`` (tool ``add``; retries fast, falls back to an OpenAI model) and ``clerk`` (tool
``pay``, which always asks for approval, and ``transfer``, which needs two approvers).
"""

from __future__ import annotations

import os
from typing import Any

from flowai_harness import (
    RequireApprovers,
    RetryPolicy,
    RuntimeSpec,
    define_coordinator,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


@define_tool("pay", {"amount": int}, description="Pay an amount.", approval="always")
def pay(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"paid": args["amount"]}


@define_tool("transfer", {"amount": int}, description="Move money.", approval=RequireApprovers(2))
def transfer(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"moved": args["amount"]}


FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.2, request_timeout=60)


def make_spec() -> RuntimeSpec:
    router = define_coordinator(
        name="router",
        model="claude-sonnet-4-6",
        prompt="Route sums to the analyst and payments to the clerk.",
        routes=["analyst", "clerk"],
        retry=FAST_RETRY,
    )
    analyst = define_specialist(
        name="analyst",
        model="claude-sonnet-4-6",
        prompt="Add with the add tool.",
        tools=[add],
        retry=FAST_RETRY,
        fallback=["gpt-5-mini"],
    )
    clerk = define_specialist(
        name="clerk",
        model="claude-haiku-4-5",
        prompt="Pay with the pay tool; move money with transfer.",
        tools=[pay, transfer],
        retry=FAST_RETRY,
    )
    unreachable = "http://127.0.0.1:9"
    return define_runtime(
        tenant=define_tenant("acme", "v1"),
        agents=[router, analyst, clerk],
        providers={
            "anthropic": {
                "apiKey": "fake-key",
                "baseUrl": os.environ.get("FAKE_ANTHROPIC_URL", unreachable),
            },
            "openai": {
                "apiKey": "fake-key",
                "baseUrl": os.environ.get("FAKE_OPENAI_URL", unreachable),
            },
        },
    )


spec = make_spec()
