"""The seed's eval authoring helpers: ``define_*`` functions that build validated models.

Owns :func:`define_eval_config`, :func:`define_eval_request`, :func:`define_test_case`,
:func:`define_expected_actions`, :func:`define_action_ground_truth`,
:func:`define_expected_action`, :func:`define_resolved_action`, :func:`define_ground_truth`,
:func:`define_final_response_eval`, :func:`define_scorer_preset`,
:func:`define_trajectory_scorer_config` and :func:`define_final_response_scorer_config`, with
the seed's parameters and defaults. Every helper raises
:class:`~flowai_harness.errors.EvalError` (never a bare Pydantic error) naming what to fix.

Must not import the runtime, the native extension, the scorers, the judge or the runner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..errors import EvalError
from .models import (
    ActionPayloadMatchMode,
    AggregationStrategy,
    EvalConfig,
    EvalMode,
    EvalRequest,
    EvalTestCase,
    ExpectedAction,
    FinalResponseEval,
    FinalResponseScorerConfig,
    GroundTruth,
    ResolvedAction,
    ResponseScorer,
    ScorerPreset,
    ScorerPresetName,
    ScoreWeights,
    TrajectoryMode,
    TrajectoryScorerConfig,
    validated,
)

__all__ = [
    "define_action_ground_truth",
    "define_eval_config",
    "define_eval_request",
    "define_expected_action",
    "define_expected_actions",
    "define_final_response_eval",
    "define_final_response_scorer_config",
    "define_ground_truth",
    "define_resolved_action",
    "define_scorer_preset",
    "define_test_case",
    "define_trajectory_scorer_config",
]


def define_eval_config(
    *,
    mode: EvalMode = "sequential",
    target_agent_id: str | None = None,
    test_case_set_id: str = "",
    test_case_ids: Sequence[str] | None = None,
    samples_per_case: int = 3,
    pass_threshold: float = 0.7,
    concurrency: int = 2,
    k_values: Sequence[int] | None = None,
    provider: str | None = None,
    model: str | None = None,
    timeout_per_sample_secs: int | None = 120,
    tags_filter: Sequence[str] | None = None,
    aggregation_strategy: AggregationStrategy = "passRate",
    score_weights: ScoreWeights | Mapping[str, float] | None = None,
    scorer_config: Mapping[str, Any] | None = None,
    request_overrides: Mapping[str, Any] | None = None,
) -> EvalConfig:
    """An eval run's configuration.

    ``mode`` picks what runs (planner, executor, sequential through the coordinator,
    specialist ``target_agent_id``; testCaseBuilder cannot run an eval). ``samples_per_case``
    samples per test case run ``concurrency`` at a time, each within
    ``timeout_per_sample_secs`` (None: no limit). A sample passes when its aggregate reaches
    ``pass_threshold``; a test case's score is its pass rate or mean score
    (``aggregation_strategy``) and pass@k is reported for each of ``k_values`` (default
    [1, 3]). ``provider`` / ``model`` choose the judge. ``test_case_ids`` and ``tags_filter``
    (any listed tag) select test cases. ``score_weights`` override the preset's weights;
    ``scorer_config`` merges :func:`define_trajectory_scorer_config` and
    :func:`define_final_response_scorer_config`.
    """
    return validated(
        EvalConfig,
        {
            "mode": mode,
            "target_agent_id": target_agent_id,
            "test_case_set_id": test_case_set_id,
            "test_case_ids": list(test_case_ids) if test_case_ids is not None else None,
            "samples_per_case": samples_per_case,
            "pass_threshold": pass_threshold,
            "concurrency": concurrency,
            "k_values": list(k_values) if k_values else [1, 3],
            "provider": provider,
            "model": model,
            "timeout_per_sample_secs": timeout_per_sample_secs,
            "tags_filter": list(tags_filter) if tags_filter is not None else None,
            "aggregation_strategy": aggregation_strategy,
            "score_weights": score_weights,
            "scorer_config": dict(scorer_config) if scorer_config is not None else None,
            "request_overrides": dict(request_overrides) if request_overrides is not None else None,
        },
        what="define_eval_config",
    )


def define_eval_request(
    runtime: Any = None,
    *,
    workspace_id: str,
    test_cases: Sequence[EvalTestCase | Mapping[str, Any]],
    config: EvalConfig | Mapping[str, Any] | None = None,
    scorer_preset: ScorerPreset | ScorerPresetName | None = None,
    score_weights: ScoreWeights | Mapping[str, float] | None = None,
    tenant_id: str | None = None,
) -> EvalRequest:
    """A whole eval request. The tenant is ``tenant_id``, else the runtime's ``resource_id``.
    A :class:`ScorerPreset` with weights gives both the preset and the request's weights."""
    if tenant_id is None:
        tenant_id = getattr(runtime, "resource_id", None)
        if not isinstance(tenant_id, str) or not tenant_id.strip():
            raise EvalError(
                "define_eval_request needs the tenant: pass a runtime (its resource_id) or "
                "tenant_id="
            )
    preset_name: str | None
    if isinstance(scorer_preset, ScorerPreset):
        if scorer_preset.weights is not None and score_weights is not None:
            raise EvalError(
                "give score weights once: in the ScorerPreset or as score_weights, not both"
            )
        preset_name = scorer_preset.name
        score_weights = score_weights or scorer_preset.weights
    else:
        preset_name = scorer_preset
    return validated(
        EvalRequest,
        {
            "tenant_id": tenant_id,
            "workspace_id": workspace_id,
            "config": config if config is not None else EvalConfig(),
            "test_cases": list(test_cases),
            "scorer_preset": preset_name,
            "score_weights": score_weights,
        },
        what="define_eval_request",
    )


