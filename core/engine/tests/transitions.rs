//! The run table (`run::TRANSITIONS`) against what the engine does: every row is taken by some
//! scenario, and every (phase, event) pair outside the table is refused by `Thread::apply`
//! without touching the thread. `cargo test --test transitions -- --nocapture` prints which
//! scenarios took which row.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use flowai_engine::approval::Outcome;
use flowai_engine::event::{ApprovalKind, Event, EventKind, FinishReason, Usage};
use flowai_engine::plan::PlanStatus;
use flowai_engine::run::{self, Phase, TRANSITIONS};
use flowai_engine::{ErrorCode, Thread};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Scenarios: each drives an engine and returns it, its logs holding every folded line

fn add_call() -> String {
    script(&[("add", json!({"a": 1, "b": 2}))])
}

fn mock_answer() -> Driver {
    let mut d = Driver::mock("hi");
    d.send(query("t", "Say hello"));
    d
}

fn tool_call_with_progress() -> Driver {
    let mut d = Driver::scripted();
    d.send(query("t", &add_call()).agent("calculator"));
    let events = json!([
        {"type": "tool-progress", "message": "half", "toolInvocationId": "scripted-tool-1"},
        {"type": "custom", "name": "n", "data": 1, "toolInvocationId": "scripted-tool-1"},
    ]);
    d.send(tool_result("t", &invocation("t", 1, 1), json!(3)).payload("events", events));
    d
}

fn routed_to_a_sub_agent() -> Driver {
    let mut d = Driver::scripted();
    d.send(query(
        "t",
        &script(&[("call_agent", json!({"agent": "calculator", "prompt": "x"}))]),
    ));
    d
}

fn route_refused() -> Driver {
    let mut d = Driver::scripted();
    d.send(query(
        "t",
        &script(&[("call_agent", json!({"agent": "router", "prompt": "x"}))]),
    ));
    d
}

fn cancelled_while_a_tool_is_out() -> Driver {
    let mut d = Driver::scripted();
    d.send(query("t", &add_call()).agent("calculator"));
    d.send(cancel_run("t"));
    d
}

fn max_turns_exceeded() -> Driver {
    let mut spec = golden_spec();
    spec["agents"][1]["max_turns"] = json!(1);
    let mut d = Driver::new(engine(spec, scripted()));
    let bad = ("add", json!({}));
    d.send(query("t", &script(&[bad.clone(), bad])).agent("calculator"));
    d
}

/// A log that stops mid-decision (the writer crashed after `text`), loaded and then cancelled:
/// the only way a run is cancelled while `running`.
fn cancelled_mid_decision_after_a_crash() -> Driver {
    let mut d = Driver::mock("hello from the Rust runtime");
    for line in &lines(&golden_log("hello"))[..3] {
        d.apply(line).unwrap();
    }
    d.send(cancel_run("hello"));
    d
}

/// A run that ended in error while its tool was out. The live engine never decides this (a
/// tool's failure comes back as an error result); a log may hold it, so replay must accept it.
fn error_logged_while_a_tool_is_out() -> Driver {
    let mut d = Driver::scripted();
    for line in &lines(&golden_log("cancelled"))[..3] {
        d.apply(line).unwrap();
    }
    let error = Event::Error {
        code: "TOOL_TIMEOUT".into(),
        message: "the tool did not answer in time".into(),
    };
    d.apply(&entry("cancelled", 4, &error)).unwrap();
    d
}

fn plan_approved_and_executed() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("t", &script(&[store_plan("p1")])).agent("planner"));
    d.send(approval_decision("t", &approval_id("t", 1, 1), "approve"));
    let exec = script(&[("executePlan", json!({"planId": "p1"}))]);
    d.send(query("t", &exec).agent("executor"));
    d.send(tool_result("t", &invocation("t", 2, 1), json!(null)));
    d
}

fn cancelled_at_an_approval_gate() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    d.send(cancel_run("t"));
    d
}

/// A run that ended in error while it waited for a human (the live engine never decides it;
/// a log may hold it).
fn error_logged_at_an_approval_gate() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    let error = Event::Error {
        code: "APPROVER_GONE".into(),
        message: "the approval service was retired".into(),
    };
    let seq = d.snapshot_json("t")["lastSeq"].as_u64().unwrap() + 1;
    d.apply(&entry("t", seq, &error)).unwrap();
    d
}

fn golden_logs_replayed() -> Driver {
    let mut d = Driver::scripted();
    for (_, log) in golden_logs() {
        for line in lines(&log) {
            d.apply(line).unwrap();
        }
    }
    d
}

