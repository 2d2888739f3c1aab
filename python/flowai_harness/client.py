"""The distributed client: the embedded runtime's ``query`` and ``respond_to_approval``, over Kafka.

Owns :func:`connect`, :class:`Client` and :class:`RemoteEventStream`. A query is a
``flowai.v1.Query`` published to ``<prefix>.queries`` (key ``tenant/thread_id``); its events
are read back from the run log (``<prefix>.runtime-events``, ``read_committed``, so only what
the runtime committed) and yielded as the same dicts the embedded ``Runtime.query`` yields
(without the internal ``run-start``), up to the run's ``finish`` or ``error``. A query the
runtime refuses (a busy thread, say) comes back as a dead letter and ends the stream with an
``error`` event carrying the engine's code, like the embedded runtime's rejection.

One follower consumer per client reads the run log and dead letters from where they ended
when the client started, and hands each record to the stream waiting for its thread, so many
concurrent queries cost one consumer.

Live model text: the follower also reads ``<prefix>.model-deltas``, where model workers
publish a call's text as it streams, and yields it as ``text`` / ``reasoning`` events (with
the call's ``requestId``) the moment it comes, as the embedded runtime does; the run log's
complete ``text`` of that call is then not repeated. A call whose deltas come only after its
logged text (a lagging deltas partition) shows the logged text, and its late deltas are
dropped.

Imports aiokafka lazily (the ``kafka`` extra), so ``import flowai_harness`` works without it.
Must not import the runtime, the native engine or any service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from .errors import BusError, FlowaiError, InvalidInputError
from .messages import envelope

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from .bus import Topics
    from .decision_auth import DecisionSigner

__all__ = ["Client", "RemoteEventStream", "connect"]

Event = dict[str, Any]
Outcome = Literal["approve", "reject", "revise"]

_INTERNAL: Final = frozenset({"run-start", "model-response"})
DECISION_KEY_ENV: Final = "FLOWAI_DECISION_KEY"
_END = object()


def connect(
    bootstrap_servers: str,
    *,
    tenant: str,
    topic_prefix: str = "flowai",
    client_id: str | None = None,
    decision_key: str | bytes | None = None,
) -> Client:
    """A client of the runtime service of ``tenant`` on the topics under ``topic_prefix``.

    Use it as ``async with connect(...) as client:`` (or call :meth:`Client.start` and
    :meth:`Client.close`); ``query`` also starts it on first use.

    ``decision_key`` (PEM text or a file path; default: env ``FLOWAI_DECISION_KEY``) is a
    deciding key: :meth:`Client.respond_to_approval` signs decisions with it, as the runtime
    service requires (flowai_harness.decision_auth). Without one a decision is published
    unsigned, which only a runtime started with ``--allow-unsigned-decisions`` accepts;
    people decide through the approvals service instead.
    """
    if not isinstance(tenant, str) or not tenant:
        raise TypeError(f"tenant must be a non-empty str, got {tenant!r}")
    key = decision_key if decision_key is not None else os.environ.get(DECISION_KEY_ENV)
    return Client(
        bootstrap_servers,
        tenant=tenant,
        topic_prefix=topic_prefix,
        client_id=client_id,
        decision_key=key or None,
    )


class _Follow:
    """One stream's view of the records of its thread."""

    __slots__ = ("early", "format", "logged", "query_id", "queue", "run_id", "streamed")

    def __init__(self, query_id: str) -> None:
        self.query_id = query_id
        self.run_id: str | None = None
        # The log format of the run (1: before the entry agent's wrapping pair).
        self.format = 2
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        # Model calls whose text was shown as it streamed: request id -> last delta seq.
        self.streamed: dict[str, int] = {}
        # Model calls whose complete text the run log showed (their late deltas are dropped).
        self.logged: set[str] = set()
        # Deltas read before the run's run-start (another partition's fetch came first).
        self.early: list[dict[str, Any]] = []


