"""The runtime service: consume inputs, ask the engine, log events and publish effects in one
Kafka transaction per partition and poll.

Owns :class:`RuntimeService` and :class:`ServiceConfig`. The engine decides everything; this
module feeds it the inputs it reads and routes what comes out:

- Inputs: ``queries`` (Query, CancelRun, ResumeRun, ForkThread), ``tool-results``
  (ToolResult, ToolProgress), ``model-results`` (ModelResult) and ``approval-decisions``
  (ApprovalDecision), each schema with its own entry point named after it
  (:meth:`RuntimeService.on_query` ... :meth:`~RuntimeService.on_approval_decision`, and
  :meth:`~RuntimeService.on_deadline_reached` for the deadlines made here), read by ONE
  consumer group (``<prefix>.runtime``), ``read_committed``, range assignor: the member that
  owns partition ``p`` of one input topic owns partition ``p`` of all of them, and of the run
  log. A thread's messages are keyed ``tenant/thread_id``, so they all land on one partition number.
- For each poll, the inputs of partition ``p`` go one by one through the
  :class:`~flowai_harness.driver.Driver` (the embedded runtime's driver: it answers dynamic
  approval rules with the app's predicates and fires deadlines the same way), then ONE
  transaction of ``p``'s producer carries: the events to ``runtime-events`` partition ``p``
  (keyed ``tenant/thread_id``), the effects to the topic their ``schema`` names
  (ToolInvocation -> ``tool-invocations``, PlanStep -> ``plan-steps`` and ModelRequest ->
  ``model-requests`` keyed by their id, ApprovalRequest -> ``approval-requests`` keyed by
  thread), a dead letter (``dead-letters`` partition ``p``) for every rejected input with the
  engine's code and message, and the input offsets (``send_offsets_to_transaction``). An
  input the thread took already (a redelivery or a republished message: its id is the
  idempotency key) or an answer it no longer waits for is counted (``duplicates``), not
  dead-lettered. Deterministic interpreters answer model turns inside the engine, so a
  scripted deployment publishes no model requests at all. Either all of it
  is visible to ``read_committed`` readers, or none: a redelivered input after a crash never
  duplicates an event. The records of a transaction are built into one batch per topic
  partition (:class:`_Outbox`) and sent after the poll's inputs were handled. Each partition
  queues its polled inputs and one task per partition drains the queue, a transaction per
  turn with all that waited (commit at once when idle, batch when busy); partitions commit
  concurrently, and one partition's inputs (so one thread's) stay in offset order. By
  default a poll waits for its transactions; ``pipeline`` lets the next poll go on while
  they commit, and ``linger_ms`` waits a little for more inputs when a poll is busy (both
  measured in bench/kafka_e2e.py). The engine is fed under the service's lock; commits
  run outside it. Each partition remembers the next offset it must handle, so a record the
  consumer hands out twice (a fetch that raced a seek) is never handled twice.
- Ownership: each partition number has its own transactional id (``<group>.<p>``). The new
  owner's ``init_transactions`` fences the previous one (a process killed with ``kill -9``
  or one that lost the group) and completes or aborts its last transaction before the new
  owner reads anything, so the run log and the committed offsets it then reads are stable.
- Rebuild: on assignment (``ConsumerRebalanceListener``), before any input of a new partition
  is handled, its run-log partition is read from the beginning to its last stable offset and
  folded with ``Engine.load`` (one crossing per partition, not one per event); revoked
  partitions' threads are forgotten. A partition kept across a rebalance keeps its state only
  if its run log did not move since this instance last wrote it. The run log is read with
  :class:`~flowai_harness.kafka.logread.LogReader` (record values only, no consumer records), the
  fetch of the next partition overlapping the fold of the current one. Records fetched
  while a rebalance ran are read again from where this instance stands.
- Thread index: the same transaction carries a ``Thread`` record (``threads`` topic,
  compacted, partition ``p``) for each thread whose status changed or that came to rest:
  its status, last seq, and an offset of run-log partition ``p`` at or before its first
  event (the log's end before the transaction that logged that event), which followers
  start from instead of offset 0. On assignment the partition's index is read back, so the
  offsets survive a takeover.
- Snapshots (issue 12): in the transaction of the events they cover, a thread's snapshot
  goes to the compacted ``snapshots`` topic (same partition number, key ``tenant/thread_id``)
  when it has ``snapshot_every`` events not yet covered or its run ended; every
  ``checkpoint_every`` events of a partition, every thread with uncovered events is
  snapshotted and a checkpoint (key ``tenant/``) records the run-log offset the partition's
  transaction started at: no thread has an uncovered event before it. Rebuilding a partition
  then restores its threads' latest snapshots and folds the run log from the checkpoint only,
  skipping what each snapshot covers (``Engine.load_tail``). No checkpoint, or a snapshot or
  tail the engine refuses: the whole partition is replayed (with a warning), and every thread
  is snapshotted again at the next checkpoint.
- Eviction (issue 12, bounded memory; ``evict_after``): a thread unused for that long that
  rests (idle, or paused at an approval gate) and has no deadline pending leaves the engine
  and the partition's maps. Its snapshot must cover every event it logged: one is written in
  a transaction first if needed, and the thread is dropped after that commit, its snapshot
  and index entry kept in the instance's :class:`~services.runtime.store.ThreadStore` (a
  SQLite file under ``state_dir``). Its next input brings it back from there before the
  engine sees the input. A thread with a run in flight or a deadline stays, so the deadlines
  the engine reports (``Driver.due``) are always of threads in memory. With a store, a
  takeover is lazy: it mirrors into the store what the ``snapshots`` and ``threads`` topics
  gained since it last read them, and restores only the threads the run log's tail after
  the checkpoint names; the others stay on disk until an input asks for them.
- A failed transaction leaves the engine ahead of the log, so the partition is rebuilt from
  the log and its inputs are read again from the committed offsets.

Why not FastStream for this loop: FastStream 0.7 subscribers ack per message or batch and
publish outside any producer transaction; they cannot put the consumed offsets into the
producer's transaction (``send_offsets_to_transaction``), hold a per-partition transactional
producer, or replay the run log inside the rebalance callback before fetching resumes. This
loop needs that raw aiokafka control, so it uses aiokafka directly (the message shapes are
still the Pydantic models of :mod:`flowai_harness.messages` and ``schemas/v1``).

Must not import other services; talks to the engine only through the package facade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from flowai_harness import _native, messages
from flowai_harness.driver import Decided, Driver, error_of
from flowai_harness.errors import DecisionUnverifiedError, FlowaiError, ReplayError, UsageError
from flowai_harness.kafka import bus, metrics, telemetry
from flowai_harness.kafka.decision_auth import DecisionVerifier
from flowai_harness.kafka.logread import LogReader
from flowai_harness.runtime import new_engine
from flowai_harness.specs import RuntimeSpec

from .store import SNAPSHOTS, THREADS, IndexEntry, ThreadStore, store_path

__all__ = ["InlineRunner", "RuntimeService", "ServiceConfig"]

log = logging.getLogger("flowai.runtime")

SERVICE: Final = "runtime"
# Codes of the rejections this service makes itself (the engine's codes pass through).
INPUT_EMPTY: Final = "INPUT_MALFORMED"
INPUT_WRONG_PARTITION: Final = "INPUT_WRONG_PARTITION"
APPROVAL_DECISION: Final = messages.ApprovalDecision.NAME
FORK_THREAD: Final = messages.ForkThread.NAME
EFFECT_UNROUTABLE: Final = "EFFECT_UNROUTABLE"

# Statuses a thread rests in: its index record is written whenever it gets there (with the
# new seq), not only when the status changes.
_RESTING: Final = frozenset({"idle", "awaiting-approval"})
# Per-hop timestamps (ms since the epoch, ``name=value`` pairs joined by commas), carried from
# input to output by every service that has timing on: ``in`` the input record's timestamp,
# ``p`` when this service polled it, ``e`` when the engine had decided on it.
TIMING: Final = bus.TIMING
TIMING_ENV: Final = bus.TIMING_ENV

TOOL_INVOCATION: Final = messages.ToolInvocation.NAME
# Offsets of a compacted topic read into the local store at a time, and threads evicted per
# partition and sweep (the sweep holds the engine's lock).
_MIRROR_SLICE: Final = 20_000
_EVICT_BATCH: Final = 2_000


class InlineRunner(Protocol):
    """Runs tools marked ``placement="inline"`` here (services.tools.inline.InlineTools,
    handed over by the command line): effectively once, by invocation id."""

    def takes(self, tool: str) -> bool: ...

    async def run(self, invocation: bytes) -> tuple[bytes, tuple[str, str] | None]:
        """The ToolResult, and the dead letter (reason, message) it asks for, if any."""
        ...


@dataclass(frozen=True, slots=True)
class _Input:
    """One consumed input on its way to its hop: where it came from, the transaction's outbox
    it may be dead-lettered into, and its envelope fields."""

    part: _Partition
    tp: TopicPartition
    record: ConsumerRecord
    outbox: _Outbox
    fields: dict[str, Any]


# One hop's entry point: what the engine decided, or None when the input was dead-lettered
# before reaching it.
_Hop = Callable[[_Input], Awaitable["Decided | None"]]

_KEYED_BY_ID: Final = messages.KEYED_BY_ID


@dataclass(frozen=True)
class ServiceConfig:
    """Where the runtime service runs and how it reads."""

    bootstrap: str
    prefix: str = bus.DEFAULT_PREFIX
    group_id: str | None = None
    # Static membership: a restarted process with the same id takes over at once instead of
    # waiting for the old member's session to expire.
    instance_id: str | None = None
    partitions: int = bus.DEFAULT_PARTITIONS
    # None: bus.ensure_topics picks (3 replicas, min ISR 2, on 3+ brokers).
    replication: int | None = None
    min_insync_replicas: int | None = None
    # A run log with one replica is refused unless this (None: FLOWAI_ALLOW_UNREPLICATED)
    # says it is a dev cluster.
    allow_unreplicated: bool | None = None
    create_topics: bool = True
    max_records: int = 1000
    session_timeout_ms: int = 10_000
    # How long an input's id is remembered to ignore it when published again (ms; None:
    # the engine's default, 24 h). Rebuilt from the run log, so it survives restarts.
    dedup_window_ms: int | None = None
    # Approval decisions must be signed by a key this verifier trusts (None: accepted
    # unsigned, which only --allow-unsigned-decisions asks for).
    decisions: DecisionVerifier | None = None
    # Snapshot a thread once this many of its events are not covered, and at its run ends
    # (None: no snapshots; every takeover replays whole partitions).
    snapshot_every: int | None = 50
    # False: no snapshot at a run's end, only every snapshot_every events, at checkpoints and
    # before an eviction (fewer records for short threads; a takeover folds a longer tail,
    # still bounded by checkpoint_every).
    snapshot_at_run_end: bool = True
    # Checkpoint a partition every this many events: a takeover folds at most about this
    # many events of it (plus the last transaction's).
    checkpoint_every: int = 1000
    # Stamp each output with when its input was polled and decided (header TIMING), and
    # time each transaction's phases (logged on SIGUSR1); for bench/kafka_e2e.py.
    timing: bool = field(default_factory=lambda: bus.env_flag(TIMING_ENV))
    # True: each partition commits while the next poll is fetched and handled (see
    # _dispatch). False (the default: on a shared 2-core machine it measured no better, see
    # bench/kafka_e2e.py): every poll waits for all its transactions. Env
    # FLOWAI_RUNTIME_PIPELINE=1.
    pipeline: bool = field(
        default_factory=lambda: os.environ.get("FLOWAI_RUNTIME_PIPELINE", "0") == "1"
    )
    # Inputs waiting for a partition's transaction beyond which its fetching pauses.
    max_queued: int = 4000
    # Busy (a poll brought at least busy_inputs inputs): wait linger_ms for more before
    # handling them, so each transaction carries more inputs (fewer transactions per input
    # when the load is high); idle: at once. Env FLOWAI_RUNTIME_LINGER_MS (0: never wait).
    linger_ms: float = field(
        default_factory=lambda: float(os.environ.get("FLOWAI_RUNTIME_LINGER_MS", "0"))
    )
    busy_inputs: int = 8
    # Seconds after which a resting thread without a deadline leaves memory for the store
    # under state_dir (None: threads stay; needs snapshot_every).
    evict_after: float | None = None
    state_dir: str | None = None

    @property
    def group(self) -> str:
        return self.group_id or bus.group_name(self.prefix, bus.RUNTIME_GROUP)


class _Partition:
    """What this instance holds for one partition number it owns."""

    __slots__ = (
        "dirty",
        "draining",
        "expected",
        "fenced",
        "held",
        "index",
        "inputs",
        "log_end",
        "next_offsets",
        "number",
        "producer",
        "queue",
        "queued",
        "since_checkpoint",
        "threads",
        "used",
    )

    def __init__(self, number: int, inputs: list[TopicPartition], producer: AIOKafkaProducer):
        self.number = number
        self.inputs = inputs
        self.producer = producer
        # thread id -> its key (``tenant/thread_id``): the threads to forget when it goes.
        self.threads: dict[str, bytes] = {}
        # The run log's end offset right after this instance last wrote (or read) it.
        self.log_end = -1
        # Input offsets committed by this instance's transactions.
        self.next_offsets: dict[TopicPartition, int] = {}
        # The next input offset to handle (set by a seek, advanced by each poll).
        self.expected: dict[TopicPartition, int] = {}
        self.fenced = False
        # thread id -> (log offset at or before its first event, created ms, last status
        # written to the thread index): what the next index record must repeat.
        self.index: dict[str, tuple[int, int | None, str]] = {}
        # Threads with events no snapshot covers (with how many), and events since the last
        # checkpoint.
        self.dirty: dict[str, int] = {}
        self.since_checkpoint = 0
        # Polled inputs waiting for this partition's next transaction, with when they were
        # polled; one task drains it at a time.
        self.queue: list[tuple[TopicPartition, list[ConsumerRecord], float]] = []
        self.queued = 0
        self.draining: asyncio.Task[None] | None = None
        # Fetching paused because the queue is long.
        self.held = False
        # thread id -> when it last logged or came back (monotonic), least recent first:
        # the threads in memory, in the order eviction considers them.
        self.used: dict[str, float] = {}

    def touch(self, thread_id: str, now: float) -> None:
        self.used.pop(thread_id, None)
        self.used[thread_id] = now

    def release(self, thread_id: str) -> None:
        """Forget what this partition holds for a thread that left memory."""
        self.threads.pop(thread_id, None)
        self.index.pop(thread_id, None)
        self.used.pop(thread_id, None)
        self.dirty.pop(thread_id, None)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: RuntimeService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._service._on_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service._on_assigned(assigned)


class RuntimeService:
    """One runtime instance: an engine, the input consumer, a transactional producer per
    owned partition, and a consumer that reads the run log back on assignment."""

    def __init__(
        self,
        spec: RuntimeSpec,
        interpreter: Mapping[str, Any],
        config: ServiceConfig,
        *,
        services: Mapping[str, Any] | None = None,
        predicates: Any = None,
        inline: InlineRunner | None = None,
    ) -> None:
        self.spec = spec
        # Tools placed inline run here, in the flow of the transaction that consumes the
        # input asking for them (see _run_inline).
        self.inline = inline
        self.config = config
        self.tenant = spec.tenant.resource_id
        self.topics = bus.Topics(config.prefix)
        self._engine = new_engine(spec, interpreter, dedup_window_ms=config.dedup_window_ms)
        # Ids of inputs this instance makes itself (deadlines, approval checks).
        self._boot = time.time_ns()
        self._driver = Driver(
            self._engine,
            tenant=self.tenant,
            predicates=spec.predicates if predicates is None else predicates,
            services=dict(services or {}),
            id_prefix=f"{config.group}-{config.instance_id or 'runtime'}-{self._boot}",
        )
        self._tenant_prefix = f"{self.tenant}/".encode()
        # Input schema -> its entry point (see _handle); anything else goes to the engine as is.
        self._hops: dict[str, _Hop] = {
            messages.Query.NAME: self.on_query,
            messages.CancelRun.NAME: self.on_cancel_run,
            messages.ResumeRun.NAME: self.on_resume_run,
            FORK_THREAD: self.on_fork_thread,
            messages.ToolResult.NAME: self.on_tool_result,
            messages.ToolProgress.NAME: self.on_tool_progress,
            messages.ModelResult.NAME: self.on_model_result,
            APPROVAL_DECISION: self.on_approval_decision,
        }
        self._partitions: dict[int, _Partition] = {}
        self._partition_count = 0
        self._topic_partitions: dict[str, int] = {}
        # Held while a poll's inputs are handled and while a rebalance changes ownership.
        self._lock = asyncio.Lock()
        # Bumped by every rebalance: records fetched before it are dropped, not handled.
        self._generation = 0
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._replayer: AIOKafkaConsumer | None = None
        self._reader: LogReader | None = None
        self._fatal: BaseException | None = None
        self.ready = asyncio.Event()
        self.timings = PhaseTimings() if config.timing else None
        self.stats = {
            "inputs": 0,
            "events": 0,
            "effects": 0,
            "dead_letters": 0,
            "duplicates": 0,
            "replayed": 0,
            "snapshots": 0,
            "restored": 0,
            "inline_calls": 0,
            "evicted": 0,
            "brought_back": 0,
        }
        self._store: ThreadStore | None = None
        self._swept = time.monotonic()
        if config.evict_after is not None:
            if config.snapshot_every is None or config.state_dir is None:
                raise UsageError(
                    "evicting idle threads needs snapshots (--snapshot-every above 0) and a "
                    "--state-dir for the local store; turn eviction off with --evict-after 0"
                )
            self._store = ThreadStore(
                store_path(config.state_dir, config.group, config.instance_id),
                remove_on_close=config.instance_id is None,
            )

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if cfg.create_topics:
            await bus.ensure_topics(
                cfg.bootstrap,
                self.topics,
                partitions=cfg.partitions,
                replication=cfg.replication,
                min_insync_replicas=cfg.min_insync_replicas,
                allow_unreplicated=cfg.allow_unreplicated,
            )
        else:
            await bus.check_run_log(
                cfg.bootstrap, self.topics, allow_unreplicated=cfg.allow_unreplicated
            )
        self._topic_partitions = await bus.partition_counts(
            cfg.bootstrap, self.topics.all(), wait=10.0
        )
        self._partition_count = self._topic_partitions[self.topics.runtime_events]
        # Offsets of the run log (read_committed: its end is the last stable offset)...
        self._replayer = bus.consumer(
            cfg.bootstrap, client_id=f"{cfg.group}-replay", retry_backoff_ms=10
        )
        await self._replayer.start()
        # ... and its records, read without a consumer's per-record objects.
        self._reader = LogReader(cfg.bootstrap, client_id=f"{cfg.group}-replay")
        await self._reader.start()
        # Assigned (and paused: it never fetches) so that the run log stays in its metadata,
        # and asked once now: the first lookup waits for topic metadata (about 100 ms),
        # which a takeover should not.
        every = [
            TopicPartition(self.topics.runtime_events, n) for n in range(self._partition_count)
        ]
        self._replayer.assign(every)
        self._replayer.pause(*every)
        await self._replayer.end_offsets(every)
        await self._reader.read({tp: (0, 0) for tp in every})
        self._consumer = bus.consumer(
            cfg.bootstrap,
            group_id=cfg.group,
            group_instance_id=cfg.instance_id,
            client_id=f"{cfg.group}-{cfg.instance_id or 'input'}",
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(100, cfg.session_timeout_ms // 5),
        )
        self._consumer.subscribe(list(self.topics.runtime_inputs), listener=_Listener(self))
        metrics.watch_consumer(self._consumer)
        await self._consumer.start()

    def stop(self) -> None:
        """Ask :meth:`run` to finish the poll in hand and return."""
        self._stopping.set()

    async def close(self) -> None:
        # Transactions in flight finish (or fail) before the partitions go.
        with contextlib.suppress(Exception):
            await self._quiesce()
        if self._consumer is not None:
            # Leaves the group, so another instance gets the partitions without waiting.
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        for number in list(self._partitions):
            await self._drop(number)
        if self._replayer is not None:
            with contextlib.suppress(Exception):
                await self._replayer.stop()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.close()
        if self._store is not None:
            self._store.close()

    async def run(self) -> None:
        """Start, then handle inputs until :meth:`stop`; always closes."""
        try:
            await self.start()
            consumer = self._consumer
            assert consumer is not None
            if self.timings is not None:
                self.timings.on_signal()
            while not self._stopping.is_set():
                generation = self._generation
                batch = await consumer.getmany(timeout_ms=100, max_records=self.config.max_records)
                if self.config.linger_ms > 0 and batch:
                    batch = await self._linger(consumer, batch)
                polled = time.time()
                if self._fatal is not None:
                    raise self._fatal
                # Approval deadlines are checked every poll (at most 100 ms apart): the engine
                # says when; no timer per approval. Under the lock, like every engine call: a
                # rebalance may be folding a log into the engine on a worker thread.
                async with self._lock:
                    await self._fire_deadlines()
                    if self._store is not None:
                        await self._evict_idle()
                if not batch:
                    continue
                async with self._lock:
                    if generation != self._generation:
                        # A rebalance ran while these were fetched: they may come from
                        # before its seeks (stale) or after (and then the consumer has moved
                        # past them). Read them again from where this instance stands; the
                        # expected offsets keep anything from being handled twice.
                        for tp in batch:
                            part = self._partitions.get(tp.partition)
                            if part is not None and tp in part.expected:
                                consumer.seek(tp, part.expected[tp])
                        continue
                    self._dispatch(batch, polled)
                if not self.config.pipeline:
                    await self._quiesce(clear=False)
        finally:
            await self.close()

    # --- adaptive batching -----------------------------------------------------------------

    async def _linger(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """When busy, what arrives within ``linger_ms`` joins ``batch``."""
        count = sum(len(records) for records in batch.values())
        if count < self.config.busy_inputs:
            return batch
        await asyncio.sleep(self.config.linger_ms / 1000)
        more = await consumer.getmany(
            timeout_ms=0, max_records=max(1, self.config.max_records - count)
        )
        for tp, records in more.items():
            batch.setdefault(tp, []).extend(records)
        return batch

    def _dispatch(
        self, batch: Mapping[TopicPartition, list[ConsumerRecord]], polled: float
    ) -> None:
        """Queue a poll's inputs on their partitions and start a drain where none runs.

        A partition commits at once when it is idle; while its transaction commits, what
        arrives for it waits in its queue and goes into its next transaction together
        (batching grows with the load, and no partition waits for another's commit). The
        poll loop meanwhile fetches on; a partition whose queue holds more than
        ``max_queued`` inputs stops fetching until it drains."""
        consumer = self._consumer
        for tp, records in batch.items():
            part = self._partitions.get(tp.partition)
            if part is None or part.fenced:
                continue
            part.queue.append((tp, records, polled))
            part.queued += len(records)
            if part.queued > self.config.max_queued and not part.held and consumer is not None:
                consumer.pause(*part.inputs)
                part.held = True
            if part.draining is None or part.draining.done():
                part.draining = asyncio.create_task(self._drain(part))
                part.draining.add_done_callback(self._drain_done)

    def _drain_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug, not a Kafka failure (those are handled in _process): stop loudly.
            self._fatal = task.exception()
            self._stopping.set()

    async def _drain(self, part: _Partition) -> None:
        """One transaction per turn with everything queued on ``part`` until it is empty."""
        while part.queue and self._partitions.get(part.number) is part and not part.fenced:
            taken, part.queue, part.queued = part.queue, [], 0
            if part.held and self._consumer is not None and not part.fenced:
                self._consumer.resume(*part.inputs)
                part.held = False
            items = [(tp, records) for tp, records, _ in taken]
            polled = min(at for _, _, at in taken)
            await self._process(part.number, items, polled)

    async def _quiesce(self, *, clear: bool = True) -> None:
        """Wait until no partition has a transaction in flight (``clear``: dropping what is
        queued and not handled yet; it is read again from where this instance stands)."""
        while True:
            running = [
                part.draining
                for part in self._partitions.values()
                if part.draining is not None and not part.draining.done()
            ]
            if clear:
                for part in self._partitions.values():
                    part.queue, part.queued = [], 0
            if not running:
                return
            await asyncio.wait(running)

    # --- rebalance -------------------------------------------------------------------------

    async def _on_revoked(self) -> None:
        async with self._lock:  # waits for the poll in hand
            self._generation += 1
            self.ready.clear()
        # Then for every transaction in flight (they take the lock themselves).
        await self._quiesce()

    async def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        try:
            async with self._lock:
                self._generation += 1
            await self._quiesce()
            async with self._lock:
                self._generation += 1
                numbers = {tp.partition for tp in assigned}
                await self._adopt(numbers)
                self.ready.set()
        except BaseException as exc:  # aiokafka only logs listener errors: stop the service
            log.exception("cannot take partitions %s", sorted({tp.partition for tp in assigned}))
            self._fatal = exc
            self._stopping.set()
            raise

    async def _adopt(self, numbers: set[int]) -> None:
        for number in set(self._partitions) - numbers:
            await self._drop(number)
        kept = [self._partitions[n] for n in numbers & set(self._partitions)]
        if kept:
            assert self._replayer is not None
            ends = await self._replayer.end_offsets(
                [TopicPartition(self.topics.runtime_events, part.number) for part in kept]
            )
            for part in kept:
                end = ends[TopicPartition(self.topics.runtime_events, part.number)]
                if part.fenced or end != part.log_end:
                    # Someone else wrote this thread log meanwhile (or our last commit is
                    # not visible yet): the state here may be stale, so rebuild it.
                    await self._drop(part.number)
        gained = sorted(numbers - set(self._partitions))
        if gained:
            await self._take(gained)
        for number in sorted(numbers):
            await self._seek_inputs(self._partitions[number])
        log.info(
            "runtime %s owns partitions %s (%d threads)",
            self.config.group,
            sorted(numbers),
            sum(len(p.threads) for p in self._partitions.values()),
        )

    async def _take(self, numbers: list[int]) -> None:
        # Producers first: init_transactions fences the previous owner and finishes its last
        # transaction, so what is read next is stable.
        producers = [self._new_producer(n) for n in numbers]
        try:
            await asyncio.gather(*(producer.start() for producer in producers))
        except BaseException:
            for producer in producers:
                with contextlib.suppress(Exception):
                    await producer.stop()
            raise
        for number, producer in zip(numbers, producers, strict=True):
            inputs = [TopicPartition(topic, number) for topic in self.topics.runtime_inputs]
            self._partitions[number] = _Partition(number, inputs, producer)
        await self._replay(numbers)
        await self._load_thread_index(numbers)

    def _new_producer(self, number: int) -> AIOKafkaProducer:
        return bus.producer(
            self.config.bootstrap,
            transactional_id=f"{self.config.group}.{number}",
            client_id=f"{self.config.group}.{number}",
            # One batch per topic partition and transaction (see _Outbox).
            max_batch_size=512 * 1024,
        )

    async def _drop(self, number: int) -> None:
        part = self._partitions.pop(number, None)
        if part is None:
            return
        for thread_id in part.threads:
            self._engine.forget(thread_id)
        with contextlib.suppress(Exception):
            await part.producer.stop()

    async def _replay(self, numbers: list[int]) -> None:
        """Fold the run-log partitions ``numbers`` into the engine (read_committed, to the
        last stable offset): from their last checkpoint over their threads' snapshots when
        they have one, else whole."""
        replayer = self._replayer
        reader = self._reader
        assert replayer is not None
        assert reader is not None
        started = time.perf_counter()
        tps = [TopicPartition(self.topics.runtime_events, n) for n in numbers]
        metrics.replay_started(len(tps))
        begins = await replayer.beginning_offsets(tps)
        ends = await replayer.end_offsets(tps)  # read_committed: the last stable offsets
        starts: dict[int, int] = {}
        if self._store is not None:
            starts = await self._mirror_snapshots(numbers)
        elif self.config.snapshot_every is not None:
            starts = await self._restore_snapshots(numbers)
        located = time.perf_counter()
        total = 0
        folding = 0.0
        ranges = {tp: (starts.get(tp.partition, begins[tp]), ends[tp]) for tp in tps}
        whole: list[int] = []
        async for tp, read in reader.read_each(ranges):
            part = self._partitions[tp.partition]
            part.log_end = ends[tp]
            restored = tp.partition in starts
            metrics.replayed(len(read.values))
            fold_started = time.perf_counter()
            try:
                if restored and self._store is not None:
                    # Lazy: only the threads the tail names come back now.
                    self._restore_tail_threads(part, read.keys)
                if read.values:
                    # Folds without the GIL on a worker thread, while the reader fetches the
                    # next partition; nothing else touches the engine (the lock is held).
                    fold = self._engine.load_tail if restored else self._engine.load
                    log_bytes = b"\n".join(read.values) + b"\n"
                    await asyncio.to_thread(fold, log_bytes, path=f"{tp.topic}[{tp.partition}]")
            except ReplayError as exc:
                if not restored:
                    raise
                log.warning(
                    "partition %d: the run log after its checkpoint does not continue its "
                    "snapshots (%s); replaying the whole partition",
                    tp.partition,
                    exc,
                )
                whole.append(tp.partition)
                continue
            folding += time.perf_counter() - fold_started
            total += len(read.values)
            for key in read.keys:
                if key is not None and key.startswith(self._tenant_prefix):
                    part.threads[key[len(self._tenant_prefix) :].decode()] = key
            if restored:
                # The tail's threads have events no snapshot may cover.
                for key in read.keys:
                    if key is not None and key.startswith(self._tenant_prefix):
                        part.dirty.setdefault(key[len(self._tenant_prefix) :].decode(), 0)
                part.since_checkpoint = len(read.values)
            else:
                self._needs_checkpoint(part)
        if whole:
            total += await self._replay_whole(whole, begins, ends)
        now = time.monotonic()
        for number in numbers:
            part = self._partitions[number]
            for thread_id in part.threads:
                part.used.setdefault(thread_id, now)
        self.stats["replayed"] += total
        elapsed = time.perf_counter() - started
        log.info(
            "replayed %d run-log events of partitions %s (%d of them from a checkpoint, with "
            "%d threads restored from snapshots) in %.3f s (offsets and snapshots %.3f s, "
            "folding %.3f s)",
            total,
            numbers,
            len(starts) - len(whole),
            self.stats["restored"],
            elapsed,
            located - started,
            folding,
        )

    def _needs_checkpoint(self, part: _Partition) -> None:
        """After a whole replay no snapshot can be trusted to cover anything: snapshot every
        thread at the next transaction, with a checkpoint."""
        for thread_id in part.threads:
            part.dirty.setdefault(thread_id, 0)
        part.since_checkpoint = self.config.checkpoint_every

    async def _replay_whole(
        self,
        numbers: list[int],
        begins: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
    ) -> int:
        """Replay partitions from their beginning, forgetting what their snapshots held."""
        reader = self._reader
        assert reader is not None
        total = 0
        for number in numbers:
            part = self._partitions[number]
            for thread_id in part.threads:
                self._engine.forget(thread_id)
            part.threads.clear()
            part.dirty.clear()
            part.used.clear()
            tp = TopicPartition(self.topics.runtime_events, number)
            read = (await reader.read({tp: (begins[tp], ends[tp])}))[tp]
            if read.values:
                log_bytes = b"\n".join(read.values) + b"\n"
                await asyncio.to_thread(self._engine.load, log_bytes, path=f"{tp.topic}[{number}]")
            for key in read.keys:
                if key is not None and key.startswith(self._tenant_prefix):
                    part.threads[key[len(self._tenant_prefix) :].decode()] = key
            self._needs_checkpoint(part)
            total += len(read.values)
        return total

    async def _restore_snapshots(self, numbers: list[int]) -> dict[int, int]:
        """Restore the latest snapshot of every thread of partitions ``numbers``; returns,
        for each partition restored from a checkpoint, the run-log offset to fold from.
        A partition without a checkpoint, or with a snapshot the engine refuses, is left
        for a whole replay (and whatever it restored is forgotten)."""
        replayer = self._replayer
        reader = self._reader
        assert replayer is not None
        assert reader is not None
        tps = [TopicPartition(self.topics.snapshots, n) for n in numbers]
        begins = await replayer.beginning_offsets(tps)
        ends = await replayer.end_offsets(tps)
        logs = await reader.read({tp: (begins[tp], ends[tp]) for tp in tps})
        starts: dict[int, int] = {}
        for tp in tps:
            latest: dict[str, dict[str, Any]] = {}
            checkpoint: int | None = None
            for value in logs[tp].values:
                record = orjson.loads(value)
                if record.get("tenant") != self.tenant:
                    continue
                payload = record["payload"]
                if payload["kind"] == "checkpoint":
                    checkpoint = payload["run_log_offset"]
                else:
                    latest[record["thread_id"]] = payload
            if checkpoint is None:
                continue
            part = self._partitions[tp.partition]
            try:
                for thread_id, payload in latest.items():
                    self._engine.restore(payload["snapshot"].encode(), thread_id)
                    part.threads[thread_id] = bus.thread_key(self.tenant, thread_id)
            except ReplayError as exc:
                log.warning(
                    "partition %d: a snapshot is not used (%s); replaying the whole partition",
                    tp.partition,
                    exc,
                )
                for thread_id in part.threads:
                    self._engine.forget(thread_id)
                part.threads.clear()
                continue
            self.stats["restored"] += len(latest)
            starts[tp.partition] = checkpoint
        return starts

    def _snapshot(self, part: _Partition, outbox: _Outbox) -> None:
        """Put in the transaction the snapshots the policy asks for (and a checkpoint)."""
        every = self.config.snapshot_every
        if every is None or not part.dirty:
            return
        # The run log's end before this transaction: every event a snapshot here does not
        # cover is at or after it.
        since = max(part.log_end, 0)
        checkpoint = part.since_checkpoint >= self.config.checkpoint_every
        for thread_id, count in list(part.dirty.items()):
            status = self._engine.status(thread_id)
            if status is None:
                del part.dirty[thread_id]
                continue
            at_run_end = self.config.snapshot_at_run_end and status == "idle"
            if not (checkpoint or count >= every or at_run_end):
                continue
            self._add_snapshot(part, outbox, thread_id, since)
            del part.dirty[thread_id]
            self.stats["snapshots"] += 1
        if checkpoint:
            value = self._snapshot_record("", "checkpoint", since, None, None)
            outbox.add(self.topics.snapshots, part.number, self._tenant_prefix, value, [])
            part.since_checkpoint = 0

    def _add_snapshot(self, part: _Partition, outbox: _Outbox, thread_id: str, since: int) -> None:
        """Put the thread's snapshot in the transaction (``since``: the run log's end before
        it)."""
        snapshot = self._engine.save(thread_id)
        assert snapshot is not None
        key = part.threads.get(thread_id) or bus.thread_key(self.tenant, thread_id)
        value = self._snapshot_record(
            thread_id, "thread", since, self._engine.last_seq(thread_id), snapshot
        )
        outbox.add(self.topics.snapshots, part.number, key, value, [])

    def _snapshot_record(
        self, thread_id: str, kind: str, since: int, seq: int | None, snapshot: bytes | None
    ) -> bytes:
        ts = time.time_ns() // 1_000_000
        return orjson.dumps(
            {
                "schema": messages.ThreadSnapshot.NAME,
                "id": f"{self.tenant}/{thread_id}/snapshot/{seq or since}",
                "tenant": self.tenant,
                "thread_id": thread_id,
                "run_id": None,
                "causation_id": None,
                "ts": ts,
                "payload": {
                    "kind": kind,
                    "run_log_offset": since,
                    "seq": seq,
                    "snapshot": None if snapshot is None else snapshot.decode(),
                },
            }
        )

    async def _seek_inputs(self, part: _Partition) -> None:
        consumer = self._consumer
        assert consumer is not None
        positions: dict[TopicPartition, int] = {}
        for tp in part.inputs:
            committed = await consumer.committed(tp)
            ours = part.next_offsets.get(tp)
            # Ours is ahead when our last commit's markers are not visible yet; the committed
            # one is ahead when another instance handled inputs meanwhile.
            known = [offset for offset in (committed, ours) if offset is not None]
            if known:
                positions[tp] = max(known)
        fresh = [tp for tp in part.inputs if tp not in positions]
        if fresh:
            positions.update(await consumer.beginning_offsets(fresh))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
            part.expected[tp] = offset
        consumer.resume(*part.inputs)

    # --- one poll of one partition -----------------------------------------------------------

    async def _process(
        self,
        number: int,
        items: list[tuple[TopicPartition, list[ConsumerRecord]]],
        polled: float = 0.0,
    ) -> None:
        part = self._partitions.get(number)
        if part is None or part.fenced:
            return
        producer = part.producer
        outbox = _Outbox(producer)
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        timings = self.timings
        try:
            # The engine's part under the lock (a rebalance may be folding a log into the
            # engine on a worker thread); the commit outside it, so other partitions'
            # inputs are handled meanwhile.
            async with self._lock:
                if self._partitions.get(number) is not part or part.fenced:
                    return
                work = self._unseen(part, items)
                if not work:
                    return
                began = time.perf_counter()
                events_before = self.stats["events"]
                await producer.begin_transaction()
                for tp, records in work:
                    for record in records:
                        with telemetry.consuming("flowai.runtime.step", record.headers, None):
                            await self._handle(part, tp, record, outbox, polled)
                    offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
                self._index_threads(part, outbox)
                self._snapshot(part, outbox)
                decided = time.perf_counter()
                last_event = await outbox.send(self.topics.runtime_events, number)
            await producer.send_offsets_to_transaction(offsets, self.config.group)
            sent = time.perf_counter()
            await producer.commit_transaction()  # flushes: every batch is acknowledged
            log_end = last_event()
            metrics.transaction("committed")
            metrics.events_appended(self.stats["events"] - events_before)
            if timings is not None:
                timings.add("inputs per transaction", sum(len(r) for _, r in work))
                timings.add("engine (ms)", (decided - began) * 1000)
                timings.add("records + offsets sent (ms)", (sent - decided) * 1000)
                timings.add("commit (ms)", (time.perf_counter() - sent) * 1000)
        except ProducerFenced:
            metrics.transaction("fenced")
            # Another instance took this partition; the rebalance that told it so reaches
            # us next. Handle nothing more of it until then.
            log.warning("partition %d was taken over (fenced); waiting for the rebalance", number)
            async with self._lock:
                part.fenced = True
                part.queue, part.queued = [], 0
                for thread_id in part.threads:
                    self._engine.forget(thread_id)
                part.threads.clear()
                part.used.clear()
                assert self._consumer is not None
                self._consumer.pause(*part.inputs)
            return
        except Exception:
            metrics.transaction("aborted")
            log.exception("transaction of partition %d failed; rebuilding it from the log", number)
            async with self._lock:
                part.queue, part.queued = [], 0
                with contextlib.suppress(Exception):
                    await producer.abort_transaction()
                if self._partitions.get(number) is part:
                    await self._resync(number)
            return
        for tp, meta in offsets.items():
            part.next_offsets[tp] = meta.offset
        if log_end is not None:
            # One commit marker follows the last record written.
            part.log_end = log_end + 2

    @staticmethod
    def _unseen(
        part: _Partition, items: list[tuple[TopicPartition, list[ConsumerRecord]]]
    ) -> list[tuple[TopicPartition, list[ConsumerRecord]]]:
        """``items`` without the records handled already, advancing ``part.expected``."""
        work: list[tuple[TopicPartition, list[ConsumerRecord]]] = []
        for tp, records in items:
            # A fetch that raced a seek can hand records out twice; below the position this
            # instance set or reached, a record was handled already.
            expected = part.expected[tp]
            if records[0].offset < expected:
                records = [record for record in records if record.offset >= expected]
            if records:
                work.append((tp, records))
                part.expected[tp] = records[-1].offset + 1
        return work

    async def _resync(self, number: int) -> None:
        """Make partition ``number`` match the log again after a failed transaction."""
        delay = 0.05
        while not self._stopping.is_set():
            await self._drop(number)
            try:
                await self._take([number])
                await self._seek_inputs(self._partitions[number])
                return
            except Exception:
                log.exception("cannot rebuild partition %d; retrying in %.2f s", number, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _handle(
        self,
        part: _Partition,
        tp: TopicPartition,
        record: ConsumerRecord,
        outbox: _Outbox,
        polled: float = 0.0,
    ) -> None:
        """Feed one input to the engine and put what comes out in the transaction's outbox."""
        self.stats["inputs"] += 1
        metrics.input_taken()
        value = record.value
        number = part.number
        headers = telemetry.outgoing(record.headers)
        if not value:
            self._dead_letter(
                part, tp, record, outbox, INPUT_EMPTY, "empty message (no value); send an envelope"
            )
            return
        fields = bus.peek(value)
        telemetry.describe(fields)
        if fields is not None:
            thread_id = fields.get("thread_id")
            if (
                fields.get("tenant") == self.tenant
                and isinstance(thread_id, str)
                and thread_id
                # A thread already logged here was checked when it started.
                and thread_id not in part.threads
            ):
                key = bus.thread_key(self.tenant, thread_id)
                expected = bus.partition_for(key, self._partition_count)
                if expected != number:
                    self._dead_letter(
                        part,
                        tp,
                        record,
                        outbox,
                        INPUT_WRONG_PARTITION,
                        f"thread {thread_id!r} belongs on partition {expected}, but this input "
                        f"came on partition {number}; publish with key "
                        f"{key.decode()!r} and the default (murmur2) partitioner",
                    )
                    return
        hop = self._hops.get(fields.get("schema", "")) if fields is not None else None
        decided: Decided | None
        if hop is None or fields is None:
            # No hop of its own (or no envelope at all): the engine decides on it as it
            # comes, or refuses it with its own code and message (the dead letter's).
            decided = await self._decide(part, value, fields)
        else:
            decided = await hop(_Input(part, tp, record, outbox, fields))
        if decided is None:
            return
        if self.inline is not None:
            await self._run_inline(part, tp, record, outbox, decided)
        if self.timings is not None:
            headers.append((TIMING, _stamped(record, polled)))
        self._route(part, decided, outbox, headers, tp, record)

    # --- the hops this service consumes, one entry point per input schema ------------------
    #
    # Each takes one consumed input (_Input) and returns what the engine decided, or None when
    # the input was dead-lettered here before the engine saw it.

    async def on_query(self, msg: _Input) -> Decided | None:
        """``Query`` (``queries``): a user's prompt starts a run on its thread."""
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def on_cancel_run(self, msg: _Input) -> Decided | None:
        """``CancelRun`` (``queries``): end the thread's run in flight, if any."""
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def on_resume_run(self, msg: _Input) -> Decided | None:
        """``ResumeRun`` (``queries``): the engine issues again what the run waits for."""
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def on_fork_thread(self, msg: _Input) -> Decided | None:
        """``ForkThread`` (``queries``): a new thread from another's committed log."""
        await self._bring_back_for(msg.part, msg.fields)
        try:
            return await self._fork(msg.record.value, msg.fields)
        except FlowaiError as exc:
            self._dead_letter(msg.part, msg.tp, msg.record, msg.outbox, exc.code, exc.message)
            return None

    async def on_tool_result(self, msg: _Input) -> Decided | None:
        """``ToolResult`` (``tool-results``): a worker's answer to a ``ToolInvocation`` or a
        ``PlanStep``."""
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def on_tool_progress(self, msg: _Input) -> Decided | None:
        """``ToolProgress`` (``tool-results``): a running tool's report, logged as it comes."""
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def on_model_result(self, msg: _Input) -> Decided | None:
        """``ModelResult`` (``model-results``): a model worker's answer to a
        ``ModelRequest``."""
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def on_approval_decision(self, msg: _Input) -> Decided | None:
        """``ApprovalDecision`` (``approval-decisions``): a human's answer at a gate, checked
        against the deciding keys first when the service has them."""
        if self.config.decisions is not None:
            try:
                self.config.decisions.verify(msg.fields)
            except DecisionUnverifiedError as exc:
                # Nothing decides for a tenant's approval without proof it came from a
                # deciding key: whoever can write to the topic cannot open a gate.
                self._dead_letter(msg.part, msg.tp, msg.record, msg.outbox, exc.code, exc.message)
                return None
        return await self._decide(msg.part, msg.record.value, msg.fields)

    async def _decide(
        self, part: _Partition, value: bytes, fields: dict[str, Any] | None
    ) -> Decided:
        """The engine's decision on one input, its thread brought back from the store first."""
        if self._store is not None and fields is not None:
            await self._bring_back_for(part, fields)
        return await self._driver.feed([value])

    async def _bring_back_for(self, part: _Partition, fields: dict[str, Any]) -> None:
        if self._store is None:
            return
        thread_id = fields.get("thread_id")
        if fields.get("tenant") == self.tenant and isinstance(thread_id, str) and thread_id:
            await self._bring_back(part, thread_id)

    async def _fork(self, value: bytes, fields: dict[str, Any]) -> Decided:
        """Start a thread from another's committed log (``flowai.v1.ForkThread``): the source's
        events are read from its run-log partition (any partition: the source need not be
        this instance's), then the engine writes the fork's history."""
        payload = fields.get("payload")
        source = payload.get("source_thread_id") if isinstance(payload, dict) else None
        if not isinstance(source, str) or not source:
            raise FlowaiError(
                "a ForkThread payload needs source_thread_id (and at)", code=INPUT_EMPTY
            )
        reader = self._reader
        replayer = self._replayer
        assert reader is not None
        assert replayer is not None
        key = bus.thread_key(self.tenant, source)
        tp = TopicPartition(
            self.topics.runtime_events, bus.partition_for(key, self._partition_count)
        )
        begin = (await replayer.beginning_offsets([tp]))[tp]
        end = (await replayer.end_offsets([tp]))[tp]
        read = (await reader.read({tp: (begin, end)}))[tp]
        lines = []
        for line in read.values:
            entry = bus.peek(line)
            if entry is not None and (entry.get("tenant"), entry.get("thread_id")) == (
                self.tenant,
                source,
            ):
                lines.append(line)
        outputs = self._engine.fork(value, b"".join(line + b"\n" for line in lines))
        decided = Decided()
        for kind, thread_id, data in outputs:
            if kind == _native.EVENT:
                decided.events.append((thread_id, data))
            elif kind == _native.EFFECT:
                decided.effects.append(data)
        return decided

    async def _run_inline(
        self,
        part: _Partition,
        tp: TopicPartition | None,
        record: ConsumerRecord | None,
        outbox: _Outbox,
        decided: Decided,
    ) -> None:
        """Run the inline tools ``decided`` asks for and feed their results back, until it
        asks for none: their invocations leave ``decided.effects`` (nobody else runs them)
        and what the engine makes of the results joins ``decided``, so it is all logged in
        this input's transaction. The calls of one step run concurrently."""
        inline = self.inline
        assert inline is not None
        pending = decided.effects
        decided.effects = []
        while pending:
            calls: list[bytes] = []
            for data in pending:
                effect = orjson.loads(data)
                if effect["schema"] == TOOL_INVOCATION and inline.takes(effect["payload"]["tool"]):
                    calls.append(data)
                else:
                    decided.effects.append(data)
            if not calls:
                return
            self.stats["inline_calls"] += len(calls)
            answers = await asyncio.gather(*(inline.run(call) for call in calls))
            for call, (_, letter) in zip(calls, answers, strict=True):
                if letter is not None and tp is not None and record is not None:
                    self._dead_letter(part, tp, record, outbox, *letter, original=call)
                elif letter is not None:
                    log.warning("inline tool call %s: %s: %s", call[:200], *letter)
            follow = await self._driver.feed([result for result, _ in answers])
            decided.events.extend(follow.events)
            decided.duplicates.extend(follow.duplicates)
            for rejected in follow.rejections:
                # The results are this service's own inputs: nothing to send back.
                log.warning("engine refused an inline tool result: %s", rejected[:300])
            pending = follow.effects

    def _route(
        self,
        part: _Partition,
        decided: Decided,
        outbox: _Outbox,
        headers: list[tuple[str, bytes]],
        tp: TopicPartition | None = None,
        record: ConsumerRecord | None = None,
    ) -> None:
        """Put what the engine decided in the outbox: events to the run log, effects to their
        topics, rejections to dead letters; duplicates are only counted."""
        now = time.monotonic()
        for thread_id, data in decided.events:
            thread_key = part.threads.get(thread_id)
            if thread_key is None:
                thread_key = part.threads[thread_id] = bus.thread_key(self.tenant, thread_id)
            part.touch(thread_id, now)
            outbox.add(self.topics.runtime_events, part.number, thread_key, data, headers)
            outbox.logged(thread_id, data)
            part.dirty[thread_id] = part.dirty.get(thread_id, 0) + 1
        part.since_checkpoint += len(decided.events)
        self.stats["events"] += len(decided.events)
        for data in decided.effects:
            self._publish_effect(part, tp, record, outbox, data, headers)
        self.stats["duplicates"] += len(decided.duplicates)
        for data in decided.duplicates:
            duplicate = bus.peek(data) or {}
            log.info(
                "duplicate input %s on thread %s ignored: %s",
                duplicate.get("causation_id"),
                duplicate.get("thread_id"),
                error_of(data)["message"],
            )
        for data in decided.rejections:
            error = error_of(data)
            if record is None or tp is None:
                # A time-driven input (a deadline) the engine refused: nothing to return.
                log.warning("engine refused %s: %s", error["code"], error["message"])
            else:
                self._dead_letter(part, tp, record, outbox, error["code"], error["message"])

    async def _fire_deadlines(self) -> None:
        """Feed the engine the time for every thread whose deadline passed (an approval's,
        a model retry's, a model request's timeout), in one transaction per thread."""
        for deadline in self._driver.due():
            thread_id = bus.peek(deadline)["thread_id"]  # type: ignore[index]
            number = bus.partition_for(
                bus.thread_key(self.tenant, thread_id), self._partition_count
            )
            part = self._partitions.get(number)
            if part is None or part.fenced:
                continue
            if part.draining is not None and not part.draining.done():
                # Its transaction is in flight; the engine says the same next poll.
                continue
            await self.on_deadline_reached(part, deadline)

    async def on_deadline_reached(self, part: _Partition, value: bytes) -> None:
        """``DeadlineReached`` (made here from the engine's next deadline, never read from a
        topic): handled in a transaction of its own, with no input offsets."""
        producer = part.producer
        outbox = _Outbox(producer)
        try:
            await producer.begin_transaction()
            decided = await self._driver.feed([value])
            if self.inline is not None:
                await self._run_inline(part, None, None, outbox, decided)
            self._route(part, decided, outbox, [])
            self._index_threads(part, outbox)
            self._snapshot(part, outbox)
            last_event = await outbox.send(self.topics.runtime_events, part.number)
            await producer.commit_transaction()
            log_end = last_event()
        except ProducerFenced:
            log.warning("partition %d was taken over (fenced)", part.number)
            part.fenced = True
            return
        except Exception:
            log.exception("transaction of partition %d failed; rebuilding it", part.number)
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            await self._resync(part.number)
            return
        if log_end is not None:
            part.log_end = log_end + 2

    # --- eviction (see the module's docstring) -------------------------------------------------

    async def _read_chunked(
        self, topic: str, number: int
    ) -> AsyncIterator[tuple[list[bytes], int]]:
        """What ``topic`` partition ``number`` gained since the store last mirrored it, in
        slices of ``_MIRROR_SLICE`` offsets (a first takeover of a big partition does not
        hold all of it at once): (values, next offset) per slice. A store whose
        position the topic no longer holds forgets the partition and reads it whole."""
        store, replayer, reader = self._store, self._replayer, self._reader
        assert store is not None
        assert replayer is not None
        assert reader is not None
        tp = TopicPartition(topic, number)
        begin = (await replayer.beginning_offsets([tp]))[tp]
        end = (await replayer.end_offsets([tp]))[tp]
        kind = SNAPSHOTS if topic == self.topics.snapshots else THREADS
        position = store.mirrored(number, kind)
        if position is not None and not begin <= position <= end:
            log.warning(
                "partition %d: the local store mirrored %s up to offset %d, which the topic "
                "(offsets %d..%d) does not hold; rebuilding the store's partition from the topics",
                number,
                topic,
                position,
                begin,
                end,
            )
            store.forget_partition(number)
            position = None
        start = begin if position is None else position
        if start >= end:
            yield [], end  # nothing new, but the position is recorded
        while start < end:
            stop = min(end, start + _MIRROR_SLICE)
            yield (await reader.read({tp: (start, stop)}))[tp].values, stop
            start = stop

    async def _mirror_snapshots(self, numbers: list[int]) -> dict[int, int]:
        """Bring the store up to date with the snapshots topic; returns, for each partition
        with a checkpoint, the run-log offset to fold from (lazily: nothing is restored)."""
        store = self._store
        assert store is not None
        starts: dict[int, int] = {}
        for number in numbers:
            async for values, next_offset in self._read_chunked(self.topics.snapshots, number):
                rows: list[tuple[str, int | None, bytes]] = []
                checkpoint: int | None = None
                for value in values:
                    record = orjson.loads(value)
                    if record.get("tenant") != self.tenant:
                        continue
                    payload = record["payload"]
                    if payload["kind"] == "checkpoint":
                        checkpoint = payload["run_log_offset"]
                    else:
                        rows.append(
                            (record["thread_id"], payload["seq"], payload["snapshot"].encode())
                        )
                store.mirror_snapshots(number, rows, checkpoint, next_offset)
            checkpoint = store.checkpoint(number)
            if checkpoint is not None:
                starts[number] = checkpoint
        return starts

    def _restore_tail_threads(self, part: _Partition, keys: Iterable[bytes | None]) -> None:
        """Restore, from the store, the threads the run log's tail names (before folding
        it): the others wait on disk. Raises ReplayError for a snapshot the engine refuses."""
        store = self._store
        assert store is not None
        for key in dict.fromkeys(keys):
            if key is None or not key.startswith(self._tenant_prefix):
                continue
            thread_id = key[len(self._tenant_prefix) :].decode()
            if thread_id in part.threads:
                continue
            snapshot = store.snapshot(part.number, thread_id)
            if snapshot is not None:
                self._engine.restore(snapshot, thread_id)
                self.stats["restored"] += 1
            part.threads[thread_id] = key

    async def _mirror_index(self, numbers: list[int]) -> None:
        """Bring the store up to date with the thread index; the threads in memory take
        their entries from it."""
        store = self._store
        assert store is not None
        for number in numbers:
            async for values, next_offset in self._read_chunked(self.topics.threads, number):
                entries: list[tuple[str, IndexEntry]] = []
                for value in values:
                    body = orjson.loads(value)
                    payload = body.get("payload") or {}
                    thread_id = body.get("thread_id")
                    if body.get("tenant") == self.tenant and isinstance(thread_id, str):
                        entries.append(
                            (
                                thread_id,
                                (
                                    int(payload.get("log_offset", 0)),
                                    payload.get("created"),
                                    str(payload.get("status", "")),
                                ),
                            )
                        )
                store.mirror_index(number, entries, next_offset)
            part = self._partitions[number]
            for thread_id in part.threads:
                entry = store.index_entry(number, thread_id)
                if entry is not None:
                    part.index[thread_id] = entry

    async def _bring_back(self, part: _Partition, thread_id: str) -> None:
        """Put an evicted thread back in the engine before its input (from its snapshot in
        the store; from its run log when the engine refuses that snapshot)."""
        if self._engine.has_thread(thread_id):
            return
        store = self._store
        assert store is not None
        snapshot = store.snapshot(part.number, thread_id)
        if snapshot is None:
            return  # a new thread (or one of another partition: refused further on)
        try:
            self._engine.restore(snapshot, thread_id)
        except ReplayError as exc:
            log.warning(
                "thread %s: its stored snapshot is not used (%s); replaying its run log",
                thread_id,
                exc,
            )
            self._engine.forget(thread_id)
            await self._load_from_log(part, thread_id)
        part.threads[thread_id] = bus.thread_key(self.tenant, thread_id)
        entry = store.index_entry(part.number, thread_id)
        if entry is not None:
            part.index[thread_id] = entry
        part.touch(thread_id, time.monotonic())
        self.stats["brought_back"] += 1

    async def _load_from_log(self, part: _Partition, thread_id: str) -> None:
        reader, replayer = self._reader, self._replayer
        assert reader is not None
        assert replayer is not None
        tp = TopicPartition(self.topics.runtime_events, part.number)
        begin = (await replayer.beginning_offsets([tp]))[tp]
        end = (await replayer.end_offsets([tp]))[tp]
        key = bus.thread_key(self.tenant, thread_id)
        read = (await reader.read({tp: (begin, end)}, key=key))[tp]
        if read.values:
            log_bytes = b"".join(value + b"\n" for value in read.values)
            self._engine.load(log_bytes, path=f"{tp.topic}[{tp.partition}]")

    async def _evict_idle(self) -> None:
        """Evict the threads unused for ``evict_after`` that may go (see _evict); a
        partition with a transaction in flight waits for the next sweep."""
        after = self.config.evict_after
        assert after is not None
        now = time.monotonic()
        if now - self._swept < min(max(after / 4, 0.05), 5.0):
            return
        self._swept = now
        cutoff = now - after
        for part in list(self._partitions.values()):
            if part.fenced or (part.draining is not None and not part.draining.done()):
                continue
            evict: list[str] = []
            stay: list[str] = []
            for thread_id, used in part.used.items():
                if used > cutoff or len(evict) >= _EVICT_BATCH:
                    break
                status = self._engine.status(thread_id)
                if status in _RESTING and self._engine.deadline(thread_id) is None:
                    evict.append(thread_id)
                else:
                    # A run in flight or a deadline keeps it here: looked at again later.
                    stay.append(thread_id)
            for thread_id in stay:
                if self._engine.status(thread_id) is None:
                    part.release(thread_id)
                else:
                    part.touch(thread_id, now)
            if evict:
                if len(evict) >= _EVICT_BATCH:
                    self._swept = 0.0  # more to do: the next poll sweeps again
                await self._evict(part, evict)

    async def _evict(self, part: _Partition, threads: list[str]) -> None:
        """Drop ``threads`` (resting, no deadline) from memory. Those with events no snapshot
        covers are snapshotted in a transaction of their own first; the store takes their
        snapshots only after it committed, so whatever the store holds, the topic holds."""
        store = self._store
        assert store is not None
        uncovered = [thread_id for thread_id in threads if thread_id in part.dirty]
        if uncovered:
            producer = part.producer
            outbox = _Outbox(producer)
            since = max(part.log_end, 0)
            try:
                await producer.begin_transaction()
                for thread_id in uncovered:
                    self._add_snapshot(part, outbox, thread_id, since)
                await outbox.send(self.topics.runtime_events, part.number)
                await producer.commit_transaction()
            except ProducerFenced:
                log.warning("partition %d was taken over (fenced)", part.number)
                part.fenced = True
                return
            except Exception:
                log.exception(
                    "eviction snapshots of partition %d failed; rebuilding it", part.number
                )
                with contextlib.suppress(Exception):
                    await producer.abort_transaction()
                await self._resync(part.number)
                return
            self.stats["snapshots"] += len(uncovered)
        rows: list[tuple[str, int | None, bytes, IndexEntry | None]] = []
        for thread_id in threads:
            snapshot = self._engine.save(thread_id)
            assert snapshot is not None
            rows.append(
                (thread_id, self._engine.last_seq(thread_id), snapshot, part.index.get(thread_id))
            )
        store.put(part.number, rows)
        for thread_id in threads:
            self._engine.forget(thread_id)
            part.release(thread_id)
        self.stats["evicted"] += len(threads)
        log.debug("partition %d: evicted %d idle threads", part.number, len(threads))

    # --- the thread index ----------------------------------------------------------------

    def _index_threads(self, part: _Partition, outbox: _Outbox) -> None:
        """Add a ``Thread`` record for each thread this transaction logged events of whose
        status changed or that came to rest, so followers find where its log starts."""
        now = bus.now_ms()
        for thread_id, first in outbox.threads.items():
            status = self._engine.status(thread_id) or "idle"
            known = part.index.get(thread_id)
            if known is None:
                # A thread new to the log starts after everything logged so far; one logged
                # before the index existed starts somewhere from the beginning.
                new = orjson.loads(first)["seq"] == 1
                known = (max(part.log_end, 0), now, "") if new else (0, None, "")
            log_offset, created, written = known
            if status == written and status not in _RESTING:
                continue
            part.index[thread_id] = (log_offset, created, status)
            # The engine has just decided this transaction's events: its last seq is theirs.
            seq = self._engine.last_seq(thread_id) or 0
            record = bus.thread_record(
                self.tenant,
                thread_id,
                status=status,
                seq=seq,
                partition=part.number,
                log_offset=log_offset,
                created=created,
                ts=now,
            )
            outbox.add(
                self.topics.threads,
                part.number,
                part.threads.get(thread_id) or bus.thread_key(self.tenant, thread_id),
                record,
                [],
            )

    async def _load_thread_index(self, numbers: list[int]) -> None:
        """What the thread index says of this tenant's threads in partitions ``numbers``
        (read_committed, to the last stable offset; the latest record per thread wins)."""
        if self._store is not None:
            await self._mirror_index(numbers)
            return
        assert self._replayer is not None
        assert self._reader is not None
        tps = [TopicPartition(self.topics.threads, n) for n in numbers]
        begins = await self._replayer.beginning_offsets(tps)
        ends = await self._replayer.end_offsets(tps)
        read = await self._reader.read({tp: (begins[tp], ends[tp]) for tp in tps})
        for tp, log_part in read.items():
            index = self._partitions[tp.partition].index
            for value in log_part.values:
                body = orjson.loads(value)
                payload = body.get("payload") or {}
                if body.get("tenant") == self.tenant and isinstance(body.get("thread_id"), str):
                    index[body["thread_id"]] = (
                        int(payload.get("log_offset", 0)),
                        payload.get("created"),
                        str(payload.get("status", "")),
                    )

    def _publish_effect(
        self,
        part: _Partition,
        tp: TopicPartition | None,
        record: ConsumerRecord | None,
        outbox: _Outbox,
        data: bytes,
        headers: list[tuple[str, bytes]],
    ) -> None:
        effect = orjson.loads(data)
        schema = effect["schema"]
        topic = self.topics.effect_topic(schema)
        if topic is None:
            if tp is None or record is None:
                log.error("the engine asked for a %s effect, which cannot be routed", schema)
                return
            # Nothing here can carry it out; say so rather than drop it.
            self._dead_letter(
                part,
                tp,
                record,
                outbox,
                EFFECT_UNROUTABLE,
                f"the engine asked for a {schema} effect, which this runtime service cannot "
                "route; upgrade the service",
                original=data,
            )
            return
        key = (
            effect["id"].encode()
            if schema in _KEYED_BY_ID
            else bus.thread_key(effect["tenant"], effect["thread_id"])
        )
        # The default partitioner's choice, made here because the outbox batches per partition.
        partition = bus.partition_for(key, self._topic_partitions[topic])
        outbox.add(topic, partition, key, data, headers)
        self.stats["effects"] += 1
        if schema == messages.ModelRequest.NAME and effect["payload"].get("attempt", 1) > 1:
            metrics.retry("model")

    def _dead_letter(
        self,
        part: _Partition,
        tp: TopicPartition,
        record: ConsumerRecord,
        outbox: _Outbox,
        reason: str,
        message: str,
        *,
        original: bytes | None = None,
    ) -> None:
        body = original if original is not None else (record.value or b"")
        letter = bus.dead_letter(
            reason=reason,
            message=message,
            original=body,
            service=SERVICE,
            source=(tp.topic, tp.partition, record.offset),
        )
        fields = bus.peek(body) or {}
        tenant, thread_id = fields.get("tenant"), fields.get("thread_id")
        key = (
            bus.thread_key(tenant, thread_id)
            if isinstance(tenant, str) and isinstance(thread_id, str)
            else record.key
        )
        # On the input's partition number: a client following a thread watches it there.
        outbox.add(self.topics.dead_letters, part.number, key, letter, [])
        self.stats["dead_letters"] += 1
        metrics.dead_letter(reason)
        log.warning(
            "dead letter %s from %s[%d]@%d: %s",
            reason,
            tp.topic,
            tp.partition,
            record.offset,
            message,
        )


