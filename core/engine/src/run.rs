//! The run machine: which logged event may follow which, per thread.
//!
//! Rules:
//! - A thread is `Idle` until a `run-start` begins a run; a run is `Running` while the engine
//!   decides model turns and `AwaitingTool` while one tool invocation is out.
//! - `step-start`, `text`, `tool-agent`, `data-tool-agent` and the summaries happen while
//!   `Running`. A `tool-invocation` call moves to `AwaitingTool`; its result moves back.
//!   A tool's `custom` and `tool-progress` events arrive while it is out.
//! - While a call is out, a plan tool logs `data-plan` and `plan-status-change`; an
//!   `approval-required` moves to `AwaitingApproval`, and its `approval-decision` moves back
//!   (the call then goes out, or the engine answers it with the decision).
//! - `finish` ends a run from `Running` (stop) or from any waiting phase (cancelled); `error`
//!   ends it from any phase. Nothing follows the end of a run but the next `run-start`.
//! - Anything else is a divergence: live, the engine never emits it; on replay, the log is not
//!   one this engine wrote.
//!
//! Imports nothing but the event kinds.

use crate::event::EventKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Idle,
    Running,
    AwaitingTool,
    AwaitingApproval,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::AwaitingTool => "awaiting-tool",
            Phase::AwaitingApproval => "awaiting-approval",
        }
    }
}

use EventKind as E;
use Phase::{AwaitingApproval, AwaitingTool, Idle, Running};

/// Every allowed (from, event, to). The single source of truth: `next` reads it.
pub const TRANSITIONS: &[(Phase, EventKind, Phase)] = &[
    (Idle, E::RunStart, Running),
    (Running, E::StepStart, Running),
    (Running, E::Text, Running),
    (Running, E::ToolCall, AwaitingTool),
    (AwaitingTool, E::Custom, AwaitingTool),
    (AwaitingTool, E::ToolProgress, AwaitingTool),
    (AwaitingTool, E::ToolResult, Running),
    (Running, E::ToolAgentCall, Running),
    (Running, E::ToolAgentResult, Running),
    (Running, E::DataToolAgent, Running),
    (Running, E::LatencySummary, Running),
    (Running, E::CostSummary, Running),
    (Running, E::Finish, Idle),
    (AwaitingTool, E::FinishCancelled, Idle),
    (Running, E::FinishCancelled, Idle),
    (Running, E::Error, Idle),
    (AwaitingTool, E::Error, Idle),
    (AwaitingTool, E::DataPlan, AwaitingTool),
    (AwaitingTool, E::PlanStatusChange, AwaitingTool),
    (AwaitingTool, E::ApprovalRequired, AwaitingApproval),
    (AwaitingApproval, E::ApprovalDecision, AwaitingTool),
    (AwaitingApproval, E::FinishCancelled, Idle),
    (AwaitingApproval, E::Error, Idle),
];

/// The phase after `event` in `from`, or None when the table does not allow it.
pub fn next(from: Phase, event: EventKind) -> Option<Phase> {
    TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, to)| *to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_is_a_function() {
        let mut seen = HashSet::new();
        for (from, event, _) in TRANSITIONS {
            assert!(
                seen.insert((*from, *event)),
                "two rows for {from:?} + {event:?}"
            );
        }
    }

    #[test]
    fn nothing_but_run_start_leaves_idle() {
        for (from, event, _) in TRANSITIONS {
            if *from == Idle {
                assert_eq!(*event, E::RunStart);
            }
        }
        assert_eq!(next(Idle, E::Text), None);
        assert_eq!(next(AwaitingTool, E::StepStart), None);
        assert_eq!(next(Running, E::ToolResult), None);
    }
}