def ends_run(event: Event, log_format: int = 2) -> bool:
    """The event after which a run's stream has nothing more: ``error``, or the entry agent's
    wrapping ``tool-agent`` result (``finish`` for runs logged in format 1)."""
    kind = event.get("type")
    if kind == "error":
        return True
    if log_format < 2:
        return kind == "finish"
    return kind == "tool-agent" and event.get("state") == "result" and "targetAgent" not in event


class RemoteEventStream:
    """The events of one run of a remote runtime; iterate it once. ``cancel()`` asks the
    runtime to stop the run (it then ends with ``finish``, reason ``cancelled``)."""

    __slots__ = ("_agent", "_cancel_task", "_client", "_follow", "_prompt", "_started", "thread_id")

    def __init__(self, client: Client, prompt: str, thread_id: str, agent: str | None) -> None:
        self.thread_id = thread_id
        self._client = client
        self._prompt = prompt
        self._agent = agent
        self._follow: _Follow | None = None
        self._started = False
        self._cancel_task: asyncio.Task[None] | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        if self._started:
            raise FlowaiError("iterate a query's event stream once", code="STREAM_CONSUMED")
        self._started = True
        client = self._client
        follow = await client._begin(self.thread_id, self._prompt, self._agent)
        self._follow = follow
        try:
            while True:
                item = await follow.queue.get()
                if item is _END:
                    return
                yield item
                if ends_run(item, follow.format):
                    return
        finally:
            client._end(self.thread_id, follow)
            if self._cancel_task is not None:
                await self._cancel_task

    def cancel(self) -> None:
        """Publish a ``flowai.v1.CancelRun`` for this thread (once)."""
        if self._cancel_task is None:
            self._cancel_task = asyncio.get_running_loop().create_task(
                self._client._publish_cancel(self.thread_id)
            )

    @property
    def cancelled(self) -> bool:
        return self._cancel_task is not None

    @property
    def query_id(self) -> str | None:
        """The id of the published Query envelope (once iteration started)."""
        return None if self._follow is None else self._follow.query_id


