"""The eval runner core (flowai_harness.evals.runner): run_eval, stream_eval, run_eval_sync.

Samples run through a local ``run_sample`` that replays hand-written seed-shaped event lists
(the runtime will pass its own), so what is under test is the runner: scheduling, deadlines,
cancellation, judging, scoring and the artifact. Waits are on events, each with a deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from test_evals_projection import PRICE_CHANGE, coordinator_run, usage

from flowai_harness.errors import EvalError, EvalRunError, ScorerPresetError
from flowai_harness.evals import (
    EvalArtifact,
    EvalTestCase,
    HarnessEvalEventEnvelope,
    ModelInvocation,
    RawSampleOutput,
    ResponseScorer,
    RunSample,
    define_eval_config,
    define_eval_request,
    define_expected_action,
    define_expected_actions,
    define_final_response_eval,
    define_final_response_scorer_config,
    define_test_case,
    define_trajectory_scorer_config,
    run_eval,
    run_eval_sync,
    sample_output_from_events,
    stream_eval,
)

WAIT = 10  # seconds any awaited condition may take before the test fails

Events = list[dict[str, Any]]


def planner_only_run() -> Events:
    """A coordinator run that planned but never executed."""
    store = {"planId": "plan-1", "body": {"actions": [{"kind": "price_change", **PRICE_CHANGE}]}}
    return [
        {"type": "tool-agent", "agentName": "coordinator", "toolInvocationId": "r",
         "state": "call"},
        {"type": "tool-invocation", "toolInvocationId": "1", "toolName": "call_agent",
         "args": {}, "state": "call"},
        {"type": "tool-agent", "agentName": "planner", "toolInvocationId": "p", "state": "call"},
        {"type": "tool-invocation", "toolInvocationId": "2", "toolName": "storePlan",
         "args": store, "state": "call"},
        {"type": "tool-agent", "agentName": "planner", "toolInvocationId": "p",
         "state": "result"},
        {"type": "text", "text": "I planned it but did not run it."},
        {"type": "data-latency-summary", "data": {"totalDurationMs": 300, "phases": {}}},
        {"type": "finish", "finishReason": "stop", "usage": usage(10, 5)},
        {"type": "tool-agent", "agentName": "coordinator", "toolInvocationId": "r",
         "state": "result"},
    ]  # fmt: skip


def replay(events_for: Callable[[EvalTestCase, int], Events]) -> RunSample:
    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        events = events_for(case, index)
        return sample_output_from_events(events), events

    return run_sample


def price_case(**options: Any) -> EvalTestCase:
    return define_test_case(
        "price-change",
        "Set p-001 to 6.49",
        expected_trajectory=["storePlan", "executePlan"],
        trajectory_mode="subsequence",
        expected_actions=define_expected_actions(
            planned_actions=[define_expected_action("price_change", PRICE_CHANGE)],
            executed_actions=[define_expected_action("price_change", PRICE_CHANGE)],
        ),
        **options,
    )


def request(*cases: EvalTestCase, **config: Any) -> Any:
    config.setdefault("scorer_config", define_trajectory_scorer_config(
        include_sub_agents=True, ignore_tools=["call_agent"]
    ))  # fmt: skip
    return define_eval_request(
        tenant_id="acme",
        workspace_id="main",
        test_cases=list(cases) or [price_case()],
        config=define_eval_config(**config),
    )


async def collect(stream: Any) -> list[HarnessEvalEventEnvelope]:
    return [envelope async for envelope in stream]


def price_per_thousand(invocation: ModelInvocation) -> float | None:
    if invocation.model == "claude-haiku-4-5":
        return None  # a model without a known price
    return (invocation.input_tokens + invocation.output_tokens) / 1000


async def test_run_eval_scores_every_sample_and_summarises_the_run() -> None:
    def events_for(case: EvalTestCase, index: int) -> Events:
        if case.id == "price-change" and index == 2:
            return planner_only_run()
        return coordinator_run()

    artifact = await run_eval(
        request(price_case(), price_case().model_copy(update={"id": "again"})),
        replay(events_for),
        price=price_per_thousand,
        run_id="eval-1",
    )

    assert (artifact.run_id, artifact.tenant_id, artifact.workspace_id, artifact.mode) == (
        "eval-1",
        "acme",
        "main",
        "sequential",
    )
    assert artifact.metadata.scorer_preset == "sequential"
    assert artifact.metadata.score_weights == {
        "trajectory": 0.5,
        "planned_actions": 0.25,
        "executed_actions": 0.25,
    }
    first, second = artifact.test_cases
    assert [s.sample_index for s in first.samples] == [0, 1, 2]
    assert [s.aggregate_score for s in first.samples] == [1.0, 1.0, 0.25]
    assert [s.passed for s in first.samples] == [True, True, False]
    # passRate: 2 of 3 samples passed.
    assert first.aggregate_score == pytest.approx(2 / 3)
    pass_at = {p.k: p for p in first.pass_at_k}
    assert pass_at[1].simple_estimate == pytest.approx(2 / 3)
    assert pass_at[1].unbiased_estimate == pytest.approx(2 / 3)
    assert pass_at[3].unbiased_estimate == 1.0  # 1 - C(1,3)/C(3,3) = 1 - 0
    assert (pass_at[3].num_samples, pass_at[3].num_correct) == (3, 2)
    assert second.aggregate_score == 1.0

    sample = first.samples[0]
    assert sample.actual_trajectory == ["call_agent", "storePlan", "call_agent", "executePlan"]
    assert sample.response_text == "Planning the change. Done: p-001 now costs 6.49."
    assert [a.to_wire() for a in sample.planned_actions] == [
        {"type": "price_change", "payload": PRICE_CHANGE}
    ]
    assert [a.type for a in sample.resolved_actions] == ["price_change"]
    assert (sample.token_usage.input_tokens, sample.token_usage.output_tokens) == (600, 120)
    assert sample.latency is not None
    assert (sample.latency.total_ms, sample.latency.first_token_ms) == (1200, 210)
    assert [(i.agent, i.estimated_cost_usd) for i in sample.model_invocations] == [
        ("coordinator", pytest.approx(0.36)),
        ("planner", pytest.approx(0.24)),
        ("executor", None),
    ]
    assert sample.cost is not None
    assert sample.cost.total_cost_usd == pytest.approx(0.6)
    assert sample.metadata is not None
    assert "trajectoryEvents" in sample.metadata
    assert first.samples[2].cost is None  # no priced invocation

    summary = artifact.summary
    # Test cases pass at 0.7: 2/3 does not, 1.0 does.
    assert (summary.total_test_cases, summary.passed, summary.failed) == (2, 1, 1)
    assert summary.pass_rate == 0.5
    assert summary.aggregate_score == 0.5
    summary_pass_at = {p.k: p for p in summary.pass_at_k}
    assert summary_pass_at[1].simple_estimate == 0.5
    assert summary_pass_at[3].unbiased_estimate is None  # 3 > 2 test cases
    assert summary_pass_at[3].simple_estimate == 1.0
    usage_total = summary.total_usage
    assert usage_total.to_wire() == {
        "inputTokens": 5 * 600 + 10,
        "outputTokens": 5 * 120 + 5,
        "cachedTokens": 5 * 40,
        "cacheCreationTokens": 5 * 10,
    }
    all_samples = [*first.samples, *second.samples]
    assert summary.total_duration_ms == sum(s.duration_ms for s in all_samples)
    assert summary.latency is not None
    # Latencies [300, 1200 x 5]: nearest-rank p50 is the 3rd value, p95 and p99 the 6th.
    assert summary.latency.to_wire() == {
        "minMs": 300,
        "p50Ms": 1200,
        "p95Ms": 1200,
        "p99Ms": 1200,
        "maxMs": 1200,
    }
    assert summary.cost is not None
    assert summary.cost.estimated_cost_usd == pytest.approx(5 * 0.6)
    per_agent = {agent.agent: agent for agent in summary.cost.per_agent}
    assert list(per_agent) == ["coordinator", "executor", "planner"]
    assert per_agent["coordinator"].estimated_cost_usd == pytest.approx(5 * 0.36)
    assert per_agent["coordinator"].usage.input_tokens == 5 * 300
    assert per_agent["executor"].estimated_cost_usd is None

    assert EvalArtifact.model_validate(artifact.to_wire()) == artifact


async def test_mean_score_aggregation() -> None:
    def events_for(case: EvalTestCase, index: int) -> Events:
        return planner_only_run() if index == 0 else coordinator_run()

    artifact = await run_eval(
        request(samples_per_case=2, aggregation_strategy="meanScore"), replay(events_for)
    )

    (case,) = artifact.test_cases
    assert case.aggregate_score == pytest.approx((0.25 + 1.0) / 2)
    assert artifact.summary.aggregate_score == pytest.approx(0.625)
    assert artifact.summary.passed == 0  # 0.625 < 0.7


async def test_the_stream_yields_the_seed_envelopes_in_order() -> None:
    stream = stream_eval(
        request(samples_per_case=2, concurrency=1), replay(lambda c, i: coordinator_run())
    )

    envelopes = await collect(stream)

    assert [e.type for e in envelopes] == [
        "evalStarted",
        "testCaseStarted",
        "sampleCompleted",
        "sampleCompleted",
        "testCaseCompleted",
        "evalCompleted",
    ]
    assert [e.sequence for e in envelopes] == list(range(6))
    assert {e.run_id for e in envelopes} == {stream.run_id}
    started = envelopes[0].to_wire()
    assert set(started) == {"runId", "sequence", "type", "data"}
    assert started["data"]["artifact"]["summary"]["totalTestCases"] == 1
    assert started["data"]["artifact"]["testCases"] == []
    assert envelopes[1].to_wire()["data"] == {"testCaseId": "price-change"}
    completed = envelopes[-1].to_wire()["data"]["artifact"]
    assert completed["testCases"][0]["samples"][0]["aggregateScore"] == 1.0
    assert HarnessEvalEventEnvelope.model_validate(json.loads(json.dumps(started))) == envelopes[0]


async def test_samples_run_concurrently_up_to_the_limit() -> None:
    state = {"running": 0, "peak": 0, "started": 0}
    changed = asyncio.Condition()
    gates = [asyncio.Event() for _ in range(5)]

    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        state["running"] += 1
        state["started"] += 1
        state["peak"] = max(state["peak"], state["running"])
        async with changed:
            changed.notify_all()
        await gates[index].wait()
        state["running"] -= 1
        events = coordinator_run()
        return sample_output_from_events(events), events

    run = asyncio.create_task(run_eval(request(samples_per_case=5, concurrency=2), run_sample))
    for index in range(5):
        async with changed:
            await asyncio.wait_for(
                changed.wait_for(lambda i=index: state["started"] >= min(i + 2, 5)), WAIT
            )
        assert state["running"] <= 2
        gates[index].set()
    artifact = await asyncio.wait_for(run, WAIT)

    assert state["peak"] == 2
    assert [s.sample_index for s in artifact.test_cases[0].samples] == [0, 1, 2, 3, 4]


async def test_a_sample_past_its_timeout_fails_with_an_error_kind() -> None:
    cancelled = asyncio.Event()

    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        if index == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        events = coordinator_run()
        return sample_output_from_events(events), events

    artifact = await run_eval(request(samples_per_case=2, timeout_per_sample_secs=1), run_sample)

    ok, late = artifact.test_cases[0].samples
    assert ok.passed is True
    assert late.passed is False
    assert late.aggregate_score == 0.0
    assert late.metadata == {"errorKind": "sample_timeout"}
    assert late.error is not None
    assert "timeout_per_sample_secs=1" in late.error
    assert cancelled.is_set()


async def test_a_sample_that_ignores_cancellation_cannot_hang_the_run() -> None:
    release = asyncio.Event()

    async def stubborn(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # swallows the cancellation and keeps going
        return RawSampleOutput(), []

    artifact = await run_eval(request(samples_per_case=1, timeout_per_sample_secs=1), stubborn)

    (sample,) = artifact.test_cases[0].samples
    assert sample.metadata == {"errorKind": "sample_timeout"}
    release.set()


async def test_breaking_out_of_the_stream_cancels_the_remaining_samples() -> None:
    cancelled: list[int] = []
    all_cancelled = asyncio.Event()
    started: list[tuple[str, int]] = []

    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        started.append((case.id, index))
        if index > 0:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(index)
                if len(cancelled) == 2:
                    all_cancelled.set()
                raise
        events = coordinator_run()
        return sample_output_from_events(events), events

    seen = []
    async for envelope in stream_eval(
        request(price_case(), price_case().model_copy(update={"id": "second"}),
                samples_per_case=3, concurrency=3),
        run_sample,
    ):  # fmt: skip
        seen.append(envelope.type)
        if envelope.type == "sampleCompleted":
            break

    await asyncio.wait_for(all_cancelled.wait(), WAIT)
    assert seen == ["evalStarted", "testCaseStarted", "sampleCompleted"]
    assert sorted(cancelled) == [1, 2]
    assert ("second", 0) not in started


async def test_cancel_ends_the_stream_with_eval_cancelled() -> None:
    in_flight = asyncio.Event()
    cancelled = asyncio.Event()

    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        in_flight.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    stream = stream_eval(request(samples_per_case=2), run_sample)
    first = await anext(stream)
    await asyncio.wait_for(in_flight.wait(), WAIT)
    stream.cancel("user pressed stop")
    rest = await asyncio.wait_for(collect(stream), WAIT)

    assert first.type == "evalStarted"
    assert [e.type for e in rest] == ["testCaseStarted", "evalCancelled"]
    assert rest[-1].to_wire()["data"] == {"reason": "user pressed stop"}
    assert cancelled.is_set()
    assert await collect(stream) == []


async def test_failing_samples_are_recorded_with_their_error_kind() -> None:
    async def run_sample(case: EvalTestCase, index: int) -> tuple[Any, Events]:
        if index == 0:
            raise RuntimeError("tool backend down")
        if index == 1:
            return "not an output", []
        events = [
            {"type": "text", "text": "half an answer"},
            {"type": "finish", "finishReason": "stop", "usage": usage(7, 3)},
            {"type": "error", "error": {"message": "provider overloaded"}},
        ]
        return sample_output_from_events(events), events

    artifact = await run_eval(request(samples_per_case=3), run_sample)

    raised, malformed, errored = artifact.test_cases[0].samples
    assert raised.metadata == {"errorKind": "sample_execution_failed"}
    assert raised.error == "RuntimeError: tool backend down"
    assert malformed.metadata == {"errorKind": "sample_execution_failed"}
    assert malformed.error is not None
    assert "run_sample must return" in malformed.error
    assert errored.metadata == {"errorKind": "sample_agent_error"}
    assert errored.error == "provider overloaded"
    assert errored.token_usage.input_tokens == 7  # what the failed run spent still counts
    assert errored.response_text == "half an answer"
    assert all(not s.passed and s.aggregate_score == 0.0 for s in (raised, malformed, errored))
    assert artifact.summary.passed == 0


async def test_a_run_level_failure_ends_with_eval_failed() -> None:
    def broken_price(invocation: ModelInvocation) -> float:
        raise ValueError("price table unreadable")

    envelopes = await collect(
        stream_eval(request(samples_per_case=1), replay(lambda c, i: coordinator_run()),
                    price=broken_price)
    )  # fmt: skip

    assert envelopes[-1].type == "evalFailed"
    assert "price table unreadable" in envelopes[-1].to_wire()["data"]["error"]
    with pytest.raises(EvalRunError, match="price table unreadable"):
        await run_eval(
            request(samples_per_case=1), replay(lambda c, i: coordinator_run()), price=broken_price
        )


# --- judges inside a run --------------------------------------------------------------------


def judge_case() -> EvalTestCase:
    return define_test_case(
        "billing",
        "Update Acme's billing contact",
        final_response=define_final_response_eval(
            scorers=[
                ResponseScorer.judge(id="reports", instructions="Reports the price change."),
                ResponseScorer.contains(id="price", text="6.49"),
            ],
            pass_threshold=1.0,
        ),
    )


def verdict_provider(requests: list[dict[str, Any]]) -> Any:
    async def complete(request: dict[str, Any]) -> dict[str, Any]:
        requests.append(request)
        prompt = request["messages"][0]["content"][0]["text"]
        passed = "now costs 6.49" in prompt
        verdict = {"passed": passed, "selected_rubric_score": int(passed), "reason": "Read it."}
        return {
            "request_id": request["request_id"],
            "response": {
                "content": [{"type": "text", "text": json.dumps(verdict)}],
                "stop_reason": "stop",
                "usage": {"prompt_tokens": 90, "completion_tokens": 20,
                          "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
                "provider": request["provider"],
                "model": request["model"],
            },
        }  # fmt: skip

    return complete


async def test_judges_run_per_sample_through_the_model_call() -> None:
    requests: list[dict[str, Any]] = []

    def events_for(case: EvalTestCase, index: int) -> Events:
        return coordinator_run(reply="Done." if index == 1 else "Done: p-001 now costs 6.49.")

    artifact = await run_eval(
        request(
            judge_case(),
            samples_per_case=2,
            model="claude-sonnet-4-6",
            score_weights={"final_response": 1},
            scorer_config=define_final_response_scorer_config(include_judge_trace=True),
        ),
        replay(events_for),
        complete=verdict_provider(requests),
        run_id="eval-j",
    )

    good, bad = artifact.test_cases[0].samples
    assert (good.passed, good.aggregate_score) == (True, 1.0)
    assert (bad.passed, bad.aggregate_score) == (False, 0.0)
    assert good.final_response_eval is not None
    judged = good.final_response_eval["responseScorers"][0]["details"]
    assert judged["verdict"]["passed"] is True
    assert judged["judgeRun"]["provider"] == "anthropic"  # routed from the model id
    assert judged["judgeRun"]["model"] == "claude-sonnet-4-6"
    assert len(judged["judgeRun"]["promptSha256"]) == 64
    assert judged["judgeTrace"]["prompt"] == requests[0]["messages"][0]["content"][0]["text"]
    assert [r["request_id"] for r in requests] == [
        "acme/eval-eval-j-billing-0/eval-j/judge-reports/1",
        "acme/eval-eval-j-billing-1/eval-j/judge-reports/1",
    ]
    assert '"sampleIndex": 0' in requests[0]["messages"][0]["content"][0]["text"]
    assert good.model_invocations[-1].agent == "judge"
    assert good.model_invocations[-1].input_tokens == 90
    assert artifact.summary.cost is not None
    assert "judge" in {agent.agent for agent in artifact.summary.cost.per_agent}


async def test_the_judge_model_falls_back_to_the_runtimes_model() -> None:
    requests: list[dict[str, Any]] = []

    await run_eval(
        request(judge_case(), samples_per_case=1, score_weights={"final_response": 1}),
        replay(lambda c, i: coordinator_run()),
        complete=verdict_provider(requests),
        judge_model=("openai", "gpt-5"),
    )

    assert (requests[0]["provider"], requests[0]["model"]) == ("openai", "gpt-5")


async def test_a_judge_error_in_a_run_fails_closed() -> None:
    async def down(request: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("judge endpoint unreachable")

    for complete in (down, None):
        artifact = await run_eval(
            request(judge_case(), samples_per_case=1, model="claude-sonnet-4-6",
                    score_weights={"final_response": 1}),
            replay(lambda c, i: coordinator_run()),
            complete=complete,
        )  # fmt: skip

        (sample,) = artifact.test_cases[0].samples
        assert sample.passed is False
        assert sample.final_response_eval is not None
        judged = sample.final_response_eval["responseScorers"][0]
        assert judged["passed"] is False
        expected = "judge_execution_failed" if complete else "judge_provider_unavailable"
        assert judged["details"]["errorKind"] == expected


# --- selection and bad requests -------------------------------------------------------------


async def test_test_case_ids_and_tags_select_cases() -> None:
    cases = [
        price_case(tags=["smoke"]),
        price_case(tags=["slow"]).model_copy(update={"id": "b"}),
        price_case(tags=["smoke", "slow"]).model_copy(update={"id": "c"}),
    ]
    run_sample = replay(lambda c, i: coordinator_run())

    by_tag = await run_eval(request(*cases, samples_per_case=1, tags_filter=["smoke"]), run_sample)
    by_id = await run_eval(
        request(*cases, samples_per_case=1, test_case_ids=["c", "b"], tags_filter=["slow"]),
        run_sample,
    )

    assert [c.test_case_id for c in by_tag.test_cases] == ["price-change", "c"]
    assert [c.test_case_id for c in by_id.test_cases] == ["b", "c"]


async def test_executor_defaults_score_trajectory_only_where_a_case_authors_it() -> None:
    with_trajectory = define_test_case(
        "with",
        "run plan-1",
        expected_trajectory=["executePlan"],
        trajectory_mode="superset",
        expected_actions=define_expected_actions(
            executed_actions=[define_expected_action("price_change", PRICE_CHANGE)]
        ),
    )
    without = with_trajectory.model_copy(update={"id": "without", "expected_trajectory": []})

    artifact = await run_eval(
        request(with_trajectory, without, mode="executor", samples_per_case=1),
        replay(lambda c, i: coordinator_run()),
    )

    assert artifact.metadata.score_weights == {"trajectory": 0.2, "executed_actions": 0.8}
    first, second = (case.samples[0] for case in artifact.test_cases)
    assert [c.scorer_name for c in first.component_scores] == [
        "trajectory",
        "executed_actions",
        "composite",
    ]
    assert [c.scorer_name for c in second.component_scores] == ["executed_actions", "composite"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"config": {"mode": "testCaseBuilder"}}, ScorerPresetError, "testCaseBuilder"),
        ({"scorer_preset": "trajectory_only"}, ScorerPresetError, "score_sample only"),
        ({"scorer_preset": "specialist"}, ScorerPresetError, "specialist"),
        ({"config": {"test_case_ids": ["nope"]}}, EvalError, "'nope'"),
        ({"config": {"tags_filter": ["nightly"]}}, EvalError, "no test case is selected"),
        ({"config": {"mode": "specialist", "target_agent_id": "analyst"}}, ScorerPresetError,
         "author expected_trajectory"),
    ],
)  # fmt: skip
def test_a_bad_request_is_refused_before_anything_runs(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    calls: list[int] = []

    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        calls.append(index)
        raise AssertionError("must not run")

    config = define_eval_config(**options.pop("config", {}))
    bare = define_test_case("bare", "hello")
    with pytest.raises(error, match=message):
        stream_eval(
            define_eval_request(
                tenant_id="acme", workspace_id="main", test_cases=[bare], config=config, **options
            ),
            run_sample,
        )
    assert calls == []


def test_a_mapping_or_json_request_is_validated() -> None:
    async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Events]:
        raise AssertionError("must not run")

    wire = request().to_wire()
    assert stream_eval(json.dumps(wire), run_sample).run_id.startswith("eval-")
    wire["testCases"][0]["expectedTrajectry"] = ["x"]
    with pytest.raises(EvalError, match="expectedTrajectry: unknown field"):
        stream_eval(wire, run_sample)


class _Runtime:
    """What run_eval_sync needs of a runtime: a tenant and an async run_eval returning the
    artifact's JSON, as the seed's runtime does."""

    resource_id = "acme"

    async def run_eval(self, eval_request: Any) -> dict[str, Any]:
        artifact = await run_eval(eval_request, replay(lambda c, i: coordinator_run()))
        return artifact.to_wire()


def test_run_eval_sync_validates_the_runtimes_artifact() -> None:
    runtime = _Runtime()
    eval_request = define_eval_request(
        runtime,
        workspace_id="main",
        test_cases=[price_case()],
        config=define_eval_config(
            samples_per_case=1,
            scorer_config=define_trajectory_scorer_config(
                include_sub_agents=True, ignore_tools=["call_agent"]
            ),
        ),
    )

    artifact = run_eval_sync(runtime, eval_request)

    assert isinstance(artifact, EvalArtifact)
    assert artifact.tenant_id == "acme"
    assert artifact.test_cases[0].samples[0].aggregate_score == 1.0


async def test_run_eval_sync_refuses_a_running_loop() -> None:
    with pytest.raises(EvalRunError, match=r"await runtime\.run_eval"):
        run_eval_sync(_Runtime(), request())


@pytest.mark.parametrize(
    ("mode", "weights"),
    [
        ("planner", {"trajectory": 0.5, "planned_actions": 0.5}),
        ("executor", {"trajectory": 0.2, "executed_actions": 0.8}),
        ("sequential", {"trajectory": 0.5, "planned_actions": 0.25, "executed_actions": 0.25}),
        ("specialist", {"trajectory": 1 / 3, "planned_actions": 1 / 3, "executed_actions": 1 / 3}),
    ],
)
async def test_each_mode_scores_with_its_presets_weights(
    mode: str, weights: dict[str, float]
) -> None:
    target = {"target_agent_id": "analyst"} if mode == "specialist" else {}

    artifact = await run_eval(
        request(mode=mode, samples_per_case=1, **target), replay(lambda c, i: coordinator_run())
    )

    assert artifact.mode == mode
    assert artifact.metadata.scorer_preset == mode
    assert artifact.metadata.score_weights == pytest.approx(weights)
    (sample,) = artifact.test_cases[0].samples
    assert [c.scorer_name for c in sample.component_scores] == [*weights, "composite"]
    assert sample.aggregate_score == 1.0
