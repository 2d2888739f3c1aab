"""The one exception hierarchy of flowai-harness.

Owns every exception class a user can catch, each with the stable ``code`` the Rust engine
uses (``ErrorCode::as_str`` in ``core/engine/src/error.rs``) or a Python-side code, and
:func:`error_from_code`, the single table that turns an engine code into its class.

Must not import anything from ``flowai_harness`` (every other module imports this one) nor the
native extension: errors have to be importable when the extension is missing or stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "CoordinatorWithoutRoutesError",
    "CorruptedLogError",
    "DuplicateAgentError",
    "DuplicateToolError",
    "ExtensionMismatchError",
    "FlowaiError",
    "InvalidInputError",
    "InvalidSchemaError",
    "MissingToolHandlerError",
    "MultipleCoordinatorsError",
    "NoActiveRunError",
    "NotFoundError",
    "ProviderNotDeclaredError",
    "ProviderUnavailableError",
    "ReplayDivergenceError",
    "ReplayError",
    "RunStateError",
    "SelfRouteError",
    "SpecError",
    "TenantMismatchError",
    "ThreadBusyError",
    "ToolError",
    "UnknownAgentError",
    "UnknownInvocationError",
    "UnknownProviderError",
    "UnknownRouteError",
    "UnknownSchemaError",
    "UnknownThreadError",
    "UnknownToolError",
    "error_from_code",
]


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


class TenantMismatchError(FlowaiError):
    code = "TENANT_MISMATCH"


class RunStateError(FlowaiError):
    """The input is valid but not now: the thread's run state does not allow it."""

    code = "RUN_STATE"


class ThreadBusyError(RunStateError):
    code = "THREAD_BUSY"


class NoActiveRunError(RunStateError):
    code = "NO_ACTIVE_RUN"


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


# --- Python-side failures -------------------------------------------------------------------


class ToolError(FlowaiError):
    """A tool handler failed; raised to Python callers that asked for the tool's result."""

    code = "TOOL_FAILED"


class ProviderUnavailableError(FlowaiError):
    """A live model provider was asked for, but none is wired in this version."""

    code = "PROVIDER_UNAVAILABLE"


class ExtensionMismatchError(FlowaiError, ImportError):
    """The native extension is missing or was built from other sources: rebuild it."""

    code = "EXTENSION_MISMATCH"


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
        InvalidInputError,
        UnknownSchemaError,
        NotFoundError,
        UnknownAgentError,
        UnknownThreadError,
        UnknownInvocationError,
        TenantMismatchError,
        RunStateError,
        ThreadBusyError,
        NoActiveRunError,
        ReplayError,
        CorruptedLogError,
        ReplayDivergenceError,
        ToolError,
        ProviderUnavailableError,
        ExtensionMismatchError,
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
