//! The run table (`run::TRANSITIONS`) and the approval-gate table
//! (`approval::GATE_TRANSITIONS`) against what the engine does: every row of each is taken by
//! some scenario, and every (phase, event) pair outside the run table is refused by
//! `Thread::apply` without touching the thread. `cargo test --test transitions -- --nocapture`
//! prints which scenarios took which row.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use flowai_engine::approval::{GateEvent, GateState, Outcome, GATE_TRANSITIONS};
use flowai_engine::event::{
    ApprovalKind, ApprovalRequest, Block, Event, EventKind, FailureKind, FinishReason,
    ModelFailure, ModelResponse, Recovery, StopReason, Tally, Usage,
};
use flowai_engine::plan::PlanStatus;
use flowai_engine::run::{self, Phase, LEGACY, TRANSITIONS};
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

/// The first `n` lines a scenario logged for thread `t`, folded by a fresh driver of `engine`.
fn crashed_after(n: usize, log: &[u8], engine: flowai_engine::Engine) -> Driver {
    let mut d = Driver::new(engine);
    for line in &lines(log)[..n] {
        d.apply(line).unwrap();
    }
    d
}

/// A log that stops mid-decision (the writer crashed after the first `text`), loaded and then
/// cancelled: the only way a run is cancelled while `running`.
fn cancelled_mid_decision_after_a_crash() -> Driver {
    let log = mock_answer().log("t");
    let mut d = crashed_after(5, &log, engine(golden_spec(), mock("hi")));
    d.send(cancel_run("t").id("after-crash"));
    d
}

/// A run that ended in error while its tool was out. The live engine never decides this (a
/// tool's failure comes back as an error result); a log may hold it, so replay must accept it.
fn error_logged_while_a_tool_is_out() -> Driver {
    let mut live = Driver::scripted();
    live.send(query("t", &add_call()).agent("calculator"));
    let mut d = crashed_after(5, &live.log("t"), engine(golden_spec(), scripted()));
    let error = Event::Error {
        code: "TOOL_TIMEOUT".into(),
        message: "the tool did not answer in time".into(),
    };
    d.apply(&entry("t", 6, &error)).unwrap();
    d
}

fn plan_approved_and_executed() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("t", &script(&[store_plan("p1")])).agent("planner"));
    let exec = script(&[("executePlan", json!({"planId": "p1"}))]);
    d.send(query("t", &exec).agent("executor"));
    d.send(approval_decision("t", &approval_id("t", 2, 1), "approve"));
    d.send(tool_result("t", &invocation("t", 2, 1), json!(null)));
    d
}

/// A live model: rate limited once, retried at its deadline, answers with reasoning and text.
fn live_model_retried_then_answered() -> Driver {
    let mut d = Driver::new(engine(golden_spec(), live()));
    d.send(query("t", "How much is 2 + 3?").ts(T0));
    d.send(model_failure(
        "t",
        &request("t", 1, 1, 1),
        "rate_limited",
        Some(2_000),
    ));
    d.send(deadline_reached("t").ts(T0 + 2_000));
    let content = json!([
        {"type": "reasoning", "text": "Easy.", "signature": "sig"},
        {"type": "text", "text": "5"}
    ]);
    d.send(model_response("t", &request("t", 1, 1, 2), content, "stop"));
    d
}

fn live_model_cancelled_while_waiting() -> Driver {
    let mut d = Driver::new(engine(golden_spec(), live()));
    d.send(query("t", "hello"));
    d.send(cancel_run("t"));
    d
}

/// A payment under the two-person rule: alice's approve is progress, bob's opens the gate.
fn two_approvers_open_a_gate() -> Driver {
    let mut d = Driver::new(engine(quorum_spec(2), scripted()));
    d.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    let id = approval_id("t", 1, 1);
    d.send(decision_by("t", &id, "approve", "alice"));
    d.send(decision_by("t", &id, "approve", "bob"));
    d.send(tool_result("t", &invocation("t", 1, 1), json!(1)));
    d
}

