"""Studio on an embedded runtime: runs, decisions and cancels in this process.

Owns :class:`EmbeddedBackend`. Every line the runtime appends to its run log reaches the hub
as it is written (the runtime's log store is wrapped once, in :class:`_ObservedLog`), so runs
started here, decisions made here and cancellations all show up however they came about. A
run started from the chat is driven by a task here, which also passes on what the stream shows
and never logs: a live model's text as it streams, and the error of a refused query.

A run left waiting at an approval gate by an earlier process (``--log-path``) is decided like
any other: ``respond_to_approval`` then hands back the rest of the run, which a task here
drives.

Must not import FastAPI, Kafka or the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

import orjson

from ..errors import FlowaiError
from ..evals.models import EvalRequest
from ..evals.runner import EvalStream
from ..runlog import RunLog
from ..runtime import EventStream, Runtime
from .backend import AgentInfo, Outcome, agents_of, check_chat_target, check_idle
from .hub import Hub

__all__ = ["EmbeddedBackend"]

log = logging.getLogger("flowai.studio")

# Event types a stream may show without logging them (live deltas, a refused input's error).
_MAYBE_LIVE: Final = frozenset({"text", "reasoning", "error"})
# Logged events of those types remembered per thread to tell them from live ones.
_RECENT_LIMIT: Final = 1_000


class _ObservedLog:
    """The runtime's run-log store, telling Studio about every append after it is made."""

    def __init__(self, inner: RunLog, on_append: Callable[[str, list[bytes]], None]) -> None:
        self.inner = inner
        self._on_append = on_append

    def read(self, thread_id: str) -> bytes | None:
        return self.inner.read(thread_id)

    def append(self, thread_id: str, lines: list[bytes], *, boundary: bool) -> None:
        self.inner.append(thread_id, lines, boundary=boundary)
        try:
            self._on_append(thread_id, lines)
        except Exception:  # Studio failing must never fail the run
            log.exception("studio could not index run-log lines of %s", thread_id)

    def thread_ids(self) -> list[str]:
        return self.inner.thread_ids()

    def describe(self, thread_id: str) -> str:
        return self.inner.describe(thread_id)

    def position(self, thread_id: str) -> int:
        return self.inner.position(thread_id)

    def read_after(self, thread_id: str, position: int) -> bytes:
        return self.inner.read_after(thread_id, position)

    def release(self, thread_id: str) -> None:
        self.inner.release(thread_id)

    def close(self) -> None:
        self.inner.close()


class EmbeddedBackend:
    """A runtime of this process behind the Studio API."""

    mode: Literal["embedded"] = "embedded"

    def __init__(self, runtime: Runtime, *, close_runtime: bool = True) -> None:
        self.runtime = runtime
        self.tenant = runtime.tenant
        self.hub = Hub()
        self.capabilities: frozenset[str] = frozenset({"replay-at", "fork"})
        self._agents = agents_of(runtime.spec)
        self._close_runtime = close_runtime
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._recent: dict[str, list[dict[str, Any]]] = {}
        # The one place Studio reaches into the runtime: its log store, to see each append.
        # A public run-log follower on Runtime would replace this.
        current = runtime._log
        if isinstance(current, _ObservedLog):
            raise FlowaiError(
                "this runtime is already served by a Studio; build one runtime per Studio",
                code="STUDIO_RUNTIME_SHARED",
            )
        self._log = _ObservedLog(current, self._appended)
        runtime._log = self._log

    def agents(self) -> list[AgentInfo]:
        return list(self._agents)

    def who_may_decide(self) -> str:
        return "anyone using this Studio (embedded runtime: no approver policy)"

    async def start(self) -> None:
        for thread_id in self._log.thread_ids():
            data = self._log.read(thread_id)
            for line in (data or b"").splitlines():
                if line.strip():
                    self.hub.logged(orjson.loads(line))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.runtime._log = self._log.inner
        if self._close_runtime:
            await self.runtime.aclose()

    async def chat(self, prompt: str, thread_id: str, agent: str | None) -> None:
        target = check_chat_target(self._agents, agent)
        task = self._tasks.get(thread_id)
        check_idle(self.hub, thread_id, driving=task is not None and not task.done())
        if target is None:
            stream = self.runtime.query(prompt, thread_id)
        else:
            stream = self.runtime.run_specialist(target, prompt, thread_id)
        self._drive(thread_id, stream)

    async def cancel(self, thread_id: str) -> None:
        await self.runtime.cancel(thread_id)

    async def decide(
        self,
        approval_id: str,
        outcome: Outcome,
        *,
        approver: str,
        feedback: str | None,
        partial: Any,
    ) -> None:
        rest = await self.runtime.respond_to_approval(
            approval_id, outcome, feedback, partial, approver=approver
        )
        if rest is not None:
            # No stream of this process waited at that gate: drive the rest of the run here.
            self._drive(rest.thread_id, rest)

    async def state_at(self, thread_id: str, seq: int) -> dict[str, Any]:
        result = self.runtime.replay(thread_id, at=seq)
        return {
            "threadId": thread_id,
            "seq": seq,
            "status": result.status,
            "state": result.snapshot,
        }

    async def fork(self, thread_id: str, seq: int, new_thread_id: str | None) -> dict[str, Any]:
        # The fork's lines go through the observed log: the hub has the new thread before
        # this returns, so the page can open it at once.
        result = self.runtime.fork(thread_id, at=seq, new_thread_id=new_thread_id)
        pending = (result.snapshot.get("run") or {}).get("pending") or {}
        approval = pending.get("approval") or {}
        return {
            "threadId": result.thread_id,
            "source": thread_id,
            "seq": seq,
            "status": result.status,
            "approvalId": approval.get("id"),
        }

    def stream_eval(self, request: EvalRequest, approval_policy: str | None) -> EvalStream:
        return self.runtime.stream_eval(request, approval_policy=approval_policy)

    # --- internals -------------------------------------------------------------------------

    def _drive(self, thread_id: str, stream: EventStream) -> None:
        task = asyncio.get_running_loop().create_task(self._follow(thread_id, stream))
        self._tasks[thread_id] = task

    async def _follow(self, thread_id: str, stream: EventStream) -> None:
        try:
            async for event in stream:
                if event.get("type") in _MAYBE_LIVE and not self._was_logged(thread_id, event):
                    self.hub.live(thread_id, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the run of thread %s failed", thread_id)
            code = exc.code if isinstance(exc, FlowaiError) else type(exc).__name__
            self.hub.live(
                thread_id, {"type": "error", "error": {"message": str(exc), "code": code}}
            )
        finally:
            if self._tasks.get(thread_id) is asyncio.current_task():
                del self._tasks[thread_id]
            self._recent.pop(thread_id, None)

    def _appended(self, thread_id: str, lines: list[bytes]) -> None:
        recent = self._recent.setdefault(thread_id, [])
        for line in lines:
            envelope = orjson.loads(line)
            self.hub.logged(envelope)
            payload = envelope.get("payload") or {}
            if payload.get("type") in _MAYBE_LIVE:
                recent.append(payload)
        if len(recent) > _RECENT_LIMIT:
            del recent[: len(recent) - _RECENT_LIMIT]

    def _was_logged(self, thread_id: str, event: dict[str, Any]) -> bool:
        """Whether the stream's ``event`` is a logged one (the log is written before the
        stream shows it, in the same order)."""
        recent = self._recent.get(thread_id, [])
        try:
            at = recent.index(event)
        except ValueError:
            return False
        del recent[: at + 1]
        return True
