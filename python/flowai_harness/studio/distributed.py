"""Studio on the runtime service over Kafka: the run log and live text from topics, queries,
cancels and decisions as messages.

Owns :class:`DistributedBackend`. At start it reads ``<prefix>.runtime-events`` (every
partition, ``read_committed``) from the beginning to where it ended, keeping the envelopes of
its tenant, and then follows it, together with ``<prefix>.model-deltas`` from its end (a live
model's text as model workers stream it). Approvals come from the same log: an
``approval-required`` without its ``approval-decision`` is pending, wherever it is decided
(Studio, chat-ops, the CLI): the decision is logged by the runtime and shows everywhere.

A chat publishes a ``flowai.v1.Query`` through the :func:`~flowai_harness.kafka.client.connect`
client (a task here iterates its stream, which only adds a refused query's error: everything
else comes from the log); a decision is a ``flowai.v1.ApprovalDecision`` through the same
client, signed with ``decision_key`` (the runtime service accepts only signed decisions
unless started with ``--allow-unsigned-decisions``); a cancel is a ``flowai.v1.CancelRun``.

"State here" folds the thread's lines from the log with the engine, as ``Runtime.replay(at=)``
does; "fork from here" checks the fork with an engine of the app's spec (a refusal is answered
at once), publishes a ``flowai.v1.ForkThread`` and waits for the fork in the log.

Imports aiokafka (the ``kafka`` extra). Must not import FastAPI, the server or any service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, Final, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from .. import _native
from ..errors import (
    BusError,
    ForkUnavailableError,
    InvalidInputError,
    UnknownThreadError,
)
from ..evals.models import EvalRequest
from ..evals.runner import EvalStream
from ..kafka import bus
from ..kafka.client import Client, RemoteEventStream, connect
from ..messages import CancelRun, ForkThread, envelope
from ..runtime import new_engine
from ..specs import RuntimeSpec
from .backend import AgentInfo, Outcome, agents_of, check_chat_target, check_idle
from .hub import Hub

__all__ = ["DistributedBackend"]

log = logging.getLogger("flowai.studio")

# How long a fork from the page waits for the runtime service to log it.
FORK_WAIT_SECS: Final = 15.0


class DistributedBackend:
    """One tenant of the runtime service, behind the Studio API."""

    mode: Literal["distributed"] = "distributed"

    def __init__(
        self,
        bootstrap: str,
        *,
        tenant: str,
        spec: RuntimeSpec,
        topic_prefix: str = "flowai",
        decision_key: str | bytes | None = None,
    ) -> None:
        self.tenant = tenant
        self.hub = Hub()
        self.capabilities: frozenset[str] = frozenset({"replay-at", "fork"})
        self._bootstrap = bootstrap
        self._signed = decision_key is not None
        self._client: Client = connect(
            bootstrap,
            tenant=tenant,
            topic_prefix=topic_prefix,
            client_id=f"flowai-studio-{os.getpid()}",
            decision_key=decision_key,
        )
        self._topics = bus.Topics(topic_prefix)
        self._agents = agents_of(spec)
        self._spec = spec
        # An engine of the app's spec that checks forks before they are published.
        self._probe: _native.Engine | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._partitions = 0
        self._follow_task: asyncio.Task[None] | None = None
        self._runs: dict[str, tuple[RemoteEventStream, asyncio.Task[None]]] = {}

    def agents(self) -> list[AgentInfo]:
        return list(self._agents)

    def who_may_decide(self) -> str:
        if self._signed:
            return "Studio signs decisions with its deciding key; the runtime service checks it"
        return (
            "nobody from this Studio: it has no deciding key (--decision-key), so the runtime "
            "service refuses its decisions unless it allows unsigned ones"
        )

    async def start(self) -> None:
        try:
            await self._client.start()
            self._partitions = await bus.partition_count(
                self._bootstrap, self._topics.runtime_events
            )
            deltas = (await bus.partition_counts(self._bootstrap, [self._topics.model_deltas]))[
                self._topics.model_deltas
            ]
            producer = bus.producer(self._bootstrap)
            await producer.start()
            self._producer = producer
            reader = bus.consumer(self._bootstrap, client_id=f"flowai-studio-{os.getpid()}")
            await reader.start()
            self._reader = reader
            log_tps = [
                TopicPartition(self._topics.runtime_events, p) for p in range(self._partitions)
            ]
            delta_tps = [TopicPartition(self._topics.model_deltas, p) for p in range(deltas)]
            reader.assign(log_tps + delta_tps)
            await reader.seek_to_beginning(*log_tps)
            await reader.seek_to_end(*delta_tps)
            ends = await reader.end_offsets(log_tps)
            # What the log held at start is in the index before the first page is served.
            behind = [tp for tp, end in ends.items() if end > 0]
            while behind:
                self._absorb(await reader.getmany(*behind, timeout_ms=500))
                behind = [tp for tp in behind if await reader.position(tp) < ends[tp]]
        except KafkaError as exc:
            await self.close()
            raise BusError(f"Studio cannot read the run log at {self._bootstrap}: {exc}") from exc
        self._follow_task = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        task, self._follow_task = self._follow_task, None
        running = [task for _, task in self._runs.values()]
        for pending in [task, *running]:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
        for closing in (self._reader, self._producer):
            if closing is not None:
                await closing.stop()
        self._reader = self._producer = None
        await self._client.close()

    async def chat(self, prompt: str, thread_id: str, agent: str | None) -> None:
        target = check_chat_target(self._agents, agent)
        check_idle(self.hub, thread_id, driving=thread_id in self._runs)
        stream = self._client.query(prompt, thread_id, agent=target)
        task = asyncio.get_running_loop().create_task(self._drive(thread_id, stream))
        self._runs[thread_id] = (stream, task)

    async def cancel(self, thread_id: str) -> None:
        assert self._producer is not None
        key = bus.thread_key(self.tenant, thread_id)
        message = envelope(
            CancelRun.NAME,
            id=f"studio-cancel-{os.urandom(8).hex()}",
            tenant=self.tenant,
            thread_id=thread_id,
            payload={},
        )
        await self._producer.send_and_wait(
            self._topics.queries,
            message,
            key=key,
            partition=bus.partition_for(key, self._partitions),
            headers=[(bus.TRACEPARENT, bus.new_traceparent().encode())],
        )

    async def decide(
        self,
        approval_id: str,
        outcome: Outcome,
        *,
        approver: str,
        feedback: str | None,
        partial: Any,
    ) -> None:
        approval = self.hub.index.approvals.get(approval_id)
        await self._client.respond_to_approval(
            approval_id,
            outcome,
            feedback,
            partial,
            approver,
            thread_id=approval.thread_id if approval is not None else None,
        )

    async def state_at(self, thread_id: str, seq: int) -> dict[str, Any]:
        # The thread's committed lines are in the hub already; the engine folds them here as
        # Runtime.replay(at=) does, so nothing is asked of the runtime service.
        log_bytes = self._log_of(thread_id, until=seq)
        replay = _native.replay(log_bytes)
        snapshot = replay.snapshot(thread_id)
        return {
            "threadId": thread_id,
            "seq": seq,
            "status": replay.status(thread_id),
            "state": orjson.loads(snapshot) if snapshot is not None else None,
        }

    async def fork(self, thread_id: str, seq: int, new_thread_id: str | None) -> dict[str, Any]:
        source = self._log_of(thread_id)
        if new_thread_id is None:
            new_thread_id = f"{thread_id}-fork-{os.urandom(4).hex()}"
        if new_thread_id in self.hub.index.threads:
            raise ForkUnavailableError(
                f"thread {new_thread_id!r} exists already; fork into a new thread id"
            )
        # The runtime service refuses a fork with a dead letter, which a page cannot wait
        # on; the same engine decides here first, so a refusal is an answer at once.
        probe = self._fork_engine()
        request = envelope(
            ForkThread.NAME,
            id=f"studio-fork-{os.urandom(8).hex()}",
            tenant=self.tenant,
            thread_id=new_thread_id,
            payload={"source_thread_id": thread_id, "at": seq},
        )
        try:
            probe.fork(request, source)
        finally:
            probe.forget(new_thread_id)
        with self.hub.subscribe() as subscription:
            await self._client.fork(thread_id, seq, new_thread_id)
            deadline = asyncio.get_running_loop().time() + FORK_WAIT_SECS
            while new_thread_id not in self.hub.index.threads:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    if remaining <= 0 or await subscription.get(within=remaining) is None:
                        raise TimeoutError
                except TimeoutError:
                    # 503: the service did not log it in time (down, or behind).
                    raise BusError(
                        f"the fork {new_thread_id!r} was not logged within "
                        f"{FORK_WAIT_SECS:.0f} s; is the runtime service running? "
                        "(`flowai dead-letters list` shows a refusal)"
                    ) from None
        thread = self.hub.index.threads[new_thread_id]
        pending = [a for a in self.hub.index.pending() if a.thread_id == new_thread_id]
        return {
            "threadId": new_thread_id,
            "source": thread_id,
            "seq": seq,
            "status": thread.as_json()["status"],
            "approvalId": pending[0].id if pending else None,
        }

    def stream_eval(self, request: EvalRequest, approval_policy: str | None) -> EvalStream:
        # The runtime service runs each sample as a query; gates are decided with this
        # Studio's deciding key, like a decision made on the page.
        return self._client.stream_eval(request, approval_policy=approval_policy)

    # --- internals -------------------------------------------------------------------------

    def _log_of(self, thread_id: str, *, until: int | None = None) -> bytes:
        """The thread's committed run-log lines (the first ``until``), as the engine reads
        them."""
        envelopes = self.hub.index.since(thread_id, 0)
        if not envelopes:
            raise UnknownThreadError(
                f"tenant {self.tenant!r} has no thread {thread_id!r} in the run log"
            )
        if until is not None:
            if isinstance(until, bool) or not 1 <= until <= len(envelopes):
                raise InvalidInputError(
                    f"thread {thread_id!r} has {len(envelopes)} events; at must be a seq "
                    f"from 1 to {len(envelopes)}, got {until!r}"
                )
            envelopes = envelopes[:until]
        return b"".join(orjson.dumps(item) + b"\n" for item in envelopes)

    def _fork_engine(self) -> _native.Engine:
        if self._probe is None:
            self._probe = new_engine(self._spec, {"kind": "noop"})
        return self._probe

    async def _drive(self, thread_id: str, stream: RemoteEventStream) -> None:
        """Publish the query and wait for its run; only a refusal (an error before any event
        of the run was logged) is news here."""
        first = True
        try:
            async for event in stream:
                if first and event.get("type") == "error":
                    self.hub.live(thread_id, event)
                first = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the query of thread %s failed", thread_id)
            self.hub.live(
                thread_id,
                {"type": "error", "error": {"message": str(exc), "code": BusError.code}},
            )
        finally:
            found = self._runs.get(thread_id)
            if found is not None and found[1] is asyncio.current_task():
                del self._runs[thread_id]

    async def _follow(self) -> None:
        assert self._reader is not None
        while True:
            try:
                self._absorb(await self._reader.getmany(timeout_ms=1000))
            except asyncio.CancelledError:
                raise
            except KafkaError:
                log.exception("studio lost the run log; retrying")

    def _absorb(self, batch: dict[TopicPartition, list[Any]]) -> None:
        prefix = f"{self.tenant}/".encode()
        for tp, records in batch.items():
            for record in records:
                if record.key is None or not record.key.startswith(prefix):
                    continue
                try:
                    body = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                if tp.topic == self._topics.runtime_events:
                    self.hub.logged(body)
                else:
                    self._delta(body)

    def _delta(self, body: dict[str, Any]) -> None:
        payload = body.get("payload")
        thread_id = body.get("thread_id")
        if not isinstance(payload, dict) or not isinstance(thread_id, str):
            return
        kind = "reasoning" if payload.get("type") == "reasoning-delta" else "text"
        self.hub.live(
            thread_id,
            {
                "type": kind,
                "text": payload.get("text", ""),
                "agent": payload.get("agent"),
                "requestId": payload.get("request_id"),
                # A producer retry repeats a delta; the page drops a seq it has shown.
                "deltaSeq": payload.get("seq"),
            },
        )
