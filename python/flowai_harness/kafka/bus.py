"""The Kafka side of flowai-harness: topic names, keys, partitions, clients, dead letters, traces.

Owns :class:`Topics` (the names under a configurable prefix, from the topic stems the
message models name in :mod:`flowai_harness.messages`), the keys (:func:`thread_key`,
:func:`record_key` by each model's key rule) and the partition a key lands on
(:func:`partition_for`, the murmur2 partitioner of the Java client and aiokafka),
:func:`ensure_topics` (idempotent creation; the broker's auto-create is off) and
:func:`check_run_log` (the run log's replication), the producer/consumer factories with the
settings every service shares, the command line options every service shares
(:func:`add_service_arguments`, :func:`add_membership_arguments`), :class:`Publisher` /
:class:`KafkaPublisher` (send one message and wait for the broker's ack; tests stand in
their own), the :func:`dead_letter` and :func:`thread_record` builders, the W3C
``traceparent`` header helpers, and the names every service shares: the timing header
(:data:`TIMING`) and the consumer groups (:func:`group_name`).

Replication: topics get replication factor 3 and ``min.insync.replicas=2`` on a cluster of
three or more brokers, else one replica per broker, unless ``--replication`` /
``--min-insync-replicas`` say otherwise. The run log (``runtime-events``) is every thread's
only state, so it is refused with a single replica (one broker's disk would hold the only
copy), whether it is about to be created so or already exists so, unless
``allow_unreplicated`` (``--allow-unreplicated``, env ``FLOWAI_ALLOW_UNREPLICATED=1``) says
this is a one-broker development cluster.

Keys: ``tenant/thread_id`` for everything except tool invocations, plan steps and model
requests, which are keyed by their own id so work spreads over partitions (each model's
``KEY``). The runtime's input topics and the run
log have the same partition count, so a thread's inputs and its log share a partition number.

Imports aiokafka (the ``kafka`` extra). Must not import the runtime, the native engine, the
client or any service.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import socket
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

from ..errors import BusError, UnreplicatedRunLogError, UsageError
from ..messages import (
    KEYED_BY_ID,
    SCHEMAS,
    TOPICS,
    ApprovalDecision,
    ApprovalRequest,
    DeadLetter,
    Envelope,
    ModelDelta,
    ModelRequest,
    ModelResult,
    PlanStep,
    Query,
    RuntimeEvent,
    Thread,
    ThreadSnapshot,
    ToolInvocation,
    ToolResult,
)
from ..settings import positive_int

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_PREFIX",
    "FETCH_WAIT_MS",
    "MODELS_GROUP",
    "RUNTIME_GROUP",
    "TIMING",
    "TIMING_ENV",
    "TOOLS_GROUP",
    "TRACEPARENT",
    "KafkaPublisher",
    "Publisher",
    "Topics",
    "add_flag_argument",
    "add_membership_arguments",
    "add_service_arguments",
    "check_run_log",
    "child_traceparent",
    "consumer",
    "dead_letter",
    "ensure_topics",
    "env_flag",
    "expand_instance_id",
    "group_name",
    "new_traceparent",
    "now_ms",
    "partition_count",
    "partition_counts",
    "partition_for",
    "peek",
    "producer",
    "record_key",
    "thread_key",
    "thread_record",
    "traceparent_of",
]

DEFAULT_PREFIX: Final = "flowai"
DEFAULT_PARTITIONS: Final = 6
# How long a fetch waits for data when there is none. The broker answers as soon as one byte
# (fetch.min.bytes) of committed data is there, also when a transaction's commit marker makes
# data visible to read_committed readers, so this does not delay a hop; it only sets how often
# an idle consumer asks. 5 ms cost every consumer 7-11% of a core doing nothing; 500 ms (Kafka's
# default) gives the same one-step latency (bench/kafka_e2e.py, p50 13-15 ms either way).
FETCH_WAIT_MS: Final = 500
TRACEPARENT: Final = "traceparent"
# Per-hop timestamps (ms since the epoch, ``name=value`` pairs joined by commas) a service
# adds to what it publishes when timing is on (env TIMING_ENV; bench/kafka_e2e.py reads them).
TIMING: Final = "flowai-timing"
TIMING_ENV: Final = "FLOWAI_TIMING"
# The services' consumer groups (:func:`group_name`), unless ``--group`` / ``--model-group``
# name others: the runtime over its inputs, the tool workers, the model workers.
RUNTIME_GROUP: Final = "runtime"
TOOLS_GROUP: Final = "tools"
MODELS_GROUP: Final = "models"
# What topics get on a cluster of at least PREFERRED_REPLICATION brokers, unless told: a
# broker may be lost (or restarted) without losing or refusing an acknowledged write.
PREFERRED_REPLICATION: Final = 3
PREFERRED_MIN_INSYNC_REPLICAS: Final = 2

log = logging.getLogger("flowai.bus")

_TOPIC_ALREADY_EXISTS: Final = 36


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name under one prefix (``<prefix>.queries``, ``<prefix>.runtime-events``...),
    from the stems the message models name (:data:`~flowai_harness.messages.TOPICS`)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or not all(c.isalnum() or c in "._-" for c in self.prefix):
            raise BusError(
                f"topic prefix {self.prefix!r} is not valid: use letters, digits, '.', '_', '-'"
            )

    def _name(self, stem: str) -> str:
        return f"{self.prefix}.{stem}"

    def of(self, model: type[Envelope]) -> str:
        """The topic ``model`` travels on; :class:`BusError` for one the runtime answers in
        its own process."""
        return self._name(_stem(model))

    @property
    def queries(self) -> str:
        return self.of(Query)

    @property
    def runtime_events(self) -> str:
        """The run log: the durable, ordered record of each thread."""
        return self.of(RuntimeEvent)

    @property
    def tool_invocations(self) -> str:
        return self.of(ToolInvocation)

    @property
    def plan_steps(self) -> str:
        return self.of(PlanStep)

    @property
    def tool_results(self) -> str:
        return self.of(ToolResult)

    @property
    def approval_requests(self) -> str:
        return self.of(ApprovalRequest)

    @property
    def approval_decisions(self) -> str:
        return self.of(ApprovalDecision)

    @property
    def dead_letters(self) -> str:
        return self.of(DeadLetter)

    @property
    def model_requests(self) -> str:
        return self.of(ModelRequest)

    @property
    def model_results(self) -> str:
        return self.of(ModelResult)

    @property
    def model_deltas(self) -> str:
        """Text of model calls in flight, for clients (short retention; not an input)."""
        return self.of(ModelDelta)

    @property
    def threads(self) -> str:
        """The thread index (compacted): where each thread's log starts, and its status."""
        return self.of(Thread)

    @property
    def snapshots(self) -> str:
        """Compacted: each thread's latest snapshot and each partition's checkpoint."""
        return self.of(ThreadSnapshot)

    @property
    def runtime_inputs(self) -> tuple[str, ...]:
        """What the runtime consumes (one consumer group); co-partitioned with the run log."""
        return tuple(
            self._name(stem)
            for stem, models in TOPICS.items()
            if any(model.ROLE == "input" for model in models)
        )

    def all(self) -> tuple[str, ...]:
        return tuple(self._name(stem) for stem in TOPICS)

    def result_topic(self, schema: str) -> str:
        """Where a worker publishes a result of ``schema`` (a ``ModelResult`` or a
        ``ToolResult``): a runtime input topic."""
        return self.model_results if schema == ModelResult.NAME else self.tool_results

    def effect_topic(self, schema: str) -> str | None:
        """Where an engine effect of ``schema`` goes; None for one this version cannot route."""
        model = SCHEMAS.get(schema)
        if model is None or model.ROLE != "effect" or model.TOPIC is None:
            return None
        return self._name(model.TOPIC)


