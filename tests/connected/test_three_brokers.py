"""The services on a three-broker cluster (issue 9, item 2): the topics they create get three
replicas with ``min.insync.replicas=2`` (nobody has to ask), and when the broker leading the
run log is killed with SIGKILL mid-run, the run log keeps every event committed before and
the runtime and the tool worker carry on: every run finishes, none twice.

The cluster is the tests' own (``three_brokers``, marker ``brokers3``): about 13 s to start
and 6 s to stop, once per session; the leader-loss test itself takes about 30 s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cluster import Cluster
from kafka_helpers import PARTITIONS, RunLog, runtime_args
from processes import Service, until

from flowai_harness.kafka import bus

pytestmark = [pytest.mark.connected, pytest.mark.brokers3]


@pytest.fixture
def service_env(decision_keys: tuple[Path, Path]) -> dict[str, str]:
    # Three brokers need no excuse: a service that would run an unreplicated log must fail.
    private, public = decision_keys
    return {
        "FLOWAI_ALLOW_UNREPLICATED": "0",
        "FLOWAI_DECISION_PUBLIC_KEYS": str(public),
        "FLOWAI_DECISION_KEY": str(private),
    }


@pytest.fixture
async def cluster_topics(three_brokers: Cluster) -> AsyncIterator[bus.Topics]:
    topics = bus.Topics(f"t{uuid.uuid4().hex[:10]}")
    yield topics
    admin = AIOKafkaAdminClient(bootstrap_servers=three_brokers.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [topic for topic in topics.all() if topic in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def describe(bootstrap: str, topics: bus.Topics) -> tuple[dict[str, Any], dict[str, str]]:
    """(every topic's metadata, the run log's configs), once every broker asked knows them all
    (a topic just created reaches the other brokers' metadata a moment later)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described: dict[str, Any] = {}

        async def known() -> bool:
            described.update(
                (t["topic"], t) for t in await admin.describe_topics(list(topics.all()))
            )
            return all(t["error_code"] == 0 and t["partitions"] for t in described.values())

        await until(known, within=10, what="the topics in the metadata")
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.runtime_events)]
        )
    finally:
        await admin.close()
    [resource] = response.resources
    configs = {entry[0]: entry[1] for entry in resource[4]}
    return described, configs


async def test_topics_on_three_brokers_get_three_replicas_and_min_insync_two(
    three_brokers: Cluster, cluster_topics: bus.Topics
) -> None:
    await bus.ensure_topics(three_brokers.bootstrap, cluster_topics, partitions=PARTITIONS)

    described, configs = await describe(three_brokers.bootstrap, cluster_topics)
    for name in cluster_topics.all():
        assert {len(p["replicas"]) for p in described[name]["partitions"]} == {3}, name
    assert configs["min.insync.replicas"] == "2"
    assert configs["retention.ms"] == "-1"
    assert await bus.check_run_log(three_brokers.bootstrap, cluster_topics) == 3


def script(steps: int, ms: int) -> str:
    return orjson.dumps({"script": [{"tool": "slow", "args": {"ms": ms}}] * steps}).decode()


def query(thread: str, prompt: str) -> bytes:
    return orjson.dumps(
        {
            "schema": "flowai.v1.Query",
            "id": f"q-{thread}",
            "tenant": "acme",
            "thread_id": thread,
            "run_id": None,
            "causation_id": None,
            "ts": bus.now_ms(),
            "payload": {"prompt": prompt, "agent": None},
        }
    )


async def publish_queries(bootstrap: str, topics: bus.Topics, threads: list[str]) -> None:
    producer = bus.producer(bootstrap)
    await producer.start()
    try:
        for thread in threads:
            await producer.send(
                topics.queries, query(thread, script(4, 150)), key=bus.thread_key("acme", thread)
            )
        await producer.flush()
    finally:
        await producer.stop()


async def run_log_leader(bootstrap: str, topics: bus.Topics) -> int:
    """The broker leading most run-log partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [log] = await admin.describe_topics([topics.runtime_events])
    finally:
        await admin.close()
    leaders = [p["leader"] for p in log["partitions"]]
    return max(set(leaders), key=leaders.count)


async def test_leader_loss_keeps_every_committed_event_and_the_services_carry_on(
    three_brokers: Cluster,
    cluster_topics: bus.Topics,
    spawn: Callable[..., Service],
) -> None:
    bootstrap, topics = three_brokers.bootstrap, cluster_topics
    tools = spawn(
        "tools",
        "-m", "services.tools", "--app", "flowai_test_app:spec", "--bootstrap", bootstrap,
        "--redis", three_brokers.redis_url, "--prefix", topics.prefix,
        "--partitions", str(PARTITIONS), "--concurrency", "32", "--instance-id", "tools-a",
        "--session-timeout-ms", "6000",
    )  # fmt: skip
    runtime = spawn(
        "runtime",
        *runtime_args(
            bootstrap, topics.prefix, "--instance-id", "runtime-a", "--session-timeout-ms", "6000"
        ),
    )
    services = [runtime, tools]
    # The runtime creates the topics: with three replicas, without being told.
    await bus.partition_counts(bootstrap, topics.all(), wait=30.0)
    run_log = RunLog(bootstrap, topics)
    await run_log.start()
    try:
        before = [f"before-{n}" for n in range(20)]
        after = [f"after-{n}" for n in range(10)]
        await publish_queries(bootstrap, topics, before)

        async def mid_run() -> bool:
            await run_log.poll()
            return len(run_log.entries) >= 60

        await until(mid_run, within=60, what="runs in flight", services=services)
        committed_before = {entry["id"] for entry in run_log.entries}
        leader = await run_log_leader(bootstrap, topics)
        await asyncio.to_thread(three_brokers.kill_broker, leader)
        try:
            # New work while the broker is down: two in-sync replicas still take writes.
            await publish_queries(bootstrap, topics, after)

            async def all_finished() -> bool:
                await run_log.poll()
                return all(run_log.finished(thread) for thread in before + after)

            await until(all_finished, within=120, what="every run to finish", services=services)
        finally:
            await asyncio.to_thread(three_brokers.start_broker, leader)
    finally:
        await run_log.close()

    # The whole log again, from scratch, as any read_committed reader sees it.
    fresh = await RunLog.read_whole(bootstrap, topics)
    ids = [entry["id"] for entry in fresh.entries]
    assert len(ids) == len(set(ids)), "an event was logged twice"
    assert committed_before <= set(ids), "an event committed before the broker died is gone"
    for thread in before + after:
        entries = fresh.thread(thread)
        assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
        kinds = [entry["payload"]["type"] for entry in entries]
        assert kinds.count("run-start") == 1
        # A run ends with finish, then the entry agent's wrapping tool-agent result.
        assert kinds[-2:] == ["finish", "tool-agent"], (thread, kinds[-3:])
        results = [
            entry["payload"]["result"]
            for entry in entries
            if entry["payload"]["type"] == "tool-invocation"
            and entry["payload"]["state"] == "result"
        ]
        assert results == [{"slept": 150}] * 4
    assert runtime.alive()
    assert tools.alive()
