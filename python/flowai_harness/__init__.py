"""flowai-harness: safe, observable, durable data agents over a Rust engine.

The public API. Agents are described with Pydantic specs (``define_*``), tools are Python
callbacks (``define_tool``), and ``create_runtime`` runs them on the embedded engine.
"""

from ._version import __version__
from .approvals import ApprovalOverrides, ApprovalPolicies
from .errors import (
    CorruptedLogError,
    FlowaiError,
    MissingToolHandlerError,
    ProviderUnavailableError,
    ReplayDivergenceError,
    ReplayError,
    RetryableToolError,
    SpecError,
    ThreadBusyError,
    ToolError,
    UnknownAgentError,
    UnknownThreadError,
)
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
from .plans import PlanSpec, TaggedUnion, define_plan
from .prompts import LayeredPrompt, layered_prompt
from .references import ReferenceSpec, define_reference, glimpse
from .tools import ToolContext, ToolDefinition, define_tool

__all__ = [
    "AgentSpec",
    "ApprovalOverrides",
    "ApprovalPolicies",
    "LayeredPrompt",
    "PlanSpec",
    "ReferenceSpec",
    "TaggedUnion",
    "define_plan",
    "define_reference",
    "glimpse",
    "layered_prompt",
    "CorruptedLogError",
    "EventStream",
    "FlowaiError",
    "MissingToolHandlerError",
    "ProviderUnavailableError",
    "ReplayDivergenceError",
    "ReplayError",
    "ReplayResult",
    "RetryableToolError",
    "Runtime",
    "RuntimeSpec",
    "SpecError",
    "TenantIdentity",
    "TestingConfig",
    "ThreadBusyError",
    "ToolContext",
    "ToolDefinition",
    "ToolError",
    "UnknownAgentError",
    "UnknownThreadError",
    "__version__",
    "create_runtime",
    "define_coordinator",
    "define_executor",
    "define_planner",
    "define_runtime",
    "define_specialist",
    "define_tenant",
    "define_tool",
]
