//! The engine's driving API: `handle` an input, `poll_output` what was decided, `apply` a
//! logged event, `load` a whole log, `snapshot` a thread.
//!
//! Deciding is separate from folding: the decide loop (`advance`) picks the next event from the
//! spec, the interpreter and the thread's state, then hands it to `Thread::apply` exactly as a
//! replay would, so a live thread and a replayed one cannot differ.
//!
//! Imports every other engine module; nothing outside the crate but serde.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{
    encode_entry, raw_payload_of, EntryRef, Event, EventKind, FinishReason, Header, Usage,
};
use crate::interpreter::{estimate_usage, Decision, Interpreter, Turn};
use crate::run::Phase;
use crate::schema;
use crate::spec::{price, AgentSpec, Spec, CALL_AGENT};
use crate::thread::Thread;

pub const QUERY: &str = "flowai.v1.Query";
pub const TOOL_RESULT: &str = "flowai.v1.ToolResult";
pub const CANCEL_RUN: &str = "flowai.v1.CancelRun";
pub const TOOL_INVOCATION: &str = "flowai.v1.ToolInvocation";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// A run-log entry: append it to the thread's log, then show it.
    Event = 0,
    /// Work for the outside world (a tool invocation).
    Effect = 1,
    /// An unlogged `error` envelope answering a rejected input.
    Rejection = 2,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub kind: OutputKind,
    pub thread_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineConfig {
    spec: Box<RawValue>,
    interpreter: InterpreterConfig,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum InterpreterConfig {
    Mock { response: String },
    Scripted,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    schema: &'a str,
    id: String,
    tenant: String,
    thread_id: String,
    ts: i64,
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryPayload {
    prompt: String,
    #[serde(default)]
    agent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolResultPayload<'a> {
    invocation_id: String,
    #[serde(default)]
    tool_invocation_id: Option<String>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ToolErrorBody>,
    #[serde(borrow, default)]
    events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolErrorBody {
    message: String,
    #[serde(default = "tool_failed")]
    code: String,
}

fn tool_failed() -> String {
    "TOOL_FAILED".to_owned()
}

/// Who caused the events being decided, and when.
struct Cause<'a> {
    id: &'a str,
    ts: i64,
}

pub struct Engine {
    spec: Spec,
    interpreter: Interpreter,
    threads: HashMap<String, Thread>,
    outputs: VecDeque<Output>,
}

fn malformed(message: String) -> EngineError {
    EngineError::new(ErrorCode::InputMalformed, message)
}

impl Engine {
    /// Build an engine from `{"spec": <runtime spec>, "interpreter": {...}}`.
    pub fn new(config: &[u8]) -> Result<Engine> {
        let config: EngineConfig = serde_json::from_slice(config).map_err(|e| {
            EngineError::new(
                ErrorCode::SpecInvalid,
                format!("engine config is not valid: {e}"),
            )
        })?;
        let spec = Spec::compile(config.spec.get().as_bytes())?;
        let interpreter = match config.interpreter {
            InterpreterConfig::Mock { response } => Interpreter::Mock { response },
            InterpreterConfig::Scripted => Interpreter::Scripted,
        };
        Ok(Engine::with_spec(spec, interpreter))
    }

    pub fn with_spec(spec: Spec, interpreter: Interpreter) -> Engine {
        Engine {
            spec,
            interpreter,
            threads: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn thread(&self, id: &str) -> Option<&Thread> {
        self.threads.get(id)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn drain_outputs(&mut self) -> std::collections::vec_deque::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// Feed a JSON array of input envelopes. Each rejected input becomes a `Rejection` output;
    /// only a batch that is not a JSON array is an error.
    pub fn handle_batch(&mut self, batch: &[u8]) -> Result<()> {
        let inputs: Vec<&RawValue> = serde_json::from_slice(batch).map_err(|e| {
            malformed(format!(
                "an input batch must be a JSON array of envelopes: {e}"
            ))
        })?;
        for input in inputs {
            let bytes = input.get().as_bytes();
            if let Err(err) = self.handle(bytes) {
                self.reject(bytes, &err);
            }
        }
        Ok(())
    }

    /// Feed separate input envelopes (e.g. Kafka messages, each possibly malformed). Each
    /// rejected input becomes a `Rejection` output.
    pub fn handle_many<'a>(&mut self, inputs: impl IntoIterator<Item = &'a [u8]>) {
        for input in inputs {
            if let Err(err) = self.handle(input) {
                self.reject(input, &err);
            }
        }
    }

    /// Feed one input envelope. On error nothing changed and nothing was output.
    pub fn handle(&mut self, input: &[u8]) -> Result<()> {
        let envelope: Envelope<'_> = serde_json::from_slice(input).map_err(|e| {
            malformed(format!(
                "input is not a message envelope ({e}); send {{schema, id, tenant, thread_id, ts, payload}}"
            ))
        })?;
        if envelope.tenant != self.spec.tenant() {
            return Err(EngineError::new(
                ErrorCode::TenantMismatch,
                format!(
                    "input for tenant `{}` reached the runtime of tenant `{}`",
                    envelope.tenant,
                    self.spec.tenant()
                ),
            ));
        }
        if envelope.thread_id.is_empty() {
            return Err(malformed("input has an empty thread_id".to_owned()));
        }
        let cause = Cause {
            id: &envelope.id,
            ts: envelope.ts,
        };
        let start = self.outputs.len();
        let result = match envelope.schema {
            QUERY => self.on_query(&envelope, &cause),
            TOOL_RESULT => self.on_tool_result(&envelope, &cause),
            CANCEL_RUN => self.on_cancel_run(&envelope, &cause),
            other => Err(EngineError::new(
                ErrorCode::InputUnknownSchema,
                format!(
                    "unknown input schema `{other}`; the runtime takes {QUERY}, {TOOL_RESULT}, {CANCEL_RUN}"
                ),
            )),
        };
        debug_assert!(result.is_ok() || self.outputs.len() == start);
        result
    }

    fn reject(&mut self, input: &[u8], err: &EngineError) {
        #[derive(Deserialize, Default)]
        struct Partial {
            #[serde(default)]
            id: String,
            #[serde(default)]
            tenant: String,
            #[serde(default)]
            thread_id: String,
            #[serde(default)]
            ts: i64,
        }
        let partial: Partial = serde_json::from_slice(input).unwrap_or_default();
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(b"{\"schema\":\"flowai.v1.RuntimeEvent\",\"id\":");
        crate::event::write_json_str(&mut bytes, &format!("{}/rejected", partial.id));
        bytes.extend_from_slice(b",\"tenant\":");
        crate::event::write_json_str(&mut bytes, &partial.tenant);
        bytes.extend_from_slice(b",\"thread_id\":");
        crate::event::write_json_str(&mut bytes, &partial.thread_id);
        bytes.extend_from_slice(b",\"run_id\":null,\"causation_id\":");
        crate::event::write_json_str(&mut bytes, &partial.id);
        bytes.extend_from_slice(
            format!(",\"ts\":{},\"seq\":null,\"payload\":", partial.ts).as_bytes(),
        );
        Event::Error {
            code: err.code.as_str().to_owned(),
            message: err.message.clone(),
        }
        .write_payload(&mut bytes);
        bytes.push(b'}');
        self.outputs.push_back(Output {
            kind: OutputKind::Rejection,
            thread_id: partial.thread_id,
            bytes,
        });
    }

    fn on_query(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let query: QueryPayload = serde_json::from_str(envelope.payload.get()).map_err(|e| {
            malformed(format!(
                "a Query payload is {{\"prompt\": str, \"agent\": str | null}}: {e}"
            ))
        })?;
        let agent = match &query.agent {
            Some(name) => self.spec.agent(name).ok_or_else(|| {
                EngineError::new(
                    ErrorCode::UnknownAgent,
                    format!(
                        "no agent named `{name}`; this runtime has {}",
                        crate::spec::sorted_names(self.spec.agent_names())
                    ),
                )
            })?,
            None => self.spec.entry_agent().ok_or_else(|| {
                EngineError::new(
                    ErrorCode::UnknownAgent,
                    "the runtime has no coordinator and several agents; name the agent to run (run_specialist)".to_owned(),
                )
            })?,
        };
        let agent_name = agent.name.clone();
        let thread = self
            .threads
            .entry(envelope.thread_id.clone())
            .or_insert_with(|| Thread::new(envelope.thread_id.clone(), envelope.tenant.clone()));
        if let Some(run) = &thread.run {
            return Err(EngineError::new(
                ErrorCode::ThreadBusy,
                format!(
                    "thread `{}` is still running {}; wait for its finish, cancel it, or use another thread_id",
                    thread.id, run.id
                ),
            ));
        }
        let run_id = format!("run-{}", thread.runs + 1);
        let mut d = Decider {
            spec: &self.spec,
            interpreter: &self.interpreter,
            thread,
            outputs: &mut self.outputs,
            cause,
        };
        d.emit(Event::RunStart {
            run_id,
            agent: agent_name,
            prompt: query.prompt,
        });
        d.advance();
        Ok(())
    }

    fn on_tool_result(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let payload: ToolResultPayload<'_> =
            serde_json::from_str(envelope.payload.get()).map_err(|e| {
                malformed(format!(
                    "a ToolResult payload is {{\"invocation_id\", \"output\" | \"error\"}}: {e}"
                ))
            })?;
        let thread = self.threads.get_mut(&envelope.thread_id).ok_or_else(|| {
            EngineError::new(
                ErrorCode::UnknownThread,
                format!(
                    "tool result for unknown thread `{}`; its run log was never loaded here",
                    envelope.thread_id
                ),
            )
        })?;
        let run = thread.run.as_ref().ok_or_else(|| {
            EngineError::new(
                ErrorCode::NoActiveRun,
                format!(
                    "tool result `{}` for thread `{}`, which has no active run (finished or cancelled)",
                    payload.invocation_id, thread.id
                ),
            )
        })?;
        let pending = run
            .pending
            .as_ref()
            .filter(|p| {
                payload.invocation_id == invocation_id(&thread.tenant, &thread.id, &run.id, &p.id)
                    && payload.tool_invocation_id.as_ref().is_none_or(|t| t == &p.id)
            })
            .ok_or_else(|| {
                EngineError::new(
                    ErrorCode::UnknownInvocation,
                    format!(
                        "tool result `{}` does not answer the invocation thread `{}` is waiting for{}",
                        payload.invocation_id,
                        thread.id,
                        run.pending
                            .as_ref()
                            .map(|p| format!(" (`{}`)", p.id))
                            .unwrap_or_else(|| " (none)".to_owned())
                    ),
                )
            })?;
        let mut emitted = Vec::with_capacity(payload.events.len());
        for raw in &payload.events {
            emitted.push(tool_emitted(raw)?);
        }
        let (result, is_error) = match (&payload.error, payload.output) {
            (Some(error), _) => (error_result(&error.code, &error.message), true),
            (None, output) => {
                let output = output.map(|raw| raw.to_owned()).unwrap_or_else(json_null);
                let tool = self.spec.tool(&pending.tool);
                match tool.and_then(|t| t.output.as_ref()) {
                    Some(schema) => match check_value(schema, &output) {
                        Ok(()) => (output, false),
                        Err(problem) => (
                            error_result(
                                "TOOL_OUTPUT_INVALID",
                                &format!(
                                    "tool `{}` returned output that does not match its output schema: {problem}",
                                    pending.tool
                                ),
                            ),
                            true,
                        ),
                    },
                    None => (output, false),
                }
            }
        };
        let (agent, id, tool, args) = (
            pending.agent.clone(),
            pending.id.clone(),
            pending.tool.clone(),
            pending.args.clone(),
        );
        let mut d = Decider {
            spec: &self.spec,
            interpreter: &self.interpreter,
            thread,
            outputs: &mut self.outputs,
            cause,
        };
        for event in emitted {
            d.emit(event);
        }
        d.emit(Event::ToolResult {
            agent,
            id,
            tool,
            args,
            result,
            is_error,
        });
        d.advance();
        Ok(())
    }

    fn on_cancel_run(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let thread = self.threads.get_mut(&envelope.thread_id).ok_or_else(|| {
            EngineError::new(
                ErrorCode::UnknownThread,
                format!("cannot cancel unknown thread `{}`", envelope.thread_id),
            )
        })?;
        let usage = match &thread.run {
            Some(run) => run.usage,
            None => {
                return Err(EngineError::new(
                    ErrorCode::NoActiveRun,
                    format!("thread `{}` has no active run to cancel", thread.id),
                ))
            }
        };
        let mut d = Decider {
            spec: &self.spec,
            interpreter: &self.interpreter,
            thread,
            outputs: &mut self.outputs,
            cause,
        };
        d.emit(Event::Finish {
            reason: FinishReason::Cancelled,
            usage,
        });
        Ok(())
    }

    /// Fold one logged run-log entry (distributed replay: one line at a time).
    pub fn apply(&mut self, line: &[u8]) -> Result<()> {
        let line = std::str::from_utf8(line).map_err(|e| {
            EngineError::new(
                ErrorCode::LogCorrupted,
                format!("run-log entry is not UTF-8: {e}"),
            )
        })?;
        let entry = EntryRef::parse_str(line)?;
        let event = entry.event(|| raw_payload_of(line))?;
        let thread = match self.threads.get_mut(&*entry.thread_id) {
            Some(thread) => thread,
            None => {
                if entry.seq != 1 {
                    return Err(EngineError::new(
                        ErrorCode::ReplayDiverged,
                        format!(
                            "thread `{}` starts at seq {}; its log is missing its beginning",
                            entry.thread_id, entry.seq
                        ),
                    ));
                }
                self.threads
                    .entry(entry.thread_id.to_string())
                    .or_insert_with(|| {
                        Thread::new(entry.thread_id.to_string(), entry.tenant.to_string())
                    })
            }
        };
        thread.apply(entry.seq, entry.ts, event)
    }

    /// Fold a whole newline-separated log of threads this engine does not hold yet.
    /// All or nothing: on error no thread of the log is added.
    pub fn load(&mut self, log: &[u8]) -> Result<usize> {
        let replay = replay(log)?;
        for thread in &replay.threads {
            if self.threads.contains_key(&thread.id) {
                return Err(EngineError::new(
                    ErrorCode::ReplayDiverged,
                    format!("thread `{}` is already loaded", thread.id),
                ));
            }
        }
        let count = replay.threads.len();
        for thread in replay.threads {
            self.threads.insert(thread.id.clone(), thread);
        }
        Ok(count)
    }

    pub fn forget(&mut self, thread_id: &str) -> bool {
        self.threads.remove(thread_id).is_some()
    }
}

/// Threads rebuilt from a log, with the number of lines folded.
pub struct Replay {
    pub threads: Vec<Thread>,
    pub lines: usize,
}

/// Fold a newline-separated run log into fresh threads, without any spec: replay never decides,
/// it only folds what was logged. Errors carry the 1-based line.
pub fn replay(log: &[u8]) -> Result<Replay> {
    let mut threads: Vec<Thread> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut lines = 0;
    let text = std::str::from_utf8(log).map_err(|e| {
        let line = log[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        EngineError::new(
            ErrorCode::LogCorrupted,
            format!("not UTF-8 ({e}); the file was damaged"),
        )
        .at_line(line)
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Replay { threads, lines });
    }
    for (n, line) in body.split('\n').enumerate() {
        let at = |e: EngineError| e.at_line(n + 1);
        let entry = EntryRef::parse_str(line).map_err(at)?;
        let event = entry.event(|| raw_payload_of(line)).map_err(at)?;
        let slot = match index.get(&*entry.thread_id) {
            Some(&slot) => slot,
            None => {
                index.insert(entry.thread_id.to_string(), threads.len());
                threads.push(Thread::new(
                    entry.thread_id.to_string(),
                    entry.tenant.to_string(),
                ));
                threads.len() - 1
            }
        };
        let thread = &mut threads[slot];
        if thread.tenant != *entry.tenant {
            return Err(at(EngineError::new(
                ErrorCode::ReplayDiverged,
                format!(
                    "thread `{}` belongs to tenant `{}` but this entry says `{}`",
                    thread.id, thread.tenant, entry.tenant
                ),
            )));
        }
        thread.apply(entry.seq, entry.ts, event).map_err(at)?;
        lines = n + 1;
    }
    Ok(Replay { threads, lines })
}

/// The id of a tool invocation effect: unique per tenant, stable across replays.
pub fn invocation_id(
    tenant: &str,
    thread_id: &str,
    run_id: &str,
    tool_invocation_id: &str,
) -> String {
    format!("{tenant}/{thread_id}/{run_id}/{tool_invocation_id}")
}

fn json_null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

fn error_result(code: &str, message: &str) -> Box<RawValue> {
    let body = serde_json::json!({"error": {"message": message, "code": code}});
    RawValue::from_string(body.to_string()).expect("json! is JSON")
}

fn check_value(schema: &schema::Schema, raw: &RawValue) -> std::result::Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|e| format!("not JSON: {e}"))?;
    schema
        .validate(&value)
        .map_err(|violations| schema::describe(&violations))
}

fn tool_emitted(raw: &RawValue) -> Result<Event> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    let kind: Kind<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        malformed(format!(
            "a tool-emitted event must be an object with a `type`: {e}"
        ))
    })?;
    let kind = match kind.kind {
        "custom" => EventKind::Custom,
        "tool-progress" => EventKind::ToolProgress,
        other => {
            return Err(malformed(format!(
                "a tool may emit `custom` and `tool-progress` events, not `{other}`"
            )))
        }
    };
    Ok(Event::ToolEmitted {
        kind,
        payload: raw.to_owned(),
    })
}

