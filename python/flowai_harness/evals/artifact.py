"""The eval result side: scores, the run artifact and the stream's envelopes.

Owns :class:`ScorerResult` and :class:`ScoredSample` (what scoring returns), the artifact
models (:class:`EvalArtifact` with its :class:`EvalArtifactSummary`, :class:`TestCaseArtifact`,
:class:`SampleArtifact`, :class:`ArtifactMetadata`, token, cost and latency models,
:class:`PassAtKResult`) and :class:`HarnessEvalEventEnvelope` with the seven event types a
``stream_eval`` yields. The wire shape is the seed's: camelCase keys, and an envelope flattens
its event to ``{"runId", "sequence", "type", "data"}``.

Must not import the runtime, the native extension, the scorers or the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import Field, model_serializer, model_validator

from .models import EvalMode, EvalModel, ResolvedAction

__all__ = [
    "EVENT_TYPES",
    "TERMINAL_EVENT_TYPES",
    "ArtifactMetadata",
    "CostAgentBreakdown",
    "EvalArtifact",
    "EvalArtifactSummary",
    "EvalCancelled",
    "EvalCancelledData",
    "EvalCompleted",
    "EvalCompletedData",
    "EvalFailed",
    "EvalFailedData",
    "EvalStarted",
    "EvalStartedData",
    "EvalTraceRef",
    "HarnessEvalEvent",
    "HarnessEvalEventEnvelope",
    "ModelInvocation",
    "PassAtKResult",
    "SampleArtifact",
    "SampleCompleted",
    "SampleCompletedData",
    "SampleCost",
    "SampleLatency",
    "ScoredSample",
    "ScorerResult",
    "SummaryCost",
    "SummaryLatency",
    "TestCaseArtifact",
    "TestCaseCompleted",
    "TestCaseCompletedData",
    "TestCaseStarted",
    "TestCaseStartedData",
    "TokenUsageSummary",
]


class ScorerResult(EvalModel):
    """One scorer's score in [0, 1] and its diagnostics (``details``, camelCase keys)."""

    scorer_name: str
    score: float
    details: dict[str, Any] | None = None


class ScoredSample(EvalModel):
    """Scoring output. ``aggregate`` is THE score; ``component_scores`` are diagnostics (a
    composite appends a synthetic ``composite`` entry) and are never re-aggregated."""

    aggregate: float
    component_scores: list[ScorerResult] = Field(min_length=1)


