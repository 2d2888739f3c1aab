"""The Kafka side of flowai-harness: topic names, keys, partitions, clients, dead letters, traces.

Owns :class:`Topics` (the names under a configurable prefix), the keys (:func:`thread_key`)
and the partition a key lands on (:func:`partition_for`, the murmur2 partitioner of the Java
client and aiokafka), :func:`ensure_topics` (idempotent creation; the broker's auto-create is
off), the producer/consumer factories with the settings every service shares, the command
line options every service shares (:func:`add_service_arguments`),
:class:`Publisher` / :class:`KafkaPublisher` (send one message and wait for the broker's
ack; tests stand in their own), the :func:`dead_letter` builder and the W3C ``traceparent``
header helpers.

Keys: ``tenant/thread_id`` for everything except tool invocations and plan steps, which are
keyed by their own id so work spreads over partitions. The runtime's input topics and the run
log have the same partition count, so a thread's inputs and its log share a partition number.

Imports aiokafka (the ``kafka`` extra). Must not import the runtime, the native engine, the
client or any service.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from .errors import BusError
from .messages import schema_name

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_PREFIX",
    "INTERACTIVE_FETCH_WAIT_MS",
    "TRACEPARENT",
    "KafkaPublisher",
    "Publisher",
    "Topics",
    "add_service_arguments",
    "child_traceparent",
    "consumer",
    "dead_letter",
    "ensure_topics",
    "new_traceparent",
    "now_ms",
    "partition_count",
    "partition_counts",
    "partition_for",
    "peek",
    "producer",
    "thread_key",
    "traceparent_of",
]

DEFAULT_PREFIX: Final = "flowai"
DEFAULT_PARTITIONS: Final = 6
# A consumer on an interactive path (runtime, tool workers, clients following a run) waits at
# most this long for a fetch to fill; Kafka's default (500 ms) would add up at every hop.
INTERACTIVE_FETCH_WAIT_MS: Final = 5
TRACEPARENT: Final = "traceparent"

_DEAD_LETTER = schema_name("DeadLetter")
_TOPIC_ALREADY_EXISTS: Final = 36


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name under one prefix (``<prefix>.queries``, ``<prefix>.runtime-events``...)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or not all(c.isalnum() or c in "._-" for c in self.prefix):
            raise BusError(
                f"topic prefix {self.prefix!r} is not valid: use letters, digits, '.', '_', '-'"
            )

    def _name(self, stem: str) -> str:
        return f"{self.prefix}.{stem}"

    @property
    def queries(self) -> str:
        return self._name("queries")

    @property
    def runtime_events(self) -> str:
        """The run log: the durable, ordered record of each thread."""
        return self._name("runtime-events")

    @property
    def tool_invocations(self) -> str:
        return self._name("tool-invocations")

    @property
    def plan_steps(self) -> str:
        return self._name("plan-steps")

    @property
    def tool_results(self) -> str:
        return self._name("tool-results")

    @property
    def approval_requests(self) -> str:
        return self._name("approval-requests")

    @property
    def approval_decisions(self) -> str:
        return self._name("approval-decisions")

    @property
    def dead_letters(self) -> str:
        return self._name("dead-letters")

    @property
    def model_requests(self) -> str:
        return self._name("model-requests")

    @property
    def model_results(self) -> str:
        return self._name("model-results")

    @property
    def model_deltas(self) -> str:
        """Text of model calls in flight, for clients (short retention; not an input)."""
        return self._name("model-deltas")

    @property
    def runtime_inputs(self) -> tuple[str, ...]:
        """What the runtime consumes (one consumer group); co-partitioned with the run log."""
        return (self.queries, self.tool_results, self.model_results, self.approval_decisions)

    def all(self) -> tuple[str, ...]:
        return (
            self.queries,
            self.runtime_events,
            self.tool_invocations,
            self.plan_steps,
            self.tool_results,
            self.model_requests,
            self.model_results,
            self.model_deltas,
            self.approval_requests,
            self.approval_decisions,
            self.dead_letters,
        )

    def effect_topic(self, schema: str) -> str | None:
        """Where an engine effect of ``schema`` goes; None for one this version cannot route."""
        return {
            "flowai.v1.ToolInvocation": self.tool_invocations,
            "flowai.v1.PlanStep": self.plan_steps,
            "flowai.v1.ModelRequest": self.model_requests,
            "flowai.v1.ApprovalRequest": self.approval_requests,
        }.get(schema)


def thread_key(tenant: str, thread_id: str) -> bytes:
    """The key of every message about one thread: ``tenant/thread_id``."""
    return f"{tenant}/{thread_id}".encode()


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the default partitioner (Java client, aiokafka) picks for ``key``."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the services' shared command line options ------------------------------------------------


def add_service_arguments(
    parser: argparse.ArgumentParser, *, redis: str | None = None, creates: str = "this service"
) -> None:
    """Add the options every service takes, with their environment defaults: ``--bootstrap``
    (FLOWAI_KAFKA_BOOTSTRAP), ``--prefix`` (FLOWAI_TOPIC_PREFIX), ``--partitions``
    (FLOWAI_PARTITIONS), ``--replication`` (FLOWAI_REPLICATION), ``--no-create-topics``,
    ``--log-level`` (FLOWAI_LOG_LEVEL), and ``--redis`` (FLOWAI_REDIS_URL) when ``redis``
    says what the service keeps there."""
    env = os.environ.get
    parser.add_argument(
        "--bootstrap",
        default=env("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
        help="Kafka bootstrap servers (env FLOWAI_KAFKA_BOOTSTRAP)",
    )
    if redis is not None:
        parser.add_argument(
            "--redis",
            default=env("FLOWAI_REDIS_URL", "redis://127.0.0.1:16379/0"),
            help=f"Redis URL for {redis} (env FLOWAI_REDIS_URL)",
        )
    parser.add_argument(
        "--prefix",
        default=env("FLOWAI_TOPIC_PREFIX", DEFAULT_PREFIX),
        help="topic prefix, also the Redis key namespace (env FLOWAI_TOPIC_PREFIX)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(env("FLOWAI_PARTITIONS", str(DEFAULT_PARTITIONS))),
        help=f"partitions per topic when {creates} creates the topics (env FLOWAI_PARTITIONS)",
    )
    parser.add_argument(
        "--replication",
        type=int,
        default=int(env("FLOWAI_REPLICATION", "1")),
        help=f"replication factor when {creates} creates the topics (env FLOWAI_REPLICATION)",
    )
    parser.add_argument(
        "--no-create-topics", action="store_true", help="do not create missing topics (fail)"
    )
    parser.add_argument("--log-level", default=env("FLOWAI_LOG_LEVEL", "INFO"))


# --- topics ----------------------------------------------------------------------------------

# The run log is the only state: it must never expire. Model deltas are only for clients
# watching a call in flight (the log keeps the complete message): an hour is plenty.
_TOPIC_CONFIGS: Final[Mapping[str, Mapping[str, str]]] = {
    "runtime-events": {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"},
    "model-deltas": {"retention.ms": "3600000", "cleanup.policy": "delete"},
}


async def ensure_topics(
    bootstrap: str,
    topics: Topics | Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Idempotent. Raises :class:`~flowai_harness.errors.BusError` when the broker cannot be
    reached or an existing topic's partition count differs from the others: the runtime
    needs its input topics and the run log co-partitioned.
    """
    names = list(topics.all() if isinstance(topics, Topics) else topics)
    if partitions < 1 or replication < 1:
        raise BusError(f"partitions and replication must be >= 1, got {partitions}, {replication}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="flowai-admin")
    try:
        await admin.start()
    except KafkaError as exc:
        raise BusError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        new = [
            NewTopic(
                name,
                partitions,
                replication,
                topic_configs=dict(_TOPIC_CONFIGS.get(name.rsplit(".", 1)[-1], {})),
            )
            for name in names
        ]
        response = await admin.create_topics(new)
        created: list[str] = []
        for error in response.topic_errors:
            name, code = error[0], error[1]
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                message = error[2] if len(error) > 2 else ""
                raise BusError(f"cannot create topic {name!r}: error {code} {message}")
        counts = await _wait_for_leaders(admin, names)
    finally:
        await admin.close()
    missing = sorted(set(names) - set(counts))
    if missing:
        raise BusError(
            f"topics {', '.join(missing)} have no leader yet (or cannot be described); "
            "check the broker's health and retry"
        )
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        raise BusError(
            f"the topics must all have the same partition count (a thread's inputs and its run "
            f"log share a partition number), but they have {listing}; recreate them with one "
            "count or use another topic prefix"
        )
    return created


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: Sequence[str], wait: float = 10.0
) -> dict[str, int]:
    """Partition counts, once every partition of ``names`` has a leader: a topic just created
    is not usable before (clients get "unknown topic" or "not leader" errors)."""
    deadline = time.monotonic() + wait
    while True:
        described = await admin.describe_topics(list(names))
        ready = {
            topic["topic"]: len(topic["partitions"])
            for topic in described
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(p["leader"] >= 0 and p["error_code"] == 0 for p in topic["partitions"])
        }
        if len(ready) == len(set(names)) or time.monotonic() >= deadline:
            return ready
        await asyncio.sleep(0.05)


