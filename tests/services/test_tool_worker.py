"""The tool worker's logic on a real Redis: effectively-once execution, retries, timeouts,
dead letters, concurrency, commit positions and app loading.

Kafka is not involved here (tests/connected runs the same worker as processes on the real
broker): deliveries are built directly and a recording publisher stands in for the producer.
Redis is the real one (FLOWAI_REDIS_URL); each test uses its own key namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import pydantic
import pytest
from redis.asyncio import Redis
from services.tools.app import ToolApp, load_app
from services.tools.claims import InvocationLedger
from services.tools.command import build_parser, settings_from_args
from services.tools.offsets import OffsetTracker
from services.tools.worker import Delivery, ToolWorker, WorkerSettings

from flowai_harness import (
    RetryableToolError,
    RuntimeSpec,
    TaggedUnion,
    ToolContext,
    ToolDefinition,
    _native,
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_reference,
    define_runtime,
    define_specialist,
    define_tool,
    messages,
)
from flowai_harness.errors import AppLoadError, InvalidInputError
from flowai_harness.kafka import bus
from flowai_harness.kafka.bus import Topics
from flowai_harness.references import RedisReferenceStore, ReferenceHandle, reference_id
from flowai_harness.runtime import new_engine
from flowai_harness.tools import idempotency_key

TOPICS = Topics("unit")
FAST = WorkerSettings(
    concurrency=4, tool_timeout=2.0, max_attempts=3, retry_backoff=0.01, claim_poll=0.02
)


# --- fixtures --------------------------------------------------------------------------------


def ledger_for(redis: Redis, namespace: str, claim_ttl: float = 2.0) -> InvocationLedger:
    return InvocationLedger(redis, namespace=namespace, claim_ttl=claim_ttl, result_ttl=60)


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    recorded_before: bytes | None  # what Redis held for the invocation when it was sent

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.value)
        return body


@dataclass
class Recorder:
    """Stands in for the Kafka producer; notes what Redis had recorded at each send."""

    ledger: InvocationLedger
    sent: list[Sent] = field(default_factory=list)
    fail_next: int = 0

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unreachable (test)")
        body = orjson.loads(value)
        recorded = await self.ledger.recorded(body.get("causation_id") or "")
        self.sent.append(Sent(topic, key, value, headers, recorded))

    def results(self) -> list[Sent]:
        return [s for s in self.sent if s.topic == TOPICS.tool_results]

    def dead_letters(self) -> list[Sent]:
        return [s for s in self.sent if s.topic == TOPICS.dead_letters]


def make_spec(*tools: ToolDefinition) -> RuntimeSpec:
    agent = define_specialist(name="worker", model="claude-haiku-4-5", prompt="p", tools=tools)
    return define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})


def make_worker(
    redis: Redis,
    namespace: str,
    *tools: ToolDefinition,
    settings: WorkerSettings = FAST,
    claim_ttl: float = 2.0,
    services: dict[str, Any] | None = None,
    dispatcher: Any = None,
) -> tuple[ToolWorker, Recorder]:
    ledger = ledger_for(redis, namespace, claim_ttl)
    recorder = Recorder(ledger)
    app = ToolApp.from_spec(make_spec(*tools), services=services, action_dispatcher=dispatcher)
    return ToolWorker(app, ledger, recorder, TOPICS, settings), recorder


def invocation(tool: str, args: Any = None, *, n: int = 1, thread: str = "thread-1") -> bytes:
    return orjson.dumps(
        {
            "schema": "flowai.v1.ToolInvocation",
            "id": f"acme/{thread}/run-1/call-{n}-{uuid.uuid4().hex[:6]}",
            "tenant": "acme",
            "thread_id": thread,
            "run_id": "run-1",
            "causation_id": "acme/thread-1/3",
            "ts": 1_700_000_000_000,
            "payload": {
                "tool": tool,
                "tool_invocation_id": f"call-{n}",
                "args": args if args is not None else {},
                "agent": "worker",
            },
        }
    )


_offsets = iter(range(10**9))


def delivery(value: bytes | None, topic: str = "unit.tool-invocations") -> Delivery:
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    return Delivery(topic, 0, next(_offsets), b"key", value, (("traceparent", traceparent),))


def counting(
    calls: list[Any], result: Callable[[dict[str, Any]], Any] = lambda a: {"ok": True}
) -> Callable[[dict[str, Any], ToolContext], Any]:
    def handler(args: dict[str, Any], ctx: ToolContext) -> Any:
        calls.append(args)
        return result(args)

    return handler


def slow_tool(calls: list[Any], seconds: float) -> ToolDefinition:
    async def slow(args: dict[str, Any], ctx: ToolContext) -> str:
        calls.append(args)
        await asyncio.sleep(seconds)
        return "done"

    return define_tool("slow", {}).bind(slow)


# --- running an invocation -------------------------------------------------------------------


async def test_tool_invocation_result_is_recorded_then_published(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("add", {"a": int, "b": int}).bind(
        counting(calls, lambda a: {"sum": a["a"] + a["b"]})
    )
    worker, recorder = make_worker(redis, namespace, tool)
    message = invocation("add", {"a": 2, "b": 3})

    await worker.handle(delivery(message))

    [sent] = recorder.sent
    result = sent.body
    request = orjson.loads(message)
    assert sent.topic == "unit.tool-results"
    assert sent.key == b"acme/thread-1"
    assert result["schema"] == "flowai.v1.ToolResult"
    assert result["causation_id"] == request["id"]
    assert (result["tenant"], result["thread_id"], result["run_id"]) == (
        "acme",
        "thread-1",
        "run-1",
    )
    assert result["payload"] == {
        "invocation_id": request["id"],
        "tool_invocation_id": "call-1",
        "output": {"sum": 5},
    }
    # Recorded in Redis before it was published, byte for byte.
    assert sent.recorded_before == sent.value
    # The trace goes on: same trace id, a span of its own.
    [(name, value)] = sent.headers
    assert name == "traceparent"
    assert value.decode().split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert calls == [{"a": 2, "b": 3}]


async def test_tool_invocation_redelivered_returns_the_recorded_result(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("charge", {"cents": int}).bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool)
    message = invocation("charge", {"cents": 100})

    await worker.handle(delivery(message))
    await worker.handle(delivery(message))  # Kafka redelivers it (at least once)
    # A second worker, as after a rebalance, sees the same record.
    other, other_recorder = make_worker(redis, namespace, tool)
    await other.handle(delivery(message))

    assert len(calls) == 1
    first, second = recorder.results()
    [third] = other_recorder.results()
    assert first.value == second.value == third.value
    assert (worker.ran, worker.replayed, other.replayed) == (1, 1, 1)


async def test_tool_invocation_delivered_to_two_workers_at_once_runs_once(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = slow_tool(calls, 0.2)
    a, a_sent = make_worker(redis, namespace, tool)
    b, b_sent = make_worker(redis, namespace, tool)
    message = invocation("slow")

    await asyncio.gather(a.handle(delivery(message)), b.handle(delivery(message)))

    assert len(calls) == 1
    assert a_sent.results()[0].value == b_sent.results()[0].value


async def test_claim_of_a_dead_worker_expires_and_the_work_is_taken_over(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("effect", {}).bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool)
    message = invocation("effect")
    invocation_id = orjson.loads(message)["id"]
    # A worker claimed it and died: nothing renews its claim.
    await redis.set(worker.ledger.claim_key(invocation_id), "dead-worker:1", px=300)
    started = time.monotonic()

    await worker.handle(delivery(message))

    assert time.monotonic() - started >= 0.2
    assert len(calls) == 1
    assert recorder.results()[0].body["payload"]["output"] == {"ok": True}


async def test_claim_held_by_a_live_worker_waits_for_its_result(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("effect", {}).bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool)
    message = invocation("effect")
    invocation_id = orjson.loads(message)["id"]
    ledger = worker.ledger
    assert (await ledger.begin(invocation_id, "live-worker:1")).claimed

    waiting = asyncio.create_task(worker.handle(delivery(message)))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # it waits; it does not run the tool
    theirs = b'{"schema":"flowai.v1.ToolResult","tenant":"acme","thread_id":"thread-1"}'
    recorded, ours = await ledger.record(invocation_id, "live-worker:1", theirs)
    await asyncio.wait_for(waiting, 5)

    assert ours
    assert recorded == theirs
    assert calls == []
    assert [sent.value for sent in recorder.results()] == [theirs]


async def test_slow_tool_keeps_its_claim_past_the_claim_ttl(redis: Redis, namespace: str) -> None:
    calls: list[Any] = []
    tool = slow_tool(calls, 1.0)
    # The claim lives 0.3 s unless renewed; the tool takes 1 s.
    a, _ = make_worker(redis, namespace, tool, claim_ttl=0.3)
    b, b_sent = make_worker(redis, namespace, tool, claim_ttl=0.3)
    message = invocation("slow")
    running = asyncio.create_task(a.handle(delivery(message)))
    await asyncio.sleep(0.6)

    invocation_id = orjson.loads(message)["id"]
    assert (await b.ledger.begin(invocation_id, "b:probe")).held_ms > 0
    await asyncio.gather(running, b.handle(delivery(message)))

    assert len(calls) == 1
    assert b_sent.results()[0].body["payload"]["output"] == "done"


async def test_result_recorded_but_not_published_is_published_on_retry(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("effect", {}).bind(counting(calls))
    settings = WorkerSettings(retry_backoff=0.01, claim_poll=0.02, failure_backoff=0.01)
    worker, recorder = make_worker(redis, namespace, tool, settings=settings)
    recorder.fail_next = 1  # Kafka refuses the first publish, after the record

    await worker.handle(delivery(invocation("effect")))

    assert len(calls) == 1
    [sent] = recorder.results()
    assert sent.recorded_before == sent.value


async def test_kafka_failing_after_the_tool_ran_does_not_run_it_again(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []

    def unavailable(args: dict[str, Any], ctx: ToolContext) -> None:
        calls.append(args)
        raise RetryableToolError("upstream down")

    settings = WorkerSettings(max_attempts=1, failure_backoff=0.01, claim_poll=0.02)
    worker, recorder = make_worker(
        redis, namespace, define_tool("down", {}).bind(unavailable), settings=settings
    )
    recorder.fail_next = 2  # the dead letter cannot be published, twice

    await worker.handle(delivery(invocation("down")))

    assert len(calls) == 1
    assert len(recorder.dead_letters()) == 1
    [result] = recorder.results()
    assert result.body["payload"]["error"]["code"] == "TOOL_RETRYABLE"


# --- failures, retries, timeouts -------------------------------------------------------------


async def test_tool_invocation_plain_error_is_a_result_and_is_not_retried(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []

    def broken(args: dict[str, Any], ctx: ToolContext) -> None:
        calls.append(args)
        raise ValueError("no such customer")

    worker, recorder = make_worker(redis, namespace, define_tool("lookup", {}).bind(broken))

    await worker.handle(delivery(invocation("lookup")))

    assert len(calls) == 1
    [sent] = recorder.sent  # no dead letter: the model sees an ordinary tool failure
    assert sent.body["payload"]["error"] == {
        "message": "tool 'lookup' failed: ValueError: no such customer",
        "code": "TOOL_FAILED",
    }


async def test_tool_invocation_retryable_error_is_retried_until_it_succeeds(
    redis: Redis, namespace: str
) -> None:
    calls: list[float] = []

    def flaky(args: dict[str, Any], ctx: ToolContext) -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryableToolError("upstream busy")
        return "third time lucky"

    settings = WorkerSettings(max_attempts=3, retry_backoff=0.05, claim_poll=0.02)
    worker, recorder = make_worker(
        redis, namespace, define_tool("flaky", {}).bind(flaky), settings=settings
    )

    await worker.handle(delivery(invocation("flaky")))

    assert len(calls) == 3
    # Exponential backoff with jitter in [0.5, 1]: 0.05 s then 0.1 s, at least half of each.
    assert calls[1] - calls[0] >= 0.025
    assert calls[2] - calls[1] >= 0.05
    [sent] = recorder.sent
    assert sent.body["payload"]["output"] == "third time lucky"


async def test_tool_invocation_retries_exhausted_give_an_error_result_and_a_dead_letter(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []

    class RateLimited(RetryableToolError):
        code = "UPSTREAM_RATE_LIMITED"

    def limited(args: dict[str, Any], ctx: ToolContext) -> None:
        calls.append(args)
        raise RateLimited("429 from upstream")

    worker, recorder = make_worker(redis, namespace, define_tool("limited", {}).bind(limited))
    message = invocation("limited")

    await worker.handle(delivery(message))

    assert len(calls) == FAST.max_attempts
    letter, result = recorder.sent  # the dead letter first, then the result
    assert letter.topic == "unit.dead-letters"
    assert letter.key == b"acme/thread-1"
    assert letter.body["schema"] == "flowai.v1.DeadLetter"
    assert letter.body["payload"]["reason"] == "TOOL_RETRIES_EXHAUSTED"
    assert "UPSTREAM_RATE_LIMITED" in letter.body["payload"]["message"]
    assert letter.body["payload"]["service"] == "tools"
    assert letter.body["payload"]["original"] == message.decode()
    assert letter.body["payload"]["original_id"] == orjson.loads(message)["id"]
    error = result.body["payload"]["error"]
    assert error["code"] == "UPSTREAM_RATE_LIMITED"
    assert error["message"] == (
        "tool 'limited' failed: RateLimited: [UPSTREAM_RATE_LIMITED] 429 from upstream "
        "(gave up after 3 attempts)"
    )


async def test_tool_invocation_timeout_is_retried_then_reported(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []

    async def hangs(args: dict[str, Any], ctx: ToolContext) -> None:
        calls.append(args)
        await asyncio.sleep(30)

    settings = WorkerSettings(tool_timeout=0.05, max_attempts=2, retry_backoff=0.01)
    worker, recorder = make_worker(
        redis, namespace, define_tool("hangs", {}).bind(hangs), settings=settings
    )

    await worker.handle(delivery(invocation("hangs")))

    assert len(calls) == 2
    letter, result = recorder.sent
    assert letter.body["payload"]["reason"] == "TOOL_RETRIES_EXHAUSTED"
    assert result.body["payload"]["error"]["code"] == "TOOL_TIMEOUT"
    assert "gave up after 2 attempts" in result.body["payload"]["error"]["message"]


async def test_tool_invocation_blocking_sync_handler_runs_in_a_thread_and_times_out(
    redis: Redis, namespace: str
) -> None:
    release = threading.Event()
    threads: list[str] = []

    def blocks(args: dict[str, Any], ctx: ToolContext) -> None:
        threads.append(threading.current_thread().name)
        release.wait(5)

    settings = WorkerSettings(tool_timeout=0.1, max_attempts=1)
    worker, recorder = make_worker(
        redis, namespace, define_tool("blocks", {}).bind(blocks), settings=settings
    )
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        await worker.handle(delivery(invocation("blocks")))
        ticking.cancel()
    finally:
        release.set()

    assert threads
    assert threads[0] != threading.main_thread().name
    assert ticks >= 3  # the event loop went on while the handler blocked
    assert recorder.results()[0].body["payload"]["error"]["code"] == "TOOL_TIMEOUT"


async def test_tool_invocation_progress_and_custom_events_travel_in_the_result(
    redis: Redis, namespace: str
) -> None:
    def reports(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        ctx.progress("halfway", fraction=0.5)
        ctx.emit("rows", {"count": 3})
        return {"region": ctx.services["region"]}

    worker, recorder = make_worker(
        redis, namespace, define_tool("report", {}).bind(reports), services={"region": "eu"}
    )

    await worker.handle(delivery(invocation("report")))

    payload = recorder.sent[0].body["payload"]
    assert payload["output"] == {"region": "eu"}
    assert payload["events"] == [
        {
            "type": "tool-progress",
            "toolName": "report",
            "toolCallId": "call-1",
            "label": "halfway",
            "phaseIndex": 0,
            "totalPhases": 1,
            "toolInvocationId": "call-1",
            "message": "halfway",
            "fraction": 0.5,
        },
        {"type": "custom", "name": "rows", "data": {"count": 3}, "toolInvocationId": "call-1"},
    ]


async def test_tool_result_matches_the_embedded_runtime(redis: Redis, namespace: str) -> None:
    def doubles(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        ctx.progress("working")
        return {"n": args["n"] * 2}

    tool = define_tool("double", {"n": int}).bind(doubles)
    runtime = create_runtime(make_spec(tool), interpreter="scripted")
    prompt = orjson.dumps({"tool": "double", "args": {"n": 21}}).decode()
    events = [event async for event in runtime.run_specialist("worker", prompt)]
    [result] = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"]
    progress = [e for e in events if e["type"] == "tool-progress"]

    # The same call through a tool worker.
    envelope = orjson.loads(invocation("double", {"n": 21}))
    envelope["payload"]["tool_invocation_id"] = result["toolInvocationId"]
    worker, recorder = make_worker(redis, namespace, tool)
    await worker.handle(delivery(orjson.dumps(envelope)))
    distributed = recorder.sent[0].body["payload"]

    assert distributed["output"] == result["result"] == {"n": 42}
    assert distributed["events"] == progress
    assert distributed["tool_invocation_id"] == result["toolInvocationId"]


# --- what cannot run -------------------------------------------------------------------------


async def test_tool_invocation_of_an_unknown_tool_gives_an_error_result_and_a_dead_letter(
    redis: Redis, namespace: str
) -> None:
    declared_only = define_tool("declared_only", {})  # no handler in this worker's app
    worker, recorder = make_worker(redis, namespace, declared_only)

    await worker.handle(delivery(invocation("nowhere")))
    await worker.handle(delivery(invocation("declared_only", n=2)))

    letters, results = recorder.dead_letters(), recorder.results()
    assert [letter.body["payload"]["reason"] for letter in letters] == ["TOOL_NOT_AVAILABLE"] * 2
    assert [result.body["payload"]["error"]["code"] for result in results] == [
        "TOOL_NOT_AVAILABLE"
    ] * 2
    assert "does not declare it" in results[0].body["payload"]["error"]["message"]
    assert "no handler" in results[1].body["payload"]["error"]["message"]


async def test_tool_invocation_of_another_tenant_is_dead_lettered_and_not_run(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    worker, recorder = make_worker(redis, namespace, define_tool("ok", {}).bind(counting(calls)))
    theirs = {**orjson.loads(invocation("ok")), "tenant": "globex"}

    await worker.handle(delivery(orjson.dumps(theirs)))

    assert calls == []
    assert recorder.results() == []
    [letter] = recorder.dead_letters()
    assert letter.body["payload"]["reason"] == "TENANT_MISMATCH"
    assert (
        "for tenant 'globex', but this tool worker serves tenant 'acme'"
        in (letter.body["payload"]["message"])
    )
    assert letter.key == b"globex/thread-1"
    # Nothing was claimed or recorded for it either.
    assert await redis.exists(worker.ledger.claim_key(theirs["id"])) == 0
    assert await worker.ledger.recorded(theirs["id"]) is None


async def test_plan_step_of_another_tenant_is_dead_lettered_and_not_dispatched(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    dispatched: Dispatched = []
    worker, recorder = plan_worker(
        redis, namespace, reference_store, recording_dispatcher(dispatched)
    )
    theirs = {**orjson.loads(plan_step([])), "tenant": "globex"}

    await worker.handle(delivery(orjson.dumps(theirs), topic="unit.plan-steps"))

    assert dispatched == []
    assert recorder.results() == []
    assert [letter.body["payload"]["reason"] for letter in recorder.dead_letters()] == [
        "TENANT_MISMATCH"
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"n": "21"}, "/n"),
        ({}, "n"),
        ({"n": 1, "extra": True}, "extra"),
    ],
    ids=["wrong-type", "missing", "unknown-field"],
)
async def test_tool_invocation_arguments_not_matching_the_schema_are_an_error_result_not_run(
    redis: Redis, namespace: str, args: dict[str, Any], problem: str
) -> None:
    class Args(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        n: int

    calls: list[Any] = []
    worker, recorder = make_worker(
        redis, namespace, define_tool("double", Args).bind(counting(calls))
    )
    message = invocation("double", args)

    await worker.handle(delivery(message))
    await worker.handle(delivery(message))  # redelivered: the recorded result again

    assert calls == []
    results = recorder.results()
    assert len(results) == 2
    assert results[0].value == results[1].value
    error = results[0].body["payload"]["error"]
    assert error["code"] == "TOOL_ARGS_INVALID"
    assert error["message"].startswith("arguments for `double` are invalid: ")
    assert problem in error["message"]
    # The engine's own validator says the same about these arguments.
    with pytest.raises(InvalidInputError):
        _native.validate_json(orjson.dumps(Args.model_json_schema()), orjson.dumps(args))
    [letter] = recorder.dead_letters()
    assert letter.body["payload"]["reason"] == "TOOL_ARGS_INVALID"


async def test_tool_invocation_valid_arguments_pass_the_schema_check(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("double", {"n": int, "note": str | None}).bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool)

    await worker.handle(delivery(invocation("double", {"n": 2})))

    assert calls == [{"n": 2}]
    assert recorder.results()[0].body["payload"]["output"] == {"ok": True}


# --- crashes and side effects: idempotency keys, at-most-once tools ---------------------------


async def test_tool_invocation_every_run_gets_the_same_idempotency_key(
    redis: Redis, namespace: str
) -> None:
    keys: list[str] = []

    def remember(args: Any, ctx: ToolContext) -> str:
        keys.append(ctx.idempotency_key)
        return "ok"

    tool = define_tool("effect", {}).bind(remember)
    worker, _ = make_worker(redis, namespace, tool, claim_ttl=0.3)
    message = invocation("effect")
    invocation_id = orjson.loads(message)["id"]
    runtime = create_runtime(make_spec(tool), interpreter="scripted")

    await worker.handle(delivery(message))
    # The worker died after the effect, before recording it: the result is gone, so the
    # next delivery runs the tool again, with the same key to give the downstream API.
    await redis.delete(worker.ledger.result_key(invocation_id))
    await worker.handle(delivery(message))
    prompt = orjson.dumps({"tool": "effect", "args": {}}).decode()
    events = [event async for event in runtime.run_specialist("worker", prompt, "embedded")]
    [call] = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "call"]

    assert keys[0] == keys[1] == idempotency_key(invocation_id)
    assert uuid.UUID(keys[0]).version == 5
    # The embedded runtime derives it the same way, from its own invocation id.
    embedded_id = f"acme/embedded/run-1/{call['toolInvocationId']}"
    assert keys[2] == idempotency_key(embedded_id) != keys[0]


def blocking_tool(started: asyncio.Event, calls: list[Any]) -> ToolDefinition:
    async def pay(args: dict[str, Any], ctx: ToolContext) -> str:
        calls.append(args)
        started.set()
        await asyncio.Event().wait()  # until cancelled
        return "paid"

    return define_tool("pay", {}, delivery="at_most_once").bind(pay)


async def test_tool_invocation_at_most_once_stopped_mid_run_is_outcome_unknown_not_run_again(
    redis: Redis, namespace: str
) -> None:
    started, calls = asyncio.Event(), []
    tool = blocking_tool(started, calls)
    first, _ = make_worker(redis, namespace, tool)
    second, recorder = make_worker(redis, namespace, tool)
    message = invocation("pay")
    invocation_id = orjson.loads(message)["id"]

    running = asyncio.create_task(first.handle(delivery(message)))
    await asyncio.wait_for(started.wait(), 5)
    # Stopped past its shutdown grace: the claim is given back, the started mark stays.
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await redis.exists(first.ledger.claim_key(invocation_id)) == 0

    await second.handle(delivery(message))
    await second.handle(delivery(message))  # and again: the recorded "unknown"

    assert len(calls) == 1
    results = recorder.results()
    assert len(results) == 2
    assert results[0].value == results[1].value
    error = results[0].body["payload"]["error"]
    assert error["code"] == "TOOL_OUTCOME_UNKNOWN"
    assert "may or may not have run" in error["message"]
    assert [letter.body["payload"]["reason"] for letter in recorder.dead_letters()] == [
        "TOOL_OUTCOME_UNKNOWN"
    ]
    assert second.unknown == 1
    assert await redis.exists(second.ledger.started_key(invocation_id)) == 0


async def test_tool_invocation_at_most_once_whose_worker_died_waits_for_the_claim_then_is_unknown(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("pay", {}, delivery="at_most_once").bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool, claim_ttl=0.3)
    message = invocation("pay")
    invocation_id = orjson.loads(message)["id"]
    # A worker claimed it, marked it started and died: nothing renews the claim.
    assert (await worker.ledger.begin(invocation_id, "dead:1")).claimed
    assert await worker.ledger.arm(invocation_id, "dead:1")

    await worker.handle(delivery(message))

    assert calls == []
    assert recorder.results()[0].body["payload"]["error"]["code"] == "TOOL_OUTCOME_UNKNOWN"


async def test_tool_invocation_at_least_once_whose_worker_died_runs_again(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("effect", {}).bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool, claim_ttl=0.3)
    message = invocation("effect")
    invocation_id = orjson.loads(message)["id"]
    assert (await worker.ledger.begin(invocation_id, "dead:1")).claimed

    await worker.handle(delivery(message))

    assert len(calls) == 1
    assert recorder.results()[0].body["payload"]["output"] == {"ok": True}


async def test_tool_invocation_at_most_once_that_finished_is_replayed_not_unknown(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    tool = define_tool("pay", {}, delivery="at_most_once").bind(counting(calls))
    worker, recorder = make_worker(redis, namespace, tool)
    message = invocation("pay")
    invocation_id = orjson.loads(message)["id"]

    await worker.handle(delivery(message))
    await worker.handle(delivery(message))

    assert len(calls) == 1
    assert [r.body["payload"]["output"] for r in recorder.results()] == [{"ok": True}] * 2
    assert await redis.exists(worker.ledger.started_key(invocation_id)) == 0
    assert worker.unknown == 0


async def test_tool_invocation_at_most_once_timeout_is_not_retried(
    redis: Redis, namespace: str
) -> None:
    calls: list[Any] = []
    once = slow_tool(calls, 5.0)
    once = define_tool("slow", {}, delivery="at_most_once").bind(once.handler)  # type: ignore[arg-type]
    settings = WorkerSettings(tool_timeout=0.2, max_attempts=3, retry_backoff=0.01)
    worker, recorder = make_worker(redis, namespace, once, settings=settings)

    await worker.handle(delivery(invocation("slow")))

    assert len(calls) == 1
    assert recorder.results()[0].body["payload"]["error"]["code"] == "TOOL_TIMEOUT"


async def test_arm_needs_the_claim(redis: Redis, namespace: str) -> None:
    ledger = ledger_for(redis, namespace)

    assert (await ledger.begin("inv-1", "a:1")).claimed
    assert not await ledger.arm("inv-1", "b:1")
    assert await redis.exists(ledger.started_key("inv-1")) == 0
    assert await ledger.arm("inv-1", "a:1")
    assert await redis.exists(ledger.started_key("inv-1")) == 1
    # The owner itself finds its own claim held, not "unknown".
    assert (await ledger.begin("inv-1", "a:2")).held_ms > 0


@pytest.mark.parametrize(
    ("value", "reason", "encoding"),
    [
        (b"\xff\xfe not json", "INPUT_MALFORMED", "base64"),
        (b"{not json", "INPUT_MALFORMED", "utf-8"),
        (b"[1, 2]", "INPUT_MALFORMED", "utf-8"),
        (None, "INPUT_MALFORMED", "utf-8"),
        (b'{"schema": "flowai.v1.ToolInvocation", "id": "x"}', "INPUT_MALFORMED", "utf-8"),
        (
            orjson.dumps(
                {
                    "schema": "flowai.v1.Query",
                    "id": "q-1",
                    "tenant": "acme",
                    "thread_id": "t",
                    "ts": 1,
                    "payload": {"prompt": "hi"},
                }
            ),
            "INPUT_UNKNOWN_SCHEMA",
            "utf-8",
        ),
        (
            orjson.dumps(
                {
                    "schema": "flowai.v1.ToolInvocation",
                    "id": "i-1",
                    "tenant": "acme",
                    "thread_id": "t",
                    "run_id": "r",
                    "ts": 1,
                    "payload": {"tool": 3},
                }
            ),
            "INPUT_MALFORMED",
            "utf-8",
        ),
        (
            orjson.dumps({**orjson.loads(invocation("ok")), "run_id": None}),
            "INPUT_MALFORMED",
            "utf-8",
        ),
    ],
    ids=[
        "binary",
        "truncated",
        "not-an-object",
        "tombstone",
        "no-payload",
        "query",
        "payload",
        "no-run-id",
    ],
)
async def test_bad_message_is_dead_lettered_and_the_worker_goes_on(
    redis: Redis, namespace: str, value: bytes | None, reason: str, encoding: str
) -> None:
    calls: list[Any] = []
    worker, recorder = make_worker(redis, namespace, define_tool("ok", {}).bind(counting(calls)))

    await worker.handle(delivery(value))
    await worker.handle(delivery(invocation("ok")))

    letter, result = recorder.sent
    payload = letter.body["payload"]
    assert payload["reason"] == reason
    assert payload["encoding"] == encoding
    assert payload["source"]["topic"] == "unit.tool-invocations"
    assert result.body["payload"]["output"] == {"ok": True}


# --- plan steps and references --------------------------------------------------------------


class Product(pydantic.BaseModel):
    sku: str
    name: str


class Reorder(pydantic.BaseModel):
    kind: Literal["reorder"]
    products: ReferenceHandle
    quantity: int


class Hold(pydantic.BaseModel):
    kind: Literal["hold"]
    sku: str


class Restock(pydantic.BaseModel):
    reason: str
    actions: list[TaggedUnion(Reorder, Hold)]  # type: ignore[valid-type]


STOCK = [{"sku": "A-100", "name": "Espresso beans"}, {"sku": "C-007", "name": "Cold brew"}]
PRODUCTS = define_reference("product_set", list[Product], glimpse=lambda v: {"count": len(v)})
RESTOCK = define_plan("restock", Restock)
Dispatched = list[tuple[list[dict[str, Any]], dict[str, Any]]]


def _find_products(args: dict[str, Any], ctx: ToolContext) -> Any:
    return ctx.references.create(PRODUCTS, STOCK)


find_products = define_tool("find_products", {}).bind(_find_products)


def plan_spec() -> RuntimeSpec:
    agents = [
        define_coordinator(
            "boss", model="claude-sonnet-4-6", prompt="r", routes=["planner", "executor"]
        ),
        define_planner(
            "planner", model="claude-sonnet-4-6", prompt="p", plan=RESTOCK, tools=[find_products]
        ),
        define_executor("executor", model="claude-haiku-4-5", prompt="e", plan=RESTOCK),
    ]
    return define_runtime(
        ("acme", "v1"),
        agents=agents,
        providers={"anthropic": {}},
        plans=[RESTOCK],
        references=[PRODUCTS],
    )


@pytest.fixture
def reference_store(namespace: str) -> Iterator[RedisReferenceStore]:
    """The Redis reference store, in the test's namespace (deleted with it)."""
    url = os.environ["FLOWAI_REDIS_URL"]  # the redis fixture skipped the test without it
    store = RedisReferenceStore.from_url(url, namespace=f"{namespace}:refs")
    yield store
    store.close()


