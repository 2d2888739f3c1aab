//! Fork: a new thread from another's log up to a position, with a logged `fork` fact; the
//! source untouched; a gate re-opened under the fork's own approval id; refusals typed.

mod common;

use common::*;
use flowai_engine::snapshot;
use flowai_engine::{replay, ErrorCode, OutputKind};
use serde_json::{json, Value};

/// The view of a thread with its id taken out, to compare a fork with its source.
fn view_without_id(d: &Driver, thread: &str) -> Value {
    let mut view = d.snapshot_json(thread);
    view.as_object_mut().unwrap().remove("threadId");
    view.as_object_mut().unwrap().remove("lastSeq");
    view
}

#[test]
fn a_fork_between_runs_copies_the_history_then_logs_the_fork_and_leaves_the_source_alone() {
    let mut d = Driver::scripted();
    d.send(query("src", "first question"));
    let at = d.logs_of("src").len() as u64;
    d.send(query("src", "second question"));
    let source_log = d.log("src");
    let source_state = d.snapshot("src");

    // The source as it was after event `at`, for comparison.
    let mut then = Driver::scripted();
    let prefix = join_lines(
        &lines(&source_log)[..at as usize]
            .iter()
            .map(|l| l.to_vec())
            .collect::<Vec<_>>(),
    );
    then.engine.load(&prefix).unwrap();

    let out = d.fork("src", at, "fork").unwrap();
    let events = out.events();
    assert_eq!(
        events.len() as u64,
        at + 1,
        "the copied history, then the fork"
    );
    assert!(out.effects().is_empty(), "nothing to do between runs");
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.envelope["thread_id"], "fork");
        assert_eq!(event.envelope["seq"], json!(n + 1));
        assert_eq!(
            event.envelope["id"],
            json!(format!("{TENANT}/fork/{}", n + 1))
        );
    }
    let fork = events.last().unwrap().payload();
    assert_eq!(
        fork,
        &json!({"type": "fork", "data": {"sourceThreadId": "src", "sourceSeq": at}})
    );
    for (copied, original) in events[..at as usize].iter().zip(lines(&source_log)) {
        let original: Value = serde_json::from_slice(original).unwrap();
        assert_eq!(copied.envelope["payload"], original["payload"]);
        assert_eq!(copied.envelope["causation_id"], original["causation_id"]);
    }

    assert_eq!(d.log("src"), source_log, "the source's log is untouched");
    assert_eq!(
        d.snapshot("src"),
        source_state,
        "the source's state is untouched"
    );
    assert_eq!(view_without_id(&d, "fork"), view_without_id(&then, "src"));
    assert_eq!(d.snapshot_json("fork")["lastSeq"], json!(at + 1));

    // The fork's log replays to the live fork, and the fork goes on with the copied history.
    let replayed = replay(&d.log("fork")).unwrap();
    assert_eq!(
        snapshot::state(&replayed.threads[0]),
        snapshot::state(d.engine.thread("fork").unwrap())
    );
    let next = d.send(query("fork", "a different second question"));
    assert!(next.labels().contains(&"finish".to_owned()));
    let messages = d.snapshot_json("fork")["messages"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        messages >= 4,
        "the fork remembers the first question: {messages} messages"
    );
}

#[test]
fn a_fork_at_a_gate_waits_at_the_same_gate_under_its_own_approval_id() {
    let mut d = Driver::new(engine(quorum_spec(2), scripted()));
    d.send(query("src", &script(&[("delete_rows", json!({"table": "t"}))])).agent("planner"));
    let old = approval_id("src", 1, 1);
    d.send(decision_by("src", &old, "approve", "alice"));
    let at = d.logs_of("src").len() as u64;
    d.clock += 5_000;
    let out = d.fork("src", at, "branch").unwrap();
    let labels = out.labels();
    assert_eq!(labels[labels.len() - 2..], ["fork", "approval-required"]);
    let new_id = approval_id("branch", 1, 1);
    let required = out.events().last().unwrap().payload()["data"].clone();
    assert_eq!(required["id"], json!(new_id));
    assert_eq!(required["threadId"], "branch");
    assert_eq!(
        required["approvalsRequired"], 2,
        "the same gate: two approvers"
    );
    assert_eq!(
        required["expiresAt"],
        json!(d.clock + 60_000),
        "a new request, a new deadline"
    );
    let effects = out.effects();
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].envelope["schema"], "flowai.v1.ApprovalRequest");
    assert_eq!(effects[0].envelope["id"], json!(new_id));
    let view = d.snapshot_json("branch");
    assert_eq!(view["status"], "awaiting-approval");
    assert_eq!(view["run"]["pending"]["approval"]["id"], json!(new_id));
    assert_eq!(
        view["run"]["pending"]["approval"]["approvers"],
        json!([]),
        "approvals start over"
    );

    // The source's approval id does not open the fork's gate; the fork's own does.
    let wrong = d.send(decision_by("branch", &old, "approve", "bob"));
    assert_eq!(wrong.rejections().len(), 1);
    d.send(decision_by("branch", &new_id, "approve", "alice"));
    let opened = d.send(decision_by("branch", &new_id, "approve", "bob"));
    let call = opened.effects();
    assert_eq!(call[0].envelope["schema"], "flowai.v1.ToolInvocation");
    assert_eq!(call[0].envelope["id"], json!(invocation("branch", 1, 1)));
    let done = d.send(tool_result(
        "branch",
        &invocation("branch", 1, 1),
        json!({"deleted": 1}),
    ));
    assert!(done.labels().contains(&"finish".to_owned()));
    assert_eq!(
        d.snapshot_json("src")["status"],
        "awaiting-approval",
        "the source still waits"
    );

    let replayed = replay(&d.log("branch")).unwrap();
    assert_eq!(
        snapshot::state(&replayed.threads[0]),
        snapshot::state(d.engine.thread("branch").unwrap())
    );
}

