//! Snapshots: the law and the refusals.
//!
//! Law: for every log the engine writes and every position k in it, restoring the snapshot
//! taken after event k and folding events k+1.. gives the state the whole log gives, byte for
//! byte (`snapshot::state`, which serializes every field but caches). A second law covers the
//! live side: an engine restored from snapshots decides exactly what the engine that never
//! stopped decides, output for output. Logs come from random walks of the scripted engine
//! through tools, sub-agents, plans, approval gates (quorum included), predicate checks,
//! deadlines and cancels, and from the golden logs of both formats.

mod common;

use common::*;
use flowai_engine::snapshot::{self, SNAPSHOT_FORMAT};
use flowai_engine::{replay, ErrorCode, OutputKind};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Check the law at every position of one thread's log.
fn assert_law(thread: &str, log: &[u8]) {
    let all = lines(log);
    let whole = replay(log).unwrap_or_else(|e| panic!("{thread}: the log replays: {e}"));
    let whole = whole.threads.iter().find(|t| t.id == thread).unwrap();
    let expected = snapshot::state(whole);
    for k in 1..=all.len() {
        let prefix = join_lines(&all[..k].iter().map(|l| l.to_vec()).collect::<Vec<_>>());
        let tail = join_lines(&all[k..].iter().map(|l| l.to_vec()).collect::<Vec<_>>());
        let at_k = replay(&prefix).unwrap();
        let snap = snapshot::encode(&at_k.threads[0]);
        let restored = snapshot::replay_from(&snap, Some(thread), &tail)
            .unwrap_or_else(|e| panic!("{thread}: restore at {k} + tail: {e}"));
        assert_eq!(
            String::from_utf8(snapshot::state(&restored.threads[0])).unwrap(),
            String::from_utf8(expected.clone()).unwrap(),
            "{thread}: snapshot after event {k} + the rest differs from the whole log"
        );
        // Given the whole log, the lines the snapshot covers are skipped.
        let again = snapshot::replay_from(&snap, None, log).unwrap();
        assert_eq!(snapshot::state(&again.threads[0]), expected);
        // A snapshot reads back to itself.
        let decoded = snapshot::decode(&snap, Some(thread)).unwrap();
        assert_eq!(
            snapshot::encode(&decoded),
            snap,
            "{thread}: encode(decode(s)) = s"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random walks of the scripted engine

/// What a walk does next, read against whatever the chosen thread is doing.
#[derive(Clone, Debug)]
struct Step {
    thread: usize,
    choice: u8,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0usize..2, any::<u8>()).prop_map(|(thread, choice)| Step { thread, choice }),
        1..20,
    )
}

const THREADS: [&str; 2] = ["t-a", "t-b"];

/// One walk step: an input fitting the thread's state, picked by `choice`.
fn input_for(d: &Driver, spec: Spec, step: &Step) -> Input {
    let thread = THREADS[step.thread];
    let view = d.engine.thread(thread).map(|t| {
        serde_json::from_slice::<Value>(&serde_json::to_vec(&t.snapshot()).unwrap()).unwrap()
    });
    let status = view.as_ref().map_or("idle".to_owned(), |v| {
        v["status"].as_str().unwrap().to_owned()
    });
    let c = step.choice;
    match status.as_str() {
        "idle" => spec.query(thread, c),
        "awaiting-approval" => {
            let id = view.unwrap()["run"]["pending"]["approval"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            match c % 6 {
                0 => approval_decision(thread, &id, "reject"),
                1 => approval_decision(thread, &id, "revise").payload("feedback", json!("less")),
                2 => deadline_reached(thread).ts(d.clock + 3_600_000),
                3 => cancel_run(thread),
                4 => decision_by(thread, &id, "approve", "bob"),
                _ => decision_by(thread, &id, "approve", "alice"),
            }
        }
        _ => {
            let run = &view.as_ref().unwrap()["run"];
            let pending = &run["pending"]["toolInvocationId"];
            if c.is_multiple_of(7) || pending.is_null() {
                return cancel_run(thread);
            }
            let run_n: u32 = run["runId"].as_str().unwrap()["run-".len()..]
                .parse()
                .unwrap();
            let call = pending.as_str().unwrap();
            let invocation = format!("{TENANT}/{thread}/run-{run_n}/{call}");
            match c % 7 {
                1 => approval_check_result(thread, &format!("{invocation}/check"), true),
                2 => approval_check_result(thread, &format!("{invocation}/check"), false),
                3 => tool_error(thread, &invocation, "boom", "TOOL_FAILED"),
                4 => tool_result(thread, &invocation, json!({"rows": 3})).payload(
                    "events",
                    json!([{"type": "custom", "name": "n", "data": c, "toolInvocationId": call}]),
                ),
                _ => tool_result(thread, &invocation, json!({"sum": c})),
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Spec {
    Plans,
    Calculator,
}

impl Spec {
    fn driver(self) -> Driver {
        Driver::new(engine(self.value(), scripted()))
    }

    fn value(self) -> Value {
        match self {
            Spec::Plans => quorum_spec(2),
            Spec::Calculator => golden_spec(),
        }
    }

    fn query(self, thread: &str, c: u8) -> Input {
        match self {
            Spec::Plans => match c % 6 {
                0 => query(
                    thread,
                    &script(&[("delete_rows", json!({"table": "orders"}))]),
                )
                .agent("planner"),
                1 => query(thread, &script(&[("peek", json!({}))])).agent("planner"),
                2 => query(thread, &script(&[store_plan("p1")])).agent("planner"),
                3 => query(thread, &script(&[("executePlan", json!({"planId": "p1"}))]))
                    .agent("executor"),
                4 => query(
                    thread,
                    &script(&[("peek", json!({"n": 1})), ("delete_rows", json!({}))]),
                )
                .agent("planner"),
                _ => query(thread, "hello").agent("planner"),
            },
            Spec::Calculator => {
                let add = script(&[("add", json!({"a": c, "b": 2}))]);
                match c % 4 {
                    0 => query(thread, &add).agent("calculator"),
                    1 => query(
                        thread,
                        &script(&[("call_agent", json!({"agent": "calculator", "prompt": add}))]),
                    ),
                    2 => query(thread, &script(&[("explode", json!({"reason": "x"}))]))
                        .agent("calculator"),
                    _ => query(thread, "what is 1 + 2?"),
                }
            }
        }
    }
}

fn walk(spec: Spec, steps: &[Step]) -> Driver {
    let mut d = spec.driver();
    for step in steps {
        d.clock += 1_000;
        let input = input_for(&d, spec, step);
        d.send(input);
    }
    d
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![Just(Spec::Plans), Just(Spec::Calculator)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn snapshot_at_any_point_then_the_rest_is_the_whole_log(spec in spec(), steps in steps()) {
        let d = walk(spec, &steps);
        for (thread, _) in &d.logs {
            assert_law(thread, &d.log(thread));
        }
    }

    /// An engine restored from snapshots midway decides what the one that never stopped does.
    #[test]
    fn a_restored_engine_decides_like_the_one_that_never_stopped(
        spec in spec(), steps in steps(), cut in any::<prop::sample::Index>()
    ) {
        let m = cut.index(steps.len());
        let mut a = walk(spec, &steps[..m]);
        let mut b = spec.driver();
        b.clock = a.clock;
        for thread in THREADS {
            if let Some(snap) = a.engine.save(thread) {
                b.engine.restore(&snap, None).unwrap();
            }
        }
        for step in &steps[m..] {
            a.clock += 1_000;
            b.clock += 1_000;
            let input = input_for(&a, spec, step);
            let from_a = a.send(input.clone().id(&format!("in-{}", a.clock)));
            let from_b = b.send(input.id(&format!("in-{}", a.clock)));
            let bytes = |outs: &[Out]| outs.iter().map(|o| (o.kind, o.bytes.clone())).collect::<Vec<_>>();
            prop_assert_eq!(bytes(&from_a), bytes(&from_b));
        }
        for thread in THREADS {
            prop_assert_eq!(
                a.engine.thread(thread).map(snapshot::state),
                b.engine.thread(thread).map(snapshot::state)
            );
        }
    }
}

#[test]
fn the_law_holds_on_every_golden_log_of_both_formats() {
    for (name, log) in golden_logs().into_iter().chain(golden_logs_v1()) {
        assert_law(&name, &log);
    }
}

#[test]
fn restore_then_load_tail_equals_loading_the_whole_log() {
    let d = walk(
        Spec::Plans,
        &(0..20)
            .map(|n| Step {
                thread: n % 2,
                choice: (n * 37 % 251) as u8,
            })
            .collect::<Vec<_>>(),
    );
    for thread in THREADS {
        let log = d.log(thread);
        let all = lines(&log);
        let k = all.len() / 2;
        let prefix = join_lines(&all[..k].iter().map(|l| l.to_vec()).collect::<Vec<_>>());
        let mut whole = Spec::Plans.driver();
        whole.engine.load(&log).unwrap();
        let mut restored = Spec::Plans.driver();
        let snap = snapshot::encode(&replay(&prefix).unwrap().threads[0]);
        assert_eq!(restored.engine.restore(&snap, None).unwrap(), k as u64);
        // The whole log: covered lines are skipped, the rest folds.
        assert_eq!(restored.engine.load_tail(&log).unwrap(), all.len() - k);
        assert_eq!(
            restored.engine.thread(thread).map(snapshot::state),
            whole.engine.thread(thread).map(snapshot::state)
        );
        let again = restored.engine.restore(&snap, None).unwrap_err();
        assert_eq!(again.code, ErrorCode::ReplayDiverged, "{again}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals: never a wrong state

fn a_snapshot() -> (Vec<u8>, Value) {
    let d = walk(
        Spec::Calculator,
        &[Step {
            thread: 0,
            choice: 0,
        }],
    );
    let snap = d.engine.save("t-a").unwrap();
    let value = serde_json::from_slice(&snap).unwrap();
    (snap, value)
}

fn refused(bytes: &[u8], expect: Option<&str>) -> ErrorCode {
    let err = snapshot::decode(bytes, expect).expect_err("the snapshot must be refused");
    assert!(!err.message.is_empty());
    if expect.is_none() {
        let mut d = Spec::Calculator.driver();
        assert!(
            d.engine.restore(bytes, None).is_err(),
            "restore refuses what decode refuses"
        );
        assert!(
            d.engine.thread("t-a").is_none(),
            "a refused snapshot holds nothing"
        );
    }
    err.code
}

#[test]
fn a_snapshot_of_another_format_is_refused_as_a_version() {
    let (_, value) = a_snapshot();
    for format in [0, SNAPSHOT_FORMAT + 1] {
        let mut v = value.clone();
        v["snapshot"] = json!(format);
        let code = refused(v.to_string().as_bytes(), None);
        assert_eq!(code, ErrorCode::SnapshotVersion);
    }
}

#[test]
fn a_damaged_snapshot_is_refused_as_corrupted() {
    let (snap, value) = a_snapshot();
    // A changed digit inside the state: still JSON, still the right shape, wrong checksum.
    let text = String::from_utf8(snap.clone()).unwrap();
    let at = text.find("\"last_seq\":").unwrap() + "\"last_seq\":".len();
    let mut damaged = text.clone().into_bytes();
    damaged[at] = if damaged[at] == b'9' {
        b'1'
    } else {
        damaged[at] + 1
    };
    assert_eq!(refused(&damaged, None), ErrorCode::SnapshotCorrupted);
    // Truncated, not JSON, no format number, header contradicting the state.
    assert_eq!(
        refused(&snap[..snap.len() / 2], None),
        ErrorCode::SnapshotCorrupted
    );
    assert_eq!(refused(b"\x00\xff", None), ErrorCode::SnapshotCorrupted);
    let mut v = value.clone();
    v.as_object_mut().unwrap().remove("snapshot");
    assert_eq!(
        refused(v.to_string().as_bytes(), None),
        ErrorCode::SnapshotCorrupted
    );
    let mut v = value.clone();
    v["seq"] = json!(99);
    assert_eq!(
        refused(v.to_string().as_bytes(), None),
        ErrorCode::SnapshotCorrupted
    );
    let mut v = value;
    v["state"]["history"] = json!("not a history");
    assert_eq!(
        refused(v.to_string().as_bytes(), None),
        ErrorCode::SnapshotCorrupted
    );
}

#[test]
fn a_snapshot_of_another_thread_or_tenant_is_refused_as_a_mismatch() {
    let (snap, _) = a_snapshot();
    assert_eq!(refused(&snap, Some("t-b")), ErrorCode::SnapshotMismatch);
    // A well-formed snapshot written by tenant globex's runtime.
    let mut other = snapshot::decode(&snap, None).unwrap();
    other.tenant = "globex".to_owned();
    let foreign = snapshot::encode(&other);
    let mut d = Spec::Calculator.driver();
    let err = d.engine.restore(&foreign, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::SnapshotMismatch, "{err}");
    assert!(d.engine.thread("t-a").is_none());
}

#[test]
fn a_restored_engine_answers_duplicates_and_outstanding_work_as_before() {
    // Dedup ids live in the snapshot: an input taken before it is still a duplicate after.
    let mut d = Spec::Calculator.driver();
    let add = script(&[("add", json!({"a": 1, "b": 2}))]);
    d.send(query("t-a", &add).agent("calculator").id("q-1"));
    let snap = d.engine.save("t-a").unwrap();
    let mut restored = Spec::Calculator.driver();
    restored.engine.restore(&snap, None).unwrap();
    let again = restored.send(query("t-a", &add).agent("calculator").id("q-1"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].kind, OutputKind::Duplicate);
    let done = restored.send(tool_result("t-a", &invocation("t-a", 1, 1), json!(3)));
    assert!(
        done.labels().contains(&"finish".to_owned()),
        "{:?}",
        done.labels()
    );
}