/// The decide loop for one thread, borrowing what it needs from the engine.
struct Decider<'e, 'c> {
    spec: &'e Spec,
    interpreter: &'e Interpreter,
    thread: &'e mut Thread,
    outputs: &'e mut VecDeque<Output>,
    cause: &'e Cause<'c>,
}

impl Decider<'_, '_> {
    /// Log an event: fold it, then queue its encoded entry.
    fn emit(&mut self, event: Event) {
        let seq = self.thread.last_seq + 1;
        let run_id = match &event {
            Event::RunStart { run_id, .. } => Some(run_id.clone()),
            _ => self.thread.run_id().map(str::to_owned),
        };
        let bytes = encode_entry(
            &Header {
                tenant: &self.thread.tenant,
                thread_id: &self.thread.id,
                run_id: run_id.as_deref(),
                causation_id: self.cause.id,
                ts: self.cause.ts,
                seq,
            },
            &event,
        );
        if let Err(err) = self.thread.apply(seq, self.cause.ts, event) {
            unreachable!("the engine decided an event its own run table rejects: {err}");
        }
        self.outputs.push_back(Output {
            kind: OutputKind::Event,
            thread_id: self.thread.id.clone(),
            bytes,
        });
    }

    fn effect(&mut self, schema_name: &str, id: &str, causation: &str, payload: &[u8]) {
        let mut bytes = Vec::with_capacity(128 + payload.len());
        bytes.extend_from_slice(b"{\"schema\":");
        crate::event::write_json_str(&mut bytes, schema_name);
        bytes.extend_from_slice(b",\"id\":");
        crate::event::write_json_str(&mut bytes, id);
        bytes.extend_from_slice(b",\"tenant\":");
        crate::event::write_json_str(&mut bytes, &self.thread.tenant);
        bytes.extend_from_slice(b",\"thread_id\":");
        crate::event::write_json_str(&mut bytes, &self.thread.id);
        bytes.extend_from_slice(b",\"run_id\":");
        crate::event::write_json_str(&mut bytes, self.thread.run_id().unwrap_or_default());
        bytes.extend_from_slice(b",\"causation_id\":");
        crate::event::write_json_str(&mut bytes, causation);
        bytes.extend_from_slice(format!(",\"ts\":{},\"payload\":", self.cause.ts).as_bytes());
        bytes.extend_from_slice(payload);
        bytes.push(b'}');
        self.outputs.push_back(Output {
            kind: OutputKind::Effect,
            thread_id: self.thread.id.clone(),
            bytes,
        });
    }

