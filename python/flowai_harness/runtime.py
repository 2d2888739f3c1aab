"""The embedded runtime: drives the engine in this process and carries out its effects here.

Owns :func:`create_runtime`, :class:`Runtime`, :class:`EventStream` and :class:`ReplayResult`.
The engine decides everything (turns, routing, validation, gates, retries, events); the
:class:`~flowai_harness.driver.Driver` feeds it and sorts what it decides; this module appends
the events to the run log, shows them, and carries out the effects in this process: tool
handlers, the action dispatcher, the reference tools, and model calls through the provider
adapters (streaming their text as it comes). The runtime service does the same with Kafka
topics instead of in-process calls.

Hot path: one engine crossing per step, carrying every input of that step as JSON bytes.
Imports the native engine only through :mod:`._native`; must not import services or the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import types
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from . import _native
from .driver import Decided, Driver, error_of, now_ms
from .errors import (
    ForkUnavailableError,
    InvalidInputError,
    MissingToolHandlerError,
    ReplayError,
    SnapshotCorruptedError,
    SpecError,
    ThreadBusyError,
    UnknownAgentError,
    UnknownApprovalError,
    UnknownThreadError,
    UnknownToolError,
    error_from_code,
)
from .messages import (
    ApprovalDecision,
    CancelRun,
    DeadlineReached,
    ForkThread,
    ModelRequest,
    ModelResult,
    PlanStep,
    Query,
    ResumeRun,
    ToolInvocation,
    ToolProgress,
)
from .modelcall import Complete, call_model
from .references import (
    FileReferenceStore,
    MemoryReferenceStore,
    ReferenceAccess,
    ReferenceSpec,
    ReferenceStore,
)
from .runlog import (
    FileRunLog,
    FileSnapshotStore,
    FsyncPolicy,
    MemoryRunLog,
    MemorySnapshotStore,
    RunLog,
    SnapshotStore,
)
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

if TYPE_CHECKING:
    from .evals.runner import EvalStream

__all__ = ["EventStream", "ReplayResult", "Runtime", "create_runtime"]

log = logging.getLogger("flowai.runtime")

Event = dict[str, Any]
ToolHandler = Callable[[Any, ToolContext], Any]
EventHook = Callable[[Event], Any]
Interpreter = Literal["noop", "scripted", "live", "anthropic"]

_OUTCOMES: Final = ("approve", "reject", "revise")
# The seed's interpreters, and "live" (every agent to its provider); "anthropic" is the
# seed's name for the live path.
INTERPRETERS: Final = ("noop", "scripted", "live", "anthropic")
# Logged for replay, never shown in a stream.
_INTERNAL_EVENTS: Final = frozenset({"run-start", "model-response"})
_TERMINAL_EVENTS: Final = frozenset({"finish", "error"})
# The event that ends a run a stream follows (after `finish`, the entry agent's wrapper).
_MODEL_REQUEST: Final = ModelRequest.NAME
_MODEL_RESULT: Final = ModelResult.NAME
_TOOL_INVOCATION: Final = ToolInvocation.NAME
_TOOL_PROGRESS: Final = ToolProgress.NAME
_PLAN_STEP: Final = PlanStep.NAME


class _Feed:
    """An input to hand the engine while effects still run (a tool's progress)."""

    __slots__ = ("input",)

    def __init__(self, input: bytes) -> None:
        self.input = input


_Live = Event | _Feed | None


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
        """``idle``, ``running``, ``awaiting-model``, ``awaiting-tool``,
        ``awaiting-approval`` or ``closing``."""
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
        """Every logged event payload, in order (including the internal ``run-start`` and
        ``model-response``), each with its ``seq``: its 1-based position in the thread's log
        (ours, added beside the seed's fields)."""
        if self._events is None:
            self._events = [_with_seq(orjson.loads(line)) for line in self._log.splitlines()]
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

    __slots__ = ("cancelled", "ended", "handed", "model_call", "started", "streamed", "waiter")

    def __init__(self) -> None:
        self.cancelled = False
        self.started = False
        self.ended = False
        # A decision's step handed over before the loop got to waiting for it (decided from
        # inside the `async for` body, say).
        self.handed: Decided | None = None
        # Set while the run waits at an approval gate: resolved with the decision's step, or
        # with None when cancel() wakes it.
        self.waiter: asyncio.Future[Decided | None] | None = None
        # Model requests whose text this stream showed as it streamed (their logged complete
        # text is not shown again).
        self.streamed: set[str] = set()
        # The model call in flight (cancelled with the run; a running tool is not).
        self.model_call: asyncio.Task[dict[str, Any]] | None = None

    def cancel(self) -> None:
        """Mark the run cancelled and wake what it waits on: a gate's waiter, a model call."""
        self.cancelled = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        model_call = self.model_call
        if model_call is not None and not model_call.done():
            model_call.cancel()


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
        stepped: Decided | None = None,
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
        """Stop the run: it ends with ``finish`` (``cancelled``). A model call in flight is
        aborted at once; a run waiting at an approval gate is cancelled at once; a tool that
        is running finishes first (its result is logged before the cancellation)."""
        self._state.cancel()

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
        *,
        action_dispatcher: ActionDispatcher | None = None,
        predicates: Any = None,
        providers: Mapping[str, Any] | None = None,
        event_hooks: Iterable[EventHook] = (),
        snapshots: SnapshotStore | None = None,
        snapshot_every: int | None = None,
        evict_after: float | None = None,
    ) -> None:
        self.spec = spec
        self.tenant = spec.tenant.resource_id
        self.resource_id = self.tenant
        self._references = ReferenceAccess(references, self.tenant, spec.references)
        self._action_dispatcher = action_dispatcher
        # Runs a stream of this process is driving, by thread. A decision can only step a
        # thread at its gate, so the one driving it is the stream waiting there.
        self._running: dict[str, _RunState] = {}
        self._engine = engine
        self._tools = dict(handlers)
        self._services = types.MappingProxyType(dict(services))
        self._log = log
        self._providers = dict(providers or {})
        self._hooks = tuple(event_hooks)
        self._predicates = spec.predicates if predicates is None else predicates
        self._driver = Driver(
            engine, tenant=self.tenant, predicates=self._predicates, services=self._services
        )
        self._agents = {agent.name: agent for agent in spec.agents}
        # The scripted twin that runs single tool calls (run_tool), made on first use.
        self._tool_runner: Runtime | None = None
        # Snapshots (issue 12): every `snapshot_every` events of a thread and at its run ends;
        # None = only when a thread is evicted. Eviction drops a thread no stream drives once
        # it has been unused for `evict_after` seconds; its snapshot brings it back.
        self._snapshots = snapshots if snapshots is not None else MemorySnapshotStore()
        self._snapshot_every = snapshot_every
        self._evict_after = evict_after
        # The seq each thread's stored snapshot covers, and when each held thread was used.
        self._covered: dict[str, int] = {}
        self._used: dict[str, float] = {}
        self._swept = time.monotonic()

    # --- public API ----------------------------------------------------------------------

    def query(self, prompt: str, thread_id: str, resume: Any = None) -> EventStream:
        """Run the coordinator (or the only agent) on ``prompt`` in ``thread_id``.

        A thread that already exists continues its conversation: its history comes from
        its run log. ``resume`` is the seed's session token: accepted, not used (to continue
        a run after a restart, use :meth:`resume`).
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
            thread_id = f"specialist-{name}-{self._driver.next_id()}"
        return self._start(prompt, thread_id, name)

    def replay(self, thread_id: str, at: int | None = None) -> ReplayResult:
        """Rebuild ``thread_id`` from its run log alone (never calls a model or a tool).

        ``at=SEQ`` travels in time: the thread's state and events as they were right after
        its event ``SEQ`` (1-based, the ``seq`` every replayed event carries)."""
        log = self._log.read(thread_id)
        if log is None:
            raise UnknownThreadError(
                f"thread {thread_id!r} has no run log here; check the thread id and log_path"
            )
        if at is not None:
            log = _log_until(thread_id, log, at)
            return ReplayResult(thread_id, _native.replay(log), log)
        saved = self._snapshots.read(thread_id)
        if saved is not None:
            position, snapshot = saved
            try:
                if position > self._log.position(thread_id):
                    raise SnapshotCorruptedError("the snapshot covers more than the log holds")
                tail = self._log.read_after(thread_id, position)
                replay = _native.replay_from(snapshot, tail, thread_id)
                return ReplayResult(thread_id, replay, log)
            except ReplayError as exc:
                _snapshot_refused(thread_id, exc)
        replay = _native.replay(log, path=self._log.describe(thread_id))
        return ReplayResult(thread_id, replay, log)

    def fork(self, thread_id: str, at: int, new_thread_id: str | None = None) -> ReplayResult:
        """Start a new thread whose history is ``thread_id``'s up to its event ``at``; returns
        the new thread as :meth:`replay` would (its id is ``result.thread_id``).

        The new log holds the source's events 1..``at`` and then a ``fork`` event naming the
        source and position; the source is untouched. Fork where the source rested: after a
        run's last event (then :meth:`query` the fork with another prompt), or at an
        ``approval-required`` (the fork waits at the same gate under its own approval id:
        ``result.snapshot["run"]["pending"]["approval"]["id"]``, for
        :meth:`respond_to_approval`). Elsewhere it raises ``ForkUnavailableError``."""
        source = self._log.read(thread_id)
        if source is None:
            raise UnknownThreadError(
                f"thread {thread_id!r} has no run log here; check the thread id and log_path"
            )
        if new_thread_id is None:
            new_thread_id = f"{thread_id}-fork-{self._driver.next_id()}"
        if not isinstance(new_thread_id, str) or not new_thread_id:
            raise TypeError(f"new_thread_id must be a non-empty str, got {new_thread_id!r}")
        if self._log.read(new_thread_id) is not None:
            raise ForkUnavailableError(
                f"thread {new_thread_id!r} exists already; fork into a new thread id"
            )
        request = self._driver.envelope(
            ForkThread.NAME, new_thread_id, {"source_thread_id": thread_id, "at": at}
        )
        outputs = self._engine.fork(request, source)
        # The approval request (at a gate) needs no carrying out here: the fork waits for
        # respond_to_approval, as a run paused by another process does.
        lines = [data for kind, _, data in outputs if kind == _native.EVENT]
        self._record(new_thread_id, lines, boundary=True)
        log = b"".join(line + b"\n" for line in lines)
        return ReplayResult(new_thread_id, _native.replay(log), log)

    async def cancel(self, thread_id: str) -> list[Event]:
        """Cancel the thread's active run; returns the events that ended it.

        A run a stream of this process is driving is cancelled as its stream's ``cancel()``
        does (a model call in flight is aborted): its stream shows the end, and this returns
        []. A run no stream drives (one left waiting by a crashed process) ends here."""
        state = self._running.get(thread_id)
        if state is not None and not state.ended:
            state.cancel()
            return []
        self._ensure_loaded(thread_id)
        decided = await self._step(thread_id, [self._cancel_input(thread_id)])
        if decided.rejections:
            error = error_of(decided.rejections[0])
            raise error_from_code(error["code"], error["message"])
        return [orjson.loads(line)["payload"] for _, line in decided.events]

    async def respond_to_approval(
        self,
        approval_id: str,
        outcome: Literal["approve", "reject", "revise"],
        feedback: str | None = None,
        partial: Any = None,
        *,
        approver: str | None = None,
    ) -> EventStream | None:
        """Decide a waiting approval; the first decision wins.

        If a stream of this process is waiting at that gate, it continues and this returns
        None (the seed's behaviour); otherwise (say the run paused in another process that
        has since exited) it returns the stream of the rest of the run, run here from its
        log. Raises ``UnknownApprovalError`` for an id that is not waiting in this tenant's
        threads and ``ApprovalAlreadyResolvedError`` for one already decided (or expired).

        At a gate that needs several approvers (:class:`~flowai_harness.RequireApprovers`)
        every decision names its ``approver`` (else ``ApproverRequiredError``); an approve
        short of the quorum is counted (the stream shows ``approval-progress`` and keeps
        waiting), the last one opens the gate, any reject closes it. The same approver
        approving again raises ``ApproverAlreadyApprovedError``.
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
        timed_out = await self._expire(thread_id) is not None
        payload: dict[str, Any] = {"approval_id": approval_id, "outcome": outcome}
        for key, value in (("feedback", feedback), ("partial", partial), ("approver", approver)):
            if value is not None:
                payload[key] = value
        decision = self._driver.envelope(ApprovalDecision.NAME, thread_id, payload)
        stepped = await self._step(thread_id, [decision])
        if stepped.rejections:
            error = error_of(stepped.rejections[0])
            message = error["message"]
            if timed_out:
                # The deadline just resolved it, and no stream here runs what follows.
                message += (
                    f"; its deadline had passed, so it was rejected with reason timeout: "
                    f"iterate runtime.resume({thread_id!r}) to run the rest of the run"
                )
            raise error_from_code(error["code"], message)
        if self._hand_over(thread_id, stepped):
            return None
        return EventStream(self, thread_id, None, stepped)

    async def create_reference(
        self, reference: ReferenceSpec | str, value: Any, glimpse: Any = None
    ) -> dict[str, Any]:
        """Keep ``value`` out of the run log; returns its handle ``{kind, id, glimpse}``.
        Ids are content addresses scoped to this tenant; the value is schema-validated."""
        return self._references.create(reference, value, glimpse)

    async def resolve_reference(self, ref: Any) -> Any:
        """The value behind a handle (``ReferenceNotFoundError`` when unknown, expired or
        another tenant's)."""
        return self._references.resolve(ref)

    async def reference_glimpse(self, ref: Any) -> Any:
        """The glimpse kept with a handle."""
        return self._references.glimpse(ref)

    def resume(self, thread_id: str) -> EventStream:
        """Continue a thread's unfinished run from its log (after a crash or a restart).

        Re-issues what the run was waiting for: an outstanding model call or tool call goes
        out again under the same id (a tool that records its invocation id, or a model
        worker's ledger, can tell the repeat), and a run paused at an approval gate waits for
        ``respond_to_approval`` or its deadline. An idle thread gives an empty stream.
        """
        self._ensure_loaded(thread_id)
        if not self._engine.has_thread(thread_id):
            raise UnknownThreadError(
                f"thread {thread_id!r} has no run log here; check the thread id and log_path"
            )
        first: bytes | None = None
        stepped: Decided | None = None
        status = self._engine.status(thread_id)
        if status == "awaiting-approval":
            # Nothing to feed the engine: an empty step takes the loop straight to the gate.
            stepped = Decided()
        elif status != "idle":
            first = self._driver.envelope(ResumeRun.NAME, thread_id, {})
        return EventStream(self, thread_id, first, stepped)

    def run_tool(self, agent: str, tool: str, args: Any, *, thread_id: str) -> EventStream:
        """Run one call of ``agent``'s ``tool`` through the engine, as if the agent's model had
        made it (MCP serving calls tools this way).

        The engine validates the arguments, applies the approval rules (a gated call waits
        at its gate like any other) and logs every event in ``thread_id``; the tool runs as
        in a query. Whatever this runtime's interpreter, the call is a scripted run: one turn
        calls the tool, the next answers with its result. The stream's ``tool-invocation``
        result is the call's outcome.
        """
        if agent not in self._agents:
            raise UnknownAgentError(
                f"no agent named {agent!r}; this runtime's agents are: "
                f"{', '.join(sorted(self._agents))}"
            )
        runner = self._tool_runner
        if runner is None:
            runner = self._tool_runner = self._twin({"kind": "scripted"})
        # Both engines read the thread from the shared log afresh, so neither appends after
        # a stale copy of it.
        for runtime in (self, runner):
            running = runtime._running.get(thread_id)
            if running is not None and not running.ended:
                raise ThreadBusyError(
                    f"thread {thread_id!r} is still running a run of this runtime; wait for "
                    "its finish, cancel it, or use another thread_id"
                )
            runtime._engine.forget(thread_id)
        prompt = orjson.dumps({"tool": tool, "args": args}).decode()
        return runner._start(prompt, thread_id, agent)

    def _twin(self, interpreter: Mapping[str, Any]) -> Runtime:
        """This runtime (tools, services, stores, log, hooks) on an engine of its own with
        another interpreter."""
        twin = Runtime.__new__(Runtime)
        twin.__dict__.update(self.__dict__)
        twin._engine = new_engine(self.spec, interpreter)
        twin._driver = Driver(
            twin._engine, tenant=self.tenant, predicates=self._predicates, services=self._services
        )
        twin._running = {}
        twin._tool_runner = None
        return twin

    def list_mcp_tools(self, agent: str, *, expose_agent_tools: bool = False) -> list[Event]:
        """The tools ``agent`` offers an MCP client: ``{name, description, inputSchema,
        outputSchema?}`` each. ``expose_agent_tools`` adds the built-in tools its role and
        toolkits give it (plans, references); ``call_agent`` is never offered."""
        from .mcp.serving import McpServer

        return McpServer(self, agent, expose_agent_tools=expose_agent_tools).list_tools()

    def serve_mcp_stdio(
        self,
        agent: str,
        *,
        thread_id: str | None = None,
        call_timeout_secs: float = 30,
        expose_agent_tools: bool = False,
    ) -> None:
        """Serve ``agent``'s tools to an MCP client over this process's stdin and stdout,
        until the client closes them. Calls run through the engine and are logged in
        ``thread_id`` (default ``mcp-<agent>``); a gated tool answers with a tool error saying
        it needs approval. Blocks; from async code use ``flowai_harness.mcp.McpServer``."""
        from .mcp.serving import McpServer

        McpServer(
            self,
            agent,
            thread_id=thread_id,
            call_timeout_secs=call_timeout_secs,
            expose_agent_tools=expose_agent_tools,
        ).serve_stdio()

    def serve_mcp_http(
        self,
        agent: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        path: str = "/mcp",
        transport: str = "streamable-http",
        thread_id: str | None = None,
        call_timeout_secs: float = 30,
        expose_agent_tools: bool = False,
        allowed_origins: Iterable[str] | None = None,
        require_origin: bool = True,
    ) -> None:
        """Serve ``agent``'s tools over MCP Streamable HTTP at ``http://host:port/path``.

        Origin check (as the MCP spec asks, against DNS rebinding): with ``require_origin``
        (the default) a request whose ``Origin`` header is not in ``allowed_origins`` (default:
        the server's own loopback origins) is refused with 403; requests without an Origin
        (non-browser clients) pass. ``require_origin=False`` turns the check off. Blocks until
        interrupted; from async code use ``flowai_harness.mcp.McpServer``."""
        from .mcp.serving import McpServer

        McpServer(
            self,
            agent,
            thread_id=thread_id,
            call_timeout_secs=call_timeout_secs,
            expose_agent_tools=expose_agent_tools,
        ).serve_http(
            host=host,
            port=port,
            path=path,
            transport=transport,
            allowed_origins=allowed_origins,
            require_origin=require_origin,
        )

    def stream_eval(self, eval_request: Any, *, approval_policy: str | None = None) -> EvalStream:
        """Run an eval, streaming its envelopes (``evalStarted`` ... ``evalCompleted``); each
        sample is a run on a fresh thread here. Leaving the loop cancels the runs in flight.
        ``approval_policy``: ``"approve"`` (default), ``"reject"`` or ``"fail"`` (see
        :mod:`flowai_harness.evals.runtime_bridge`)."""
        from .evals.runtime_bridge import embedded_stream_eval

        return embedded_stream_eval(
            self,
            eval_request,
            start=self._start,
            providers=self._providers,
            approval_policy=approval_policy,
        )

    async def run_eval(
        self, eval_request: Any, *, approval_policy: str | None = None
    ) -> dict[str, Any]:
        """Run an eval to the end; returns the artifact's JSON dict (as the seed does)."""
        from .evals.runner import artifact_of

        stream = self.stream_eval(eval_request, approval_policy=approval_policy)
        return (await artifact_of(stream)).to_wire()

    def thread_ids(self) -> list[str]:
        """Every thread with a run log in this runtime's log store."""
        return self._log.thread_ids()

    def evict_idle(self, idle_for: float = 0.0) -> list[str]:
        """Drop from memory every thread that no stream drives, is idle or paused at an
        approval gate, and was not used for ``idle_for`` seconds; returns their ids. Each is
        snapshotted first and comes back from its snapshot on its next input.
        ``create_runtime(evict_after=...)`` does this on its own as the runtime works."""
        return self._evict(idle_for, keep=None)

    def close(self) -> None:
        """Close the run-log files (the providers' connections: :meth:`aclose`)."""
        self._log.close()

    async def aclose(self) -> None:
        """Close the live providers' connections and the run-log files. ``async with
        runtime:`` does this on exit."""
        providers, self._providers = self._providers, {}
        if providers:
            from .providers import close_providers

            await close_providers(providers)
        for source in self.spec.tool_sources:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()
        self.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- the drive loop ------------------------------------------------------------------

    def _start(self, prompt: str, thread_id: str, agent: str | None) -> EventStream:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        query = self._driver.envelope(Query.NAME, thread_id, {"prompt": prompt, "agent": agent})
        return EventStream(self, thread_id, query)

    def _cancel_input(self, thread_id: str) -> bytes:
        return self._driver.envelope(CancelRun.NAME, thread_id, {})

    def _ensure_loaded(self, thread_id: str) -> None:
        if self._engine.has_thread(thread_id):
            self._used[thread_id] = time.monotonic()
            return
        saved = self._snapshots.read(thread_id)
        if saved is None or not self._restore(thread_id, *saved):
            log = self._log.read(thread_id)
            if log is None:
                return
            self._engine.load(log, path=self._log.describe(thread_id))
        self._used[thread_id] = time.monotonic()

    def _restore(self, thread_id: str, position: int, snapshot: bytes) -> bool:
        """Hold ``thread_id`` from its snapshot and the log after it; False (with a warning)
        when the snapshot cannot be trusted, so the caller replays the whole log."""
        try:
            if position > self._log.position(thread_id):
                raise SnapshotCorruptedError(
                    "the snapshot covers more of the log than the log holds (the log lost "
                    "lines it had not forced to disk)"
                )
            covered = self._engine.restore(snapshot, thread_id)
            tail = self._log.read_after(thread_id, position)
            self._engine.load_tail(tail, path=self._log.describe(thread_id))
        except ReplayError as exc:
            self._engine.forget(thread_id)
            self._snapshots.drop(thread_id)
            self._covered.pop(thread_id, None)
            _snapshot_refused(thread_id, exc)
            return False
        self._covered[thread_id] = covered
        return True

    def _save(self, thread_id: str) -> None:
        snapshot = self._engine.save(thread_id)
        seq = self._engine.last_seq(thread_id)
        if snapshot is None or seq is None:
            return
        self._snapshots.write(thread_id, self._log.position(thread_id), snapshot)
        self._covered[thread_id] = seq

    def _record(self, thread_id: str, lines: list[bytes], *, boundary: bool) -> None:
        """Append a thread's new events to its log; snapshot it when the policy says."""
        self._log.append(thread_id, lines, boundary=boundary)
        self._used[thread_id] = time.monotonic()
        every = self._snapshot_every
        if every is None:
            return
        seq = self._engine.last_seq(thread_id) or 0
        if seq - self._covered.get(thread_id, 0) >= every or (
            self._engine.status(thread_id) == "idle"
        ):
            self._save(thread_id)

    def _evict(self, idle_for: float, keep: str | None) -> list[str]:
        now = time.monotonic()
        self._swept = now
        evicted: list[str] = []
        for thread_id, used in list(self._used.items()):
            if now - used < idle_for or thread_id == keep or thread_id in self._running:
                continue
            status = self._engine.status(thread_id)
            if status is None:
                del self._used[thread_id]
                continue
            if status not in ("idle", "awaiting-approval"):
                continue
            if self._covered.get(thread_id) != self._engine.last_seq(thread_id):
                self._save(thread_id)
            self._engine.forget(thread_id)
            self._log.release(thread_id)
            del self._used[thread_id]
            evicted.append(thread_id)
        return evicted

    async def _step(self, thread_id: str, inputs: list[bytes]) -> Decided:
        """One engine crossing through the driver; its events are logged before return."""
        decided = await self._driver.feed(inputs)
        self._append(thread_id, decided)
        after = self._evict_after
        if after is not None and time.monotonic() - self._swept >= after / 2:
            self._evict(after, keep=thread_id)
        return decided

    def _append(self, thread_id: str, decided: Decided) -> None:
        lines = [line for _, line in decided.events]
        if not lines:
            return
        # Durable at run ends and approval gates: a paused run must survive its process, and
        # an approver counted toward a quorum must stay counted.
        boundary = any(
            b'"type":"approval-required"' in line
            or b'"type":"approval-progress"' in line
            or b'"type":"finish"' in line
            or b'"type":"error"' in line
            for line in lines
        )
        self._record(thread_id, lines, boundary=boundary)

    def _show(self, event: Event) -> Event:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:  # a broken hook must not break the run
                log.exception("event hook %r failed on a %s event", hook, event.get("type"))
        return event

    async def _drive(
        self,
        thread_id: str,
        first_input: bytes | None,
        state: _RunState,
        stepped: Decided | None = None,
    ) -> AsyncGenerator[Event, None]:
        self._ensure_loaded(thread_id)
        inputs = [] if first_input is None else [first_input]
        self._running[thread_id] = state
        try:
            while stepped is not None or inputs:
                decided = stepped or await self._step(thread_id, inputs)
                stepped, inputs = None, []
                for _, line in decided.events:
                    event = orjson.loads(line)["payload"]
                    kind = event["type"]
                    if kind in _INTERNAL_EVENTS:
                        state.started = True
                        continue
                    if kind in ("text", "reasoning") and event.get("requestId") in state.streamed:
                        continue  # shown while it streamed
                    if kind == "error" or (kind == "tool-agent" and _ends_run(event)):
                        state.ended = True
                    yield self._show(event)
                if decided.rejections:
                    # Not logged: the input was refused and the thread is as it was.
                    state.ended = True
                    yield self._show(orjson.loads(decided.rejections[0])["payload"])
                    return
                if state.handed is not None and not state.ended:
                    # A decision made while these events were shown finished the step the
                    # gate was waiting for (a reject ends the run with nothing left outside).
                    stepped, state.handed = state.handed, None
                    continue
                if state.ended or self._engine.status(thread_id) == "idle":
                    return
                if decided.effects and not state.cancelled:
                    async for item in self._carry_out(thread_id, decided.effects, state):
                        if isinstance(item, bytes):
                            inputs.append(item)
                        else:
                            yield self._show(item)
                # Checked again: cancel() may have been called while an effect ran. Results
                # of tools that ran are logged before the cancellation.
                if state.cancelled:
                    if self._engine.status(thread_id) not in ("idle", "closing"):
                        inputs.append(self._cancel_input(thread_id))
                elif not inputs:
                    due = await self._wait(thread_id, state)
                    if isinstance(due, Decided):
                        stepped = due
                    elif due is not None:
                        inputs.extend(due)
                    elif _cancelled(state):  # cancel() woke the wait
                        inputs.append(self._cancel_input(thread_id))
                    else:
                        return  # nothing more can happen here
        finally:
            self._abandon(thread_id, state)

    async def _wait(self, thread_id: str, state: _RunState) -> Decided | list[bytes] | None:
        """Wait for what the run needs next: a human decision at a gate (or cancel()), or the
        time of a deadline (a model retry). Returns the decision's step, the inputs that are
        due, or None when cancelled or when nothing can come."""
        status = self._engine.status(thread_id)
        if state.handed is not None or status == "awaiting-approval":
            return await self._await_decision(thread_id, state)
        deadline = self._engine.deadline(thread_id)
        if deadline is None:
            return None
        waiter: asyncio.Future[Decided | None] = asyncio.get_running_loop().create_future()
        state.waiter = waiter
        try:
            delay = max(0.0, (deadline - now_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), delay)
        finally:
            state.waiter = None
        if state.cancelled:
            return None
        return [self._driver.envelope(DeadlineReached.NAME, thread_id, {})]

    async def _await_decision(self, thread_id: str, state: _RunState) -> Decided | None:
        """Wait at the gate for ``respond_to_approval`` (or ``cancel()``), feeding the engine
        the time when the approval's deadline passes. No thread sleeps per approval: one
        timer per waiting stream, set from the engine's deadline."""
        if state.handed is not None:
            handed, state.handed = state.handed, None
            return handed
        waiter: asyncio.Future[Decided | None] = asyncio.get_running_loop().create_future()
        state.waiter = waiter
        try:
            while True:
                deadline = self._engine.deadline(thread_id)
                timeout = None if deadline is None else max(0.0, (deadline - now_ms()) / 1000)
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except TimeoutError:
                    stepped = await self._expire(thread_id)
                    if stepped is not None:
                        return stepped
                    # Woken a hair early: the engine says the deadline is still ahead.
        finally:
            state.waiter = None

    async def _expire(self, thread_id: str) -> Decided | None:
        """Feed the engine the time if the thread's deadline passed."""
        deadline = self._engine.deadline(thread_id)
        if deadline is None or now_ms() < deadline:
            return None
        stepped = await self._step(
            thread_id, [self._driver.envelope(DeadlineReached.NAME, thread_id, {})]
        )
        if not stepped.events:
            return None
        if self._hand_over(thread_id, stepped):
            return None
        return stepped

    def _hand_over(self, thread_id: str, stepped: Decided) -> bool:
        """Give a step to the stream of this process waiting at the thread's gate, if any."""
        state = self._running.get(thread_id)
        if state is None or state.ended:
            return False
        if state.waiter is not None and not state.waiter.done():
            state.waiter.set_result(stepped)
        elif state.handed is not None:
            # Decided again before the stream took the last step (approvers of a quorum gate,
            # one after the other in the loop body): the stream shows both, in order.
            state.handed.extend(stepped)
        else:
            state.handed = stepped
        return True

    async def _carry_out(
        self, thread_id: str, effects: list[bytes], state: _RunState
    ) -> AsyncGenerator[Event | bytes, None]:
        """Carry out one step's effects; yields what a stream shows meanwhile (model text as
        it streams, what a tool emits as it runs) and then the engine's next inputs (their
        answers). An approval request has no answer here: the run waits for a human."""
        decoded = [orjson.loads(effect) for effect in effects]
        if all(self._runs_inline(effect) for effect in decoded):
            # Nothing here awaits I/O (sync tools block the loop anyway): no task, no queue.
            # What a tool emitted is logged and shown before its result, as it would be live.
            emitted: list[_Live] = []
            replies = [await self._run_effect(e, state, emitted.append) for e in decoded]
            for item in emitted:
                async for shown in self._shown(thread_id, item):
                    yield shown
            for reply in replies:
                if reply is not None:
                    yield reply
            return
        live: asyncio.Queue[_Live] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(
            self._run_effects(decoded, state, live.put_nowait)
        )
        task.add_done_callback(lambda _: live.put_nowait(None))
        try:
            while (item := await live.get()) is not None:
                async for shown in self._shown(thread_id, item):
                    yield shown
            for reply in task.result():
                yield reply
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _shown(self, thread_id: str, item: _Live) -> AsyncGenerator[Event, None]:
        """What a stream shows for one live item: a model delta as it is, a tool's emitted
        event once it is logged (so it shows while the tool still runs)."""
        if isinstance(item, _Feed):
            fed = await self._step(thread_id, [item.input])
            for _, line in fed.events:
                yield orjson.loads(line)["payload"]
        elif item is not None:
            yield item

    def _runs_inline(self, effect: dict[str, Any]) -> bool:
        """An effect whose work never awaits: a sync tool handler, a reference lookup, or one
        with no answer here (an approval request)."""
        schema = effect["schema"]
        if schema == _TOOL_INVOCATION:
            name = effect["payload"]["tool"]
            tool = self._tools.get(name)
            return name in REFERENCE_TOOLS or (tool is not None and not tool.is_async)
        return schema not in (_MODEL_REQUEST, _PLAN_STEP)

    async def _run_effects(
        self, effects: list[dict[str, Any]], state: _RunState, put: Callable[[_Live], None]
    ) -> list[bytes]:
        replies = []
        for effect in effects:
            reply = await self._run_effect(effect, state, put)
            if reply is not None:
                replies.append(reply)
        return replies

    async def _run_effect(
        self, effect: dict[str, Any], state: _RunState, put: Callable[[_Live], None]
    ) -> bytes | None:
        """Carry out one effect; returns the engine's next input, or None for an approval
        request (the run waits for a human). ``put`` takes what streams meanwhile."""
        schema = effect["schema"]
        if schema == _TOOL_INVOCATION:
            return await self._invoke(effect, put)
        if schema == _PLAN_STEP:
            return await self._dispatch_plan(effect)
        if schema == _MODEL_REQUEST:
            return await self._call_model(effect, state, put)
        return None

    def _abandon(self, thread_id: str, state: _RunState) -> None:
        """End a run its stream left mid-way (break, aclose, an exception in the consumer)
        in the log, so the thread does not stay busy. Idempotent. A run paused at an approval
        gate is left paused: it may be decided later, from this process or another."""
        if self._running.get(thread_id) is state:
            del self._running[thread_id]
        status = self._engine.status(thread_id)
        if status == "awaiting-approval":
            # Done with the run for good: the generator's own ``finally`` comes later (when
            # the event loop closes it) and must not cancel the run once it has been decided
            # and goes on in another stream.
            state.ended = True
            return
        if state.started and not state.ended and status not in (None, "idle"):
            # Called from a finalizer, outside any event loop: a cancel asks the engine
            # nothing a predicate would answer, so it needs no awaiting.
            outputs = self._engine.handle_many([self._cancel_input(thread_id)])
            lines = [data for kind, _, data in outputs if kind == _native.EVENT]
            if lines:
                self._record(thread_id, lines, boundary=True)
            state.ended = True

    async def _dispatch_plan(self, step: dict[str, Any]) -> bytes:
        """Run an approved plan's actions through the action dispatcher."""
        answer = await run_plan_step(
            step, self._action_dispatcher, self._services, self._references
        )
        return tool_result(step, answer, id=self._driver.next_id(), ts=now_ms())

    async def _invoke(self, invocation: dict[str, Any], put: Callable[[_Live], None]) -> bytes:
        """Run one tool invocation; always returns a ToolResult input, never raises. What the
        handler emits (``ctx.emit``, ``ctx.progress``) is logged as it comes."""
        name = invocation["payload"]["tool"]
        if name in REFERENCE_TOOLS:
            payload = run_reference_tool(invocation, self._references)
        else:
            call = invocation["payload"]

            def on_event(event: Event) -> None:
                progress = {
                    "invocation_id": invocation["id"],
                    "tool_invocation_id": call["tool_invocation_id"],
                    "events": [event],
                }
                put(
                    _Feed(
                        self._driver.envelope(
                            _TOOL_PROGRESS,
                            invocation["thread_id"],
                            progress,
                            causation_id=invocation["id"],
                            run_id=invocation.get("run_id"),
                        )
                    )
                )

            payload = await run_tool_call(
                self._tools[name],
                invocation,
                self._services,
                references=self._references,
                on_event=on_event,
            )
            # Logged already, one by one, while the handler ran.
            payload.pop("events", None)
        return tool_result(invocation, payload, id=self._driver.next_id(), ts=now_ms())

    async def _call_model(
        self, request: dict[str, Any], state: _RunState, put: Callable[[_Live], None]
    ) -> bytes | None:
        """Ask the request's provider; its text streams to the stream as it comes. Returns a
        ModelResult input (a provider problem is a failure the engine decides on), or None
        when ``cancel()`` aborted the call (the run is cancelled next)."""
        payload = request["payload"]
        request_id = payload["request_id"]
        agent = payload["agent"]
        started = time.perf_counter()

        def on_delta(delta: dict[str, Any]) -> None:
            kind = "text" if delta.get("type") == "text-delta" else "reasoning"
            state.streamed.add(request_id)
            put(
                {
                    "type": kind,
                    "text": delta.get("text", ""),
                    "agent": agent,
                    "requestId": request_id,
                }
            )

        call = asyncio.get_running_loop().create_task(
            call_model(self._providers, payload, on_delta=on_delta)
        )
        state.model_call = call
        try:
            result = await call
        except asyncio.CancelledError:
            if call.cancelled() and state.cancelled:
                return None  # cancel() aborted the HTTP request
            raise
        finally:
            state.model_call = None
        log.debug("model call %s took %.1f ms", request_id, (time.perf_counter() - started) * 1000)
        return self._driver.envelope(
            _MODEL_RESULT,
            request["thread_id"],
            result,
            causation_id=request["id"],
            run_id=request.get("run_id"),
        )


