"""Tools placed inline (``placement="inline"``) on the real Kafka and Redis.

The runtime service runs them itself, in the flow of the transaction that consumes the input
asking for them: nothing goes to ``tool-invocations``, and the result is logged by the same
transaction. Killed with SIGKILL while an inline tool runs, the runtime's replacement
replays the run log, gets the same invocation (same id, same ``ctx.idempotency_key``), waits
out the dead runtime's claim in the shared ledger and runs it: the run log has the result
once. One agent may use a worker tool and an inline tool in one run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from kafka_helpers import PARTITIONS, RunLog
from processes import Service, until
from redis.asyncio import Redis

from flowai_harness import create_runtime
from flowai_harness.kafka import bus

pytestmark = pytest.mark.connected

APP = "inline_tool_app:runtime"


def script(*steps: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in steps]})


def runtime(bootstrap: str, redis_url: str, prefix: str, *extra: str) -> tuple[str, ...]:
    return (
        "-m", "services.runtime", "--app", APP, "--bootstrap", bootstrap, "--redis", redis_url,
        "--prefix", prefix, "--partitions", str(PARTITIONS), *extra,
    )  # fmt: skip


async def send_query(bootstrap: str, topics: bus.Topics, thread: str, prompt: str) -> None:
    body = {
        "schema": "flowai.v1.Query",
        "id": f"q-{thread}",
        "tenant": "acme",
        "thread_id": thread,
        "run_id": None,
        "causation_id": None,
        "ts": bus.now_ms(),
        "payload": {"prompt": prompt, "agent": None},
    }
    producer = bus.producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.queries, orjson.dumps(body), key=bus.thread_key("acme", thread)
        )
    finally:
        await producer.stop()


def results(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        entry["payload"]
        for entry in entries
        if entry["payload"]["type"] == "tool-invocation" and entry["payload"]["state"] == "result"
    ]


async def published_invocations(bootstrap: str, topics: bus.Topics) -> list[str]:
    """The tools of every ToolInvocation on the topic (read_committed, to its end)."""
    log = await RunLog.read_whole(bootstrap, topics)
    return [invocation["payload"]["tool"] for invocation in log.invocations]


async def test_tool_result_of_an_inline_tool_is_logged_once_across_a_kill_9_of_the_runtime(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
) -> None:
    prefix = topics.prefix
    # Static membership and short claims: the replacement takes over within seconds.
    flags = (
        "--instance-id", "runtime-a", "--session-timeout-ms", "6000", "--inline-claim-ttl", "2",
    )  # fmt: skip
    first = spawn("runtime-first", *runtime(kafka_bootstrap, redis_url, prefix, *flags))
    thread = "inline-crash"
    await send_query(
        kafka_bootstrap,
        topics,
        thread,
        script(
            ("inline", {"ns": prefix, "key": "a"}),
            ("inline_block_once", {"ns": prefix, "key": "b"}),
        ),
    )

    async def blocked() -> bool:
        return await redis.exists(f"{prefix}:blocked") == 1

    await until(blocked, within=30, what="the inline tool blocking", services=[first])
    assert int(await redis.get(f"{prefix}:blocked") or 0) == first.pid
    # Nothing of the run is committed yet: the query and both calls are one transaction.
    await run_log.poll()
    assert run_log.thread(thread) == []
    first.kill()

    second = spawn("runtime-second", *runtime(kafka_bootstrap, redis_url, prefix, *flags))

    async def finished() -> bool:
        await run_log.poll()
        return run_log.finished(thread)

    await until(finished, within=45, what="the run to finish", services=[second])

    fresh = await RunLog.read_whole(kafka_bootstrap, topics)
    entries = fresh.thread(thread)
    ids = [entry["id"] for entry in entries]
    assert len(ids) == len(set(ids)), "an event was logged twice"
    assert "finish" in [entry["payload"]["type"] for entry in entries]
    logged = results(entries)
    assert [r["toolName"] for r in logged] == ["inline", "inline_block_once"]
    # Both results come from the replacement: "a" was recorded by the first runtime and
    # replayed from the ledger (not run again), "b" was run once its claim expired.
    outputs = [r["result"] for r in logged]
    assert outputs[0] == {"key": "a", "count": 1, "pid": first.pid}
    assert outputs[1] == {"key": "b", "count": 1, "pid": second.pid}
    assert await redis.hgetall(f"{prefix}:effects") == {b"a": b"1", b"b": b"1"}
    # "b" started twice, under one idempotency key.
    attempts = await redis.lrange(f"{prefix}:attempts", 0, -1)
    assert len(attempts) == 2
    assert attempts[0] == attempts[1]
    assert await published_invocations(kafka_bootstrap, topics) == []
    assert "replayed" in second.log.read_text()


async def test_a_worker_tool_and_an_inline_tool_in_one_run(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
) -> None:
    prefix = topics.prefix
    worker = spawn(
        "tools",
        "-m", "services.tools", "--app", APP, "--bootstrap", kafka_bootstrap,
        "--redis", redis_url, "--prefix", prefix,
    )  # fmt: skip
    runtime_service = spawn("runtime", *runtime(kafka_bootstrap, redis_url, prefix))
    thread = "inline-and-worker"
    steps = (
        ("on_worker", {"ns": prefix, "key": "w1"}),
        ("inline", {"ns": prefix, "key": "i1"}),
        ("on_worker", {"ns": prefix, "key": "w2"}),
        ("inline", {"ns": prefix, "key": "i2"}),
    )
    await send_query(kafka_bootstrap, topics, thread, script(*steps))

    async def finished() -> bool:
        await run_log.poll()
        return run_log.finished(thread)

    await until(finished, within=60, what="the run to finish", services=[worker, runtime_service])
    entries = run_log.thread(thread)
    assert "finish" in [entry["payload"]["type"] for entry in entries]
    logged = results(entries)
    assert [r["toolName"] for r in logged] == ["on_worker", "inline", "on_worker", "inline"]
    ran_by = [r["result"]["pid"] for r in logged]
    assert ran_by == [worker.pid, runtime_service.pid, worker.pid, runtime_service.pid]
    assert await redis.hgetall(f"{prefix}:effects") == {
        b"w1": b"1",
        b"i1": b"1",
        b"w2": b"1",
        b"i2": b"1",
    }
    # Only the worker's calls travelled over Kafka; every call's result is in the one ledger.
    assert await published_invocations(kafka_bootstrap, topics) == ["on_worker", "on_worker"]
    recorded = [key async for key in redis.scan_iter(match=f"{prefix}:tools:*:result")]
    assert len(recorded) == 4

    # Embedded, placement means nothing: the same script logs the same events (its effects go
    # to a namespace of their own, and who ran each call differs by nature).
    import inline_tool_app

    apart = prefix[:-1] + ("x" if prefix[-1] != "x" else "y")
    async with create_runtime(inline_tool_app.runtime, interpreter="scripted") as embedded:
        embedded_steps = tuple((tool, {**args, "ns": apart}) for tool, args in steps)
        async for _ in embedded.query(script(*embedded_steps), thread):
            pass
        here = [dict(event) for event in embedded.replay(thread).events]
    there = [entry["payload"] for entry in entries]
    assert same_run(here, apart) == same_run(there, prefix)


def same_run(events: list[dict[str, Any]], ns: str) -> list[Any]:
    """A run's logged events without what differs between processes by nature: the
    namespace of the effects, which process ran a call (its pid, also in the text the model
    echoes, and so in the scripted token counts), timings and log positions."""
    kept = [
        {k: v for k, v in event.items() if k not in ("seq", "usage")}
        for event in events
        if event["type"] != "data-latency-summary"
    ]
    text = orjson.dumps(kept).decode().replace(ns, "<ns>")
    return list(orjson.loads(re.sub(r'(\\?"pid\\?":)\d+', r"\g<1>0", text)))
