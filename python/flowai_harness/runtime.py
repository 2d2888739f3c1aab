"""The embedded runtime: drives the engine in this process and runs tool handlers.

Owns :func:`create_runtime`, :class:`Runtime`, :class:`EventStream` and :class:`ReplayResult`.
The engine decides everything (turns, routing, validation, events); this module only feeds it
inputs (queries, tool results, cancellations) with ids and times, appends the events it decides
to the run log, yields them, and runs the tool invocations it asks for.

Hot path: one engine crossing per step, carrying every input of that step as JSON bytes.
Imports the native engine only through :mod:`._native`; must not import services or the CLI.
"""

from __future__ import annotations

import inspect
import itertools
import os
import time
import types
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Literal

import orjson

from . import _native
from .errors import (
    MissingToolHandlerError,
    ProviderUnavailableError,
    SpecError,
    UnknownAgentError,
    UnknownThreadError,
    UnknownToolError,
    error_from_code,
)
from .runlog import FileRunLog, FsyncPolicy, MemoryRunLog, RunLog
from .specs import RuntimeSpec, TestingConfig
from .tools import ToolContext, ToolDefinition

__all__ = ["EventStream", "ReplayResult", "Runtime", "create_runtime"]

Event = dict[str, Any]
ToolHandler = Callable[[Any, ToolContext], Any]

INTERPRETERS = ("scripted",)
# Logged for replay, never shown in a stream.
_INTERNAL_EVENTS = frozenset({"run-start"})
_TERMINAL_EVENTS = frozenset({"finish", "error"})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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


_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class ReplayResult:
    """A thread rebuilt from its run log alone: its status now, and what was logged.

    ``status`` and ``last_seq`` come from the engine's fold; ``snapshot`` and ``events`` are
    decoded only when read, so a replay that only rebuilds state stays in Rust.
    """

    __slots__ = ("_events", "_log", "_replay", "_snapshot", "thread_id")

    def __init__(self, thread_id: str, replay: Any, log: bytes) -> None:
        self.thread_id = thread_id
        self._replay = replay
        self._log = log
        self._snapshot: dict[str, Any] | None = None
        self._events: list[Event] | None = None

    @property
    def status(self) -> str:
        """``idle``, ``running`` or ``awaiting-tool``."""
        status: str = self._replay.status(self.thread_id)
        return status

    @property
    def lines(self) -> int:
        """How many run-log entries were folded."""
        lines: int = self._replay.lines
        return lines

    @property
    def snapshot(self) -> dict[str, Any]:
        """The folded state: status, sequence, runs, usage, active run, message history."""
        if self._snapshot is None:
            self._snapshot = orjson.loads(self._replay.snapshot(self.thread_id))
        return self._snapshot

    @property
    def events(self) -> list[Event]:
        """Every logged event payload, in order (including the internal ``run-start``)."""
        if self._events is None:
            self._events = [orjson.loads(line)["payload"] for line in self._log.splitlines()]
        return self._events

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Every logged envelope (``seq``, ``run_id``, ``ts``, ``payload``...), in order."""
        return [orjson.loads(line) for line in self._log.splitlines()]

    def __repr__(self) -> str:
        return f"ReplayResult(thread_id={self.thread_id!r}, status={self.status!r})"


class EventStream:
    """The events of one run, as an async iterator of dicts; ``cancel()`` stops the run.

    Iterate it once. Leaving the loop early (``break``) also cancels the run, so the thread
    is free for the next query.
    """

    __slots__ = ("_cancelled", "_generator", "thread_id")

    def __init__(self, runtime: Runtime, thread_id: str, first_input: bytes) -> None:
        self.thread_id = thread_id
        self._cancelled = False
        self._generator = runtime._drive(thread_id, first_input, self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._generator

    async def __anext__(self) -> Event:
        return await self._generator.__anext__()

    def cancel(self) -> None:
        """Stop the run at its next step: it ends with ``finish`` (``cancelled``)."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def aclose(self) -> None:
        await self._generator.aclose()