def define_test_case(
    id: str,
    input: str,
    *,
    tags: Sequence[str] | None = None,
    expected_trajectory: Sequence[str] | None = None,
    trajectory_mode: TrajectoryMode = "unordered",
    expected_actions: GroundTruth | Mapping[str, Any] | None = None,
    ground_truth: GroundTruth | Mapping[str, Any] | None = None,
    final_response: FinalResponseEval | Mapping[str, Any] | None = None,
    source_thread_id: str | None = None,
) -> EvalTestCase:
    """One test case: ``input`` goes to the agent; ``expected_trajectory`` is compared by
    ``trajectory_mode``; ``expected_actions`` (or its generic spelling ``ground_truth``, not
    both) scores planned / executed actions; ``final_response`` scores the answer text.
    ``source_thread_id`` is provenance only, never the thread the eval runs in."""
    if expected_actions is not None and ground_truth is not None:
        raise EvalError(f"test case {id!r}: give either expected_actions or ground_truth, not both")
    return validated(
        EvalTestCase,
        {
            "id": id,
            "input": input,
            "tags": list(tags or []),
            "expected_trajectory": list(expected_trajectory or []),
            "trajectory_mode": trajectory_mode,
            "ground_truth": expected_actions if expected_actions is not None else ground_truth,
            "final_response": final_response,
            "source_thread_id": source_thread_id,
        },
        what=f"define_test_case({id!r})",
    )


def define_action_ground_truth(
    *,
    planned_actions: Sequence[ExpectedAction | Mapping[str, Any]] | None = None,
    executed_actions: Sequence[ExpectedAction | Mapping[str, Any]] | None = None,
    payload_match: ActionPayloadMatchMode = "exact",
    kind: Literal["flat"] = "flat",
) -> GroundTruth:
    """Expected actions as the structured ground-truth envelope (the wire-near spelling of
    :func:`define_expected_actions`)."""
    return validated(
        GroundTruth,
        {
            "kind": "structured",
            "payload": {
                "kind": kind,
                "planned_actions": list(planned_actions or []),
                "executed_actions": list(executed_actions or []),
                "payload_match": payload_match,
            },
        },
        what="expected actions",
    )


