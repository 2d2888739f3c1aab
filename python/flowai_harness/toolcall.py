"""One tool call: from a ``flowai.v1.ToolInvocation`` to the ``flowai.v1.ToolResult`` it gets.

Owns how a handler runs (its :class:`~flowai_harness.tools.ToolContext`, sync or async, how a
failure becomes an error result, how the output becomes JSON), so that the embedded runtime
and the tool workers give exactly the same ToolResult for the same handler outcome.

- :func:`run_tool_call` runs the handler and returns the ToolResult payload; never raises
  (a failed handler is a result the model sees, with the exception's ``code`` when it is a
  string, else ``TOOL_FAILED``).
- :func:`tool_result` builds the ToolResult envelope bytes; output that is not JSON becomes
  a ``TOOL_OUTPUT_INVALID`` error result.

Must not import the runtime, the native engine, the bus or any service.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

import orjson

from .references import ReferenceAccess
from .tools import ToolContext, ToolDefinition

__all__ = ["TOOL_FAILED", "TOOL_TIMEOUT", "error_body", "run_tool_call", "tool_result"]

TOOL_FAILED: Final = "TOOL_FAILED"
TOOL_TIMEOUT: Final = "TOOL_TIMEOUT"
TOOL_OUTPUT_INVALID: Final = "TOOL_OUTPUT_INVALID"
_TOOL_RESULT: Final = "flowai.v1.ToolResult"
_DUMPS_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    """Make the common non-JSON values tool handlers return JSON (orjson calls this)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (Decimal, PurePath)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def error_body(tool: str, exc: BaseException) -> dict[str, str]:
    """The ``error`` of a ToolResult for a handler that raised ``exc``."""
    code = getattr(exc, "code", None)
    return {
        "message": f"tool {tool!r} failed: {type(exc).__name__}: {exc}",
        # Only a str code is an error code (urllib's HTTPError.code is a status number);
        # anything else would make the engine refuse the result.
        "code": code if isinstance(code, str) and code else TOOL_FAILED,
    }


async def run_tool_call(
    tool: ToolDefinition,
    invocation: Mapping[str, Any],
    services: Mapping[str, Any],
    *,
    time_limit: float | None = None,
    references: ReferenceAccess | None = None,
) -> dict[str, Any]:
    """Run ``tool``'s handler for ``invocation`` (a ToolInvocation envelope as a dict).

    Returns the ToolResult payload: ``invocation_id``, ``tool_invocation_id``, then
    ``output`` or ``error``, and ``events`` when the handler emitted any. ``time_limit``
    (seconds) bounds an async handler; past it the result is a ``TOOL_TIMEOUT`` error.
    """
    call = invocation["payload"]
    ctx = ToolContext(
        call["tool_invocation_id"],
        call["tool"],
        invocation["thread_id"],
        invocation["run_id"],
        call["agent"],
        services,
        references=references,
    )
    payload: dict[str, Any] = {
        "invocation_id": invocation["id"],
        "tool_invocation_id": call["tool_invocation_id"],
    }
    deadline: asyncio.Timeout | None = None
    try:
        output = tool.handler(call["args"], ctx)  # type: ignore[misc]
        if inspect.isawaitable(output):
            if time_limit is None:
                output = await output
            else:
                async with asyncio.timeout(time_limit) as deadline:
                    output = await output
    except Exception as exc:  # the model sees the failure; the run goes on
        output = None
        if deadline is not None and deadline.expired():
            payload["error"] = {
                "message": f"tool {call['tool']!r} did not finish within {time_limit} s",
                "code": TOOL_TIMEOUT,
            }
        else:
            payload["error"] = error_body(call["tool"], exc)
    if ctx.events:
        payload["events"] = ctx.events
    if "error" not in payload:
        payload["output"] = output
    return payload


def tool_result(
    invocation: Mapping[str, Any], payload: dict[str, Any], *, id: str, ts: int
) -> bytes:
    """The ToolResult envelope answering ``invocation`` with ``payload``, as JSON bytes.

    Keyed like every thread message (``tenant/thread_id``) when published. Output that
    cannot be JSON becomes a ``TOOL_OUTPUT_INVALID`` error (the handler's events are dropped
    with it: they may be what failed).
    """
    body = {
        "schema": _TOOL_RESULT,
        "id": id,
        "tenant": invocation["tenant"],
        "thread_id": invocation["thread_id"],
        "run_id": invocation["run_id"],
        "causation_id": invocation["id"],
        "ts": ts,
        "payload": payload,
    }
    try:
        return orjson.dumps(body, default=_json_default, option=_DUMPS_OPTIONS)
    except TypeError as exc:
        tool = invocation["payload"]["tool"]
        body["payload"] = {
            "invocation_id": payload["invocation_id"],
            "tool_invocation_id": payload["tool_invocation_id"],
            "error": {
                "message": f"tool {tool!r} returned a value that is not JSON: {exc}; "
                "return dicts, lists, strings, numbers or Pydantic models",
                "code": TOOL_OUTPUT_INVALID,
            },
        }
        return orjson.dumps(body)