class Runtime:
    """An agent runtime in this process. Build it with :func:`create_runtime`."""

    def __init__(
        self,
        spec: RuntimeSpec,
        engine: _native.Engine,
        handlers: Mapping[str, ToolDefinition],
        services: Mapping[str, Any],
        log: RunLog,
    ) -> None:
        self.spec = spec
        self.tenant = spec.tenant.resource_id
        self._engine = engine
        self._tools = dict(handlers)
        self._services = types.MappingProxyType(dict(services))
        self._log = log
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:12]
        self._agents = {agent.name: agent for agent in spec.agents}

    # --- public API ----------------------------------------------------------------------

    def query(self, prompt: str, thread_id: str) -> EventStream:
        """Run the coordinator (or the only agent) on ``prompt`` in ``thread_id``.

        A thread that already exists continues its conversation: its history comes from
        its run log.
        """
        return self._start(prompt, thread_id, None)

    def run_specialist(self, name: str, prompt: str, thread_id: str | None = None) -> EventStream:
        """Run one specialist directly, bypassing the coordinator."""
        agent = self._agents.get(name)
        if agent is None or agent.role != "specialist":
            specialists = sorted(a.name for a in self.spec.agents if a.role == "specialist")
            raise UnknownAgentError(
                f"no specialist named {name!r}; this runtime's specialists are: "
                f"{', '.join(specialists) or 'none'}"
            )
        if thread_id is None:
            thread_id = f"specialist-{name}-{self._id_prefix}-{next(self._ids)}"
        return self._start(prompt, thread_id, name)

    def replay(self, thread_id: str) -> ReplayResult:
        """Rebuild ``thread_id`` from its run log alone (never calls a model or a tool)."""
        log = self._log.read(thread_id)
        if log is None:
            raise UnknownThreadError(
                f"thread {thread_id!r} has no run log here; check the thread id and log_path"
            )
        replay = _native.replay(log, path=self._log.describe(thread_id))
        return ReplayResult(thread_id, replay, log)

    def cancel(self, thread_id: str) -> list[Event]:
        """Cancel the thread's active run (e.g. one left waiting by a crashed process)."""
        self._ensure_loaded(thread_id)
        events, _, rejection = self._step(thread_id, [self._cancel_input(thread_id)])
        if rejection is not None:
            raise error_from_code(rejection["error"]["code"], rejection["error"]["message"])
        return events

    def thread_ids(self) -> list[str]:
        """Every thread with a run log in this runtime's log store."""
        return self._log.thread_ids()

    def close(self) -> None:
        """Close the run-log files."""
        self._log.close()

    # --- the drive loop ------------------------------------------------------------------

    def _start(self, prompt: str, thread_id: str, agent: str | None) -> EventStream:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        query = self._envelope("flowai.v1.Query", thread_id, {"prompt": prompt, "agent": agent})
        return EventStream(self, thread_id, query)

    def _envelope(self, schema: str, thread_id: str, payload: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {
                "schema": schema,
                "id": f"{self._id_prefix}-{next(self._ids)}",
                "tenant": self.tenant,
                "thread_id": thread_id,
                "run_id": None,
                "causation_id": None,
                "ts": _now_ms(),
                "payload": payload,
            }
        )

    def _cancel_input(self, thread_id: str) -> bytes:
        return self._envelope("flowai.v1.CancelRun", thread_id, {})

    def _ensure_loaded(self, thread_id: str) -> None:
        if self._engine.has_thread(thread_id):
            return
        log = self._log.read(thread_id)
        if log is not None:
            self._engine.load(log, path=self._log.describe(thread_id))

    def _step(
        self, thread_id: str, inputs: list[bytes]
    ) -> tuple[list[Event], list[bytes], Event | None]:
        """One engine crossing: feed inputs, log the events, return (events, effects, rejection)."""
        outputs = self._engine.handle_batch(b"[" + b",".join(inputs) + b"]")
        lines: list[bytes] = []
        effects: list[bytes] = []
        rejection: Event | None = None
        for kind, _thread, data in outputs:
            if kind == _native.EVENT:
                lines.append(data)
            elif kind == _native.EFFECT:
                effects.append(data)
            else:
                rejection = orjson.loads(data)["payload"]
        events = [orjson.loads(line)["payload"] for line in lines]
        if lines:
            boundary = events[-1]["type"] in _TERMINAL_EVENTS
            self._log.append(thread_id, lines, boundary=boundary)
        return events, effects, rejection

    async def _drive(
        self, thread_id: str, first_input: bytes, stream: EventStream
    ) -> AsyncGenerator[Event, None]:
        self._ensure_loaded(thread_id)
        inputs = [first_input]
        started = False
        ended = False
        try:
            while inputs:
                events, effects, rejection = self._step(thread_id, inputs)
                inputs = []
                for event in events:
                    kind = event["type"]
                    if kind in _INTERNAL_EVENTS:
                        started = True
                        continue
                    if kind in _TERMINAL_EVENTS:
                        ended = True
                    yield event
                if rejection is not None:
                    # Not logged: the input was refused and the thread is as it was.
                    ended = True
                    yield rejection
                    return
                if ended:
                    return
                if not stream._cancelled:
                    for effect in effects:
                        inputs.append(await self._invoke(effect))
                # Checked again: cancel() may have been called while a tool ran. Results of
                # tools that ran are logged before the cancellation.
                if stream._cancelled:
                    inputs.append(self._cancel_input(thread_id))
        finally:
            if started and not ended:
                # Abandoned mid-run (break, aclose, an exception in the consumer): end the
                # run in the log so the thread does not stay busy.
                self._step(thread_id, [self._cancel_input(thread_id)])

    async def _invoke(self, effect: bytes) -> bytes:
        """Run one tool invocation; always returns a ToolResult input, never raises."""
        invocation = orjson.loads(effect)
        call = invocation["payload"]
        tool = self._tools[call["tool"]]
        ctx = ToolContext(
            call["tool_invocation_id"],
            call["tool"],
            invocation["thread_id"],
            invocation["run_id"],
            call["agent"],
            self._services,
        )
        payload: dict[str, Any] = {
            "invocation_id": invocation["id"],
            "tool_invocation_id": call["tool_invocation_id"],
        }
        try:
            output = tool.handler(call["args"], ctx)  # type: ignore[misc]
            if inspect.isawaitable(output):
                output = await output
        except Exception as exc:  # the model sees the failure; the run goes on
            payload["error"] = {
                "message": f"tool {call['tool']!r} failed: {type(exc).__name__}: {exc}",
                "code": getattr(exc, "code", None) or "TOOL_FAILED",
            }
            output = None
        if ctx.events:
            payload["events"] = ctx.events
        if "error" not in payload:
            payload["output"] = output
        body = {
            "schema": "flowai.v1.ToolResult",
            "id": f"{self._id_prefix}-{next(self._ids)}",
            "tenant": invocation["tenant"],
            "thread_id": invocation["thread_id"],
            "run_id": invocation["run_id"],
            "causation_id": invocation["id"],
            "ts": _now_ms(),
            "payload": payload,
        }
        try:
            return orjson.dumps(body, default=_json_default, option=_DUMPS_OPTIONS)
        except TypeError as exc:
            payload.pop("output", None)
            payload.pop("events", None)
            payload["error"] = {
                "message": f"tool {call['tool']!r} returned a value that is not JSON: {exc}; "
                "return dicts, lists, strings, numbers or Pydantic models",
                "code": "TOOL_OUTPUT_INVALID",
            }
            return orjson.dumps(body)


