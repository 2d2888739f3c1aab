"""The one exception hierarchy of flowai-harness.

Owns every exception class a user can catch, each with the stable ``code`` the Rust engine
uses (``ErrorCode::as_str`` in ``core/engine/src/error.rs``) or a Python-side code, and
:func:`error_from_code`, the single table that turns an engine code into its class; and
:class:`ResultCode`, the codes the model sees in a tool call's error result (the same strings
as the engine's ``ResultCode``, beside ``ErrorCode`` in ``error.rs``).

Must not import anything from ``flowai_harness`` (every other module imports this one) nor the
native extension: errors have to be importable when the extension is missing or stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "AppLoadError",
    "ApprovalAlreadyResolvedError",
    "ApprovalExpiredError",
    "ApproverAlreadyApprovedError",
    "ApproverNotAllowedError",
    "ApproverRequiredError",
    "BusError",
    "CoordinatorWithoutRoutesError",
    "CorruptedLogError",
    "DeadLetterNotFoundError",
    "DecisionUnverifiedError",
    "DuplicateAgentError",
    "DuplicateInputError",
    "DuplicateToolError",
    "DuplicateVariantError",
    "EvalCancelledError",
    "EvalError",
    "EvalRunError",
    "ExtensionMismatchError",
    "FlowaiError",
    "ForkUnavailableError",
    "InvalidInputError",
    "InvalidPlanError",
    "InvalidSchemaError",
    "McpProtocolError",
    "McpServerError",
    "McpServerUnavailableError",
    "McpToolError",
    "MissingExtraError",
    "MissingToolHandlerError",
    "MultipleCoordinatorsError",
    "NoActiveRunError",
    "NotFoundError",
    "PlanTransitionError",
    "ProviderConfigError",
    "ProviderNotDeclaredError",
    "ProviderUnavailableError",
    "RedriveRefusedError",
    "ReferenceNotFoundError",
    "ReferenceValidationError",
    "ReplayDivergenceError",
    "ReplayError",
    "ResultCode",
    "RetryableToolError",
    "RunStateError",
    "ScorerPresetError",
    "SelfRouteError",
    "SettingError",
    "SignatureError",
    "SnapshotCorruptedError",
    "SnapshotError",
    "SnapshotMismatchError",
    "SnapshotVersionError",
    "SpecError",
    "TenantMismatchError",
    "ThreadBusyError",
    "ToolError",
    "ToolTimeoutError",
    "UnknownAgentError",
    "UnknownApprovalError",
    "UnknownApprovalTargetError",
    "UnknownInvocationError",
    "UnknownProviderError",
    "UnknownReferenceKindError",
    "UnknownRouteError",
    "UnknownSchemaError",
    "UnknownThreadError",
    "UnknownToolError",
    "UnreplicatedRunLogError",
    "UsageError",
    "VolatileLedgerError",
    "error_from_code",
]


class ResultCode(StrEnum):
    """The codes of the errors the model sees: in a tool call's error result and in the
    ``error`` event that ends a run.

    One mistake has one code in both languages: these are the engine's ``ResultCode`` strings
    (``core/engine/src/error.rs``; a unit test keeps the two equal). The engine writes most of
    them; :mod:`flowai_harness.toolcall` writes the tool-side ones (``TOOL_FAILED``,
    ``TOOL_TIMEOUT``, ``TOOL_OUTPUT_INVALID``, ``NO_ACTION_DISPATCHER``; the services'
    ``TOOL_OUTCOME_UNKNOWN``). A tool may also
    answer with a code of its own (a :class:`FlowaiError`'s ``code``), passed through as it is.
    """

    TOOL_ARGS_INVALID = "TOOL_ARGS_INVALID"
    TOOL_NOT_AVAILABLE = "TOOL_NOT_AVAILABLE"
    TOOL_NOT_ALLOWED_FOR_ROLE = "TOOL_NOT_ALLOWED_FOR_ROLE"
    ROUTE_NOT_ALLOWED = "ROUTE_NOT_ALLOWED"
    TOOL_OUTPUT_INVALID = "TOOL_OUTPUT_INVALID"
    TOOL_FAILED = "TOOL_FAILED"
    TOOL_TIMEOUT = "TOOL_TIMEOUT"
    TOOL_OUTCOME_UNKNOWN = "TOOL_OUTCOME_UNKNOWN"
    NO_ACTION_DISPATCHER = "NO_ACTION_DISPATCHER"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    PLAN_NOT_FOUND = "PLAN_NOT_FOUND"
    PLAN_UNKNOWN_SPEC = "PLAN_UNKNOWN_SPEC"
    PLAN_INVALID = "PLAN_INVALID"
    PLAN_INVALID_TRANSITION = "PLAN_INVALID_TRANSITION"
    PLAN_REJECTED = "PLAN_REJECTED"
    PLAN_FAILED = "PLAN_FAILED"
    CANCELLED = "CANCELLED"
    MAX_TURNS_EXCEEDED = "MAX_TURNS_EXCEEDED"
    MODEL_FAILED = "MODEL_FAILED"
    SCRIPT_INVALID = "SCRIPT_INVALID"


class FlowaiError(Exception):
    """Base of every error flowai-harness raises on purpose.

    ``code`` is the stable string to match on; the class attribute is the default and an
    instance may carry another one (an engine code this version has no class for yet).
    """

    code: str = "FLOWAI_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details) if details else {}

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


# --- the runtime spec -----------------------------------------------------------------------


class SpecError(FlowaiError, ValueError):
    """The runtime spec (tenant, agents, tools, providers) is invalid."""

    code = "SPEC_INVALID"


class DuplicateAgentError(SpecError):
    code = "SPEC_DUPLICATE_AGENT"


class DuplicateToolError(SpecError):
    code = "SPEC_DUPLICATE_TOOL"


class MultipleCoordinatorsError(SpecError):
    code = "SPEC_MULTIPLE_COORDINATORS"


class CoordinatorWithoutRoutesError(SpecError):
    code = "SPEC_COORDINATOR_WITHOUT_ROUTES"


class UnknownRouteError(SpecError):
    code = "SPEC_UNKNOWN_ROUTE"


class SelfRouteError(UnknownRouteError):
    """A coordinator routes to itself; a route must name another agent."""

    code = "SPEC_SELF_ROUTE"


class ProviderNotDeclaredError(SpecError):
    code = "SPEC_PROVIDER_NOT_DECLARED"


class UnknownProviderError(SpecError):
    code = "SPEC_UNKNOWN_PROVIDER"


class UnknownToolError(SpecError):
    code = "SPEC_UNKNOWN_TOOL"


class InvalidSchemaError(SpecError):
    code = "SPEC_INVALID_SCHEMA"


class MissingToolHandlerError(SpecError):
    """A tool has no handler where the runtime must call it in-process (Python-side only)."""

    code = "SPEC_MISSING_HANDLER"


class InvalidPlanError(SpecError):
    """A plan declaration is unusable: no top-level ``actions`` array, or actions without the
    discriminator field (Python-side only)."""

    code = "SPEC_INVALID_PLAN"


class DuplicateVariantError(SpecError):
    """Two models of one ``TaggedUnion`` claim the same discriminator value (Python-side)."""

    code = "SPEC_DUPLICATE_VARIANT"


class UnknownApprovalTargetError(SpecError):
    """An approval override or ``tool_approvals`` names an agent or tool the spec does not
    declare."""

    code = "SPEC_UNKNOWN_APPROVAL_TARGET"


# --- inputs and lookups ---------------------------------------------------------------------


class InvalidInputError(FlowaiError, ValueError):
    """An input is not something the engine understands."""

    code = "INPUT_MALFORMED"


class UnknownSchemaError(InvalidInputError):
    code = "INPUT_UNKNOWN_SCHEMA"


class NotFoundError(FlowaiError, LookupError):
    """An input names an agent, thread or invocation the engine does not know."""

    code = "NOT_FOUND"


class UnknownAgentError(NotFoundError):
    code = "UNKNOWN_AGENT"


class UnknownThreadError(NotFoundError):
    code = "UNKNOWN_THREAD"


class UnknownInvocationError(NotFoundError):
    code = "UNKNOWN_INVOCATION"


class UnknownApprovalError(NotFoundError):
    """No waiting approval has that id for this tenant (another tenant's id reads the same)."""

    code = "UNKNOWN_APPROVAL"


class ReferenceNotFoundError(NotFoundError):
    """A reference handle is unknown, expired, or belongs to another tenant (which reads
    exactly like unknown)."""

    code = "REFERENCE_NOT_FOUND"


class UnknownReferenceKindError(NotFoundError):
    """A reference kind that the runtime does not declare in ``define_runtime(references=)``."""

    code = "UNKNOWN_REFERENCE_KIND"


class ReferenceValidationError(InvalidInputError):
    """A value does not match its reference kind's schema, or is not JSON."""

    code = "REFERENCE_INVALID"


class TenantMismatchError(FlowaiError):
    code = "TENANT_MISMATCH"


class RunStateError(FlowaiError):
    """The input is valid but not now: the thread's run state does not allow it."""

    code = "RUN_STATE"


class ThreadBusyError(RunStateError):
    code = "THREAD_BUSY"


class NoActiveRunError(RunStateError):
    code = "NO_ACTIVE_RUN"


class ForkUnavailableError(RunStateError):
    """A fork asked for past the source's log or in the middle of one of its runs."""

    code = "FORK_UNAVAILABLE"


class DuplicateInputError(RunStateError):
    """The thread took this input already (its id is the idempotency key), or it answers
    something the thread no longer waits for: ignored, never run twice."""

    code = "DUPLICATE_INPUT"


class PlanTransitionError(RunStateError):
    """A plan cannot make that move from its current status (the table in plan.rs)."""

    code = "PLAN_INVALID_TRANSITION"


class ApprovalAlreadyResolvedError(RunStateError):
    code = "APPROVAL_ALREADY_RESOLVED"


class ApprovalExpiredError(ApprovalAlreadyResolvedError):
    """The approval's deadline passed: the runtime resolves it as rejected (``timeout``)."""

    code = "APPROVAL_EXPIRED"


class ApproverRequiredError(InvalidInputError):
    """A decision on an approval that needs several approvers does not name its approver
    (pass ``approver=``): the two-person rule counts people."""

    code = "APPROVER_REQUIRED"


class ApproverAlreadyApprovedError(RunStateError):
    """This approver already approved this approval, which needs more than one approver:
    another person must approve it (the same person never counts twice)."""

    code = "APPROVER_ALREADY_APPROVED"


class ApproverNotAllowedError(FlowaiError, PermissionError):
    """The approver named in a decision may not decide for that tenant (the approvals
    service's ``approvers`` policy)."""

    code = "APPROVER_NOT_ALLOWED"


class SignatureError(FlowaiError, PermissionError):
    """A signed request (chat-ops) without a valid, fresh signature."""

    code = "SIGNATURE_INVALID"


# --- the run log ----------------------------------------------------------------------------


class ReplayError(FlowaiError):
    """A run log cannot be replayed; ``path`` and 1-based ``line`` locate it when known."""

    code = "REPLAY_FAILED"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(f"file {self.path}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if not where:
            return super().__str__()
        return f"[{self.code}] {', '.join(where)}: {self.message}"


class CorruptedLogError(ReplayError):
    code = "LOG_CORRUPTED"


class ReplayDivergenceError(ReplayError):
    code = "REPLAY_DIVERGED"


class SnapshotError(ReplayError):
    """A thread snapshot the engine will not trust; the caller replays the whole log."""

    code = "SNAPSHOT_UNREADABLE"


class SnapshotVersionError(SnapshotError):
    code = "SNAPSHOT_VERSION"


class SnapshotCorruptedError(SnapshotError):
    code = "SNAPSHOT_CORRUPTED"


class SnapshotMismatchError(SnapshotError):
    code = "SNAPSHOT_MISMATCH"


# --- Python-side failures -------------------------------------------------------------------


class ToolError(FlowaiError):
    """A tool handler failed; raised to Python callers that asked for the tool's result."""

    code = ResultCode.TOOL_FAILED.value


class RetryableToolError(ToolError):
    """Raise it from a tool handler when trying again may succeed (a busy or flaky upstream).

    A tool worker retries the call with exponential backoff up to its attempt limit; the
    embedded runtime does not retry, so there the model sees the failure at once.
    """

    code = "TOOL_RETRYABLE"


class ToolTimeoutError(RetryableToolError):
    """A tool call ran past the worker's per-tool timeout; retried like any retryable error."""

    code = ResultCode.TOOL_TIMEOUT.value


class McpToolError(ToolError):
    """A tool of an MCP server answered with an error result (``isError``); the model sees
    its text."""

    code = "MCP_TOOL_ERROR"


class McpProtocolError(ToolError):
    """An MCP server answered a tool call with a JSON-RPC error or with a result that breaks
    the protocol; the model sees what was wrong."""

    code = "MCP_PROTOCOL_ERROR"


class McpServerUnavailableError(RetryableToolError):
    """An MCP server could not be reached, or went away during a call (a stdio server that
    exited); the next call starts it again, and a tool worker retries."""

    code = "MCP_SERVER_UNAVAILABLE"


class McpServerError(SpecError):
    """An MCP toolset cannot be used at start: its server cannot be started or reached, does
    not list its tools, or lists a tool this harness cannot take (name, schema, subset)."""

    code = "MCP_SERVER_UNUSABLE"


class ProviderUnavailableError(FlowaiError):
    """A live model provider was asked for, but none is wired in this version."""

    code = "PROVIDER_UNAVAILABLE"


class ProviderConfigError(SpecError):
    """A model provider's settings (``providers={"anthropic": {...}}``) cannot be used: an
    unknown provider or setting, a missing API key, an unset key variable. ``details`` names
    the ``provider`` and the offending ``setting`` (and ``env`` for a variable), never a key."""

    code = "PROVIDER_CONFIG_INVALID"


class BusError(FlowaiError):
    """Kafka cannot be used as configured: unreachable, missing or mis-partitioned topics."""

    code = "BUS_ERROR"


class DeadLetterNotFoundError(NotFoundError):
    """No dead letter with that id on the dead-letters topic (``flowai dead-letters``)."""

    code = "DEAD_LETTER_NOT_FOUND"


class RedriveRefusedError(FlowaiError):
    """A re-drive that would not do what the operator wants: no known source topic, a
    replacement that is not an envelope or changes the message id, or a letter already
    re-driven (without ``--again``)."""

    code = "REDRIVE_REFUSED"


class UsageError(FlowaiError):
    """A command line was given something it cannot use (``flowai``, the services)."""

    code = "USAGE"


class SettingError(UsageError):
    """A service setting (an option or its ``FLOWAI_*`` environment variable) has a value it
    cannot take; the message names the variable and the option."""

    code = "SETTING_INVALID"


class UnreplicatedRunLogError(FlowaiError):
    """The run log has (or would get) one replica, so one broker's disk holds the only copy
    of every thread; refused unless explicitly allowed (``--allow-unreplicated``)."""

    code = "RUN_LOG_UNREPLICATED"


class DecisionUnverifiedError(FlowaiError):
    """An approval decision whose signature is missing, malformed, from a key this runtime does
    not trust, or does not match what it decides (flowai_harness.kafka.decision_auth)."""

    code = "DECISION_UNVERIFIED"


class VolatileLedgerError(FlowaiError):
    """The tool workers' Redis does not persist writes (or cannot say whether it does), so a
    restart would forget recorded results and run tools again; refused unless explicitly
    allowed (``--allow-volatile-ledger``)."""

    code = "LEDGER_VOLATILE"


class AppLoadError(SpecError):
    """``--app module:attr`` does not name a loadable runtime spec or tool app."""

    code = "APP_INVALID"


class ExtensionMismatchError(FlowaiError, ImportError):
    """The native extension is missing or was built from other sources: rebuild it."""

    code = "EXTENSION_MISMATCH"


class MissingExtraError(FlowaiError, ImportError):
    """A part of flowai-harness was imported without the optional dependencies (the extra)
    it needs; the message names the missing packages and the ``pip install`` that adds them."""

    code = "EXTRA_MISSING"


# --- evals ----------------------------------------------------------------------------------


class EvalError(FlowaiError, ValueError):
    """An eval request, test case, scorer setting or sample output is invalid (Python-side).

    The message names the field and what to change; ``details["errors"]`` lists every
    validation problem when there were several.
    """

    code = "EVAL_INVALID"


class ScorerPresetError(EvalError):
    """A scorer preset, mode and score weights do not fit together: an unknown preset, a
    preset that conflicts with the eval mode, or a scorer the preset does not allow."""

    code = "EVAL_SCORER_PRESET_INVALID"


class EvalRunError(FlowaiError):
    """An eval run failed as a whole (its stream ended with ``evalFailed``)."""

    code = "EVAL_RUN_FAILED"


class EvalCancelledError(EvalRunError):
    """An eval run was cancelled before it completed (its stream ended with
    ``evalCancelled``)."""

    code = "EVAL_CANCELLED"


# The one table from code to class; keyed by each class's own ``code`` so no code string is
# written twice. Bases with Python-only codes are listed too, so every code round-trips.
_CLASS_BY_CODE: Final[Mapping[str, type[FlowaiError]]] = {
    cls.code: cls
    for cls in (
        SpecError,
        DuplicateAgentError,
        DuplicateToolError,
        MultipleCoordinatorsError,
        CoordinatorWithoutRoutesError,
        UnknownRouteError,
        SelfRouteError,
        ProviderNotDeclaredError,
        UnknownProviderError,
        UnknownToolError,
        InvalidSchemaError,
        MissingToolHandlerError,
        InvalidPlanError,
        DuplicateVariantError,
        UnknownApprovalTargetError,
        InvalidInputError,
        UnknownSchemaError,
        NotFoundError,
        UnknownAgentError,
        UnknownThreadError,
        UnknownInvocationError,
        UnknownApprovalError,
        ReferenceNotFoundError,
        UnknownReferenceKindError,
        ReferenceValidationError,
        TenantMismatchError,
        RunStateError,
        ThreadBusyError,
        NoActiveRunError,
        DuplicateInputError,
        PlanTransitionError,
        ApprovalAlreadyResolvedError,
        ApprovalExpiredError,
        ApproverRequiredError,
        ApproverAlreadyApprovedError,
        ApproverNotAllowedError,
        SignatureError,
        ReplayError,
        CorruptedLogError,
        ReplayDivergenceError,
        SnapshotError,
        SnapshotVersionError,
        SnapshotCorruptedError,
        SnapshotMismatchError,
        ForkUnavailableError,
        ToolError,
        RetryableToolError,
        ToolTimeoutError,
        McpToolError,
        McpProtocolError,
        McpServerUnavailableError,
        McpServerError,
        ProviderUnavailableError,
        ProviderConfigError,
        BusError,
        UsageError,
        DeadLetterNotFoundError,
        RedriveRefusedError,
        SettingError,
        UnreplicatedRunLogError,
        VolatileLedgerError,
        DecisionUnverifiedError,
        AppLoadError,
        ExtensionMismatchError,
        MissingExtraError,
        EvalError,
        ScorerPresetError,
        EvalRunError,
        EvalCancelledError,
    )
}


def error_from_code(
    code: str,
    message: str,
    *,
    line: int | None = None,
    path: str | None = None,
) -> FlowaiError:
    """Build the exception for an engine error ``code``.

    A code this version does not know still gives a :class:`FlowaiError` carrying that code,
    so a newer engine never turns into an untyped crash. ``line``/``path`` locate run-log
    errors; on other classes they are kept in ``details``.
    """
    cls = _CLASS_BY_CODE.get(code)
    if cls is not None and issubclass(cls, ReplayError):
        return cls(message, path=path, line=line)
    details = {key: value for key, value in (("line", line), ("path", path)) if value is not None}
    if cls is None:
        return FlowaiError(message, code=code, details=details)
    return cls(message, details=details)
