"""The app the connected tool-worker tests run in tool-worker processes (``--app
tool_worker_app:runtime``).

Its handlers leave evidence in Redis under the namespace ``ns`` their arguments name (the
test's topic prefix) so the test can count side effects per invocation. They do not guard
against repeats themselves: exactly-once is the worker's job (claims and recorded results).

- ``effect``: the side effect: HINCRBY ``<ns>:effects`` <key> 1, RPUSH to
  ``<ns>:log``, and HINCRBY ``<ns>:pids`` <pid> 1 (which worker did it).
- ``block_once``: its first call ever says where it runs (SET ``<ns>:blocked`` <pid>) and
  then blocks forever, before any side effect; every later call does the ``effect`` one.
- ``charge`` and ``pay`` (``delivery="at_most_once"``): each call notes its
  ``ctx.idempotency_key`` (RPUSH ``<ns>:keys``) and does the ``effect``; the first call ever
  then says where it runs (SET ``<ns>:blocked`` <pid>) and blocks forever: the side effect
  happened, its result is not recorded (the crash window).
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
    pipe.rpush(f"{ns}:log", key)
    pipe.hincrby(f"{ns}:pids", str(os.getpid()), 1)
    count, _, _ = pipe.execute()
    ctx.progress("done", fraction=1.0)
    return {"key": key, "count": count}


def _block_once(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ns = args["ns"]
    if _redis.set(f"{ns}:started:{args['key']}", os.getpid(), nx=True):
        _redis.set(f"{ns}:blocked", os.getpid())
        _never.wait()  # until kill -9
    return _effect(args, ctx)


def _effect_then_block_once(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ns = args["ns"]
    _redis.rpush(f"{ns}:keys", ctx.idempotency_key)
    done = _effect(args, ctx)
    if _redis.set(f"{ns}:started:{args['key']}", os.getpid(), nx=True):
        _redis.set(f"{ns}:blocked", os.getpid())
        _never.wait()  # until kill -9
    return done


effect = define_tool("effect", {"ns": str, "key": str}).bind(_effect)
block_once = define_tool("block_once", {"ns": str, "key": str}).bind(_block_once)
charge = define_tool("charge", {"ns": str, "key": str}).bind(_effect_then_block_once)
pay = define_tool("pay", {"ns": str, "key": str}, delivery="at_most_once").bind(
    _effect_then_block_once
)
agent = define_specialist(
    name="worker",
    model="claude-haiku-4-5",
    prompt="Use the tools.",
    tools=[effect, block_once, charge, pay],
)
runtime = define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})