def create_runtime(
    spec: RuntimeSpec,
    *,
    testing: TestingConfig | None = None,
    interpreter: Literal["scripted"] | None = None,
    tool_bindings: Mapping[str, ToolHandler] | None = None,
    services: Mapping[str, Any] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    fsync: FsyncPolicy = "boundary",
) -> Runtime:
    """Build an embedded runtime for ``spec``.

    - ``testing=TestingConfig(mock_response=...)``: every model turn answers that text.
    - ``interpreter="scripted"``: prompts are JSON tool scripts (see README); others echo.
    - ``tool_bindings``: ``{tool name: handler}``, overriding handlers bound with define_tool.
    - ``services``: host objects handed to tool handlers as ``ctx.services``.
    - ``log_path``: keep run logs in append-only files there (default: in memory), so another
      process opening the same path sees the same threads. ``fsync`` is
      ``"boundary"`` (default: at run ends and approval gates), ``"always"`` or ``"never"``.
    """
    if not isinstance(spec, RuntimeSpec):
        raise SpecError(
            f"create_runtime needs the spec from define_runtime(...), got {type(spec).__name__}"
        )
    interpreter_config = _interpreter_config(testing, interpreter)
    tools = _bind_tools(spec, tool_bindings or {})
    config = (
        b'{"spec":' + spec.compiled + b',"interpreter":' + orjson.dumps(interpreter_config) + b"}"
    )
    engine = _native.Engine(config)
    log: RunLog = (
        MemoryRunLog() if log_path is None else FileRunLog(log_path, spec.tenant.resource_id, fsync)
    )
    return Runtime(spec, engine, tools, services or {}, log)


def _interpreter_config(testing: TestingConfig | None, interpreter: str | None) -> dict[str, Any]:
    if testing is not None and interpreter is not None:
        raise SpecError(
            "pass either testing=TestingConfig(...) or interpreter=..., not both: "
            "each decides what the model answers"
        )
    if testing is not None:
        return {"kind": "mock", "response": testing.mock_response}
    if interpreter is None:
        raise ProviderUnavailableError(
            "this build runs agents with deterministic interpreters only: pass "
            "testing=TestingConfig(mock_response=...) or interpreter='scripted'; live "
            "Anthropic/OpenAI calls are not wired into the embedded runtime yet"
        )
    if interpreter not in INTERPRETERS:
        raise SpecError(
            f"unknown interpreter {interpreter!r}; choose one of {', '.join(INTERPRETERS)} "
            "(or testing=TestingConfig(mock_response=...))"
        )
    return {"kind": interpreter}


def _bind_tools(
    spec: RuntimeSpec, bindings: Mapping[str, ToolHandler]
) -> dict[str, ToolDefinition]:
    declared = {tool.name: tool for tool in spec.tools}
    unknown = sorted(set(bindings) - set(declared))
    if unknown:
        raise UnknownToolError(
            f"tool_bindings names {', '.join(map(repr, unknown))}, which no agent uses; "
            f"declared tools: {', '.join(sorted(declared)) or 'none'}"
        )
    bound: dict[str, ToolDefinition] = {}
    for name, tool in declared.items():
        handler = bindings.get(name)
        if handler is not None:
            if not callable(handler):
                raise SpecError(f"tool_bindings[{name!r}] must be callable, got {handler!r}")
            tool = tool.bind(handler)
        if tool.handler is None:
            users = sorted(a.name for a in spec.agents if any(t.name == name for t in a.tools))
            raise MissingToolHandlerError(
                f"tool {name!r} (used by {', '.join(users)}) has no handler; bind one with "
                f"@define_tool(...), .bind(fn) or create_runtime(tool_bindings={{{name!r}: fn}})"
            )
        bound[name] = tool
    return bound
