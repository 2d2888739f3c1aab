"""The app of the inline-tool connected tests (``--app inline_tool_app:runtime``), for the
runtime service and the tool workers alike.

Its handlers leave evidence in Redis under the namespace ``ns`` their arguments name (the
test's topic prefix) and do not guard against repeats themselves: effectively-once is the
ledger's job.

- ``on_worker`` (placement "worker") and ``inline`` (placement "inline"): the side effect:
  HINCRBY ``<ns>:effects`` <key> 1, RPUSH ``<ns>:keys`` the call's ``ctx.idempotency_key``;
  the output names the process that ran it.
- ``inline_block_once`` (placement "inline"): notes its idempotency key, then its first call
  ever says where it runs (SET ``<ns>:blocked`` <pid>) and blocks forever, before the side
  effect; every later call does the side effect.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis

from flowai_harness import ToolContext, define_runtime, define_specialist, define_tool

_redis = redis.Redis.from_url(os.environ.get("FLOWAI_REDIS_URL", "redis://127.0.0.1:6379/0"))
_never = threading.Event()


def _effect(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ns, key = args["ns"], args["key"]
    pipe = _redis.pipeline()
    pipe.hincrby(f"{ns}:effects", key, 1)
    pipe.rpush(f"{ns}:keys", ctx.idempotency_key)
    count, _ = pipe.execute()
    return {"key": key, "count": count, "pid": os.getpid()}


def _block_once(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ns = args["ns"]
    _redis.rpush(f"{ns}:attempts", ctx.idempotency_key)
    if _redis.set(f"{ns}:started:{args['key']}", os.getpid(), nx=True):
        _redis.set(f"{ns}:blocked", os.getpid())
        _never.wait()  # until kill -9
    return _effect(args, ctx)


on_worker = define_tool("on_worker", {"ns": str, "key": str}).bind(_effect)
inline = define_tool("inline", {"ns": str, "key": str}, placement="inline").bind(_effect)
inline_block_once = define_tool(
    "inline_block_once", {"ns": str, "key": str}, placement="inline"
).bind(_block_once)
agent = define_specialist(
    name="worker",
    model="claude-haiku-4-5",
    prompt="Use the tools.",
    tools=[on_worker, inline, inline_block_once],
)
runtime = define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})
