"""Guards on the dependency internals the Kafka side leans on: an upgrade that moves one fails
here, naming it, instead of slowing or corrupting a replay somewhere far away.

aiokafka (pinned ``==0.14.0`` by the ``kafka`` extra) is used past its consumer/producer API
in two places:

- :func:`flowai_harness.kafka.bus._tune_transaction_retries` lowers
  ``aiokafka.producer.sender.BACKOFF_OVERRIDE``, the fixed wait before the first
  AddPartitionsToTxn retry (20 ms), to 2 ms. If the name goes, the override is silently a
  no-op and every transaction's step gets 20 ms slower.
- :class:`flowai_harness.kafka.logread.LogReader` sends its own Fetch requests:
  ``AIOKafkaClient._wait_on_metadata`` / ``cluster.leader_for_partition`` / ``ready`` /
  ``send`` / ``force_metadata_update``, ``aiokafka.protocol.fetch.FetchRequest`` (positional
  max_wait, min_bytes, max_bytes, isolation_level, topics) and the response layout by
  ``API_VERSION``, and walks ``MemoryRecords`` batches (``producer_id``,
  ``is_control_batch``, ``is_transactional``, ``base_offset``, ``next_offset``) and
  ``ControlRecord.parse`` / ``ABORT_MARKER``.

The record-layer guard below builds real record batches with aiokafka's own builder and
reads them with LogReader's batch walker; tests/connected/test_logread_guard.py reads a real
broker's committed and aborted transactions through the whole reader.

redis-py: the services use ``redis.asyncio.Redis`` (``register_script``, ``pipeline``,
``aclose``, ``info``, ``config_get``) and ``redis.exceptions.ResponseError``; the connected
tests run them against the real server.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

aiokafka = pytest.importorskip("aiokafka", reason="the kafka extra is not installed")

from aiokafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402
from aiokafka.record.memory_records import MemoryRecords  # noqa: E402

from flowai_harness.kafka import bus  # noqa: E402
from flowai_harness.kafka.logread import PartitionLog, _read_batches  # noqa: E402


def internal(owner: Any, name: str, what: str) -> Any:
    """``owner.name``, or a failure that names the internal and what depends on it."""
    if not hasattr(owner, name):
        owner_name = getattr(owner, "__name__", type(owner).__name__)
        pytest.fail(
            f"aiokafka {aiokafka.__version__} has no {owner_name}.{name}, which {what} "
            "relies on: adapt that code to this aiokafka before lifting the pin"
        )
    return getattr(owner, name)


def test_the_transaction_retry_backoff_override_still_exists_and_is_used() -> None:
    from aiokafka.producer import sender

    value = internal(
        sender, "BACKOFF_OVERRIDE", "flowai_harness.kafka.bus._tune_transaction_retries"
    )
    assert isinstance(value, float), (
        f"aiokafka.producer.sender.BACKOFF_OVERRIDE is a {type(value).__name__} now, not the "
        "seconds flowai_harness.kafka.bus._tune_transaction_retries lowers"
    )
    source = inspect.getsource(sender)
    assert source.count("BACKOFF_OVERRIDE") >= 2, (
        "aiokafka.producer.sender no longer reads BACKOFF_OVERRIDE when it retries "
        "AddPartitionsToTxn: flowai_harness.kafka.bus._tune_transaction_retries has no effect"
    )
    bus._tune_transaction_retries()
    assert sender.BACKOFF_OVERRIDE <= 0.002, (
        "flowai_harness.kafka.bus._tune_transaction_retries did not lower "
        "aiokafka.producer.sender.BACKOFF_OVERRIDE"
    )


def test_the_client_methods_the_log_reader_calls_still_exist() -> None:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.cluster import ClusterMetadata

    what = "flowai_harness.kafka.logread.LogReader.read"
    for name in ("_wait_on_metadata", "ready", "send", "force_metadata_update", "bootstrap"):
        method = internal(AIOKafkaClient, name, what)
        assert inspect.iscoroutinefunction(method) or name == "force_metadata_update", (
            f"aiokafka.client.AIOKafkaClient.{name} is no longer a coroutine function, "
            f"which {what} awaits"
        )
    assert "topic" in inspect.signature(AIOKafkaClient._wait_on_metadata).parameters, (
        "aiokafka.client.AIOKafkaClient._wait_on_metadata(topic) changed its signature"
    )
    internal(ClusterMetadata, "leader_for_partition", what)


def test_the_fetch_request_keeps_the_fields_the_log_reader_sends() -> None:
    from aiokafka.protocol.fetch import FetchRequest

    parameters = list(inspect.signature(FetchRequest.__init__).parameters)[1:6]
    assert parameters == ["max_wait_time", "min_bytes", "max_bytes", "isolation_level", "topics"], (
        "aiokafka.protocol.fetch.FetchRequest(...) takes other positional fields now "
        f"({parameters}); flowai_harness.kafka.logread.LogReader._fetch passes them by position"
    )
    internal(FetchRequest, "API_KEY", "flowai_harness.kafka.logread.LogReader._fetch")
    # The response layouts LogReader._absorb reads: v4..v10 and v11+.
    from aiokafka.protocol import fetch

    for version in (4, 10, 11):
        response = internal(fetch, f"FetchResponse_v{version}", "LogReader._absorb")
        assert version == response.API_VERSION


def _batch(
    base_offset: int, values: list[bytes], *, producer_id: int = -1, transactional: bool = False
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=0, key=b"k", value=value, headers=[])
    raw = bytearray(builder.build())
    # The base offset is the batch's first 8 bytes (big-endian); a broker sets it.
    raw[0:8] = base_offset.to_bytes(8, "big")
    return bytes(raw)


def test_the_record_layer_still_reads_as_the_log_reader_expects() -> None:
    """Committed batches are read, an aborted transaction's batch is skipped, the end offset
    stops the read: with aiokafka's own batch builder and ``MemoryRecords`` parser."""
    data = (
        _batch(0, [b"a", b"b"])
        + _batch(2, [b"aborted"], producer_id=7, transactional=True)
        + _batch(3, [b"c", b"d", b"past-the-end"], producer_id=8, transactional=True)
    )
    records = MemoryRecords(data)
    for name in ("has_next", "next_batch"):
        internal(records, name, "flowai_harness.kafka.logread._read_batches")
    log = PartitionLog()
    # Producer 7's transaction (first offset 2) was aborted, as a Fetch response says.
    position = _read_batches(MemoryRecords(data), [(7, 2)], 0, 5, log)
    assert log.values == [b"a", b"b", b"c", b"d"], (
        "aiokafka's record batches no longer read as flowai_harness.kafka.logread._read_batches "
        "expects (producer_id, is_transactional, base_offset, next_offset, record offsets)"
    )
    assert position == 5
    assert log.keys == {b"k"}