def plan_worker(
    redis: Redis,
    namespace: str,
    store: RedisReferenceStore,
    dispatcher: Any = None,
    settings: WorkerSettings = FAST,
) -> tuple[ToolWorker, Recorder]:
    ledger = ledger_for(redis, namespace)
    recorder = Recorder(ledger)
    app = ToolApp.from_spec(
        plan_spec(), services={"db": "a database"}, action_dispatcher=dispatcher
    )
    worker = ToolWorker(app, ledger, recorder, TOPICS, settings, references=store)
    return worker, recorder


def plan_step(handles: list[dict[str, Any]], /, **payload: Any) -> bytes:
    """A PlanStep as the engine emits it (docs/wire.md)."""
    step_id = f"acme/thread-1/run-1/scripted-tool-4-{uuid.uuid4().hex[:6]}"
    body = {
        "step_id": step_id,
        "tool_invocation_id": "scripted-tool-4",
        "plan_id": "p1",
        "spec_name": "restock",
        "actions": [
            {
                "kind": "reorder",
                "payload": {"kind": "reorder", "products": handles[0], "quantity": 5},
                "references": handles,
            }
        ]
        if handles
        else [{"kind": "hold", "payload": {"kind": "hold", "sku": "A-1"}, "references": []}],
        "context": {"reason": "low stock"},
        "references": handles,
        "agent": "executor",
    }
    body.update(payload)
    return orjson.dumps(
        {
            "schema": "flowai.v1.PlanStep",
            "id": step_id,
            "tenant": "acme",
            "thread_id": "thread-1",
            "run_id": "run-1",
            "causation_id": "acme/thread-1/21",
            "ts": 1,
            "payload": body,
        }
    )