#[test]
fn a_fork_of_a_plan_gate_reopens_the_plan_gate() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    d.send(query("src", &script(&[store_plan("p1")])).agent("planner"));
    let exec = script(&[("executePlan", json!({"planId": "p1"}))]);
    d.send(query("src", &exec).agent("executor"));
    assert_eq!(d.snapshot_json("src")["status"], "awaiting-approval");
    let at = d.logs_of("src").len() as u64;
    let out = d.fork("src", at, "plan-fork").unwrap();
    let labels = out.labels();
    assert_eq!(
        labels[labels.len() - 2..],
        ["fork", "approval-required"],
        "the plan stays pending"
    );
    let required = &out.events().last().unwrap().payload()["data"];
    assert_eq!(required["kind"], "plan");
    assert_eq!(required["target"], "p1");
    let id = required["id"].as_str().unwrap().to_owned();
    let approved = d.send(approval_decision("plan-fork", &id, "approve"));
    assert!(approved
        .effects()
        .iter()
        .any(|e| e.envelope["schema"] == "flowai.v1.PlanStep"));
}

#[test]
fn forks_that_cannot_start_are_refused_and_change_nothing() {
    let mut d = Driver::scripted();
    let add = script(&[("add", json!({"a": 1, "b": 2}))]);
    d.send(query("src", &add).agent("calculator"));
    let n = d.logs_of("src").len() as u64;
    let mid = d
        .logs_of("src")
        .iter()
        .position(|p| p["type"] == "tool-invocation")
        .unwrap() as u64
        + 1;
    let cases: [(u64, &str, ErrorCode); 4] = [
        (0, "new", ErrorCode::ForkUnavailable),
        (n + 1, "new", ErrorCode::ForkUnavailable),
        (mid, "new", ErrorCode::ForkUnavailable),
        (1, "src", ErrorCode::ForkUnavailable),
    ];
    for (at, new, code) in cases {
        let err = d.fork("src", at, new).unwrap_err();
        assert_eq!(err.code, code, "at {at} into {new}: {err}");
        assert!(d.engine.thread("new").is_none());
        assert!(d.engine.poll_output().is_none());
    }
    let err = d.fork("src", mid, "new").unwrap_err();
    assert!(err.message.contains("awaiting-tool"), "{err}");
    // A thread that exists already.
    d.send(query("other", "hi"));
    let err = d.fork("src", 1, "other").unwrap_err();
    assert_eq!(err.code, ErrorCode::ForkUnavailable);
    // Another tenant's fork request.
    let input = json!({"schema": "flowai.v1.ForkThread", "id": "f", "tenant": "globex",
        "thread_id": "new", "ts": T0, "payload": {"source_thread_id": "src", "at": 1}});
    let err = d
        .engine
        .fork(input.to_string().as_bytes(), &d.log("src"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::TenantMismatch);
    // A source log of another tenant.
    let foreign = String::from_utf8(d.log("src"))
        .unwrap()
        .replace("\"tenant\":\"acme\"", "\"tenant\":\"globex\"");
    let input = json!({"schema": "flowai.v1.ForkThread", "id": "f", "tenant": TENANT,
        "thread_id": "new", "ts": T0, "payload": {"source_thread_id": "src", "at": 1}});
    let err = d
        .engine
        .fork(input.to_string().as_bytes(), foreign.as_bytes())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::TenantMismatch);
    assert!(d.engine.thread("new").is_none());
    let _ = OutputKind::Event;
}
