"""Offline scoring (flowai_harness.evals.score_sample and the scorers behind it).

Every expected number here is worked out by hand in the test (or its comment), never read
back from the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowai_harness.errors import EvalError, ScorerPresetError
from flowai_harness.evals import (
    JudgeResult,
    JudgeVerdict,
    RawSampleOutput,
    ResponseScorer,
    define_expected_action,
    define_expected_actions,
    define_final_response_eval,
    define_resolved_action,
    define_scorer_preset,
    define_test_case,
    define_trajectory_scorer_config,
    pass_at_k_simple,
    pass_at_k_unbiased,
    score_sample,
)

# --- trajectory -----------------------------------------------------------------------------


def trajectory_score(expected: list[str], actual: list[str], mode: Any) -> tuple[float, Any]:
    case = define_test_case("t", "run", expected_trajectory=expected, trajectory_mode=mode)
    scored = score_sample(
        case, RawSampleOutput(actual_trajectory=actual), scorer_preset="trajectory_only"
    )
    return scored.aggregate, scored.component_scores[0].details


@pytest.mark.parametrize(
    ("mode", "actual", "passes"),
    [
        ("strict", ["a", "b"], True),
        ("strict", ["b", "a"], False),
        ("strict", ["a", "b", "c"], False),
        ("unordered", ["b", "a"], True),
        ("unordered", ["a", "a", "b"], False),  # a multiset: the repeat counts
        ("unordered", ["a"], False),
        ("subset", ["a"], True),
        ("subset", [], True),
        ("subset", ["a", "c"], False),  # an unexpected actual call fails
        ("superset", ["a", "x", "b", "y"], True),
        ("superset", ["a", "x"], False),
        ("subsequence", ["x", "a", "y", "b"], True),
        ("subsequence", ["b", "a"], False),  # both present, wrong order
        ("subsequence", ["a"], False),
    ],
)
def test_each_trajectory_mode_is_a_binary_predicate(
    mode: str, actual: list[str], passes: bool
) -> None:
    score, details = trajectory_score(["a", "b"], actual, mode)

    assert score == (1.0 if passes else 0.0)
    assert details["passed"] is passes
    assert details["mode"] == mode


def test_empty_expected_and_actual_is_a_vacuous_pass() -> None:
    score, details = trajectory_score([], [], "unordered")

    assert score == 1.0
    assert details["diagnostics"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "f2": 1.0}


def test_diagnostics_explain_a_failed_subsequence() -> None:
    score, details = trajectory_score(
        ["storePlan", "executePlan"], ["storePlan", "searchProducts"], "subsequence"
    )

    assert score == 0.0
    assert details["matched"] == ["storePlan"]
    assert details["missing"] == ["executePlan"]
    assert details["unexpected"] == ["searchProducts"]
    # tp=1, fp=1, fn=1: precision = recall = 1/2, and F-beta of equal p and r is that value.
    assert details["diagnostics"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "f2": 0.5}


def test_a_passing_superset_still_reports_its_extras() -> None:
    score, details = trajectory_score(["a", "b"], ["a", "lookup", "b"], "superset")

    assert score == 1.0
    assert details["unexpected"] == ["lookup"]
    # p = 2/3, r = 1: F1 = 2pr/(p+r) = 4/5; F2 = 5pr/(4p+r) = (10/3)/(11/3) = 10/11.
    assert details["diagnostics"]["precision"] == pytest.approx(2 / 3)
    assert details["diagnostics"]["recall"] == 1.0
    assert details["diagnostics"]["f1"] == pytest.approx(4 / 5)
    assert details["diagnostics"]["f2"] == pytest.approx(10 / 11)


def test_unordered_diagnostics_match_as_multisets() -> None:
    _, details = trajectory_score(["a", "a", "b"], ["b", "a", "c"], "unordered")

    assert details["matched"] == ["b", "a"]
    assert details["missing"] == ["a"]
    assert details["unexpected"] == ["c"]


def nested_output() -> RawSampleOutput:
    events = [
        {"kind": "agent", "name": "coordinator", "depth": 1},
        {"kind": "tool", "name": "call_agent", "depth": 1},
        {"kind": "agent", "name": "planner", "depth": 2},
        {"kind": "tool", "name": "storePlan", "depth": 2},
        {"kind": "tool", "name": "call_agent", "depth": 1},
        {"kind": "agent", "name": "executor", "depth": 2},
        {"kind": "tool", "name": "executePlan", "depth": 2},
    ]
    return RawSampleOutput(
        actual_trajectory=["call_agent", "storePlan", "call_agent", "executePlan"],
        extra={"trajectoryEvents": events},
    )


@pytest.mark.parametrize(
    ("include_sub_agents", "ignore_tools", "scored"),
    [
        (False, [], ["call_agent", "call_agent"]),
        (True, [], ["call_agent", "storePlan", "call_agent", "executePlan"]),
        (True, ["call_agent"], ["storePlan", "executePlan"]),
        (False, ["call_agent"], []),
    ],
)
def test_projection_options_choose_what_the_trajectory_scorer_sees(
    include_sub_agents: bool, ignore_tools: list[str], scored: list[str]
) -> None:
    case = define_test_case(
        "p", "run", expected_trajectory=["storePlan", "executePlan"], trajectory_mode="strict"
    )

    result = score_sample(
        case,
        nested_output(),
        scorer_preset="trajectory_only",
        scorer_config=define_trajectory_scorer_config(
            include_sub_agents=include_sub_agents, ignore_tools=ignore_tools
        ),
    )

    details = result.component_scores[0].details
    assert details is not None
    assert details["actual"] == scored
    assert details["projection"]["source"] == "trajectoryEvents"
    assert details["projection"]["observedTrajectory"] == nested_output().actual_trajectory
    assert result.aggregate == (1.0 if scored == ["storePlan", "executePlan"] else 0.0)


def test_ignore_tools_apply_to_a_flat_trajectory_too() -> None:
    case = define_test_case("p", "run", expected_trajectory=["lookup"], trajectory_mode="strict")

    result = score_sample(
        case,
        RawSampleOutput(actual_trajectory=["call_agent", "lookup"]),
        scorer_preset="trajectory_only",
        scorer_config=define_trajectory_scorer_config(ignore_tools=["call_agent"]),
    )

    assert result.aggregate == 1.0
    details = result.component_scores[0].details
    assert details is not None
    assert details["projection"]["source"] == "actualTrajectory"


# --- actions --------------------------------------------------------------------------------


def action_score(
    expected: list[tuple[str, dict[str, Any]]],
    actual: list[tuple[str, dict[str, Any]]],
    payload_match: Any = "exact",
    *,
    planned: bool = False,
) -> tuple[float, dict[str, Any]]:
    wanted = [define_expected_action(kind, payload) for kind, payload in expected]
    buckets = {"planned_actions": wanted} if planned else {"executed_actions": wanted}
    case = define_test_case(
        "a", "act", expected_actions=define_expected_actions(payload_match=payload_match, **buckets)
    )
    key = "plannedActions" if planned else "resolvedActions"
    output = RawSampleOutput(
        extra={key: [define_resolved_action(kind, payload).to_wire() for kind, payload in actual]}
    )
    name = "planned_actions" if planned else "executed_actions"
    scored = score_sample(case, output, score_weights={name: 1})
    component = scored.component_scores[0]
    assert component.scorer_name == name
    assert component.details is not None
    return scored.aggregate, component.details


def test_exact_payloads_ignore_key_order() -> None:
    score, details = action_score(
        [("send_email", {"template": "stockout", "to": "ops@example.com"})],
        [("send_email", {"to": "ops@example.com", "template": "stockout"})],
    )

    assert score == 1.0
    assert details["pass"] is True
    assert details["summary"]["exactCount"] == 1


def test_exact_payloads_reject_an_extra_field_which_counts_missing_and_extra() -> None:
    score, details = action_score(
        [("price_change", {"value": 10.0})], [("price_change", {"value": 10.0, "note": "x"})]
    )

    assert score == 0.0
    assert details["summary"] == {
        "totalExpected": 1,
        "totalActual": 1,
        "exactCount": 0,
        "missingCount": 1,
        "extraCount": 1,
        "passRate": 0.0,
    }
    assert details["issues"] == [
        'Missing action: price_change:{"value":10.0}',
        'Extra action: price_change:{"note":"x","value":10.0}',
    ]


def test_subset_payloads_ignore_fields_the_expectation_leaves_out() -> None:
    score, _ = action_score(
        [("price_change", {"value": 10.0, "context": {"channels": ["ONLINE"]}})],
        [("price_change", {"value": 10, "scopeId": "gen-1",
                           "context": {"channels": ["ONLINE"], "region": "EU"}})],
        "subset",
    )  # fmt: skip

    assert score == 1.0


def test_numbers_compare_by_value_and_booleans_are_not_numbers() -> None:
    assert action_score([("set", {"v": 1})], [("set", {"v": 1.0})])[0] == 1.0
    assert action_score([("set", {"v": 1})], [("set", {"v": True})])[0] == 0.0
    # 2**53 + 1 is not the float 2**53, even though float(2**53 + 1) == 2**53.
    assert action_score([("set", {"v": 2**53 + 1})], [("set", {"v": float(2**53)})])[0] == 0.0


def test_exact_keeps_array_order_and_subset_matches_scalar_arrays_as_multisets() -> None:
    expected = [("delist", {"ids": ["a", "b", "c"]})]
    shuffled = [("delist", {"ids": ["c", "a", "b"]})]

    assert action_score(expected, shuffled, "exact")[0] == 0.0
    assert action_score(expected, shuffled, "subset")[0] == 1.0
    assert action_score(expected, [("delist", {"ids": ["c", "a", "b", "d"]})], "subset")[0] == 0.0


def test_type_must_match_exactly_even_in_subset_mode() -> None:
    assert action_score([("price_change", {})], [("price_update", {})], "subset")[0] == 0.0


def test_action_lists_are_order_free() -> None:
    score, _ = action_score([("a", {"n": 1}), ("b", {"n": 2})], [("b", {"n": 2}), ("a", {"n": 1})])

    assert score == 1.0


def test_extra_actions_are_penalised() -> None:
    score, details = action_score([("a", {})], [("a", {}), ("b", {})])

    # tp=1, fp=1, fn=0: p = 1/2, r = 1, F2 = 5pr/(4p+r) = 2.5/3.
    assert score == pytest.approx(2.5 / 3)
    assert details["pass"] is False
    assert details["summary"]["passRate"] == 1.0


def test_missing_actions_cost_more_than_extras() -> None:
    score, _ = action_score([("a", {}), ("b", {})], [("a", {})])

    # tp=1, fp=0, fn=1: p = 1, r = 1/2, F2 = 5pr/(4p+r) = 2.5/4.5.
    assert score == pytest.approx(2.5 / 4.5)


def test_matching_is_maximal_not_greedy() -> None:
    # Greedy first-match would give the broad {} expectation the only actual the specific
    # one can match, leaving one missing and one extra.
    score, details = action_score(
        [("update", {}), ("update", {"id": 1})],
        [("update", {"id": 1}), ("update", {"other": 2})],
        "subset",
    )

    assert score == 1.0
    assert details["summary"]["exactCount"] == 2


def test_planned_actions_read_planned_actions() -> None:
    score, details = action_score(
        [("price_change", {"value": 1})], [("price_change", {"value": 1})], planned=True
    )

    assert score == 1.0
    assert details["payloadMatch"] == "exact"


def test_no_actual_actions_against_expected_ones_scores_zero() -> None:
    assert action_score([("a", {})], [])[0] == 0.0


# --- final response -------------------------------------------------------------------------


def response_score(
    scorers: list[ResponseScorer], text: str | None, threshold: float = 1.0, **verdicts: Any
) -> tuple[float, dict[str, Any]]:
    case = define_test_case(
        "r",
        "answer",
        final_response=define_final_response_eval(scorers=scorers, pass_threshold=threshold),
    )
    output = RawSampleOutput(response_text=text)
    if verdicts:
        output = output.with_judge_verdicts(verdicts)
    scored = score_sample(case, output, score_weights={"final_response": 1})
    details = scored.component_scores[0].details
    assert details is not None
    return scored.aggregate, details


@pytest.mark.parametrize(
    ("scorer", "text", "passes"),
    [
        (ResponseScorer.exact(id="s", expected="42"), "42", True),
        (ResponseScorer.exact(id="s", expected="42"), "42.", False),
        (ResponseScorer.contains(id="s", text="Revenue"), "revenue rose", False),
        (ResponseScorer.contains(id="s", text="Revenue", case_sensitive=False), "revenue", True),
        (ResponseScorer.regex(id="s", pattern=r"\$[0-9,]+"), "it costs $1,200", True),
        (ResponseScorer.regex(id="s", pattern=r"^\$"), "it costs $1,200", False),
    ],
)
def test_deterministic_response_scorers(scorer: ResponseScorer, text: str, passes: bool) -> None:
    score, details = response_score([scorer], text)

    assert score == (1.0 if passes else 0.0)
    assert details["responseScorers"][0]["passed"] is passes
    assert details["responseScorers"][0]["method"] == scorer.method


def test_weights_give_the_passed_share_and_the_threshold_gates_it() -> None:
    scorers = [
        ResponseScorer.contains(id="update", text="updated", weight=2),
        ResponseScorer.contains(id="email", text="jane@example.com", weight=1),
    ]

    passed, details = response_score(scorers, "Billing was updated.", threshold=0.5)
    failed, failed_details = response_score(scorers, "Billing was updated.", threshold=0.7)

    assert details["score"] == pytest.approx(2 / 3)
    assert passed == pytest.approx(2 / 3)
    assert (details["passedWeight"], details["totalWeight"]) == (2.0, 3.0)
    # Below the final-response threshold the effective score is 0; the raw score stays.
    assert failed == 0.0
    assert failed_details["score"] == pytest.approx(2 / 3)
    assert failed_details["effectiveScore"] == 0.0
    assert failed_details["passed"] is False


def test_a_failed_required_scorer_gates_the_final_response() -> None:
    scorers = [
        ResponseScorer.contains(id="update", text="updated", weight=2),
        ResponseScorer.exact(id="no_refund", expected="no refund", required=True),
    ]

    score, details = response_score(scorers, "The contact was updated.", threshold=0.5)

    assert score == 0.0
    assert details["score"] == pytest.approx(2 / 3)
    assert details["requiredFailed"] == ["no_refund"]


def test_recorded_judge_verdicts_are_scored_with_weights() -> None:
    scorers = [
        ResponseScorer.judge(id="reports", instructions="Reports the update.", weight=3),
        ResponseScorer.judge(id="no_refund", instructions="Claims no refund.", required=True),
    ]

    score, details = response_score(
        scorers,
        "Updated.",
        threshold=0.25,
        reports=JudgeVerdict(passed=False, selected_rubric_score=0, reason="No update named."),
        no_refund=JudgeVerdict(passed=True, selected_rubric_score=1, reason="No refund."),
    )

    assert score == pytest.approx(1 / 4)
    assert details["responseScorers"][0]["details"]["verdict"]["reason"] == "No update named."


def test_a_judge_without_a_recorded_verdict_fails_closed() -> None:
    score, details = response_score(
        [ResponseScorer.judge(id="j", instructions="Is it polite?")], "Thanks!"
    )

    assert score == 0.0
    scorer = details["responseScorers"][0]
    assert scorer["passed"] is False
    assert scorer["details"]["missingVerdict"] is True
    assert scorer["details"]["errorKind"] == "judge_provider_unavailable"


def test_a_recorded_judge_error_counts_as_a_failed_scorer_not_an_exclusion() -> None:
    errored = JudgeResult(
        verdict=JudgeVerdict(passed=False, selected_rubric_score=0, reason="invalid JSON"),
        error_kind="judge_invalid_json",
    )
    scorers = [
        ResponseScorer.judge(id="j", instructions="Polite?"),
        ResponseScorer.contains(id="c", text="Thanks"),
    ]

    score, details = response_score(scorers, "Thanks!", threshold=0.5, j=errored)

    assert score == 0.5  # the errored judge stays in the weighting
    assert details["responseScorers"][0]["details"]["errorKind"] == "judge_invalid_json"


def test_no_response_text_scores_zero() -> None:
    score, details = response_score([ResponseScorer.contains(id="c", text="x")], None)

    assert score == 0.0
    assert details == {
        "configured": True,
        "passed": False,
        "reason": "No final response text was captured for this sample.",
    }


def test_malformed_recorded_verdicts_score_zero_with_the_reason() -> None:
    case = define_test_case(
        "r",
        "q",
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.judge(id="j", instructions="Polite?")]
        ),
    )
    output = RawSampleOutput(
        response_text="hi",
        extra={"finalResponseJudgeVerdicts": {"j": {"passed": True, "reason": "no score"}}},
    )

    scored = score_sample(case, output, score_weights={"final_response": 1})

    assert scored.aggregate == 0.0
    details = scored.component_scores[0].details
    assert details is not None
    assert "selected_rubric_score" in details["reason"]


# --- composition and presets ----------------------------------------------------------------


def rich_case(**overrides: Any) -> Any:
    options: dict[str, Any] = {
        "expected_trajectory": ["storePlan", "executePlan"],
        "trajectory_mode": "strict",
        "expected_actions": define_expected_actions(
            planned_actions=[define_expected_action("p", {})],
            executed_actions=[define_expected_action("e", {})],
        ),
    }
    options.update(overrides)
    return define_test_case("rich", "do it", **options)


def rich_output(*, trajectory_ok: bool, planned_ok: bool, executed_ok: bool) -> RawSampleOutput:
    return RawSampleOutput(
        actual_trajectory=["storePlan", "executePlan"] if trajectory_ok else ["storePlan"],
        response_text="Done.",
        extra={
            "plannedActions": [{"type": "p" if planned_ok else "x", "payload": {}}],
            "resolvedActions": [{"type": "e" if executed_ok else "x", "payload": {}}],
        },
    )


def test_sequential_defaults_weigh_trajectory_half_and_each_action_source_a_quarter() -> None:
    scored = score_sample(
        rich_case(), rich_output(trajectory_ok=False, planned_ok=True, executed_ok=True)
    )

    assert [c.scorer_name for c in scored.component_scores] == [
        "trajectory",
        "planned_actions",
        "executed_actions",
        "composite",
    ]
    assert scored.aggregate == 0.5
    assert scored.component_scores[-1].score == scored.aggregate


def test_planner_mode_weighs_trajectory_and_planned_actions_equally() -> None:
    scored = score_sample(
        rich_case(),
        rich_output(trajectory_ok=True, planned_ok=False, executed_ok=False),
        mode="planner",
    )

    assert [c.scorer_name for c in scored.component_scores] == [
        "trajectory",
        "planned_actions",
        "composite",
    ]
    assert scored.aggregate == 0.5


def test_executor_scores_an_authored_trajectory_lightly() -> None:
    scored = score_sample(
        rich_case(),
        rich_output(trajectory_ok=False, planned_ok=False, executed_ok=True),
        scorer_preset="executor",
    )

    # executed_actions 0.8 (passes) + trajectory 0.2 (fails).
    assert scored.aggregate == pytest.approx(0.8)


def test_executor_without_a_trajectory_scores_executed_actions_only() -> None:
    scored = score_sample(
        rich_case(expected_trajectory=[]),
        rich_output(trajectory_ok=False, planned_ok=False, executed_ok=True),
        scorer_preset="executor",
    )

    assert [c.scorer_name for c in scored.component_scores] == ["executed_actions", "composite"]
    assert scored.aggregate == 1.0


def test_unauthored_action_buckets_are_dropped_not_free() -> None:
    case = define_test_case("t", "x", expected_trajectory=["a"])

    scored = score_sample(case, RawSampleOutput(actual_trajectory=["b"]))

    # Sequential defaults, but only the trajectory is authored: it alone counts.
    assert [c.scorer_name for c in scored.component_scores] == ["trajectory", "composite"]
    assert scored.aggregate == 0.0


def test_a_final_response_joins_default_weights_at_one_half() -> None:
    case = rich_case(
        expected_actions=None,
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.contains(id="done", text="Done")]
        ),
    )

    scored = score_sample(case, rich_output(trajectory_ok=False, planned_ok=True, executed_ok=True))

    # trajectory 0.5 and final_response 0.5, normalised: 0.5 * 0 + 0.5 * 1.
    assert [c.scorer_name for c in scored.component_scores] == [
        "trajectory",
        "final_response",
        "composite",
    ]
    assert scored.aggregate == 0.5


def test_explicit_weights_are_normalised() -> None:
    scored = score_sample(
        rich_case(),
        rich_output(trajectory_ok=True, planned_ok=False, executed_ok=False),
        score_weights={"trajectory": 3, "planned_actions": 1},
    )

    assert scored.aggregate == pytest.approx(0.75)


def test_preset_weights_replace_the_defaults() -> None:
    scored = score_sample(
        rich_case(),
        rich_output(trajectory_ok=False, planned_ok=True, executed_ok=True),
        scorer_preset=define_scorer_preset(
            "sequential", weights={"trajectory": 1, "executed_actions": 3}
        ),
    )

    assert scored.aggregate == pytest.approx(0.75)


def test_specialist_scores_what_the_case_authors() -> None:
    case = define_test_case(
        "s",
        "q",
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.contains(id="c", text="ok")]
        ),
    )

    scored = score_sample(case, RawSampleOutput(response_text="ok"), mode="specialist")

    assert [c.scorer_name for c in scored.component_scores] == ["final_response", "composite"]
    assert scored.aggregate == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "planner", "scorer_preset": "executor"}, "conflicts"),
        ({"mode": "planner", "scorer_preset": "trajectory_only"}, "only when mode is omitted"),
        ({"scorer_preset": "fastest"}, "unknown scorer preset"),
        ({"scorer_preset": "planner", "score_weights": {"executed_actions": 1}}, "not valid"),
        (
            {
                "scorer_preset": define_scorer_preset("planner", weights={"trajectory": 1}),
                "score_weights": {"trajectory": 1},
            },
            "once",
        ),
    ],
)
def test_incompatible_scoring_choices_are_preset_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScorerPresetError, match=message):
        score_sample(rich_case(), RawSampleOutput(), **options)


def test_a_specialist_case_with_nothing_to_score_says_what_to_author() -> None:
    with pytest.raises(ScorerPresetError, match="author expected_trajectory"):
        score_sample(define_test_case("bare", "q"), RawSampleOutput(), mode="specialist")


def test_explicit_specialist_final_response_weight_needs_a_spec() -> None:
    with pytest.raises(ScorerPresetError, match="final_response"):
        score_sample(
            define_test_case("bare", "q"),
            RawSampleOutput(),
            mode="specialist",
            score_weights={"final_response": 1},
        )


def test_bad_inputs_are_eval_errors() -> None:
    with pytest.raises(EvalError, match="unknown eval mode 'solo'"):
        score_sample(rich_case(), RawSampleOutput(), mode="solo")  # type: ignore[arg-type]
    with pytest.raises(EvalError, match="unknown scorer weight key 'speed'"):
        score_sample(rich_case(), RawSampleOutput(), score_weights={"speed": 1})
    with pytest.raises(EvalError, match="unknown scorer_config"):
        score_sample(rich_case(), RawSampleOutput(), scorer_config={"trajectry": {}})
    with pytest.raises(EvalError, match="resolvedActions"):
        score_sample(rich_case(), {"extra": {"resolvedActions": [{"kind": "x"}]}})


# --- pass@k ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "unbiased"),
    [
        (3, 1, 1, 1 / 3),  # k=1 is the pass rate
        (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 1 - 21/252
        (5, 4, 2, 1.0),  # C(1,2) = 0: every pair holds a correct sample
        (3, 0, 2, 0.0),
        (3, 3, 2, 1.0),
        (2, 1, 3, None),  # k > n: not estimable
    ],
)
def test_unbiased_pass_at_k_against_hand_computed_values(
    n: int, c: int, k: int, unbiased: float | None
) -> None:
    result = pass_at_k_unbiased(n, c, k)

    if unbiased is None:
        assert result is None
    else:
        assert result == pytest.approx(unbiased)


@pytest.mark.parametrize(
    ("n", "c", "k", "simple"),
    [
        (5, 2, 3, 0.9),  # equals the unbiased estimate when k <= n
        (3, 1, 1, 1 / 3),
        (2, 1, 3, 1.0),  # k capped at n: any correct sample is a pass
        (2, 0, 3, 0.0),
        (0, 0, 1, 0.0),
        (3, 1, 0, 0.0),
    ],
)
def test_simple_pass_at_k_against_hand_computed_values(
    n: int, c: int, k: int, simple: float
) -> None:
    assert pass_at_k_simple(n, c, k) == pytest.approx(simple)
