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

Any thread, not only the client's own runs (:meth:`Client.follow`, :meth:`Client.resume`,
:meth:`Client.cancel`, :meth:`Client.threads`): the runtime keeps a thread index
(``<prefix>.threads``, compacted, one record per thread on its run-log partition number)
saying where each thread's log starts and how the thread stands. Following a thread reads its
index record (the index partition of the thread's number), then only the thread's run-log
partition, from the offset the index gives, and stops at the thread's last event when it is
at rest, or at the end of its current run. A thread the index does not know is an
:class:`~flowai_harness.errors.UnknownThreadError`; another tenant's thread reads exactly like
one (the index is looked up by ``tenant/thread_id`` and every record's tenant is checked).

References: the claim-check store the tool workers share (Redis, ``<prefix>:refs``), through
the same :class:`~flowai_harness.references.ReferenceAccess` a tool handler gets.

Imports aiokafka lazily (the ``kafka`` extra), so ``import flowai_harness`` works without it.
Must not import the runtime or any service; the native engine only where an approval id is
read (the engine is the one reader of its ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from ..errors import (
    BusError,
    FlowaiError,
    InvalidInputError,
    UnknownThreadError,
    UsageError,
    error_from_code,
)
from ..messages import (
    ApprovalDecision,
    CancelRun,
    DeadLetter,
    ForkThread,
    Query,
    ResumeRun,
    Thread,
    envelope,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from ..evals.runner import EvalStream
    from ..references import ReferenceAccess, ReferenceSpec
    from .bus import Topics
    from .decision_auth import DecisionSigner
    from .logread import LogReader

__all__ = ["Client", "RemoteEventStream", "ThreadInfo", "ThreadStream", "connect"]

Event = dict[str, Any]
Outcome = Literal["approve", "reject", "revise"]

_INTERNAL: Final = frozenset({"run-start", "model-response"})
DECISION_KEY_ENV: Final = "FLOWAI_DECISION_KEY"
REDIS_URL_ENV: Final = "FLOWAI_REDIS_URL"
_END = object()
# Statuses in which a thread is not in a run: its log ends at the index record's seq.
_AT_REST: Final = frozenset({"idle"})


def connect(
    bootstrap_servers: str,
    *,
    tenant: str,
    topic_prefix: str = "flowai",
    client_id: str | None = None,
    decision_key: str | bytes | None = None,
    redis_url: str | None = None,
    references: Iterable[ReferenceSpec] = (),
) -> Client:
    """A client of the runtime service of ``tenant`` on the topics under ``topic_prefix``.

    Use it as ``async with connect(...) as client:`` (or call :meth:`Client.start` and
    :meth:`Client.close`); ``query`` also starts it on first use.

    ``decision_key`` (PEM text or a file path; default: env ``FLOWAI_DECISION_KEY``) is a
    deciding key: :meth:`Client.respond_to_approval` signs decisions with it, as the runtime
    service requires (flowai_harness.kafka.decision_auth). Without one a decision is published
    unsigned, which only a runtime started with ``--allow-unsigned-decisions`` accepts;
    people decide through the approvals service instead.

    ``redis_url`` (default: env ``FLOWAI_REDIS_URL``) is the Redis the tool workers keep
    references in; ``references`` are the kinds :meth:`Client.create_reference` may create
    (the app's ``define_runtime(references=...)``).
    """
    if not isinstance(tenant, str) or not tenant:
        raise TypeError(f"tenant must be a non-empty str, got {tenant!r}")
    key = decision_key if decision_key is not None else os.environ.get(DECISION_KEY_ENV)
    client = Client(
        bootstrap_servers,
        tenant=tenant,
        topic_prefix=topic_prefix,
        client_id=client_id,
        decision_key=key or None,
    )
    client._redis_url = redis_url or os.environ.get(REDIS_URL_ENV) or None
    client._reference_specs = tuple(references)
    return client


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


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """One thread as the thread index has it: ``status`` is the engine's phase after its
    last logged events (idle, running, awaiting-model, awaiting-tool, awaiting-approval,
    closing), ``seq`` its last logged seq when the entry was written (at every status change
    and every rest), ``partition`` and ``log_offset`` where its run log starts, ``created``
    and ``updated`` times in ms."""

    thread_id: str
    status: str
    seq: int
    partition: int
    log_offset: int
    created: int | None
    updated: int | None


class ThreadStream:
    """The logged events of one thread, read from its run-log partition; iterate it once.

    Made by :meth:`Client.follow` (from the thread's first event, or ``from_seq``),
    :meth:`Client.resume` and :meth:`Client.cancel` (from the moment they publish their
    input to the run's end). After iterating, ``records_read`` says how many run-log
    records it fetched (the thread's and its partition neighbours') and
    ``index_records_read`` how many thread-index records it walked to find the thread.
    """

    __slots__ = (
        "_client",
        "_raise_refusal",
        "_send",
        "_started",
        "from_seq",
        "index_records_read",
        "records_read",
        "start_offset",
        "thread_id",
    )

    def __init__(
        self,
        client: Client,
        thread_id: str,
        *,
        from_seq: int = 0,
        send: str | None = None,
        raise_refusal: bool = False,
    ) -> None:
        self.thread_id = thread_id
        self.from_seq = from_seq
        self._client = client
        self._send = send
        self._raise_refusal = raise_refusal
        self._started = False
        self.records_read = 0
        self.index_records_read = 0
        self.start_offset: int | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        from aiokafka import TopicPartition

        from . import bus

        if self._started:
            raise FlowaiError("iterate a thread's event stream once", code="STREAM_CONSUMED")
        self._started = True
        client = self._client
        await client.start()
        if client._failure is not None:
            raise BusError(f"the run-log follower failed: {client._failure!r}")
        thread_id = self.thread_id
        key = bus.thread_key(client.tenant, thread_id)
        number = bus.partition_for(key, client._partitions)
        log_tp = TopicPartition(client.topics.runtime_events, number)
        letters_tp = TopicPartition(client.topics.dead_letters, number)
        assert client._follower is not None
        # The log's end before the index is read: whatever the index says was committed by
        # then, so what happens to the thread after it comes at or after these offsets.
        ends = await client._follower.end_offsets([log_tp, letters_tp])
        info, _ = await client._lookup(thread_id)
        self.index_records_read = client.index_scanned
        at_rest = info.status in _AT_REST
        if self._send is None and at_rest and self.from_seq > info.seq:
            return
        if self._send == ResumeRun.NAME and at_rest:
            return  # nothing unfinished: the embedded runtime's empty stream
        tail = self._send is not None
        start = ends[log_tp] if tail else info.log_offset
        self.start_offset = start
        reader = bus.consumer(
            client.bootstrap_servers, client_id=f"{client._client_id}-thread", fetch_max_wait_ms=50
        )
        try:
            await reader.start()
            reader.assign([log_tp, letters_tp])
            reader.seek(log_tp, start)
            reader.seek(letters_tp, ends[letters_tp])
            input_id = None
            if self._send is not None:
                input_id = await client._publish_input(self._send, thread_id)
            # A tail starts inside the run it acts on; a follower finds the runs it reads.
            in_run = tail
            log_format = 2
            last_seq = 0
            while True:
                batch = await reader.getmany(timeout_ms=1000)
                for record in batch.get(letters_tp, []):
                    if record.key != key or input_id is None:
                        continue
                    body = orjson.loads(record.value)
                    payload = body.get("payload") or {}
                    if (
                        body.get("schema") == DeadLetter.NAME
                        and payload.get("original_id") == input_id
                    ):
                        code = str(payload.get("reason"))
                        message = str(payload.get("message", ""))
                        if self._raise_refusal:
                            raise error_from_code(code, message)
                        yield {"type": "error", "error": {"message": message, "code": code}}
                        return
                records = batch.get(log_tp, [])
                self.records_read += len(records)
                for record in records:
                    if record.key != key:
                        continue
                    body = orjson.loads(record.value)
                    if body.get("tenant") != client.tenant or body.get("thread_id") != thread_id:
                        continue
                    payload = body["payload"]
                    seq = body.get("seq") or 0
                    last_seq = max(last_seq, seq)
                    kind = payload.get("type")
                    if kind == "run-start":
                        in_run = True
                        log_format = int(payload.get("v") or 1)
                    ended = ends_run(payload, log_format)
                    if ended:
                        in_run = False
                    if seq >= self.from_seq and kind not in _INTERNAL:
                        yield {**payload, "seq": seq}
                    if ended and tail:
                        return
                    if not tail and at_rest and not in_run and last_seq >= info.seq:
                        return  # the thread's last event as the index had it
                if not tail and not in_run and await reader.position(log_tp) >= ends[log_tp]:
                    return
        finally:
            with contextlib.suppress(Exception):
                await reader.stop()


class Client:
    """One tenant's runtime service over Kafka: queries, specialists, approval decisions,
    any thread's events (follow, resume, cancel), the thread list and references."""

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
        self._reader: LogReader | None = None
        self._index_offsets: AIOKafkaConsumer | None = None
        self._redis_url: str | None = None
        self._reference_specs: tuple[ReferenceSpec, ...] = ()
        self._references: ReferenceAccess | None = None
        self._references_store: Any = None
        # Thread-index records the last index read walked (for follow's figures).
        self.index_scanned = 0

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
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._index_offsets is not None:
            await self._index_offsets.stop()
            self._index_offsets = None
        if self._references_store is not None:
            self._references_store.close()
            self._references_store = None
            self._references = None

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
        envelope = self._envelope(ApprovalDecision.NAME, thread_id, payload)
        if self._signer is not None:
            envelope = orjson.dumps(self._signer.signed(orjson.loads(envelope)))
        await self._send(self.topics.approval_decisions, thread_id, envelope)
        return str(orjson.loads(envelope)["id"])

    def run_specialist(
        self, name: str, prompt: str, thread_id: str | None = None
    ) -> RemoteEventStream:
        """Run the specialist ``name`` directly on ``prompt``, bypassing the coordinator (a
        name the runtime does not know ends the stream with an ``UNKNOWN_AGENT`` error)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if thread_id is None:
            thread_id = f"specialist-{name}-{self._id_prefix}-{next(self._ids)}"
        return self.query(prompt, thread_id, agent=name)

    def follow(self, thread_id: str, from_seq: int = 0) -> ThreadStream:
        """The logged events of ``thread_id`` whose seq is ``from_seq`` or more, each with
        its ``seq``; a thread at rest ends after its last event, a thread in a run when that
        run ends. Works for any thread of this tenant, whoever started it (an upstream
        producer, another client). Iterating raises ``UnknownThreadError`` for a thread the
        tenant does not have."""
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        if not isinstance(from_seq, int) or from_seq < 0:
            raise TypeError(f"from_seq must be an int >= 0, got {from_seq!r}")
        return ThreadStream(self, thread_id, from_seq=from_seq)

    def resume(self, thread_id: str) -> ThreadStream:
        """Continue the thread's unfinished run (after its runtime crashed, say): publishes
        a ``flowai.v1.ResumeRun`` (the runtime re-issues what the run waits for) and yields
        the run's events from then on, to its end. An idle thread gives an empty stream; an
        unknown one raises ``UnknownThreadError`` when iterated."""
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        return ThreadStream(self, thread_id, send=ResumeRun.NAME)

    async def cancel(self, thread_id: str) -> list[Event]:
        """Cancel the thread's active run; returns the events from the cancellation to the
        run's end. Raises ``UnknownThreadError`` for a thread the tenant does not have and
        ``NoActiveRunError`` when no run is active (the runtime's refusal, read back from
        the dead letters)."""
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        stream = ThreadStream(self, thread_id, send=CancelRun.NAME, raise_refusal=True)
        return [event async for event in stream]

    async def threads(self) -> list[ThreadInfo]:
        """This tenant's threads with their status, from the thread index (sorted by id)."""
        from aiokafka import TopicPartition

        await self.start()
        # The index has the run log's partition count (bus.ensure_topics checks it).
        tps = [TopicPartition(self.topics.threads, n) for n in range(self._partitions)]
        read = await self._read_index(tps, key=None)
        latest: dict[str, ThreadInfo] = {}
        for values in read.values():
            for value in values:
                info = self._thread_info(orjson.loads(value))
                if info is not None:
                    latest[info.thread_id] = info
        return [latest[thread_id] for thread_id in sorted(latest)]

    async def thread(self, thread_id: str) -> ThreadInfo:
        """One thread's index entry; ``UnknownThreadError`` when the tenant has no such
        thread (or it has not logged its first event yet)."""
        info, _ = await self._lookup(thread_id)
        return info

    async def create_reference(
        self, reference: ReferenceSpec | str, value: Any, glimpse: Any = None
    ) -> dict[str, Any]:
        """Keep ``value`` in the workers' reference store; returns its handle ``{kind, id,
        glimpse}`` (a kind given by name must be among ``connect(references=...)``)."""
        access = self._reference_access(reference)
        return await asyncio.to_thread(access.create, reference, value, glimpse)

    async def resolve_reference(self, ref: Any) -> Any:
        """The value behind a handle (``ReferenceNotFoundError`` when unknown, expired or
        another tenant's)."""
        access = self._reference_access(None)
        return await asyncio.to_thread(access.resolve, ref)

    async def reference_glimpse(self, ref: Any) -> Any:
        """The glimpse kept with a handle."""
        access = self._reference_access(None)
        return await asyncio.to_thread(access.glimpse, ref)

    # --- thread index and references -------------------------------------------------------

    async def _read_index(self, tps: list[Any], *, key: bytes | None) -> dict[Any, list[bytes]]:
        """The committed index records of ``tps`` (of ``key`` only, when given); counts
        the records walked in ``self.index_scanned``."""
        from aiokafka import TopicPartition

        from . import bus
        from .logread import LogReader

        if self._reader is None:
            reader = LogReader(self.bootstrap_servers, client_id=self._client_id)
            offsets = bus.consumer(self.bootstrap_servers, client_id=self._client_id)
            await reader.start()
            await offsets.start()
            # Assigned and paused (it never fetches), so the index stays in its metadata
            # and each offsets lookup is one round trip, not a metadata refresh.
            every = [TopicPartition(self.topics.threads, n) for n in range(self._partitions)]
            offsets.assign(every)
            offsets.pause(*every)
            self._reader, self._index_offsets = reader, offsets
        offsets = self._index_offsets
        assert offsets is not None
        begins = await offsets.beginning_offsets(tps)
        ends = await offsets.end_offsets(tps)  # read_committed: last stable offsets
        read = await self._reader.read({tp: (begins[tp], ends[tp]) for tp in tps}, key=key)
        self.index_scanned = sum(
            log.scanned if key is not None else len(log.values) for log in read.values()
        )
        return {tp: log.values for tp, log in read.items()}

    async def _lookup(self, thread_id: str) -> tuple[ThreadInfo, int]:
        """The thread's latest index entry and its partition count; raises
        ``UnknownThreadError`` when the index has none for this tenant."""
        from aiokafka import TopicPartition

        from . import bus

        await self.start()
        key = bus.thread_key(self.tenant, thread_id)
        tp = TopicPartition(self.topics.threads, bus.partition_for(key, self._partitions))
        read = await self._read_index([tp], key=key)
        info: ThreadInfo | None = None
        for value in read[tp]:
            found = self._thread_info(orjson.loads(value))
            # The key alone is ambiguous when ids contain '/': the fields must match too.
            if found is not None and found.thread_id == thread_id:
                info = found
        if info is None:
            raise UnknownThreadError(
                f"tenant {self.tenant!r} has no thread {thread_id!r} on {self.topics.prefix}: "
                "check the thread id and the tenant (a thread shows once its first event is "
                "logged; see client.threads())"
            )
        return info, self._partitions

    def _thread_info(self, body: dict[str, Any]) -> ThreadInfo | None:
        payload = body.get("payload")
        thread_id = body.get("thread_id")
        if (
            body.get("schema") != Thread.NAME
            or body.get("tenant") != self.tenant
            or not isinstance(thread_id, str)
            or not isinstance(payload, dict)
        ):
            return None
        return ThreadInfo(
            thread_id=thread_id,
            status=str(payload.get("status")),
            seq=int(payload.get("seq", 0)),
            partition=int(payload.get("partition", 0)),
            log_offset=int(payload.get("log_offset", 0)),
            created=payload.get("created"),
            updated=body.get("ts"),
        )

    def _reference_access(self, reference: ReferenceSpec | str | None) -> ReferenceAccess:
        from ..references import RedisReferenceStore, ReferenceAccess, ReferenceSpec

        if self._references is None:
            if self._redis_url is None:
                raise UsageError(
                    "references live in the workers' Redis: pass connect(..., redis_url=...) "
                    f"or set {REDIS_URL_ENV}"
                )
            store = RedisReferenceStore.from_url(
                self._redis_url, namespace=f"{self.topics.prefix}:refs"
            )
            self._references = ReferenceAccess(store, self.tenant, self._reference_specs)
            self._references_store = store
        if isinstance(reference, ReferenceSpec) and reference.name not in {
            spec.name for spec in self._reference_specs
        }:
            # A kind handed over directly is as good as a declared one.
            self._reference_specs += (reference,)
            self._references = ReferenceAccess(
                self._references_store, self.tenant, self._reference_specs
            )
        return self._references

    def stream_eval(
        self,
        eval_request: Any,
        *,
        approval_policy: str | None = None,
        judge_providers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> EvalStream:
        """Run an eval on the runtime service: each sample is a query on a fresh thread
        (``target_agent_id`` names the agent, else the coordinator); gates are decided by
        ``approval_policy`` through :meth:`respond_to_approval`; judges use
        ``judge_providers`` settings (as ``define_runtime(providers=...)``)."""
        from ..evals.runtime_bridge import remote_stream_eval

        return remote_stream_eval(
            self,
            eval_request,
            approval_policy=approval_policy,
            judge_providers=judge_providers,
        )

    async def run_eval(
        self,
        eval_request: Any,
        *,
        approval_policy: str | None = None,
        judge_providers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """:meth:`stream_eval` to the end; returns the artifact's JSON dict."""
        from ..evals.runner import artifact_of

        stream = self.stream_eval(
            eval_request, approval_policy=approval_policy, judge_providers=judge_providers
        )
        return (await artifact_of(stream)).to_wire()

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
        envelope = self._envelope(Query.NAME, thread_id, {"prompt": prompt, "agent": agent})
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

    async def _publish_input(self, schema: str, thread_id: str) -> str:
        """Publish an empty-payload input (``CancelRun``, ``ResumeRun``); returns its id."""
        await self.start()
        data = self._envelope(schema, thread_id, {})
        await self._send(self.topics.queries, thread_id, data)
        return str(orjson.loads(data)["id"])

    async def _publish_cancel(self, thread_id: str) -> None:
        await self.start()
        await self._send(
            self.topics.queries, thread_id, self._envelope(CancelRun.NAME, thread_id, {})
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

    # --- time travel and fork (issue 12) ----------------------------------------------------

    async def fork(self, thread_id: str, at: int, new_thread_id: str | None = None) -> str:
        """Publish a ``flowai.v1.ForkThread``: the runtime starts ``new_thread_id`` from
        ``thread_id``'s log up to its event ``at`` (see ``Runtime.fork``); returns the new
        thread's id. A fork the runtime refuses (``FORK_UNAVAILABLE``: mid-run, past the end,
        an existing thread) becomes a dead letter; :meth:`replay` of the new thread shows the
        fork once the runtime committed it."""
        if not isinstance(thread_id, str) or not thread_id:
            raise TypeError(f"thread_id must be a non-empty str, got {thread_id!r}")
        if isinstance(at, bool) or not isinstance(at, int) or at < 1:
            raise InvalidInputError(f"at must be a seq >= 1, got {at!r}")
        await self.start()
        if new_thread_id is None:
            new_thread_id = f"{thread_id}-fork-{self._id_prefix}-{next(self._ids)}"
        payload = {"source_thread_id": thread_id, "at": at}
        request = self._envelope(ForkThread.NAME, new_thread_id, payload)
        await self._send(self.topics.queries, new_thread_id, request)
        return new_thread_id

    async def replay(self, thread_id: str, at: int | None = None) -> list[Event]:
        """The thread's committed events (each with its ``seq``), up to ``at`` when given;
        ``UnknownThreadError`` when the run log has none."""
        from ..cli import read_thread
        from ..errors import UnknownThreadError

        entries = await read_thread(
            self.bootstrap_servers, self.topics.prefix, self.tenant, thread_id
        )
        if not entries:
            raise UnknownThreadError(
                f"thread {thread_id!r} of tenant {self.tenant!r} has no committed events"
            )
        if at is not None:
            if isinstance(at, bool) or not 1 <= at <= len(entries):
                raise InvalidInputError(
                    f"thread {thread_id!r} has {len(entries)} events; at must be a seq from 1 "
                    f"to {len(entries)}, got {at!r}"
                )
            entries = entries[:at]
        return [{**entry["payload"], "seq": entry["seq"]} for entry in entries]


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
    if body.get("schema") != DeadLetter.NAME:
        return  # a re-drive record, say
    payload = body.get("payload") or {}
    if follow.run_id is None and payload.get("original_id") == follow.query_id:
        follow.queue.put_nowait(
            {
                "type": "error",
                "error": {"message": payload.get("message", ""), "code": payload.get("reason")},
            }
        )


def _thread_of_approval(approval_id: str) -> str:
    # The engine derives approval ids and is the only reader of them; imported here so the
    # client loads without the extension until it needs one read.
    from .._native import parse_approval_id

    approval = parse_approval_id(approval_id)
    if approval is None:
        raise InvalidInputError(
            f"approval id {approval_id!r} is not of the form appr:<thread>/<run>/<call>; "
            "pass thread_id= explicitly"
        )
    return approval.thread_id