class Client:
    """Queries and approval decisions for one tenant's runtime service, over Kafka."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        tenant: str,
        topic_prefix: str = "flowai",
        client_id: str | None = None,
        decision_key: str | bytes | None = None,
    ) -> None:
        from . import bus

        self._signer: DecisionSigner | None = None
        if decision_key is not None:
            from .decision_auth import DecisionSigner

            self._signer = DecisionSigner.from_pem(decision_key)
        self.tenant = tenant
        self.bootstrap_servers = bootstrap_servers
        self.topics: Topics = bus.Topics(topic_prefix)
        self._client_id = client_id or f"flowai-client-{os.getpid()}"
        self._producer: AIOKafkaProducer | None = None
        self._follower: AIOKafkaConsumer | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self._partitions = 0
        self._waiting: dict[bytes, list[_Follow]] = {}
        self._ids = itertools.count(1)
        self._id_prefix = f"{self._client_id}-{os.urandom(4).hex()}"
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._failure: BaseException | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the producer and the run-log follower; idempotent."""
        async with self._start_lock:
            if self._follow_task is not None:
                return
            if self._closed:
                raise FlowaiError("this client is closed; connect() again", code="CLIENT_CLOSED")
            from aiokafka import TopicPartition
            from aiokafka.errors import KafkaError

            from . import bus

            producer = bus.producer(self.bootstrap_servers, client_id=self._client_id)
            follower = bus.consumer(self.bootstrap_servers, client_id=self._client_id)
            try:
                await producer.start()
                await follower.start()
                partitions = await bus.partition_count(
                    self.bootstrap_servers, self.topics.runtime_events
                )
                counts = await bus.partition_counts(
                    self.bootstrap_servers, [self.topics.dead_letters, self.topics.model_deltas]
                )
                tps = [TopicPartition(self.topics.runtime_events, p) for p in range(partitions)]
                tps += [
                    TopicPartition(topic, p)
                    for topic, count in counts.items()
                    for p in range(count)
                ]
                follower.assign(tps)
                # Follow from the end: every query registers before it publishes, so
                # nothing of its run comes before this position.
                await follower.seek_to_end(*tps)
                for tp in tps:
                    await follower.position(tp)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await follower.stop()
                with contextlib.suppress(Exception):
                    await producer.stop()
                if isinstance(exc, KafkaError):
                    raise BusError(f"cannot use Kafka at {self.bootstrap_servers}: {exc}") from exc
                raise
            self._producer = producer
            self._follower = follower
            self._partitions = partitions
            self._follow_task = asyncio.get_running_loop().create_task(self._follow_loop())

    async def close(self) -> None:
        """Stop following and disconnect; streams still open end without a terminal event."""
        self._closed = True
        task, self._follow_task = self._follow_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for follows in self._waiting.values():
            for follow in follows:
                follow.queue.put_nowait(_END)
        self._waiting.clear()
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- public API ------------------------------------------------------------------------

    def query(self, prompt: str, thread_id: str, *, agent: str | None = None) -> RemoteEventStream:
        """Run the coordinator (or ``agent``) on ``prompt`` in ``thread_id``; the stream yields
        the run's events as the runtime commits them to the run log."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        return RemoteEventStream(self, prompt, thread_id, agent)

    async def respond_to_approval(
        self,
        approval_id: str,
        outcome: Outcome,
        feedback: str | None = None,
        partial: Any = None,
        approver: str | None = None,
        *,
        thread_id: str | None = None,
    ) -> str:
        """Publish a ``flowai.v1.ApprovalDecision``; returns its id.

        The thread comes from the approval id (``appr:{thread_id}/{run_id}/{call id}``) unless
        ``thread_id`` is given. Signed with the client's ``decision_key`` when it has one.
        """
        if outcome not in ("approve", "reject", "revise"):
            raise ValueError(f"outcome must be 'approve', 'reject' or 'revise', got {outcome!r}")
        if thread_id is None:
            thread_id = _thread_of_approval(approval_id)
        payload: dict[str, Any] = {"approval_id": approval_id, "outcome": outcome}
        for name, value in (("feedback", feedback), ("partial", partial), ("approver", approver)):
            if value is not None:
                payload[name] = value
        await self.start()
        envelope = self._envelope("flowai.v1.ApprovalDecision", thread_id, payload)
        if self._signer is not None:
            envelope = orjson.dumps(self._signer.signed(orjson.loads(envelope)))
        await self._send(self.topics.approval_decisions, thread_id, envelope)
        return str(orjson.loads(envelope)["id"])

    # --- internals -------------------------------------------------------------------------

    def _envelope(self, schema: str, thread_id: str, payload: dict[str, Any]) -> bytes:
        return envelope(
            schema,
            id=f"{self._id_prefix}-{next(self._ids)}",
            tenant=self.tenant,
            thread_id=thread_id,
            payload=payload,
        )

    async def _send(self, topic: str, thread_id: str, envelope: bytes) -> None:
        from . import bus, telemetry

        assert self._producer is not None
        key = bus.thread_key(self.tenant, thread_id)
        await self._producer.send_and_wait(
            topic,
            envelope,
            key=key,
            partition=bus.partition_for(key, self._partitions),
            headers=telemetry.publishing(envelope, topic),
        )

    async def _begin(self, thread_id: str, prompt: str, agent: str | None) -> _Follow:
        from . import bus

        await self.start()
        if self._failure is not None:
            raise BusError(f"the run-log follower failed: {self._failure!r}")
        envelope = self._envelope("flowai.v1.Query", thread_id, {"prompt": prompt, "agent": agent})
        follow = _Follow(orjson.loads(envelope)["id"])
        # Registered before publishing, so no event of this run can pass unseen.
        self._waiting.setdefault(bus.thread_key(self.tenant, thread_id), []).append(follow)
        try:
            await self._send(self.topics.queries, thread_id, envelope)
        except BaseException:
            self._end(thread_id, follow)
            raise
        return follow

    def _end(self, thread_id: str, follow: _Follow) -> None:
        from . import bus

        key = bus.thread_key(self.tenant, thread_id)
        follows = self._waiting.get(key)
        if follows is not None and follow in follows:
            follows.remove(follow)
            if not follows:
                del self._waiting[key]

    async def _publish_cancel(self, thread_id: str) -> None:
        await self.start()
        await self._send(
            self.topics.queries, thread_id, self._envelope("flowai.v1.CancelRun", thread_id, {})
        )

    async def _follow_loop(self) -> None:
        follower = self._follower
        assert follower is not None
        run_log = self.topics.runtime_events
        deltas = self.topics.model_deltas
        waiting = self._waiting
        try:
            while True:
                batch = await follower.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    deliver = (
                        _deliver_event
                        if tp.topic == run_log
                        else _deliver_delta
                        if tp.topic == deltas
                        else _deliver_dead_letter
                    )
                    for record in records:
                        follows = waiting.get(record.key) if record.key is not None else None
                        if not follows:
                            continue
                        body = orjson.loads(record.value)
                        for follow in list(follows):
                            deliver(follow, body)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a broken follower must not leave streams hanging
            self._failure = exc
            for follows in waiting.values():
                for follow in follows:
                    follow.queue.put_nowait(
                        {
                            "type": "error",
                            "error": {
                                "message": f"lost the run log: {exc!r}",
                                "code": BusError.code,
                            },
                        }
                    )


def _deliver_event(follow: _Follow, body: dict[str, Any]) -> None:
    payload = body["payload"]
    if follow.run_id is None:
        # The run this query started begins with a run-start caused by the query.
        if payload.get("type") == "run-start" and body.get("causation_id") == follow.query_id:
            follow.run_id = body.get("run_id")
            follow.format = int(payload.get("v") or 1)
            early, follow.early = follow.early, []
            for delta in early:
                _deliver_delta(follow, delta)
        return
    kind = payload.get("type")
    if body.get("run_id") != follow.run_id or kind in _INTERNAL:
        return
    if kind in ("text", "reasoning"):
        request_id = payload.get("requestId")
        if request_id in follow.streamed:
            return  # shown while it streamed
        if request_id is not None:
            follow.logged.add(request_id)
    follow.queue.put_nowait(payload)


# At most this many deltas wait for their run's run-start (a bound, not a tuning knob).
_EARLY_DELTAS: Final = 10_000


def _deliver_delta(follow: _Follow, body: dict[str, Any]) -> None:
    if follow.run_id is None:
        if len(follow.early) < _EARLY_DELTAS:
            follow.early.append(body)
        return
    payload = body.get("payload")
    if body.get("run_id") != follow.run_id or not isinstance(payload, dict):
        return
    request_id = payload.get("request_id")
    seq = payload.get("seq")
    if not isinstance(request_id, str) or not isinstance(seq, int) or request_id in follow.logged:
        return
    if seq <= follow.streamed.get(request_id, 0):
        return  # a copy (the producer retried)
    follow.streamed[request_id] = seq
    follow.queue.put_nowait(
        {
            "type": "reasoning" if payload.get("type") == "reasoning-delta" else "text",
            "text": payload.get("text", ""),
            "agent": payload.get("agent"),
            "requestId": request_id,
        }
    )


def _deliver_dead_letter(follow: _Follow, body: dict[str, Any]) -> None:
    payload = body.get("payload") or {}
    if follow.run_id is None and payload.get("original_id") == follow.query_id:
        follow.queue.put_nowait(
            {
                "type": "error",
                "error": {"message": payload.get("message", ""), "code": payload.get("reason")},
            }
        )


def _thread_of_approval(approval_id: str) -> str:
    # appr:{thread_id}/{run_id}/{toolInvocationId}; the thread id itself may contain '/'.
    if not approval_id.startswith("appr:") or approval_id.count("/") < 2:
        raise InvalidInputError(
            f"approval id {approval_id!r} is not of the form appr:<thread>/<run>/<call>; "
            "pass thread_id= explicitly"
        )
    return approval_id[len("appr:") :].rsplit("/", 2)[0]