def _stamped(record: ConsumerRecord, polled: float) -> bytes:
    """The input's timing header with this hop's stamps added (see TIMING)."""
    before = next((value for name, value in record.headers or () if name == TIMING), b"")
    mine = f"in={record.timestamp},p={polled * 1000:.2f},e={time.time() * 1000:.2f}".encode()
    return before + b"," + mine if before else mine


class PhaseTimings:
    """Samples per phase of this process's transactions, logged (and cleared) on SIGUSR1,
    so a benchmark can ask for the warm-up's and the steady state's apart."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, phase: str, value: float) -> None:
        self.samples.setdefault(phase, []).append(value)

    def on_signal(self) -> None:
        import signal

        # Only a process's main thread may take signals; elsewhere the figures stay unlogged.
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.report)

    def report(self) -> None:
        for phase, values in sorted(self.samples.items()):
            ordered = sorted(values)
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            log.warning(
                "timing %s: n=%d p50=%.3f p99=%.3f max=%.3f",
                phase,
                len(ordered),
                p50,
                p99,
                ordered[-1],
            )
        log.warning("timing end")
        self.samples.clear()


class _Outbox:
    """The records of one transaction, one record batch per topic partition.

    Building batches here (aiokafka's C batch builder) instead of calling ``send`` per record
    saves a coroutine and a queue operation per record; the transaction sends each batch
    once, after every input of the poll was handled.
    """

    __slots__ = ("_batches", "_counts", "_producer", "threads")

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        # thread id -> its first run-log event in this transaction.
        self.threads: dict[str, bytes] = {}
        # (topic, partition) -> builders; all but the last are full.
        self._batches: dict[tuple[str, int], list[Any]] = {}
        self._counts: dict[tuple[str, int], int] = {}

    def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
    ) -> None:
        where = (topic, partition)
        builders = self._batches.get(where)
        if builders is None:
            builders = self._batches[where] = [self._producer.create_batch()]
            self._counts[where] = 0
        if builders[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
            builders.append(self._producer.create_batch())
            if builders[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit a Kafka batch")
        self._counts[where] += 1

    def logged(self, thread_id: str, event: bytes) -> None:
        """Note a run-log event of ``thread_id`` (for the thread index)."""
        self.threads.setdefault(thread_id, event)

    async def send(self, topic: str, partition: int) -> Callable[[], int | None]:
        """Queue every batch for the transaction; returns a function that gives the offset
        of the last record sent to ``topic`` partition ``partition`` (None if none was)
        once the transaction committed. Not waiting for the broker here lets the offsets
        commit travel alongside the records."""
        last: asyncio.Future[Any] | None = None
        last_size = 0
        for (to, number), builders in self._batches.items():
            for builder in builders:
                future = await self._producer.send_batch(builder, to, partition=number)
                if (to, number) == (topic, partition):
                    last, last_size = future, builder.record_count()

        def last_offset() -> int | None:
            if last is None:
                return None
            return int(last.result().offset) + last_size - 1

        return last_offset
