"""The judge through the live provider path: ``Runtime.run_eval`` judges final responses with
the runtime's provider settings, through the official SDKs, against the fake provider server.

The agent runs scripted (its answer is known); only the judge talks HTTP. A pass, a fail, a
provider error (fails closed with ``judge_execution_failed``) and settings that cannot make a
provider (fails closed, no request sent) are each checked on the artifact and on what the
fake server received.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from flowai_harness import Runtime, define_runtime, define_specialist
from flowai_harness.evals import (
    ResponseScorer,
    define_eval_config,
    define_eval_request,
    define_final_response_eval,
    define_test_case,
)
from flowai_harness.evals.judge import sha256_hex
from flowai_harness.testing import FakeProvider, Turn, Usage, server_error

API_KEY = "judge-key"
JUDGE_MODEL = "claude-opus-4-8"
CRITERION = "The answer names the capital of France."


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(api_key=API_KEY) as server:
        yield server


def verdict(passed: bool, reason: str) -> str:
    return json.dumps({"passed": passed, "selected_rubric_score": int(passed), "reason": reason})


def open_judged(open_runtime: Callable[..., Runtime], providers: dict[str, Any]) -> Runtime:
    spec = define_runtime(
        ("acme", "v1"),
        agents=[define_specialist("geo", model="claude-haiku-4-5", prompt="Answer.")],
        providers=providers,
    )
    return open_runtime(spec, interpreter="scripted")


def judged_request(**config: Any) -> Any:
    case = define_test_case(
        "capital",
        "Paris is the capital of France.",  # not a script: the scripted agent echoes it
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.judge(id="capital", instructions=CRITERION, required=True)]
        ),
    )
    return define_eval_request(
        workspace_id="w",
        tenant_id="acme",
        test_cases=[case],
        config=define_eval_config(
            mode="specialist",
            target_agent_id="geo",
            samples_per_case=1,
            k_values=[1],
            model=JUDGE_MODEL,
            **config,
        ),
    )


def judge_result(raw: dict[str, Any]) -> dict[str, Any]:
    sample = raw["testCases"][0]["samples"][0]
    result: dict[str, Any] = sample["metadata"]["finalResponseJudgeVerdicts"]["capital"]
    return result


async def test_a_passing_verdict_from_the_live_judge_passes_the_sample(
    open_runtime: Callable[..., Runtime], fake: FakeProvider
) -> None:
    fake.add(Turn(text=verdict(True, "It says Paris.")))
    runtime = open_judged(open_runtime, fake.provider_settings(api_key=API_KEY))

    raw = await runtime.run_eval(judged_request())

    sample = raw["testCases"][0]["samples"][0]
    assert sample["passed"]
    result = judge_result(raw)
    assert result["verdict"]["passed"] is True
    assert result["verdict"]["reason"] == "It says Paris."
    (request,) = fake.requests_for("anthropic")
    assert request.body["model"] == JUDGE_MODEL
    prompt = request.body["messages"][0]["content"][0]["text"]
    assert CRITERION in prompt
    assert "Paris is the capital of France." in prompt
    assert result["judgeRun"]["promptSha256"] == sha256_hex(prompt.encode())
    invocations = sample["modelInvocations"]
    assert [(i["agent"], i["model"]) for i in invocations] == [("judge", JUDGE_MODEL)]


async def test_a_failing_verdict_fails_the_sample(
    open_runtime: Callable[..., Runtime], fake: FakeProvider
) -> None:
    fake.add(Turn(text=verdict(False, "It never names a city.")))
    runtime = open_judged(open_runtime, fake.provider_settings(api_key=API_KEY))

    raw = await runtime.run_eval(judged_request())

    sample = raw["testCases"][0]["samples"][0]
    assert not sample["passed"]
    result = judge_result(raw)
    assert result["verdict"]["passed"] is False
    assert result.get("errorKind") is None


async def test_a_judge_whose_provider_errors_fails_closed_with_an_error_kind(
    open_runtime: Callable[..., Runtime], fake: FakeProvider
) -> None:
    fake.add(Turn(fault=server_error(503)))
    runtime = open_judged(open_runtime, fake.provider_settings(api_key=API_KEY))

    raw = await runtime.run_eval(judged_request())

    sample = raw["testCases"][0]["samples"][0]
    assert not sample["passed"]
    result = judge_result(raw)
    assert result["errorKind"] == "judge_execution_failed"
    assert result["verdict"]["passed"] is False
    assert "503" in result["verdict"]["reason"]
    assert len(fake.requests_for("anthropic")) == 1


async def test_a_judge_answer_that_is_not_a_verdict_fails_closed(
    open_runtime: Callable[..., Runtime], fake: FakeProvider
) -> None:
    fake.add(Turn(text="Looks fine to me!"))
    runtime = open_judged(open_runtime, fake.provider_settings(api_key=API_KEY))

    raw = await runtime.run_eval(judged_request())

    assert judge_result(raw)["errorKind"] == "judge_invalid_json"
    assert not raw["testCases"][0]["samples"][0]["passed"]


async def test_a_judge_without_usable_provider_settings_fails_closed_without_a_call(
    open_runtime: Callable[..., Runtime], fake: FakeProvider
) -> None:
    runtime = open_judged(open_runtime, {"anthropic": {}})  # a testing placeholder, no key

    raw = await runtime.run_eval(judged_request())

    result = judge_result(raw)
    assert result["errorKind"] == "judge_execution_failed"
    assert "no live provider" in result["verdict"]["reason"]
    assert fake.requests == []


async def test_live_runs_carry_their_tokens_cost_and_latency_into_the_artifact(
    open_runtime: Callable[..., Runtime], fake: FakeProvider
) -> None:
    fake.add(Turn(text="Paris.", usage=Usage(input_tokens=100, output_tokens=7)))
    spec = define_runtime(
        ("acme", "v1"),
        agents=[define_specialist("geo", model="claude-haiku-4-5", prompt="Answer.")],
        providers=fake.provider_settings(api_key=API_KEY),
    )
    runtime = open_runtime(spec, interpreter="live")
    case = define_test_case(
        "capital",
        "What is the capital of France?",
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.contains(id="paris", text="Paris")]
        ),
    )
    eval_request = define_eval_request(
        workspace_id="w",
        tenant_id="acme",
        test_cases=[case],
        config=define_eval_config(
            mode="specialist", target_agent_id="geo", samples_per_case=1, k_values=[1]
        ),
    )

    raw = await runtime.run_eval(eval_request)
    await runtime.aclose()

    sample = raw["testCases"][0]["samples"][0]
    assert sample["passed"]
    assert sample["tokenUsage"]["inputTokens"] == 100
    assert sample["tokenUsage"]["outputTokens"] == 7
    (invocation,) = sample["modelInvocations"]
    assert (invocation["agent"], invocation["provider"], invocation["model"]) == (
        "geo",
        "anthropic",
        "claude-haiku-4-5",
    )
    assert invocation["estimatedCostUsd"] > 0
    summary = raw["summary"]
    assert summary["cost"]["estimatedCostUsd"] == pytest.approx(invocation["estimatedCostUsd"])
    assert summary["totalUsage"]["inputTokens"] == 100
    assert sample["latency"]["modelMs"] is not None  # from the run's latency summary
    assert summary["latency"]["maxMs"] == sample["latency"]["totalMs"]