def _stem(model: type[Envelope]) -> str:
    if model.TOPIC is None:
        raise BusError(f"{model.NAME} never travels on a topic: the runtime answers it")
    return model.TOPIC


def group_name(prefix: str, group: str) -> str:
    """A service's consumer group under a topic prefix: ``<prefix>.<group>``."""
    return f"{prefix}.{group}"


def thread_key(tenant: str, thread_id: str) -> bytes:
    """The key of every message about one thread: ``tenant/thread_id``."""
    return f"{tenant}/{thread_id}".encode()


def record_key(fields: Mapping[str, Any]) -> bytes | None:
    """The key of a message's record, by its schema's key rule (``KEY`` of its model): its
    own ``id`` for the effects keyed so, else ``tenant/thread_id``; None when the envelope
    does not name what its key needs."""
    message_id, tenant, thread_id = fields.get("id"), fields.get("tenant"), fields.get("thread_id")
    if fields.get("schema") in KEYED_BY_ID and isinstance(message_id, str):
        return message_id.encode()
    if isinstance(tenant, str) and isinstance(thread_id, str):
        return thread_key(tenant, thread_id)
    return None


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
    (FLOWAI_PARTITIONS), ``--replication`` (FLOWAI_REPLICATION), ``--min-insync-replicas``
    (FLOWAI_MIN_INSYNC_REPLICAS), ``--allow-unreplicated`` (FLOWAI_ALLOW_UNREPLICATED),
    ``--no-create-topics``, ``--log-level`` (FLOWAI_LOG_LEVEL), and ``--redis``
    (FLOWAI_REDIS_URL) when ``redis`` says what the service keeps there."""
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
        # A string: argparse converts it, so a bad value is a usage error, not a traceback.
        default=env("FLOWAI_PARTITIONS", str(DEFAULT_PARTITIONS)),
        help=f"partitions per topic when {creates} creates the topics (env FLOWAI_PARTITIONS)",
    )
    add_replication_arguments(parser, creates=creates)
    parser.add_argument(
        "--no-create-topics", action="store_true", help="do not create missing topics (fail)"
    )
    parser.add_argument("--log-level", default=env("FLOWAI_LOG_LEVEL", "INFO"))


def add_replication_arguments(parser: argparse.ArgumentParser, *, creates: str) -> None:
    """``--replication``, ``--min-insync-replicas`` and ``--allow-unreplicated``, with their
    environment defaults (shared by the services and ``flowai topics create``)."""
    env = os.environ.get
    replication = env("FLOWAI_REPLICATION")
    min_insync = env("FLOWAI_MIN_INSYNC_REPLICAS")
    parser.add_argument(
        "--replication",
        type=int,
        default=replication or None,
        help=f"replication factor when {creates} creates the topics (env FLOWAI_REPLICATION; "
        f"default: {PREFERRED_REPLICATION} on a cluster of {PREFERRED_REPLICATION} or more "
        "brokers, else one per broker)",
    )
    parser.add_argument(
        "--min-insync-replicas",
        type=int,
        default=min_insync or None,
        help="min.insync.replicas of the topics created (env FLOWAI_MIN_INSYNC_REPLICAS; "
        f"default: {PREFERRED_MIN_INSYNC_REPLICAS} with the default replication of "
        f"{PREFERRED_REPLICATION}, else the cluster's setting)",
    )
    add_flag_argument(
        parser,
        "--allow-unreplicated",
        env="FLOWAI_ALLOW_UNREPLICATED",
        help="accept a run log with one replica, as on a one-broker development cluster; "
        "never in production: one disk would hold the only copy of every thread",
    )


def add_flag_argument(parser: argparse.ArgumentParser, option: str, *, env: str, help: str) -> None:
    """An on/off option whose default is the environment variable ``env`` (:func:`env_flag`);
    a value that is not a flag stops the parser with a usage error."""
    try:
        default = env_flag(env)
    except BusError as exc:
        parser.error(exc.message)
    parser.add_argument(option, action="store_true", default=default, help=f"{help} (env {env}=1)")


def add_uvloop_argument(parser: argparse.ArgumentParser) -> None:
    """``--uvloop`` (env FLOWAI_UVLOOP): the services' event loop choice (:func:`use_uvloop`)."""
    add_flag_argument(
        parser,
        "--uvloop",
        env="FLOWAI_UVLOOP",
        help="run on uvloop's event loop instead of asyncio's (pip install uvloop)",
    )


