//! The engine's envelopes against the published contract: scenarios drive the engine through
//! every effect schema, every run-log event type and its rejections, and each envelope going
//! in or coming out is checked against `schemas/v1/<Name>.json` with an independent JSON
//! Schema validator (the `jsonschema` crate, not the engine's own `schema` module, so a gap
//! in one cannot hide a gap in the other). The schemas are written from the Pydantic models
//! (`make schemas`); this is where the Rust side is held to them.
//!
//! Envelopes are handled as JSON only (no engine types), so the event enums may change
//! shape freely as long as the wire does not.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::contract::{contract, schemas_dir, short, Contract, PREFIX};
use common::*;
use flowai_engine::event::EventKind;
use flowai_engine::inputs;
use flowai_engine::OutputKind;
use serde_json::{json, Value};

/// A driver that checks every envelope on the way in and out and remembers what it saw.
struct Checked {
    d: Driver,
    contract: &'static Contract,
    next_id: u32,
    accepted_inputs: BTreeSet<String>,
    event_types: BTreeSet<String>,
    effects: BTreeSet<String>,
    refusals: BTreeSet<String>,
}

impl Checked {
    fn new(spec: Value, interpreter: Value) -> Checked {
        Checked {
            d: Driver::new(engine(spec, interpreter)),
            contract: contract(),
            next_id: 0,
            accepted_inputs: BTreeSet::new(),
            event_types: BTreeSet::new(),
            effects: BTreeSet::new(),
            refusals: BTreeSet::new(),
        }
    }

    /// Give the input the id and timestamp the driver would, so it is checked as sent.
    fn complete(&mut self, input: Input) -> Value {
        let mut value = input.0;
        if value["id"].is_null() {
            self.next_id += 1;
            value["id"] = json!(format!("in-{}", self.next_id));
        }
        if value["ts"].is_null() {
            value["ts"] = json!(self.d.clock);
        }
        value
    }

    /// Send an input the engine must accept: it validates, nothing is rejected, and every
    /// output validates.
    fn send(&mut self, input: Input) -> Vec<Out> {
        let value = self.complete(input);
        self.contract
            .assert_valid(&value, "an input the engine accepts");
        let outs = self.d.send(Input(value.clone()));
        let refused: Vec<&Value> = outs
            .iter()
            .filter(|o| o.kind != OutputKind::Event && o.kind != OutputKind::Effect)
            .map(|o| &o.envelope)
            .collect();
        assert!(refused.is_empty(), "{value} was refused: {refused:?}");
        self.accepted_inputs
            .insert(value["schema"].as_str().unwrap().to_owned());
        self.check_outputs(&outs);
        outs
    }

    /// Send an input the engine must refuse with `code`; the refusal validates.
    fn refuse(&mut self, input: Input, code: &str) {
        let value = self.complete(input);
        let outs = self.d.send(Input(value.clone()));
        assert_eq!(outs.len(), 1, "{value} should be refused alone: {outs:?}");
        let out = &outs[0];
        assert!(
            matches!(out.kind, OutputKind::Rejection | OutputKind::Duplicate),
            "{value} should be refused, got {:?}",
            out.kind
        );
        assert_eq!(out.payload()["error"]["code"], code, "{value}");
        self.contract.assert_valid(&out.envelope, "a rejection");
        self.refusals.insert(code.to_owned());
    }

    /// Fork `source` after event `at` into `new_thread` with a ForkThread envelope that is
    /// checked like any input.
    fn fork(&mut self, source: &str, at: u64, new_thread: &str) -> Vec<Out> {
        let input = Input::new(
            "flowai.v1.ForkThread",
            new_thread,
            json!({"source_thread_id": source, "at": at}),
        );
        let value = self.complete(input);
        self.contract
            .assert_valid(&value, "a ForkThread the engine accepts");
        let log = self.d.log(source);
        self.d
            .engine
            .fork(value.to_string().as_bytes(), &log)
            .expect("the fork is accepted");
        self.accepted_inputs
            .insert(value["schema"].as_str().unwrap().to_owned());
        let outs = self.d.drain();
        self.check_outputs(&outs);
        outs
    }

