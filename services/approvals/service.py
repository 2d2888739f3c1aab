"""The approvals service process: the approval topics in, the HTTP API and Slack out.

Owns :class:`ApprovalsService`, :class:`ServiceSettings` and :func:`serve` (run until
SIGTERM/SIGINT). The command line is :mod:`.command`.

- Reads ``approval-requests`` and ``approval-decisions`` (``read_committed``) from the
  beginning on every start, every partition, without a consumer group: each instance keeps
  the whole book (:class:`~.desk.ApprovalDesk`), rebuilt from the topics, so Redis is never
  the only copy of anything. Until it has read up to where the topics ended when it started,
  the API answers 503 (``/healthz`` too). Then a second reader follows ``queries`` for
  ``CancelRun``, from a minute before the oldest pending approval was requested (or before
  now): older cancellations cannot touch a pending approval.
- Serves the HTTP API (:mod:`.http`) on ``--http host:port`` in the same event loop, and,
  with a Slack app configured, posts and follows the approvals in Slack (:mod:`.slack`).
- Signs every decision it publishes with its decision key
  (:class:`flowai_harness.kafka.decision_auth.DecisionSigner`) and publishes with an idempotent
  producer (acks=all); decisions read back from the topic are checked with its own public
  key and the ones it was given (:class:`~flowai_harness.kafka.decision_auth.DecisionVerifier`).
  Without a key it publishes unsigned, and says so loudly, only when told to
  (``--allow-unsigned-decisions``).
- A message it cannot use becomes a dead letter (reason, message, original bytes, where it
  was read) and it goes on. Every start reads the topics again, so a watermark per partition
  in Redis (``<prefix>:approvals:dead-letters``) keeps a bad message from being
  dead-lettered again at each start; losing it only repeats dead letters, which carry the
  same id (their source position).

``FLOWAI_APPROVALS_TEST_HOLD=before-publish|after-publish`` (tests only) makes a decision
stop for good at that step and log ``holding at <step>``, so a test can kill -9 the process
exactly there.

FastStream is not used: its subscribers join consumer groups and commit, while this service
must read every partition from the beginning at each start and never commit.

Must not import another service or drive the engine (approvals do not decide what the agent
does next; they publish a human's decision).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from redis.asyncio import Redis

from flowai_harness.errors import UsageError
from flowai_harness.kafka import bus, metrics, observe, telemetry
from flowai_harness.kafka.decision_auth import (
    DecisionSigner,
    DecisionVerifier,
    key_id,
    load_private_key,
    load_public_keys,
)

from .desk import ApprovalDesk, Rejected, Step
from .http import create_app
from .policy import AppPolicy
from .postings import Postings
from .slack import SlackBridge, SlackSettings

__all__ = ["ApprovalsService", "ServiceSettings", "serve"]

log = logging.getLogger("flowai.approvals")

SERVICE: Final = "approvals"
STEPS: Final[tuple[Step, ...]] = ("before-publish", "after-publish")
# Cancellations are followed from this long before the oldest pending approval (clocks of
# the producers differ a little).
_CANCEL_MARGIN_MS: Final = 60_000

# KEYS: the watermark hash. ARGV: field, next offset. Only moves forward.
_ADVANCE: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


@dataclass(frozen=True)
class ServiceSettings:
    """Where the service connects and listens, and how it signs."""

    bootstrap: str
    redis_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    prefix: str = bus.DEFAULT_PREFIX
    partitions: int = bus.DEFAULT_PARTITIONS
    # None: bus.ensure_topics picks (3 replicas, min ISR 2, on 3+ brokers).
    replication: int | None = None
    min_insync_replicas: int | None = None
    allow_unreplicated: bool | None = None
    create_topics: bool = True
    # The Ed25519 private key that signs decisions (PEM text or a file); None only with
    # allow_unsigned_decisions.
    decision_key: bytes | str | None = None
    allow_unsigned_decisions: bool = False
    # More public keys (PEM text or files) whose decisions on the topic count (operators'
    # tools).
    trusted_keys: Sequence[bytes | str] = ()
    slack: SlackSettings | None = None
    # How long a decision waits to be read back before 202 says confirmed: false.
    confirm_wait: float = 10.0
    # How long a lookup of an unknown id waits for the topics to be read to their end.
    catch_up_wait: float = 2.0
    # Tests only: stop a decision for good at this step (see the module docstring).
    hold_at: Step | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"the HTTP port must be 0..65535, got {self.port}")
        if self.confirm_wait < 0 or self.catch_up_wait < 0:
            raise ValueError("confirm_wait and catch_up_wait must not be negative")
        if self.decision_key is None and not self.allow_unsigned_decisions:
            raise UsageError(
                "the approvals service signs every decision it publishes, and has no key: "
                "give it --decision-key (or FLOWAI_DECISION_KEY; PEM text or a file; make "
                "one with `python -m flowai_harness.kafka.decision_auth keygen --out DIR`) and the "
                "runtimes its public key; --allow-unsigned-decisions publishes unsigned "
                "decisions instead (development only: runtimes that verify refuse them)"
            )
        if self.hold_at is not None and self.hold_at not in STEPS:
            raise ValueError(f"hold_at must be one of {', '.join(STEPS)}, got {self.hold_at!r}")
        self.signing()  # a key that cannot be read or is not Ed25519 stops here, not later

    def signing(self) -> tuple[DecisionSigner | None, DecisionVerifier | None]:
        """What signs the decisions published, and what checks the decisions read from the
        topic (this service's own key and the trusted ones; None takes every decision, when
        running unsigned without trusted keys)."""
        keys = load_public_keys(self.trusted_keys)
        signer = None
        if self.decision_key is not None:
            private = load_private_key(self.decision_key)
            signer = DecisionSigner(private)
            keys[key_id(private.public_key())] = private.public_key()
        return signer, (DecisionVerifier(keys) if keys else None)


class ApprovalsService:
    """One approvals instance; see the module docstring."""

    def __init__(self, policy: AppPolicy, settings: ServiceSettings) -> None:
        self.policy = policy
        self.settings = settings
        self.topics = bus.Topics(settings.prefix)
        self._stopping = asyncio.Event()
        self._progress = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._letters_from: dict[TopicPartition, int] = {}
        self.desk: ApprovalDesk | None = None
        self.slack: SlackBridge | None = None
        self.dead_lettered = 0
        # The HTTP server's bound (host, port) once it listens.
        self.address: tuple[str, int] | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        signer, verifier = settings.signing()
        if signer is None:
            log.warning(
                "\n%s\nDECISIONS ARE PUBLISHED UNSIGNED (--allow-unsigned-decisions): a "
                "runtime that verifies decisions dead-letters them, and one that does not "
                "cannot tell them from forgeries. Development only.\n%s",
                "!" * 78,
                "!" * 78,
            )
        if self.policy.allow_unauthenticated:
            log.warning(
                "--allow-unauthenticated: anyone who reaches the HTTP port can read and decide "
                "the approvals of every tenant without an API secret%s. Development only.",
                "" if self.policy.secrets.configured else " (here: every tenant)",
            )
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
        producer = bus.producer(settings.bootstrap, client_id="flowai-approvals")
        consumer = bus.consumer(settings.bootstrap, client_id="flowai-approvals")
        self._consumer = consumer
        runner: web.AppRunner | None = None
        tasks: list[asyncio.Task[None]] = []
        await producer.start()
        try:
            await consumer.start()
            self._partitions = [
                TopicPartition(topic, partition)
                for topic in (self.topics.approval_requests, self.topics.approval_decisions)
                for partition in range(await bus.partition_count(settings.bootstrap, topic))
            ]
            consumer.assign(self._partitions)
            metrics.watch_consumer(consumer)
            await consumer.seek_to_beginning(*self._partitions)
            self._letters_from = await self._load_watermarks(redis)
            publisher = bus.KafkaPublisher(producer)
            desk = ApprovalDesk(
                self.policy,
                publisher,
                self.topics,
                signer=signer,
                verifier=verifier,
                catch_up=self.catch_up,
                wait_folded=self.wait_folded,
                confirm_wait=settings.confirm_wait,
                hold=self._hold if settings.hold_at is not None else None,
            )
            self.desk = desk
            observe.ready_when("the approval topics read", lambda: desk.ready)
            metrics.pending_approvals_from(
                lambda: sum(a.status(desk.clock()) == "pending" for a in desk.book)
            )
            if settings.slack is not None:
                self.slack = SlackBridge(
                    settings.slack,
                    desk,
                    Postings(
                        redis,
                        namespace=f"{settings.prefix}:approvals:slack",
                        lease=settings.slack.lease,
                    ),
                    self.policy.slack_routes,
                )
                await self.slack.check_token()
            runner = web.AppRunner(create_app(desk, self.slack), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.address = (host, port)
            log.info("approvals API on http://%s:%d (reading the topics first)", host, port)
            await self._consume(consumer, desk, publisher, redis, tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
            with contextlib.suppress(Exception):
                await consumer.stop()
            await producer.stop()
            await redis.aclose()
        log.info(
            "approvals service stopped: %d approvals known, %d dead letters",
            len(self.desk.book) if self.desk is not None else 0,
            self.dead_lettered,
        )

    async def _consume(
        self,
        consumer: AIOKafkaConsumer,
        desk: ApprovalDesk,
        publisher: bus.Publisher,
        redis: Redis,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        started = time.perf_counter()
        start_ends = await consumer.end_offsets(self._partitions)
        watermarks = redis.register_script(_ADVANCE)
        letters_key = self._letters_key()
        hops = {
            self.topics.approval_requests: desk.on_approval_request,
            self.topics.approval_decisions: desk.on_approval_decision,
        }
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for tp, records in batch.items():
                for record in records:
                    if tp.topic == self.topics.approval_requests:
                        telemetry.remember_approval_request(record.value, record.headers)
                    try:
                        hops[tp.topic](record.value)
                    except Rejected as rejected:
                        if record.offset < self._letters_from.get(tp, 0):
                            continue  # dead-lettered before this start
                        await self._dead_letter(publisher, tp, record, rejected)
                        await watermarks(keys=[letters_key], args=[_field(tp), record.offset + 1])
            if not desk.ready and await self._reached(start_ends):
                desk.ready = True
                log.info(
                    "approvals service ready: %d approvals read in %.3f s",
                    len(desk.book),
                    time.perf_counter() - started,
                )
                loop = asyncio.get_running_loop()
                tasks.append(loop.create_task(self._follow_cancellations(desk)))
                if self.slack is not None:
                    await self.slack.start()
                    tasks.append(loop.create_task(self.slack.run(self._stopping)))
            async with self._progress:
                self._progress.notify_all()

    async def _follow_cancellations(self, desk: ApprovalDesk) -> None:
        """Fold the ``CancelRun`` messages of ``queries`` into the book, from shortly before
        the oldest approval still pending."""
        settings = self.settings
        topic = self.topics.queries
        consumer = bus.consumer(settings.bootstrap, client_id="flowai-approvals-cancellations")
        await consumer.start()
        try:
            tps = [
                TopicPartition(topic, p)
                for p in range(await bus.partition_count(settings.bootstrap, topic))
            ]
            consumer.assign(tps)
            # From before the oldest pending approval, and never later than a little before
            # now: a cancellation sent while this reader starts is not missed.
            now = desk.clock()
            since = min([now, *(a.requested_at for a in desk.book if a.status(now) == "pending")])
            found = await consumer.offsets_for_times(
                dict.fromkeys(tps, max(0, since - _CANCEL_MARGIN_MS))
            )
            for tp in tps:
                at = found.get(tp)
                if at is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, at.offset)
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        desk.on_cancel_run(record.value)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following the cancellations on %s stopped", topic)
        finally:
            await consumer.stop()

    async def wait_folded(self, check: Callable[[], bool], within: float) -> bool:
        """Wait until ``check()`` holds after a poll of the topics (False after ``within``)."""
        deadline = time.monotonic() + within
        async with self._progress:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), left)
        return True

    async def catch_up(self) -> None:
        """Wait (at most ``catch_up_wait``) until what the topics hold now has been read."""
        consumer = self._consumer
        if consumer is None or self.settings.catch_up_wait == 0:
            return
        ends = await consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + self.settings.catch_up_wait
        async with self._progress:
            while not await self._reached(ends):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), left)

    async def _hold(self, step: Step) -> None:
        if step != self.settings.hold_at:
            return
        log.warning("holding at %s (FLOWAI_APPROVALS_TEST_HOLD): waiting to be killed", step)
        await asyncio.Event().wait()

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        consumer = self._consumer
        assert consumer is not None
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _letters_key(self) -> str:
        return f"{self.settings.prefix}:approvals:dead-letters"

    async def _load_watermarks(self, redis: Redis) -> dict[TopicPartition, int]:
        # redis-py types its commands for both clients; this one is the asyncio one.
        marks = await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(self._letters_key()))
        known = {_field(tp): tp for tp in self._partitions}
        loaded: dict[TopicPartition, int] = {}
        for name, offset in marks.items():
            tp = known.get(name.decode())
            if tp is not None:
                loaded[tp] = int(offset)
        return loaded

    async def _dead_letter(
        self,
        publisher: bus.Publisher,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        rejected: Rejected,
    ) -> None:
        offset: int = record.offset
        self.dead_lettered += 1
        metrics.dead_letter(rejected.reason)
        log.warning(
            "dead letter from %s[%d]@%d: %s: %s",
            tp.topic,
            tp.partition,
            offset,
            rejected.reason,
            rejected.message,
        )
        letter = bus.dead_letter(
            reason=rejected.reason,
            message=rejected.message,
            original=record.value or b"",
            service=SERVICE,
            source=(tp.topic, tp.partition, offset),
        )
        await publisher.publish(self.topics.dead_letters, record.key, letter, ())


def _field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


async def serve(policy: AppPolicy, settings: ServiceSettings) -> None:
    """Run an approvals service until SIGTERM or SIGINT."""
    service = ApprovalsService(policy, settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    await service.run()