def _snapshot_refused(thread_id: str, exc: ReplayError) -> None:
    log.warning("thread %r: its snapshot is not used (%s); replaying its whole log", thread_id, exc)


def _with_seq(entry: dict[str, Any]) -> Event:
    payload: Event = entry["payload"]
    payload["seq"] = entry["seq"]
    return payload


def _log_until(thread_id: str, log: bytes, at: int) -> bytes:
    """The first ``at`` lines of a thread's log (seq ``at`` is its ``at``-th line)."""
    lines = log.splitlines(keepends=True)
    if isinstance(at, bool) or not isinstance(at, int) or not 1 <= at <= len(lines):
        raise InvalidInputError(
            f"thread {thread_id!r} has {len(lines)} events; at must be a seq from 1 to "
            f"{len(lines)}, got {at!r}"
        )
    return b"".join(lines[:at])


def _cancelled(state: _RunState) -> bool:
    # A call, not an attribute read: cancel() sets it while the loop awaits.
    return state.cancelled


def _ends_run(event: Event) -> bool:
    """The entry agent's wrapping `tool-agent` result: the last event of a finished run."""
    return event.get("state") == "result" and "targetAgent" not in event


def _thread_of_approval(approval_id: str) -> str | None:
    """The thread an approval id names (the engine reads it), or None."""
    approval = _native.parse_approval_id(approval_id)
    return None if approval is None else approval.thread_id


