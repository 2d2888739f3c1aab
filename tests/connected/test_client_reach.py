"""The client has the embedded runtime's reach, on the real Kafka (issue 12).

Parity: ``query``, ``run_specialist``, an approval decided through the client, ``resume``,
``cancel`` and references behave as on the embedded ``Runtime``. Reach: ``follow`` streams a
thread an upstream producer started (from its first event, or from a seq, and a run still in
progress to its end), ``threads()`` lists the tenant's threads with their status, an unknown
thread is an ``UnknownThreadError`` and another tenant's thread reads exactly like one.

The runtime service runs the scripted app in tests/connected/client_app.py; tools are answered
by the in-test responder (:class:`kafka_helpers.ToolResponder`) where a test wants them
answered.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from kafka_helpers import HERE, RunLog, ToolResponder, runtime_args
from processes import Service, until

from flowai_harness import connect, create_runtime
from flowai_harness.errors import (
    NoActiveRunError,
    ReferenceNotFoundError,
    UnknownThreadError,
    UsageError,
)
from flowai_harness.kafka import bus
from flowai_harness.kafka.client import Client, ThreadInfo
from flowai_harness.references import RedisReferenceStore

pytestmark = pytest.mark.connected

sys.path.insert(0, str(HERE))
from client_app import ROWS, spec  # noqa: E402


def script(*steps: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in steps]})


def client_runtime(kafka_bootstrap: str, prefix: str) -> tuple[str, ...]:
    args = list(runtime_args(kafka_bootstrap, prefix))
    args[args.index("flowai_test_app:spec")] = "client_app:spec"
    return tuple(args)


def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without what differs between two runs by nature (latency figures, seq)."""
    return [
        {k: v for k, v in e.items() if k != "seq"}
        for e in events
        if e["type"] != "data-latency-summary"
    ]


async def embedded(prompt: str, thread_id: str, agent: str | None = None) -> list[dict[str, Any]]:
    runtime = create_runtime(spec, interpreter="scripted")
    stream = (
        runtime.run_specialist(agent, prompt, thread_id)
        if agent
        else runtime.query(prompt, thread_id)
    )
    return [event async for event in stream]


@pytest.fixture
async def responder(kafka_bootstrap: str, topics: bus.Topics) -> AsyncIterator[ToolResponder]:
    answers = ToolResponder(kafka_bootstrap, topics, spec)
    await answers.start()
    yield answers
    await answers.close()


async def wait_for_thread(
    client: Client, thread_id: str, runtime: Service, ready: Callable[[ThreadInfo], bool]
) -> ThreadInfo:
    found: list[ThreadInfo] = []

    async def indexed() -> bool:
        found[:] = [t for t in await client.threads() if t.thread_id == thread_id and ready(t)]
        return bool(found)

    await until(indexed, within=30, what=f"thread {thread_id} in the index", services=[runtime])
    return found[0]


async def test_query_and_specialist_stream_what_the_embedded_runtime_streams(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
) -> None:
    spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    prompt = script(("add", {"a": 2, "b": 3}))

    remote = await asyncio.wait_for(collect(client.query(prompt, "q-1")), 60)
    assert comparable(remote) == comparable(await embedded(prompt, "q-1"))

    direct = await asyncio.wait_for(
        collect(client.run_specialist("worker", prompt, thread_id="s-1")), 60
    )
    assert comparable(direct) == comparable(await embedded(prompt, "s-1", agent="worker"))
    assert direct[-2]["type"] == "finish"

    # A specialist the runtime does not have: the engine's refusal ends the stream.
    refused = await asyncio.wait_for(collect(client.run_specialist("nobody", prompt)), 60)
    assert [e["type"] for e in refused] == ["error"]
    assert refused[0]["error"]["code"] == "UNKNOWN_AGENT"


async def test_approval_decision_through_the_client_opens_the_gate(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
) -> None:
    runtime = spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    events: list[dict[str, Any]] = []
    stream = client.query(script(("wipe", {"table": "orders"})), "gated")

    async def run() -> None:
        async for event in stream:
            events.append(event)

    task = asyncio.create_task(run())
    try:

        async def gated() -> bool:
            return any(e["type"] == "approval-required" for e in events)

        await until(gated, within=60, what="the approval request", services=[runtime])
        info = await wait_for_thread(
            client, "gated", runtime, lambda t: t.status == "awaiting-approval"
        )
        assert info.status == "awaiting-approval"
        [request] = [e for e in events if e["type"] == "approval-required"]
        await client.respond_to_approval(request["data"]["id"], "approve", approver="ana")
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    [result] = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"]
    assert result["result"] == {"wiped": "orders"}
    assert events[-2]["type"] == "finish"
    idle = await wait_for_thread(client, "gated", runtime, lambda t: t.status == "idle")
    assert idle.seq >= len(events)


