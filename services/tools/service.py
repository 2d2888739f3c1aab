"""The tool worker process: Kafka in, :class:`~.worker.ToolWorker` per message, offsets out.

Owns :class:`ToolService` (the consumer loop, the rebalance listener, the committer and the
shutdown) and :func:`serve` (run until SIGTERM/SIGINT). The command
line is :mod:`.command`.

One consumer group (default ``<prefix>.tools``) over ``tool-invocations`` and ``plan-steps``.
Messages of one partition run concurrently (they are independent: each is keyed by its own
id), so a partition's commit position is the lowest offset not yet done
(:class:`~.offsets.OffsetTracker`); an offset is done only once its result is published.

FastStream is not used here: its concurrent subscriber either commits before handling
(``ACK_FIRST``) or handles one message per partition at a time, and neither keeps the
guarantee above with concurrency inside a partition.

Must not import another service or drive the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import urllib.parse
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from redis.asyncio import Redis

from flowai_harness import bus
from flowai_harness.errors import VolatileLedgerError
from flowai_harness.references import RedisReferenceStore

from .app import ToolApp
from .claims import InvocationLedger, check_persistence
from .offsets import OffsetTracker
from .worker import Delivery, ToolWorker, WorkerSettings, default_worker_id

__all__ = ["ServiceSettings", "ToolService", "serve"]

log = logging.getLogger("flowai.tools")

DAY = 24 * 60 * 60


@dataclass(frozen=True)
class ServiceSettings:
    """Where the worker connects and how it takes part in the consumer group."""

    bootstrap: str
    redis_url: str
    prefix: str = bus.DEFAULT_PREFIX
    group: str | None = None  # default: "<prefix>.tools"
    instance_id: str | None = None  # static group membership
    partitions: int = bus.DEFAULT_PARTITIONS
    # None: bus.ensure_topics picks (3 replicas, min ISR 2, on 3+ brokers).
    replication: int | None = None
    min_insync_replicas: int | None = None
    allow_unreplicated: bool | None = None  # None: FLOWAI_ALLOW_UNREPLICATED decides
    # Start even when Redis does not persist the ledger (or cannot say): recorded results
    # lost in a Redis restart mean tools run again.
    allow_volatile_ledger: bool = False
    create_topics: bool = True
    claim_ttl: float = 60.0
    result_ttl: float = 7 * DAY
    # Fetched messages not yet done, at most: those waiting for a run slot or for another
    # worker's claim. Default: four per run slot.
    prefetch: int | None = None
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    shutdown_grace: float = 30.0
    worker_id: str = field(default_factory=default_worker_id)
    worker: WorkerSettings = field(default_factory=WorkerSettings)

    def __post_init__(self) -> None:
        for name in ("claim_ttl", "result_ttl", "shutdown_grace"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.prefetch is not None and self.prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {self.prefetch}")

    @property
    def group_id(self) -> str:
        return self.group or f"{self.prefix}.tools"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ToolService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Commit what is done while the partitions are still ours; what is still running
        # goes on (its result is published) but is committed by the next owner, which gets
        # it again and finds the recorded result (or waits for our claim).
        await self._service.commit()
        self._service.tracker.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "tool worker %s owns %s",
            self._service.settings.worker_id,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing",
        )


class ToolService:
    """Consumes tool invocations and plan steps until :meth:`stop`; see the module docstring."""

    def __init__(self, app: ToolApp, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings
        self.topics = bus.Topics(settings.prefix)
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._stopping = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        """Stop fetching; in-flight messages get ``shutdown_grace`` seconds to finish."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        if settings.create_topics:
            await bus.ensure_topics(
                settings.bootstrap,
                self.topics,
                partitions=settings.partitions,
                replication=settings.replication,
                min_insync_replicas=settings.min_insync_replicas,
                allow_unreplicated=settings.allow_unreplicated,
            )
        redis = Redis.from_url(settings.redis_url)
        try:
            await self._check_ledger(redis)
        except BaseException:
            await redis.aclose()
            raise
        producer = bus.producer(settings.bootstrap)
        consumer = bus.consumer(
            settings.bootstrap,
            group_id=settings.group_id,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            client_id=f"flowai-tools-{settings.worker_id}",
            group_instance_id=settings.instance_id,
        )
        consumer.subscribe(
            [self.topics.tool_invocations, self.topics.plan_steps], listener=_Rebalance(self)
        )
        self._consumer = consumer
        ledger = InvocationLedger(
            redis,
            namespace=f"{settings.prefix}:tools",
            claim_ttl=settings.claim_ttl,
            result_ttl=settings.result_ttl,
        )
        # The claim-check store every tool worker shares: handlers' ctx.references, the
        # executor's resolveRef/glimpseRef and the action dispatcher's resolved_refs.
        references = RedisReferenceStore.from_url(
            settings.redis_url, namespace=f"{settings.prefix}:refs"
        )
        worker = ToolWorker(
            self.app,
            ledger,
            bus.KafkaPublisher(producer),
            self.topics,
            settings.worker,
            worker_id=settings.worker_id,
            references=references,
        )
        await producer.start()
        try:
            await consumer.start()
            committer = asyncio.create_task(self._commit_loop())
            try:
                await self._consume(consumer, worker)
                await self._drain()
            finally:
                committer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await committer
                await self.commit()
                await consumer.stop()
        finally:
            await producer.stop()
            await redis.aclose()
            references.close()
        log.info(
            "tool worker %s stopped: ran %d calls, republished %d recorded results, "
            "%d dead letters",
            settings.worker_id,
            worker.ran,
            worker.replayed,
            worker.dead_lettered,
        )

    async def _check_ledger(self, redis: Redis) -> None:
        """Refuse a Redis that would forget recorded results in a restart, unless allowed."""
        where = _without_password(self.settings.redis_url)
        try:
            how = await check_persistence(redis, where=where)
        except VolatileLedgerError as exc:
            if not self.settings.allow_volatile_ledger:
                raise
            log.warning("%s; starting anyway (--allow-volatile-ledger)", exc.message)
            return
        log.info("tool ledger in the Redis at %s: %s", where, how)

    async def _consume(self, consumer: AIOKafkaConsumer, worker: ToolWorker) -> None:
        prefetch = self.settings.prefetch or 4 * self.settings.worker.concurrency
        log.info(
            "tool worker %s consuming %s, %s as group %s (%d tools, concurrency %d)",
            self.settings.worker_id,
            self.topics.tool_invocations,
            self.topics.plan_steps,
            self.settings.group_id,
            len(self.app.tools),
            self.settings.worker.concurrency,
        )
        while not self._stopping.is_set():
            free = prefetch - len(self._tasks)
            # Pause rather than stop polling: the consumer must keep calling getmany to stay
            # in the group while every slot waits on a slow tool.
            if free <= 0:
                consumer.pause(*consumer.assignment())
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=100, max_records=max(free, 1))
            for tp, records in batch.items():
                for record in records:
                    self.tracker.start(tp, record.offset)
                    task = asyncio.create_task(self._process(worker, tp, record))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _process(
        self, worker: ToolWorker, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        delivery = Delivery(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers or ()),
        )
        await worker.handle(delivery)
        # If the partition was revoked and given back meanwhile, the same offset may be in
        # flight again here: the same message, whose result this task just published, so
        # marking it done is still true.
        self.tracker.finish(tp, record.offset)
        self._dirty.set()

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info(
            "waiting up to %.0f s for %d messages", self.settings.shutdown_grace, len(self._tasks)
        )
        _done, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace)
        for task in pending:
            # Uncommitted: the next owner gets these again (our claims are released).
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _commit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.commit()

    async def commit(self) -> None:
        """Commit every partition's position up to its lowest offset not yet done."""
        consumer = self._consumer
        if consumer is None:
            return
        owned = consumer.assignment()
        positions = {tp: pos for tp, pos in self.tracker.to_commit().items() if tp in owned}
        if not positions:
            return
        try:
            await consumer.commit(positions)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the next owner commits after redelivery.
            log.info("commit skipped (%s); the partitions' new owner commits them", exc)
            return
        except KafkaError:
            log.exception("commit failed; trying again after the next finished message")
            return
        self.tracker.committed(positions)


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def serve(app: ToolApp, settings: ServiceSettings) -> None:
    """Run a tool worker until SIGTERM or SIGINT."""
    service = ToolService(app, settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    await service.run()
