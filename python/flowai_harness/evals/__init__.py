"""Evals: author test cases, score samples offline, run and stream evals (the seed's surface).

The public names, gathered from the submodules:

- :mod:`.models`: the request side (EvalConfig, EvalRequest, EvalTestCase, GroundTruth,
  ExpectedAction, ResolvedAction, RawSampleOutput, ScoreWeights, ScorerPreset,
  ResponseScorer, FinalResponseEval, FinalResponseScorerConfig, JudgeVerdict,
  TrajectoryScorerConfig) and the literal aliases;
- :mod:`.artifact`: the result side (ScoredSample, ScorerResult, EvalArtifact and its parts,
  HarnessEvalEventEnvelope);
- :mod:`.authoring`: the ``define_*`` helpers;
- :mod:`.scoring`: :func:`score_sample` and pass@k;
- :mod:`.judge`: the LLM judge over an injected ``complete`` model call;
- :mod:`.projection`: a run's seed-shaped events to a RawSampleOutput;
- :mod:`.runner`: :func:`stream_eval`, :func:`run_eval`, :func:`run_eval_sync`;
- :mod:`.runtime_bridge`: what ``Runtime.run_eval`` / ``stream_eval`` run (ApprovalPolicy);
- :mod:`.live_judge`: the judge through the runtime's live providers (LiveJudge);
- :mod:`.suite`: :class:`EvalSuite`, what ``flowai eval run`` runs;
- :mod:`.replay`: replay-as-eval (ReplayRuntime, recorded_threads, replay_suite);
- :mod:`.report`: the results table and the HTML report; :mod:`.cli`: ``flowai eval``.

Must not import the runtime or the native extension at import time (the runtime plugs in by
passing its ``run_sample`` and ``complete`` to the runner; replay imports it only to re-run).
"""

from __future__ import annotations

from .artifact import (
    ArtifactMetadata,
    CostAgentBreakdown,
    EvalArtifact,
    EvalArtifactSummary,
    EvalTraceRef,
    HarnessEvalEvent,
    HarnessEvalEventEnvelope,
    ModelInvocation,
    PassAtKResult,
    SampleArtifact,
    SampleCost,
    SampleLatency,
    ScoredSample,
    ScorerResult,
    SummaryCost,
    SummaryLatency,
    TestCaseArtifact,
    TokenUsageSummary,
)
from .authoring import (
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
)
from .judge import JudgeModel, ModelComplete, build_judge_prompt, parse_judge_answer
from .live_judge import LiveJudge
from .models import (
    FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY,
    ActionPayloadMatchMode,
    AggregationStrategy,
    EvalConfig,
    EvalMode,
    EvalRequest,
    EvalTestCase,
    ExpectedAction,
    FinalResponseEval,
    FinalResponseScorerConfig,
    FlatActionGroundTruthPayload,
    GroundTruth,
    JudgeErrorKind,
    JudgeResult,
    JudgeRun,
    JudgeTrace,
    JudgeVerdict,
    RawSampleOutput,
    ResolvedAction,
    ResponseScorer,
    ResponseScorerMethod,
    ScorerName,
    ScorerPreset,
    ScorerPresetName,
    ScoreWeights,
    TrajectoryMode,
    TrajectoryScorerConfig,
    final_response_judge_verdicts_extra,
)
from .projection import RunProjection, project_run, sample_output_from_events
from .replay import ReplayRuntime, first_divergence, recorded_threads, replay_suite
from .report import html_report, results_table
from .runner import (
    EvalStream,
    PriceModel,
    RunSample,
    SampleErrorKind,
    SampleFailure,
    run_eval,
    run_eval_sync,
    stream_eval,
)
from .runtime_bridge import ApprovalPolicy
from .scoring import pass_at_k_simple, pass_at_k_unbiased, score_sample
from .suite import EvalSuite

__all__ = [
    "FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY",
    "ActionPayloadMatchMode",
    "AggregationStrategy",
    "ApprovalPolicy",
    "ArtifactMetadata",
    "CostAgentBreakdown",
    "EvalArtifact",
    "EvalArtifactSummary",
    "EvalConfig",
    "EvalMode",
    "EvalRequest",
    "EvalStream",
    "EvalSuite",
    "EvalTestCase",
    "EvalTraceRef",
    "ExpectedAction",
    "FinalResponseEval",
    "FinalResponseScorerConfig",
    "FlatActionGroundTruthPayload",
    "GroundTruth",
    "HarnessEvalEvent",
    "HarnessEvalEventEnvelope",
    "JudgeErrorKind",
    "JudgeModel",
    "JudgeResult",
    "JudgeRun",
    "JudgeTrace",
    "JudgeVerdict",
    "LiveJudge",
    "ModelComplete",
    "ModelInvocation",
    "PassAtKResult",
    "PriceModel",
    "RawSampleOutput",
    "ReplayRuntime",
    "ResolvedAction",
    "ResponseScorer",
    "ResponseScorerMethod",
    "RunProjection",
    "RunSample",
    "SampleArtifact",
    "SampleCost",
    "SampleErrorKind",
    "SampleFailure",
    "SampleLatency",
    "ScoreWeights",
    "ScoredSample",
    "ScorerName",
    "ScorerPreset",
    "ScorerPresetName",
    "ScorerResult",
    "SummaryCost",
    "SummaryLatency",
    "TestCaseArtifact",
    "TokenUsageSummary",
    "TrajectoryMode",
    "TrajectoryScorerConfig",
    "build_judge_prompt",
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
    "final_response_judge_verdicts_extra",
    "first_divergence",
    "html_report",
    "parse_judge_answer",
    "pass_at_k_simple",
    "pass_at_k_unbiased",
    "project_run",
    "recorded_threads",
    "replay_suite",
    "results_table",
    "run_eval",
    "run_eval_sync",
    "sample_output_from_events",
    "score_sample",
    "stream_eval",
]
