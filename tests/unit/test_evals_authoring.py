"""Eval authoring (flowai_harness.evals): the define_* helpers, the models, their wire shapes
and the typed errors bad input gets."""

from __future__ import annotations

from typing import Any

import pytest

from flowai_harness.errors import EvalError, FlowaiError
from flowai_harness.evals import (
    EvalConfig,
    EvalRequest,
    EvalTestCase,
    GroundTruth,
    JudgeVerdict,
    RawSampleOutput,
    ResponseScorer,
    ScoreWeights,
    define_action_ground_truth,
    define_eval_config,
    define_eval_request,
    define_expected_action,
    define_expected_actions,
    define_final_response_eval,
    define_final_response_scorer_config,
    define_ground_truth,
    define_resolved_action,
    define_scorer_preset,
    define_test_case,
    define_trajectory_scorer_config,
    final_response_judge_verdicts_extra,
)


def test_eval_config_defaults_are_the_seeds() -> None:
    config = define_eval_config()

    assert config.mode == "sequential"
    assert config.samples_per_case == 3
    assert config.pass_threshold == 0.7
    assert config.concurrency == 2
    assert config.k_values == [1, 3]
    assert config.timeout_per_sample_secs == 120
    assert config.aggregation_strategy == "passRate"
    assert (config.provider, config.model, config.tags_filter, config.score_weights) == (
        None,
        None,
        None,
        None,
    )
    assert config == EvalConfig()


def test_eval_config_wire_shape_is_camel_case_and_round_trips() -> None:
    config = define_eval_config(
        mode="planner",
        samples_per_case=5,
        k_values=[1, 5],
        tags_filter=["smoke"],
        score_weights={"trajectory": 1, "planned_actions": 3},
        scorer_config={
            **define_trajectory_scorer_config(
                include_sub_agents=True, ignore_tools=[" call_agent ", "call_agent"]
            ),
            **define_final_response_scorer_config(include_judge_trace=True),
        },
    )

    wire = config.to_wire()

    assert wire["samplesPerCase"] == 5
    assert wire["kValues"] == [1, 5]
    assert wire["scoreWeights"] == {"trajectory": 1.0, "planned_actions": 3.0}
    assert wire["scorerConfig"] == {
        "trajectory": {"includeSubAgents": True, "ignoreTools": ["call_agent"]},
        "finalResponse": {"includeJudgeTrace": True},
    }
    assert EvalConfig.model_validate(wire) == config
    assert config.trajectory_config.ignore_tools == ["call_agent"]
    assert config.final_response_config.include_judge_trace is True


def test_test_case_defaults_and_wire_shape() -> None:
    case = define_test_case(
        "tc-1",
        "Plan the change",
        tags=["smoke"],
        expected_trajectory=["storePlan"],
        expected_actions=define_expected_actions(
            planned_actions=[define_expected_action("price_change", {"value": 1})],
            payload_match="subset",
        ),
        source_thread_id="thread-9",
    )

    assert case.trajectory_mode == "unordered"
    wire = case.to_wire()
    assert wire["structuredGroundTruth"] == {
        "kind": "structured",
        "data": {
            "kind": "flat",
            "plannedActions": [{"type": "price_change", "payload": {"value": 1}}],
            "executedActions": [],
            "payloadMatch": "subset",
        },
    }
    assert wire["sourceThreadId"] == "thread-9"
    assert EvalTestCase.model_validate(wire) == case
    ground_truth = wire.pop("structuredGroundTruth")
    assert EvalTestCase.model_validate({**wire, "expectedActions": ground_truth}) == case


def test_ground_truth_spellings() -> None:
    actions = define_action_ground_truth(executed_actions=[{"type": "a", "payload": {}}])
    generic = define_ground_truth({"answer": 42}, schema="Answer")

    assert actions == define_expected_actions(executed_actions=[define_expected_action("a")])
    assert actions.actions is not None
    assert generic.actions is None
    assert generic.to_wire() == {"kind": "structured", "data": {"answer": 42}, "schema": "Answer"}
    assert GroundTruth.model_validate(generic.to_wire()) == generic
    flat = define_ground_truth({"kind": "flat", "executedActions": [{"type": "a"}]})
    assert flat.actions is not None
    assert flat.actions.executed_actions[0].type == "a"


