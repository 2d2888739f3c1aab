"""flowai-harness: safe, observable, durable data agents over a Rust engine.

The public API. Agents are described with Pydantic specs (``define_*``), tools are Python
callbacks (``define_tool``), and ``create_runtime`` runs them on the embedded engine;
``connect`` talks to the same runtime running as a service on Kafka.
"""

from ._version import __version__
from .approvals import ApprovalOverrides, ApprovalPolicies
from .client import Client, RemoteEventStream, connect
from .errors import (
    ApprovalAlreadyResolvedError,
    CorruptedLogError,
    DuplicateVariantError,
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
from .plans import PlanSpec, TaggedUnion, define_plan
from .prompts import LayeredPrompt, layered_prompt
from .references import ReferenceHandle, ReferenceSpec, define_reference, glimpse
from .runtime import EventStream, ReplayResult, Runtime, create_runtime
from .specs import (
    AgentSpec,
    RuntimeSpec,
    TenantIdentity,
    TestingConfig,
    define_coordinator,
    define_executor,
    define_planner,
    define_runtime,
    define_specialist,
    define_tenant,
)
from .tools import ToolContext, ToolDefinition, define_tool

__all__ = [
    "AgentSpec",
    "ApprovalAlreadyResolvedError",
    "ApprovalOverrides",
    "ApprovalPolicies",
    "Client",
    "CorruptedLogError",
    "DuplicateVariantError",
    "EventStream",
    "FlowaiError",
    "InvalidPlanError",
    "LayeredPrompt",
    "MissingToolHandlerError",
    "PlanSpec",
    "PlanTransitionError",
    "ProviderUnavailableError",
    "ReferenceHandle",
    "ReferenceNotFoundError",
    "ReferenceSpec",
    "ReferenceValidationError",
    "RemoteEventStream",
    "ReplayDivergenceError",
    "ReplayError",
    "ReplayResult",
    "RetryableToolError",
    "Runtime",
    "RuntimeSpec",
    "SpecError",
    "TaggedUnion",
    "TenantIdentity",
    "TestingConfig",
    "ThreadBusyError",
    "ToolContext",
    "ToolDefinition",
    "ToolError",
    "UnknownAgentError",
    "UnknownApprovalError",
    "UnknownApprovalTargetError",
    "UnknownReferenceKindError",
    "UnknownThreadError",
    "__version__",
    "connect",
    "create_runtime",
    "define_coordinator",
    "define_executor",
    "define_plan",
    "define_planner",
    "define_reference",
    "define_runtime",
    "define_specialist",
    "define_tenant",
    "define_tool",
    "glimpse",
    "layered_prompt",
]
