"""flowai-harness: safe, observable, durable data agents over a Rust engine.

The public API. Agents are described with Pydantic specs (``define_*``), tools are Python
callbacks (``define_tool``), and ``create_runtime`` runs them on the embedded engine;
``connect`` talks to the same runtime running as a service on Kafka.

What runs on Kafka (the bus, the client, the log reader, dead letters, the approvals HTTP
API, traces and metrics of the services) lives in :mod:`flowai_harness.kafka` and needs the
``kafka`` extra. Importing this package imports none of it (``Client`` and ``connect`` load it
when first used), nor aiokafka, redis or any ``services.*`` module.
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .approvals import (
    ApprovalOverrides,
    ApprovalPatch,
    ApprovalPolicies,
    DynamicRule,
    RequireApprovers,
)
from .dataenv import DataEnvironmentConfig, normalize_data_environment
from .errors import (
    ApprovalAlreadyResolvedError,
    CorruptedLogError,
    DuplicateInputError,
    DuplicateVariantError,
    EvalError,
    FlowaiError,
    InvalidPlanError,
    MissingToolHandlerError,
    PlanTransitionError,
    ProviderUnavailableError,
    ReferenceNotFoundError,
    ReferenceValidationError,
    ReplayDivergenceError,
    ReplayError,
    RetryableToolError,
    SpecError,
    ThreadBusyError,
    ToolError,
    UnknownAgentError,
    UnknownApprovalError,
    UnknownApprovalTargetError,
    UnknownReferenceKindError,
    UnknownThreadError,
)
from .evals import (
    ArtifactMetadata,
    CostAgentBreakdown,
    EvalArtifact,
    EvalArtifactSummary,
    EvalConfig,
    EvalRequest,
    EvalTestCase,
    ExpectedAction,
    FinalResponseEval,
    FinalResponseScorerConfig,
    GroundTruth,
    HarnessEvalEventEnvelope,
    JudgeVerdict,
    ModelInvocation,
    PassAtKResult,
    RawSampleOutput,
    ResolvedAction,
    ResponseScorer,
    SampleArtifact,
    SampleCost,
    SampleLatency,
    ScoredSample,
    ScorerPreset,
    ScorerResult,
    ScoreWeights,
    SummaryCost,
    SummaryLatency,
    TestCaseArtifact,
    TokenUsageSummary,
    TrajectoryScorerConfig,
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
    run_eval_sync,
    score_sample,
)
from .evals.models import ActionPayloadMatchMode, ScorerName
from .plans import PlanDisplayAlias, PlanSpec, TaggedUnion, define_plan
from .prompts import LayeredPrompt, layered_prompt
from .references import ReferenceHandle, ReferenceSpec, define_reference, glimpse
from .runtime import EventStream, ReplayResult, Runtime, create_runtime
from .specs import (
    AgentSpec,
    ModelSpec,
    RetryPolicy,
    RuntimeSpec,
    StorageFactories,
    StorageFactorySpec,
    TenantIdentity,
    TestingConfig,
    ToolkitSpec,
    define_coordinator,
    define_executor,
    define_planner,
    define_runtime,
    define_specialist,
    define_tenant,
)
from .studio.apps import (
    FlowAIApp,
    WorkspaceRuntimeBinding,
    define_app,
    define_workspace_runtime,
)
from .tools import ToolContext, ToolDefinition, ToolSpec, define_tool, normalize_schema

# The seed's names for the same things.
ApprovalPolicyPatch = ApprovalPatch

__all__ = [
    "ActionPayloadMatchMode",
    "AgentSpec",
    "ApprovalAlreadyResolvedError",
    "ApprovalOverrides",
    "ApprovalPatch",
    "ApprovalPolicies",
    "ApprovalPolicyPatch",
    "ArtifactMetadata",
    "Client",
    "CorruptedLogError",
    "CostAgentBreakdown",
    "DataEnvironmentConfig",
    "DuplicateInputError",
    "DuplicateVariantError",
    "DynamicRule",
    "EvalArtifact",
    "EvalArtifactSummary",
    "EvalConfig",
    "EvalError",
    "EvalRequest",
    "EvalTestCase",
    "EventStream",
    "ExpectedAction",
    "FinalResponseEval",
    "FinalResponseScorerConfig",
    "FlowAIApp",
    "FlowaiError",
    "GroundTruth",
    "HarnessEvalEventEnvelope",
    "InvalidPlanError",
    "JudgeVerdict",
    "LayeredPrompt",
    "MissingToolHandlerError",
    "ModelInvocation",
    "ModelSpec",
    "PassAtKResult",
    "PlanDisplayAlias",
    "PlanSpec",
    "PlanTransitionError",
    "ProviderUnavailableError",
    "RawSampleOutput",
    "ReferenceHandle",
    "ReferenceNotFoundError",
    "ReferenceSpec",
    "ReferenceValidationError",
    "RemoteEventStream",
    "ReplayDivergenceError",
    "ReplayError",
    "ReplayResult",
    "RequireApprovers",
    "ResolvedAction",
    "ResponseScorer",
    "RetryPolicy",
    "RetryableToolError",
    "Runtime",
    "RuntimeSpec",
    "SampleArtifact",
    "SampleCost",
    "SampleLatency",
    "ScoreWeights",
    "ScoredSample",
    "ScorerName",
    "ScorerPreset",
    "ScorerResult",
    "SpecError",
    "StorageFactories",
    "StorageFactorySpec",
    "SummaryCost",
    "SummaryLatency",
    "TaggedUnion",
    "TenantIdentity",
    "TestCaseArtifact",
    "TestingConfig",
    "ThreadBusyError",
    "TokenUsageSummary",
    "ToolContext",
    "ToolDefinition",
    "ToolError",
    "ToolSpec",
    "ToolkitSpec",
    "TrajectoryScorerConfig",
    "UnknownAgentError",
    "UnknownApprovalError",
    "UnknownApprovalTargetError",
    "UnknownReferenceKindError",
    "UnknownThreadError",
    "WorkspaceRuntimeBinding",
    "__version__",
    "connect",
    "create_runtime",
    "define_action_ground_truth",
    "define_app",
    "define_coordinator",
    "define_eval_config",
    "define_eval_request",
    "define_executor",
    "define_expected_action",
    "define_expected_actions",
    "define_final_response_eval",
    "define_final_response_scorer_config",
    "define_ground_truth",
    "define_mcp_toolset",
    "define_plan",
    "define_planner",
    "define_reference",
    "define_resolved_action",
    "define_runtime",
    "define_scorer_preset",
    "define_specialist",
    "define_tenant",
    "define_test_case",
    "define_tool",
    "define_trajectory_scorer_config",
    "define_workspace_runtime",
    "final_response_judge_verdicts_extra",
    "glimpse",
    "layered_prompt",
    "normalize_data_environment",
    "normalize_schema",
    "run_eval_sync",
    "score_sample",
]

# The MCP SDK takes seconds to import: flowai_harness.mcp loads when one of its names is used.
_FROM_MCP = ("define_mcp_toolset", "McpToolset")
# The client of the runtime service needs the kafka extra: it loads when one of its names is
# used, so the embedded runtime never imports aiokafka or redis.
_FROM_KAFKA_CLIENT = ("Client", "RemoteEventStream", "connect")

if TYPE_CHECKING:
    from .kafka.client import Client, RemoteEventStream, connect


def __getattr__(name: str) -> object:
    if name in _FROM_MCP:
        from . import mcp

        return getattr(mcp, name)
    if name in _FROM_KAFKA_CLIENT:
        from .kafka import client

        return getattr(client, name)
    raise AttributeError(f"module 'flowai_harness' has no attribute {name!r}")