def test_response_scorers_and_final_response_eval() -> None:
    judge = ResponseScorer.judge(
        id="similar",
        instructions="Compare to the reference.",
        reference_response="Updated.",
        rubric={0: "Not similar.", 1: "Similar."},
        required=True,
        weight=2,
    )
    spec = define_final_response_eval(scorers=[judge, ResponseScorer.exact(id="e", expected="x")])

    assert spec.pass_threshold == 1.0
    assert judge.to_wire()["rubric"] == {"0": "Not similar.", "1": "Similar."}
    assert judge.to_wire()["referenceResponse"] == "Updated."
    assert ResponseScorer.model_validate(judge.to_wire()) == judge
    assert ResponseScorer.contains(id="c", text="hi").case_sensitive is True


def test_raw_sample_output_normalises_actions_and_records_verdicts() -> None:
    action = define_resolved_action("update_customer", {"customerId": "acme"})
    output = RawSampleOutput(
        actual_trajectory=["updateCustomer"], extra={"resolvedActions": [action.to_wire()]}
    )

    with_verdicts = output.with_judge_verdicts(
        {"polite": JudgeVerdict(passed=True, selected_rubric_score=1, reason="  Polite. ")}
    )

    assert output.extra["resolvedActions"] == [
        {"type": "update_customer", "payload": {"customerId": "acme"}}
    ]
    assert with_verdicts.extra["finalResponseJudgeVerdicts"] == {
        "polite": {"passed": True, "selected_rubric_score": 1, "reason": "Polite."}
    }
    assert with_verdicts.actual_trajectory == ["updateCustomer"]
    assert final_response_judge_verdicts_extra(
        {"j": {"passed": False, "selected_rubric_score": 0, "reason": "No."}}
    ) == {"finalResponseJudgeVerdicts": {"j": {"passed": False, "selected_rubric_score": 0,
                                               "reason": "No."}}}  # fmt: skip


def test_eval_request_takes_the_tenant_from_the_runtime() -> None:
    class Runtime:
        resource_id = "tenant-acme"

    request = define_eval_request(
        Runtime(),
        workspace_id="workspace-main",
        test_cases=[define_test_case("tc-1", "hello")],
        scorer_preset=define_scorer_preset("planner", weights={"trajectory": 1}),
    )

    assert request.tenant_id == "tenant-acme"
    assert request.config == define_eval_config()
    assert request.scorer_preset == "planner"
    assert request.score_weights == ScoreWeights({"trajectory": 1})
    assert EvalRequest.model_validate(request.to_wire()) == request