async def _partition_counts(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, int]:
    described = await admin.describe_topics(list(names))
    # An unknown topic comes back with an error code and no partitions.
    return {
        topic["topic"]: len(topic["partitions"]) for topic in described if topic["error_code"] == 0
    }


# --- clients ---------------------------------------------------------------------------------


def producer(
    bootstrap: str, *, transactional_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """An idempotent producer (``acks=all``), transactional when ``transactional_id`` is given."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
    }
    if transactional_id is not None:
        settings["transactional_id"] = transactional_id
        # A transaction begun right after the previous commit is refused (concurrent
        # transactions) until the broker has written the commit markers, about a
        # millisecond; aiokafka then waits retry_backoff_ms (100 ms by default) before asking
        # again, which would put a tenth of a second on the next step of a run.
        settings["retry_backoff_ms"] = 2
        _tune_transaction_retries()
    settings.update(overrides)
    return AIOKafkaProducer(**settings)


def _tune_transaction_retries() -> None:
    # The first AddPartitionsToTxn of a transaction is retried after a fixed 20 ms when the
    # broker answers CONCURRENT_TRANSACTIONS (aiokafka copies the Java client's KAFKA-5477
    # work-around); on a local broker the markers are written well within 2 ms.
    from aiokafka.producer import sender

    sender.BACKOFF_OVERRIDE = min(sender.BACKOFF_OVERRIDE, 0.002)


def consumer(
    bootstrap: str,
    *topics: str,
    group_id: str | None = None,
    interactive: bool = True,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A ``read_committed`` consumer that commits only on purpose.

    Groups use the range assignor, which gives one member the same partition numbers of every
    topic it subscribes to (the runtime needs a thread's inputs together).
    """
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": INTERACTIVE_FETCH_WAIT_MS if interactive else 500,
        "partition_assignment_strategy": (RangePartitionAssignor,),
    }
    settings.update(overrides)
    return AIOKafkaConsumer(*topics, **settings)


