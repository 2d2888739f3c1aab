//! The run machine: which logged event may follow which, per thread.
//!
//! Rules (format 2, what this engine writes):
//! - A thread is `Idle` until a `run-start` begins a run. The entry agent's wrapping
//!   `tool-agent` call comes first; the run is `Running` while the engine decides.
//! - A model turn: `step-start` sends a request (`AwaitingModel`); the `model-response` brings
//!   the answer back (`Running`), and the engine logs its `reasoning`, `text` and tool calls.
//!   A `model-failure` keeps waiting: a retry or a fallback is a new `step-start` of the same
//!   turn; a failure that gives up is followed by `error`.
//! - A `tool-invocation` call moves to `AwaitingTool`; its result moves back. A tool's `custom`
//!   and `tool-progress` events arrive while it is out. While a call is out, plan tools log
//!   `data-plan` and `plan-status-change`; an `approval-required` moves to `AwaitingApproval`,
//!   and its `approval-decision` moves back (the call then goes out, or the engine answers it).
//!   At a gate that needs several approvers, each approve short of the quorum is an
//!   `approval-progress` and the run keeps waiting.
//! - `tool-agent` calls and results of sub-agents, `data-tool-agent` and the summaries happen
//!   while `Running`.
//! - `finish` ends the decisions (`Closing`): from `Running` (stop) or from any waiting phase
//!   (cancelled); the entry agent's wrapping `tool-agent` result then ends the run. `error`
//!   ends the run from any phase; nothing follows it.
//! - Anything else is a divergence: live, the engine never emits it; on replay, the log is not
//!   one this engine wrote.
//!
//! Format 1 logs (written before model calls were logged facts) replay under `LEGACY`: no
//! wrapping pair, `step-start` carries the turn's usage, `finish` ends the run.
//!
//! Imports nothing but the event kinds.

use serde::{Deserialize, Serialize};

use crate::event::EventKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    Idle,
    Running,
    AwaitingModel,
    AwaitingTool,
    AwaitingApproval,
    Closing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::AwaitingModel => "awaiting-model",
            Phase::AwaitingTool => "awaiting-tool",
            Phase::AwaitingApproval => "awaiting-approval",
            Phase::Closing => "closing",
        }
    }
}

use EventKind as E;
use Phase::{AwaitingApproval, AwaitingModel, AwaitingTool, Closing, Idle, Running};

type Row = (Phase, EventKind, Phase);

/// Every allowed (from, event, to) of a format 2 run. The single source of truth: `next`
/// reads it.
pub const TRANSITIONS: &[Row] = &[
    (Idle, E::RunStart, Running),
    (Running, E::AgentStart, Running),
    (Running, E::StepStart, AwaitingModel),
    (AwaitingModel, E::ModelResponse, Running),
    (AwaitingModel, E::ModelFailure, AwaitingModel),
    (AwaitingModel, E::StepStart, AwaitingModel),
    (Running, E::Reasoning, Running),
    (Running, E::Text, Running),
    (Running, E::ToolCall, AwaitingTool),
    (AwaitingTool, E::Custom, AwaitingTool),
    (AwaitingTool, E::ProgressReported, AwaitingTool),
    (AwaitingTool, E::ToolReturned, Running),
    (Running, E::ToolAgentCall, Running),
    (Running, E::ToolAgentResult, Running),
    (Running, E::DataToolAgent, Running),
    (Running, E::LatencySummary, Running),
    (Running, E::CostSummary, Running),
    (AwaitingTool, E::DataPlan, AwaitingTool),
    (AwaitingTool, E::PlanStatusChange, AwaitingTool),
    (AwaitingTool, E::ApprovalRequired, AwaitingApproval),
    (AwaitingApproval, E::ApprovalProgress, AwaitingApproval),
    (AwaitingApproval, E::ApprovalDecided, AwaitingTool),
    (Running, E::Finish, Closing),
    (Running, E::FinishCancelled, Closing),
    (AwaitingModel, E::FinishCancelled, Closing),
    (AwaitingTool, E::FinishCancelled, Closing),
    (AwaitingApproval, E::FinishCancelled, Closing),
    (Closing, E::AgentEnd, Idle),
    (Running, E::Error, Idle),
    (AwaitingModel, E::Error, Idle),
    (AwaitingTool, E::Error, Idle),
    (AwaitingApproval, E::Error, Idle),
    // A fork starts where its source rested: between runs, or at a gate it re-opens (the
    // engine then asks again, under the fork's own approval id).
    (Idle, E::Fork, Idle),
    (AwaitingApproval, E::Fork, AwaitingTool),
];

/// The format 1 machine, for logs written by earlier engines (which knew no quorum gates).
pub const LEGACY: &[Row] = &[
    (Idle, E::RunStart, Running),
    (Running, E::StepStart, Running),
    (Running, E::Text, Running),
    (Running, E::ToolCall, AwaitingTool),
    (AwaitingTool, E::Custom, AwaitingTool),
    (AwaitingTool, E::ProgressReported, AwaitingTool),
    (AwaitingTool, E::ToolReturned, Running),
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
    (AwaitingApproval, E::ApprovalDecided, AwaitingTool),
    (AwaitingApproval, E::FinishCancelled, Idle),
    (AwaitingApproval, E::Error, Idle),
];

/// The table for runs written in log format `format`.
pub fn table(format: u32) -> &'static [Row] {
    if format >= 2 {
        TRANSITIONS
    } else {
        LEGACY
    }
}

/// The phase after `event` in `from` for a run of log format `format`, or None when the
/// table does not allow it.
pub fn next(format: u32, from: Phase, event: EventKind) -> Option<Phase> {
    table(format)
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, to)| *to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tables_are_functions() {
        for rows in [TRANSITIONS, LEGACY] {
            let mut seen = HashSet::new();
            for (from, event, _) in rows {
                assert!(
                    seen.insert((*from, *event)),
                    "two rows for {from:?} + {event:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_but_run_start_leaves_idle_and_closing_only_ends() {
        for rows in [TRANSITIONS, LEGACY] {
            for (from, event, to) in rows {
                if *from == Idle && *to != Idle {
                    assert_eq!(*event, E::RunStart);
                }
                if *from == Idle && *to == Idle {
                    assert_eq!(*event, E::Fork, "only a fork is logged between runs");
                }
                if *from == Closing {
                    assert_eq!((*event, *to), (E::AgentEnd, Idle));
                }
            }
        }
        assert_eq!(next(2, Idle, E::Text), None);
        assert_eq!(next(2, AwaitingTool, E::StepStart), None);
        assert_eq!(next(2, Running, E::ToolReturned), None);
        assert_eq!(next(2, Closing, E::Text), None);
        assert_eq!(next(1, Running, E::Finish), Some(Idle));
        assert_eq!(next(2, Running, E::Finish), Some(Closing));
    }
}
