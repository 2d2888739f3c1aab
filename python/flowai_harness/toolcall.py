"""One tool call: from a ``flowai.v1.ToolInvocation`` (or ``PlanStep``) to its ``ToolResult``.

Owns how a handler runs (its :class:`~flowai_harness.tools.ToolContext`, sync or async, how a
failure becomes an error result, how the output becomes JSON), how the executor's built-in
reference tools and the action dispatcher are answered, so that the embedded runtime and the
tool workers give exactly the same ToolResult for the same outcome.

- :func:`run_tool_call` runs the handler and returns the ToolResult payload; never raises
  (a failed handler is a result the model sees, with the exception's ``code`` when it is a
  string, else ``TOOL_FAILED``).
- :func:`run_reference_tool` answers ``resolveRef`` / ``glimpseRef`` (:data:`REFERENCE_TOOLS`)
  from a reference store.
- :func:`run_plan_step` runs an approved plan's actions through the action dispatcher:
  ``dispatcher(actions, ctx)`` with ``ctx["resolved_refs"] = {kind: {id: value}}``; the
  ToolResult answers the PlanStep (``invocation_id`` = the step's envelope id) and its
  ``output`` is the dispatcher's return, which the engine validates.
- :func:`tool_result` builds the ToolResult envelope bytes; output that is not JSON becomes
  a ``TOOL_OUTPUT_INVALID`` error result.

Must not import the runtime, the native engine, the bus or any service.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

import orjson

from .errors import ResultCode
from .messages import ToolResult
from .references import ReferenceAccess
from .tools import EventSink, ToolContext, ToolDefinition, idempotency_key

__all__ = [
    "NO_ACTION_DISPATCHER",
    "REFERENCE_TOOLS",
    "TOOL_FAILED",
    "TOOL_TIMEOUT",
    "ActionDispatcher",
    "error_body",
    "run_plan_step",
    "run_reference_tool",
    "run_tool_call",
    "tool_result",
]

# The result codes this module writes (`errors.ResultCode`), under the names services import.
TOOL_FAILED: Final = ResultCode.TOOL_FAILED.value
TOOL_TIMEOUT: Final = ResultCode.TOOL_TIMEOUT.value
TOOL_OUTPUT_INVALID: Final = ResultCode.TOOL_OUTPUT_INVALID.value
NO_ACTION_DISPATCHER: Final = ResultCode.NO_ACTION_DISPATCHER.value
# The executor's built-in reference tools: tool name -> what it reads from the store.
REFERENCE_TOOLS: Final[Mapping[str, str]] = {"resolveRef": "resolve", "glimpseRef": "glimpse"}
# `fn(actions, ctx)`, sync or async; returns None or {entitiesAffected, summary?, details?}.
ActionDispatcher = Callable[[list[dict[str, Any]], dict[str, Any]], Any]
_NO_DISPATCHER_MESSAGE: Final = (
    "this runtime has no action dispatcher; pass create_runtime(action_dispatcher=fn) to "
    "execute plans"
)
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


class _OverTime(Exception):
    """An awaited handler or dispatcher ran past its time limit."""


async def _settle(value: Any, time_limit: float | None) -> Any:
    """``value``, awaited if it is awaitable, within ``time_limit`` seconds (None: no limit);
    past the limit :class:`_OverTime` (a TimeoutError the code itself raised stays one)."""
    if not inspect.isawaitable(value):
        return value
    if time_limit is None:
        return await value
    timer = asyncio.timeout(time_limit)
    try:
        async with timer:
            return await value
    except TimeoutError:
        if timer.expired():
            raise _OverTime from None
        raise


async def run_tool_call(
    tool: ToolDefinition,
    invocation: Mapping[str, Any],
    services: Mapping[str, Any],
    *,
    time_limit: float | None = None,
    references: ReferenceAccess | None = None,
    on_event: EventSink | None = None,
) -> dict[str, Any]:
    """Run ``tool``'s handler for ``invocation`` (a ToolInvocation envelope as a dict).

    Returns the ToolResult payload: ``invocation_id``, ``tool_invocation_id``, then
    ``output`` or ``error``, and ``events`` when the handler emitted any. ``time_limit``
    (seconds) bounds an async handler; past it the result is a ``TOOL_TIMEOUT`` error.
    ``on_event`` gets each emitted event as the handler emits it (they are in ``events``
    too). The handler's ``ctx.idempotency_key`` follows from the invocation id.
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
        # From the invocation id: the same on every delivery and in both runtimes.
        idempotency_key=idempotency_key(invocation["id"]),
        on_event=on_event,
    )
    payload: dict[str, Any] = {
        "invocation_id": invocation["id"],
        "tool_invocation_id": call["tool_invocation_id"],
    }
    output = None
    try:
        output = await _settle(tool.handler(call["args"], ctx), time_limit)  # type: ignore[misc]
    except _OverTime:
        payload["error"] = {
            "message": f"tool {call['tool']!r} did not finish within {time_limit} s",
            "code": TOOL_TIMEOUT,
        }
    except Exception as exc:  # the model sees the failure; the run goes on
        payload["error"] = error_body(call["tool"], exc)
    if ctx.events:
        payload["events"] = ctx.events
    if "error" not in payload:
        payload["output"] = output
    return payload