def create_runtime(
    spec: RuntimeSpec,
    *,
    tool_bindings: Mapping[str, ToolHandler] | None = None,
    services: Mapping[str, Any] | None = None,
    approval_predicates: Mapping[str, Callable[[Any, Any], Any]] | None = None,
    action_dispatcher: ActionDispatcher | None = None,
    event_hooks: Iterable[EventHook] | None = None,
    data_environment: Mapping[str, Any] | None = None,
    target_database_url: str | None = None,
    testing: TestingConfig | Mapping[str, Any] | None = None,
    interpreter: Interpreter = "noop",
    log_path: str | os.PathLike[str] | None = None,
    fsync: FsyncPolicy = "boundary",
    model_providers: Mapping[str, Complete] | None = None,
    snapshot_every: int | None = 50,
    evict_after: float | None = None,
) -> Runtime:
    """Build an embedded runtime for ``spec``.

    - ``interpreter``: ``"noop"`` (the default: each run is ``step-start`` then ``finish``),
      ``"scripted"`` (prompts are JSON tool scripts; see README), or ``"live"`` (every agent
      calls the provider its model routes to, with the keys in the spec's ``providers``;
      ``"anthropic"`` is the seed's name for the same path).
      ``testing=TestingConfig(mock_response=...)`` instead answers every turn with the
      seed's mock (it echoes the prompt, then that text).
    - ``tool_bindings``: ``{tool name: handler}``, overriding handlers bound with define_tool.
    - ``services``: host objects handed to tool handlers (``ctx["services"]``) and to approval
      predicates; the names ``tool_use_id``, ``services`` and ``references`` are reserved.
    - ``approval_predicates``: ``{id: fn(args, ctx) -> bool}`` for the spec's dynamic rules
      (``{"kind": "dynamic", "value": id}``); every id the spec names must be given.
    - ``action_dispatcher``: ``fn(actions, ctx)`` runs an approved plan's actions;
      ``ctx["resolved_refs"]`` holds the referenced values as ``{kind: {id: value}}``.
    - ``event_hooks``: functions called with every event dict a stream shows, in order.
    - ``log_path``: keep run logs in append-only files there (default: in memory), so another
      process opening the same path sees the same threads. ``fsync`` is ``"boundary"``
      (default: at run ends and approval gates), ``"always"`` or ``"never"``. Reference
      payloads are kept under ``log_path`` too (else in memory).
    - ``snapshot_every`` (with ``log_path``): a thread's snapshot is written beside its log
      every that many events and at each run end, so reopening a thread folds only the events
      after it (None: no snapshots). A snapshot the engine cannot read is skipped with a
      warning and the whole log replays.
    - ``evict_after``: seconds after which a thread no stream drives (idle, or paused at an
      approval gate) leaves memory; it comes back from its snapshot on its next input
      (default None: threads stay). :meth:`Runtime.evict_idle` does it on demand.
    - ``data_environment`` / ``target_database_url``: the seed's data catalog settings, which
      this build does not have; passing one is an error that says so.
    - ``model_providers``: ``{provider name: object with complete(request, on_delta=...)}``
      answering the live interpreter's model calls instead of providers built from the spec's
      ``providers`` (replay-as-eval answers from a recording this way).
    """
    if not isinstance(spec, RuntimeSpec):
        raise SpecError(
            f"create_runtime needs the spec from define_runtime(...), got {type(spec).__name__}"
        )
    if data_environment is not None or target_database_url is not None:
        raise SpecError(
            "data_environment and target_database_url configure the seed's data catalog, "
            "which this build does not have; leave them out (tools reach your data through "
            "services=...)"
        )
    interpreter_config = _interpreter_config(testing, interpreter)
    tools = _bind_tools(spec, {**spec.tool_bindings, **(tool_bindings or {})})
    predicates = spec.with_predicates(approval_predicates or {})
    engine = new_engine(spec, interpreter_config)
    if action_dispatcher is not None and not callable(action_dispatcher):
        raise SpecError(f"action_dispatcher must be callable, got {action_dispatcher!r}")
    hooks = tuple(event_hooks or ())
    for hook in hooks:
        if not callable(hook):
            raise SpecError(f"event_hooks must be functions taking an event dict, got {hook!r}")
    services = dict(services or {})
    reserved = sorted({"tool_use_id", "services", "references"} & set(services))
    if reserved:
        raise SpecError(
            f"services may not be named {', '.join(map(repr, reserved))}: a tool's ctx "
            "uses those names; rename the service"
        )
    providers: Mapping[str, Any] = {}
    if model_providers is not None:
        providers = dict(model_providers)
    elif interpreter_config["kind"] == "live":
        from .providers import build_providers

        providers = build_providers(spec.providers)
    log: RunLog
    references: ReferenceStore
    snapshots: SnapshotStore
    if snapshot_every is not None and (isinstance(snapshot_every, bool) or snapshot_every < 1):
        raise SpecError(f"snapshot_every must be a count >= 1 or None, got {snapshot_every!r}")
    if evict_after is not None and not evict_after >= 0:
        raise SpecError(f"evict_after must be seconds >= 0 or None, got {evict_after!r}")
    if log_path is None:
        log, references = MemoryRunLog(), MemoryReferenceStore()
        snapshots = MemorySnapshotStore()
        # In memory a snapshot only serves eviction: the log is as near as the state.
        if evict_after is None:
            snapshot_every = None
    else:
        log = FileRunLog(log_path, spec.tenant.resource_id, fsync)
        references = FileReferenceStore(log_path)
        snapshots = FileSnapshotStore(log_path, spec.tenant.resource_id)
    return Runtime(
        spec,
        engine,
        tools,
        services,
        log,
        references,
        action_dispatcher=action_dispatcher,
        predicates=predicates,
        providers=providers,
        event_hooks=hooks,
        snapshots=snapshots,
        snapshot_every=snapshot_every,
        evict_after=evict_after,
    )