/// Forks of a finished thread and of one paused at a gate (re-opened, then approved).
fn forked_between_runs_and_at_a_gate() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("done", "hello").agent("planner"));
    let at = d.logs_of("done").len() as u64;
    d.fork("done", at, "done-fork").unwrap();
    d.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    let at = d.logs_of("t").len() as u64;
    d.fork("t", at, "t-fork").unwrap();
    d.send(approval_decision(
        "t-fork",
        &approval_id("t-fork", 1, 1),
        "approve",
    ));
    d.send(tool_result("t-fork", &invocation("t-fork", 1, 1), json!(1)));
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

/// Logs of the format 1 engine, which replay under the legacy table.
fn format_1_logs_replayed() -> Driver {
    let mut d = Driver::scripted();
    for (_, log) in golden_logs_v1() {
        for line in lines(&log) {
            d.apply(line).unwrap();
        }
    }
    d
}

/// Format 1 runs through the rows the kept format 1 logs do not take: plans, gates, progress,
/// cancels and errors, written line by line as that engine wrote them.
fn format_1_runs_written_by_hand() -> Driver {
    let mut d = Driver::scripted();
    let f1 = run_start(1);
    let step = Event::StepStart {
        agent: "a".into(),
        step: 1,
        model: "m".into(),
        provider: None,
        request_id: None,
        usage: Some(Usage::new(1, 1)),
    };
    let call = |tool: &str| Event::ToolCall {
        agent: "a".into(),
        id: "c1".into(),
        tool: tool.into(),
        args: raw("{}"),
    };
    let gate = sample(EventKind::ApprovalRequired).unwrap();
    let status = |from: Option<PlanStatus>, to| Event::PlanStatusChange {
        plan_id: "p".into(),
        from,
        to,
        aliases: None,
    };
    let cancelled = sample(EventKind::FinishCancelled).unwrap();
    let error = sample(EventKind::Error).unwrap();
    let runs: Vec<(&str, Vec<Event>)> = vec![
        (
            "plan",
            vec![
                f1.clone(),
                step.clone(),
                call("storePlan"),
                sample(EventKind::DataPlan).unwrap(),
                status(None, PlanStatus::Draft),
                status(Some(PlanStatus::Draft), PlanStatus::PendingApproval),
                gate.clone(),
                sample(EventKind::ApprovalDecided).unwrap(),
                status(Some(PlanStatus::PendingApproval), PlanStatus::Approved),
                sample(EventKind::ProgressReported).unwrap(),
                sample(EventKind::ToolReturned).unwrap(),
                cancelled.clone(),
            ],
        ),
        (
            "gate-cancelled",
            vec![f1.clone(), step.clone(), call("x"), gate.clone(), cancelled],
        ),
        (
            "gate-error",
            vec![f1.clone(), step.clone(), call("x"), gate, error.clone()],
        ),
        (
            "tool-error",
            vec![f1.clone(), step, call("x"), error.clone()],
        ),
        ("running-error", vec![f1, error]),
    ];
    for (thread, events) in runs {
        for (n, event) in events.iter().enumerate() {
            d.apply(&entry(thread, n as u64 + 1, event)).unwrap();
        }
    }
    d
}