    fn agent(&self, name: &str) -> &AgentSpec {
        self.spec
            .agent(name)
            .expect("frames only run agents of the spec")
    }

    /// Decide turns until the run waits for the outside world or ends.
    fn advance(&mut self) {
        loop {
            let Some(run) = self.thread.run.as_mut() else {
                return;
            };
            if run.phase != Phase::Running {
                return;
            }
            let depth = run.frames.len();
            let frame = run.frames.last_mut().expect("a running run has a frame");
            if let Some(answer) = frame.answer.clone() {
                if depth == 1 {
                    self.finish();
                } else {
                    self.return_to_parent(answer);
                }
                continue;
            }
            let agent = self
                .spec
                .agent(&frame.agent)
                .expect("frames only run agents of the spec");
            let max_turns = Spec::max_turns(agent);
            if frame.turns >= max_turns {
                let message = format!(
                    "agent `{}` used all {max_turns} turns without answering; raise its max_turns or simplify the task",
                    agent.name
                );
                self.emit(Event::Error {
                    code: "MAX_TURNS_EXCEEDED".to_owned(),
                    message,
                });
                return;
            }
            let decision = self.interpreter.decide(Turn {
                prompt: &frame.prompt,
                calls: frame.calls,
                last_result: frame.last_result.as_deref(),
                script: &mut frame.script,
            });
            let usage = estimate_usage(&frame.prompt, &decision);
            let step = frame.turns + 1;
            let call_number = run.calls + 1;
            let agent_name = agent.name.clone();
            self.emit(Event::StepStart {
                agent: agent_name.clone(),
                step,
                model: agent.model.clone(),
                usage,
            });
            match decision {
                Decision::Text(text) => self.emit(Event::Text {
                    agent: agent_name,
                    text,
                }),
                Decision::Fail { code, message } => {
                    self.emit(Event::Error {
                        code: code.to_owned(),
                        message,
                    });
                    return;
                }
                Decision::Call { tool, args } => {
                    let id = format!("scripted-tool-{call_number}");
                    if tool == CALL_AGENT {
                        self.call_agent(agent_name, id, &args);
                    } else if self.call_tool(agent_name, id, tool, args) {
                        return;
                    }
                }
            }
        }
    }

