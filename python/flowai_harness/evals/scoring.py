"""The scorers: pure functions from a test case and one sample's output to scores.

Owns the four leaf scorers and the weighted composite the seed defines:

- ``trajectory``: a binary predicate per :data:`TrajectoryMode` over the scored projection of
  the observed tool calls (``include_sub_agents`` / ``ignore_tools``), with matched / missing /
  unexpected tools and precision, recall, F1 and F2 as diagnostics only;
- ``planned_actions`` / ``executed_actions``: expected actions against
  ``extra["plannedActions"]`` / ``extra["resolvedActions"]``; ``type`` must be equal, payloads
  compare as semantic JSON (exact, or a deep subset), the assignment is a maximum bipartite
  matching (order-free) and the score is F2 over exact / missing / extra, so extras cost;
- ``final_response``: exact, contains, regex and judge scorers with weights and ``required``
  gates; a judge scorer reads a recorded verdict and never calls a model; without one it fails
  closed (score 0, ``errorKind``);

plus pass@k (simple and unbiased), the scorer presets with their default weights, and
:func:`score_sample`, offline scoring of one known sample.

Pure: no I/O, no clock, no model calls. Must not import the runtime, the native extension, the
judge or the runner.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from ..errors import EvalError, ScorerPresetError
from .artifact import ScoredSample, ScorerResult
from .models import (
    FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY,
    PLANNED_ACTIONS_EXTRA_KEY,
    RESOLVED_ACTIONS_EXTRA_KEY,
    SCORER_NAMES,
    SCORER_PRESET_NAMES,
    TRAJECTORY_EVENTS_EXTRA_KEY,
    ActionPayloadMatchMode,
    EvalMode,
    EvalTestCase,
    ExpectedAction,
    FinalResponseEval,
    FinalResponseScorerConfig,
    JudgeResult,
    RawSampleOutput,
    ResolvedAction,
    ResponseScorer,
    ScorerName,
    ScorerPreset,
    ScorerPresetName,
    ScoreWeights,
    TrajectoryMode,
    TrajectoryScorerConfig,
    validated,
)

__all__ = [
    "DEFAULT_FINAL_RESPONSE_WEIGHT",
    "PRESET_FOR_MODE",
    "compare_actions",
    "default_score_weights",
    "f_beta",
    "final_response_details",
    "materialize_score_weights",
    "pass_at_k",
    "pass_at_k_simple",
    "pass_at_k_unbiased",
    "payload_matches",
    "project_trajectory",
    "score_sample",
    "score_with_weights",
    "semantic_json_equal",
    "trajectory_details",
    "trajectory_passes",
]

# The beta of the action score and of the reported trajectory fScore (recall-weighted).
_BETA: Final = 2.0
DEFAULT_FINAL_RESPONSE_WEIGHT: Final = 0.5
PRESET_FOR_MODE: Final[Mapping[EvalMode, ScorerPresetName]] = {
    "planner": "planner",
    "executor": "executor",
    "sequential": "sequential",
    "specialist": "specialist",
    "testCaseBuilder": "test_case_builder",
}
_SEQUENTIAL_WEIGHTS: Final[Mapping[ScorerName, float]] = {
    "trajectory": 0.5,
    "planned_actions": 0.25,
    "executed_actions": 0.25,
}
_PRESET_DEFAULT_WEIGHTS: Final[Mapping[ScorerPresetName, Mapping[ScorerName, float]]] = {
    "trajectory_only": {"trajectory": 1.0},
    "planner": {"trajectory": 0.5, "planned_actions": 0.5},
    "executor": {"executed_actions": 1.0},
    "sequential": _SEQUENTIAL_WEIGHTS,
    "test_case_builder": _SEQUENTIAL_WEIGHTS,
}
# Executor evals that author a trajectory also score it, lightly.
_EXECUTOR_WITH_TRAJECTORY_WEIGHTS: Final[Mapping[ScorerName, float]] = {
    "executed_actions": 0.8,
    "trajectory": 0.2,
}
_ALLOWED_SCORERS: Final[Mapping[ScorerPresetName, frozenset[ScorerName]]] = {
    "trajectory_only": frozenset({"trajectory"}),
    "planner": frozenset({"trajectory", "planned_actions", "final_response"}),
    "executor": frozenset({"trajectory", "executed_actions", "final_response"}),
    "sequential": frozenset(SCORER_NAMES),
    "specialist": frozenset(SCORER_NAMES),
    "test_case_builder": frozenset(SCORER_NAMES),
}


# --- F-beta and pass@k ----------------------------------------------------------------------


def f_beta(
    true_pos: int, false_pos: int, false_neg: int, beta: float
) -> tuple[float, float, float]:
    """``(precision, recall, F-beta)``. Nothing expected and nothing produced is a perfect
    match (all 1.0); a side with no items has precision or recall 0."""
    if true_pos == false_pos == false_neg == 0:
        return 1.0, 1.0, 1.0
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0
    recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 0.0
    if precision + recall == 0:
        return precision, recall, 0.0
    beta_sq = beta * beta
    return precision, recall, (1 + beta_sq) * precision * recall / (beta_sq * precision + recall)


def pass_at_k_unbiased(n: int, c: int, k: int) -> float | None:
    """The unbiased estimator ``1 - C(n-c, k) / C(n, k)`` (Chen et al., 2021): the chance that
    at least one of k samples drawn without replacement from n (c of them correct) is
    correct. None when k > n: n samples cannot estimate pass@k."""
    if k > n:
        return None
    if c >= n:
        return 1.0
    if c <= 0:
        return 0.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_simple(n: int, c: int, k: int) -> float:
    """The seed's simple estimate: the unbiased one with k capped at n, so it is defined for
    every k (with fewer than k samples, any correct sample counts as a pass); 0 for no samples
    or k = 0."""
    if n <= 0 or k <= 0:
        return 0.0
    estimate = pass_at_k_unbiased(n, c, min(k, n))
    assert estimate is not None  # k <= n here
    return estimate


def pass_at_k(n: int, c: int, k: int) -> tuple[float, float | None]:
    """``(simple, unbiased)`` pass@k for n samples of which c are correct."""
    return pass_at_k_simple(n, c, k), pass_at_k_unbiased(n, c, k)


# --- trajectory -----------------------------------------------------------------------------


def _is_sub_multiset(small: Sequence[str], large: Sequence[str]) -> bool:
    return not (Counter(small) - Counter(large))


def _is_subsequence(expected: Sequence[str], actual: Sequence[str]) -> bool:
    remaining = iter(actual)
    return all(any(tool == wanted for tool in remaining) for wanted in expected)


def trajectory_passes(expected: Sequence[str], actual: Sequence[str], mode: TrajectoryMode) -> bool:
    """The binary trajectory contract of ``mode``:

    strict = same sequence; unordered = same multiset; subset = every actual call is expected
    (extra actual calls fail); superset = every expected call happened (extras allowed);
    subsequence = the expected calls happened in order, gaps allowed.
    """
    if mode == "strict":
        return list(expected) == list(actual)
    if mode == "unordered":
        return Counter(expected) == Counter(actual)
    if mode == "subset":
        return _is_sub_multiset(actual, expected)
    if mode == "superset":
        return _is_sub_multiset(expected, actual)
    return _is_subsequence(expected, actual)


def _multiset_diff(
    expected: Sequence[str], actual: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    unmatched = Counter(expected)
    matched: list[str] = []
    unexpected: list[str] = []
    for tool in actual:
        if unmatched[tool] > 0:
            unmatched[tool] -= 1
            matched.append(tool)
        else:
            unexpected.append(tool)
    missing: list[str] = []
    for tool in expected:
        if unmatched[tool] > 0:
            unmatched[tool] -= 1
            missing.append(tool)
    return matched, missing, unexpected


def _ordered_diff(
    expected: Sequence[str], actual: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    # A longest common subsequence decides which calls line up in order.
    rows, cols = len(expected), len(actual)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            table[i][j] = (
                table[i + 1][j + 1] + 1
                if expected[i] == actual[j]
                else max(table[i + 1][j], table[i][j + 1])
            )
    in_expected = [False] * rows
    in_actual = [False] * cols
    i = j = 0
    while i < rows and j < cols:
        if expected[i] == actual[j]:
            in_expected[i] = in_actual[j] = True
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    matched = [tool for tool, hit in zip(actual, in_actual, strict=True) if hit]
    missing = [tool for tool, hit in zip(expected, in_expected, strict=True) if not hit]
    unexpected = [tool for tool, hit in zip(actual, in_actual, strict=True) if not hit]
    return matched, missing, unexpected


def trajectory_details(
    expected: Sequence[str], actual: Sequence[str], mode: TrajectoryMode, passed: bool
) -> dict[str, Any]:
    """The explanation of one trajectory score: which calls matched (in order for strict and
    subsequence, as multisets otherwise), which expected calls are missing, which observed
    calls were unexpected, and precision / recall / F1 / F2 over those counts. Diagnostics
    only: modes that allow extras pass while still listing them as unexpected."""
    ordered = mode in ("strict", "subsequence")
    matched, missing, unexpected = (_ordered_diff if ordered else _multiset_diff)(expected, actual)
    precision, recall, f2 = f_beta(len(matched), len(unexpected), len(missing), 2.0)
    _, _, f1 = f_beta(len(matched), len(unexpected), len(missing), 1.0)
    return {
        "mode": mode,
        "passed": passed,
        "expected": list(expected),
        "actual": list(actual),
        "matched": matched,
        "missing": missing,
        "unexpected": unexpected,
        "diagnostics": {"precision": precision, "recall": recall, "f1": f1, "f2": f2},
    }


def project_trajectory(
    actual_trajectory: Sequence[str], extra: Mapping[str, Any], config: TrajectoryScorerConfig
) -> dict[str, Any]:
    """The trajectory the scorer compares: from ``extra["trajectoryEvents"]`` when present
    (tool events; a tool at depth > 1 ran inside a sub-agent and counts only with
    ``include_sub_agents``), else from ``actual_trajectory``; ``ignore_tools`` removed."""
    ignored = set(config.ignore_tools)
    events = _trajectory_events(extra.get(TRAJECTORY_EVENTS_EXTRA_KEY))
    if events is None:
        scored = [tool for tool in actual_trajectory if tool not in ignored]
        source = "actualTrajectory"
    else:
        scored = [
            name
            for kind, name, depth in events
            if kind == "tool" and (config.include_sub_agents or depth <= 1) and name not in ignored
        ]
        source = TRAJECTORY_EVENTS_EXTRA_KEY
    return {
        "observedTrajectory": list(actual_trajectory),
        "scoredTrajectory": scored,
        "source": source,
        "config": config.to_wire(),
    }


def _trajectory_events(value: object) -> list[tuple[str, str, int]] | None:
    # Unreadable events fall back to the flat trajectory, as the seed does.
    if not isinstance(value, list):
        return None
    events: list[tuple[str, str, int]] = []
    for event in value:
        if not isinstance(event, Mapping):
            return None
        kind, name, depth = event.get("kind"), event.get("name"), event.get("depth", 0)
        if kind not in ("tool", "agent") or not isinstance(name, str):
            return None
        if not isinstance(depth, int) or isinstance(depth, bool):
            return None
        events.append((kind, name, depth))
    return events


def _score_trajectory(
    test_case: EvalTestCase, output: RawSampleOutput, config: TrajectoryScorerConfig
) -> ScorerResult:
    projection = project_trajectory(output.actual_trajectory, output.extra, config)
    scored: list[str] = projection["scoredTrajectory"]
    passed = trajectory_passes(test_case.expected_trajectory, scored, test_case.trajectory_mode)
    details = trajectory_details(
        test_case.expected_trajectory, scored, test_case.trajectory_mode, passed
    )
    details["projection"] = projection
    return ScorerResult(scorer_name="trajectory", score=1.0 if passed else 0.0, details=details)


# --- actions --------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def semantic_json_equal(left: object, right: object) -> bool:
    """JSON equality by meaning: object key order is ignored and numbers compare by value
    (``1 == 1.0``, exactly: a float never equals an integer it only approximates); booleans
    are not numbers; arrays keep their order."""
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(
            semantic_json_equal(value, right[key]) for key, value in left.items()
        )
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            semantic_json_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    return type(left) is type(right) and left == right


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _scalars_match_unordered(expected: list[Any], actual: list[Any]) -> bool:
    if len(expected) != len(actual):
        return False
    unused = list(actual)
    for value in expected:
        index = next((i for i, other in enumerate(unused) if semantic_json_equal(value, other)), -1)
        if index < 0:
            return False
        del unused[index]
    return True


def _is_deep_subset(expected: object, actual: object) -> bool:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return all(
            key in actual and _is_deep_subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list) and isinstance(actual, list):
        if all(map(_is_scalar, expected)) and all(map(_is_scalar, actual)):
            return _scalars_match_unordered(expected, actual)
        return len(expected) == len(actual) and all(
            _is_deep_subset(a, b) for a, b in zip(expected, actual, strict=True)
        )
    return semantic_json_equal(expected, actual)


def payload_matches(expected: object, actual: object, mode: ActionPayloadMatchMode) -> bool:
    """``exact``: semantic JSON equality. ``subset``: every expected key is present with a
    matching value, recursively; arrays of scalars match as multisets (any order, same
    items), other arrays element by element."""
    return (
        _is_deep_subset(expected, actual)
        if mode == "subset"
        else semantic_json_equal(expected, actual)
    )


def _signature(action_type: str, payload: Mapping[str, Any]) -> str:
    return f"{action_type}:{orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()}"


def _maximum_matching(candidates: list[list[int]], actual_count: int) -> list[int | None]:
    # Augmenting paths (Kuhn): a broad expected payload must not take the only actual action
    # a more specific expected one could match.
    owner: list[int | None] = [None] * actual_count

    def assign(expected_index: int, visited: list[bool]) -> bool:
        for actual_index in candidates[expected_index]:
            if visited[actual_index]:
                continue
            visited[actual_index] = True
            current = owner[actual_index]
            if current is None or assign(current, visited):
                owner[actual_index] = expected_index
                return True
        return False

    for expected_index in range(len(candidates)):
        assign(expected_index, [False] * actual_count)
    return owner


def compare_actions(
    expected: Sequence[ExpectedAction],
    actual: Sequence[ResolvedAction],
    payload_match: ActionPayloadMatchMode,
) -> dict[str, Any]:
    """Match expected to actual actions (order-free, each used once): the details the action
    scorers report, ``{"pass", "payloadMatch", "actions", "summary", "issues"}``."""
    candidates = [
        [
            index
            for index, action in enumerate(actual)
            if action.type == wanted.type
            and payload_matches(wanted.payload, action.payload, payload_match)
        ]
        for wanted in expected
    ]
    owner = _maximum_matching(candidates, len(actual))
    matched_expected = {index for index in owner if index is not None}
    rows: list[dict[str, str]] = []
    issues: list[str] = []
    for index, wanted in enumerate(expected):
        if index in matched_expected:
            rows.append({"signature": _signature(wanted.type, wanted.payload), "status": "exact"})
    for index, wanted in enumerate(expected):
        if index not in matched_expected:
            signature = _signature(wanted.type, wanted.payload)
            rows.append({"signature": signature, "status": "missing"})
            issues.append(f"Missing action: {signature}")
    for index, action in enumerate(actual):
        if owner[index] is None:
            signature = _signature(action.type, action.payload)
            rows.append({"signature": signature, "status": "extra"})
            issues.append(f"Extra action: {signature}")
    exact = len(matched_expected)
    missing = len(expected) - exact
    extra = len(actual) - exact
    # Nothing expected: a perfect pass only when nothing happened either.
    pass_rate = exact / len(expected) if expected else float(not actual)
    return {
        "pass": missing == 0 and extra == 0,
        "payloadMatch": payload_match,
        "actions": rows,
        "summary": {
            "totalExpected": len(expected),
            "totalActual": len(actual),
            "exactCount": exact,
            "missingCount": missing,
            "extraCount": extra,
            "passRate": pass_rate,
        },
        "issues": issues,
    }


def _score_actions(
    scorer_name: ScorerName, test_case: EvalTestCase, output: RawSampleOutput
) -> ScorerResult:
    ground_truth = test_case.ground_truth.actions if test_case.ground_truth else None
    planned = scorer_name == "planned_actions"
    expected: list[ExpectedAction] = []
    if ground_truth is not None:
        expected = ground_truth.planned_actions if planned else ground_truth.executed_actions
    if not expected:
        # Nothing expected from this source: vacuously met (compositions drop such scorers).
        return ScorerResult(scorer_name=scorer_name, score=1.0)
    assert ground_truth is not None
    key = PLANNED_ACTIONS_EXTRA_KEY if planned else RESOLVED_ACTIONS_EXTRA_KEY
    actual = [ResolvedAction.model_validate(action) for action in output.extra.get(key, [])]
    details = compare_actions(expected, actual, ground_truth.payload_match)
    summary = details["summary"]
    _, _, score = f_beta(
        summary["exactCount"], summary["extraCount"], summary["missingCount"], _BETA
    )
    return ScorerResult(scorer_name=scorer_name, score=score, details=details)


# --- final response -------------------------------------------------------------------------


def _response_result(
    scorer: ResponseScorer, passed: bool, reason: str, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": scorer.id,
        "method": scorer.method,
        "passed": passed,
        "score": 1.0 if passed else 0.0,
        "required": scorer.required,
        "weight": scorer.weight,
        "reason": reason,
        "details": details,
    }


def _judge_result(scorer: ResponseScorer, recorded: JudgeResult | None) -> dict[str, Any]:
    if recorded is None:
        # Offline scoring never calls a judge: no recorded verdict fails closed.
        return _response_result(
            scorer,
            False,
            "No judge verdict was recorded for this scorer; score_sample never calls a judge "
            "(record one with RawSampleOutput.with_judge_verdicts, or run the eval).",
            {"missingVerdict": True, "errorKind": "judge_provider_unavailable"},
        )
    details: dict[str, Any] = {"verdict": recorded.verdict.as_extra_value()}
    if recorded.judge_run is not None:
        details["judgeRun"] = recorded.judge_run.to_wire()
    if recorded.error_kind is not None:
        details["errorKind"] = recorded.error_kind
    if recorded.judge_trace is not None:
        details["judgeTrace"] = recorded.judge_trace.to_wire()
    passed = recorded.verdict.passed and recorded.error_kind is None
    return _response_result(scorer, passed, recorded.verdict.reason, details)


def _check_response(scorer: ResponseScorer, text: str) -> tuple[bool, str, dict[str, Any]]:
    if scorer.method == "exact":
        expected = scorer.expected or ""
        passed = text == expected
        verdict = "exactly matched" if passed else "did not exactly match"
        return passed, f"The final response {verdict} the expected text.", {"expected": expected}
    if scorer.method == "contains":
        needle = scorer.text or ""
        haystack = text if scorer.case_sensitive else text.casefold()
        passed = (needle if scorer.case_sensitive else needle.casefold()) in haystack
        verdict = "contained" if passed else "did not contain"
        return (
            passed,
            f"The final response {verdict} the required text.",
            {"text": needle, "caseSensitive": scorer.case_sensitive},
        )
    pattern = scorer.pattern or ""
    passed = re.search(pattern, text) is not None
    verdict = "matched" if passed else "did not match"
    return passed, f"The final response {verdict} the required pattern.", {"pattern": pattern}


def final_response_details(
    spec: FinalResponseEval, text: str, judged: Mapping[str, JudgeResult]
) -> dict[str, Any]:
    """Score the final response: ``score`` is the passed share of the total weight; it
    ``passed`` when the score reaches ``pass_threshold`` and no required scorer failed, and
    ``effectiveScore`` (what counts in the sample aggregate) is the score when passed, else 0.
    An errored judge stays in the weighting as a failed scorer."""
    results: list[dict[str, Any]] = []
    for scorer in spec.scorers:
        if scorer.method == "judge":
            results.append(_judge_result(scorer, judged.get(scorer.id)))
        else:
            results.append(_response_result(scorer, *_check_response(scorer, text)))
    total = sum(scorer.weight for scorer in spec.scorers)
    passed_weight = sum(r["weight"] for r in results if r["passed"])
    required_failed = [r["id"] for r in results if r["required"] and not r["passed"]]
    score = passed_weight / total if total > 0 else 0.0
    passed = score >= spec.pass_threshold and not required_failed
    return {
        "verdictSchemaVersion": 1,
        "passed": passed,
        "score": score,
        "effectiveScore": score if passed else 0.0,
        "passThreshold": spec.pass_threshold,
        "passedWeight": passed_weight,
        "totalWeight": total,
        "requiredFailed": required_failed,
        "responseScorers": results,
    }


def _recorded_judges(extra: Mapping[str, Any]) -> dict[str, JudgeResult]:
    value = extra.get(FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EvalError(
            f"extra[{FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY!r}] must map response scorer ids "
            "to verdicts"
        )
    return {
        str(scorer_id): validated(JudgeResult, verdict, what=f"judge verdict for {scorer_id!r}")
        for scorer_id, verdict in value.items()
    }


def _score_final_response(test_case: EvalTestCase, output: RawSampleOutput) -> ScorerResult:
    spec = test_case.final_response
    if spec is None:
        return ScorerResult(
            scorer_name="final_response",
            score=1.0,
            details={
                "configured": False,
                "reason": "No finalResponse eval was configured for this test case.",
            },
        )
    if output.response_text is None:
        return ScorerResult(
            scorer_name="final_response",
            score=0.0,
            details={
                "configured": True,
                "passed": False,
                "reason": "No final response text was captured for this sample.",
            },
        )
    try:
        judged = _recorded_judges(output.extra)
    except EvalError as error:
        return ScorerResult(
            scorer_name="final_response",
            score=0.0,
            details={"configured": True, "passed": False, "reason": error.message},
        )
    details = final_response_details(spec, output.response_text, judged)
    return ScorerResult(
        scorer_name="final_response", score=details["effectiveScore"], details=details
    )


# --- composition ----------------------------------------------------------------------------


def _score_leaf(
    name: ScorerName,
    test_case: EvalTestCase,
    output: RawSampleOutput,
    trajectory_config: TrajectoryScorerConfig,
) -> ScorerResult:
    if name == "trajectory":
        return _score_trajectory(test_case, output, trajectory_config)
    if name == "final_response":
        return _score_final_response(test_case, output)
    return _score_actions(name, test_case, output)


def materialize_score_weights(
    weights: Mapping[ScorerName, float], preset: ScorerPresetName
) -> dict[ScorerName, float]:
    """Weights in canonical scorer order, zero weights dropped, normalised to sum to 1; a
    scorer the preset does not allow is a :class:`ScorerPresetError`."""
    allowed = _ALLOWED_SCORERS[preset]
    for name, weight in weights.items():
        if weight > 0 and name not in allowed:
            raise ScorerPresetError(
                f"scorer {name!r} is not valid for preset {preset!r}; it allows "
                f"{', '.join(n for n in SCORER_NAMES if n in allowed)}"
            )
    kept = {name: weights[name] for name in SCORER_NAMES if weights.get(name, 0.0) > 0}
    if not kept:
        raise EvalError("give at least one scorer a positive weight")
    total = sum(kept.values())
    return {name: weight / total for name, weight in kept.items()}


def _expectations(test_case: EvalTestCase) -> set[ScorerName]:
    authored: set[ScorerName] = set()
    if test_case.expected_trajectory:
        authored.add("trajectory")
    actions = test_case.ground_truth.actions if test_case.ground_truth else None
    if actions is not None and actions.planned_actions:
        authored.add("planned_actions")
    if actions is not None and actions.executed_actions:
        authored.add("executed_actions")
    if test_case.final_response is not None:
        authored.add("final_response")
    return authored


def default_score_weights(
    preset: ScorerPresetName, test_cases: Sequence[EvalTestCase]
) -> dict[ScorerName, float]:
    """The preset's default weights for these test cases (before normalisation): fixed per
    preset, except that executor evals authoring a trajectory score it (0.2 vs 0.8 actions),
    specialist evals score whatever the cases author (each case must author something), and
    cases authoring a final response add ``final_response`` at 0.5."""
    if preset == "specialist":
        combined: set[ScorerName] = set()
        for test_case in test_cases:
            authored = _expectations(test_case)
            if not authored:
                raise ScorerPresetError(
                    f"specialist test case {test_case.id!r} has no scoreable expectations; "
                    "author expected_trajectory, final_response, planned or executed actions, "
                    "or give explicit score_weights"
                )
            combined |= authored
        return {name: 1.0 for name in SCORER_NAMES if name in combined}
    if preset == "executor" and any(case.expected_trajectory for case in test_cases):
        weights = dict(_EXECUTOR_WITH_TRAJECTORY_WEIGHTS)
    else:
        weights = dict(_PRESET_DEFAULT_WEIGHTS[preset])
    if any(case.final_response is not None for case in test_cases):
        weights.setdefault("final_response", DEFAULT_FINAL_RESPONSE_WEIGHT)
    return weights


def check_specialist_weights(
    weights: Mapping[ScorerName, float], test_cases: Iterable[EvalTestCase]
) -> None:
    """Explicit specialist weights may score empty expectations, except ``final_response``:
    there is nothing to score without a final_response spec."""
    if weights.get("final_response", 0.0) <= 0:
        return
    for test_case in test_cases:
        if test_case.final_response is None:
            raise ScorerPresetError(
                f"specialist scorer 'final_response' requires test case {test_case.id!r} to "
                "author final_response"
            )


def case_weights(
    weights: Mapping[ScorerName, float], test_case: EvalTestCase, *, keep_empty_trajectory: bool
) -> dict[ScorerName, float]:
    """The run's weights narrowed to what this test case authors: an action scorer whose
    bucket is empty and a final_response scorer without a spec contribute nothing (no free
    1.0), and the rest are renormalised. When nothing would remain, the weights are kept so
    the composite is never empty."""
    authored = _expectations(test_case)
    present = {
        name
        for name in weights
        if name in authored or (name == "trajectory" and keep_empty_trajectory)
    }
    if not present:
        present = {name for name in weights if name != "trajectory"} or set(weights)
    total = sum(weights[name] for name in present)
    return {name: weights[name] / total for name in SCORER_NAMES if name in present}


def score_with_weights(
    test_case: EvalTestCase,
    output: RawSampleOutput,
    weights: Mapping[ScorerName, float],
    trajectory_config: TrajectoryScorerConfig,
) -> ScoredSample:
    """The weighted composite: each component's result, then a synthetic ``composite`` entry
    carrying the aggregate (the weighted mean of the components)."""
    components = [_score_leaf(name, test_case, output, trajectory_config) for name in weights]
    total = sum(weights.values())
    aggregate = (
        sum(result.score * weights[name] for name, result in zip(weights, components, strict=True))
        / total
    )
    aggregate = min(1.0, max(0.0, aggregate))
    return ScoredSample(
        aggregate=aggregate,
        component_scores=[*components, ScorerResult(scorer_name="composite", score=aggregate)],
    )


def _preset_for_sample(mode: EvalMode | None, preset: ScorerPresetName | None) -> ScorerPresetName:
    if mode is None:
        return preset or "sequential"
    if mode not in PRESET_FOR_MODE:
        raise EvalError(f"unknown eval mode {mode!r}; use one of: {', '.join(PRESET_FOR_MODE)}")
    if preset is None:
        return PRESET_FOR_MODE[mode]
    if preset == "trajectory_only":
        raise ScorerPresetError(
            "scorer_preset='trajectory_only' is valid only when mode is omitted"
        )
    if PRESET_FOR_MODE[mode] != preset:
        raise ScorerPresetError(
            f"mode {mode!r} conflicts with scorer_preset {preset!r}; pass one of them, or the "
            f"preset {PRESET_FOR_MODE[mode]!r}"
        )
    return preset


def _preset_name(value: str) -> ScorerPresetName:
    for name in SCORER_PRESET_NAMES:
        if name == value:
            return name
    raise ScorerPresetError(
        f"unknown scorer preset {value!r}; use one of: {', '.join(SCORER_PRESET_NAMES)}"
    )


def _trajectory_config(scorer_config: Mapping[str, Any] | None) -> TrajectoryScorerConfig:
    if scorer_config is None:
        return TrajectoryScorerConfig()
    unknown = set(scorer_config) - {"trajectory", "finalResponse"}
    if unknown:
        raise EvalError(
            f"unknown scorer_config keys {sorted(unknown)}; use 'trajectory' "
            "(define_trajectory_scorer_config) or 'finalResponse' "
            "(define_final_response_scorer_config)"
        )
    validated(
        FinalResponseScorerConfig,
        scorer_config.get("finalResponse") or {},
        what="scorer_config.finalResponse",
    )
    return validated(
        TrajectoryScorerConfig,
        scorer_config.get("trajectory") or {},
        what="scorer_config.trajectory",
    )


def score_sample(
    test_case: EvalTestCase | Mapping[str, Any],
    output: RawSampleOutput | Mapping[str, Any],
    *,
    mode: EvalMode | None = None,
    score_weights: ScoreWeights | Mapping[str, float] | None = None,
    scorer_preset: ScorerPreset | ScorerPresetName | Mapping[str, Any] | None = None,
    scorer_config: Mapping[str, Any] | None = None,
) -> ScoredSample:
    """Score one known sample offline. Never calls a judge: judge scorers read verdicts
    recorded with ``RawSampleOutput.with_judge_verdicts`` and fail closed without one.

    The composition: ``scorer_preset`` (or the preset of ``mode``; ``sequential`` when neither
    is given) with its default weights, unless ``score_weights`` (or the preset's own weights)
    say otherwise; a test case with a ``final_response`` adds it at weight 0.5 to default
    weights. Components the test case authors nothing for are dropped and the rest
    renormalised. Returns ``aggregate`` (the score) and ``component_scores``; there is no
    ``passed``: apply your own threshold.
    """
    case = validated(EvalTestCase, test_case, what="score_sample test_case")
    sample = validated(RawSampleOutput, output, what="score_sample output")
    preset_weights: ScoreWeights | None = None
    preset: ScorerPresetName | None
    if scorer_preset is None:
        preset = None
    elif isinstance(scorer_preset, str):
        preset = _preset_name(scorer_preset)
    else:
        preset_model = validated(ScorerPreset, scorer_preset, what="scorer_preset")
        preset, preset_weights = preset_model.name, preset_model.weights
    if score_weights is not None and preset_weights is not None:
        raise ScorerPresetError(
            "give score weights once: in scorer_preset or as score_weights, not both"
        )
    explicit = (
        validated(ScoreWeights, score_weights, what="score_weights")
        if score_weights is not None
        else preset_weights
    )
    resolved = _preset_for_sample(mode, preset)
    if explicit is not None:
        weights = explicit.as_dict()
        if resolved == "specialist":
            check_specialist_weights(weights, [case])
    else:
        weights = default_score_weights(resolved, [case])
    run_weights = materialize_score_weights(weights, resolved)
    narrowed = case_weights(run_weights, case, keep_empty_trajectory=True)
    return score_with_weights(case, sample, narrowed, _trajectory_config(scorer_config))