def test_score_weights_accept_a_mapping_and_serialise_as_one() -> None:
    weights = ScoreWeights({"trajectory": 1, "final_response": 0})

    assert weights.to_wire() == {"trajectory": 1.0, "final_response": 0.0}
    assert ScoreWeights.model_validate({"trajectory": 1, "final_response": 0}) == weights
    assert weights.as_dict() == {"trajectory": 1.0, "final_response": 0.0}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: define_eval_config(samples_per_case=0), "samples_per_case must be at least 1"),
        (lambda: define_eval_config(pass_threshold=1.5), "pass_threshold must be between"),
        (lambda: define_eval_config(concurrency=0), "concurrency must be at least 1"),
        (lambda: define_eval_config(k_values=[0]), "k_values"),
        (lambda: define_eval_config(timeout_per_sample_secs=0), "timeout_per_sample_secs"),
        (lambda: define_eval_config(mode="specialist"), "target_agent_id"),
        (lambda: define_eval_config(mode="chaos"), "mode"),  # type: ignore[arg-type]
        (lambda: define_eval_config(score_weights={"trajectory": -1}), ">= 0"),
        (lambda: define_eval_config(score_weights={"trajectory": 0}), "positive weight"),
        (lambda: define_eval_config(scorer_config={"trajectry": {}}), "unknown scorer_config"),
        (lambda: define_trajectory_scorer_config(ignore_tools=[""]), "non-empty tool names"),
        (
            lambda: define_test_case(
                "t",
                "x",
                expected_actions=define_expected_actions(executed_actions=[{"type": "a"}]),
                ground_truth=define_ground_truth({"a": 1}),
            ),
            "not both",
        ),
        (lambda: define_test_case("", "x"), "test case id must be a non-empty string"),
        (lambda: define_test_case("t", "x", trajectory_mode="fuzzy"), "trajectory_mode"),  # type: ignore[arg-type]
        (lambda: define_expected_actions(), "at least one of planned_actions or executed_actions"),
        (lambda: define_expected_action(""), "action type must be a non-empty string"),
        (lambda: define_final_response_eval(scorers=[]), "scorers"),
        (
            lambda: define_final_response_eval(
                scorers=[ResponseScorer.exact(id="a", expected="x")] * 2
            ),
            "unique",
        ),
        (lambda: ResponseScorer.judge(id="j", instructions=" "), "give instructions"),
        (lambda: ResponseScorer.judge(id="j", instructions="q", rubric={1: "yes"}), "0 and 1"),
        (lambda: ResponseScorer.regex(id="r", pattern="("), "invalid pattern"),
        (lambda: ResponseScorer.contains(id="c", text=""), "non-empty text"),
        (lambda: ResponseScorer.exact(id="e", expected="x", weight=0), "weight must be positive"),
        (lambda: define_scorer_preset("fast"), "name"),  # type: ignore[arg-type]
        (
            lambda: final_response_judge_verdicts_extra(
                {"j": {"passed": True, "selected_rubric_score": 0, "reason": "x"}}
            ),
            "passed must be true exactly when",
        ),
        (lambda: define_eval_request(workspace_id="w", test_cases=[]), "needs the tenant"),
        (
            lambda: define_eval_request(tenant_id="t", workspace_id="w", test_cases=[]),
            "at least one test case",
        ),
        (
            lambda: define_eval_request(
                tenant_id="t",
                workspace_id="w",
                test_cases=[define_test_case("a", "x"), define_test_case("a", "y")],
            ),
            "repeated: \\['a'\\]",
        ),
        (
            lambda: define_eval_request(
                tenant_id="t",
                workspace_id="w",
                scorer_preset="trajectory_only",
                test_cases=[
                    define_test_case(
                        "a",
                        "x",
                        final_response=define_final_response_eval(
                            scorers=[ResponseScorer.contains(id="c", text="x")]
                        ),
                    )
                ],
            ),
            "trajectory_only",
        ),
        (lambda: RawSampleOutput.model_validate({"extra": []}), None),
    ],
)
def test_bad_input_is_an_eval_error_that_says_what_to_fix(build: Any, message: str | None) -> None:
    if message is None:
        # Building a model directly gives Pydantic's own error, a ValueError too.
        with pytest.raises(ValueError, match="extra must be a mapping"):
            build()
        return
    with pytest.raises(EvalError, match=message) as raised:
        build()
    assert isinstance(raised.value, FlowaiError)
    assert isinstance(raised.value, ValueError)
    assert raised.value.code == "EVAL_INVALID" or raised.value.code.startswith("EVAL_")


def test_the_error_lists_every_problem() -> None:
    with pytest.raises(EvalError) as raised:
        define_eval_config(samples_per_case="many", concurrency="lots")  # type: ignore[arg-type]

    problems = raised.value.details["errors"]
    assert [problem.split(":")[0] for problem in problems] == ["samples_per_case", "concurrency"]
    assert str(raised.value).startswith("[EVAL_INVALID] define_eval_config is invalid: ")