class TokenUsageSummary(EvalModel):
    """Tokens: input (not read from or written to a cache), output, cache reads, cache writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0

    def __add__(self, other: TokenUsageSummary) -> TokenUsageSummary:
        return TokenUsageSummary(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cache_creation_tokens=self.cache_creation_tokens + other.cache_creation_tokens,
        )


class ModelInvocation(EvalModel):
    """The model usage of one agent (or the judge) within a sample."""

    agent: str
    provider: str | None = None
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_creation_tokens: int = 0
    estimated_cost_usd: float | None = None

    @property
    def usage(self) -> TokenUsageSummary:
        return TokenUsageSummary(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
            cache_creation_tokens=self.cache_creation_tokens,
        )


class SampleCost(EvalModel):
    llm_cost_usd: float | None = None
    non_llm_cost_usd: float | None = None
    total_cost_usd: float | None = None


class SampleLatency(EvalModel):
    total_ms: int
    first_token_ms: int | None = None
    model_ms: int | None = None
    tool_ms: int | None = None


class SummaryLatency(EvalModel):
    p50_ms: int | None = None
    p95_ms: int | None = None
    p99_ms: int | None = None
    min_ms: int | None = None
    max_ms: int | None = None


class CostAgentBreakdown(EvalModel):
    agent: str
    provider: str | None = None
    model: str
    usage: TokenUsageSummary
    estimated_cost_usd: float | None = None


class SummaryCost(EvalModel):
    estimated_cost_usd: float
    per_agent: list[CostAgentBreakdown] = Field(default_factory=list)


class PassAtKResult(EvalModel):
    """pass@k over ``num_samples`` attempts of which ``num_correct`` passed; the unbiased
    estimate is None when k > num_samples."""

    k: int
    simple_estimate: float
    unbiased_estimate: float | None = None
    num_samples: int
    num_correct: int


class EvalTraceRef(EvalModel):
    trace_id: str
    thread_id: str | None = None
    url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SampleArtifact(EvalModel):
    """One sample: whether it passed (``aggregate_score >= EvalConfig.pass_threshold``), its
    scores, what it did, what it cost and how long it took; ``error`` for a failed sample."""

    sample_index: int
    passed: bool
    aggregate_score: float
    component_scores: list[ScorerResult]
    response_text: str | None = None
    actual_trajectory: list[str]
    final_response_eval: dict[str, Any] | None = None
    planned_actions: list[ResolvedAction] = Field(default_factory=list)
    resolved_actions: list[ResolvedAction] = Field(default_factory=list)
    duration_ms: int
    model_invocations: list[ModelInvocation] = Field(default_factory=list)
    token_usage: TokenUsageSummary
    cost: SampleCost | None = None
    latency: SampleLatency | None = None
    thread_id: str | None = None
    trace: EvalTraceRef | None = None
    metadata: dict[str, Any] | None = None
    error: str | None = None


class TestCaseArtifact(EvalModel):
    __test__ = False  # a result model, not a pytest class

    test_case_id: str
    input: str | None = None
    samples: list[SampleArtifact]
    pass_at_k: list[PassAtKResult] = Field(default_factory=list)
    aggregate_score: float


class EvalArtifactSummary(EvalModel):
    total_test_cases: int
    passed: int
    failed: int
    skipped: int = 0
    aggregate_score: float
    pass_rate: float
    pass_at_k: list[PassAtKResult] = Field(default_factory=list)
    total_duration_ms: int
    total_usage: TokenUsageSummary
    cost: SummaryCost | None = None
    latency: SummaryLatency | None = None
    metadata: dict[str, Any] | None = None


class ArtifactMetadata(EvalModel):
    """The scoring shape the run used: preset name and its normalised weights."""

    schema_version: int = 1
    scorer_preset: str
    score_weights: dict[str, float]


class EvalArtifact(EvalModel):
    run_id: str
    tenant_id: str
    workspace_id: str
    mode: EvalMode
    summary: EvalArtifactSummary
    test_cases: list[TestCaseArtifact]
    metadata: ArtifactMetadata


# --- the stream -----------------------------------------------------------------------------


class EvalStartedData(EvalModel):
    artifact: EvalArtifact


class EvalStarted(EvalModel):
    type: Literal["evalStarted"] = "evalStarted"
    data: EvalStartedData


class TestCaseStartedData(EvalModel):
    __test__ = False

    test_case_id: str


class TestCaseStarted(EvalModel):
    __test__ = False

    type: Literal["testCaseStarted"] = "testCaseStarted"
    data: TestCaseStartedData


class SampleCompletedData(EvalModel):
    sample: SampleArtifact


class SampleCompleted(EvalModel):
    type: Literal["sampleCompleted"] = "sampleCompleted"
    data: SampleCompletedData


class TestCaseCompletedData(EvalModel):
    __test__ = False

    test_case: TestCaseArtifact


class TestCaseCompleted(EvalModel):
    __test__ = False

    type: Literal["testCaseCompleted"] = "testCaseCompleted"
    data: TestCaseCompletedData


class EvalCompletedData(EvalModel):
    artifact: EvalArtifact


class EvalCompleted(EvalModel):
    type: Literal["evalCompleted"] = "evalCompleted"
    data: EvalCompletedData


class EvalFailedData(EvalModel):
    error: str


class EvalFailed(EvalModel):
    type: Literal["evalFailed"] = "evalFailed"
    data: EvalFailedData


class EvalCancelledData(EvalModel):
    reason: str


class EvalCancelled(EvalModel):
    type: Literal["evalCancelled"] = "evalCancelled"
    data: EvalCancelledData


HarnessEvalEvent = Annotated[
    EvalStarted
    | TestCaseStarted
    | SampleCompleted
    | TestCaseCompleted
    | EvalCompleted
    | EvalFailed
    | EvalCancelled,
    Field(discriminator="type"),
]
EVENT_TYPES: Final = (
    "evalStarted",
    "testCaseStarted",
    "sampleCompleted",
    "testCaseCompleted",
    "evalCompleted",
    "evalFailed",
    "evalCancelled",
)
# After one of these a stream ends.
TERMINAL_EVENT_TYPES: Final = frozenset({"evalCompleted", "evalFailed", "evalCancelled"})


class HarnessEvalEventEnvelope(EvalModel):
    """One ``stream_eval`` item; ``sequence`` counts from 0 within a run. On the wire the
    event is flattened: ``{"runId", "sequence", "type", "data"}``."""

    run_id: str
    sequence: int
    event: HarnessEvalEvent

    @property
    def type(self) -> str:
        return self.event.type

    @model_validator(mode="before")
    @classmethod
    def _unflatten(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "event" not in value and "type" in value:
            data = dict(value)
            data["event"] = {"type": data.pop("type"), "data": data.pop("data", None) or {}}
            return data
        return value

    @model_serializer(mode="plain")
    def _flatten(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "sequence": self.sequence,
            "type": self.event.type,
            "data": self.event.data.to_wire(),
        }
