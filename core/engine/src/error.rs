//! The engine's one error type. Every rejection carries a stable `code` (the string a user can
//! match on, mapped to a Python exception class in `flowai_harness._native`), a message that
//! says what was wrong and what to do, and, for run-log errors, the 1-based line.
//!
//! Rejections never change state: whoever returns an `EngineError` has not mutated anything.

use std::fmt;

/// Stable error codes. The string forms are part of the public contract: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The runtime spec is malformed (wrong JSON shape, empty names, bad values).
    SpecInvalid,
    SpecDuplicateAgent,
    SpecDuplicateTool,
    SpecMultipleCoordinators,
    SpecCoordinatorWithoutRoutes,
    SpecUnknownRoute,
    SpecSelfRoute,
    SpecProviderNotDeclared,
    SpecUnknownProvider,
    SpecUnknownTool,
    SpecInvalidSchema,
    /// Approval overrides or `tool_approvals` name an agent or tool that is not there.
    SpecUnknownApprovalTarget,
    /// Input bytes are not a JSON envelope the engine understands.
    InputMalformed,
    InputUnknownSchema,
    UnknownAgent,
    UnknownThread,
    TenantMismatch,
    ThreadBusy,
    NoActiveRun,
    UnknownInvocation,
    /// A run-log line is not valid JSON or not a run-log entry (truncated, corrupted).
    LogCorrupted,
    /// A run-log entry contradicts the state folded so far (gap, wrong order, impossible step).
    ReplayDiverged,
    /// A plan cannot make that move (see the table in plan.rs).
    PlanInvalidTransition,
    UnknownApproval,
    ApprovalAlreadyResolved,
    /// A decision on a gate that needs several approvers names no approver.
    ApproverRequired,
    /// An approver approves a gate they already approved (the two-person rule counts people).
    ApproverAlreadyApproved,
    /// The thread took this input already (same id), or it answers something the thread no
    /// longer waits for: ignored, never a second effect.
    DuplicateInput,
    /// A snapshot written in a format this engine does not read (older or newer): replay the
    /// whole log instead.
    SnapshotVersion,
    /// A snapshot that is damaged or contradicts itself (checksum, shape, header vs state).
    SnapshotCorrupted,
    /// A snapshot of another thread or tenant than the one asked for.
    SnapshotMismatch,
    /// A fork asked for where it cannot start: past the end of the source's log, or in the
    /// middle of a run (a fork starts where the source was idle or at an approval gate).
    ForkUnavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::SpecInvalid,
        ErrorCode::SpecDuplicateAgent,
        ErrorCode::SpecDuplicateTool,
        ErrorCode::SpecMultipleCoordinators,
        ErrorCode::SpecCoordinatorWithoutRoutes,
        ErrorCode::SpecUnknownRoute,
        ErrorCode::SpecSelfRoute,
        ErrorCode::SpecProviderNotDeclared,
        ErrorCode::SpecUnknownProvider,
        ErrorCode::SpecUnknownTool,
        ErrorCode::SpecInvalidSchema,
        ErrorCode::SpecUnknownApprovalTarget,
        ErrorCode::InputMalformed,
        ErrorCode::InputUnknownSchema,
        ErrorCode::UnknownAgent,
        ErrorCode::UnknownThread,
        ErrorCode::TenantMismatch,
        ErrorCode::ThreadBusy,
        ErrorCode::NoActiveRun,
        ErrorCode::UnknownInvocation,
        ErrorCode::LogCorrupted,
        ErrorCode::ReplayDiverged,
        ErrorCode::PlanInvalidTransition,
        ErrorCode::UnknownApproval,
        ErrorCode::ApprovalAlreadyResolved,
        ErrorCode::ApproverRequired,
        ErrorCode::ApproverAlreadyApproved,
        ErrorCode::DuplicateInput,
        ErrorCode::SnapshotVersion,
        ErrorCode::SnapshotCorrupted,
        ErrorCode::SnapshotMismatch,
        ErrorCode::ForkUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SpecInvalid => "SPEC_INVALID",
            ErrorCode::SpecDuplicateAgent => "SPEC_DUPLICATE_AGENT",
            ErrorCode::SpecDuplicateTool => "SPEC_DUPLICATE_TOOL",
            ErrorCode::SpecMultipleCoordinators => "SPEC_MULTIPLE_COORDINATORS",
            ErrorCode::SpecCoordinatorWithoutRoutes => "SPEC_COORDINATOR_WITHOUT_ROUTES",
            ErrorCode::SpecUnknownRoute => "SPEC_UNKNOWN_ROUTE",
            ErrorCode::SpecSelfRoute => "SPEC_SELF_ROUTE",
            ErrorCode::SpecProviderNotDeclared => "SPEC_PROVIDER_NOT_DECLARED",
            ErrorCode::SpecUnknownProvider => "SPEC_UNKNOWN_PROVIDER",
            ErrorCode::SpecUnknownTool => "SPEC_UNKNOWN_TOOL",
            ErrorCode::SpecInvalidSchema => "SPEC_INVALID_SCHEMA",
            ErrorCode::SpecUnknownApprovalTarget => "SPEC_UNKNOWN_APPROVAL_TARGET",
            ErrorCode::InputMalformed => "INPUT_MALFORMED",
            ErrorCode::InputUnknownSchema => "INPUT_UNKNOWN_SCHEMA",
            ErrorCode::UnknownAgent => "UNKNOWN_AGENT",
            ErrorCode::UnknownThread => "UNKNOWN_THREAD",
            ErrorCode::TenantMismatch => "TENANT_MISMATCH",
            ErrorCode::ThreadBusy => "THREAD_BUSY",
            ErrorCode::NoActiveRun => "NO_ACTIVE_RUN",
            ErrorCode::UnknownInvocation => "UNKNOWN_INVOCATION",
            ErrorCode::LogCorrupted => "LOG_CORRUPTED",
            ErrorCode::ReplayDiverged => "REPLAY_DIVERGED",
            ErrorCode::PlanInvalidTransition => "PLAN_INVALID_TRANSITION",
            ErrorCode::UnknownApproval => "UNKNOWN_APPROVAL",
            ErrorCode::ApprovalAlreadyResolved => "APPROVAL_ALREADY_RESOLVED",
            ErrorCode::ApproverRequired => "APPROVER_REQUIRED",
            ErrorCode::ApproverAlreadyApproved => "APPROVER_ALREADY_APPROVED",
            ErrorCode::DuplicateInput => "DUPLICATE_INPUT",
            ErrorCode::SnapshotVersion => "SNAPSHOT_VERSION",
            ErrorCode::SnapshotCorrupted => "SNAPSHOT_CORRUPTED",
            ErrorCode::SnapshotMismatch => "SNAPSHOT_MISMATCH",
            ErrorCode::ForkUnavailable => "FORK_UNAVAILABLE",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes of the errors the model (and whoever reads a run's log) sees: in a tool call's error
/// result (`{"error": {"code", "message"}}`) and in the `error` event that ends a run. The
/// engine writes most of them; the harness's tool runner writes the tool-side ones
/// (`ToolFailed`, `ToolTimeout`, `NoActionDispatcher`). A tool may also answer with a code of
/// its own, passed through as it is. Python's `flowai_harness.errors.ResultCode` has exactly
/// these strings (tests/unit/test_result_codes.py reads this enum). Never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// The call's arguments are not JSON, or do not match the tool's input schema.
    ToolArgsInvalid,
    /// The agent has no such tool.
    ToolNotAvailable,
    /// A built-in tool the agent's role does not offer.
    ToolNotAllowedForRole,
    /// `call_agent` to an agent outside the caller's routes.
    RouteNotAllowed,
    /// The tool's output does not match its output schema (or is not JSON).
    ToolOutputInvalid,
    /// The tool's handler failed (the code of a tool error that names none).
    ToolFailed,
    /// The tool's handler ran past its time limit.
    ToolTimeout,
    /// A tool without an idempotency key was interrupted mid-call (a worker or the process
    /// died): it may or may not have acted, so it is not run again.
    ToolOutcomeUnknown,
    /// `executePlan` in a runtime without an action dispatcher.
    NoActionDispatcher,
    /// A human (or the deadline) rejected the call.
    ApprovalRejected,
    PlanNotFound,
    PlanUnknownSpec,
    /// The plan does not match its plan spec.
    PlanInvalid,
    /// The plan cannot make that move (see the table in plan.rs).
    PlanInvalidTransition,
    PlanRejected,
    /// The action dispatcher failed, or answered with something that is not a plan result.
    PlanFailed,
    /// The call was still out when its run was cancelled (what a later turn's model sees).
    Cancelled,
    /// The agent used all its turns without answering (ends the run).
    MaxTurnsExceeded,
    /// Every model of the agent's chain failed (ends the run).
    ModelFailed,
    /// A scripted prompt that does not parse (ends the run).
    ScriptInvalid,
}