def use_uvloop() -> None:
    """Make asyncio.run use uvloop's event loop; UsageError when it is not installed."""
    try:
        import uvloop
    except ImportError:
        raise UsageError(
            "--uvloop (env FLOWAI_UVLOOP) needs the uvloop package: pip install uvloop, "
            "or leave the option off"
        ) from None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def add_membership_arguments(parser: argparse.ArgumentParser, *, role: str) -> None:
    """The consumer group membership options of a service that consumes in a group:
    ``--instance-id`` (env FLOWAI_INSTANCE_ID): static membership; the text ``{hostname}`` in
    it becomes the host's name (:func:`expand_instance_id`); and ``--session-timeout-ms``."""
    parser.add_argument(
        "--instance-id",
        default=os.environ.get("FLOWAI_INSTANCE_ID"),
        help=f"static group member id of this {role} (env FLOWAI_INSTANCE_ID): a restart with "
        "the same id takes its partitions back at once instead of after the session timeout; "
        "'{hostname}' in it becomes the host name (stable across container restarts); each "
        "running member needs its own",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=positive_int,
        default=10_000,
        help=f"Kafka group session timeout: how soon a dead {role}'s partitions move (10000)",
    )


def expand_instance_id(text: str | None) -> str | None:
    """``text`` with ``{hostname}`` replaced by this host's name; None or empty stays None."""
    if not text:
        return None
    return text.replace("{hostname}", socket.gethostname())


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off (or unset)."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BusError(f"{name}={os.environ[name]!r} is not a flag: use 1 (on) or 0 (off)")


