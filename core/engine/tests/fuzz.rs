//! No bytes panic the engine. Arbitrary bytes, arbitrary JSON, mutated envelopes and log lines,
//! and every truncation of the golden lines go through every entry point (`handle`,
//! `handle_batch`, `apply`, `replay`, `EntryRef::parse`); each either works or fails with a typed
//! `EngineError` of the right family, a failure changes nothing, and whatever was accepted still
//! replays to the live state.

mod common;

use common::*;
use flowai_engine::codec::EntryRef;
use flowai_engine::event::EventKind;
use flowai_engine::{replay, EngineError, ErrorCode, OutputKind};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const INPUT_CODES: [ErrorCode; 8] = [
    ErrorCode::InputMalformed,
    ErrorCode::InputUnknownSchema,
    ErrorCode::UnknownAgent,
    ErrorCode::UnknownThread,
    ErrorCode::TenantMismatch,
    ErrorCode::ThreadBusy,
    ErrorCode::NoActiveRun,
    ErrorCode::UnknownInvocation,
];
const LOG_CODES: [ErrorCode; 2] = [ErrorCode::LogCorrupted, ErrorCode::ReplayDiverged];

// ---------------------------------------------------------------------------------------------
// The world each case starts from: one thread waiting for a tool, one finished

/// Every thread a case may touch: the world's, and the golden logs' (mutated lines name them).
const THREADS: [&str; 8] = [
    "busy",
    "done",
    "fresh",
    "hello",
    "tools",
    "routing",
    "conversation",
    "cancelled",
];

fn world() -> Driver {
    let mut d = Driver::scripted();
    d.send(query("busy", &script(&[("add", json!({"a": 1, "b": 2}))])).agent("calculator"));
    d.send(query("done", "hi"));
    d
}

/// Every thread's log replays to exactly the state the engine holds for it.
fn assert_live_equals_replay(d: &Driver) {
    for (thread, _) in &d.logs {
        let replayed = replay(&d.log(thread)).unwrap_or_else(|e| panic!("{thread}: {e}"));
        let replayed = replayed.threads.iter().find(|t| &t.id == thread);
        assert_eq!(
            replayed.map(snapshot_bytes),
            d.snapshot(thread),
            "thread `{thread}`: the live state differs from its replayed log"
        );
    }
}

fn assert_family(err: &EngineError, family: &[ErrorCode], what: &str) {
    assert!(family.contains(&err.code), "{what}: unexpected {err}");
    assert!(!err.message.is_empty(), "{what}: {err} has no message");
}

/// Feed `bytes` to every entry point; nothing may panic, and every answer must be well-formed.
fn feed_everywhere(bytes: &[u8]) {
    if let Err(err) = EntryRef::parse(bytes) {
        assert_family(&err, &[ErrorCode::LogCorrupted], "parse");
    }
    if let Err(err) = decode(bytes) {
        assert_family(&err, &[ErrorCode::LogCorrupted], "decode");
    }
    if let Err(err) = replay(bytes) {
        assert_family(&err, &LOG_CODES, "replay");
        assert!(err.line.is_some(), "replay errors name their line: {err}");
    }

    let mut d = world();
    let before = d.all_snapshots(&THREADS);
    if let Err(err) = d.apply(bytes) {
        assert_family(&err, &LOG_CODES, "apply");
        assert_eq!(
            d.all_snapshots(&THREADS),
            before,
            "a refused line changed state"
        );
    }
    feed_input(&mut d, bytes);
    assert_live_equals_replay(&d);
}