impl ResultCode {
    pub const ALL: [ResultCode; 20] = [
        ResultCode::ToolArgsInvalid,
        ResultCode::ToolNotAvailable,
        ResultCode::ToolNotAllowedForRole,
        ResultCode::RouteNotAllowed,
        ResultCode::ToolOutputInvalid,
        ResultCode::ToolFailed,
        ResultCode::ToolTimeout,
        ResultCode::ToolOutcomeUnknown,
        ResultCode::NoActionDispatcher,
        ResultCode::ApprovalRejected,
        ResultCode::PlanNotFound,
        ResultCode::PlanUnknownSpec,
        ResultCode::PlanInvalid,
        ResultCode::PlanInvalidTransition,
        ResultCode::PlanRejected,
        ResultCode::PlanFailed,
        ResultCode::Cancelled,
        ResultCode::MaxTurnsExceeded,
        ResultCode::ModelFailed,
        ResultCode::ScriptInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultCode::ToolArgsInvalid => "TOOL_ARGS_INVALID",
            ResultCode::ToolNotAvailable => "TOOL_NOT_AVAILABLE",
            ResultCode::ToolNotAllowedForRole => "TOOL_NOT_ALLOWED_FOR_ROLE",
            ResultCode::RouteNotAllowed => "ROUTE_NOT_ALLOWED",
            ResultCode::ToolOutputInvalid => "TOOL_OUTPUT_INVALID",
            ResultCode::ToolFailed => "TOOL_FAILED",
            ResultCode::ToolTimeout => "TOOL_TIMEOUT",
            ResultCode::ToolOutcomeUnknown => "TOOL_OUTCOME_UNKNOWN",
            ResultCode::NoActionDispatcher => "NO_ACTION_DISPATCHER",
            ResultCode::ApprovalRejected => "APPROVAL_REJECTED",
            ResultCode::PlanNotFound => "PLAN_NOT_FOUND",
            ResultCode::PlanUnknownSpec => "PLAN_UNKNOWN_SPEC",
            ResultCode::PlanInvalid => "PLAN_INVALID",
            ResultCode::PlanInvalidTransition => "PLAN_INVALID_TRANSITION",
            ResultCode::PlanRejected => "PLAN_REJECTED",
            ResultCode::PlanFailed => "PLAN_FAILED",
            ResultCode::Cancelled => "CANCELLED",
            ResultCode::MaxTurnsExceeded => "MAX_TURNS_EXCEEDED",
            ResultCode::ModelFailed => "MODEL_FAILED",
            ResultCode::ScriptInvalid => "SCRIPT_INVALID",
        }
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    /// 1-based line of the run log the error is about, when it is about one.
    pub line: Option<usize>,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError {
            code,
            message: message.into(),
            line: None,
        }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "[{}] line {}: {}", self.code, line, self.message),
            None => write!(f, "[{}] {}", self.code, self.message),
        }
    }
}

impl std::error::Error for EngineError {}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_screaming_snake() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }

    #[test]
    fn result_codes_are_unique_and_screaming_snake() {
        let mut seen = HashSet::new();
        for code in ResultCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate result code {s}");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }
}