    /// Route to a sub-agent: a `tool-agent` call, then either the sub-agent's frame runs or an
    /// error result says why it could not.
    fn call_agent(&mut self, caller: String, id: String, args: &RawValue) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            agent: String,
            prompt: String,
        }
        let caller_spec = self.agent(&caller);
        let (target, prompt, problem) = match serde_json::from_str::<Args>(args.get()) {
            Err(e) => (
                String::new(),
                String::new(),
                Some((
                    "TOOL_ARGS_INVALID",
                    format!("call_agent takes {{\"agent\": name, \"prompt\": text}}: {e}"),
                )),
            ),
            Ok(Args { agent, prompt }) => {
                let problem = if !caller_spec.routes.contains(&agent) {
                    Some((
                        "ROUTE_NOT_ALLOWED",
                        format!(
                            "`{caller}` may not call `{agent}`; its routes are: {}",
                            caller_spec.routes.join(", ")
                        ),
                    ))
                } else {
                    None
                };
                (agent, prompt, problem)
            }
        };
        self.emit(Event::ToolAgentCall {
            agent: caller.clone(),
            id: id.clone(),
            target: target.clone(),
            prompt,
        });
        if let Some((code, message)) = problem {
            self.emit(Event::ToolAgentResult {
                agent: caller,
                id,
                target,
                result: error_result(code, &message),
                is_error: true,
            });
        }
    }

    /// Log a tool call; returns true when an invocation went out and the run now waits.
    fn call_tool(&mut self, agent: String, id: String, tool: String, args: Box<RawValue>) -> bool {
        let problem = self.check_call(&agent, &tool, &args);
        self.emit(Event::ToolCall {
            agent: agent.clone(),
            id: id.clone(),
            tool: tool.clone(),
            args: args.clone(),
        });
        if let Some((code, message)) = problem {
            self.emit(Event::ToolResult {
                agent,
                id,
                tool,
                args,
                result: error_result(code, &message),
                is_error: true,
            });
            return false;
        }
        let run_id = self.thread.run_id().unwrap_or_default().to_owned();
        let effect_id = invocation_id(&self.thread.tenant, &self.thread.id, &run_id, &id);
        let causation = format!(
            "{}/{}/{}",
            self.thread.tenant, self.thread.id, self.thread.last_seq
        );
        let mut payload = Vec::with_capacity(96 + args.get().len());
        payload.extend_from_slice(b"{\"tool\":");
        crate::event::write_json_str(&mut payload, &tool);
        payload.extend_from_slice(b",\"tool_invocation_id\":");
        crate::event::write_json_str(&mut payload, &id);
        payload.extend_from_slice(b",\"args\":");
        payload.extend_from_slice(args.get().as_bytes());
        payload.extend_from_slice(b",\"agent\":");
        crate::event::write_json_str(&mut payload, &agent);
        payload.push(b'}');
        self.effect(TOOL_INVOCATION, &effect_id, &causation, &payload);
        true
    }

    /// Why a call cannot run, as (code, message) for the model, or None.
    fn check_call(
        &self,
        agent: &str,
        tool: &str,
        args: &RawValue,
    ) -> Option<(&'static str, String)> {
        let agent_spec = self.agent(agent);
        if !agent_spec.tools.iter().any(|t| t == tool) {
            let available = if agent_spec.tools.is_empty() {
                "none".to_owned()
            } else {
                agent_spec.tools.join(", ")
            };
            return Some((
                "TOOL_NOT_AVAILABLE",
                format!("agent `{agent}` has no tool `{tool}`; its tools are: {available}"),
            ));
        }
        let schema = &self
            .spec
            .tool(tool)
            .expect("compiled spec: agent tools exist")
            .input;
        check_value(schema, args).err().map(|problem| {
            (
                "TOOL_ARGS_INVALID",
                format!("arguments for `{tool}` are invalid: {problem}"),
            )
        })
    }

    /// The running sub-agent answered: report it to its caller and pop its frame.
    fn return_to_parent(&mut self, answer: String) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let frame = run.frames.last().expect("a sub-agent frame");
        let parent = &run.frames[run.frames.len() - 2];
        let child = self.agent(&frame.agent);
        let data = serde_json::json!({
            "agent": child.name,
            "model": child.model,
            "provider": child.provider,
            "usage": frame.usage,
        });
        let (caller, id, target) = (
            parent.agent.clone(),
            frame
                .call_id
                .clone()
                .expect("a sub-agent frame has its call id"),
            frame.agent.clone(),
        );
        self.emit(Event::Data {
            kind: EventKind::DataToolAgent,
            data: RawValue::from_string(data.to_string()).expect("json! is JSON"),
        });
        let result = serde_json::to_string(&answer).expect("strings serialize");
        self.emit(Event::ToolAgentResult {
            agent: caller,
            id,
            target,
            result: RawValue::from_string(result).expect("a JSON string"),
            is_error: false,
        });
    }

    /// The root agent answered: summaries, then `finish`.
    fn finish(&mut self) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let total_ms = (self.cause.ts - run.started_ts).max(0);
        let latency = serde_json::json!({
            "totalMs": total_ms,
            "toolMs": run.tool_ms,
            "modelMs": (total_ms - run.tool_ms).max(0),
            "steps": run.steps,
        });
        let mut total = 0.0;
        let mut by_model = serde_json::Map::new();
        let mut unpriced = Vec::new();
        for (model, usage) in &run.by_model {
            let cost = price(model, usage.input_tokens, usage.output_tokens);
            match cost {
                Some(cost) => total += cost,
                None => unpriced.push(model.clone()),
            }
            by_model.insert(
                model.clone(),
                serde_json::json!({
                    "inputTokens": usage.input_tokens,
                    "outputTokens": usage.output_tokens,
                    "cost": cost.unwrap_or(0.0),
                }),
            );
        }
        let cost = serde_json::json!({
            "currency": "USD",
            "totalCost": total,
            "byModel": by_model,
            "unpriced": unpriced,
            "estimated": self.interpreter.estimates_usage(),
        });
        let usage: Usage = run.usage;
        self.emit(Event::Data {
            kind: EventKind::LatencySummary,
            data: RawValue::from_string(latency.to_string()).expect("json! is JSON"),
        });
        self.emit(Event::Data {
            kind: EventKind::CostSummary,
            data: RawValue::from_string(cost.to_string()).expect("json! is JSON"),
        });
        self.emit(Event::Finish {
            reason: FinishReason::Stop,
            usage,
        });
    }
}