    fn check_outputs(&mut self, outs: &[Out]) {
        for out in outs {
            match out.kind {
                OutputKind::Event => {
                    let kind = out.payload()["type"].as_str().unwrap_or("<no type>");
                    self.contract.assert_valid(&out.envelope, "a run-log event");
                    self.event_types.insert(kind.to_owned());
                }
                OutputKind::Effect => {
                    self.contract.assert_valid(&out.envelope, "an effect");
                    let schema = out.envelope["schema"].as_str().unwrap_or("<no schema>");
                    self.effects.insert(schema.to_owned());
                }
                _ => {}
            }
        }
    }

    /// Fold what this one saw into `seen`.
    fn into_seen(self, seen: &mut Seen) {
        seen.inputs.extend(self.accepted_inputs);
        seen.event_types.extend(self.event_types);
        seen.effects.extend(self.effects);
        seen.refusals.extend(self.refusals);
    }
}

#[derive(Default)]
struct Seen {
    inputs: BTreeSet<String>,
    event_types: BTreeSet<String>,
    effects: BTreeSet<String>,
    /// The error codes of the refusals (rejections and duplicates) checked.
    refusals: BTreeSet<String>,
}

/// The envelope of the first `schema` effect in `outs`.
fn effect_of<'a>(outs: &'a [Out], schema: &str) -> &'a Value {
    outs.iter()
        .find(|o| o.kind == OutputKind::Effect && o.envelope["schema"] == schema)
        .map(|o| &o.envelope)
        .unwrap_or_else(|| panic!("no {schema} effect among {outs:?}"))
}

