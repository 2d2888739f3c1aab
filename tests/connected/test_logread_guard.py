"""Guard on the aiokafka internals :class:`flowai_harness.kafka.logread.LogReader` uses, on a real
broker: its own Fetch requests (``AIOKafkaClient._wait_on_metadata``, ``send``,
``FetchRequest``, the response layout by ``API_VERSION``) and the record layer
(``MemoryRecords``, ``ControlRecord``) must still read exactly what a ``read_committed``
consumer reads: the committed transactions' records, not an aborted one's, nor the markers.
A failure names the internals to look at after an aiokafka upgrade.
"""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from flowai_harness.kafka import bus
from flowai_harness.kafka.logread import LogReader

pytestmark = pytest.mark.connected

INTERNALS = (
    "aiokafka internals behind flowai_harness.kafka.logread.LogReader (AIOKafkaClient."
    "_wait_on_metadata/send, aiokafka.protocol.fetch.FetchRequest and its response layout, "
    "aiokafka.record MemoryRecords/ControlRecord)"
)


async def test_the_log_reader_reads_what_a_read_committed_consumer_reads(
    kafka_bootstrap: str, topics: bus.Topics
) -> None:
    topic = topics.runtime_events
    tp = TopicPartition(topic, 0)
    producer = bus.producer(kafka_bootstrap, transactional_id=f"{topics.prefix}.guard")
    await producer.start()
    try:
        for values, commit in (
            ([b"one", b"two"], True),
            ([b"aborted-1", b"aborted-2"], False),
            ([b"three"], True),
        ):
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(topic, value, key=b"acme/t", partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()

    consumer = bus.consumer(kafka_bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]  # read_committed: the last stable offset
        await consumer.seek_to_beginning(tp)
        expected: list[bytes] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                expected.extend(record.value for record in records)
    finally:
        await consumer.stop()
    assert expected == [b"one", b"two", b"three"]

    reader = LogReader(kafka_bootstrap)
    await reader.start()
    try:
        logs = await reader.read({tp: (0, end)})
        partial = await reader.read({tp: (1, end)})
    finally:
        await reader.close()
    assert logs[tp].values == expected, f"{INTERNALS} changed: read {logs[tp].values}"
    assert logs[tp].keys == {b"acme/t"}, INTERNALS
    assert partial[tp].values == expected[1:], f"{INTERNALS}: a read from offset 1 differs"
