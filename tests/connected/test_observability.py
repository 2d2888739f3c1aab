"""What an operator sees, on the real broker: one trace per distributed query, metrics and
health endpoints, JSON logs.

- The trace: the runtime, a worker (tools and models) and the approvals service run in this
  process (their own classes, on the real Kafka and Redis), traced into one in-memory span
  exporter; the live model is the fake provider server. One gated payment query gives ONE
  trace whose parent/child structure is asserted: the query, the runtime's steps, each
  model call (``chat {model}``, with the GenAI attributes and tokens), the tool invocation
  and its run, and the approval wait, each linked through the ``traceparent`` header the
  record it handled carried.
- The metrics: a runtime service process with ``--metrics`` is scraped after a query and a
  dead letter; ``/healthz`` and ``/readyz`` answer; its ``--log-format json`` lines carry
  the thread, run, message id and trace id.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from kafka_helpers import PARTITIONS, runtime_args
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from processes import Service, until

from flowai_harness import connect
from flowai_harness.kafka import approvals_http, bus, metrics, telemetry
from flowai_harness.testing import FakeProvider, ToolCall, Turn, Usage

pytestmark = pytest.mark.connected


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def spans() -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(provider)
    yield exporter
    telemetry.disable()
    provider.shutdown()


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        monkeypatch.setenv("FAKE_ANTHROPIC_URL", server.anthropic_url)
        monkeypatch.setenv("FAKE_OPENAI_URL", server.openai_url)
        # live_app reads the fake server's address when imported: imported afresh here, and
        # not left behind for another test with another server.
        monkeypatch.delitem(sys.modules, "live_app", raising=False)
        yield server
        sys.modules.pop("live_app", None)


async def _start_in_process(
    bootstrap: str, redis_url: str, prefix: str, keys: tuple[Path, Path], port: int
) -> list[tuple[Any, asyncio.Task[None]]]:
    """The runtime (live interpreter), a worker of tools and models and the approvals service,
    as the command lines would build them, running as tasks of this event loop."""
    from services.approvals.command import build_parser as approvals_parser
    from services.approvals.command import settings_from_args as approvals_settings
    from services.approvals.policy import load_policy
    from services.approvals.service import ApprovalsService
    from services.runtime.service import RuntimeService, ServiceConfig
    from services.tools.app import load_app
    from services.tools.command import build_parser as tools_parser
    from services.tools.command import settings_from_args as tools_settings
    from services.tools.service import ToolService

    from flowai_harness.apps import load_spec
    from flowai_harness.kafka.decision_auth import DecisionVerifier

    private, public = keys
    common = ["--app", "live_app:spec", "--bootstrap", bootstrap, "--prefix", prefix]
    runtime = RuntimeService(
        load_spec("live_app:spec"),
        {"kind": "live"},
        ServiceConfig(
            bootstrap=bootstrap,
            prefix=prefix,
            partitions=PARTITIONS,
            allow_unreplicated=True,
            decisions=DecisionVerifier.from_pems([str(public)]),
        ),
    )
    tools_args = tools_parser().parse_args([*common, "--redis", redis_url, "--role", "all"])
    tools = ToolService(load_app("live_app:spec", None), tools_settings(tools_args))
    approvals_args = approvals_parser().parse_args(
        [
            *common,
            *("--redis", redis_url, "--http", f"127.0.0.1:{port}"),
            *("--decision-key", str(private), "--allow-unauthenticated"),
        ]
    )
    approvals = ApprovalsService(
        load_policy("live_app:spec", allow_unauthenticated=True, secrets_file=None),
        approvals_settings(approvals_args),
    )
    started = []
    for service in (runtime, tools, approvals):
        started.append((service, asyncio.get_running_loop().create_task(service.run())))
    return started


def _counts() -> dict[str, float]:
    value = metrics.REGISTRY.get_sample_value

    def sample(name: str, **labels: str) -> float:
        return value(name, labels) or 0.0

    model = {"provider": "anthropic", "model": "claude-haiku-4-5"}
    return {
        "tool runs": sample("flowai_tool_duration_seconds_count", tool="pay", outcome="ok"),
        "model calls": sample("flowai_model_call_duration_seconds_count", outcome="ok", **model),
        "input tokens": sample("flowai_model_tokens_total", kind="input", **model),
        "output tokens": sample("flowai_model_tokens_total", kind="output", **model),
        "dead letters": sum(
            metric.value
            for family in metrics.REGISTRY.collect()
            if family.name == "flowai_dead_letters"
            for metric in family.samples
            if metric.name.endswith("_total")
        ),
    }


def _by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _parent(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return None if span.parent is None else spans.get(span.parent.span_id)


def _ancestors(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = _parent(span, spans)
    while parent is not None:
        names.append(parent.name)
        parent = _parent(parent, spans)
    return names


@pytest.mark.timeout(180)
async def test_one_distributed_query_is_one_trace_with_its_steps_calls_tools_and_approval(
    spans: InMemorySpanExporter,
    fake: FakeProvider,
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    decision_keys: tuple[Path, Path],
) -> None:
    fake.add(
        Turn(
            tool_calls=[ToolCall("pay", {"amount": 7}, id="toolu_t1")],
            usage=Usage(input_tokens=120, output_tokens=12),
        ),
        Turn(text="Paid.", usage=Usage(input_tokens=140, output_tokens=3)),
    )
    port = free_port()
    before = _counts()
    services = await _start_in_process(
        kafka_bootstrap, redis_url, topics.prefix, decision_keys, port
    )
    base = f"http://127.0.0.1:{port}"
    events: list[dict[str, Any]] = []
    try:
        async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
            async with asyncio.timeout(90):
                async for event in client.query("Pay 7.", "traced", agent="clerk"):
                    events.append(event)
                    if event["type"] == "approval-required":
                        await approvals_http.decide(
                            base, "acme", event["data"]["id"], "approve", approver="alice"
                        )
    finally:
        for service, _ in services:
            service.stop()
        for _, task in services:
            try:
                await asyncio.wait_for(task, 30)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
    assert events[-1]["type"] == "tool-agent", [e["type"] for e in events]

    # The same run, in the metrics of this process (the three services share its registry).
    after = _counts()
    grew = {name: after[name] - before[name] for name in after}
    assert grew["tool runs"] == 1
    assert grew["model calls"] == 2
    assert grew["input tokens"] == 260
    assert grew["output tokens"] == 15
    assert grew["dead letters"] == 0

    finished = list(spans.get_finished_spans())
    [query] = _by_name(finished, "flowai.query")
    trace_id = query.context.trace_id
    mine = [span for span in finished if span.context.trace_id == trace_id]
    by_id = {span.context.span_id: span for span in mine}
    names = sorted({span.name for span in mine})
    assert query.parent is None, names
    assert query.kind is SpanKind.PRODUCER

    # Every span of the query is in its trace, and all hang from the query.
    for span in mine:
        if span is not query:
            assert "flowai.query" in _ancestors(span, by_id), (span.name, names)
    steps = _by_name(mine, "flowai.runtime.step")
    # The query, two model results, the tool result and the decision: five inputs at least.
    assert len(steps) >= 5, names
    assert all(step.kind is SpanKind.CONSUMER for step in steps)
    assert {step.attributes["flowai.thread_id"] for step in steps} == {"traced"}
    assert _parent(steps[0], by_id) is query

    # Each model call: a model request handled by the worker, a GenAI client span inside.
    requests = _by_name(mine, "flowai.model.request")
    chats = _by_name(mine, "chat claude-haiku-4-5")
    assert len(requests) == len(chats) == 2, names
    for chat in chats:
        request = _parent(chat, by_id)
        assert request is not None
        assert request.name == "flowai.model.request"
        assert _parent(request, by_id) in steps  # asked by a runtime step
        assert chat.kind is SpanKind.CLIENT
        attributes = chat.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "anthropic"
        assert attributes["gen_ai.request.model"] == "claude-haiku-4-5"
        assert attributes["gen_ai.response.model"]
    tokens = sorted(
        (c.attributes["gen_ai.usage.input_tokens"], c.attributes["gen_ai.usage.output_tokens"])
        for c in chats
        if c.attributes
    )
    assert tokens == [(120, 12), (140, 3)]

    # The approval wait: child of the step that opened the gate; the decision's step is its
    # child, and the tool invocation (with its run) follows from that step.
    [wait] = _by_name(mine, "flowai.approval.wait")
    assert _parent(wait, by_id) in steps
    assert (wait.attributes or {})["flowai.approver"] == "alice"
    decided = [step for step in steps if _parent(step, by_id) is wait]
    assert len(decided) == 1, names
    [invocation] = _by_name(mine, "flowai.tool.invocation")
    assert _parent(invocation, by_id) is decided[0]
    [run] = _by_name(mine, "flowai.tool.run")
    assert _parent(run, by_id) is invocation
    assert (run.attributes or {})["flowai.tool"] == "pay"
    # The tool's result is handled by a step that is the invocation's child.
    assert any(_parent(step, by_id) is invocation for step in steps)


# --- metrics, health, JSON logs ----------------------------------------------------------------


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of a Prometheus text exposition."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _value(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for key, value in samples.items():
        if key.split("{")[0] == name and all(label in key for label in wanted):
            total += value
    return total


@pytest.mark.timeout(120)
async def test_a_runtime_service_serves_health_metrics_and_json_logs(
    spawn: Callable[..., Service],
    kafka_bootstrap: str,
    topics: bus.Topics,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    runtime = spawn(
        "runtime",
        *runtime_args(kafka_bootstrap, topics.prefix),
        "--metrics",
        f"127.0.0.1:{port}",
        "--log-format",
        "json",
        "--log-level",
        "info",
    )

    async def ready() -> bool:
        try:
            status, _ = await _get(f"{base}/readyz")
        except aiohttp.ClientError:
            return False
        return status == 200

    await until(ready, within=60, what="the runtime to be ready", services=[runtime])
    status, body = await _get(f"{base}/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "up"

    prompt = json.dumps({"script": [{"tool": "add", "args": {"a": 1, "b": 2}}]})
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        stream = client.query(prompt, "scraped", agent="worker")
        async with asyncio.timeout(60):
            async for event in stream:
                if event["type"] == "tool-invocation" and event.get("state") == "call":
                    break
    # A message the engine refuses: a dead letter with its reason, logged with the thread,
    # the message id and the trace of the header it came with.
    trace = bus.new_traceparent()
    refused = {
        "schema": "flowai.v1.NoSuchThing",
        "id": "refused-1",
        "tenant": "acme",
        "thread_id": "scraped",
        "run_id": None,
        "causation_id": None,
        "ts": bus.now_ms(),
        "payload": {},
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        key = bus.thread_key("acme", "scraped")
        await producer.send_and_wait(
            topics.queries,
            json.dumps(refused).encode(),
            key=key,
            partition=bus.partition_for(key, PARTITIONS),
            headers=[(bus.TRACEPARENT, trace.encode())],
        )
    finally:
        await producer.stop()

    async def counted() -> bool:
        _, text = await _get(f"{base}/metrics")
        return _value(_samples(text), "flowai_dead_letters_total") >= 1

    await until(counted, within=30, what="the dead letter to be counted", services=[runtime])
    status, text = await _get(f"{base}/metrics")
    assert status == 200
    samples = _samples(text)
    service = {"service": "runtime"}
    assert _value(samples, "flowai_inputs_total", **service) >= 2
    assert _value(samples, "flowai_events_appended_total", **service) >= 1
    assert _value(samples, "flowai_transactions_total", outcome="committed", **service) >= 2
    assert _value(samples, "flowai_ready", **service) == 1
    assert _value(samples, "flowai_replay_pending_partitions", **service) == 0
    lags = [key for key in samples if key.startswith("flowai_consumer_lag{")]
    assert lags
    assert all(f'topic="{topics.prefix}.' in key for key in lags), lags
    for name in (
        "flowai_replayed_events_total",
        "flowai_tool_duration_seconds",
        "flowai_model_call_duration_seconds",
        "flowai_retries_total",
        "flowai_pending_approvals",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name

    assert runtime.stop_gracefully() == 0
    lines = [line for line in runtime.log.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"ts", "level", "logger", "message", "service"} <= set(record)
        assert {"thread_id", "run_id", "message_id", "trace_id"} <= set(record)
    [letter] = [r for r in records if r["message"].startswith("dead letter ")]
    reason = letter["message"].split()[2]
    assert _value(samples, "flowai_dead_letters_total", reason=reason, **service) == 1
    assert letter["thread_id"] == "scraped"
    assert letter["message_id"] == "refused-1"
    assert letter["trace_id"] == trace.split("-")[1]
