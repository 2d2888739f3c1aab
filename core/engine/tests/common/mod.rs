//! Shared helpers for the engine's integration tests: the golden spec, input envelope
//! builders, and a `Driver` that feeds inputs and decodes what the engine outputs.
//!
//! Each test file compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

pub mod contract;

use std::path::PathBuf;

use flowai_engine::codec::{raw_payload_of, EntryRef};
use flowai_engine::event::Event;
use flowai_engine::run::{self, Phase};
use flowai_engine::{Engine, OutputKind};
use serde_json::{json, Value};

pub const TENANT: &str = "acme";
pub const T0: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Specs and engines

/// The runtime spec the golden logs were written with (tests/golden/scenarios.py).
pub fn golden_spec() -> Value {
    json!({
        "tenant": {"resource_id": TENANT, "version": "v1"},
        "agents": [
            {"name": "router", "role": "coordinator", "model": "claude-sonnet-4-6",
             "prompt": "Route arithmetic to the calculator.", "routes": ["calculator"]},
            {"name": "calculator", "role": "specialist", "model": "claude-haiku-4-5",
             "prompt": "You add numbers with the add tool.", "tools": ["add", "explode"],
             "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 50}}
        ],
        "tools": [
            {"name": "add", "description": "Add two integers.",
             "input_schema": {"type": "object", "required": ["a", "b"],
                              "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}},
            {"name": "explode", "description": "Always fails.",
             "input_schema": {"type": "object", "required": ["reason"],
                              "properties": {"reason": {"type": "string"}}}}
        ],
        "providers": ["anthropic"]
    })
}

pub fn engine(spec: Value, interpreter: Value) -> Engine {
    let config = json!({"spec": spec, "interpreter": interpreter});
    Engine::new(config.to_string().as_bytes()).expect("the test spec compiles")
}

pub fn scripted() -> Value {
    json!({"kind": "scripted"})
}

pub fn mock(response: &str) -> Value {
    json!({"kind": "mock", "response": response})
}

/// Model turns go out as `ModelRequest` effects and come back as `ModelResult` inputs.
pub fn live() -> Value {
    json!({"kind": "live"})
}

/// A scripted prompt: one model turn per call, then the last result as text.
pub fn script(calls: &[(&str, Value)]) -> String {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(tool, args)| json!({"tool": tool, "args": args}))
        .collect();
    json!({ "script": calls }).to_string()
}

// ---------------------------------------------------------------------------------------------
// Input envelopes (docs/wire.md); the driver fills `id` and `ts` when a test leaves them out

#[derive(Clone, Debug)]
pub struct Input(pub Value);

impl Input {
    pub fn new(schema: &str, thread: &str, payload: Value) -> Input {
        Input(json!({
            "schema": schema, "id": null, "tenant": TENANT, "thread_id": thread,
            "run_id": null, "causation_id": null, "ts": null, "payload": payload,
        }))
    }
    pub fn id(self, id: &str) -> Input {
        self.set("id", json!(id))
    }
    pub fn ts(self, ts: i64) -> Input {
        self.set("ts", json!(ts))
    }
    pub fn tenant(self, tenant: &str) -> Input {
        self.set("tenant", json!(tenant))
    }
    pub fn agent(mut self, agent: &str) -> Input {
        self.0["payload"]["agent"] = json!(agent);
        self
    }
    pub fn set(mut self, key: &str, value: Value) -> Input {
        self.0[key] = value;
        self
    }
    pub fn payload(mut self, key: &str, value: Value) -> Input {
        self.0["payload"][key] = value;
        self
    }
}

pub fn query(thread: &str, prompt: &str) -> Input {
    Input::new(
        "flowai.v1.Query",
        thread,
        json!({"prompt": prompt, "agent": null}),
    )
}

pub fn tool_result(thread: &str, invocation_id: &str, output: Value) -> Input {
    Input::new(
        "flowai.v1.ToolResult",
        thread,
        json!({"invocation_id": invocation_id, "output": output}),
    )
}

pub fn tool_error(thread: &str, invocation_id: &str, message: &str, code: &str) -> Input {
    Input::new(
        "flowai.v1.ToolResult",
        thread,
        json!({"invocation_id": invocation_id, "error": {"message": message, "code": code}}),
    )
}

/// The id of attempt `attempt` of model turn `turn` of run `run`.
pub fn request(thread: &str, run: u32, turn: u32, attempt: u32) -> String {
    format!("{TENANT}/{thread}/run-{run}/model-{turn}/{attempt}")
}

/// A provider's answer to `request_id` with `content` blocks.
pub fn model_response(thread: &str, request_id: &str, content: Value, stop: &str) -> Input {
    Input::new(
        "flowai.v1.ModelResult",
        thread,
        json!({"request_id": request_id, "response": {
            "content": content, "stop_reason": stop,
            "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                      "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 0},
            "provider": "anthropic", "model": "claude-sonnet-4-6-20260101",
            "latency_ms": 400, "ttft_ms": 120}}),
    )
}

/// A text-only answer.
pub fn model_text(thread: &str, request_id: &str, text: &str) -> Input {
    model_response(
        thread,
        request_id,
        json!([{"type": "text", "text": text}]),
        "stop",
    )
}

/// A failed model call of `kind`.
pub fn model_failure(
    thread: &str,
    request_id: &str,
    kind: &str,
    retry_after_ms: Option<i64>,
) -> Input {
    Input::new(
        "flowai.v1.ModelResult",
        thread,
        json!({"request_id": request_id, "failure": {
            "kind": kind, "message": format!("{kind} from the fake"),
            "retry_after_ms": retry_after_ms, "status": 429,
            "provider": "anthropic", "model": "claude-sonnet-4-6", "latency_ms": 30}}),
    )
}

pub fn cancel_run(thread: &str) -> Input {
    Input::new("flowai.v1.CancelRun", thread, json!({}))
}

pub fn resume_run(thread: &str) -> Input {
    Input::new("flowai.v1.ResumeRun", thread, json!({}))
}

/// The effect id (and ToolResult `invocation_id`) of a scripted call in a thread's run.
pub fn invocation(thread: &str, run: u32, call: u32) -> String {
    format!("{TENANT}/{thread}/run-{run}/scripted-tool-{call}")
}

// ---------------------------------------------------------------------------------------------
// Outputs

#[derive(Clone, Debug)]
pub struct Out {
    pub kind: OutputKind,
    pub thread_id: String,
    pub bytes: Vec<u8>,
    pub envelope: Value,
}

impl Out {
    pub fn payload(&self) -> &Value {
        &self.envelope["payload"]
    }

    /// `type`, or `type/state` for the two-phase tool events: `tool-invocation/call`.
    pub fn label(&self) -> String {
        label(self.payload())
    }
}

/// The text of every `text` event, in order.
pub fn texts(outs: &[Out]) -> Vec<String> {
    outs.events()
        .iter()
        .filter(|o| o.payload()["type"] == "text")
        .map(|o| o.payload()["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The only sub-agent `tool-agent` event in `state` (not the entry agent's wrapping pair).
pub fn sub_agent(outs: &[Out], state: &str) -> Value {
    let found: Vec<Value> = outs
        .events()
        .iter()
        .map(|o| o.payload().clone())
        .filter(|p| {
            p["type"] == "tool-agent" && p["state"] == state && p.get("targetAgent").is_some()
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one sub-agent tool-agent/{state}");
    found[0].clone()
}

pub fn label(payload: &Value) -> String {
    let kind = payload["type"].as_str().unwrap_or("?");
    match payload["state"].as_str() {
        Some(state) => format!("{kind}/{state}"),
        None => kind.to_owned(),
    }
}

pub trait Outs {
    fn of(&self, kind: OutputKind) -> Vec<&Out>;
    fn events(&self) -> Vec<&Out> {
        self.of(OutputKind::Event)
    }
    fn effects(&self) -> Vec<&Out> {
        self.of(OutputKind::Effect)
    }
    fn rejections(&self) -> Vec<&Out> {
        self.of(OutputKind::Rejection)
    }
    fn labels(&self) -> Vec<String> {
        self.events().iter().map(|o| o.label()).collect()
    }
    /// The payload of the only event with this label.
    fn one(&self, label: &str) -> &Value {
        let found: Vec<&Out> = self
            .events()
            .into_iter()
            .filter(|o| o.label() == label)
            .collect();
        assert_eq!(found.len(), 1, "expected one `{label}` event");
        found[0].payload()
    }
}

impl Outs for [Out] {
    fn of(&self, kind: OutputKind) -> Vec<&Out> {
        self.iter().filter(|o| o.kind == kind).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

/// Feeds inputs one batch at a time and keeps every logged line per thread, so tests can
/// compare a live thread with its replayed log.
pub struct Driver {
    pub engine: Engine,
    next_id: u32,
    pub clock: i64,
    /// Every run-log line the engine emitted, per thread, in order.
    pub logs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Driver {
    pub fn new(engine: Engine) -> Driver {
        Driver {
            engine,
            next_id: 0,
            clock: T0,
            logs: Vec::new(),
        }
    }

    pub fn scripted() -> Driver {
        Driver::new(engine(golden_spec(), scripted()))
    }

    pub fn mock(response: &str) -> Driver {
        Driver::new(engine(golden_spec(), mock(response)))
    }

    /// Send one input through `handle_batch` and drain what came out.
    pub fn send(&mut self, input: Input) -> Vec<Out> {
        let mut value = input.0;
        if let Some(envelope) = value.as_object_mut() {
            if envelope.get("id").is_none_or(Value::is_null) {
                self.next_id += 1;
                envelope.insert("id".into(), json!(format!("m-{}", self.next_id)));
            }
            if envelope.get("ts").is_none_or(Value::is_null) {
                envelope.insert("ts".into(), json!(self.clock));
            }
        }
        self.send_bytes(format!("[{value}]").as_bytes())
    }

    /// Send a raw batch (it must be a JSON array) and drain what came out.
    pub fn send_bytes(&mut self, batch: &[u8]) -> Vec<Out> {
        self.engine
            .handle_batch(batch)
            .expect("the batch is a JSON array");
        self.drain()
    }

    /// Fold one logged line with `Engine::apply`; a folded line joins the thread's log.
    pub fn apply(&mut self, line: &[u8]) -> Result<(), flowai_engine::EngineError> {
        self.engine.apply(line)?;
        let thread = serde_json::from_slice::<Value>(line).expect("an applied line is JSON")
            ["thread_id"]
            .as_str()
            .expect("an applied line names its thread")
            .to_owned();
        self.log_mut(&thread).push(line.to_vec());
        Ok(())
    }

    /// Fork `source` after its event `at` into `new_thread` (the source's log is the one this
    /// driver kept) and drain what came out.
    pub fn fork(
        &mut self,
        source: &str,
        at: u64,
        new_thread: &str,
    ) -> Result<Vec<Out>, flowai_engine::EngineError> {
        self.next_id += 1;
        let input = json!({
            "schema": "flowai.v1.ForkThread", "id": format!("m-{}", self.next_id),
            "tenant": TENANT, "thread_id": new_thread, "run_id": null, "causation_id": null,
            "ts": self.clock, "payload": {"source_thread_id": source, "at": at},
        });
        let log = self.log(source);
        self.engine.fork(input.to_string().as_bytes(), &log)?;
        Ok(self.drain())
    }

    pub fn drain(&mut self) -> Vec<Out> {
        let outs: Vec<Out> = self
            .engine
            .drain_outputs()
            .map(|o| Out {
                envelope: serde_json::from_slice(&o.bytes).expect("outputs are JSON"),
                kind: o.kind,
                thread_id: o.thread_id,
                bytes: o.bytes,
            })
            .collect();
        for out in &outs {
            contract::check_output(&out.envelope);
        }
        for out in outs.iter().filter(|o| o.kind == OutputKind::Event) {
            self.log_mut(&out.thread_id).push(out.bytes.clone());
        }
        outs
    }

    fn log_mut(&mut self, thread: &str) -> &mut Vec<Vec<u8>> {
        let at = match self.logs.iter().position(|(t, _)| t == thread) {
            Some(at) => at,
            None => {
                self.logs.push((thread.to_owned(), Vec::new()));
                self.logs.len() - 1
            }
        };
        &mut self.logs[at].1
    }

    /// The payloads logged for a thread so far.
    pub fn logs_of(&self, thread: &str) -> Vec<Value> {
        lines(&self.log(thread))
            .into_iter()
            .map(|line| serde_json::from_slice::<Value>(line).unwrap()["payload"].clone())
            .collect()
    }

    /// The thread's log as a newline-terminated file.
    pub fn log(&self, thread: &str) -> Vec<u8> {
        let lines = self
            .logs
            .iter()
            .find(|(t, _)| t == thread)
            .map(|(_, lines)| lines.as_slice())
            .unwrap_or_default();
        join_lines(lines)
    }

    /// The serialized snapshot of a thread, or `None` when the engine does not hold it.
    pub fn snapshot(&self, thread: &str) -> Option<Vec<u8>> {
        self.engine.thread(thread).map(snapshot_bytes)
    }

    pub fn snapshot_json(&self, thread: &str) -> Value {
        let bytes = self.snapshot(thread).expect("the engine holds the thread");
        serde_json::from_slice(&bytes).expect("snapshots are JSON")
    }

    /// Snapshots of every thread the driver has sent to or seen output for.
    pub fn all_snapshots(&self, threads: &[&str]) -> Vec<Option<Vec<u8>>> {
        threads.iter().map(|t| self.snapshot(t)).collect()
    }
}

pub fn snapshot_bytes(thread: &flowai_engine::Thread) -> Vec<u8> {
    serde_json::to_vec(&thread.snapshot()).expect("snapshots serialize")
}

pub fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Golden files

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// Every `tests/golden/acme/*.jsonl`, as (thread name, bytes), sorted by name.
pub fn golden_logs() -> Vec<(String, Vec<u8>)> {
    logs_in("acme")
}

/// The format 1 logs kept to prove old logs still replay (`tests/golden/v1/*.jsonl`).
pub fn golden_logs_v1() -> Vec<(String, Vec<u8>)> {
    logs_in("v1")
}

fn logs_in(folder: &str) -> Vec<(String, Vec<u8>)> {
    let dir = golden_dir().join(folder);
    let mut logs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a golden log"))
        })
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no golden logs under {}", dir.display());
    logs
}

/// A run-log line for `event` at `seq` in run-1 of `thread`, as the engine would write it.
pub fn entry(thread: &str, seq: u64, event: &Event) -> Vec<u8> {
    let header = flowai_engine::codec::Header {
        tenant: TENANT,
        thread_id: thread,
        run_id: Some("run-1"),
        causation_id: "log",
        ts: T0,
        seq,
    };
    flowai_engine::codec::encode_entry(&header, event)
}

pub fn raw(json: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(json.to_owned()).expect("test JSON")
}

pub fn golden_log(name: &str) -> Vec<u8> {
    std::fs::read(golden_dir().join("acme").join(format!("{name}.jsonl"))).expect("a golden log")
}

pub fn lines(log: &[u8]) -> Vec<&[u8]> {
    log.strip_suffix(b"\n")
        .unwrap_or(log)
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The run table, as the logged events walk it

/// Decode one run-log line the way replay does.
pub fn decode(line: &[u8]) -> Result<Event, flowai_engine::EngineError> {
    let entry = EntryRef::parse(line)?;
    let text = std::str::from_utf8(line).expect("parse checked UTF-8");
    entry.event(|| raw_payload_of(text))
}

/// Walk run-log lines per thread through `run::next`, calling `visit(from, kind)` for each.
pub fn walk_transitions<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    mut visit: impl FnMut(u32, Phase, flowai_engine::event::EventKind),
) {
    let mut phases: Vec<(String, Phase, u32)> = Vec::new();
    for line in lines {
        let event = decode(line).expect("a logged line decodes");
        let thread = serde_json::from_slice::<Value>(line).unwrap()["thread_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let at = match phases.iter().position(|(t, _, _)| *t == thread) {
            Some(at) => at,
            None => {
                phases.push((thread, Phase::Idle, 2));
                phases.len() - 1
            }
        };
        if let Event::RunStart { format, .. } = &event {
            phases[at].2 = *format;
        }
        let (from, format) = (phases[at].1, phases[at].2);
        let to = run::next(format, from, event.kind())
            .unwrap_or_else(|| panic!("{:?} from {from:?} is not in the run table", event.kind()));
        visit(format, from, event.kind());
        phases[at].1 = to;
    }
}

// ---------------------------------------------------------------------------------------------
// Plans and approvals

/// A planner/executor runtime with a typed plan (approval always, the default for plans), a
/// gated tool `delete_rows` (approval always, 60 s deadline), and a tool `peek` gated by a
/// predicate.
pub fn plans_spec() -> Value {
    json!({
        "tenant": {"resource_id": TENANT, "version": "v1"},
        "agents": [
            {"name": "planner", "role": "planner", "model": "claude-sonnet-4-6", "prompt": "Plan.",
             "tools": ["delete_rows", "peek"], "approval_timeout_ms": 60000},
            {"name": "executor", "role": "executor", "model": "claude-haiku-4-5", "prompt": "Run."}
        ],
        "tools": [
            {"name": "delete_rows", "input_schema": {"type": "object"}, "approval": "always"},
            {"name": "peek", "input_schema": {"type": "object"}, "approval": {"predicate": "tool:peek"}}
        ],
        "plans": [{
            "name": "reorder",
            "schema": {
                "type": "object",
                "required": ["actions"],
                "properties": {
                    "reason": {"type": "string"},
                    "actions": {"type": "array", "items": {"type": "object", "required": ["kind"],
                        "properties": {"kind": {"enum": ["reorder_products", "hold_inventory"]}}}}
                }
            }
        }],
        "providers": ["anthropic"]
    })
}

/// `plans_spec` with the two-person rule (`{"approvers": n}`) on `delete_rows` and on the
/// executor's plans.
pub fn quorum_spec(n: u32) -> Value {
    let mut spec = plans_spec();
    spec["tools"][0]["approval"] = json!({"approvers": n});
    spec["agents"][1]["approval"] = json!({"plans": {"approvers": n}});
    spec
}

/// A decision naming its approver.
pub fn decision_by(thread: &str, approval_id: &str, outcome: &str, approver: &str) -> Input {
    approval_decision(thread, approval_id, outcome).payload("approver", json!(approver))
}

pub fn plan_body() -> Value {
    json!({
        "reason": "low stock",
        "actions": [
            {"kind": "reorder_products", "products": {"kind": "product_set", "id": "ref_1"}, "qty": 5},
            {"kind": "hold_inventory", "sku": "A-1"}
        ]
    })
}

pub fn store_plan(plan_id: &str) -> (&'static str, Value) {
    (
        "storePlan",
        json!({"specName": "reorder", "planId": plan_id, "body": plan_body()}),
    )
}

pub fn approval_decision(thread: &str, approval_id: &str, outcome: &str) -> Input {
    Input::new(
        "flowai.v1.ApprovalDecision",
        thread,
        json!({"approval_id": approval_id, "outcome": outcome}),
    )
}

pub fn deadline_reached(thread: &str) -> Input {
    Input::new("flowai.v1.DeadlineReached", thread, json!({}))
}

pub fn approval_check_result(thread: &str, check_id: &str, required: bool) -> Input {
    Input::new(
        "flowai.v1.ApprovalCheckResult",
        thread,
        json!({"check_id": check_id, "required": required}),
    )
}

pub fn approval_id(thread: &str, run: u32, call: u32) -> String {
    format!("appr:{thread}/run-{run}/scripted-tool-{call}")
}