def new_engine(
    spec: RuntimeSpec, interpreter: Mapping[str, Any], *, dedup_window_ms: int | None = None
) -> _native.Engine:
    """A native engine for ``spec``; ``interpreter`` is ``{"kind": "noop" | "scripted" |
    "live"}`` or ``{"kind": "mock", "response": text}`` (docs/wire.md). Used by the runtime
    service too."""
    config: dict[str, Any] = {"interpreter": interpreter}
    if dedup_window_ms is not None:
        config["dedup_window_ms"] = dedup_window_ms
    body = orjson.dumps(config)
    return _native.Engine(b'{"spec":' + spec.compiled + b"," + body[1:])


def interpreter_config(
    testing: TestingConfig | Mapping[str, Any] | None = None, interpreter: str = "noop"
) -> dict[str, Any]:
    """The engine's interpreter setting for ``testing`` / ``interpreter`` (both modes)."""
    return _interpreter_config(testing, interpreter)


def _interpreter_config(
    testing: TestingConfig | Mapping[str, Any] | None, interpreter: str | None
) -> dict[str, Any]:
    if interpreter is None:
        interpreter = "noop"
    if testing is not None and interpreter != "noop":
        raise SpecError(
            "pass either testing=TestingConfig(...) or interpreter=..., not both: "
            "each decides what the model answers"
        )
    if testing is not None:
        if isinstance(testing, Mapping):
            # The seed's TestingConfig is a TypedDict: a plain dict is one.
            testing = TestingConfig(**testing)
        if not isinstance(testing, TestingConfig):
            raise SpecError(
                f"testing must be TestingConfig(mock_response=...), got {type(testing).__name__}"
            )
        return {"kind": "mock", "response": testing.mock_response}
    if interpreter not in INTERPRETERS:
        raise SpecError(
            f"unknown interpreter {interpreter!r}; choose one of {', '.join(INTERPRETERS)} "
            "(or testing=TestingConfig(mock_response=...))"
        )
    if interpreter == "anthropic":
        return {"kind": "live"}
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
