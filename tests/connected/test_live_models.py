"""Live models on the distributed runtime: the runtime service publishes model requests, model
workers (``services.tools --role models``) call the provider (the fake provider server in this
process, through the official SDK) and publish the results and the streamed text.

What a user relies on: the client shows the model's text as it streams, as the embedded
runtime does; a runtime killed while a model call is out does not call the model again (the
result waits on model-results for the replacement); a model worker killed mid-call leaves
the call to another worker, and the run logs one answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from kafka_helpers import RunLog, live_runtime_args, live_worker_args
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


def model_events(entries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in entries if e["payload"]["type"] == kind]


async def test_model_delta_text_is_shown_by_the_client_as_it_streams(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    fake: FakeProvider,
) -> None:
    fake.add(
        Turn(tool_calls=[ToolCall("add", {"a": 2, "b": 3}, id="toolu_1")]),
        Turn(text=["The ", "sum ", "is ", "5."], chunk_delay_s=0.05),
    )
    env = {"FAKE_ANTHROPIC_URL": fake.anthropic_url}
    services = [
        spawn("runtime", *live_runtime_args(kafka_bootstrap, topics.prefix), env=env),
        spawn(
            "tools", *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "tools"), env=env
        ),
        spawn(
            "models",
            *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "models"),
            env=env,
        ),
    ]
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        events = [e async for e in client.query("What is 2 + 3?", "live-1", agent="analyst")]

    texts = [e for e in events if e["type"] == "text"]
    assert [t["text"] for t in texts] == ["The ", "sum ", "is ", "5."], (
        "the text came as it streamed, and the logged complete text was not repeated"
    )
    assert len({t["requestId"] for t in texts}) == 1
    results = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"]
    assert results[0]["result"] == {"sum": 5}
    assert events[-1]["type"] == "tool-agent"
    assert events[-1]["result"] == "The sum is 5."
    assert len(fake.requests) == 2

    async def logged() -> bool:
        await run_log.poll()
        return run_log.finished("live-1")

    await until(logged, within=20, what="the run in the log", services=services)
    entries = run_log.thread("live-1")
    assert len(model_events(entries, "model-response")) == 2
    # The log keeps the whole message once; deltas are for display only.
    assert [t["text"] for t in model_events(entries, "text")] == ["The sum is 5."]


async def test_model_request_in_flight_when_the_runtime_is_killed_is_not_called_again(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    fake: FakeProvider,
) -> None:
    fake.add(Turn(text="Answered once.", hold="go"))
    env = {"FAKE_ANTHROPIC_URL": fake.anthropic_url}
    flags = ("--instance-id", "runtime-live", "--session-timeout-ms", "6000")
    first = spawn(
        "runtime-first", *live_runtime_args(kafka_bootstrap, topics.prefix, *flags), env=env
    )
    models = spawn(
        "models", *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "models"), env=env
    )
    producer = bus.producer(kafka_bootstrap)
    await producer.start()
    try:
        query = {
            "schema": "flowai.v1.Query",
            "id": "live-kill-q",
            "tenant": "acme",
            "thread_id": "live-2",
            "run_id": None,
            "causation_id": None,
            "ts": bus.now_ms(),
            "payload": {"prompt": "Hello?", "agent": "analyst"},
        }
        await producer.send_and_wait(
            topics.queries, orjson.dumps(query), key=bus.thread_key("acme", "live-2")
        )
    finally:
        await producer.stop()

    await fake.wait_for_requests(1, within_s=30)
    first.kill()  # the model call is out; the runtime that asked is gone
    fake.release("go")  # the model answers; the worker publishes the result
    second = spawn(
        "runtime-second", *live_runtime_args(kafka_bootstrap, topics.prefix, *flags), env=env
    )

    async def finished() -> bool:
        await run_log.poll()
        return run_log.finished("live-2")

    await until(finished, within=45, what="the run to finish", services=[second, models])
    entries = run_log.thread("live-2")
    assert len(fake.requests) == 1, "the replacement took the waiting result; no second call"
    (response,) = model_events(entries, "model-response")
    assert response["content"] == [{"type": "text", "text": "Answered once."}]
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))


async def test_model_request_whose_worker_is_killed_mid_call_is_left_to_another(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    fake: FakeProvider,
) -> None:
    fake.add(Turn(text="never sent", hold="never"), Turn(text="From the survivor."))
    env = {"FAKE_ANTHROPIC_URL": fake.anthropic_url}
    # A short claim: a dead worker's call moves on quickly.
    fast = ("--claim-ttl", "2", "--session-timeout-ms", "6000")
    services = [spawn("runtime", *live_runtime_args(kafka_bootstrap, topics.prefix), env=env)]
    doomed = spawn(
        "models-doomed",
        *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "models", *fast),
        env=env,
    )
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        stream = client.query("Hello?", "live-3", agent="analyst")
        iterator = aiter(stream)
        first_event = await anext(iterator)
        await fake.wait_for_requests(1, within_s=30)
        doomed.kill()
        survivor = spawn(
            "models-survivor",
            *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "models", *fast),
            env=env,
        )
        services.append(survivor)
        events = [first_event, *[e async for e in iterator]]

    assert events[-1]["result"] == "From the survivor."
    assert len(fake.requests) == 2
    assert await fake.requests[0].wait_finished(5) == "disconnected"

    async def finished() -> bool:
        await run_log.poll()
        return run_log.finished("live-3")

    await until(finished, within=20, what="the run in the log", services=services)
    assert len(model_events(run_log.thread("live-3"), "model-response")) == 1