def define_expected_actions(
    *,
    planned_actions: Sequence[ExpectedAction | Mapping[str, Any]] | None = None,
    executed_actions: Sequence[ExpectedAction | Mapping[str, Any]] | None = None,
    payload_match: ActionPayloadMatchMode = "exact",
) -> GroundTruth:
    """Expected planned and/or executed business actions (a bucket given is a bucket scored).
    Types match exactly; payloads compare as semantic JSON, ``exact`` or as a deep ``subset``;
    order does not matter and extra actual actions lower the score."""
    return define_action_ground_truth(
        planned_actions=planned_actions,
        executed_actions=executed_actions,
        payload_match=payload_match,
    )


def define_expected_action(type: str, payload: Mapping[str, Any] | None = None) -> ExpectedAction:
    """One expected action: its ``type`` and the payload to compare."""
    return validated(
        ExpectedAction,
        {"type": type, "payload": dict(payload or {})},
        what=f"define_expected_action({type!r})",
    )


def define_resolved_action(type: str, payload: Mapping[str, Any] | None = None) -> ResolvedAction:
    """One observed action in the wire shape; put its ``to_wire()`` (or
    ``model_dump(by_alias=True, mode="json")``) in ``RawSampleOutput.extra["plannedActions"]``
    or ``["resolvedActions"]``."""
    return validated(
        ResolvedAction,
        {"type": type, "payload": dict(payload or {})},
        what=f"define_resolved_action({type!r})",
    )


def define_ground_truth(
    payload: Mapping[str, Any],
    *,
    schema: str | None = None,
    kind: Literal["structured"] = "structured",
) -> GroundTruth:
    """The generic structured ground-truth envelope; a payload with ``kind: "flat"`` is
    validated as action ground truth. Prefer :func:`define_expected_actions` for actions."""
    if not isinstance(payload, Mapping):
        raise EvalError("define_ground_truth takes a mapping payload")
    return validated(
        GroundTruth,
        {"kind": kind, "payload": dict(payload), "schema": schema},
        what="define_ground_truth",
    )


def define_final_response_eval(
    *,
    scorers: Sequence[ResponseScorer | Mapping[str, Any]],
    pass_threshold: float = 1.0,
) -> FinalResponseEval:
    """How to score the final response: the weighted share of passing ``scorers`` (build them
    with ``ResponseScorer.judge/.exact/.contains/.regex``) must reach ``pass_threshold`` and
    every required scorer must pass. Judge scorers fail closed on any judge error."""
    return validated(
        FinalResponseEval,
        {"scorers": list(scorers), "pass_threshold": pass_threshold},
        what="define_final_response_eval",
    )


def define_scorer_preset(
    name: ScorerPresetName, *, weights: ScoreWeights | Mapping[str, float] | None = None
) -> ScorerPreset:
    """A named preset (trajectory_only, planner, executor, sequential, specialist,
    test_case_builder) with optional weights replacing its defaults."""
    return validated(
        ScorerPreset, {"name": name, "weights": weights}, what=f"define_scorer_preset({name!r})"
    )


def define_trajectory_scorer_config(
    *, include_sub_agents: bool = False, ignore_tools: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"trajectory": {...}}`` for ``scorer_config``: score tool calls inside sub-agents too
    (``include_sub_agents``), and drop ``ignore_tools`` (e.g. ``call_agent``) from the scored
    projection."""
    config = validated(
        TrajectoryScorerConfig,
        {"include_sub_agents": include_sub_agents, "ignore_tools": list(ignore_tools or [])},
        what="define_trajectory_scorer_config",
    )
    return {"trajectory": config.to_wire()}


def define_final_response_scorer_config(*, include_judge_trace: bool = False) -> dict[str, Any]:
    """``{"finalResponse": {...}}`` for ``scorer_config``: ``include_judge_trace`` records each
    judge's rendered prompt and raw answer (they contain test data; off by default)."""
    config = FinalResponseScorerConfig(include_judge_trace=include_judge_trace)
    return {"finalResponse": config.to_wire()}
