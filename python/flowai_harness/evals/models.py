"""The eval request side: what a user authors and what one sample produced.

Owns the literal aliases (:data:`EvalMode`, :data:`TrajectoryMode`, :data:`ScorerName`, ...),
the request models (:class:`EvalConfig`, :class:`EvalRequest`, :class:`EvalTestCase`,
:class:`GroundTruth` with its flat action payload, :class:`ExpectedAction`,
:class:`ResponseScorer`, :class:`FinalResponseEval`, :class:`ScoreWeights`,
:class:`ScorerPreset`, :class:`TrajectoryScorerConfig`, :class:`FinalResponseScorerConfig`),
the sample side (:class:`RawSampleOutput`, :class:`ResolvedAction`, :class:`JudgeVerdict` and
the recorded judge result around it) and :func:`validated`, the one place where a Pydantic
validation error becomes an :class:`~flowai_harness.errors.EvalError` that says what to fix.

These are the seed's names and wire shapes: Python attributes are snake_case, the JSON is
camelCase (``model_dump(by_alias=True, mode="json")``); every model is frozen and rejects
unknown fields, so a misspelled key is an error instead of a silently ignored expectation.
Must not import the runtime, the native extension or the other evals modules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ..errors import EvalError

__all__ = [
    "ACTION_EXTRA_KEYS",
    "AGGREGATION_STRATEGIES",
    "EVAL_MODES",
    "FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY",
    "JUDGE_ERROR_KINDS",
    "PLANNED_ACTIONS_EXTRA_KEY",
    "RESOLVED_ACTIONS_EXTRA_KEY",
    "SCORER_NAMES",
    "SCORER_PRESET_NAMES",
    "TRAJECTORY_EVENTS_EXTRA_KEY",
    "TRAJECTORY_MODES",
    "ActionPayloadMatchMode",
    "AggregationStrategy",
    "EvalConfig",
    "EvalMode",
    "EvalModel",
    "EvalRequest",
    "EvalTestCase",
    "ExpectedAction",
    "FinalResponseEval",
    "FinalResponseScorerConfig",
    "FlatActionGroundTruthPayload",
    "GroundTruth",
    "JudgeErrorKind",
    "JudgeResult",
    "JudgeRun",
    "JudgeTrace",
    "JudgeVerdict",
    "RawSampleOutput",
    "ResolvedAction",
    "ResponseScorer",
    "ResponseScorerMethod",
    "ScoreWeights",
    "ScorerName",
    "ScorerPreset",
    "ScorerPresetName",
    "TrajectoryMode",
    "TrajectoryScorerConfig",
    "final_response_judge_verdicts_extra",
    "validated",
]

EvalMode = Literal["planner", "executor", "sequential", "specialist", "testCaseBuilder"]
TrajectoryMode = Literal["strict", "unordered", "subset", "superset", "subsequence"]
AggregationStrategy = Literal["passRate", "meanScore"]
ScorerPresetName = Literal[
    "trajectory_only", "planner", "executor", "sequential", "specialist", "test_case_builder"
]
ScorerName = Literal["trajectory", "planned_actions", "executed_actions", "final_response"]
ResponseScorerMethod = Literal["judge", "exact", "contains", "regex"]
ActionPayloadMatchMode = Literal["subset", "exact"]
JudgeErrorKind = Literal[
    "judge_no_text",
    "judge_invalid_json",
    "judge_invalid_schema",
    "judge_provider_unavailable",
    "judge_execution_failed",
    "judge_prompt_failed",
]

EVAL_MODES: Final[tuple[EvalMode, ...]] = (
    "planner",
    "executor",
    "sequential",
    "specialist",
    "testCaseBuilder",
)
TRAJECTORY_MODES: Final[tuple[TrajectoryMode, ...]] = (
    "strict",
    "unordered",
    "subset",
    "superset",
    "subsequence",
)
AGGREGATION_STRATEGIES: Final[tuple[AggregationStrategy, ...]] = ("passRate", "meanScore")
SCORER_PRESET_NAMES: Final[tuple[ScorerPresetName, ...]] = (
    "trajectory_only",
    "planner",
    "executor",
    "sequential",
    "specialist",
    "test_case_builder",
)
# Canonical order: composites list their components in this order.
SCORER_NAMES: Final[tuple[ScorerName, ...]] = (
    "trajectory",
    "planned_actions",
    "executed_actions",
    "final_response",
)
JUDGE_ERROR_KINDS: Final[tuple[JudgeErrorKind, ...]] = (
    "judge_no_text",
    "judge_invalid_json",
    "judge_invalid_schema",
    "judge_provider_unavailable",
    "judge_execution_failed",
    "judge_prompt_failed",
)

# The RawSampleOutput.extra keys the scorers read (camelCase even from Python, as the seed).
PLANNED_ACTIONS_EXTRA_KEY: Final = "plannedActions"
RESOLVED_ACTIONS_EXTRA_KEY: Final = "resolvedActions"
ACTION_EXTRA_KEYS: Final = (PLANNED_ACTIONS_EXTRA_KEY, RESOLVED_ACTIONS_EXTRA_KEY)
TRAJECTORY_EVENTS_EXTRA_KEY: Final = "trajectoryEvents"
FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY: Final = "finalResponseJudgeVerdicts"

_M = TypeVar("_M", bound=BaseModel)


class EvalModel(BaseModel):
    """Base of every eval model: frozen, camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The seed's JSON shape of this value (camelCase keys, JSON types only)."""
        dumped: dict[str, Any] = self.model_dump(by_alias=True, mode="json")
        return dumped