def run_reference_tool(
    invocation: Mapping[str, Any], references: ReferenceAccess
) -> dict[str, Any]:
    """Answer a built-in ``resolveRef`` / ``glimpseRef`` invocation from ``references``.

    Returns the ToolResult payload; an unknown, expired or another tenant's reference is an
    error result (``REFERENCE_NOT_FOUND``), never an exception.
    """
    call = invocation["payload"]
    answer: dict[str, Any] = {
        "invocation_id": invocation["id"],
        "tool_invocation_id": call["tool_invocation_id"],
    }
    try:
        ref = call["args"]["ref"]
        if REFERENCE_TOOLS[call["tool"]] == "resolve":
            answer["output"] = references.resolve(ref)
        else:
            answer["output"] = references.glimpse(ref)
    except Exception as exc:
        answer["error"] = error_body(call["tool"], exc)
    return answer


async def run_plan_step(
    step: Mapping[str, Any],
    dispatcher: ActionDispatcher | None,
    services: Mapping[str, Any],
    references: ReferenceAccess,
    *,
    time_limit: float | None = None,
    no_dispatcher: str = _NO_DISPATCHER_MESSAGE,
) -> dict[str, Any]:
    """Run a ``flowai.v1.PlanStep`` (as a dict) through ``dispatcher``; never raises.

    Returns the ToolResult payload answering the step: ``invocation_id`` (the step's envelope
    id), ``tool_invocation_id`` (the executor's executePlan call), then ``output`` (what the
    dispatcher returned; the engine checks it is None or ``{entitiesAffected, summary?,
    details?}``) or ``error``. Without a dispatcher the error is ``NO_ACTION_DISPATCHER``
    saying ``no_dispatcher``. ``time_limit`` (seconds) bounds an async dispatcher.
    """
    payload = step["payload"]
    answer: dict[str, Any] = {
        "invocation_id": step["id"],
        "tool_invocation_id": payload["tool_invocation_id"],
    }
    if dispatcher is None:
        answer["error"] = {"message": no_dispatcher, "code": NO_ACTION_DISPATCHER}
        return answer
    try:
        # Inside the try: a reference that expired (or never existed) fails the plan before
        # any action runs, rather than the caller.
        ctx = {
            "resolved_refs": references.hydrate(payload.get("references") or ()),
            "plan_id": payload["plan_id"],
            "spec_name": payload["spec_name"],
            "context": payload.get("context"),
            "thread_id": step["thread_id"],
            "services": services,
        }
        answer["output"] = await _settle(dispatcher(payload["actions"], ctx), time_limit)
    except _OverTime:
        answer["error"] = {
            "message": f"the action dispatcher did not finish within {time_limit} s",
            "code": TOOL_TIMEOUT,
        }
    except Exception as exc:
        answer["error"] = error_body("action dispatcher", exc)
    return answer


def tool_result(
    invocation: Mapping[str, Any],
    payload: dict[str, Any],
    *,
    id: str,
    ts: int,
) -> bytes:
    """The ToolResult envelope answering ``invocation`` (a ToolInvocation or a PlanStep)
    with ``payload``, as JSON bytes.

    Keyed like every thread message (``tenant/thread_id``) when published. Output that
    cannot be JSON becomes a ``TOOL_OUTPUT_INVALID`` error (the handler's events are dropped
    with it: they may be what failed).
    """
    body = {
        "schema": ToolResult.NAME,
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
        # A PlanStep answers the executor's executePlan call.
        tool = invocation["payload"].get("tool", "executePlan")
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
