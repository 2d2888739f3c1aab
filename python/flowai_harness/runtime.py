"""The embedded runtime: drives the engine in this process and runs tool handlers.

Owns :func:`create_runtime`, :class:`Runtime`, :class:`EventStream` and :class:`ReplayResult`.
The engine decides everything (turns, routing, validation, events); this module only feeds it
inputs (queries, tool results, cancellations) with ids and times, appends the events it decides
to the run log, yields them, and runs the tool invocations it asks for.

Hot path: one engine crossing per step, carrying every input of that step as JSON bytes.
Imports the native engine only through :mod:`._native`; must not import services or the CLI.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import types
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Literal

import orjson

from . import _native
from .errors import (
    InvalidInputError,
    MissingToolHandlerError,
    ProviderUnavailableError,
    SpecError,
    UnknownAgentError,
    UnknownApprovalError,
    UnknownThreadError,
    UnknownToolError,
    error_from_code,
)
from .messages import envelope
from .references import (
    FileReferenceStore,
    MemoryReferenceStore,
    ReferenceAccess,
    ReferenceSpec,
    ReferenceStore,
)
from .runlog import FileRunLog, FsyncPolicy, MemoryRunLog, RunLog
from .specs import RuntimeSpec, TestingConfig
from .toolcall import (
    REFERENCE_TOOLS,
    ActionDispatcher,
    run_plan_step,
    run_reference_tool,
    run_tool_call,
    tool_result,
)
from .tools import ToolContext, ToolDefinition

__all__ = ["EventStream", "ReplayResult", "Runtime", "create_runtime"]

Event = dict[str, Any]
ToolHandler = Callable[[Any, ToolContext], Any]
# One engine crossing: (logged event payloads, effects, the rejection of an input or None).
_Step = tuple[list[Event], list[bytes], "Event | None"]

_OUTCOMES = ("approve", "reject", "revise")

INTERPRETERS = ("scripted",)
# Logged for replay, never shown in a stream.
_INTERNAL_EVENTS = frozenset({"run-start"})
_TERMINAL_EVENTS = frozenset({"finish", "error"})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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


class _RunState:
    """What a stream and its drive loop share. The loop must not hold the stream itself:
    that cycle kept an abandoned stream alive until the garbage collector found it."""

    __slots__ = ("cancelled", "ended", "handed", "started", "waiter")

    def __init__(self) -> None:
        self.cancelled = False
        self.started = False
        self.ended = False
        # A decision's step handed over before the loop got to waiting for it (decided from
        # inside the `async for` body, say).
        self.handed: _Step | None = None
        # Set while the run waits at an approval gate: resolved with the decision's step, or
        # with None when cancel() wakes it.
        self.waiter: asyncio.Future[_Step | None] | None = None


class EventStream:
    """The events of one run, as an async iterator of dicts; ``cancel()`` stops the run.

    Iterate it once. Leaving the loop early (``break``) also cancels the run, so the thread
    is free for the next query; if you keep the stream in a variable, ``await
    stream.aclose()`` (or drop it) after the ``break``.
    """

    __slots__ = ("_generator", "_iterated", "_state", "thread_id")

    def __init__(
        self,
        runtime: Runtime,
        thread_id: str,
        first_input: bytes | None,
        stepped: _Step | None = None,
    ) -> None:
        self.thread_id = thread_id
        self._state = _RunState()
        self._generator: AsyncGenerator[Event, None] | None = runtime._drive(
            thread_id, first_input, self._state, stepped
        )
        self._iterated: weakref.ref[AsyncGenerator[Event, None]] | None = None
        # The loop holds the generator; when a ``break`` drops it, end the run at once. The
        # generator's own ``finally`` would wait for the event loop to close it, and a query
        # on the thread before then would be refused as busy. Not at exit: a run left
        # waiting then stays resumable from its log.
        weakref.finalize(self._generator, runtime._abandon, thread_id, self._state).atexit = False

    def __aiter__(self) -> AsyncIterator[Event]:
        # From here on only the loop holds the generator, so leaving the loop (`break`)
        # releases it even while this stream object is still referenced.
        generator = self._live()
        self._iterated = weakref.ref(generator)
        self._generator = None
        return generator

    async def __anext__(self) -> Event:
        return await self._live().__anext__()

    def _live(self) -> AsyncGenerator[Event, None]:
        generator = self._generator
        if generator is None and self._iterated is not None:
            generator = self._iterated()
        if generator is None:
            raise StopAsyncIteration
        return generator

    def cancel(self) -> None:
        """Stop the run at its next step: it ends with ``finish`` (``cancelled``). A run
        waiting at an approval gate is cancelled at once."""
        self._state.cancelled = True
        waiter = self._state.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def cancelled(self) -> bool:
        return self._state.cancelled

    async def aclose(self) -> None:
        try:
            generator = self._live()
        except StopAsyncIteration:
            return
        await generator.aclose()


class Runtime:
    """An agent runtime in this process. Build it with :func:`create_runtime`."""

    def __init__(
        self,
        spec: RuntimeSpec,
        engine: _native.Engine,
        handlers: Mapping[str, ToolDefinition],
        services: Mapping[str, Any],
        log: RunLog,
        references: ReferenceStore,
        action_dispatcher: ActionDispatcher | None = None,
    ) -> None:
        self.spec = spec
        self._references = ReferenceAccess(references, spec.tenant.resource_id, spec.references)
        self._action_dispatcher = action_dispatcher
        # Runs of this process waiting at an approval gate, by thread.
        self._waiting: dict[str, _RunState] = {}
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

    def respond_to_approval(
        self,
        approval_id: str,
        outcome: Literal["approve", "reject", "revise"],
        feedback: str | None = None,
        partial: Any = None,
        *,
        approver: str | None = None,
    ) -> EventStream:
        """Decide a waiting approval; the first decision wins.

        If a stream of this process is waiting at that gate, it continues (and the returned
        stream is empty); otherwise (say the run paused in another process that has since
        exited) iterate the returned stream to run the rest of the run here, from its log.
        Raises ``UnknownApprovalError`` for an id that is not waiting in this tenant's
        threads and ``ApprovalAlreadyResolvedError`` for one already decided (or expired).
        """
        if outcome not in _OUTCOMES:
            raise InvalidInputError(
                f"outcome must be one of {', '.join(_OUTCOMES)}, got {outcome!r}"
            )
        thread_id = _thread_of_approval(approval_id)
        if thread_id is not None:
            self._ensure_loaded(thread_id)
        if thread_id is None or not self._engine.has_thread(thread_id):
            raise UnknownApprovalError(
                f"no approval {approval_id!r} is waiting here; check the id (approvals are "
                "per tenant, and a paused run must be in this runtime's log_path)"
            )
        timed_out = self._expire(thread_id) is not None
        payload: dict[str, Any] = {"approval_id": approval_id, "outcome": outcome}
        for key, value in (("feedback", feedback), ("partial", partial), ("approver", approver)):
            if value is not None:
                payload[key] = value
        decision = self._envelope("flowai.v1.ApprovalDecision", thread_id, payload)
        stepped = self._step(thread_id, [decision])
        rejection = stepped[2]
        if rejection is not None:
            message = rejection["error"]["message"]
            if timed_out:
                # The deadline just resolved it, and no stream here runs what follows.
                message += (
                    f"; its deadline had passed, so it was rejected with reason timeout: "
                    f"iterate runtime.resume({thread_id!r}) to run the rest of the run"
                )
            raise error_from_code(rejection["error"]["code"], message)
        if self._hand_over(thread_id, stepped):
            return EventStream(self, thread_id, None)
        return EventStream(self, thread_id, None, stepped)

    def create_reference(
        self, reference: ReferenceSpec | str, value: Any, glimpse: Any = None
    ) -> dict[str, Any]:
        """Keep ``value`` out of the run log; returns its handle ``{kind, id, glimpse}``.
        Ids are content addresses scoped to this tenant; the value is schema-validated."""
        return self._references.create(reference, value, glimpse)

    def resolve_reference(self, ref: Any) -> Any:
        """The value behind a handle (``ReferenceNotFoundError`` when unknown, expired or
        another tenant's)."""
        return self._references.resolve(ref)

    def reference_glimpse(self, ref: Any) -> Any:
        """The glimpse kept with a handle."""
        return self._references.glimpse(ref)

    def resume(self, thread_id: str) -> EventStream:
        """Continue a thread's unfinished run from its log (after a crash or a restart).

        Re-issues what the run was waiting for: an outstanding tool call runs (tool calls are
        identified by id, so a tool that records its invocation id can tell a repeat), and a
        run paused at an approval gate waits for ``respond_to_approval`` or its deadline.
        An idle thread gives an empty stream.
        """
        self._ensure_loaded(thread_id)
        if not self._engine.has_thread(thread_id):
            raise UnknownThreadError(
                f"thread {thread_id!r} has no run log here; check the thread id and log_path"
            )
        first: bytes | None = None
        stepped: _Step | None = None
        status = self._engine.status(thread_id)
        if status == "awaiting-tool":
            first = self._envelope("flowai.v1.ResumeRun", thread_id, {})
        elif status == "awaiting-approval":
            # Nothing to feed the engine: an empty step takes the loop straight to the gate.
            stepped = ([], [], None)
        return EventStream(self, thread_id, first, stepped)

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
        return envelope(
            schema,
            id=f"{self._id_prefix}-{next(self._ids)}",
            tenant=self.tenant,
            thread_id=thread_id,
            payload=payload,
            ts=_now_ms(),  # the runtime's one clock (deadlines compare against it)
        )

    def _cancel_input(self, thread_id: str) -> bytes:
        return self._envelope("flowai.v1.CancelRun", thread_id, {})

    def _ensure_loaded(self, thread_id: str) -> None:
        if self._engine.has_thread(thread_id):
            return
        log = self._log.read(thread_id)
        if log is not None:
            self._engine.load(log, path=self._log.describe(thread_id))

    def _step(self, thread_id: str, inputs: list[bytes]) -> _Step:
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
            # Durable at run ends and approval gates: a paused run must survive its process.
            boundary = events[-1]["type"] in _TERMINAL_EVENTS or any(
                event["type"] == "approval-required" for event in events
            )
            self._log.append(thread_id, lines, boundary=boundary)
        return events, effects, rejection

    async def _drive(
        self,
        thread_id: str,
        first_input: bytes | None,
        state: _RunState,
        stepped: _Step | None = None,
    ) -> AsyncGenerator[Event, None]:
        self._ensure_loaded(thread_id)
        inputs = [] if first_input is None else [first_input]
        try:
            while stepped is not None or inputs:
                events, effects, rejection = stepped or self._step(thread_id, inputs)
                stepped, inputs = None, []
                if self._engine.status(thread_id) == "awaiting-approval":
                    # Live at the gate from now on: a decision made while the consumer
                    # handles these events comes to this stream.
                    self._waiting[thread_id] = state
                for event in events:
                    kind = event["type"]
                    if kind in _INTERNAL_EVENTS:
                        state.started = True
                        continue
                    if kind in _TERMINAL_EVENTS:
                        state.ended = True
                    yield event
                if rejection is not None:
                    # Not logged: the input was refused and the thread is as it was.
                    state.ended = True
                    yield rejection
                    return
                if state.ended:
                    return
                if not state.cancelled:
                    for effect in effects:
                        reply = await self._run_effect(effect)
                        if reply is not None:
                            inputs.append(reply)
                # Checked again: cancel() may have been called while a tool ran. Results of
                # tools that ran are logged before the cancellation.
                if state.cancelled:
                    inputs.append(self._cancel_input(thread_id))
                elif not inputs and (
                    state.handed is not None
                    or self._engine.status(thread_id) == "awaiting-approval"
                ):
                    stepped = await self._await_decision(thread_id, state)
                    if stepped is None:  # woken by cancel()
                        inputs.append(self._cancel_input(thread_id))
        finally:
            self._abandon(thread_id, state)
            if self._waiting.get(thread_id) is state:
                del self._waiting[thread_id]

    async def _await_decision(self, thread_id: str, state: _RunState) -> _Step | None:
        """Wait at the gate for ``respond_to_approval`` (or ``cancel()``), feeding the engine
        the time when the approval's deadline passes. No thread sleeps per approval: one
        timer per waiting stream, set from the engine's deadline."""
        if state.handed is not None:
            handed, state.handed = state.handed, None
            return handed
        waiter: asyncio.Future[_Step | None] = asyncio.get_running_loop().create_future()
        state.waiter = waiter
        self._waiting[thread_id] = state
        try:
            while True:
                deadline = self._engine.deadline(thread_id)
                timeout = None if deadline is None else max(0.0, (deadline - _now_ms()) / 1000)
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except TimeoutError:
                    stepped = self._expire(thread_id)
                    if stepped is not None:
                        return stepped
                    # Woken a hair early: the engine says the deadline is still ahead.
        finally:
            state.waiter = None

    def _expire(self, thread_id: str) -> _Step | None:
        """Feed the engine the time if the thread's approval deadline passed."""
        deadline = self._engine.deadline(thread_id)
        if deadline is None or _now_ms() < deadline:
            return None
        stepped = self._step(
            thread_id, [self._envelope("flowai.v1.DeadlineReached", thread_id, {})]
        )
        if not stepped[0]:
            return None
        if self._hand_over(thread_id, stepped):
            return None
        return stepped

    def _hand_over(self, thread_id: str, stepped: _Step) -> bool:
        """Give a step to the stream of this process waiting at the thread's gate, if any."""
        state = self._waiting.get(thread_id)
        if state is None or state.ended:
            return False
        if state.waiter is not None and not state.waiter.done():
            state.waiter.set_result(stepped)
        else:
            state.handed = stepped
        return True

    async def _run_effect(self, effect: bytes) -> bytes | None:
        """Carry out one effect; returns the engine's next input, or None for an approval
        request (the run waits for a human)."""
        envelope = orjson.loads(effect)
        schema = envelope["schema"]
        if schema == "flowai.v1.ToolInvocation":
            return await self._invoke(envelope)
        if schema == "flowai.v1.PlanStep":
            return await self._dispatch_plan(envelope)
        if schema == "flowai.v1.ApprovalCheck":
            return await self._check_approval(envelope)
        return None

    def _abandon(self, thread_id: str, state: _RunState) -> None:
        """End a run its stream left mid-way (break, aclose, an exception in the consumer)
        in the log, so the thread does not stay busy. Idempotent. A run paused at an approval
        gate is left paused: it may be decided later, from this process or another."""
        if self._waiting.get(thread_id) is state:
            del self._waiting[thread_id]
        if self._engine.status(thread_id) == "awaiting-approval":
            # Done with the run for good: the generator's own ``finally`` comes later (when
            # the event loop closes it) and must not cancel the run once it has been decided
            # and goes on in another stream.
            state.ended = True
            return
        if state.started and not state.ended:
            self._step(thread_id, [self._cancel_input(thread_id)])
            state.ended = True

    async def _check_approval(self, check: dict[str, Any]) -> bytes:
        """Evaluate a dynamic approval rule (a predicate that raises means: ask a human)."""
        payload = check["payload"]
        ctx = {
            "agent": payload["agent"],
            "tool": payload["tool"],
            "thread_id": check["thread_id"],
            "tenant": check["tenant"],
            "services": self._services,
        }
        required = await self.spec.predicates.aevaluate(payload["predicate"], payload["args"], ctx)
        return self._envelope(
            "flowai.v1.ApprovalCheckResult",
            check["thread_id"],
            {"check_id": payload["check_id"], "required": required},
        )

    async def _dispatch_plan(self, step: dict[str, Any]) -> bytes:
        """Run an approved plan's actions through the action dispatcher."""
        answer = await run_plan_step(
            step, self._action_dispatcher, self._services, self._references
        )
        return tool_result(step, answer, id=f"{self._id_prefix}-{next(self._ids)}", ts=_now_ms())

    async def _invoke(self, invocation: dict[str, Any]) -> bytes:
        """Run one tool invocation; always returns a ToolResult input, never raises."""
        name = invocation["payload"]["tool"]
        if name in REFERENCE_TOOLS:
            payload = run_reference_tool(invocation, self._references)
        else:
            payload = await run_tool_call(
                self._tools[name], invocation, self._services, references=self._references
            )
        return tool_result(
            invocation, payload, id=f"{self._id_prefix}-{next(self._ids)}", ts=_now_ms()
        )


def _thread_of_approval(approval_id: str) -> str | None:
    """The thread an approval id names (`appr:{thread}/{run}/{call}`), or None."""
    if not isinstance(approval_id, str) or not approval_id.startswith("appr:"):
        return None
    parts = approval_id[len("appr:") :].rsplit("/", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


def create_runtime(
    spec: RuntimeSpec,
    *,
    testing: TestingConfig | None = None,
    interpreter: Literal["scripted"] | None = None,
    tool_bindings: Mapping[str, ToolHandler] | None = None,
    services: Mapping[str, Any] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    fsync: FsyncPolicy = "boundary",
    action_dispatcher: ActionDispatcher | None = None,
) -> Runtime:
    """Build an embedded runtime for ``spec``.

    - ``testing=TestingConfig(mock_response=...)``: every model turn answers that text.
    - ``interpreter="scripted"``: prompts are JSON tool scripts (see README); others echo.
    - ``tool_bindings``: ``{tool name: handler}``, overriding handlers bound with define_tool.
    - ``services``: host objects handed to tool handlers as ``ctx.services``.
    - ``log_path``: keep run logs in append-only files there (default: in memory), so another
      process opening the same path sees the same threads. ``fsync`` is
      ``"boundary"`` (default: at run ends and approval gates), ``"always"`` or ``"never"``.
      Reference payloads are kept under ``log_path`` too (else in memory).
    - ``action_dispatcher``: ``fn(actions, ctx)`` runs an approved plan's actions;
      ``ctx["resolved_refs"]`` holds the referenced values as ``{kind: {id: value}}``.
    """
    if not isinstance(spec, RuntimeSpec):
        raise SpecError(
            f"create_runtime needs the spec from define_runtime(...), got {type(spec).__name__}"
        )
    interpreter_config = _interpreter_config(testing, interpreter)
    tools = _bind_tools(spec, tool_bindings or {})
    engine = new_engine(spec, interpreter_config)
    if action_dispatcher is not None and not callable(action_dispatcher):
        raise SpecError(f"action_dispatcher must be callable, got {action_dispatcher!r}")
    log: RunLog
    references: ReferenceStore
    if log_path is None:
        log, references = MemoryRunLog(), MemoryReferenceStore()
    else:
        log = FileRunLog(log_path, spec.tenant.resource_id, fsync)
        references = FileReferenceStore(log_path)
    return Runtime(spec, engine, tools, services or {}, log, references, action_dispatcher)


def new_engine(spec: RuntimeSpec, interpreter: Mapping[str, Any]) -> _native.Engine:
    """A native engine for ``spec``; ``interpreter`` is ``{"kind": "scripted"}`` or
    ``{"kind": "mock", "response": text}`` (docs/wire.md). Used by the runtime service too."""
    config = b'{"spec":' + spec.compiled + b',"interpreter":' + orjson.dumps(interpreter) + b"}"
    return _native.Engine(config)


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