def validated(model: type[_M], value: object, *, what: str) -> _M:
    """``value`` as a ``model``: an instance passes through, a mapping (or JSON text) is
    validated; a problem raises :class:`EvalError` naming each bad field and the fix."""
    if isinstance(value, model):
        return value
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as error:
            raise EvalError(
                f"{what} is not valid JSON ({error}); pass a mapping or a model."
            ) from None
    try:
        return model.model_validate(value)
    except ValidationError as error:
        problems = [_describe(item) for item in error.errors()]
        raise EvalError(
            f"{what} is invalid: " + "; ".join(problems), details={"errors": problems}
        ) from None


def _describe(item: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in item.get("loc", ()) if part != "__root__")
    message = str(item.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if item.get("type") == "extra_forbidden":
        message = "unknown field; remove it or check its spelling"
    elif item.get("type") == "missing":
        message = "required; give a value"
    return f"{location}: {message}" if location else message


def _nested(model: type[_M], value: object, where: str) -> _M:
    """``validated`` for use inside a validator: problems become one ValueError that Pydantic
    reports at the enclosing field."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(_describe(item) for item in error.errors())
        raise ValueError(f"{where}: {problems}") from None


def _require_text(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


# --- scorer weights and presets -------------------------------------------------------------


class ScoreWeights(EvalModel):
    """Per-scorer weights, keyed by :data:`ScorerName`; normalised by the total positive weight,
    so they need not add up to 1. ``ScoreWeights({"trajectory": 1})`` and a plain mapping
    wherever weights are accepted mean the same. Serialises as the plain mapping."""

    weights: dict[ScorerName, float]

    def __init__(self, weights: Mapping[str, float] | None = None, /, **data: Any) -> None:
        if weights is not None:
            if "weights" in data:
                raise EvalError("ScoreWeights takes the weights once: positionally or weights=.")
            data["weights"] = weights
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _bare_mapping(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "weights" not in value:
            return {"weights": dict(value)}
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _check_weights(cls, value: Any) -> dict[str, float]:
        if not isinstance(value, Mapping):
            raise ValueError("score weights must be a mapping of scorer name to weight")
        result: dict[str, float] = {}
        for raw_name, raw_weight in value.items():
            name = str(raw_name)
            if name not in SCORER_NAMES:
                raise ValueError(
                    f"unknown scorer weight key {name!r}; use one of: {', '.join(SCORER_NAMES)}"
                )
            try:
                weight = float(raw_weight)
            except (TypeError, ValueError):
                raise ValueError(f"weight of {name!r} must be a number") from None
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of {name!r} must be finite and >= 0, got {raw_weight!r}")
            result[name] = result.get(name, 0.0) + weight
        if not any(weight > 0 for weight in result.values()):
            raise ValueError("give at least one scorer a positive weight")
        return result

    def as_dict(self) -> dict[ScorerName, float]:
        return dict(self.weights)

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, float]:
        return {str(name): weight for name, weight in self.weights.items()}


class ScorerPreset(EvalModel):
    """A named scoring composition (:data:`ScorerPresetName`) with optional weight overrides."""

    name: ScorerPresetName
    weights: ScoreWeights | None = None


# --- final response -------------------------------------------------------------------------


class ResponseScorer(EvalModel):
    """One final-response check. Build it with :meth:`judge`, :meth:`exact`, :meth:`contains`
    or :meth:`regex`; ``weight`` counts in the final-response score and ``required`` gates it
    (a failed required scorer fails the final response whatever the weighted score)."""

    id: str
    method: ResponseScorerMethod
    weight: float = 1.0
    required: bool = False
    instructions: str | None = None
    reference_response: str | None = None
    rubric: dict[int, str] | None = None
    context: dict[str, Any] | None = None
    expected: str | None = None
    text: str | None = None
    pattern: str | None = None
    case_sensitive: bool = True

    @classmethod
    def _build(cls, method: ResponseScorerMethod, scorer_id: str, **fields: Any) -> ResponseScorer:
        return validated(
            cls,
            {"id": scorer_id, "method": method, **fields},
            what=f"ResponseScorer.{method}(id={scorer_id!r})",
        )

    @classmethod
    def judge(
        cls,
        *,
        id: str,
        instructions: str,
        reference_response: str | None = None,
        rubric: Mapping[int, str] | None = None,
        context: Mapping[str, Any] | None = None,
        required: bool = False,
        weight: float = 1.0,
    ) -> ResponseScorer:
        """A binary LLM verdict on one question (``instructions``), optionally against a
        reference answer and a two-level rubric ``{0: "...", 1: "..."}``."""
        return cls._build(
            "judge",
            id,
            instructions=instructions,
            reference_response=reference_response,
            rubric=dict(rubric) if rubric is not None else None,
            context=dict(context) if context is not None else None,
            required=required,
            weight=weight,
        )

    @classmethod
    def exact(
        cls, *, id: str, expected: str, required: bool = False, weight: float = 1.0
    ) -> ResponseScorer:
        """Passes when the final response equals ``expected`` exactly."""
        return cls._build("exact", id, expected=expected, required=required, weight=weight)

    @classmethod
    def contains(
        cls,
        *,
        id: str,
        text: str,
        case_sensitive: bool = True,
        required: bool = False,
        weight: float = 1.0,
    ) -> ResponseScorer:
        """Passes when the final response contains ``text``."""
        return cls._build(
            "contains",
            id,
            text=text,
            case_sensitive=case_sensitive,
            required=required,
            weight=weight,
        )

    @classmethod
    def regex(
        cls, *, id: str, pattern: str, required: bool = False, weight: float = 1.0
    ) -> ResponseScorer:
        """Passes when ``pattern`` matches somewhere in the final response (``re.search``)."""
        return cls._build("regex", id, pattern=pattern, required=required, weight=weight)

    @model_validator(mode="after")
    def _check(self) -> ResponseScorer:
        _require_text(self.id, "response scorer id")
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise ValueError(f"response scorer {self.id!r}: weight must be positive and finite")
        if self.method == "judge":
            if not (self.instructions or "").strip():
                raise ValueError(
                    f"judge scorer {self.id!r}: give instructions (the one question to judge)"
                )
            if self.rubric is not None:
                if set(self.rubric) != {0, 1}:
                    raise ValueError(
                        f"judge scorer {self.id!r}: a rubric defines exactly scores 0 and 1"
                    )
                if not all(text.strip() for text in self.rubric.values()):
                    raise ValueError(f"judge scorer {self.id!r}: rubric texts must be non-empty")
        elif self.method == "exact":
            if self.expected is None:
                raise ValueError(f"exact scorer {self.id!r}: give the expected text")
        elif self.method == "contains":
            if not self.text:
                raise ValueError(f"contains scorer {self.id!r}: give non-empty text to look for")
        elif self.method == "regex":
            if not self.pattern:
                raise ValueError(f"regex scorer {self.id!r}: give a non-empty pattern")
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"regex scorer {self.id!r}: invalid pattern ({error})") from None
        return self


class FinalResponseEval(EvalModel):
    """How a test case scores the final user-facing text: the weighted share of passing
    scorers must reach ``pass_threshold`` (in [0, 1]) and every required scorer must pass."""

    scorers: list[ResponseScorer] = Field(min_length=1)
    pass_threshold: float = 1.0

    @model_validator(mode="after")
    def _check(self) -> FinalResponseEval:
        if not 0.0 <= self.pass_threshold <= 1.0:
            raise ValueError("final response pass_threshold must be between 0 and 1")
        ids = [scorer.id for scorer in self.scorers]
        duplicates = sorted({scorer_id for scorer_id in ids if ids.count(scorer_id) > 1})
        if duplicates:
            raise ValueError(f"response scorer ids must be unique; repeated: {duplicates}")
        return self


class JudgeVerdict(BaseModel):
    """A judge's binary answer: ``passed`` is true exactly when ``selected_rubric_score`` is 1.

    Its JSON keys stay snake_case (the shape the judge is asked to return)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    passed: bool
    selected_rubric_score: int
    reason: str

    @field_validator("reason")
    @classmethod
    def _strip_reason(cls, value: str) -> str:
        return _require_text(value, "judge verdict reason").strip()

    @model_validator(mode="after")
    def _check(self) -> JudgeVerdict:
        if self.selected_rubric_score not in (0, 1):
            raise ValueError("judge verdict selected_rubric_score must be 0 or 1")
        if self.passed != (self.selected_rubric_score == 1):
            raise ValueError(
                "judge verdict passed must be true exactly when selected_rubric_score is 1"
            )
        return self

    def as_extra_value(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "selected_rubric_score": self.selected_rubric_score,
            "reason": self.reason,
        }


class JudgeRun(EvalModel):
    """Which model judged, and the SHA-256 of the rendered prompt and of the judge context."""

    schema_version: int = 1
    provider: str
    model: str
    prompt_sha256: str
    context_sha256: str


class JudgeTrace(EvalModel):
    """The rendered judge prompt and the judge's raw answer (only when asked for)."""

    prompt: str
    response: str


class JudgeResult(EvalModel):
    """One judge scorer's recorded outcome: the verdict (a failed one when the judge erred),
    the run metadata, the error kind of a fail-closed verdict and the optional trace."""

    verdict: JudgeVerdict
    judge_run: JudgeRun | None = None
    error_kind: JudgeErrorKind | None = None
    judge_trace: JudgeTrace | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_verdict(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "verdict" not in value:
            return {"verdict": value}
        return value

    def as_extra_value(self) -> dict[str, Any]:
        dumped: dict[str, Any] = self.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped


def final_response_judge_verdicts_extra(
    verdicts: Mapping[str, JudgeVerdict | JudgeResult | Mapping[str, Any]],
) -> dict[str, Any]:
    """``{"finalResponseJudgeVerdicts": {scorer_id: verdict}}`` for ``RawSampleOutput.extra``:
    how recorded judge verdicts reach offline scoring (``score_sample`` never calls a judge)."""
    if not isinstance(verdicts, Mapping):
        raise EvalError(
            "judge verdicts must be a mapping from response scorer id to a JudgeVerdict"
        )
    normalized: dict[str, Any] = {}
    for raw_id, raw_verdict in verdicts.items():
        scorer_id = str(raw_id).strip()
        if not scorer_id:
            raise EvalError("judge verdicts are keyed by response scorer id; an id is empty")
        if isinstance(raw_verdict, JudgeVerdict):
            normalized[scorer_id] = raw_verdict.as_extra_value()
            continue
        result = validated(JudgeResult, raw_verdict, what=f"judge verdict for {scorer_id!r}")
        wrapped = isinstance(raw_verdict, JudgeResult) or (
            isinstance(raw_verdict, Mapping) and "verdict" in raw_verdict
        )
        normalized[scorer_id] = (
            result.as_extra_value() if wrapped else result.verdict.as_extra_value()
        )
    return {FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY: normalized}


# --- trajectory and scorer configuration ----------------------------------------------------


class TrajectoryScorerConfig(EvalModel):
    """How the trajectory scorer projects what happened: ``include_sub_agents`` scores tool
    calls made inside sub-agents too; ``ignore_tools`` drops named tools (e.g. ``call_agent``)
    from the scored projection only, never from the recorded trajectory."""

    include_sub_agents: bool = False
    ignore_tools: list[str] = Field(default_factory=list)

    @field_validator("ignore_tools", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> list[str]:
        if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
            raise ValueError("ignore_tools must be a list of tool names")
        names = [str(name).strip() for name in value]
        if any(not name for name in names):
            raise ValueError("ignore_tools entries must be non-empty tool names")
        return list(dict.fromkeys(names))


class FinalResponseScorerConfig(EvalModel):
    """``include_judge_trace`` adds the rendered judge prompt and raw answer to judge details
    (off by default: they contain test data)."""

    include_judge_trace: bool = False


# --- actions and ground truth ---------------------------------------------------------------


class ExpectedAction(EvalModel):
    """A business action a test case expects: ``type`` must match exactly; ``payload`` is
    compared as semantic JSON (exactly, or as a deep subset)."""

    type: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _require_text(value, "action type")


class ResolvedAction(EvalModel):
    """A business action a sample actually planned or executed, in the seed's wire shape
    (``{"type", "payload"}``), as found under ``plannedActions`` / ``resolvedActions``."""

    type: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _require_text(value, "action type")


class FlatActionGroundTruthPayload(EvalModel):
    """Expected planned and/or executed actions (at least one bucket) and the payload match."""

    kind: Literal["flat"] = "flat"
    planned_actions: list[ExpectedAction] = Field(default_factory=list)
    executed_actions: list[ExpectedAction] = Field(default_factory=list)
    payload_match: ActionPayloadMatchMode = "exact"

    @model_validator(mode="after")
    def _one_bucket(self) -> FlatActionGroundTruthPayload:
        if not self.planned_actions and not self.executed_actions:
            raise ValueError(
                "expected actions need at least one of planned_actions or executed_actions"
            )
        return self


class GroundTruth(EvalModel):
    """The structured ground-truth envelope. A payload with ``kind: "flat"`` is action ground
    truth (what :func:`define_expected_actions` builds); any other payload is carried as-is
    and scores no actions. Wire shape: ``{"kind": "structured", "data": ..., "schema"?}``."""

    kind: Literal["structured"] = "structured"
    payload: FlatActionGroundTruthPayload | dict[str, Any]
    schema_: str | None = Field(default=None, alias="schema")

    @model_validator(mode="before")
    @classmethod
    def _wire_shape(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "payload" not in value and "data" in value:
            data = dict(value)
            data["payload"] = data.pop("data")
            return data
        return value

    @field_validator("payload", mode="plain")
    @classmethod
    def _payload(cls, value: Any) -> FlatActionGroundTruthPayload | dict[str, Any]:
        if isinstance(value, FlatActionGroundTruthPayload):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("ground truth payload must be a mapping")
        if value.get("kind") == "flat":
            return _nested(FlatActionGroundTruthPayload, value, "action ground truth")
        return dict(value)

    @property
    def actions(self) -> FlatActionGroundTruthPayload | None:
        """The action ground truth, or None for a generic structured payload."""
        return self.payload if isinstance(self.payload, FlatActionGroundTruthPayload) else None

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, Any]:
        payload = self.payload
        data = payload.to_wire() if isinstance(payload, EvalModel) else payload
        wire: dict[str, Any] = {"kind": self.kind, "data": data}
        if self.schema_ is not None:
            wire["schema"] = self.schema_
        return wire


# --- test cases, config, request ------------------------------------------------------------


class EvalTestCase(EvalModel):
    """One eval test case: the input sent to the agent and the expectations to score."""

    id: str
    tags: list[str] = Field(default_factory=list)
    input: str
    expected_trajectory: list[str] = Field(default_factory=list)
    trajectory_mode: TrajectoryMode = "unordered"
    ground_truth: GroundTruth | None = Field(
        default=None,
        alias="structuredGroundTruth",
        validation_alias=AliasChoices(
            "structuredGroundTruth",
            "groundTruth",
            "ground_truth",
            "expectedActions",
            "expected_actions",
        ),
    )
    final_response: FinalResponseEval | None = None
    source_thread_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_action_expectation(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            given = [
                key
                for key in (
                    "structuredGroundTruth",
                    "groundTruth",
                    "ground_truth",
                    "expectedActions",
                    "expected_actions",
                )
                if value.get(key) is not None
            ]
            if len(given) > 1:
                raise ValueError(
                    f"give either expected_actions or ground_truth, not both (got {given})"
                )
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _require_text(value, "test case id")


def _check_scorer_config(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            "scorer_config must be a mapping; build it from define_trajectory_scorer_config() "
            "and define_final_response_scorer_config()"
        )
    config: dict[str, Any] = {}
    for key, entry in value.items():
        if key == "trajectory":
            config[key] = _nested(TrajectoryScorerConfig, entry, "trajectory")
        elif key == "finalResponse":
            config[key] = _nested(FinalResponseScorerConfig, entry, "finalResponse")
        else:
            raise ValueError(
                f"unknown scorer_config key {key!r}; use 'trajectory' "
                "(define_trajectory_scorer_config) or 'finalResponse' "
                "(define_final_response_scorer_config)"
            )
    return {key: entry.to_wire() for key, entry in config.items()}


class EvalConfig(EvalModel):
    """An eval run's configuration; build it with ``define_eval_config(...)``."""

    mode: EvalMode = "sequential"
    target_agent_id: str | None = None
    test_case_set_id: str = ""
    test_case_ids: list[str] | None = None
    samples_per_case: int = 3
    pass_threshold: float = 0.7
    concurrency: int = 2
    k_values: list[int] = Field(default_factory=lambda: [1, 3])
    provider: str | None = None
    model: str | None = None
    timeout_per_sample_secs: int | None = 120
    tags_filter: list[str] | None = None
    aggregation_strategy: AggregationStrategy = "passRate"
    score_weights: ScoreWeights | None = None
    scorer_config: dict[str, Any] | None = None
    request_overrides: dict[str, Any] | None = None

    @field_validator("scorer_config", mode="before")
    @classmethod
    def _scorer_config(cls, value: Any) -> dict[str, Any] | None:
        return _check_scorer_config(value)

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.samples_per_case < 1:
            raise ValueError("samples_per_case must be at least 1")
        if not 0.0 <= self.pass_threshold <= 1.0:
            raise ValueError("pass_threshold must be between 0 and 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not self.k_values or any(k < 1 for k in self.k_values):
            raise ValueError("k_values must be a non-empty list of integers >= 1")
        if self.timeout_per_sample_secs is not None and self.timeout_per_sample_secs < 1:
            raise ValueError("timeout_per_sample_secs must be at least 1, or None for no limit")
        if self.mode == "specialist" and not (self.target_agent_id or "").strip():
            raise ValueError("mode 'specialist' needs target_agent_id: the specialist to evaluate")
        return self

    @property
    def trajectory_config(self) -> TrajectoryScorerConfig:
        entry = (self.scorer_config or {}).get("trajectory")
        return TrajectoryScorerConfig.model_validate(entry or {})

    @property
    def final_response_config(self) -> FinalResponseScorerConfig:
        entry = (self.scorer_config or {}).get("finalResponse")
        return FinalResponseScorerConfig.model_validate(entry or {})


class EvalRequest(EvalModel):
    """A whole eval: tenant and workspace, the config, the test cases and the scoring shape."""

    tenant_id: str
    workspace_id: str
    config: EvalConfig
    test_cases: list[EvalTestCase]
    scorer_preset: ScorerPresetName | None = None
    score_weights: ScoreWeights | None = None

    @model_validator(mode="after")
    def _check(self) -> EvalRequest:
        _require_text(self.tenant_id, "tenant_id")
        _require_text(self.workspace_id, "workspace_id")
        if not self.test_cases:
            raise ValueError("an eval needs at least one test case")
        ids = [case.id for case in self.test_cases]
        duplicates = sorted({case_id for case_id in ids if ids.count(case_id) > 1})
        if duplicates:
            raise ValueError(f"test case ids must be unique; repeated: {duplicates}")
        if self.scorer_preset == "trajectory_only" and any(
            case.final_response is not None for case in self.test_cases
        ):
            raise ValueError(
                "scorer_preset='trajectory_only' cannot score final_response evals; "
                "use another preset or drop final_response"
            )
        return self


# --- one sample's output --------------------------------------------------------------------


class RawSampleOutput(EvalModel):
    """What one sample produced: the observed tool trajectory, the final response text and
    scorer payloads in ``extra`` under camelCase keys: ``plannedActions`` and
    ``resolvedActions`` (lists of ``{"type", "payload"}``), ``trajectoryEvents`` and
    ``finalResponseJudgeVerdicts`` (see :meth:`with_judge_verdicts`)."""

    actual_trajectory: list[str] = Field(default_factory=list)
    response_text: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("extra", mode="before")
    @classmethod
    def _normalize_actions(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("extra must be a mapping")
        data = dict(value)
        for key in ACTION_EXTRA_KEYS:
            if key in data:
                actions = data[key]
                if not isinstance(actions, Sequence) or isinstance(actions, str | bytes):
                    raise ValueError(f"extra[{key!r}] must be a list of {{type, payload}} actions")
                data[key] = [
                    _nested(ResolvedAction, action, f"{key}[{index}]").to_wire()
                    for index, action in enumerate(actions)
                ]
        return data

    def with_judge_verdicts(
        self, verdicts: Mapping[str, JudgeVerdict | JudgeResult | Mapping[str, Any]]
    ) -> RawSampleOutput:
        """A copy whose ``extra`` carries recorded judge verdicts keyed by scorer id."""
        extra = dict(self.extra)
        extra.update(final_response_judge_verdicts_extra(verdicts))
        return RawSampleOutput(
            actual_trajectory=list(self.actual_trajectory),
            response_text=self.response_text,
            extra=extra,
        )