# --- topics ----------------------------------------------------------------------------------

# The run log is the only state: it must never expire. Model deltas are only for clients
# watching a call in flight (the log keeps the complete message): an hour is plenty.
_TOPIC_CONFIGS: Final[Mapping[str, Mapping[str, str]]] = {
    _stem(RuntimeEvent): {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
    },
    _stem(ModelDelta): {"retention.ms": "3600000", "cleanup.policy": "delete"},
    # The latest record per thread is the index; older ones only cost readers time.
    _stem(Thread): {"cleanup.policy": "compact", "segment.ms": "3600000"},
    _stem(ThreadSnapshot): {"cleanup.policy": "compact"},
}


async def ensure_topics(
    bootstrap: str,
    topics: Topics | Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication: int | None = None,
    min_insync_replicas: int | None = None,
    allow_unreplicated: bool | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Idempotent. ``replication`` None means: :data:`PREFERRED_REPLICATION` with
    ``min.insync.replicas`` :data:`PREFERRED_MIN_INSYNC_REPLICAS` on a cluster of that many
    brokers or more, else one replica per broker (``min_insync_replicas`` None then leaves
    the cluster's setting). Raises :class:`~flowai_harness.errors.UnreplicatedRunLogError`
    when the run log would be created with, or exists with, one replica and
    ``allow_unreplicated`` is false (None: the FLOWAI_ALLOW_UNREPLICATED environment
    variable decides) (nothing is created then), and
    :class:`~flowai_harness.errors.BusError` when the broker cannot be reached or an existing
    topic's partition count differs from the others: the runtime needs its input topics and
    the run log co-partitioned.
    """
    names = list(topics.all() if isinstance(topics, Topics) else topics)
    if allow_unreplicated is None:
        allow_unreplicated = env_flag("FLOWAI_ALLOW_UNREPLICATED")
    if partitions < 1 or (replication is not None and replication < 1):
        raise BusError(f"partitions and replication must be >= 1, got {partitions}, {replication}")
    if min_insync_replicas is not None and min_insync_replicas < 1:
        raise BusError(f"min.insync.replicas must be >= 1, got {min_insync_replicas}")
    admin = await _admin(bootstrap)
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, min_insync = _replication_for(brokers, replication, min_insync_replicas)
        existing = {
            topic["topic"]
            for topic in await admin.describe_topics(names)
            if topic["error_code"] == 0
        }
        for name in names:
            # Refused before anything is created; when allowed, the check after creation
            # says so once.
            if _is_run_log(name) and name not in existing and factor < 2 and not allow_unreplicated:
                _refuse_unreplicated(
                    name,
                    f"would be created with replication factor {factor} ("
                    + (
                        f"--replication {factor}"
                        if replication is not None
                        else f"the cluster has {brokers} broker{'s' if brokers != 1 else ''}"
                    )
                    + ")",
                    allow_unreplicated,
                )
        new = [
            NewTopic(name, partitions, factor, topic_configs=_topic_configs(name, min_insync))
            for name in names
            if name not in existing
        ]
        created: list[str] = []
        if new:
            response = await admin.create_topics(new)
            for error in response.topic_errors:
                name, code = error[0], error[1]
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_ALREADY_EXISTS:
                    message = error[2] if len(error) > 2 else ""
                    raise BusError(f"cannot create topic {name!r}: error {code} {message}")
        described = await _wait_for_leaders(admin, names)
    finally:
        await admin.close()
    counts = {name: len(partitions_) for name, partitions_ in described.items()}
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
    for name, described_partitions in described.items():
        if _is_run_log(name):
            _check_run_log_replicas(name, described_partitions, allow_unreplicated)
    return created


async def check_run_log(
    bootstrap: str, topics: Topics, *, allow_unreplicated: bool | None = None, wait: float = 10.0
) -> int:
    """The run log's replication factor (its least replicated partition's); raises
    :class:`~flowai_harness.errors.UnreplicatedRunLogError` when it is 1 and
    ``allow_unreplicated`` is false (None: FLOWAI_ALLOW_UNREPLICATED decides),
    :class:`~flowai_harness.errors.BusError` when the topic does not exist (after ``wait``
    seconds)."""
    if allow_unreplicated is None:
        allow_unreplicated = env_flag("FLOWAI_ALLOW_UNREPLICATED")
    name = topics.runtime_events
    admin = await _admin(bootstrap)
    try:
        described = await _wait_for_leaders(admin, [name], wait)
    finally:
        await admin.close()
    if name not in described:
        raise BusError(
            f"the run log {name} does not exist; start the runtime service without "
            "--no-create-topics (it creates its topics) or run `flowai topics create`"
        )
    return _check_run_log_replicas(name, described[name], allow_unreplicated)


def _replication_for(
    brokers: int, replication: int | None, min_insync: int | None
) -> tuple[int, int | None]:
    """(replication factor, min.insync.replicas or None for the cluster's setting)."""
    if replication is None:
        if brokers >= PREFERRED_REPLICATION:
            replication = PREFERRED_REPLICATION
            if min_insync is None:
                min_insync = PREFERRED_MIN_INSYNC_REPLICAS
        else:
            replication = max(brokers, 1)
    if min_insync is not None and min_insync > replication:
        raise BusError(
            f"min.insync.replicas {min_insync} is more than the replication factor "
            f"{replication}: no write could ever be acknowledged; lower "
            "--min-insync-replicas or raise --replication"
        )
    return replication, min_insync


def _topic_configs(name: str, min_insync: int | None) -> dict[str, str]:
    configs = dict(_TOPIC_CONFIGS.get(name.rsplit(".", 1)[-1], {}))
    if min_insync is not None:
        configs["min.insync.replicas"] = str(min_insync)
    return configs


def _is_run_log(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == _stem(RuntimeEvent)


def _check_run_log_replicas(
    name: str, partitions: Sequence[Mapping[str, Any]], allow_unreplicated: bool
) -> int:
    factor = min((len(p["replicas"]) for p in partitions), default=0)
    if factor < 2:
        _refuse_unreplicated(name, f"has replication factor {factor}", allow_unreplicated)
    return factor


def _refuse_unreplicated(name: str, state: str, allow_unreplicated: bool) -> None:
    if allow_unreplicated:
        log.warning(
            "the run log %s %s, accepted because unreplicated topics are allowed "
            "(--allow-unreplicated / FLOWAI_ALLOW_UNREPLICATED): fine for a one-broker "
            "development cluster, never for production",
            name,
            state,
        )
        return
    raise UnreplicatedRunLogError(
        f"the run log {name} {state}: it is every thread's only state, and one broker's disk "
        f"would hold its only copy. On a cluster of {PREFERRED_REPLICATION} or more brokers "
        f"use replication {PREFERRED_REPLICATION} with min.insync.replicas "
        f"{PREFERRED_MIN_INSYNC_REPLICAS} (the default there; an existing topic must be "
        "recreated under a new --prefix, or its partitions reassigned with "
        "kafka-reassign-partitions.sh). On a one-broker development cluster pass "
        "--allow-unreplicated (or set FLOWAI_ALLOW_UNREPLICATED=1)."
    )


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="flowai-admin")
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise BusError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    return admin


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: Sequence[str], wait: float = 10.0
) -> dict[str, list[dict[str, Any]]]:
    """The partitions of each of ``names`` (as described), once every partition has a
    leader: a topic just created is not usable before (clients get "unknown topic" or "not
    leader" errors). Topics still without a leader after ``wait`` seconds are left out."""
    deadline = time.monotonic() + wait
    while True:
        described = await admin.describe_topics(list(names))
        ready = {
            topic["topic"]: topic["partitions"]
            for topic in described
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(p["leader"] >= 0 and p["error_code"] == 0 for p in topic["partitions"])
        }
        if len(ready) == len(set(names)) or time.monotonic() >= deadline:
            return ready
        await asyncio.sleep(0.05)


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
        "fetch_max_wait_ms": FETCH_WAIT_MS,
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
    admin = await _admin(bootstrap)
    try:
        described = await _wait_for_leaders(admin, names, wait)
    finally:
        await admin.close()
    missing = sorted(set(names) - set(described))
    if missing:
        raise BusError(
            f"topic(s) {', '.join(missing)} do not exist; start the runtime service (it "
            "creates its topics) or run `flowai topics create --prefix <prefix>`"
        )
    return {name: len(partitions) for name, partitions in described.items()}


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
        "schema": DeadLetter.NAME,
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


def thread_record(
    tenant: str,
    thread_id: str,
    *,
    status: str,
    seq: int,
    partition: int,
    log_offset: int,
    created: int | None,
    ts: int | None = None,
) -> bytes:
    """A ``flowai.v1.Thread`` envelope: the thread index's record of one thread (see
    :class:`~flowai_harness.messages.Thread`)."""
    return orjson.dumps(
        {
            "schema": Thread.NAME,
            "id": f"{tenant}/{thread_id}/thread/{seq}",
            "tenant": tenant,
            "thread_id": thread_id,
            "run_id": None,
            "causation_id": f"{tenant}/{thread_id}/{seq}",
            "ts": ts if ts is not None else now_ms(),
            "payload": {
                "status": status,
                "seq": seq,
                "partition": partition,
                "log_offset": log_offset,
                "created": created,
            },
        }
    )


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