async def partition_counts(
    bootstrap: str, topics: Iterable[str], *, wait: float = 0.0
) -> dict[str, int]:
    """How many partitions each topic has; :class:`BusError` when one does not exist (after
    ``wait`` seconds: a topic just created takes a moment to show in the metadata)."""
    names = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="flowai-admin")
    try:
        await admin.start()
    except KafkaError as exc:
        raise BusError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        counts = await _wait_for_leaders(admin, names, wait)
    finally:
        await admin.close()
    missing = sorted(set(names) - set(counts))
    if missing:
        raise BusError(
            f"topic(s) {', '.join(missing)} do not exist; start the runtime service (it "
            "creates its topics) or run `flowai topics create --prefix <prefix>`"
        )
    return counts


class Publisher(Protocol):
    """Sends one message and returns once the broker has it (acks=all)."""

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None: ...


class KafkaPublisher:
    """A :class:`Publisher` over one (idempotent) producer: returns once the broker acked."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))


async def partition_count(bootstrap: str, topic: str, *, wait: float = 0.0) -> int:
    """How many partitions ``topic`` has (see :func:`partition_counts`)."""
    return (await partition_counts(bootstrap, [topic], wait=wait))[topic]


# --- messages --------------------------------------------------------------------------------


def peek(data: bytes) -> dict[str, Any] | None:
    """The envelope fields of ``data`` if it is a JSON object, else None (never raises)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def dead_letter(
    *,
    reason: str,
    message: str,
    original: bytes,
    service: str,
    source: tuple[str, int, int] | None = None,
    tenant: str | None = None,
    thread_id: str | None = None,
    ts: int | None = None,
) -> bytes:
    """A ``flowai.v1.DeadLetter`` envelope for a message ``service`` gave up on.

    ``source`` is the (topic, partition, offset) it was read from; with it the dead letter's
    id is deterministic, so a redelivered message gives the same id. Tenant, thread, schema
    and id of the original are taken from it when it names them and not given here.
    """
    fields = peek(original) or {}
    try:
        text, encoding = original.decode(), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(original).decode(), "base64"
    original_id = _text(fields.get("id"))
    if source is not None:
        letter_id = f"dead-letter/{service}/{source[0]}/{source[1]}/{source[2]}"
    else:
        letter_id = f"dead-letter/{service}/{uuid.uuid4().hex}"
    body = {
        "schema": _DEAD_LETTER,
        "id": letter_id,
        "tenant": tenant if tenant is not None else _text(fields.get("tenant")),
        "thread_id": thread_id if thread_id is not None else _text(fields.get("thread_id")),
        "run_id": _text(fields.get("run_id")),
        "causation_id": original_id,
        "ts": ts if ts is not None else now_ms(),
        "payload": {
            "reason": reason,
            "message": message,
            "service": service,
            "source": None
            if source is None
            else {"topic": source[0], "partition": source[1], "offset": source[2]},
            "original": text,
            "encoding": encoding,
            "original_schema": _text(fields.get("schema")),
            "original_id": original_id,
        },
    }
    return orjson.dumps(body)


# --- W3C trace context -----------------------------------------------------------------------


def new_traceparent() -> str:
    """A fresh sampled ``traceparent``: ``00-<trace id>-<span id>-01``."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def child_traceparent(parent: str | None) -> str:
    """A ``traceparent`` for work caused by ``parent`` (same trace, new span); a missing or
    malformed parent starts a new trace."""
    if parent is not None:
        parts = parent.split("-")
        if (
            len(parts) == 4
            and len(parts[1]) == 32
            and len(parts[2]) == 16
            and parts[1] != "0" * 32
            and all(c in "0123456789abcdef" for c in parts[1])
        ):
            return f"00-{parts[1]}-{os.urandom(8).hex()}-{parts[3][:2] or '01'}"
    return new_traceparent()


def traceparent_of(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The ``traceparent`` header of a Kafka record, if any."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            try:
                return value.decode()
            except UnicodeDecodeError:
                return None
    return None