async def test_resume_run_reissues_what_the_run_waits_for_and_cancel_run_ends_it(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    run_log: RunLog,
) -> None:
    runtime = spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    # No tool worker yet: the runs wait for their tools.
    waiting = Background(client.query(script(("add", {"a": 1, "b": 1})), "stuck"))
    await wait_for_thread(client, "stuck", runtime, lambda t: t.status == "awaiting-tool")

    def invocations() -> list[dict[str, Any]]:
        return [i for i in run_log.invocations if i["thread_id"] == "stuck"]

    async def invoked(count: int) -> bool:
        await run_log.poll()
        return len(invocations()) >= count

    await until(lambda: invoked(1), within=30, what="the tool invocation", services=[runtime])
    resumed = Background(client.resume("stuck"))
    # The runtime re-issues the invocation under the same id.
    await until(lambda: invoked(2), within=30, what="the re-issued call", services=[runtime])
    assert len({i["id"] for i in invocations()}) == 1
    answers = ToolResponder(kafka_bootstrap, topics, spec)
    await answers.start()
    try:
        await resumed.finished(within=60)
        await waiting.finished(within=60)
    finally:
        await answers.close()
    kinds = [e["type"] for e in resumed.events]
    assert "finish" in kinds
    assert kinds[-1] == "tool-agent"
    assert all("seq" in e for e in resumed.events)
    # The resumed run's end, as the stream that started it saw it.
    assert comparable(resumed.events[-3:]) == comparable(waiting.events[-3:])

    # An idle thread has nothing to resume: an empty stream, as embedded.
    await wait_for_thread(client, "stuck", runtime, lambda t: t.status == "idle")
    assert [e async for e in client.resume("stuck")] == []

    # Cancel a run waiting for its tool (nobody answers any more).
    to_cancel = Background(client.query(script(("slow", {"ms": 10})), "to-cancel"))
    await wait_for_thread(client, "to-cancel", runtime, lambda t: t.status == "awaiting-tool")
    ended = await asyncio.wait_for(client.cancel("to-cancel"), 60)
    [finish] = [e for e in ended if e["type"] == "finish"]
    assert finish["finishReason"] == "cancelled"
    await to_cancel.finished(within=60)
    assert [e for e in to_cancel.events if e["type"] == "finish"] == [
        {k: v for k, v in finish.items() if k != "seq"}
    ]
    with pytest.raises(NoActiveRunError):
        await asyncio.wait_for(client.cancel("to-cancel"), 60)
    with pytest.raises(UnknownThreadError):
        await client.cancel("never-was")


async def test_follow_streams_a_thread_an_upstream_producer_started(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
    run_log: RunLog,
) -> None:
    runtime = spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()

    async def upstream(thread_id: str, query_id: str, prompt: str) -> None:
        body = {
            "schema": "flowai.v1.Query",
            "id": query_id,
            "tenant": "acme",
            "thread_id": thread_id,
            "run_id": None,
            "causation_id": None,
            "ts": bus.now_ms(),
            "payload": {"prompt": prompt, "agent": None},
        }
        await producer.send_and_wait(
            topics.queries, orjson.dumps(body), key=f"acme/{thread_id}".encode()
        )

    try:
        # Other threads first, so the followed thread does not start at offset 0.
        for n in range(3):
            await upstream(f"noise-{n}", f"noise-q-{n}", script(("add", {"a": n, "b": n})))
        for run in (1, 2):
            await upstream("up", f"up-q-{run}", script(("add", {"a": run, "b": 3})))

            async def logged(runs: int = run) -> bool:
                await run_log.poll()
                finished = [e for e in run_log.thread("up") if e["payload"]["type"] == "finish"]
                return len(finished) == runs

            await until(logged, within=30, what=f"run {run} in the log", services=[runtime])
    finally:
        await producer.stop()
    entries = run_log.thread("up")
    info = await wait_for_thread(
        client, "up", runtime, lambda t: t.status == "idle" and t.seq == entries[-1]["seq"]
    )
    shown = [
        {**e["payload"], "seq": e["seq"]}
        for e in entries
        if e["payload"]["type"] not in ("run-start", "model-response")
    ]

    stream = client.follow("up")
    followed = await asyncio.wait_for(collect(stream), 60)
    assert followed == shown
    # It read the thread's partition only, from the index's offset.
    assert stream.start_offset == info.log_offset
    partition = bus.partition_for(b"acme/up", 3)
    assert info.partition == partition
    assert 0 < stream.records_read <= await log_end(client, topics, partition) - info.log_offset

    later = await asyncio.wait_for(collect(client.follow("up", from_seq=10)), 60)
    assert later == [e for e in shown if e["seq"] >= 10]
    assert await asyncio.wait_for(collect(client.follow("up", from_seq=info.seq + 1)), 60) == []

    listed = {t.thread_id: t for t in await client.threads()}
    assert set(listed) == {"up", "noise-0", "noise-1", "noise-2"}
    assert all(t.status == "idle" for t in listed.values())
    assert listed["up"] == info

    # A run in progress is followed to its end.
    slow_run = Background(
        client.query(script(("slow", {"ms": 1500}), ("add", {"a": 1, "b": 1})), "live")
    )
    await wait_for_thread(client, "live", runtime, lambda t: t.status == "awaiting-tool")
    live = await asyncio.wait_for(collect(client.follow("live")), 60)
    await slow_run.finished(within=60)
    assert comparable(live) == comparable(slow_run.events)
    assert [e["seq"] for e in live] == sorted(e["seq"] for e in live)