/// `handle` and `handle_batch` with these bytes as one input, against a live world.
fn feed_input(d: &mut Driver, bytes: &[u8]) {
    let before = d.all_snapshots(&THREADS);
    if let Err(err) = d.engine.handle(bytes) {
        assert_family(&err, &INPUT_CODES, "handle");
        assert!(
            d.engine.poll_output().is_none(),
            "a failed handle queued output"
        );
        assert_eq!(
            d.all_snapshots(&THREADS),
            before,
            "a failed handle changed state"
        );
    }
    let outs = d.drain();
    assert!(outs.rejections().is_empty(), "handle queues no rejections");

    if let Err(err) = d.engine.handle_batch(bytes) {
        assert_family(&err, &[ErrorCode::InputMalformed], "handle_batch");
        assert!(d.engine.poll_output().is_none());
    }
    d.drain();

    let mut batch = b"[".to_vec();
    batch.extend_from_slice(bytes);
    batch.push(b']');
    let before = d.all_snapshots(&THREADS);
    match d.engine.handle_batch(&batch) {
        Err(err) => assert_family(&err, &[ErrorCode::InputMalformed], "handle_batch [..]"),
        Ok(()) => {
            let outs = d.drain();
            let rejections = outs.rejections();
            if !rejections.is_empty() {
                assert_eq!(outs.len(), rejections.len(), "a rejection comes alone");
                assert_eq!(
                    d.all_snapshots(&THREADS),
                    before,
                    "a rejection changed state"
                );
                for r in rejections {
                    assert_eq!(r.envelope["seq"], Value::Null);
                    let code = r.payload()["error"]["code"].as_str().unwrap();
                    assert!(INPUT_CODES.iter().any(|c| c.as_str() == code), "{code}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

#[rustfmt::skip]
const KEYS: &[&str] = &[
    "schema", "id", "tenant", "thread_id", "run_id", "causation_id", "ts", "seq", "payload", "type",
    "prompt", "agent", "invocation_id", "tool_invocation_id", "output", "error", "events",
    "message", "code", "runId", "step", "model", "usage", "inputTokens", "outputTokens", "text",
    "toolInvocationId", "toolName", "args", "state", "result", "isError", "targetAgent", "data",
    "finishReason",
];

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "flowai.v1.Query", "flowai.v1.ToolResult", "flowai.v1.CancelRun", "flowai.v1.RuntimeEvent",
    "acme", "globex", "busy", "done", "fresh", "run-1", "run-2", "acme/busy/run-1/scripted-tool-1",
    "scripted-tool-1", "router", "calculator", "ghost", "call", "result", "stop", "cancelled",
    "add", "call_agent", r#"{"tool": "add", "args": {"a": 1, "b": 2}}"#, "", "\u{1F980}\n\"\\",
];

/// The fixed words, and every event type the engine logs (so a new one is fuzzed too).
fn words() -> Vec<&'static str> {
    let mut words = WORDS.to_vec();
    words.extend(EventKind::ALL.iter().map(|kind| kind.type_name()));
    words.sort_unstable();
    words.dedup();
    words
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(-1)),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1.5)),
        Just(json!(1e308)),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        prop::sample::select(words()).prop_map(|w| json!(w)),
        ".{0,8}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Objects with every envelope field, filled from the vocabulary: likelier to get deep.
fn envelope_like() -> impl Strategy<Value = Value> {
    let field = |key: &'static str| (Just(key), prop_oneof![3 => leaf(), 1 => json_value()]);
    (
        prop::collection::vec(
            prop_oneof![
                field("schema"),
                field("id"),
                field("tenant"),
                field("thread_id"),
                field("ts"),
                field("seq"),
                field("run_id"),
            ],
            0..8,
        ),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..8),
    )
        .prop_map(|(fields, payload)| {
            let mut object: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let payload: Map<String, Value> = payload
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            object.insert("payload".into(), Value::Object(payload));
            Value::Object(object)
        })
}

// ---------------------------------------------------------------------------------------------
// Mutations of real envelopes and log lines

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Replace(usize, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), prop_oneof![3 => leaf(), 1 => json_value()])
            .prop_map(|(at, v)| Mutation::Replace(at, v)),
    ]
}

