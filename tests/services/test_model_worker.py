"""The model worker's logic on a real Redis and the fake provider server (through the official
SDKs): one provider call per request however often it is delivered, deltas before the
result, failures as results, dead letters for what no model worker can answer.

Kafka is not involved here (tests/connected runs model workers as processes on the real
broker): deliveries are built directly and a recording publisher stands in for the producer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from services.tools.claims import InvocationLedger
from services.tools.command import build_parser, settings_from_args
from services.tools.models import ModelSettings, ModelWorker
from services.tools.once import Delivery

from flowai_harness.kafka.bus import Topics
from flowai_harness.providers import build_providers, close_providers
from flowai_harness.testing import FakeProvider, Turn, rate_limited

TOPICS = Topics("unit")


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def providers(fake: FakeProvider) -> AsyncIterator[dict[str, Any]]:
    built = build_providers(fake.provider_settings())
    yield dict(built)
    await close_providers(built)


@dataclass
class Recorder:
    """Stands in for the Kafka producer."""

    sent: list[tuple[str, bytes | None, dict[str, Any]]] = field(default_factory=list)

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, key, orjson.loads(value)))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [body for t, _, body in self.sent if t == topic]


def worker(
    redis: Redis, namespace: str, providers: dict[str, Any], recorder: Recorder, **kw: Any
) -> ModelWorker:
    ledger = InvocationLedger(redis, namespace=namespace, claim_ttl=2.0, result_ttl=60)
    settings = ModelSettings(concurrency=4, claim_poll=0.02, failure_backoff=0.05, **kw)
    return ModelWorker(providers, ledger, recorder, TOPICS, settings, tenant="acme")


def request(
    *, provider: str = "anthropic", model: str = "claude-sonnet-4-6", tenant: str = "acme"
) -> dict[str, Any]:
    rid = f"{tenant}/t1/run-{uuid.uuid4().hex[:6]}/model-1/1"
    return {
        "schema": "flowai.v1.ModelRequest",
        "id": rid,
        "tenant": tenant,
        "thread_id": "t1",
        "run_id": rid.split("/")[2],
        "causation_id": f"{tenant}/t1/3",
        "ts": 1_700_000_000_000,
        "payload": {
            "request_id": rid,
            "agent": "analyst",
            "provider": provider,
            "model": model,
            "attempt": 1,
            "turn": 1,
            "system": "You answer.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "tools": [],
            "max_tokens": 1024,
            "temperature": None,
            "thinking": None,
            "cache": False,
        },
    }


_offsets = iter(range(10**9))


def delivery(envelope: dict[str, Any] | bytes) -> Delivery:
    value = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
    return Delivery("unit.model-requests", 0, next(_offsets), b"key", value, ())


async def test_model_request_is_answered_with_its_deltas_first(
    redis: Redis, namespace: str, providers: dict[str, Any], fake: FakeProvider
) -> None:
    fake.add(Turn(text=["The ", "answer ", "is ", "42."]))
    recorder = Recorder()
    w = worker(redis, namespace, providers, recorder)
    env = request()
    await w.handle(delivery(env))

    topics = [t for t, _, _ in recorder.sent]
    assert topics[-1] == TOPICS.model_results, "the result comes after every delta"
    (result,) = recorder.on(TOPICS.model_results)
    assert result["schema"] == "flowai.v1.ModelResult"
    assert result["id"] == f"{env['id']}/result"
    assert result["causation_id"] == env["id"]
    assert result["payload"]["request_id"] == env["id"]
    response = result["payload"]["response"]
    assert response["content"] == [{"type": "text", "text": "The answer is 42."}]
    assert response["stop_reason"] == "stop"
    assert recorder.sent[-1][1] == b"acme/t1", "keyed by thread, like every runtime input"

    deltas = recorder.on(TOPICS.model_deltas)
    assert deltas, "the text streamed"
    assert [d["payload"]["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["payload"]["text"] for d in deltas) == "The answer is 42."
    assert {d["payload"]["request_id"] for d in deltas} == {env["id"]}


async def test_model_request_redelivered_costs_one_call(
    redis: Redis, namespace: str, providers: dict[str, Any], fake: FakeProvider
) -> None:
    fake.add(Turn(text="Once.", times=None))
    recorder = Recorder()
    first = worker(redis, namespace, providers, recorder)
    second = worker(redis, namespace, providers, recorder)
    env = request()
    # Two workers get the same request at once (a rebalance), then it comes again.
    await asyncio.gather(first.handle(delivery(env)), second.handle(delivery(env)))
    await first.handle(delivery(env))
    assert len(fake.requests) == 1
    results = recorder.on(TOPICS.model_results)
    assert len(results) == 3, "every delivery is answered"
    assert len({orjson.dumps(r) for r in results}) == 1, "with the one recorded result"
    assert first.ran + second.ran == 1


async def test_model_request_provider_failure_is_a_result_the_engine_decides_on(
    redis: Redis, namespace: str, providers: dict[str, Any], fake: FakeProvider
) -> None:
    fake.add(Turn(fault=rate_limited(retry_after_ms=1500)))
    recorder = Recorder()
    w = worker(redis, namespace, providers, recorder)
    await w.handle(delivery(request()))
    (result,) = recorder.on(TOPICS.model_results)
    failure = result["payload"]["failure"]
    assert failure["kind"] == "rate_limited"
    assert failure["retry_after_ms"] == 1500
    assert recorder.on(TOPICS.dead_letters) == [], "a provider problem is not a bad message"


async def test_model_request_to_an_unconfigured_provider_fails_the_call_and_tells_operators(
    redis: Redis, namespace: str, fake: FakeProvider
) -> None:
    only_anthropic = build_providers({"anthropic": fake.provider_settings()["anthropic"]})
    try:
        recorder = Recorder()
        w = worker(redis, namespace, dict(only_anthropic), recorder)
        await w.handle(delivery(request(provider="openai", model="gpt-5-mini")))
    finally:
        await close_providers(only_anthropic)
    (result,) = recorder.on(TOPICS.model_results)
    assert result["payload"]["failure"]["kind"] == "auth"
    assert "not configured in this model worker" in result["payload"]["failure"]["message"]
    (letter,) = recorder.on(TOPICS.dead_letters)
    assert letter["payload"]["reason"] == "PROVIDER_NOT_CONFIGURED"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda e: b"{not json", "INPUT_MALFORMED"),
        (lambda e: {**e, "payload": {**e["payload"], "messages": []}}, "INPUT_MALFORMED"),
        (lambda e: {**e, "payload": {**e["payload"], "request_id": "other"}}, "INPUT_MALFORMED"),
        (lambda e: {**e, "tenant": "globex"}, "TENANT_MISMATCH"),
        (lambda e: {**e, "schema": "flowai.v1.ToolInvocation"}, "INPUT_UNKNOWN_SCHEMA"),
    ],
    ids=["not-json", "no-messages", "id-mismatch", "other-tenant", "a-tool-call"],
)
async def test_model_request_no_model_worker_can_answer_is_a_dead_letter(
    redis: Redis,
    namespace: str,
    providers: dict[str, Any],
    fake: FakeProvider,
    mangle: Any,
    reason: str,
) -> None:
    recorder = Recorder()
    w = worker(redis, namespace, providers, recorder)
    await w.handle(delivery(mangle(request())))
    (letter,) = recorder.on(TOPICS.dead_letters)
    assert letter["payload"]["reason"] == reason
    assert recorder.on(TOPICS.model_results) == []
    assert fake.requests == [], "no provider was called"


async def test_model_request_whose_worker_stopped_mid_call_is_left_to_the_next_owner(
    redis: Redis, namespace: str, providers: dict[str, Any], fake: FakeProvider
) -> None:
    fake.add(Turn(text="slow", hold="go"), Turn(text="Fresh answer."))
    recorder = Recorder()
    dying = worker(redis, namespace, providers, recorder)
    env = request()
    task = asyncio.create_task(dying.handle(delivery(env)))
    await fake.wait_for_requests(1)
    task.cancel()  # the worker stops (SIGTERM past its grace, or a crash)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.on(TOPICS.model_results) == []
    # Its claim was released: the next owner calls at once, and its answer is the result.
    survivor = worker(redis, namespace, providers, recorder)
    await asyncio.wait_for(survivor.handle(delivery(env)), 5)
    (result,) = recorder.on(TOPICS.model_results)
    assert result["payload"]["response"]["content"][0]["text"] == "Fresh answer."
    assert await fake.requests[0].wait_finished(5) == "disconnected"


async def test_model_request_without_deltas_when_streaming_to_clients_is_off(
    redis: Redis, namespace: str, providers: dict[str, Any], fake: FakeProvider
) -> None:
    fake.add(Turn(text=["a", "b"]))
    recorder = Recorder()
    w = worker(redis, namespace, providers, recorder, stream_deltas=False)
    await w.handle(delivery(request()))
    assert recorder.on(TOPICS.model_deltas) == []
    assert len(recorder.on(TOPICS.model_results)) == 1


def test_the_command_line_takes_the_model_lane_options() -> None:
    args = build_parser().parse_args(
        [
            "--app",
            "m:a",
            "--role",
            "all",
            "--model-concurrency",
            "32",
            "--provider-concurrency",
            "anthropic=8",
            "--provider-concurrency",
            "openai=2",
            "--no-stream-deltas",
        ]
    )
    settings = settings_from_args(args)
    assert settings.role == "all"
    assert settings.runs_tools
    assert settings.runs_models
    assert settings.models.concurrency == 32
    assert settings.models.stream_deltas is False
    assert dict(settings.provider_concurrency) == {"anthropic": 8, "openai": 2}
    assert settings.model_group_id == "flowai.models"
    with pytest.raises(ValueError, match="PROVIDER=N"):
        settings_from_args(
            build_parser().parse_args(["--app", "m:a", "--provider-concurrency", "anthropic"])
        )