async def test_unknown_threads_and_other_tenants_threads_are_refused(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
) -> None:
    runtime = spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    events = await asyncio.wait_for(collect(client.query(script(), "mine")), 60)
    assert events[-1]["type"] == "tool-agent"
    await wait_for_thread(client, "mine", runtime, lambda t: t.status == "idle")

    with pytest.raises(UnknownThreadError, match="no thread 'nope'"):
        await asyncio.wait_for(collect(client.follow("nope")), 30)
    with pytest.raises(UnknownThreadError):
        await client.thread("nope")

    async with connect(kafka_bootstrap, tenant="globex", topic_prefix=topics.prefix) as other:
        with pytest.raises(UnknownThreadError):
            await asyncio.wait_for(collect(other.follow("mine")), 30)
        with pytest.raises(UnknownThreadError):
            await asyncio.wait_for(collect(other.resume("mine")), 30)
        with pytest.raises(UnknownThreadError):
            await other.cancel("mine")
        assert await other.threads() == []
    assert [t.thread_id for t in await client.threads()] == ["mine"]


async def test_references_go_to_the_workers_store_per_tenant(
    kafka_bootstrap: str, topics: bus.Topics, redis_url: str
) -> None:
    async with connect(
        kafka_bootstrap,
        tenant="acme",
        topic_prefix=topics.prefix,
        redis_url=redis_url,
        references=[ROWS],
    ) as acme:
        handle = await acme.create_reference("rows", [1, 2, 3])
        assert handle["kind"] == "rows"
        assert await acme.resolve_reference(handle) == [1, 2, 3]
        assert await acme.reference_glimpse(handle) == {"count": 3}
    # Where the tool workers look (services/tools: namespace <prefix>:refs).
    workers = RedisReferenceStore.from_url(redis_url, namespace=f"{topics.prefix}:refs")
    try:
        assert workers.resolve("acme", handle) == [1, 2, 3]
    finally:
        workers.close()
    async with connect(
        kafka_bootstrap, tenant="globex", topic_prefix=topics.prefix, redis_url=redis_url
    ) as globex:
        with pytest.raises(ReferenceNotFoundError):
            await globex.resolve_reference(handle)
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as bare:
        bare._redis_url = None
        with pytest.raises(UsageError, match="redis_url"):
            await bare.resolve_reference(handle)


class Background:
    """A stream iterated by a task of its own, its events collected as they come."""

    def __init__(self, stream: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: Any) -> None:
        async for event in stream:
            self.events.append(event)

    async def finished(self, within: float) -> None:
        await asyncio.wait_for(self.task, within)


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [event async for event in stream]


async def log_end(client: Client, topics: bus.Topics, partition: int) -> int:
    assert client._follower is not None
    tp = TopicPartition(topics.runtime_events, partition)
    return int((await client._follower.end_offsets([tp]))[tp])


async def test_thread_index_keeps_where_a_thread_starts_across_a_takeover(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
) -> None:
    first = spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    # Other threads of its partition first, so the thread starts past offset 0.
    partition = bus.partition_for(b"acme/kept", 3)
    neighbours = [f"before-{n}" for n in range(30)]
    neighbours = [t for t in neighbours if bus.partition_for(f"acme/{t}".encode(), 3) == partition]
    for thread_id in neighbours[:2]:
        await asyncio.wait_for(collect(client.query(script(), thread_id)), 60)
    one = await asyncio.wait_for(
        collect(client.query(script(("add", {"a": 1, "b": 2})), "kept")), 60
    )
    before = await wait_for_thread(client, "kept", first, lambda t: t.status == "idle")
    assert before.log_offset > 0
    first.kill()  # kill -9: the next runtime reads the index back on assignment
    second = spawn("runtime", *client_runtime(kafka_bootstrap, topics.prefix))
    two = await asyncio.wait_for(
        collect(client.query(script(("add", {"a": 3, "b": 4})), "kept")), 90
    )
    after = await wait_for_thread(
        client, "kept", second, lambda t: t.status == "idle" and t.seq > before.seq
    )
    assert after.log_offset == before.log_offset
    assert after.created == before.created
    followed = await asyncio.wait_for(collect(client.follow("kept")), 60)
    assert comparable(followed) == comparable(one + two)