def test_the_control_record_parser_still_names_the_abort_marker() -> None:
    from aiokafka.record import control_record

    marker = internal(control_record, "ABORT_MARKER", "flowai_harness.kafka.logread._read_batches")
    parse = internal(control_record.ControlRecord, "parse", "flowai_harness.kafka.logread")
    # A control record's key: version 0 (int16), type 0 = ABORT (int16).
    assert parse(b"\x00\x00\x00\x00") == marker, (
        "aiokafka.record.control_record.ControlRecord.parse no longer reads an ABORT key "
        "as ABORT_MARKER"
    )


def test_the_producer_batch_api_the_runtime_outbox_uses_still_exists() -> None:
    from aiokafka import AIOKafkaProducer

    what = "services/runtime/service.py _Outbox"
    for name in ("create_batch", "send_batch", "send_offsets_to_transaction"):
        internal(AIOKafkaProducer, name, what)
    assert (
        "headers"
        in inspect.signature(internal(DefaultRecordBatchBuilder, "append", what)).parameters
    )


def test_the_redis_client_api_the_services_use_still_exists() -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")
    from redis import exceptions

    client = redis_asyncio.Redis
    for name in ("register_script", "pipeline", "aclose", "info", "config_get", "scan_iter"):
        assert hasattr(client, name), (
            f"redis.asyncio.Redis.{name} is gone in this redis-py; services/tools/claims.py, "
            "services/approvals and flowai_harness.references use it"
        )
    assert issubclass(exceptions.ResponseError, exceptions.RedisError)
