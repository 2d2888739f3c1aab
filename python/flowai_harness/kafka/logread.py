"""Reading run-log partitions fast: committed record values, without per-record objects.

Owns :class:`LogReader`, used when a runtime instance rebuilds the threads of the partitions
it was assigned, and by the client to read the thread index (one key, or all of it). A
consumer builds a ``ConsumerRecord`` per record (two thirds of the time a replay spends in
Python); rebuilding needs only each record's value (and the set of keys, to
know which threads a partition holds), so this reader sends Fetch requests itself through
aiokafka's client and walks the record batches with aiokafka's C record parser.

It reads like a ``read_committed`` consumer: control batches are skipped, and so are the
batches of aborted transactions (the ``aborted_transactions`` list of each Fetch response
names their producers and first offsets; an ABORT marker ends one), as Kafka's consumer does.
Records at or past the requested end offset (the last stable offset taken before reading)
are left out.

Uses aiokafka's protocol layer (``AIOKafkaClient``, ``FetchRequest``, ``MemoryRecords``),
which is less stable across aiokafka versions than its consumer API: the ``kafka`` extra pins
aiokafka. Must not import the runtime, the native engine or any service.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords

from ..errors import BusError

__all__ = ["LogReader", "PartitionLog"]

_READ_COMMITTED: Final = 1
_NO_ERROR: Final = 0


@dataclass
class PartitionLog:
    """The committed values of one partition between two offsets, in order. A read for one
    key keeps only that key's values and counts every committed record it walked
    (``scanned``)."""

    values: list[bytes] = field(default_factory=list)
    keys: set[bytes | None] = field(default_factory=set)
    scanned: int = 0


class LogReader:
    """Reads committed record values of whole partitions through one Kafka client."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "flowai-log-reader",
        max_bytes: int = 64 * 1024 * 1024,
        max_partition_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id=client_id)
        self._max_bytes = max_bytes
        self._max_partition_bytes = max_partition_bytes

    async def start(self) -> None:
        try:
            await self._client.bootstrap()
        except KafkaError as exc:
            raise BusError(f"cannot reach Kafka: {exc}") from exc

    async def close(self) -> None:
        await self._client.close()

    async def read(
        self, ranges: dict[TopicPartition, tuple[int, int]], *, key: bytes | None = None
    ) -> dict[TopicPartition, PartitionLog]:
        """The committed values of each partition from ``start`` (inclusive) to ``end``
        (exclusive): ``{tp: (start, end)}``; with ``key``, only the records of that key."""
        logs = {tp: PartitionLog() for tp in ranges}
        positions = {tp: start for tp, (start, end) in ranges.items() if start < end}
        for topic in {tp.topic for tp in ranges}:
            await self._client._wait_on_metadata(topic)
        for tp in ranges:
            # Connect to the leaders up front (an empty range only does this).
            leader = self._client.cluster.leader_for_partition(tp)
            if leader is not None and leader >= 0:
                await self._client.ready(leader)
        stalled = 0
        while positions:
            before = dict(positions)
            by_node: dict[int, list[TopicPartition]] = defaultdict(list)
            for tp in positions:
                leader = self._client.cluster.leader_for_partition(tp)
                if leader is None or leader < 0:
                    await self._client.force_metadata_update()
                    break
                by_node[leader].append(tp)
            else:
                responses = await asyncio.gather(
                    *(self._fetch(node, tps, positions) for node, tps in by_node.items())
                )
                for response in responses:
                    self._absorb(response, ranges, positions, logs, key)
            # Below the last stable offset the broker always has data; a fetch that moves no
            # partition means the range is wrong (say, the log was truncated).
            stalled = stalled + 1 if positions == before else 0
            if stalled > 20:
                raise BusError(f"reading {sorted(positions)} makes no progress at {positions}")
        return logs

    async def read_each(
        self, ranges: dict[TopicPartition, tuple[int, int]], *, ahead: int = 2
    ) -> AsyncIterator[tuple[TopicPartition, PartitionLog]]:
        """Like :meth:`read`, one partition at a time in the order given, with the fetches of
        the next ``ahead`` partitions already on their way while the caller works on the
        current one (a replay folds partition n while n + 1 and n + 2 travel)."""
        order = iter(list(ranges))
        in_flight: deque[tuple[TopicPartition, asyncio.Future[dict[TopicPartition, PartitionLog]]]]
        in_flight = deque()

        def fetch_next() -> None:
            tp = next(order, None)
            if tp is not None:
                in_flight.append((tp, asyncio.ensure_future(self.read({tp: ranges[tp]}))))

        for _ in range(1 + max(0, ahead)):
            fetch_next()
        try:
            while in_flight:
                tp, future = in_flight.popleft()
                logs = await future
                fetch_next()
                # Let the fetches put their requests on the wire before the caller blocks.
                await asyncio.sleep(0)
                yield tp, logs[tp]
        finally:
            for _, future in in_flight:
                future.cancel()

    async def _fetch(
        self, node: int, tps: Iterable[TopicPartition], positions: dict[TopicPartition, int]
    ) -> Any:
        topics: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp in tps:
            topics[tp.topic].append((tp.partition, positions[tp], self._max_partition_bytes))
        request = FetchRequest(
            0,  # the end offsets are below the last stable offset: never wait
            1,
            self._max_bytes,
            _READ_COMMITTED,
            list(topics.items()),
        )
        return await self._client.send(node, request)

    def _absorb(
        self,
        response: Any,
        ranges: dict[TopicPartition, tuple[int, int]],
        positions: dict[TopicPartition, int],
        logs: dict[TopicPartition, PartitionLog],
        key: bytes | None,
    ) -> None:
        version = response.API_VERSION
        for topic, partitions in response.topics:
            for partition, error_code, _highwater, *data in partitions:
                tp = TopicPartition(topic, partition)
                if tp not in positions:
                    continue
                if error_code != _NO_ERROR:
                    raise BusError(f"cannot read {topic}[{partition}]: {for_code(error_code)()!r}")
                # v4..v10: [lso, (log_start_offset,) aborted, records]; v11+: [lso,
                # log_start_offset, aborted, preferred_read_replica, records]
                aborted = data[2] if version >= 11 else data[-2]
                end = ranges[tp][1]
                position = _read_batches(
                    MemoryRecords(data[-1]), aborted or [], positions[tp], end, logs[tp], key
                )
                if position >= end:
                    del positions[tp]
                else:
                    positions[tp] = position