def recording_dispatcher(dispatched: Dispatched) -> Callable[..., Any]:
    def dispatch(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]:
        dispatched.append((actions, ctx))
        return {"entitiesAffected": len(actions), "summary": "ordered"}

    return dispatch


async def test_plan_step_goes_to_the_action_dispatcher_once_as_a_tool_result(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    dispatched: Dispatched = []
    worker, recorder = plan_worker(
        redis, namespace, reference_store, recording_dispatcher(dispatched)
    )
    handle = reference_store.create("acme", PRODUCTS, STOCK)
    message = plan_step([{"kind": "product_set", "id": handle["id"]}])
    step = orjson.loads(message)

    await worker.handle(delivery(message, topic="unit.plan-steps"))
    await worker.handle(delivery(message, topic="unit.plan-steps"))  # redelivered

    [(actions, ctx)] = dispatched
    assert actions == step["payload"]["actions"]
    # The embedded runtime's context: the referenced values hydrated from the store.
    assert ctx == {
        "resolved_refs": {"product_set": {handle["id"]: STOCK}},
        "plan_id": "p1",
        "spec_name": "restock",
        "context": {"reason": "low stock"},
        "thread_id": "thread-1",
        "services": {"db": "a database"},
    }
    first, second = recorder.results()
    assert first.value == second.value
    assert first.key == b"acme/thread-1"
    assert first.recorded_before == first.value
    result = first.body
    assert result["schema"] == "flowai.v1.ToolResult"
    assert result["causation_id"] == step["id"]
    assert result["payload"] == {
        "invocation_id": step["id"],
        "tool_invocation_id": "scripted-tool-4",
        "output": {"entitiesAffected": 1, "summary": "ordered"},
    }
    decoded = messages.decode(first.value)  # the ToolResult model (schemas/v1) accepts it
    assert isinstance(decoded, messages.ToolResult)
    assert decoded.payload.invocation_id == step["id"]


async def test_plan_step_async_dispatcher_and_its_failures_are_results(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    async def failing(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
        raise RuntimeError("warehouse API down")

    worker, recorder = plan_worker(redis, namespace, reference_store, failing)

    await worker.handle(delivery(plan_step([]), topic="unit.plan-steps"))

    [sent] = recorder.sent  # an ordinary failure: the plan fails, no dead letter
    assert sent.body["payload"]["error"] == {
        "message": "tool 'action dispatcher' failed: RuntimeError: warehouse API down",
        "code": "TOOL_FAILED",
    }


async def test_plan_step_citing_a_missing_reference_fails_before_the_dispatcher_runs(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    dispatched: Dispatched = []
    worker, recorder = plan_worker(
        redis, namespace, reference_store, recording_dispatcher(dispatched)
    )

    await worker.handle(
        delivery(
            plan_step([{"kind": "product_set", "id": "ref_" + "0" * 32}]), topic="unit.plan-steps"
        )
    )

    assert dispatched == []
    error = recorder.results()[0].body["payload"]["error"]
    assert error["code"] == "REFERENCE_NOT_FOUND"


async def test_plan_step_dispatcher_past_the_timeout_is_a_timeout_result_and_not_retried(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    calls: list[int] = []
    never = asyncio.Event()

    async def hangs(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
        calls.append(1)
        await never.wait()

    settings = WorkerSettings(tool_timeout=0.1, max_attempts=3, retry_backoff=0.01)
    worker, recorder = plan_worker(redis, namespace, reference_store, hangs, settings)

    await worker.handle(delivery(plan_step([]), topic="unit.plan-steps"))

    assert calls == [1]  # actions are not assumed idempotent: one attempt
    error = recorder.results()[0].body["payload"]["error"]
    assert error["code"] == "TOOL_TIMEOUT"
    assert "action dispatcher did not finish within 0.1 s" in error["message"]


async def test_plan_step_without_an_action_dispatcher_fails_the_plan_and_is_dead_lettered(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    worker, recorder = plan_worker(redis, namespace, reference_store)

    await worker.handle(delivery(plan_step([]), topic="unit.plan-steps"))

    [letter] = recorder.dead_letters()
    assert letter.body["payload"]["reason"] == "NO_ACTION_DISPATCHER"
    assert "action_dispatcher" in letter.body["payload"]["message"]
    [result] = recorder.results()  # the run is told, so it does not wait forever
    assert result.body["payload"]["error"]["code"] == "NO_ACTION_DISPATCHER"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"plan_id": None}, "payload 'plan_id' must be a string"),
        ({"actions": {"kind": "x"}}, "payload 'actions' must be a list"),
        ({"tool_invocation_id": 4}, "payload 'tool_invocation_id' must be a string"),
        ({"references": "ref_1"}, "payload 'references' must be a list"),
    ],
)
async def test_plan_step_malformed_is_dead_lettered(
    redis: Redis,
    namespace: str,
    reference_store: RedisReferenceStore,
    change: dict[str, Any],
    problem: str,
) -> None:
    dispatched: Dispatched = []
    worker, recorder = plan_worker(
        redis, namespace, reference_store, recording_dispatcher(dispatched)
    )

    await worker.handle(delivery(plan_step([], **change), topic="unit.plan-steps"))

    [letter] = recorder.sent
    assert letter.topic == TOPICS.dead_letters
    assert letter.body["payload"]["reason"] == "INPUT_MALFORMED"
    assert problem in letter.body["payload"]["message"]
    assert dispatched == []


async def test_reference_tools_and_ctx_references_use_the_reference_store(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    worker, recorder = plan_worker(redis, namespace, reference_store)

    await worker.handle(delivery(invocation("find_products")))
    handle = recorder.results()[-1].body["payload"]["output"]
    await worker.handle(delivery(invocation("resolveRef", {"ref": handle}, n=2)))
    await worker.handle(delivery(invocation("glimpseRef", {"ref": handle}, n=3)))
    missing = {"kind": "product_set", "id": "ref_" + "1" * 32}
    await worker.handle(delivery(invocation("resolveRef", {"ref": missing}, n=4)))

    created, resolved, glimpsed, unknown = (r.body["payload"] for r in recorder.results())
    assert created["output"] == {"kind": "product_set", "id": handle["id"], "glimpse": {"count": 2}}
    assert resolved["output"] == STOCK
    assert glimpsed["output"] == {"count": 2}
    assert unknown["error"]["code"] == "REFERENCE_NOT_FOUND"
    # The payload lives in Redis, where every worker (and the next process) finds it.
    assert (
        RedisReferenceStore.from_url(
            os.environ["FLOWAI_REDIS_URL"], namespace=f"{namespace}:refs"
        ).resolve("acme", handle)
        == STOCK
    )


def _ask(agent: str, *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    nested = {"script": [{"tool": tool, "args": args} for tool, args in calls]}
    return {"tool": "call_agent", "args": {"agent": agent, "prompt": json.dumps(nested)}}


async def test_plan_step_of_an_engine_plan_is_executed_through_the_worker(
    redis: Redis, namespace: str, reference_store: RedisReferenceStore
) -> None:
    """The engine's own effects, answered by the worker: the contract without Kafka."""
    dispatched: Dispatched = []
    worker, recorder = plan_worker(
        redis, namespace, reference_store, recording_dispatcher(dispatched)
    )
    handle = {"kind": "product_set", "id": reference_id("acme", "product_set", STOCK)}
    body = {"reason": "low", "actions": [{"kind": "reorder", "products": handle, "quantity": 5}]}
    prompt = json.dumps(
        {
            "script": [
                _ask(
                    "planner",
                    ("find_products", {}),
                    ("storePlan", {"specName": "restock", "planId": "p1", "body": body}),
                ),
                _ask(
                    "executor", ("glimpseRef", {"ref": handle}), ("executePlan", {"planId": "p1"})
                ),
            ]
        }
    )
    engine = new_engine(plan_spec(), {"kind": "scripted"})
    inputs = [envelope("flowai.v1.Query", {"prompt": prompt, "agent": None})]
    events: list[dict[str, Any]] = []
    topics = {
        "flowai.v1.ToolInvocation": "unit.tool-invocations",
        "flowai.v1.PlanStep": "unit.plan-steps",
    }
    while inputs:
        outputs = engine.handle_many(inputs)
        inputs = []
        for kind, _thread, data in outputs:
            assert kind in (_native.EVENT, _native.EFFECT), data  # no rejection
            body_ = orjson.loads(data)
            if kind == _native.EVENT:
                events.append(body_["payload"])
            elif body_["schema"] == "flowai.v1.ApprovalRequest":
                decision = {"approval_id": body_["id"], "outcome": "approve", "approver": "alice"}
                inputs.append(envelope("flowai.v1.ApprovalDecision", decision))
            else:
                await worker.handle(delivery(data, topic=topics[body_["schema"]]))
                inputs.append(recorder.results()[-1].value)

    moves = [
        (e["data"]["from"], e["data"]["to"]) for e in events if e["type"] == "plan-status-change"
    ]
    assert moves[-2:] == [("approved", "executing"), ("executing", "executed")]
    [(_actions, ctx)] = dispatched
    assert ctx["resolved_refs"] == {"product_set": {handle["id"]: STOCK}}
    results = {
        e["toolName"]: e["result"]
        for e in events
        if e["type"] == "tool-invocation" and e["state"] == "result"
    }
    assert results["glimpseRef"] == {"count": 2}
    assert results["executePlan"]["status"] == "executed"
    assert [e["type"] for e in events[-2:]] == ["finish", "tool-agent"]


_inputs = iter(range(10**9))


def envelope(schema: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "schema": schema,
            "id": f"in-{next(_inputs)}",
            "tenant": "acme",
            "thread_id": "thread-1",
            "run_id": None,
            "causation_id": None,
            "ts": bus.now_ms(),
            "payload": payload,
        }
    )


# --- concurrency and commit positions --------------------------------------------------------


async def test_concurrency_is_bounded_per_worker(redis: Redis, namespace: str) -> None:
    running = 0
    peak = 0

    async def busy(args: dict[str, Any], ctx: ToolContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    settings = WorkerSettings(concurrency=3, claim_poll=0.02)
    worker, recorder = make_worker(
        redis, namespace, define_tool("busy", {}).bind(busy), settings=settings
    )

    await asyncio.gather(*(worker.handle(delivery(invocation("busy", n=n))) for n in range(10)))

    assert peak == 3
    assert len(recorder.results()) == 10


def test_commit_position_is_the_lowest_offset_not_done() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.start("p0", offset)
    tracker.start("p1", 0)

    tracker.finish("p0", 11)
    tracker.finish("p0", 13)
    assert tracker.to_commit() == {}  # 10 is still running: nothing can be committed

    tracker.finish("p0", 10)
    assert tracker.to_commit() == {"p0": 12}  # 12 still runs, 13 is done but waits
    tracker.committed({"p0": 12})
    assert tracker.to_commit() == {}

    tracker.finish("p0", 12)
    tracker.finish("p1", 0)
    assert tracker.to_commit() == {"p0": 14, "p1": 1}
    assert tracker.in_flight("p0") == 0


def test_revoked_partition_is_forgotten_and_out_of_order_start_refused() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("p0", 5)
    tracker.forget(["p0"])
    tracker.finish("p0", 5)  # finished after the revoke: the new owner commits it

    assert tracker.to_commit() == {}
    tracker.start("p0", 3)  # redelivered from the committed offset after re-assignment
    with pytest.raises(ValueError, match="offset order"):
        tracker.start("p0", 2)


def test_offset_tracker_keeps_its_memory_bounded() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(5000):
        tracker.start("p", offset)
        tracker.finish("p", offset)

    assert tracker.to_commit() == {"p": 5000}
    assert len(tracker._partitions["p"].started) < 2100


# --- loading the app and the command line ----------------------------------------------------

APP_MODULE = """
from flowai_harness import define_runtime, define_specialist, define_tool

def _echo(args, ctx):
    return args

echo = define_tool("echo", {"text": str}).bind(_echo)
later = define_tool("later", {})
agent = define_specialist(name="w", model="claude-haiku-4-5", prompt="p", tools=[echo, later])
runtime = define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})

def make_runtime():
    return runtime

async def _dispatch(actions, ctx):
    return {"entitiesAffected": 0}

make_runtime.action_dispatcher = _dispatch
HOST = {"db": "a database"}

def host():
    return HOST
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"toolapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_app_from_a_spec_with_services(app_module: str) -> None:
    app = load_app(f"{app_module}:runtime", f"{app_module}:HOST")

    assert set(app.tools) == {"echo"}
    assert app.missing == ("later",)
    assert app.services == {"db": "a database"}
    assert app.action_dispatcher is None
    assert app.tools["echo"].is_async  # the sync handler runs in a thread


def test_load_app_from_a_factory_with_an_action_dispatcher(app_module: str) -> None:
    app = load_app(f"{app_module}:make_runtime", f"{app_module}:host")

    assert set(app.tools) == {"echo"}
    assert app.services == {"db": "a database"}
    assert app.action_dispatcher is not None


def test_load_app_refuses_services_that_are_not_a_mapping(app_module: str) -> None:
    with pytest.raises(AppLoadError, match=r"--services .* must name a mapping"):
        load_app(f"{app_module}:runtime", f"{app_module}:agent")
    with pytest.raises(AppLoadError, match="no attribute"):
        load_app(f"{app_module}:nothing")


def test_command_line_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWAI_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("FLOWAI_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("FLOWAI_TOPIC_PREFIX", "shop")

    settings = settings_from_args(build_parser().parse_args(["--app", "m:a"]))

    assert (settings.bootstrap, settings.redis_url, settings.group_id) == (
        "kafka:9092",
        "redis://redis:6379/0",
        "shop.tools",
    )
    assert settings.worker.concurrency == 8
    assert settings.worker.tool_timeout == 30.0
    assert settings.worker.max_attempts == 3
    assert settings.claim_ttl > settings.worker.tool_timeout
    assert settings.result_ttl == 7 * 24 * 3600


def test_command_line_durability_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWAI_ALLOW_VOLATILE_LEDGER", "FLOWAI_ALLOW_UNREPLICATED", "FLOWAI_REPLICATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWAI_INSTANCE_ID", "tools-{hostname}")

    defaults = settings_from_args(build_parser().parse_args(["--app", "m:a"]))

    assert defaults.allow_volatile_ledger is False
    assert defaults.allow_unreplicated is False
    assert defaults.replication is None  # bus.ensure_topics decides from the cluster
    assert defaults.min_insync_replicas is None
    assert defaults.instance_id == f"tools-{socket.gethostname()}"

    monkeypatch.setenv("FLOWAI_ALLOW_VOLATILE_LEDGER", "1")
    monkeypatch.setenv("FLOWAI_ALLOW_UNREPLICATED", "yes")
    told = settings_from_args(
        build_parser().parse_args(
            ["--app", "m:a", "--replication", "3", "--min-insync-replicas", "2"]
        )
    )

    assert (told.allow_volatile_ledger, told.allow_unreplicated) == (True, True)
    assert (told.replication, told.min_insync_replicas) == (3, 2)


def test_a_flag_variable_that_is_not_a_flag_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWAI_ALLOW_VOLATILE_LEDGER", "maybe")

    with pytest.raises(SystemExit) as info:
        build_parser()

    assert info.value.code == 2
    assert "FLOWAI_ALLOW_VOLATILE_LEDGER='maybe' is not a flag" in capsys.readouterr().err