/// The id of the first `schema` effect: what its answer names.
fn effect_id(outs: &[Out], schema: &str) -> String {
    effect_of(outs, schema)["id"]
        .as_str()
        .expect("an effect has an id")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Scenarios: each drives one engine and records what it saw.

/// Scripted tools: an invocation, a tool's progress (on its own and inside its result), a
/// sub-agent, a cancelled run whose late result is refused, a resumed run, a bad script.
fn tools_and_sub_agents(seen: &mut Seen) {
    let mut c = Checked::new(golden_spec(), scripted());
    let add = script(&[("add", json!({"a": 2, "b": 3}))]);
    let outs = c.send(query("t", &add).agent("calculator"));
    let call = effect_id(&outs, "flowai.v1.ToolInvocation");
    c.send(Input::new("flowai.v1.ResumeRun", "t", json!({})));
    c.send(Input::new(
        "flowai.v1.ToolProgress",
        "t",
        json!({"invocation_id": call, "events": [
            {"type": "tool-progress", "message": "adding", "toolInvocationId": "scripted-tool-1"}
        ]}),
    ));
    let emitted = json!([
        {"type": "tool-progress", "message": "nearly", "toolInvocationId": "scripted-tool-1"},
        {"type": "custom", "name": "sum", "data": {"n": 5}, "toolInvocationId": "scripted-tool-1"},
    ]);
    let result = tool_result("t", &call, json!({"sum": 5})).id("result-1");
    c.send(result.clone().payload("events", emitted));
    // The same result again is a duplicate, answered (unlogged) like a rejection.
    c.refuse(result, "DUPLICATE_INPUT");

    // The router hands arithmetic to the calculator as a sub-agent.
    let inner = script(&[("add", json!({"a": 1, "b": 1}))]);
    let route = script(&[(
        "call_agent",
        json!({"agent": "calculator", "prompt": inner}),
    )]);
    let outs = c.send(query("sub", &route).agent("router"));
    let call = effect_id(&outs, "flowai.v1.ToolInvocation");
    c.send(tool_result("sub", &call, json!({"sum": 2})));

    // A run cancelled while its tool is out; the late result is refused.
    let outs = c.send(query("cancelled", &add).agent("calculator"));
    let call = effect_id(&outs, "flowai.v1.ToolInvocation");
    c.send(cancel_run("cancelled"));
    c.refuse(
        tool_result("cancelled", &call, json!({"sum": 5})),
        "DUPLICATE_INPUT",
    );

    // A script the interpreter cannot read ends its run with a logged error.
    c.send(query("bad-script", "{\"script\": 3}").agent("calculator"));
    c.into_seen(seen);
}

/// A live model: a request, a rate-limited failure retried at its deadline, an answer with
/// reasoning and text (and the run's cost summary).
fn live_model(seen: &mut Seen) {
    let mut c = Checked::new(golden_spec(), live());
    c.send(query("t", "How much is 2 + 3?").ts(T0));
    c.send(model_failure(
        "t",
        &request("t", 1, 1, 1),
        "rate_limited",
        Some(2_000),
    ));
    c.send(deadline_reached("t").ts(T0 + 2_000));
    let content = json!([
        {"type": "reasoning", "text": "Easy.", "signature": "sig"},
        {"type": "text", "text": "5"}
    ]);
    c.send(model_response("t", &request("t", 1, 1, 2), content, "stop"));
    c.into_seen(seen);
}

/// Plans and gates: a stored plan, its approval and execution step, a predicate rule asking
/// the runtime, a two-person gate's progress, a gate that expires, forks at a gate.
fn plans_and_approvals(seen: &mut Seen) {
    let mut c = Checked::new(quorum_spec(2), scripted());
    c.send(query("plan", &script(&[store_plan("p1")])).agent("planner"));
    let exec = script(&[("executePlan", json!({"planId": "p1"}))]);
    let outs = c.send(query("plan", &exec).agent("executor"));
    effect_of(&outs, "flowai.v1.ApprovalRequest");
    let gate = approval_id("plan", 2, 1);
    c.send(decision_by("plan", &gate, "approve", "alice"));
    let outs = c.send(decision_by("plan", &gate, "approve", "bob"));
    let step = effect_id(&outs, "flowai.v1.PlanStep");
    c.send(tool_result(
        "plan",
        &step,
        json!({"entitiesAffected": 2, "summary": "done"}),
    ));

    // A predicate rule: the engine asks, the runtime answers.
    let outs = c.send(query("peek", &script(&[("peek", json!({"n": 1}))])).agent("planner"));
    let check = effect_of(&outs, "flowai.v1.ApprovalCheck")["payload"]["check_id"]
        .as_str()
        .expect("a check id")
        .to_owned();
    let outs = c.send(approval_check_result("peek", &check, true));
    let gate_seq = outs
        .iter()
        .find(|o| o.payload()["type"] == "approval-required")
        .and_then(|o| o.envelope["seq"].as_u64())
        .expect("the predicate's answer gates the call");

    // A gate nobody decides expires at its deadline.
    let delete = script(&[("delete_rows", json!({"table": "orders"}))]);
    c.send(query("expires", &delete).agent("planner").ts(T0));
    c.d.clock = T0 + 120_000;
    c.send(deadline_reached("expires"));

    // A fork of the thread paused at the predicate gate, and a refused decision.
    c.fork("peek", gate_seq, "peek-fork");
    c.refuse(
        approval_decision("plan", "appr:nope", "approve"),
        "UNKNOWN_APPROVAL",
    );
    c.into_seen(seen);
}

/// Inputs the engine refuses, each answered by an envelope the contract describes.
fn rejections(seen: &mut Seen) {
    let mut c = Checked::new(golden_spec(), scripted());
    c.refuse(
        Input::new("flowai.v1.Nonsense", "t", json!({})),
        "INPUT_UNKNOWN_SCHEMA",
    );
    c.refuse(query("t", "hello").tenant("globex"), "TENANT_MISMATCH");
    c.refuse(
        Input::new("flowai.v1.Query", "t", json!({"prompt": 3})),
        "INPUT_MALFORMED",
    );
    c.refuse(
        tool_result("t", "acme/t/run-1/scripted-tool-1", json!(1)),
        "UNKNOWN_THREAD",
    );
    c.into_seen(seen);
}

fn every_scenario() -> Seen {
    let mut seen = Seen::default();
    tools_and_sub_agents(&mut seen);
    live_model(&mut seen);
    plans_and_approvals(&mut seen);
    rejections(&mut seen);
    seen
}

// ---------------------------------------------------------------------------------------------
// The checks

#[test]
fn schemas_every_run_log_event_type_the_engine_logs_validates() {
    // Every engine test checks what it drains (common::Driver::drain); here, that the schema
    // and the engine name the same event types, and that the scenarios below logged them.
    let known = Contract::event_types();
    let engine: BTreeSet<String> = EventKind::ALL
        .iter()
        .map(|kind| kind.type_name().to_owned())
        .collect();
    assert_eq!(
        known, engine,
        "RuntimeEvent.json's event types and the engine's (EventKind::type_name) differ"
    );
    let seen = every_scenario();
    let unknown: Vec<&String> = seen.event_types.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "RuntimeEvent.json does not know {unknown:?}"
    );
}