def _read_batches(
    records: MemoryRecords,
    aborted_transactions: list[tuple[int, int]],
    position: int,
    end: int,
    log: PartitionLog,
    key: bytes | None = None,
) -> int:
    """Append the committed values of ``records`` below ``end`` (of ``key`` only, when
    given); returns the next offset."""
    values = log.values
    keys = log.keys
    pending_aborts = sorted(aborted_transactions, key=lambda txn: txn[1])
    aborting: set[int] = set()
    while records.has_next():
        batch = records.next_batch()
        if batch.base_offset >= end:
            return end
        producer_id = batch.producer_id
        if producer_id is not None and producer_id >= 0:
            while pending_aborts and pending_aborts[0][1] <= batch.base_offset:
                aborting.add(pending_aborts.pop(0)[0])
            if batch.is_control_batch:
                if ControlRecord.parse(next(batch).key) == ABORT_MARKER:
                    aborting.discard(producer_id)
                position = batch.next_offset
                continue
            if batch.is_transactional and producer_id in aborting:
                position = batch.next_offset
                continue
        elif batch.is_control_batch:
            position = batch.next_offset
            continue
        if key is None:
            for record in batch:
                offset = record.offset
                if offset < position:
                    continue
                if offset >= end:
                    return end
                values.append(record.value)
                keys.add(record.key)
        else:
            for record in batch:
                offset = record.offset
                if offset < position:
                    continue
                if offset >= end:
                    return end
                log.scanned += 1
                if record.key == key:
                    values.append(record.value)
                    keys.add(key)
            position = batch.next_offset
            continue
        position = batch.next_offset
    return position
