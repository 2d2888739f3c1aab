"""Evals in both modes: the same eval request run on the embedded runtime
(``Runtime.run_eval``) and through ``connect()`` against the runtime service
(``Client.run_eval``), with the same live model answers from the fake provider server, gives
the same samples. The clerk's gates (one approver, then two) are decided by the eval's
approval policy over the client, so a passing remote sample also proves the signed decisions
reached the runtime service and opened the gates. The service's run log then serves as a
replay suite (``flowai eval from-log --kafka``): replayed unchanged, nothing diverges.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kafka_helpers import HERE, live_runtime_args, live_worker_args
from processes import Service

from flowai_harness import connect, create_runtime
from flowai_harness.evals import (
    ResponseScorer,
    define_eval_config,
    define_eval_request,
    define_final_response_eval,
    define_test_case,
)
from flowai_harness.evals.replay import ReplayRuntime, kafka_recorded_threads, replay_suite
from flowai_harness.kafka import bus
from flowai_harness.testing import FakeProvider, ToolCall, Turn, Usage

pytestmark = pytest.mark.connected

TURNS = (
    Turn(tool_calls=[ToolCall("pay", {"amount": 7}, id="toolu_e1")], usage=Usage(100, 10)),
    Turn(text="Paid 7.", usage=Usage(120, 5)),
    Turn(tool_calls=[ToolCall("transfer", {"amount": 100}, id="toolu_e2")], usage=Usage(100, 10)),
    Turn(text="Moved 100.", usage=Usage(130, 5)),
)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        monkeypatch.setenv("FAKE_ANTHROPIC_URL", server.anthropic_url)
        monkeypatch.setenv("FAKE_OPENAI_URL", server.openai_url)
        yield server


def live_app() -> Any:
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module("live_app")
    finally:
        sys.path.remove(str(HERE))


def request() -> Any:
    def case(case_id: str, prompt: str, tool: str, answer: str) -> Any:
        return define_test_case(
            case_id,
            prompt,
            expected_trajectory=[tool],
            final_response=define_final_response_eval(
                scorers=[ResponseScorer.contains(id="answer", text=answer)]
            ),
        )

    return define_eval_request(
        workspace_id="w",
        tenant_id="acme",
        test_cases=[
            case("pay", "Pay 7.", "pay", "Paid 7."),
            case("transfer", "Move 100.", "transfer", "Moved 100."),
        ],
        # One sample per case, cases in order: the fake's turns are answered in that order.
        config=define_eval_config(
            mode="specialist",
            target_agent_id="clerk",
            samples_per_case=1,
            k_values=[1],
            timeout_per_sample_secs=60,
        ),
    )


def samples(artifact: dict[str, Any]) -> list[tuple[str, bool, list[str], str | None]]:
    return [
        (
            case["testCaseId"],
            sample["passed"],
            sample["actualTrajectory"],
            sample.get("responseText"),
        )
        for case in artifact["testCases"]
        for sample in case["samples"]
    ]


def moved(fake: FakeProvider) -> int:
    """How many model requests carried the transfer's result ``{"moved": 100}`` (the gate
    opened; "Moved" with a capital is the model's answer, never sent back)."""
    return sum("moved" in json.dumps(r.body) for r in fake.requests)


async def test_an_eval_runs_the_same_embedded_and_through_the_runtime_service(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    fake: FakeProvider,
) -> None:
    app = live_app()
    fake.add(*TURNS)
    async with create_runtime(app.make_spec(), interpreter="live") as runtime:
        embedded = await runtime.run_eval(request())
    assert moved(fake) == 1

    env = {"FAKE_ANTHROPIC_URL": fake.anthropic_url, "FAKE_OPENAI_URL": fake.openai_url}
    spawn("runtime", *live_runtime_args(kafka_bootstrap, topics.prefix), env=env)
    spawn("workers", *live_worker_args(kafka_bootstrap, redis_url, topics.prefix, "all"), env=env)
    fake.add(*TURNS)
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        remote = await client.run_eval(request())

    assert samples(remote) == samples(embedded)
    assert [passed for _, passed, _, _ in samples(remote)] == [True, True]
    assert moved(fake) == 2
    assert remote["summary"]["passRate"] == 1.0

    # The service's run log holds the threads with each answer's request hash: replayed
    # unchanged, on the embedded runtime, they call no model and do not diverge.
    threads = await kafka_recorded_threads(
        kafka_bootstrap,
        tenant="acme",
        prefix=topics.prefix,
        threads=[f"{remote['runId']}.{case}.0" for case in ("pay", "transfer")],
    )
    assert len(threads) == 2
    suite = replay_suite(threads, tenant="acme")
    calls = len(fake.requests)
    replay = ReplayRuntime(app.make_spec(), {t.thread_id: t for t in threads})
    try:
        replayed = await replay.run_eval(suite["request"])
    finally:
        await replay.aclose()
    assert len(fake.requests) == calls
    for case in replayed.test_cases:
        (sample,) = case.samples
        assert sample.passed, sample.error
        assert sample.metadata is not None
        assert sample.metadata["replay"]["divergence"] is None
        assert sample.metadata["replay"]["reusedModelResponses"] == 2
