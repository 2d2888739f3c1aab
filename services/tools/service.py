"""The tool service's process: Kafka in, a worker per message, offsets out.

Owns :class:`ToolService` (the consumer loops, the rebalance listeners, the committers and
the shutdown) and :func:`serve` (run until SIGTERM/SIGINT). The command line is
:mod:`.command`.

A process runs one or two lanes, by ``role``:

- ``tools``: one consumer group (default ``<prefix>.tools``) over ``tool-invocations`` and
  ``plan-steps``, answered by :class:`~.worker.ToolWorker` (``on_tool_invocation``,
  ``on_plan_step``).
- ``models``: one consumer group (default ``<prefix>.models``) over ``model-requests``,
  answered by :class:`~.models.ModelWorker` (``on_model_request``) with the providers of the
  app's spec. A group of
  its own, so model workers scale apart from tool workers, and a slow tool never holds a
  model call back (or the other way round).
- ``all``: both, in one process.

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
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from redis.asyncio import Redis

from flowai_harness.errors import ProviderConfigError, VolatileLedgerError
from flowai_harness.kafka import bus, metrics
from flowai_harness.modelcall import Complete
from flowai_harness.references import RedisReferenceStore

from .app import ToolApp
from .claims import InvocationLedger, check_persistence
from .models import ModelSettings, ModelWorker
from .offsets import OffsetTracker
from .once import Delivery, OnceWorker, default_worker_id
from .worker import ToolWorker, WorkerSettings

__all__ = ["ROLES", "Role", "ServiceSettings", "ToolService", "serve"]

log = logging.getLogger("flowai.tools")

DAY = 24 * 60 * 60

Role = Literal["tools", "models", "all"]
ROLES: tuple[Role, ...] = ("tools", "models", "all")


@dataclass(frozen=True)
class ServiceSettings:
    """Where the worker connects and how it takes part in the consumer group."""

    bootstrap: str
    redis_url: str
    prefix: str = bus.DEFAULT_PREFIX
    role: Role = "tools"
    group: str | None = None  # default: "<prefix>.tools"
    model_group: str | None = None  # default: "<prefix>.models"
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
    # worker's claim. Default: four per run slot (tools), two per call slot (models).
    prefetch: int | None = None
    model_prefetch: int | None = None
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    shutdown_grace: float = 30.0
    worker_id: str = field(default_factory=default_worker_id)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    # Per provider, calls in flight at once from this worker (overrides the spec's
    # maxConcurrency for that provider).
    provider_concurrency: Mapping[str, int] = field(default_factory=dict)
    # Add per-hop timestamps to what the workers publish (bench/kafka_e2e.py).
    timing: bool = field(default_factory=lambda: bus.env_flag(bus.TIMING_ENV))

    def __post_init__(self) -> None:
        for name in ("claim_ttl", "result_ttl", "shutdown_grace"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("prefetch", "model_prefetch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        for provider, limit in self.provider_concurrency.items():
            if limit < 1:
                raise ValueError(
                    f"provider concurrency for {provider!r} must be at least 1, got {limit}"
                )

    @property
    def group_id(self) -> str:
        return self.group or bus.group_name(self.prefix, bus.TOOLS_GROUP)

    @property
    def model_group_id(self) -> str:
        return self.model_group or bus.group_name(self.prefix, bus.MODELS_GROUP)

    @property
    def runs_tools(self) -> bool:
        return self.role in ("tools", "all")

    @property
    def runs_models(self) -> bool:
        return self.role in ("models", "all")


class _Lane:
    """One consumer group and the worker that answers its messages."""

    def __init__(
        self,
        name: str,
        topics: list[str],
        group_id: str,
        prefetch: int,
        worker: OnceWorker,
        timing: bool = False,
    ) -> None:
        self.name = name
        self.topics = topics
        self.group_id = group_id
        self.prefetch = prefetch
        self.worker = worker
        worker.timing = timing
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.tasks: set[asyncio.Task[None]] = set()
        self.dirty = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ToolService, lane: _Lane) -> None:
        self._service = service
        self._lane = lane

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Commit what is done while the partitions are still ours; what is still running
        # goes on (its result is published) but is committed by the next owner, which gets
        # it again and finds the recorded result (or waits for our claim).
        await self._service.commit(self._lane)
        self._lane.tracker.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "%s %s owns %s",
            self._lane.worker.role,
            self._service.settings.worker_id,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing",
        )


class ToolService:
    """Consumes tool invocations, plan steps and model requests (by ``role``) until
    :meth:`stop`; see the module docstring."""

    def __init__(self, app: ToolApp, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings
        self.topics = bus.Topics(settings.prefix)
        self.lanes: list[_Lane] = []
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop fetching; in-flight messages get ``shutdown_grace`` seconds to finish."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        # Providers first: a missing key is a configuration error before anything connects.
        providers = _build_providers(self.app, settings) if settings.runs_models else {}
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
            await _close_providers(providers)
            raise
        producer = bus.producer(settings.bootstrap)
        publisher = bus.KafkaPublisher(producer)
        # The claim-check store every tool worker shares: handlers' ctx.references, the
        # executor's resolveRef/glimpseRef and the action dispatcher's resolved_refs.
        references = RedisReferenceStore.from_url(
            settings.redis_url, namespace=f"{settings.prefix}:refs"
        )
        if settings.runs_tools:
            tools = ToolWorker(
                self.app,
                self._ledger(redis, "tools"),
                publisher,
                self.topics,
                settings.worker,
                worker_id=settings.worker_id,
                references=references,
            )
            self.lanes.append(
                _Lane(
                    "tools",
                    [self.topics.tool_invocations, self.topics.plan_steps],
                    settings.group_id,
                    settings.prefetch or 4 * settings.worker.concurrency,
                    tools,
                    settings.timing,
                )
            )
        if settings.runs_models:
            models = ModelWorker(
                providers,
                self._ledger(redis, "models"),
                publisher,
                self.topics,
                settings.models,
                tenant=self.app.spec.tenant.resource_id,
                worker_id=settings.worker_id,
            )
            self.lanes.append(
                _Lane(
                    "models",
                    [self.topics.model_requests],
                    settings.model_group_id,
                    settings.model_prefetch or 2 * settings.models.concurrency,
                    models,
                    settings.timing,
                )
            )
        await producer.start()
        try:
            await asyncio.gather(*(self._run_lane(lane) for lane in self.lanes))
        finally:
            await producer.stop()
            await redis.aclose()
            references.close()
            await _close_providers(providers)
        for lane in self.lanes:
            worker = lane.worker
            log.info(
                "%s %s stopped: ran %d, republished %d recorded results, %d dead letters",
                worker.role,
                settings.worker_id,
                worker.ran,
                worker.replayed,
                worker.dead_lettered,
            )

    def _ledger(self, redis: Redis, lane: str) -> InvocationLedger:
        return InvocationLedger(
            redis,
            namespace=f"{self.settings.prefix}:{lane}",
            claim_ttl=self.settings.claim_ttl,
            result_ttl=self.settings.result_ttl,
        )

    async def _run_lane(self, lane: _Lane) -> None:
        settings = self.settings
        consumer = bus.consumer(
            settings.bootstrap,
            group_id=lane.group_id,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            client_id=f"flowai-{lane.name}-{settings.worker_id}",
            # Static membership is per group: one instance id serves both lanes.
            group_instance_id=settings.instance_id,
        )
        consumer.subscribe(lane.topics, listener=_Rebalance(self, lane))
        lane.consumer = consumer
        await consumer.start()
        metrics.watch_consumer(consumer)
        committer = asyncio.create_task(self._commit_loop(lane))
        try:
            await self._consume(lane, consumer)
            await self._drain(lane)
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self.commit(lane)
            await consumer.stop()

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
        log.info("ledger in the Redis at %s: %s", where, how)

    async def _consume(self, lane: _Lane, consumer: AIOKafkaConsumer) -> None:
        log.info(
            "%s %s consuming %s as group %s (prefetch %d)",
            lane.worker.role,
            self.settings.worker_id,
            ", ".join(lane.topics),
            lane.group_id,
            lane.prefetch,
        )
        while not self._stopping.is_set():
            free = lane.prefetch - len(lane.tasks)
            # Pause rather than stop polling: the consumer must keep calling getmany to stay
            # in the group while every slot waits on a slow call.
            if free <= 0:
                consumer.pause(*consumer.assignment())
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=100, max_records=max(free, 1))
            fetched = time.time()
            for tp, records in batch.items():
                for record in records:
                    lane.tracker.start(tp, record.offset)
                    task = asyncio.create_task(self._process(lane, tp, record, fetched))
                    lane.tasks.add(task)
                    task.add_done_callback(lane.tasks.discard)

    async def _process(
        self,
        lane: _Lane,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        fetched: float = 0.0,
    ) -> None:
        delivery = Delivery(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers or ()),
            timestamp=record.timestamp,
            fetched=fetched,
        )
        await lane.worker.handle(delivery)
        # If the partition was revoked and given back meanwhile, the same offset may be in
        # flight again here: the same message, whose result this task just published, so
        # marking it done is still true.
        lane.tracker.finish(tp, record.offset)
        lane.dirty.set()

    async def _drain(self, lane: _Lane) -> None:
        if not lane.tasks:
            return
        log.info(
            "%s: waiting up to %.0f s for %d messages",
            lane.name,
            self.settings.shutdown_grace,
            len(lane.tasks),
        )
        _done, pending = await asyncio.wait(lane.tasks, timeout=self.settings.shutdown_grace)
        for task in pending:
            # Uncommitted: the next owner gets these again (our claims are released).
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _commit_loop(self, lane: _Lane) -> None:
        while True:
            await lane.dirty.wait()
            lane.dirty.clear()
            await self.commit(lane)

    async def commit(self, lane: _Lane) -> None:
        """Commit every partition's position up to its lowest offset not yet done."""
        consumer = lane.consumer
        if consumer is None:
            return
        owned = consumer.assignment()
        positions = {tp: pos for tp, pos in lane.tracker.to_commit().items() if tp in owned}
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
        lane.tracker.committed(positions)


def _build_providers(app: ToolApp, settings: ServiceSettings) -> dict[str, Complete]:
    """The app's providers, with this worker's concurrency limits applied."""
    from flowai_harness.providers import build_providers

    configured = {name: dict(entry) for name, entry in app.spec.providers.items()}
    unknown = sorted(set(settings.provider_concurrency) - set(configured))
    if unknown:
        raise ProviderConfigError(
            f"--provider-concurrency names {', '.join(map(repr, unknown))}, which the app's "
            f"spec does not declare; its providers are: {', '.join(sorted(configured)) or 'none'}",
            details={"setting": "provider_concurrency"},
        )
    for name, limit in settings.provider_concurrency.items():
        configured[name]["maxConcurrency"] = limit
    return dict(build_providers(configured))


async def _close_providers(providers: Mapping[str, Complete]) -> None:
    if not providers:
        return
    from flowai_harness.providers import close_providers

    with contextlib.suppress(Exception):
        await close_providers(providers)


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def serve(app: ToolApp, settings: ServiceSettings) -> None:
    """Run the service's lanes until SIGTERM or SIGINT."""
    service = ToolService(app, settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    await service.run()
