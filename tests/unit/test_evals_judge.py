"""The LLM judge (flowai_harness.evals.judge): prompt, request, verdict parsing, fail-closed.

The model call is a local async function with the provider adapters' signature: it takes the
ModelRequest payload and answers a ModelResult payload (docs/wire.md "Model calls"). What is
under test is the judge's side: what it sends, how it reads the answer, and that every
failure is a failed verdict with an error kind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from flowai_harness.evals import (
    JudgeModel,
    RawSampleOutput,
    ResponseScorer,
    define_final_response_eval,
    define_test_case,
    score_sample,
)
from flowai_harness.evals.judge import run_judge, run_judges

JUDGE = JudgeModel("anthropic", "claude-sonnet-4-6")
SCORER = ResponseScorer.judge(
    id="reports_success",
    instructions="The final response states that the billing contact was updated.",
    reference_response="Acme's billing contact is now jane@example.com.",
    context={"customer": "acme"},
)
ANSWER = "I updated Acme's billing contact to jane@example.com."
RUN_CONTEXT = {"testCaseId": "billing", "sampleIndex": 0, "input": "Update Acme's contact"}


def model_result(request: dict[str, Any], *blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": request["request_id"],
        "response": {
            "content": list(blocks),
            "stop_reason": "stop",
            "raw_stop_reason": "end_turn",
            "usage": {
                "prompt_tokens": 120,
                "completion_tokens": 30,
                "cache_read_input_tokens": 7,
                "cache_creation_input_tokens": 3,
            },
            "provider": "anthropic",
            "model": "claude-sonnet-4-6-20260101",
            "latency_ms": 12,
            "ttft_ms": None,
        },
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def verdict_json(passed: bool, reason: str = "It says the contact was updated.") -> str:
    return json.dumps({"passed": passed, "selected_rubric_score": int(passed), "reason": reason})


class Provider:
    """A stand-in provider: records each request and answers with the given blocks."""

    def __init__(self, *blocks: dict[str, Any]) -> None:
        self.blocks = blocks
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return model_result(request, *self.blocks)


async def judge(
    complete: Any, *, include_trace: bool = False, deadline_secs: float | None = None
) -> Any:
    return await run_judge(
        SCORER,
        ANSWER,
        complete=complete,
        judge=JUDGE,
        request_id="acme/eval-thread/eval-1/judge-reports_success/1",
        run_context=RUN_CONTEXT,
        include_trace=include_trace,
        timeout_secs=deadline_secs,
    )


async def test_a_passing_verdict_and_what_the_judge_sent() -> None:
    provider = Provider(text(verdict_json(True)))

    result, invocation = await judge(provider)

    assert result.verdict.passed is True
    assert result.error_kind is None
    (request,) = provider.requests
    assert request["request_id"] == "acme/eval-thread/eval-1/judge-reports_success/1"
    assert (request["agent"], request["provider"], request["model"]) == (
        "judge",
        "anthropic",
        "claude-sonnet-4-6",
    )
    assert request["tools"] == []
    assert request["temperature"] == 0
    (message,) = request["messages"]
    assert message["role"] == "user"
    prompt = message["content"][0]["text"]
    for part in (SCORER.instructions, SCORER.reference_response, ANSWER, '"customer": "acme"',
                 '"testCaseId": "billing"', "selected_rubric_score"):  # fmt: skip
        assert part in prompt
    assert result.judge_run is not None
    assert result.judge_run.prompt_sha256 == hashlib.sha256(prompt.encode()).hexdigest()
    assert invocation is not None
    assert (invocation.agent, invocation.provider, invocation.model) == (
        "judge",
        "anthropic",
        "claude-sonnet-4-6-20260101",
    )
    assert (invocation.input_tokens, invocation.output_tokens, invocation.cached_tokens,
            invocation.cache_creation_tokens) == (120, 30, 7, 3)  # fmt: skip


async def test_the_context_hash_covers_what_was_judged() -> None:
    result, _ = await judge(Provider(text(verdict_json(True))))

    expected_context = {
        "scorerId": "reports_success",
        "instructions": SCORER.instructions,
        "referenceResponse": SCORER.reference_response,
        "rubric": {
            "0": "The final response does not meet the instructions above.",
            "1": "The final response meets the instructions above.",
        },
        "context": {"customer": "acme"},
        "runtimeContext": RUN_CONTEXT,
        "finalResponse": ANSWER,
    }
    canonical = json.dumps(expected_context, sort_keys=True, separators=(",", ":"))
    assert result.judge_run is not None
    assert result.judge_run.context_sha256 == hashlib.sha256(canonical.encode()).hexdigest()

    other, _ = await run_judge(
        SCORER,
        ANSWER + " Also refunded.",
        complete=Provider(text(verdict_json(True))),
        judge=JUDGE,
        request_id="r",
        run_context=RUN_CONTEXT,
    )
    assert other.judge_run is not None
    assert other.judge_run.context_sha256 != result.judge_run.context_sha256


async def test_a_failing_verdict_is_a_fail_without_an_error_kind() -> None:
    result, invocation = await judge(Provider(text(verdict_json(False, "No update is named."))))

    assert result.verdict.passed is False
    assert result.verdict.reason == "No update is named."
    assert result.error_kind is None
    assert invocation is not None


@pytest.mark.parametrize(
    ("blocks", "kind"),
    [
        ((), "judge_no_text"),
        (({"type": "reasoning", "text": verdict_json(True)},), "judge_no_text"),
        ((text("   "),), "judge_no_text"),
        ((text("Yes, it passes."),), "judge_invalid_json"),
        ((text(f"```json\n{verdict_json(True)}\n```"),), "judge_invalid_json"),
        ((text('{"passed": true, "reason": "no score"}'),), "judge_invalid_schema"),
        ((text('{"passed": true, "selected_rubric_score": 0, "reason": "x"}'),),
         "judge_invalid_schema"),
        ((text('{"passed": true, "selected_rubric_score": 1, "reason": " "}'),),
         "judge_invalid_schema"),
        ((text("[1, 2]"),), "judge_invalid_schema"),
    ],
)  # fmt: skip
async def test_an_unreadable_answer_fails_closed(blocks: tuple[Any, ...], kind: str) -> None:
    result, _ = await judge(Provider(*blocks))

    assert result.verdict.passed is False
    assert result.verdict.selected_rubric_score == 0
    assert result.error_kind == kind
    assert result.judge_run is not None


async def test_a_provider_failure_fails_closed() -> None:
    async def overloaded(request: dict[str, Any]) -> dict[str, Any]:
        return {
            "request_id": request["request_id"],
            "failure": {"kind": "overloaded", "message": "529 overloaded", "status": 529},
        }

    result, invocation = await judge(overloaded)

    assert result.verdict.passed is False
    assert result.error_kind == "judge_execution_failed"
    assert "overloaded" in result.verdict.reason
    assert invocation is None


async def test_a_raising_call_fails_closed() -> None:
    async def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("connection refused")

    result, _ = await judge(broken)

    assert result.error_kind == "judge_execution_failed"
    assert "ConnectionError: connection refused" in result.verdict.reason


async def test_a_malformed_result_fails_closed() -> None:
    async def odd(request: dict[str, Any]) -> Any:
        return ["not", "a", "result"]

    result, _ = await judge(odd)

    assert result.error_kind == "judge_execution_failed"


async def test_a_judge_past_its_deadline_fails_closed() -> None:
    async def never(request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    result, _ = await judge(never, deadline_secs=0.01)

    assert result.error_kind == "judge_execution_failed"
    assert "timed out" in result.verdict.reason


async def test_no_model_call_or_no_judge_model_is_provider_unavailable() -> None:
    no_call, _ = await judge(None)
    no_model, _ = await run_judge(SCORER, ANSWER, complete=Provider(), judge=None, request_id="r")

    for result in (no_call, no_model):
        assert result.error_kind == "judge_provider_unavailable"
        assert result.verdict.passed is False
        assert result.judge_run is None


async def test_the_trace_is_recorded_only_when_asked() -> None:
    raw = verdict_json(True)

    without, _ = await judge(Provider(text(raw)))
    traced, _ = await judge(Provider(text(raw)), include_trace=True)

    assert without.judge_trace is None
    assert traced.judge_trace is not None
    assert traced.judge_trace.response == raw
    assert SCORER.instructions is not None
    assert SCORER.instructions in traced.judge_trace.prompt


async def test_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def slow(request: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.create_task(judge(slow))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_judges_calls_each_judge_scorer_once_and_scoring_reads_the_results() -> None:
    spec = define_final_response_eval(
        scorers=[
            ResponseScorer.judge(id="polite", instructions="Is the response polite?", weight=2),
            ResponseScorer.contains(id="email", text="jane@example.com"),
            ResponseScorer.judge(id="no_refund", instructions="Says nothing of refunds.",
                                 required=True),
        ],
        pass_threshold=0.5,
    )  # fmt: skip
    calls: list[str] = []

    async def provider(request: dict[str, Any]) -> dict[str, Any]:
        prompt = request["messages"][0]["content"][0]["text"]
        calls.append(request["request_id"])
        if "polite" in prompt:
            return model_result(request, text(verdict_json(True, "Polite.")))
        raise TimeoutError("read timed out")

    results, invocations = await run_judges(
        spec, ANSWER, complete=provider, judge=JUDGE, request_id_prefix="acme/t/eval-1"
    )

    assert calls == ["acme/t/eval-1/judge-polite/1", "acme/t/eval-1/judge-no_refund/1"]
    assert list(results) == ["polite", "no_refund"]
    assert results["polite"].verdict.passed is True
    assert results["no_refund"].error_kind == "judge_execution_failed"
    assert len(invocations) == 1
    case = define_test_case("billing", "Update the contact", final_response=spec)
    output = RawSampleOutput(response_text=ANSWER).with_judge_verdicts(results)
    scored = score_sample(case, output, score_weights={"final_response": 1})
    details = scored.component_scores[0].details
    assert details is not None
    # polite (2) and email (1) pass, the errored required judge fails: 3/4, but gated.
    assert details["score"] == pytest.approx(3 / 4)
    assert details["requiredFailed"] == ["no_refund"]
    assert scored.aggregate == 0.0
