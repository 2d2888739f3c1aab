"""Tool workers as separate processes on the real Kafka and Redis: effectively-once execution.

Connected tests 2 and 5 of issue 4: three workers share 300 invocations and each side effect
happens exactly once; a worker killed with SIGKILL while its tool runs loses nothing, its
invocation is redelivered and taken over once its claim expires, and no side effect repeats.
The handlers (tool_worker_app.py) count their side effects in Redis and do not guard against
repeats themselves.

Issue 9: a worker killed after its tool's side effect and before recording it runs an
at-least-once tool again with the same ``ctx.idempotency_key``, and answers an at-most-once
tool with ``TOOL_OUTCOME_UNKNOWN`` instead; another tenant's invocation and bad arguments are
refused before anything runs; a worker refuses a Redis without an append-only file unless
``--allow-volatile-ledger``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from processes import Service, until
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from flowai_harness.kafka import bus
from flowai_harness.kafka.bus import Topics

pytestmark = pytest.mark.connected


async def start_workers(
    spawn: Callable[..., Service],
    count: int,
    *,
    bootstrap: str,
    redis_url: str,
    topics: Topics,
    partitions: int,
    allow_unreplicated: bool,
    flags: Sequence[str] = (),
) -> list[Service]:
    """Create the topics, start ``count`` worker processes, wait until they share the work."""
    await bus.ensure_topics(
        bootstrap, topics, partitions=partitions, allow_unreplicated=allow_unreplicated
    )
    workers = [
        spawn(
            f"tools-{n}",
            "-m",
            "services.tools",
            "--app",
            "tool_worker_app:runtime",
            "--bootstrap",
            bootstrap,
            "--redis",
            redis_url,
            "--prefix",
            topics.prefix,
            "--worker-id",
            f"tools-{n}",
            *flags,
        )
        for n in range(count)
    ]
    await until(
        lambda: group_is_stable(bootstrap, f"{topics.prefix}.tools", count),
        within=30,
        what=f"{count} workers in the consumer group",
        services=workers,
        every=0.2,
    )
    return workers


def invocation(topics: Topics, tool: str, key: str) -> dict[str, Any]:
    thread = f"thread-{key}"
    return {
        "schema": "flowai.v1.ToolInvocation",
        "id": f"acme/{thread}/run-1/call-{key}",
        "tenant": "acme",
        "thread_id": thread,
        "run_id": "run-1",
        "causation_id": f"acme/{thread}/2",
        "ts": bus.now_ms(),
        "payload": {
            "tool": tool,
            "tool_invocation_id": f"call-{key}",
            "args": {"ns": topics.prefix, "key": key},
            "agent": "worker",
        },
    }


async def produce(
    bootstrap: str, topic: str, envelopes: Sequence[dict[str, Any]], partition: int | None = None
) -> list[int]:
    """Publish envelopes keyed by their own id (as the runtime does); returns their offsets."""
    producer = bus.producer(bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, orjson.dumps(envelope), key=envelope["id"].encode(), partition=partition
            )
            for envelope in envelopes
        ]
        return [(await future).offset for future in sent]
    finally:
        await producer.stop()


@dataclass
class Results:
    """Every ToolResult seen on the results topic, by invocation id."""

    by_invocation: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    total: int = 0

    def of(self, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        return self.by_invocation.get(envelope["id"], [])


@contextlib.asynccontextmanager
async def collect_results(bootstrap: str, topics: Topics) -> AsyncIterator[Results]:
    results = Results()
    consumer = bus.consumer(bootstrap, topics.tool_results)
    await consumer.start()

    async def read() -> None:
        async for record in consumer:
            body = orjson.loads(record.value)
            results.by_invocation[body["payload"]["invocation_id"]].append(body)
            results.total += 1

    reader = asyncio.create_task(read())
    try:
        yield results
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await consumer.stop()


async def group_is_stable(bootstrap: str, group: str, members: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    except GroupCoordinatorNotAvailableError:
        # A fresh broker creates its offsets topic with the first group: not yet.
        return False
    finally:
        await admin.close()
    [described] = response.to_object()["groups"]
    return bool(described["state"] == "Stable" and len(described["members"]) == members)


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return -1 if found is None else int(found.offset)


async def test_tool_invocation_300_times_over_three_workers_has_each_side_effect_once(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    prefix: str,
    spawn: Callable[..., Service],
    single_broker: bool,
) -> None:
    topics = Topics(prefix)
    workers = await start_workers(
        spawn,
        3,
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topics=topics,
        partitions=6,
        allow_unreplicated=single_broker,
    )
    invocations = [
        invocation(topics, "effect", f"{n:03d}-{uuid.uuid4().hex[:6]}") for n in range(300)
    ]
    # Kafka delivers at least once: 30 of them arrive twice.
    again = invocations[::10]

    async with collect_results(kafka_bootstrap, topics) as results:
        await produce(kafka_bootstrap, topics.tool_invocations, invocations + again)

        async def all_answered() -> bool:
            return len(results.by_invocation) == 300 and results.total >= 330

        await until(all_answered, within=60, what="330 ToolResults", services=workers)

    effects = {
        key.decode(): int(count)
        for key, count in (await redis.hgetall(f"{prefix}:effects")).items()
    }
    assert len(effects) == 300
    assert set(effects.values()) == {1}, "a side effect happened more than once"
    assert await redis.llen(f"{prefix}:log") == 300
    # Each invocation's results are copies of one recorded result, with count 1 in it.
    for envelope in invocations:
        answers = results.of(envelope)
        assert answers, f"no result for {envelope['id']}"
        assert all(answer == answers[0] for answer in answers)
        assert answers[0]["payload"]["output"] == {
            "key": envelope["payload"]["args"]["key"],
            "count": 1,
        }
        assert answers[0]["causation_id"] == envelope["id"]
    # The work was shared: every worker ran some of it.
    pids = await redis.hgetall(f"{prefix}:pids")
    assert {int(pid) for pid in pids} == {worker.pid for worker in workers}
    assert sum(int(count) for count in pids.values()) == 300


async def test_tool_invocation_whose_worker_is_killed_mid_tool_is_taken_over_without_repeating(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    prefix: str,
    spawn: Callable[..., Service],
    single_broker: bool,
) -> None:
    topics = Topics(prefix)
    group = f"{prefix}.tools"
    workers = await start_workers(
        spawn,
        2,
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topics=topics,
        partitions=2,
        allow_unreplicated=single_broker,
        # Short claims and the broker's shortest session so the takeover takes seconds.
        flags=("--claim-ttl", "2", "--session-timeout-ms", "6000", "--tool-timeout", "20"),
    )
    blocking = invocation(topics, "block_once", "x0")
    quick = invocation(topics, "effect", "x1")

    async with collect_results(kafka_bootstrap, topics) as results:
        # Both on partition 0, the blocking one first: the quick one finishes, but the
        # partition cannot be committed past the blocking one.
        first, second = await produce(
            kafka_bootstrap, topics.tool_invocations, [blocking, quick], partition=0
        )

        async def blocked_and_quick_done() -> bool:
            return await redis.exists(f"{prefix}:blocked") == 1 and bool(results.of(quick))

        await until(blocked_and_quick_done, within=30, what="x0 running, x1 done", services=workers)
        pid = int(await redis.get(f"{prefix}:blocked") or 0)
        [victim] = [worker for worker in workers if worker.pid == pid]
        [survivor] = [worker for worker in workers if worker is not victim]
        tp = TopicPartition(topics.tool_invocations, 0)
        assert await committed(kafka_bootstrap, group, tp) <= first

        victim.kill()

        async def taken_over() -> bool:
            return bool(results.of(blocking)) and len(results.of(quick)) >= 2

        await until(
            taken_over, within=40, what="x0's result from the survivor", services=[survivor]
        )

        async def committed_past_both() -> bool:
            return await committed(kafka_bootstrap, group, tp) == second + 1

        await until(committed_past_both, within=10, what="the commit", services=[survivor])

    effects = await redis.hgetall(f"{prefix}:effects")
    assert effects == {b"x0": b"1", b"x1": b"1"}
    # x0 ran twice (the killed call never reached its side effect), in two processes.
    assert await redis.get(f"{prefix}:started:x0") == str(victim.pid).encode()
    assert await redis.hgetall(f"{prefix}:pids") == {
        str(victim.pid).encode(): b"1",
        str(survivor.pid).encode(): b"1",
    }
    assert results.of(blocking)[0]["payload"]["output"] == {"key": "x0", "count": 1}
    # x1 was redelivered with x0 and answered from the record, not run again.
    quick_answers = results.of(quick)
    assert all(answer == quick_answers[0] for answer in quick_answers)
    assert quick_answers[0]["payload"]["output"] == {"key": "x1", "count": 1}


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
async def test_tool_invocation_killed_after_its_side_effect_reruns_with_its_key_or_never(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    prefix: str,
    spawn: Callable[..., Service],
    single_broker: bool,
    delivery: str,
) -> None:
    topics = Topics(prefix)
    workers = await start_workers(
        spawn,
        2,
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topics=topics,
        partitions=2,
        allow_unreplicated=single_broker,
        flags=("--claim-ttl", "2", "--session-timeout-ms", "6000"),
    )
    # The first run does the effect, then blocks before its result is recorded.
    tool = "charge" if delivery == "at_least_once" else "pay"
    call = invocation(topics, tool, "y0")

    async with collect_results(kafka_bootstrap, topics) as results:
        await produce(kafka_bootstrap, topics.tool_invocations, [call], partition=0)

        async def blocked() -> bool:
            return await redis.exists(f"{prefix}:blocked") == 1

        await until(blocked, within=30, what="the effect done, the tool blocked", services=workers)
        pid = int(await redis.get(f"{prefix}:blocked") or 0)
        [victim] = [worker for worker in workers if worker.pid == pid]
        [survivor] = [worker for worker in workers if worker is not victim]
        victim.kill()

        async def answered() -> bool:
            return bool(results.of(call))

        await until(answered, within=40, what="the survivor's result", services=[survivor])

    [answer] = results.of(call)
    keys = await redis.lrange(f"{prefix}:keys", 0, -1)
    effects = await redis.hgetall(f"{prefix}:effects")
    if delivery == "at_least_once":
        # The crash window: the effect happened twice, both times with one idempotency key,
        # which a downstream API deduplicating by key would have turned into one.
        assert effects == {b"y0": b"2"}
        assert len(keys) == 2
        assert keys[0] == keys[1]
        assert answer["payload"]["output"] == {"key": "y0", "count": 2}
    else:
        # Never twice: the model is told the outcome is unknown.
        assert effects == {b"y0": b"1"}
        assert len(keys) == 1
        assert answer["payload"]["error"]["code"] == "TOOL_OUTCOME_UNKNOWN"
        letters = await read_dead_letters(kafka_bootstrap, topics, count=1)
        assert [letter["payload"]["reason"] for letter in letters] == ["TOOL_OUTCOME_UNKNOWN"]


async def read_dead_letters(bootstrap: str, topics: Topics, *, count: int) -> list[dict[str, Any]]:
    """The first ``count`` dead letters of the prefix (read_committed, from the beginning)."""
    consumer = bus.consumer(bootstrap, topics.dead_letters)
    await consumer.start()
    letters: list[dict[str, Any]] = []
    try:
        while len(letters) < count:
            record = await asyncio.wait_for(consumer.getone(), 30)
            letters.append(orjson.loads(record.value))
    finally:
        await consumer.stop()
    return letters


async def test_tool_invocation_of_other_tenants_or_with_bad_arguments_is_refused_before_it_runs(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    prefix: str,
    spawn: Callable[..., Service],
    single_broker: bool,
) -> None:
    topics = Topics(prefix)
    workers = await start_workers(
        spawn,
        1,
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topics=topics,
        partitions=2,
        allow_unreplicated=single_broker,
    )
    theirs = {**invocation(topics, "effect", "z0"), "tenant": "globex"}
    theirs["id"] = theirs["id"].replace("acme/", "globex/", 1)
    bad = invocation(topics, "effect", "z1")
    bad["payload"]["args"] = {"ns": prefix, "key": 7}
    fine = invocation(topics, "effect", "z2")

    async with collect_results(kafka_bootstrap, topics) as results:
        await produce(kafka_bootstrap, topics.tool_invocations, [theirs, bad, fine], partition=0)

        async def answered() -> bool:
            return bool(results.of(bad)) and bool(results.of(fine))

        await until(answered, within=30, what="results for z1 and z2", services=workers)
        letters = await read_dead_letters(kafka_bootstrap, topics, count=2)

    assert await redis.hgetall(f"{prefix}:effects") == {b"z2": b"1"}
    assert results.of(theirs) == []
    assert results.of(bad)[0]["payload"]["error"]["code"] == "TOOL_ARGS_INVALID"
    assert "/key" in results.of(bad)[0]["payload"]["error"]["message"]
    assert sorted((letter["payload"]["reason"], letter["tenant"]) for letter in letters) == [
        ("TENANT_MISMATCH", "globex"),
        ("TOOL_ARGS_INVALID", "acme"),
    ]


async def test_redis_started_by_the_services_script_keeps_an_append_only_file(
    redis: Redis,
) -> None:
    # The one the connected suite runs on: scripts/services/services starts it.
    assert (await redis.info("persistence"))["aof_enabled"] == 1
    assert await redis.config_get("appendfsync") == {"appendfsync": "everysec"}


@contextlib.contextmanager
def volatile_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of this test's own, without persistence, with a user that may not ask
    INFO or CONFIG (as managed services restrict them): yields (url, port)."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = SyncRedis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.execute_command(
                    "ACL", "SETUSER", "app", "on", ">secret", "~*", "+@all", "-info", "-config"
                )
                break
            except RedisConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", port
    finally:
        process.kill()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_tool_worker_refuses_a_redis_without_persistence_unless_told(
    kafka_bootstrap: str,
    prefix: str,
    spawn: Callable[..., Service],
    single_broker: bool,
    tmp_path: Path,
) -> None:
    topics = Topics(prefix)
    await bus.ensure_topics(kafka_bootstrap, topics, partitions=2, allow_unreplicated=single_broker)
    common = (
        "-m",
        "services.tools",
        "--app",
        "tool_worker_app:runtime",
        "--bootstrap",
        kafka_bootstrap,
        "--prefix",
        prefix,
        "--no-create-topics",
    )
    with volatile_redis(tmp_path) as (url, port):
        refused = spawn("tools-volatile", *common, "--redis", url)
        assert refused.process.wait(30) == 2
        assert "LEDGER_VOLATILE" in refused.log.read_text()
        assert "no append-only file (appendonly no)" in refused.log.read_text()

        limited = f"redis://app:secret@127.0.0.1:{port}/0"
        unaskable = spawn("tools-unaskable", *common, "--redis", limited)
        assert unaskable.process.wait(30) == 2
        text = unaskable.log.read_text()
        assert "INFO persistence was refused" in text
        assert "secret" not in text  # the password is not printed

        allowed = spawn(
            "tools-allowed",
            *common,
            "--redis",
            url,
            env={"FLOWAI_ALLOW_VOLATILE_LEDGER": "1"},
        )

        async def joined() -> bool:
            return await group_is_stable(kafka_bootstrap, f"{prefix}.tools", 1)

        await until(joined, within=30, what="the allowed worker in its group", services=[allowed])
        assert "starting anyway (--allow-volatile-ledger)" in allowed.log.read_text()