fn invalid_script() -> Driver {
    let mut d = Driver::scripted();
    d.send(query("t", r#"{"script": 5}"#));
    d
}

/// A planner's `peek` (predicate rule): the engine asks the runtime; the check id it sent.
fn peek_at_its_check() -> (Driver, String) {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let out = d.send(query("t", &script(&[("peek", json!({"n": 1}))])).agent("planner"));
    let check = out.effects()[0].payload()["check_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (d, check)
}

fn a_check_requires_approval_then_a_human_rejects() -> Driver {
    let (mut d, check) = peek_at_its_check();
    d.send(approval_check_result("t", &check, true));
    d.send(approval_decision("t", &approval_id("t", 1, 1), "reject"));
    d
}

fn a_check_clears_the_call() -> Driver {
    let (mut d, check) = peek_at_its_check();
    d.send(approval_check_result("t", &check, false));
    d.send(tool_result("t", &invocation("t", 1, 1), json!(1)));
    d
}

fn cancelled_while_a_check_is_out() -> Driver {
    let (mut d, _) = peek_at_its_check();
    d.send(cancel_run("t"));
    d
}

/// One gate revised, another left to its deadline.
fn revised_and_timed_out() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let delete = script(&[("delete_rows", json!({}))]);
    d.send(query("t", &delete).agent("planner"));
    d.send(approval_decision("t", &approval_id("t", 1, 1), "revise"));
    d.send(query("late", &delete).agent("planner").ts(T0));
    let expires = d.snapshot_json("late")["run"]["pending"]["approval"]["expiresAt"]
        .as_i64()
        .unwrap();
    d.send(deadline_reached("late").ts(expires));
    d
}

fn approved_then_cancelled_while_the_tool_is_out() -> Driver {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    d.send(approval_decision("t", &approval_id("t", 1, 1), "approve"));
    d.send(cancel_run("t"));
    d
}

/// The log of a gated call cut between its `tool-call` and its `approval-required` (the writer
/// crashed mid-decision), loaded by a fresh engine.
fn a_gate_cut_short_by_a_crash() -> Driver {
    let mut live = Driver::new(engine(plans_spec(), scripted()));
    live.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    let log = live.log("t");
    let gate = live
        .logs_of("t")
        .iter()
        .position(|payload| payload["type"] == "approval-required")
        .unwrap();
    crashed_after(gate, &log, engine(plans_spec(), scripted()))
}

fn cancelled_after_a_crash_cut_a_gate_short() -> Driver {
    let mut d = a_gate_cut_short_by_a_crash();
    d.send(cancel_run("t").id("cancel-after-crash"));
    d
}

type Scenario = (&'static str, fn() -> Driver);

const SCENARIOS: [Scenario; 27] = [
    (
        "cancelled after a crash cut a decision short",
        cancelled_after_a_crash_cut_a_decision_short,
    ),
    (
        "a check requires approval, then a human rejects",
        a_check_requires_approval_then_a_human_rejects,
    ),
    ("a check clears the call", a_check_clears_the_call),
    (
        "cancelled while a check is out",
        cancelled_while_a_check_is_out,
    ),
    ("revised and timed out", revised_and_timed_out),
    (
        "approved, then cancelled while the tool is out",
        approved_then_cancelled_while_the_tool_is_out,
    ),
    (
        "cancelled after a crash cut a gate short",
        cancelled_after_a_crash_cut_a_gate_short,
    ),
    (
        "resumed after a crash cut a gate short",
        resumed_after_a_crash_cut_a_gate_short,
    ),
    ("plan approved and executed", plan_approved_and_executed),
    ("two approvers open a gate", two_approvers_open_a_gate),
    (
        "forked between runs and at a gate",
        forked_between_runs_and_at_a_gate,
    ),
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
    (
        "live model retried then answered",
        live_model_retried_then_answered,
    ),
    (
        "live model cancelled while waiting",
        live_model_cancelled_while_waiting,
    ),
    ("format 1 logs replayed", format_1_logs_replayed),
    (
        "format 1 runs written by hand",
        format_1_runs_written_by_hand,
    ),
    ("invalid script", invalid_script),
];

/// The log of a rejected call cut between its `approval-decision` and the engine's answer.
fn cancelled_after_a_crash_cut_a_decision_short() -> Driver {
    let mut live = Driver::new(engine(plans_spec(), scripted()));
    live.send(query("t", &script(&[("delete_rows", json!({}))])).agent("planner"));
    live.send(approval_decision("t", &approval_id("t", 1, 1), "reject"));
    let decided = live
        .logs_of("t")
        .iter()
        .position(|payload| payload["type"] == "approval-decision")
        .unwrap();
    let mut d = crashed_after(
        decided + 1,
        &live.log("t"),
        engine(plans_spec(), scripted()),
    );
    d.send(cancel_run("t").id("cancel-after-crash"));
    d
}

/// The run resumes: the engine asks the human it had not asked yet, instead of sending the
/// call out past its gate.
fn resumed_after_a_crash_cut_a_gate_short() -> Driver {
    let mut d = a_gate_cut_short_by_a_crash();
    let out = d.send(resume_run("t").id("resume-after-crash"));
    assert_eq!(out.labels(), ["approval-required"]);
    assert_eq!(
        out.effects()[0].envelope["schema"],
        "flowai.v1.ApprovalRequest"
    );
    d
}

type RunCoverage = BTreeMap<(u32, Phase, EventKind), Vec<&'static str>>;

/// Which scenarios took each (format, from, event) of the run tables, and each row of the
/// gate table.
fn coverage() -> (RunCoverage, Vec<Vec<&'static str>>) {
    let mut taken: BTreeMap<(u32, Phase, EventKind), Vec<&str>> = BTreeMap::new();
    let mut gate_rows: Vec<Vec<&str>> = vec![Vec::new(); GATE_TRANSITIONS.len()];
    for (name, scenario) in SCENARIOS {
        let driver = scenario();
        for (row, count) in driver.engine.gate_moves().iter().enumerate() {
            if *count > 0 {
                gate_rows[row].push(name);
            }
        }
        for (_, log) in &driver.logs {
            walk_transitions(log.iter().map(Vec::as_slice), |format, from, kind| {
                let names = taken.entry((format.min(2), from, kind)).or_default();
                if names.last() != Some(&name) {
                    names.push(name);
                }
            });
        }
    }
    (taken, gate_rows)
}

#[test]
fn every_row_of_the_run_tables_and_the_gate_table_is_taken_by_some_scenario() {
    let (covered, gate_rows) = coverage();
    let mut missing = report("format 2", TRANSITIONS, 2, &covered);
    missing.extend(report("format 1 (legacy)", LEGACY, 1, &covered));
    missing.extend(report_gate(&gate_rows));
    assert!(missing.is_empty(), "rows no scenario took: {missing:#?}");
}

fn report_gate(taken: &[Vec<&'static str>]) -> Vec<String> {
    let rows = GATE_TRANSITIONS
        .iter()
        .zip(taken)
        .map(|((from, on, to), names)| {
            (from.as_str(), format!("{on:?}"), to.as_str(), names.clone())
        });
    report_rows("approval gate", rows.collect())
}

/// Print a table's rows with the scenarios that took each; the rows none took.
fn report_rows(title: &str, rows: Vec<(&str, String, &str, Vec<&str>)>) -> Vec<String> {
    println!("{title} table coverage ({} rows):", rows.len());
    let width = rows
        .iter()
        .map(|(from, _, to, _)| from.len().max(to.len()))
        .max()
        .unwrap();
    let on_width = rows.iter().map(|(_, on, _, _)| on.len()).max().unwrap();
    let mut missing = Vec::new();
    for (from, on, to, names) in rows {
        let row = format!("{from:>width$} + {on:<on_width$} -> {to:<width$}");
        if names.is_empty() {
            println!("  [ ] {row} NOT TAKEN");
            missing.push(format!("{title}: {row}"));
        } else {
            println!("  [x] {row} {}", names.join("; "));
        }
    }
    missing
}

#[test]
fn the_gate_moves_logged_facts_as_the_table_says() {
    // Each logged gate fact, folded where its row does not start, is refused untouched.
    let threads = threads_in_every_phase(2);
    let at_gate = &threads[&Phase::AwaitingApproval];
    assert_eq!(
        at_gate.pending().unwrap().gate_state(),
        GateState::Waiting,
        "the sample path ends at a waiting gate"
    );
    let mut twice = at_gate.clone();
    let seq = twice.last_seq + 1;
    let again = sample(EventKind::ApprovalRequired).unwrap();
    let before = format!("{twice:?}");
    let err = twice.apply(seq, T0, "in", again).unwrap_err();
    assert_eq!(err.code, ErrorCode::ReplayDiverged, "{err}");
    assert_eq!(format!("{twice:?}"), before);
    assert!(flowai_engine::approval::gate_step(GateState::Waiting, GateEvent::RuleAlways).is_err());
}

fn report(
    title: &str,
    table: &[(Phase, EventKind, Phase)],
    format: u32,
    taken: &RunCoverage,
) -> Vec<String> {
    let rows = table.iter().map(|(from, kind, to)| {
        let names = taken.get(&(format, *from, *kind)).cloned();
        (
            from.as_str(),
            format!("{kind:?}"),
            to.as_str(),
            names.unwrap_or_default(),
        )
    });
    report_rows(&format!("{title} run"), rows.collect())
}

// ---------------------------------------------------------------------------------------------
// Pairs outside the table

/// Every phase and event kind a table names.
fn phases_and_kinds(table: &[(Phase, EventKind, Phase)]) -> (BTreeSet<Phase>, BTreeSet<EventKind>) {
    let phases = table
        .iter()
        .flat_map(|(from, _, to)| [*from, *to])
        .collect();
    let kinds = table.iter().map(|(_, kind, _)| *kind).collect();
    (phases, kinds)
}

/// A thread in each phase of the table of `format`, reached from idle by folding sample
/// events: the top frame is agent `a`; a running thread has call `c1` queued (format 2), a
/// thread awaiting a tool has it out, one awaiting approval has it at its gate.
fn threads_in_every_phase(format: u32) -> BTreeMap<Phase, Thread> {
    let mut thread = Thread::new("t".into(), TENANT.into());
    let mut reached = BTreeMap::from([(Phase::Idle, thread.clone())]);
    let mut path = vec![run_start(format)];
    if format >= 2 {
        path.push(sample(EventKind::StepStart).unwrap());
        path.push(sample(EventKind::ModelResponse).unwrap());
    } else {
        path.push(Event::StepStart {
            agent: "a".into(),
            step: 1,
            model: "m".into(),
            provider: None,
            request_id: None,
            usage: Some(Usage::default()),
        });
    }
    path.push(sample(EventKind::ToolCall).unwrap());
    path.push(sample(EventKind::ApprovalRequired).unwrap());
    for event in path {
        let seq = thread.last_seq + 1;
        thread
            .apply(seq, T0, "in", event)
            .expect("the sample path folds");
        // A later thread in the same phase wins: its frame has a queued call.
        reached.insert(thread.phase(), thread.clone());
    }
    if format >= 2 {
        let mut closing = reached[&Phase::Running].clone();
        let seq = closing.last_seq + 1;
        closing
            .apply(seq, T0, "in", sample(EventKind::Finish).unwrap())
            .expect("finish folds");
        reached.insert(Phase::Closing, closing);
    }
    reached
}

fn run_start(format: u32) -> Event {
    Event::RunStart {
        run_id: "run-1".into(),
        agent: "a".into(),
        prompt: "p".into(),
        format,
    }
}

/// An event of `kind` that fits the threads `threads_in_every_phase` builds but for the table.
#[allow(unreachable_patterns)] // kinds added to the engine after this test land in `_`
fn sample(kind: EventKind) -> Option<Event> {
    if let Some(name) = kind.wire_name() {
        return Some(if kind.is_tool_emitted() {
            Event::ToolEmitted {
                kind,
                payload: raw(&format!(r#"{{"type":"{name}"}}"#)),
            }
        } else {
            Event::Data {
                kind,
                data: raw("{}"),
            }
        });
    }
    let agent = || "a".to_owned();
    Some(match kind {
        EventKind::RunStart => run_start(2),
        EventKind::AgentStart => Event::AgentStart {
            agent: agent(),
            id: "run-1".into(),
        },
        EventKind::AgentEnd => Event::AgentEnd {
            agent: agent(),
            id: "run-1".into(),
            result: raw("\"done\""),
        },
        EventKind::StepStart => Event::StepStart {
            agent: agent(),
            step: 1,
            model: "m".into(),
            provider: Some("anthropic".into()),
            request_id: Some("r1".into()),
            usage: None,
        },
        EventKind::ModelResponse => Event::ModelResponse(Box::new(ModelResponse {
            agent: agent(),
            request_id: "r1".into(),
            attempt: 1,
            provider: "anthropic".into(),
            model: "m".into(),
            stop_reason: StopReason::ToolCalls,
            raw_stop_reason: None,
            usage: Usage::default(),
            latency_ms: 0,
            ttft_ms: None,
            content: vec![Block::ToolCall {
                id: "c1".into(),
                name: "add".into(),
                args: raw("{}"),
                args_error: None,
            }],
            request_hash: None,
        })),
        EventKind::ModelFailure => Event::ModelFailure(Box::new(ModelFailure {
            agent: agent(),
            request_id: "r1".into(),
            attempt: 1,
            provider: "anthropic".into(),
            model: "m".into(),
            kind: FailureKind::Server,
            message: "x".into(),
            status: None,
            retry_after_ms: None,
            latency_ms: 0,
            recovery: Recovery::Retry { at: T0 },
        })),
        EventKind::Reasoning => Event::Reasoning {
            agent: agent(),
            text: "hmm".into(),
            request_id: None,
        },
        EventKind::Text => Event::Text {
            agent: agent(),
            text: "x".into(),
            request_id: None,
        },
        EventKind::ToolCall => Event::ToolCall {
            agent: agent(),
            id: "c1".into(),
            tool: "add".into(),
            args: raw("{}"),
        },
        EventKind::ToolReturned => Event::ToolReturned {
            agent: agent(),
            id: "c1".into(),
            tool: "add".into(),
            args: raw("{}"),
            result: raw("3"),
            is_error: false,
        },
        EventKind::ToolAgentCall => Event::ToolAgentCall {
            agent: agent(),
            id: "c1".into(),
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
            aliases: None,
        },
        EventKind::ApprovalRequired => Event::ApprovalRequired(Box::new(ApprovalRequest {
            id: "appr".into(),
            kind: ApprovalKind::Tool,
            target: "add".into(),
            payload: raw("{}"),
            resource_id: TENANT.into(),
            thread_id: "t".into(),
            correlation_id: "c1".into(),
            expires_at: None,
            agent: Some(agent()),
            approvals_required: None,
        })),
        EventKind::ApprovalProgress => Event::ApprovalProgress {
            id: "appr".into(),
            approver: "alice".into(),
            tally: Tally {
                approvals: 1,
                required: 2,
            },
        },
        EventKind::ApprovalDecided => Event::ApprovalDecided {
            id: "appr".into(),
            outcome: Outcome::Approve,
            partial: None,
            feedback: None,
            approver: None,
            reason: None,
            tally: None,
        },
        EventKind::Fork => Event::Fork {
            source_thread_id: "src".into(),
            source_seq: 3,
        },
        // Named in the event table (the data-* facts, the tool-emitted ones): built above.
        _ => return None,
    })
}

#[test]
fn every_kind_and_phase_in_the_tables_has_a_sample() {
    for (format, table) in [(2, TRANSITIONS), (1, LEGACY)] {
        let (phases, kinds) = phases_and_kinds(table);
        for kind in kinds {
            let event = sample(kind).unwrap_or_else(|| panic!("add a {kind:?} event to `sample`"));
            assert_eq!(event.kind(), kind);
        }
        let reached = threads_in_every_phase(format);
        for phase in phases {
            assert!(
                reached.contains_key(&phase),
                "format {format}: no sample events lead from idle to {phase:?}; extend the path"
            );
        }
    }
}

#[test]
fn every_pair_outside_the_tables_is_refused_and_leaves_the_thread_untouched() {
    for (format, table) in [(2, TRANSITIONS), (1, LEGACY)] {
        let (phases, kinds) = phases_and_kinds(table);
        let threads = threads_in_every_phase(format);
        let mut refused = 0;
        for phase in &phases {
            for kind in &kinds {
                if run::next(format, *phase, *kind).is_some() {
                    continue;
                }
                let (Some(thread), Some(event)) = (threads.get(phase), sample(*kind)) else {
                    panic!(
                        "no sample for {phase:?} + {kind:?}; see every_kind_and_phase_..._sample"
                    );
                };
                let mut thread = thread.clone();
                let before = format!("{thread:?}");
                let seq = thread.last_seq + 1;
                let err = thread.apply(seq, T0, "in", event).err().unwrap_or_else(|| {
                    panic!(
                        "format {format}: {kind:?} was accepted while {}",
                        phase.as_str()
                    )
                });
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
        assert_eq!(refused, phases.len() * kinds.len() - table.len());
        println!(
            "format {format}: {refused} (phase, event) pairs outside the table refused ({} phases x {} kinds - {} rows)",
            phases.len(),
            kinds.len(),
            table.len()
        );
    }
}

#[test]
fn a_gap_or_repeat_in_seq_is_refused_even_for_an_allowed_event() {
    for seq in [0, 2, 7] {
        let mut thread = Thread::new("t".into(), TENANT.into());
        let err = thread
            .apply(seq, T0, "in", sample(EventKind::RunStart).unwrap())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ReplayDiverged);
        assert_eq!(thread.last_seq, 0);
    }
}
