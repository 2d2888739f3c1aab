"""Every input is deduplicated by its message id, on the real broker, across a runtime restart.

An at-least-once upstream producer (or a worker, or an approver's client) that publishes a
message again after a timeout must not start a second run or repeat a step. This test
drives real runs through every input kind: queries, model results, an approval decision,
tool results and a cancel. Then it kills the runtime, starts a new one (which rebuilds the
threads from the run log), and publishes every one of those input messages again, byte for
byte. The new runtime counts each as a duplicate ("duplicate input ... ignored" in its log).
Nothing reaches the run log, no dead letter is written, and no model or tool is called again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_helpers import PARTITIONS, RunLog, live_runtime_args, live_worker_args
from processes import Service, until
from redis.asyncio import Redis

from flowai_harness import connect
from flowai_harness.kafka import bus
from flowai_harness.testing import FakeProvider, ToolCall, Turn

pytestmark = pytest.mark.connected


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


async def read_all(bootstrap: str, topics: list[str]) -> list[tuple[str, bytes | None, bytes]]:
    """Every record of ``topics`` so far (topic, key, value), in each partition's order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[str, bytes | None, bytes]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                found += [(tp.topic, r.key, r.value) for r in records if r.value is not None]
        return found
    finally:
        await consumer.stop()


def schema_of(value: bytes) -> str:
    return str(orjson.loads(value)["schema"])


async def test_every_input_published_again_is_ignored_after_a_restart(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    fake: FakeProvider,
) -> None:
    fake.add(
        Turn(tool_calls=[ToolCall("pay", {"amount": 7}, id="toolu_pay")]),
        Turn(text="Paid 7."),
        Turn(tool_calls=[ToolCall("pay", {"amount": 9}, id="toolu_pay2")]),
    )
    env = {"FAKE_ANTHROPIC_URL": fake.anthropic_url}
    runtime_args = live_runtime_args(
        kafka_bootstrap,
        topics.prefix,
        *("--instance-id", "dedup-runtime", "--session-timeout-ms", "6000"),
    )
    first = spawn("runtime-first", *runtime_args, env=env)
    workers = spawn(
        "workers", *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "all"), env=env
    )
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        # A paid run: query, model results, an approval decision, a tool result.
        async for event in client.query("Pay 7.", "dup-paid", agent="clerk"):
            if event["type"] == "approval-required":
                await client.respond_to_approval(event["data"]["id"], "approve", approver="a")
        # A cancelled run: a cancel while it waits at its gate.
        stream = client.query("Pay 9.", "dup-cancelled", agent="clerk")
        async for event in stream:
            if event["type"] == "approval-required":
                stream.cancel()

    async def both_logged() -> bool:
        await run_log.poll()
        return run_log.finished("dup-paid") and run_log.finished("dup-cancelled")

    await until(both_logged, within=30, what="both runs in the log", services=[first, workers])
    logged = {t: len(run_log.thread(t)) for t in ("dup-paid", "dup-cancelled")}
    calls = len(fake.requests)
    inputs = await read_all(
        kafka_bootstrap,
        [topics.queries, topics.model_results, topics.approval_decisions, topics.tool_results],
    )
    # Paid: query, two model results, the decision, the tool result; cancelled: query, model
    # result, cancel.
    assert len(inputs) == 8
    kinds = sorted({schema_of(value) for _, _, value in inputs})
    assert kinds == [
        "flowai.v1.ApprovalDecision",
        "flowai.v1.CancelRun",
        "flowai.v1.ModelResult",
        "flowai.v1.Query",
        "flowai.v1.ToolResult",
    ]

    # The runtime dies; its replacement rebuilds both threads from the run log.
    first.kill()
    second = spawn("runtime-second", *runtime_args, env=env)

    async def rebuilt() -> bool:
        return "replayed" in second.log.read_text()

    await until(rebuilt, within=30, what="the new runtime to rebuild", services=[second])
    producer = bus.producer(kafka_bootstrap)
    await producer.start()
    try:
        for topic, key, value in inputs:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    def ignored() -> int:
        return second.log.read_text().count("duplicate input ")

    async def all_ignored() -> bool:
        return ignored() >= len(inputs)

    await until(
        all_ignored, within=30, what="every input counted as a duplicate", services=[second]
    )
    assert ignored() == len(inputs)
    await run_log.poll()
    assert {t: len(run_log.thread(t)) for t in logged} == logged, "nothing more was logged"
    assert run_log.letters == [], "a duplicate is no dead letter"
    assert len(fake.requests) == calls, "no model was called again"
    paid = [
        e["payload"]
        for e in run_log.thread("dup-paid")
        if e["payload"]["type"] == "tool-invocation" and e["payload"]["state"] == "result"
    ]
    assert [p["result"] for p in paid] == [{"paid": 7}]
