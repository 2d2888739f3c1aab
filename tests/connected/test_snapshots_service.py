"""Runtime-service snapshots and fork on the real Kafka (issue 12): a runtime killed with
SIGKILL between one snapshot and the next is replaced by one that restores the partitions'
snapshots, folds only the run log after their checkpoints, and finishes every run with nothing
lost and nothing logged twice; a fork published by the client branches a thread (its source
read from the run log), and a fork that cannot start is a dead letter."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from kafka_helpers import PARTITIONS, RunLog, runtime_args
from processes import Service, until

from flowai_harness import connect
from flowai_harness.errors import UnknownThreadError
from flowai_harness.kafka import bus

pytestmark = pytest.mark.connected


def slow_script(steps: int) -> str:
    return json.dumps({"script": [{"tool": "slow", "args": {"ms": 100}}] * steps})


def query(thread_id: str, prompt: str, query_id: str) -> dict[str, Any]:
    return {
        "schema": "flowai.v1.Query", "id": query_id, "tenant": "acme",
        "thread_id": thread_id, "run_id": None, "causation_id": None,
        "ts": 1_732_400_000_000, "payload": {"prompt": prompt, "agent": None},
    }  # fmt: skip


async def snapshot_records(bootstrap: str, topics: bus.Topics) -> list[dict[str, Any]]:
    """Every committed record of the snapshots topic, with its ``partition`` added."""
    consumer = bus.consumer(bootstrap, client_id="snapshot-reader")
    await consumer.start()
    try:
        tps = [TopicPartition(topics.snapshots, n) for n in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for tp, items in batch.items():
                records += [
                    {**orjson.loads(r.value), "partition": tp.partition}
                    for r in items
                    if r.offset < ends[tp]
                ]
        return records
    finally:
        await consumer.stop()


def checkpointed_partitions(records: list[dict[str, Any]]) -> set[int]:
    """The partitions (by the runtime's checkpoint records) checkpointed past their start."""
    seen: set[int] = set()
    for record in records:
        payload = record["payload"]
        if payload["kind"] == "checkpoint" and payload["run_log_offset"] > 0:
            seen.add(record["partition"])
    return seen


@pytest.mark.parametrize("lazy", [False, True], ids=["run-end-snapshots", "lazy-snapshots"])
async def test_thread_snapshots_and_the_tail_recover_a_runtime_killed_between_them(
    lazy: bool,
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
) -> None:
    tools = spawn(
        "tools", "-m", "services.tools", "--app", "flowai_test_app:spec",
        "--bootstrap", kafka_bootstrap, "--redis", redis_url, "--prefix", topics.prefix,
        "--concurrency", "32",
    )  # fmt: skip
    flags = (
        "--instance-id", "runtime-a", "--session-timeout-ms", "6000",
        "--snapshot-every", "4", "--checkpoint-every", "15", "--log-level", "info",
        *(("--lazy-snapshots",) if lazy else ()),
    )  # fmt: skip
    first = spawn("runtime-first", *runtime_args(kafka_bootstrap, topics.prefix, *flags))
    threads = [f"snap-{n}" for n in range(18)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n, thread in enumerate(threads):
            body = query(thread, slow_script(5), f"snap-q-{n}")
            await producer.send(
                topics.queries, orjson.dumps(body), key=bus.thread_key("acme", thread)
            )
        await producer.flush()
    finally:
        await producer.stop()

    async def checkpointed_mid_run() -> bool:
        await run_log.poll()
        done = sum(run_log.finished(thread) for thread in threads)
        if done >= len(threads) // 2 or len(run_log.entries) < 4 * len(threads):
            return False
        # A checkpoint past the first events: a rebuild from it skips some of the log.
        records = await snapshot_records(kafka_bootstrap, topics)
        return len(checkpointed_partitions(records)) == PARTITIONS

    await until(checkpointed_mid_run, within=40, what="a checkpoint mid-run", services=[first])
    first.kill()
    logged_at_kill = len((await RunLog.read_whole(kafka_bootstrap, topics)).entries)
    second = spawn("runtime-second", *runtime_args(kafka_bootstrap, topics.prefix, *flags))

    async def all_finished() -> bool:
        await run_log.poll()
        return all(run_log.finished(thread) for thread in threads)

    await until(all_finished, within=60, what="every run to finish", services=[second, tools])

    fresh = await RunLog.read_whole(kafka_bootstrap, topics)
    ids = [entry["id"] for entry in fresh.entries]
    assert len(ids) == len(set(ids)), "an event was logged twice"
    for thread in threads:
        entries = fresh.thread(thread)
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), thread
        kinds = Counter(e["payload"]["type"] for e in entries)
        assert kinds["run-start"] == 1
        assert kinds["finish"] == 1
        results = [
            e["payload"]["result"]
            for e in entries
            if e["payload"]["type"] == "tool-invocation" and e["payload"]["state"] == "result"
        ]
        assert results == [{"slept": 100}] * 5, thread

    # The second runtime restored snapshots and folded only what followed the checkpoints.
    text = second.log.read_text()
    rebuilt = re.search(
        r"replayed (\d+) run-log events of partitions \S+(?: \S+)* \((\d+) of them from a "
        r"checkpoint, with (\d+) threads restored",
        text,
    )
    assert rebuilt is not None, second.tail()
    folded, from_checkpoint, restored = map(int, rebuilt.groups())
    assert from_checkpoint == PARTITIONS
    assert restored >= 1
    assert folded < logged_at_kill, (folded, logged_at_kill)
    records = await snapshot_records(kafka_bootstrap, topics)
    finished = [r for r in records if r["payload"]["kind"] == "thread"]
    if not lazy:
        assert {r["thread_id"] for r in finished} >= set(threads), "every run end was snapshotted"


async def test_fork_thread_over_kafka_branches_a_finished_thread_and_refuses_a_mid_run_one(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    tool_responder: Any,
) -> None:
    runtime = spawn("runtime", *runtime_args(kafka_bootstrap, topics.prefix))
    add = json.dumps({"script": [{"tool": "add", "args": {"a": 1, "b": 2}}]})
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        first = [event async for event in client.query(add, "source")]
        assert first[-1]["type"] == "tool-agent"
        source = await client.replay("source")
        at = source[-1]["seq"]
        assert [e["seq"] for e in source] == list(range(1, at + 1))
        assert (await client.replay("source", at=2)) == source[:2]
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flowai_harness.cli", "replay", "source", "--tenant", "acme",
            "--bootstrap", kafka_bootstrap, "--prefix", topics.prefix, "--at", "3",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await cli.communicate()
        assert cli.returncode == 0
        printed = out.decode().splitlines()
        assert len(printed) == 4, printed
        assert printed[-1] == "after seq 3: awaiting-model"  # run-start, agent-start, step-start

        new = await client.fork("source", at=at, new_thread_id="branch")

        async def forked() -> bool:
            try:
                return (await client.replay(new))[-1]["type"] == "fork"
            except UnknownThreadError:
                return False

        await until(forked, within=30, what="the fork to be logged", services=[runtime])
        branch = await client.replay(new)
        assert branch[:at] == source
        assert branch[-1] == {
            "type": "fork",
            "data": {"sourceThreadId": "source", "sourceSeq": at},
            "seq": at + 1,
        }
        again = [event async for event in client.query(add, new)]
        assert again[-1]["type"] == "tool-agent"
        assert (await client.replay("source")) == source, "the source is untouched"

        # Mid-run (right after the tool call): refused, as a dead letter naming the reason.
        call = next(e["seq"] for e in source if e["type"] == "tool-invocation")
        await client.fork("source", at=call, new_thread_id="mid")
        letters = DeadLetters(kafka_bootstrap, topics)

        async def refused() -> bool:
            return any(
                letter["payload"]["reason"] == "FORK_UNAVAILABLE" for letter in await letters.read()
            )

        await until(refused, within=30, what="the refused fork's dead letter", services=[runtime])
        with pytest.raises(UnknownThreadError):
            await client.replay("mid")


class DeadLetters:
    """The committed dead letters of a test's topics."""

    def __init__(self, bootstrap: str, topics: bus.Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics

    async def read(self) -> list[dict[str, Any]]:
        consumer = bus.consumer(self.bootstrap, client_id="dead-letter-reader")
        await consumer.start()
        try:
            tps = [TopicPartition(self.topics.dead_letters, n) for n in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            letters: list[dict[str, Any]] = []

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await behind():
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for tp, items in batch.items():
                    letters += [orjson.loads(r.value) for r in items if r.offset < ends[tp]]
            return letters
        finally:
            await consumer.stop()