/// JSON-pointer-ish paths of every value inside `value` (not the root).
fn paths(value: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(PathStep::Key(key.clone()));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                prefix.push(PathStep::Index(index));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn mutate(mut value: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        let mut all = Vec::new();
        paths(&value, &mut Vec::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let (at, replacement) = match m {
            Mutation::Delete(at) => (*at, None),
            Mutation::Replace(at, v) => (*at, Some(v.clone())),
        };
        let path = &all[at % all.len()];
        let (last, parents) = path.split_last().unwrap();
        let mut parent = &mut value;
        for step in parents {
            parent = match step {
                PathStep::Key(k) => &mut parent[k.as_str()],
                PathStep::Index(i) => &mut parent[*i],
            };
        }
        match (last, replacement, parent) {
            (PathStep::Key(k), None, Value::Object(map)) => {
                map.shift_remove(k);
            }
            (PathStep::Index(i), None, Value::Array(items)) => {
                items.remove(*i);
            }
            (PathStep::Key(k), Some(v), Value::Object(map)) => {
                map.insert(k.clone(), v);
            }
            (PathStep::Index(i), Some(v), Value::Array(items)) => items[*i] = v,
            _ => unreachable!("paths only name existing children"),
        }
    }
    value
}

/// Valid inputs for the world: each is accepted as it is.
fn valid_inputs() -> Vec<Value> {
    let busy = invocation("busy", 1, 1);
    [
        query("fresh", &script(&[("add", json!({"a": 1, "b": 2}))])).agent("calculator"),
        query("fresh", &script(&[("call_agent", json!({"agent": "calculator", "prompt": "x"}))])),
        query("done", "again"),
        tool_result("busy", &busy, json!({"sum": 3})),
        tool_result("busy", &busy, json!(3)).payload(
            "events",
            json!([{"type": "custom", "name": "n", "data": 1, "toolInvocationId": "scripted-tool-1"}]),
        ),
        tool_error("busy", &busy, "boom", "TOOL_FAILED"),
        cancel_run("busy"),
    ]
    .into_iter()
    .map(|input| {
        let mut value = input.0;
        value["id"] = json!("m-fuzz");
        value["ts"] = json!(T0 + 1);
        value
    })
    .collect()
}

fn golden_lines() -> Vec<(String, usize, Vec<u8>)> {
    golden_logs()
        .into_iter()
        .flat_map(|(name, log)| {
            lines(&log)
                .into_iter()
                .enumerate()
                .map(|(k, line)| (name.clone(), k, line.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Fold a golden log whose line `k` was replaced, line by line and as a whole: both must fail
/// at the same line or agree on the state; then the live engine must carry on from it.
fn check_mutated_log(name: &str, k: usize, mutated: &[u8]) {
    let log = golden_log(name);
    let mut all: Vec<Vec<u8>> = lines(&log).into_iter().map(<[u8]>::to_vec).collect();
    all[k] = mutated.to_vec();

    let whole = replay(&join_lines(&all));
    let mut d = Driver::scripted();
    let mut failed_at = None;
    for (n, line) in all.iter().enumerate() {
        let before = d.snapshot(name);
        if let Err(err) = d.apply(line) {
            assert_family(&err, &LOG_CODES, "apply");
            assert_eq!(d.snapshot(name), before, "a refused line changed state");
            failed_at = Some(n + 1);
            break;
        }
    }
    match &whole {
        Ok(_) => assert_eq!(failed_at, None, "replay accepted what apply refused"),
        Err(err) => {
            assert_family(err, &LOG_CODES, "replay");
            assert_eq!(
                err.line, failed_at,
                "replay and apply fail at different lines: {err}"
            );
        }
    }
    assert_live_equals_replay(&d);
    carry_on_live(&mut d);
    assert_live_equals_replay(&d);
}

/// Answer whatever every held thread is waiting for, then cancel it: the engine must cope
/// with any state a log left it in.
fn carry_on_live(d: &mut Driver) {
    let threads: Vec<String> = d.logs.iter().map(|(t, _)| t.clone()).collect();
    for thread in threads {
        let Some(snapshot) = d.snapshot(&thread) else {
            continue;
        };
        let snapshot: Value = serde_json::from_slice(&snapshot).unwrap();
        let run = &snapshot["run"];
        if let (Some(run_id), Some(call)) = (
            run["runId"].as_str(),
            run["pending"]["toolInvocationId"].as_str(),
        ) {
            let id = format!(
                "{}/{thread}/{run_id}/{call}",
                snapshot["tenant"].as_str().unwrap()
            );
            let input =
                tool_result(&thread, &id, json!(1)).set("tenant", snapshot["tenant"].clone());
            d.send(input);
        }
        d.send(cancel_run(&thread));
        d.send(query(&thread, "after"));
    }
}

// ---------------------------------------------------------------------------------------------
// A sequence of inputs, run twice: straight, and reloading the engine from its logs

#[derive(Clone, Debug)]
enum Op {
    Query {
        thread: usize,
        prompt: usize,
        agent: usize,
    },
    Result {
        thread: usize,
        run: u32,
        call: u32,
        output: usize,
    },
    Cancel {
        thread: usize,
    },
    Reload,
}

fn prompts() -> Vec<String> {
    let add = |a: i64, b: i64| ("add", json!({"a": a, "b": b}));
    vec![
        "hi".to_owned(),
        script(&[add(1, 2)]),
        script(&[add(1, 2), add(3, 4)]),
        script(&[("add", json!({"a": "one"}))]),
        script(&[("explode", json!({"reason": "boom"}))]),
        script(&[(
            "call_agent",
            json!({"agent": "calculator", "prompt": script(&[add(2, 3)])}),
        )]),
        script(&[("call_agent", json!({"agent": "router", "prompt": "loop"}))]),
        r#"{"script": 5}"#.to_owned(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 0..8usize, 0..4usize)
            .prop_map(|(thread, prompt, agent)| Op::Query { thread, prompt, agent }),
        4 => (0..3usize, 1..3u32, 1..4u32, 0..4usize)
            .prop_map(|(thread, run, call, output)| Op::Result { thread, run, call, output }),
        1 => (0..3usize).prop_map(|thread| Op::Cancel { thread }),
        1 => Just(Op::Reload),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (0..10_000i64).prop_map(|ms| T0 + ms),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(0i64),
        1 => any::<i64>(),
    ]
}

fn input_for(op: &Op, ts: i64) -> Option<Input> {
    let threads = ["a", "b", "c"];
    let agents = [None, Some("router"), Some("calculator"), Some("ghost")];
    let outputs = [
        json!({"sum": 3}),
        json!(null),
        json!("text"),
        json!([1, {"x": "y\n"}]),
    ];
    let input = match *op {
        Op::Query {
            thread,
            prompt,
            agent,
        } => {
            let q = query(threads[thread], &prompts()[prompt]);
            match agents[agent] {
                Some(agent) => q.agent(agent),
                None => q,
            }
        }
        Op::Result {
            thread,
            run,
            call,
            output,
        } => {
            let t = threads[thread];
            tool_result(t, &invocation(t, run, call), outputs[output].clone())
        }
        Op::Cancel { thread } => cancel_run(threads[thread]),
        Op::Reload => return None,
    };
    Some(input.ts(ts))
}

fn reload(d: &mut Driver) {
    let mut fresh = engine(golden_spec(), scripted());
    let all: Vec<u8> = d.logs.iter().flat_map(|(t, _)| d.log(t)).collect();
    fresh.load(&all).expect("the engine's own log loads");
    for (thread, _) in &d.logs {
        assert_eq!(
            fresh.thread(thread).map(snapshot_bytes),
            d.snapshot(thread),
            "{thread}: reloading changed the state"
        );
    }
    d.engine = fresh;
}

// ---------------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        feed_everywhere(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        feed_everywhere(value.to_string().as_bytes());
    }

    #[test]
    fn envelope_shaped_json_never_panics(value in envelope_like()) {
        feed_everywhere(value.to_string().as_bytes());
    }

    #[test]
    fn mutated_inputs_are_accepted_or_rejected_cleanly(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
        pretty in any::<bool>(),
    ) {
        let inputs = valid_inputs();
        let input = mutate(pick.get(&inputs).clone(), &mutations);
        let bytes = if pretty {
            serde_json::to_vec_pretty(&input).unwrap()
        } else {
            serde_json::to_vec(&input).unwrap()
        };
        let mut d = world();
        feed_input(&mut d, &bytes);
        assert_live_equals_replay(&d);
    }

    #[test]
    fn mutated_log_lines_fail_alike_in_apply_and_replay(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let lines = golden_lines();
        let (name, k, line) = pick.get(&lines);
        let value: Value = serde_json::from_slice(line).unwrap();
        let mutated = mutate(value, &mutations).to_string();
        feed_everywhere(mutated.as_bytes());
        check_mutated_log(name, *k, mutated.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn input_sequences_answer_alike_with_and_without_reloading_from_the_log(
        ops in prop::collection::vec((op(), timestamp()), 1..14),
    ) {
        let mut straight = Driver::scripted();
        let mut reloaded = Driver::scripted();
        for (op, ts) in &ops {
            let Some(input) = input_for(op, *ts) else {
                reload(&mut reloaded);
                continue;
            };
            let before = straight.all_snapshots(&["a", "b", "c"]);
            let outs = straight.send(input.clone());
            let twin = reloaded.send(input);
            let bytes = |outs: &[Out]| outs.iter().map(|o| o.bytes.clone()).collect::<Vec<_>>();
            prop_assert_eq!(bytes(&outs), bytes(&twin), "a reloaded engine answered differently");
            if !outs.rejections().is_empty() {
                prop_assert_eq!(outs.len(), 1);
                prop_assert_eq!(straight.all_snapshots(&["a", "b", "c"]), before);
            }
            prop_assert!(outs.iter().all(|o| o.kind != OutputKind::Effect
                || o.envelope["schema"] == "flowai.v1.ToolInvocation"));
        }
        assert_live_equals_replay(&straight);
        assert_live_equals_replay(&reloaded);
    }
}

// ---------------------------------------------------------------------------------------------
// Every truncation of every golden line

#[test]
fn every_truncation_of_a_golden_line_is_corrupted_and_changes_nothing() {
    let mut checked = 0;
    for (name, log) in golden_logs() {
        let lines = lines(&log);
        for (k, line) in lines.iter().enumerate() {
            let mut d = Driver::scripted();
            for earlier in &lines[..k] {
                d.apply(earlier).unwrap();
            }
            let before = d.snapshot(&name);
            let prefix = join_lines(&lines[..k].iter().map(|l| l.to_vec()).collect::<Vec<_>>());
            for len in 0..line.len() {
                let cut = &line[..len];
                let err = d.engine.apply(cut).expect_err("a cut line is not an entry");
                assert_eq!(
                    err.code,
                    ErrorCode::LogCorrupted,
                    "{name}:{} at {len}: {err}",
                    k + 1
                );
                assert!(EntryRef::parse(cut).is_err());
                if len > 0 && len % 23 == 0 {
                    let mut log = prefix.clone();
                    log.extend_from_slice(cut);
                    let err = replay(&log).err().expect("a cut log does not replay");
                    assert_eq!((err.code, err.line), (ErrorCode::LogCorrupted, Some(k + 1)));
                }
                checked += 1;
            }
            assert_eq!(d.snapshot(&name), before, "{name}:{}", k + 1);
        }
    }
    println!("{checked} truncated golden lines refused");
}

#[test]
fn every_truncation_of_a_valid_input_is_malformed_and_changes_nothing() {
    for input in valid_inputs() {
        let bytes = input.to_string().into_bytes();
        let mut d = world();
        let before = d.all_snapshots(&THREADS);
        for len in 0..bytes.len() {
            let err = d.engine.handle(&bytes[..len]).expect_err("a cut envelope");
            assert_eq!(err.code, ErrorCode::InputMalformed);
            let err = d
                .engine
                .handle_batch(&bytes[..len])
                .expect_err("not an array");
            assert_eq!(err.code, ErrorCode::InputMalformed);
        }
        assert!(d.engine.poll_output().is_none());
        assert_eq!(d.all_snapshots(&THREADS), before);
        feed_input(&mut d, &bytes);
    }
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    for depth in [200, 5_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        feed_everywhere(nested.as_bytes());
        let inside = format!(
            r#"{{"schema":"flowai.v1.Query","id":"x","tenant":"acme","thread_id":"n","ts":1,"payload":{{"prompt":{nested}}}}}"#
        );
        feed_everywhere(inside.as_bytes());
    }
}