#[test]
fn schemas_every_kind_in_the_run_tables_is_a_named_kind() {
    for (kind_in_table, _) in flowai_engine::run::TRANSITIONS
        .iter()
        .chain(flowai_engine::run::LEGACY)
        .map(|(_, kind, to)| (*kind, *to))
    {
        assert!(
            EventKind::ALL.contains(&kind_in_table),
            "EventKind::ALL misses {kind_in_table:?}"
        );
    }
}

#[test]
fn schemas_every_effect_the_engine_sends_validates() {
    let seen = every_scenario();
    let effects = [
        inputs::TOOL_INVOCATION,
        inputs::PLAN_STEP,
        inputs::APPROVAL_REQUEST,
        inputs::APPROVAL_CHECK,
        inputs::MODEL_REQUEST,
    ];
    let expected: BTreeSet<String> = effects.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(seen.effects, expected, "the effects the scenarios produced");
}

#[test]
fn schemas_every_input_the_engine_accepts_validates() {
    let seen = every_scenario();
    let mut expected: BTreeSet<String> = inputs::INPUTS.iter().map(|s| (*s).to_owned()).collect();
    expected.insert(flowai_engine::fork::FORK_THREAD.to_owned());
    assert_eq!(
        seen.inputs, expected,
        "the scenarios send every input schema the engine takes"
    );
}

#[test]
fn schemas_every_refusal_is_an_unlogged_runtime_event_that_validates() {
    let seen = every_scenario();
    let codes = [
        "DUPLICATE_INPUT",
        "INPUT_MALFORMED",
        "INPUT_UNKNOWN_SCHEMA",
        "TENANT_MISMATCH",
        "UNKNOWN_APPROVAL",
        "UNKNOWN_THREAD",
    ];
    let expected: BTreeSet<String> = codes.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        seen.refusals, expected,
        "the refusals the scenarios checked"
    );
}

#[test]
fn schemas_every_schema_constant_of_the_engine_has_a_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = BTreeSet::new();
    let mut pending = vec![src];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("the engine's sources are readable") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                for line in text
                    .lines()
                    .filter(|l| l.trim_start().starts_with("pub const"))
                {
                    if let Some(at) = line.find(&format!("\"{PREFIX}")) {
                        let rest = &line[at + 1..];
                        let name = &rest[..rest.find('"').expect("a closed string")];
                        names.insert((name.to_owned(), path.clone()));
                    }
                }
            }
        }
    }
    let found: BTreeSet<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    for schema in inputs::INPUTS.iter().chain([
        &flowai_engine::fork::FORK_THREAD,
        &flowai_engine::event::RUNTIME_EVENT,
    ]) {
        assert!(found.contains(schema), "the scan missed `{schema}`");
    }
    let missing: Vec<String> = names
        .iter()
        .filter(|(name, _)| {
            !schemas_dir()
                .join(format!("{}.json", short(name)))
                .is_file()
        })
        .map(|(name, path)| format!("{name} ({})", path.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "schema names the engine uses without a schemas/v1 file: {missing:?}; add a model to \
         flowai_harness.messages and run `make schemas`"
    );
}

#[test]
fn schemas_the_checker_catches_an_envelope_that_breaks_its_schema() {
    // Without this, a validator that accepted everything would pass every test above.
    let contract = contract();
    let mut d = Driver::scripted();
    let add = script(&[("add", json!({"a": 2, "b": 3}))]);
    let outs = d.send(query("t", &add).agent("calculator"));
    let mut invocation = outs
        .iter()
        .find(|o| o.kind == OutputKind::Effect)
        .expect("an invocation")
        .envelope
        .clone();
    assert!(contract.violations(&invocation).is_empty());
    invocation["payload"]
        .as_object_mut()
        .unwrap()
        .remove("tool");
    assert!(!contract.violations(&invocation).is_empty());
    let mut event = outs[0].envelope.clone();
    event["seq"] = json!(0);
    assert!(!contract.violations(&event).is_empty(), "seq counts from 1");
    let unknown = json!({"schema": "flowai.v1.Nope"});
    assert_eq!(contract.violations(&unknown).len(), 1);
}
