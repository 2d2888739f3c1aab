"""Following one thread in a big run-log partition: how much does it read? Prints, asserts nothing.

    set -a; . var/services/env; set +a
    python bench/follow.py [--events 1000000] [--threads 10000] [--concurrent 100]

Builds one run-log partition of ``--events`` events over ``--threads`` threads (a fresh topic
prefix with one partition; its topics are deleted at the end), ``--concurrent`` threads in
flight at a time, their events interleaved round-robin, so each thread's log spans about
``concurrent x events/thread`` records of the partition wherever it sits. Beside it, the
thread index as the runtime service writes it (a ``Thread`` record when a thread starts, with
the offset of its first event, and one when it comes to rest). The events are written by this
benchmark (run-start, text, finish and the wrapping result, the shapes the runtime logs),
not by a runtime: the figure is about the reading side.

Then ``client.follow(thread)`` for a thread at the start, the middle and the end of the
partition, printing for each: run-log records read (``ThreadStream.records_read``: what the
consumer handed over, including the thread's neighbours and the fetch that overshoots its
last event), thread-index records walked to find it, events yielded and the time taken; and,
for scale, what reading the partition from offset 0 (as ``flowai replay`` does) reads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import deque
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from flowai_harness import connect
from flowai_harness.kafka import bus
from flowai_harness.messages import RuntimeEvent
from flowai_harness.progress import progress

TENANT = "bench"


def event(thread_id: str, seq: int, payload: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "schema": RuntimeEvent.NAME,
            "id": f"{TENANT}/{thread_id}/{seq}",
            "tenant": TENANT,
            "thread_id": thread_id,
            "run_id": "run-1",
            "causation_id": f"q-{thread_id}",
            "ts": 1_800_000_000_000 + seq,
            "seq": seq,
            "payload": payload,
        }
    )


def thread_events(thread_id: str, count: int) -> list[bytes]:
    """A one-run thread of ``count`` events: run-start, text..., finish, the wrapping result."""
    body = [{"type": "run-start", "v": 2, "runId": "run-1", "agent": "worker", "prompt": "go"}]
    body += [{"type": "text", "text": f"step {n}", "agent": "worker"} for n in range(count - 3)]
    body += [
        {"type": "finish", "finishReason": "stop", "usage": {"totalTokens": 0}},
        {"type": "tool-agent", "state": "result", "agent": "worker", "result": "done"},
    ]
    return [event(thread_id, seq, payload) for seq, payload in enumerate(body, start=1)]


class Writer:
    """Batches records for one topic partition (the runtime's outbox does the same)."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.batch = producer.create_batch()
        self.sent: list[asyncio.Future[Any]] = []
        self.count = 0

    async def add(self, key: bytes, value: bytes) -> int:
        """Queue one record; returns its offset (the partition starts empty)."""
        if self.batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
            await self.flush()
            self.batch.append(key=key, value=value, timestamp=None, headers=[])
        self.count += 1
        return self.count - 1

    async def flush(self) -> None:
        if self.batch.record_count():
            self.sent.append(await self.producer.send_batch(self.batch, self.topic, partition=0))
            self.batch = self.producer.create_batch()

    async def done(self) -> None:
        await self.flush()
        await asyncio.gather(*self.sent)


async def build(
    bootstrap: str, topics: bus.Topics, events: int, threads: int, concurrent: int
) -> tuple[int, int]:
    """Write the partition and its index; returns (run-log records, index records)."""
    per_thread = max(4, events // threads)
    first: dict[str, int] = {}  # thread -> offset of its first event
    producer = bus.producer(bootstrap, max_batch_size=1024 * 1024, linger_ms=5)
    await producer.start()
    log = Writer(producer, topics.runtime_events)
    index = Writer(producer, topics.threads)
    try:
        waiting = deque(f"thread-{n:06d}" for n in range(threads))
        active: list[tuple[str, list[bytes], int]] = []  # (id, events, next position)
        with progress("writing the partition", per_thread * threads, unit="events") as shown:
            while waiting or active:
                while waiting and len(active) < concurrent:
                    starting = waiting.popleft()
                    active.append((starting, thread_events(starting, per_thread), 0))
                still: list[tuple[str, list[bytes], int]] = []
                for thread_id, body, position in active:
                    key = bus.thread_key(TENANT, thread_id)
                    offset = await log.add(key, body[position])
                    if position == 0:
                        status, seq = "running", 1
                    elif position == len(body) - 1:
                        status, seq = "idle", len(body)
                    else:
                        status = ""
                    if status:
                        record = bus.thread_record(
                            TENANT,
                            thread_id,
                            status=status,
                            seq=seq,
                            partition=0,
                            log_offset=offset if position == 0 else first[thread_id],
                            created=None,
                        )
                        if position == 0:
                            first[thread_id] = offset
                        await index.add(key, record)
                    if position + 1 < len(body):
                        still.append((thread_id, body, position + 1))
                shown.advance(len(active))
                active = still
        await log.done()
        await index.done()
    finally:
        await producer.stop()
    return log.count, index.count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    bootstrap = os.environ.get("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    topics = bus.Topics(f"bench{uuid.uuid4().hex[:8]}")
    await bus.ensure_topics(bootstrap, topics, partitions=1, allow_unreplicated=True)
    try:
        started = time.perf_counter()
        logged, indexed = await build(bootstrap, topics, args.events, args.threads, args.concurrent)
        print(
            f"partition: {logged:,} run-log events over {args.threads:,} threads "
            f"({args.concurrent} in flight), {indexed:,} thread-index records; "
            f"written in {time.perf_counter() - started:.1f} s"
        )
        async with connect(bootstrap, tenant=TENANT, topic_prefix=topics.prefix) as client:
            for where, n in (("first", 0), ("middle", args.threads // 2), ("last", -1)):
                thread_id = f"thread-{(n % args.threads):06d}"
                began = time.perf_counter()
                stream = client.follow(thread_id)
                shown = [e async for e in stream]
                took = time.perf_counter() - began
                print(
                    f"follow {where:<6} {thread_id}: {len(shown)} events from offset "
                    f"{stream.start_offset:,}; read {stream.records_read:,} run-log records "
                    f"and {stream.index_records_read:,} index records in {took * 1000:.0f} ms"
                )
            began = time.perf_counter()
            whole = await whole_partition(bootstrap, topics)
            print(
                f"for scale, the partition from offset 0 (flowai replay's read): {whole:,} "
                f"records in {(time.perf_counter() - began) * 1000:.0f} ms"
            )
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(topics.all()))
        finally:
            await admin.close()


async def whole_partition(bootstrap: str, topics: bus.Topics) -> int:
    from aiokafka import TopicPartition

    tp = TopicPartition(topics.runtime_events, 0)
    consumer = bus.consumer(bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        read = 0
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            read += len(batch.get(tp, []))
        return read
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