type Scenario = (&'static str, fn() -> Driver);

const SCENARIOS: [Scenario; 12] = [
    ("plan approved and executed", plan_approved_and_executed),
    (
        "cancelled at an approval gate",
        cancelled_at_an_approval_gate,
    ),
    (
        "error logged at an approval gate",
        error_logged_at_an_approval_gate,
    ),
    ("mock answer", mock_answer),
    ("tool call with progress", tool_call_with_progress),
    ("routed to a sub-agent", routed_to_a_sub_agent),
    ("route refused", route_refused),
    (
        "cancelled while a tool is out",
        cancelled_while_a_tool_is_out,
    ),
    ("max turns exceeded", max_turns_exceeded),
    (
        "cancelled mid-decision after a crash",
        cancelled_mid_decision_after_a_crash,
    ),
    (
        "error logged while a tool is out",
        error_logged_while_a_tool_is_out,
    ),
    ("golden logs replayed", golden_logs_replayed),
];

#[test]
fn every_row_of_the_run_table_is_taken_by_some_scenario() {
    let mut taken: BTreeMap<(Phase, EventKind), Vec<&str>> = BTreeMap::new();
    for (name, scenario) in SCENARIOS {
        let driver = scenario();
        for (_, log) in &driver.logs {
            walk_transitions(log.iter().map(Vec::as_slice), |from, kind| {
                let names = taken.entry((from, kind)).or_default();
                if names.last() != Some(&name) {
                    names.push(name);
                }
            });
        }
    }
    println!("run table coverage ({} rows):", TRANSITIONS.len());
    let phase_width = TRANSITIONS
        .iter()
        .map(|(f, _, _)| f.as_str().len())
        .max()
        .unwrap();
    let kind_width = TRANSITIONS
        .iter()
        .map(|(_, k, _)| format!("{k:?}").len())
        .max()
        .unwrap();
    let mut missing = Vec::new();
    for (from, kind, to) in TRANSITIONS {
        let row_key = (*from, *kind);
        let (from, to, kind) = (from.as_str(), to.as_str(), format!("{kind:?}"));
        let row = format!("{from:>phase_width$} + {kind:<kind_width$} -> {to:<phase_width$}");
        match taken.get(&row_key) {
            Some(names) => println!("  [x] {row} {}", names.join("; ")),
            None => {
                println!("  [ ] {row} NOT TAKEN");
                missing.push(row);
            }
        }
    }
    assert!(missing.is_empty(), "rows no scenario took: {missing:#?}");
}

// ---------------------------------------------------------------------------------------------
// Pairs outside the table

/// Every phase and event kind the table names.
fn phases_and_kinds() -> (BTreeSet<Phase>, BTreeSet<EventKind>) {
    let phases = TRANSITIONS
        .iter()
        .flat_map(|(from, _, to)| [*from, *to])
        .collect();
    let kinds = TRANSITIONS.iter().map(|(_, kind, _)| *kind).collect();
    (phases, kinds)
}

/// A thread in each phase of the table, reached from idle by folding `sample` events along
/// its rows: the top frame is agent `a`, and a thread awaiting a tool has call `c1` out.
fn threads_in_every_phase() -> BTreeMap<Phase, Thread> {
    let mut reached = BTreeMap::from([(Phase::Idle, Thread::new("t".into(), TENANT.into()))]);
    let mut grew = true;
    while grew {
        grew = false;
        for (from, kind, to) in TRANSITIONS {
            let (Some(thread), Some(event)) = (reached.get(from), sample(*kind)) else {
                continue;
            };
            if reached.contains_key(to) {
                continue;
            }
            let mut thread = thread.clone();
            let seq = thread.last_seq + 1;
            if thread.apply(seq, T0, event).is_ok() && thread.phase() == *to {
                reached.insert(*to, thread);
                grew = true;
            }
        }
    }
    reached
}

/// An event of `kind` that fits the threads `threads_in_every_phase` builds but for the table.
#[allow(unreachable_patterns)] // kinds added to the engine after this test land in `_`
fn sample(kind: EventKind) -> Option<Event> {
    let agent = || "a".to_owned();
    Some(match kind {
        EventKind::RunStart => Event::RunStart {
            run_id: "run-1".into(),
            agent: agent(),
            prompt: "p".into(),
        },
        EventKind::StepStart => Event::StepStart {
            agent: agent(),
            step: 1,
            model: "m".into(),
            usage: Usage::default(),
        },
        EventKind::Text => Event::Text {
            agent: agent(),
            text: "x".into(),
        },
        EventKind::ToolCall => Event::ToolCall {
            agent: agent(),
            id: "c1".into(),
            tool: "add".into(),
            args: raw("{}"),
        },
        EventKind::ToolResult => Event::ToolResult {
            agent: agent(),
            id: "c1".into(),
            tool: "add".into(),
            args: raw("{}"),
            result: raw("3"),
            is_error: false,
        },
        EventKind::ToolAgentCall => Event::ToolAgentCall {
            agent: agent(),
            id: "s1".into(),
            target: "b".into(),
            prompt: "p".into(),
        },
        EventKind::ToolAgentResult => Event::ToolAgentResult {
            agent: agent(),
            id: "s1".into(),
            target: "b".into(),
            result: raw("\"done\""),
            is_error: false,
        },
        EventKind::DataToolAgent | EventKind::LatencySummary | EventKind::CostSummary => {
            Event::Data {
                kind,
                data: raw("{}"),
            }
        }
        EventKind::Custom => Event::ToolEmitted {
            kind,
            payload: raw(r#"{"type":"custom"}"#),
        },
        EventKind::ToolProgress => Event::ToolEmitted {
            kind,
            payload: raw(r#"{"type":"tool-progress"}"#),
        },
        EventKind::Finish => Event::Finish {
            reason: FinishReason::Stop,
            usage: Usage::default(),
        },
        EventKind::FinishCancelled => Event::Finish {
            reason: FinishReason::Cancelled,
            usage: Usage::default(),
        },
        EventKind::Error => Event::Error {
            code: "X".into(),
            message: "x".into(),
        },
        EventKind::DataPlan => Event::DataPlan {
            plan_id: "p".into(),
            spec_name: "reorder".into(),
            actions: raw("[]"),
            context: raw("{}"),
        },
        EventKind::PlanStatusChange => Event::PlanStatusChange {
            plan_id: "p".into(),
            from: None,
            to: PlanStatus::Draft,
        },
        EventKind::ApprovalRequired => Event::ApprovalRequired {
            id: "appr".into(),
            kind: ApprovalKind::Tool,
            target: "add".into(),
            payload: raw("{}"),
            resource_id: TENANT.into(),
            thread_id: "t".into(),
            correlation_id: "c1".into(),
            expires_at: None,
        },
        EventKind::ApprovalDecision => Event::ApprovalDecision {
            id: "appr".into(),
            outcome: Outcome::Approve,
            partial: None,
            feedback: None,
            approver: None,
            reason: None,
        },
    })
}

#[test]
fn every_kind_and_phase_in_the_table_has_a_sample() {
    let (phases, kinds) = phases_and_kinds();
    for kind in kinds {
        let event = sample(kind).unwrap_or_else(|| panic!("add a {kind:?} event to `sample`"));
        assert_eq!(event.kind(), kind);
    }
    let reached = threads_in_every_phase();
    for phase in phases {
        assert!(
            reached.contains_key(&phase),
            "no sample events lead from idle to {phase:?}; extend `sample`"
        );
    }
}

#[test]
fn every_pair_outside_the_table_is_refused_and_leaves_the_thread_untouched() {
    let (phases, kinds) = phases_and_kinds();
    let threads = threads_in_every_phase();
    let mut refused = 0;
    for phase in &phases {
        for kind in &kinds {
            if run::next(*phase, *kind).is_some() {
                continue;
            }
            let (Some(thread), Some(event)) = (threads.get(phase), sample(*kind)) else {
                panic!("no sample for {phase:?} + {kind:?}; see every_kind_and_phase_..._sample");
            };
            let mut thread = thread.clone();
            let before = format!("{thread:?}");
            let seq = thread.last_seq + 1;
            let err = thread
                .apply(seq, T0, event)
                .err()
                .unwrap_or_else(|| panic!("{kind:?} was accepted while {}", phase.as_str()));
            assert_eq!(
                err.code,
                ErrorCode::ReplayDiverged,
                "{kind:?} from {phase:?}: {err}"
            );
            let after = format!("{thread:?}");
            assert_eq!(after, before, "{kind:?} from {phase:?} changed the thread");
            refused += 1;
        }
    }
    assert_eq!(refused, phases.len() * kinds.len() - TRANSITIONS.len());
    println!(
        "{refused} (phase, event) pairs outside the table refused ({} phases x {} kinds - {} rows)",
        phases.len(),
        kinds.len(),
        TRANSITIONS.len()
    );
}

#[test]
fn a_gap_or_repeat_in_seq_is_refused_even_for_an_allowed_event() {
    for seq in [0, 2, 7] {
        let mut thread = Thread::new("t".into(), TENANT.into());
        let err = thread
            .apply(seq, T0, sample(EventKind::RunStart).unwrap())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ReplayDiverged);
        assert_eq!(thread.last_seq, 0);
    }
}
