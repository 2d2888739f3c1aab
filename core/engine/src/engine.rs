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

use crate::approval::{self, Channel, Gate, Levels, Outcome, Rule};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{
    encode_entry, raw_payload_of, ApprovalKind, EntryRef, Event, EventKind, FinishReason, Header,
    Usage,
};
use crate::interpreter::{estimate_usage, Decision, Interpreter, Turn};
use crate::plan::{self as plans, PlanStatus};
use crate::run::Phase;
use crate::schema;
use crate::spec::{
    builtin_tools, price, AgentSpec, Spec, CALL_AGENT, EXECUTE_PLAN, GET_PLAN, STORE_PLAN,
};
use crate::thread::Thread;

pub const QUERY: &str = "flowai.v1.Query";
pub const TOOL_RESULT: &str = "flowai.v1.ToolResult";
pub const CANCEL_RUN: &str = "flowai.v1.CancelRun";
pub const APPROVAL_DECISION: &str = "flowai.v1.ApprovalDecision";
pub const DEADLINE_REACHED: &str = "flowai.v1.DeadlineReached";
pub const APPROVAL_CHECK_RESULT: &str = "flowai.v1.ApprovalCheckResult";
pub const RESUME_RUN: &str = "flowai.v1.ResumeRun";
pub const TOOL_INVOCATION: &str = "flowai.v1.ToolInvocation";
pub const PLAN_STEP: &str = "flowai.v1.PlanStep";
pub const APPROVAL_REQUEST: &str = "flowai.v1.ApprovalRequest";
pub const APPROVAL_CHECK: &str = "flowai.v1.ApprovalCheck";

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
            APPROVAL_DECISION => self.on_approval_decision(&envelope, &cause),
            DEADLINE_REACHED => self.on_deadline_reached(&envelope, &cause),
            APPROVAL_CHECK_RESULT => self.on_approval_check_result(&envelope, &cause),
            RESUME_RUN => self.on_resume_run(&envelope, &cause),
            other => Err(EngineError::new(
                ErrorCode::InputUnknownSchema,
                format!(
                    "unknown input schema `{other}`; the runtime takes {QUERY}, {TOOL_RESULT}, {CANCEL_RUN}, {APPROVAL_DECISION}, {DEADLINE_REACHED}, {APPROVAL_CHECK_RESULT}, {RESUME_RUN}"
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
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
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
        run.pending
            .as_ref()
            .filter(|p| {
                // A call still at its gate never went out: a result for it is forged or stale.
                p.gate == Gate::Clear
                    && payload.invocation_id
                        == invocation_id(&thread.tenant, &thread.id, &run.id, &p.id)
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
        let outcome = match (payload.error, payload.output) {
            (Some(error), _) => Err((error.code, error.message)),
            (None, output) => Ok(output.map(one_line).unwrap_or_else(json_null)),
        };
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
        for event in emitted {
            d.emit(event);
        }
        d.finish_call(outcome);
        d.advance();
        Ok(())
    }

    fn on_approval_decision(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Payload {
            approval_id: String,
            outcome: String,
            #[serde(default)]
            feedback: Option<String>,
            #[serde(default)]
            partial: Option<Box<RawValue>>,
            #[serde(default)]
            approver: Option<String>,
        }
        let payload: Payload = serde_json::from_str(envelope.payload.get()).map_err(|e| {
            malformed(format!(
                "an ApprovalDecision payload is {{\"approval_id\", \"outcome\", \"feedback\"?, \"partial\"?, \"approver\"?}}: {e}"
            ))
        })?;
        let outcome = Outcome::parse(&payload.outcome).ok_or_else(|| {
            malformed(format!(
                "`{}` is not an approval outcome; use approve, reject or revise",
                payload.outcome
            ))
        })?;
        let thread = self
            .threads
            .get_mut(&envelope.thread_id)
            .ok_or_else(|| unknown_approval(&payload.approval_id))?;
        waiting_for(thread, &payload.approval_id)?;
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
        d.decide(
            payload.approval_id,
            outcome,
            payload.feedback,
            payload.partial.filter(|p| p.get() != "null"),
            payload.approver,
            None,
        );
        d.advance();
        Ok(())
    }

    /// Time has come: every approval of the thread whose deadline passed resolves as rejected.
    /// Early or repeated deadlines change nothing.
    fn on_deadline_reached(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let Some(thread) = self.threads.get_mut(&envelope.thread_id) else {
            return Ok(());
        };
        let Some(Gate::Waiting {
            approval_id,
            expires_at: Some(expires_at),
        }) = thread.pending().map(|p| p.gate.clone())
        else {
            return Ok(());
        };
        if cause.ts < expires_at {
            return Ok(());
        }
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
        d.decide(
            approval_id,
            Outcome::Reject,
            Some("no decision before the approval deadline".to_owned()),
            None,
            None,
            Some("timeout".to_owned()),
        );
        d.advance();
        Ok(())
    }

    fn on_approval_check_result(
        &mut self,
        envelope: &Envelope<'_>,
        cause: &Cause<'_>,
    ) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Payload {
            check_id: String,
            required: bool,
        }
        let payload: Payload = serde_json::from_str(envelope.payload.get()).map_err(|e| {
            malformed(format!(
                "an ApprovalCheckResult payload is {{\"check_id\", \"required\": bool}}: {e}"
            ))
        })?;
        let thread = self.threads.get_mut(&envelope.thread_id).ok_or_else(|| {
            EngineError::new(
                ErrorCode::UnknownThread,
                format!("approval check for unknown thread `{}`", envelope.thread_id),
            )
        })?;
        let expected = thread
            .pending()
            .filter(|p| p.gate == Gate::Clear && !p.approved)
            .map(|p| {
                check_id(
                    &thread.tenant,
                    &thread.id,
                    thread.run_id().unwrap_or_default(),
                    &p.id,
                )
            });
        if expected.as_deref() != Some(payload.check_id.as_str()) {
            return Err(EngineError::new(
                ErrorCode::UnknownInvocation,
                format!(
                    "approval check `{}` is not outstanding in thread `{}`",
                    payload.check_id, thread.id
                ),
            ));
        }
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
        if payload.required {
            d.request_approval();
        } else {
            d.cleared();
        }
        d.advance();
        Ok(())
    }

    /// Re-issue the effects a thread's outstanding call still needs (after a restart: the
    /// log says what is outstanding; effects are idempotent by id). Logs nothing.
    fn on_resume_run(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let thread = self.threads.get_mut(&envelope.thread_id).ok_or_else(|| {
            EngineError::new(
                ErrorCode::UnknownThread,
                format!("cannot resume unknown thread `{}`", envelope.thread_id),
            )
        })?;
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
        d.reissue();
        Ok(())
    }

    /// The earliest approval deadline over every thread held, as (thread id, ms).
    pub fn next_deadline(&self) -> Option<(&str, i64)> {
        self.threads
            .values()
            .filter_map(|t| t.deadline().map(|at| (t.id.as_str(), at)))
            .min_by_key(|(_, at)| *at)
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
        let mut d = Decider::new(
            &self.spec,
            &self.interpreter,
            thread,
            &mut self.outputs,
            cause,
        );
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
        match self.threads.get_mut(&*entry.thread_id) {
            Some(thread) => {
                check_tenant(thread, &entry.tenant)?;
                thread.apply(entry.seq, entry.ts, event)
            }
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
                // Held only once its first event folded: a rejected line adds no thread.
                let mut thread = Thread::new(entry.thread_id.to_string(), entry.tenant.to_string());
                thread.apply(entry.seq, entry.ts, event)?;
                self.threads.insert(thread.id.clone(), thread);
                Ok(())
            }
        }
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
        check_tenant(thread, &entry.tenant).map_err(at)?;
        thread.apply(entry.seq, entry.ts, event).map_err(at)?;
        lines = n + 1;
    }
    Ok(Replay { threads, lines })
}

fn check_tenant(thread: &Thread, tenant: &str) -> Result<()> {
    if thread.tenant == tenant {
        return Ok(());
    }
    Err(EngineError::new(
        ErrorCode::ReplayDiverged,
        format!(
            "thread `{}` belongs to tenant `{}` but this entry says `{tenant}`",
            thread.id, thread.tenant
        ),
    ))
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

pub fn check_id(tenant: &str, thread_id: &str, run_id: &str, tool_invocation_id: &str) -> String {
    format!(
        "{}/check",
        invocation_id(tenant, thread_id, run_id, tool_invocation_id)
    )
}

fn unknown_approval(approval_id: &str) -> EngineError {
    EngineError::new(
        ErrorCode::UnknownApproval,
        format!(
            "no approval `{approval_id}` is waiting here; check the id (approvals are per tenant)"
        ),
    )
}

/// Check that `approval_id` is the approval `thread` waits for.
fn waiting_for(thread: &Thread, approval_id: &str) -> Result<()> {
    if let Some(Gate::Waiting {
        approval_id: id, ..
    }) = thread.pending().map(|p| &p.gate)
    {
        if id == approval_id {
            return Ok(());
        }
    }
    if thread.resolved_approvals.contains(approval_id) {
        return Err(EngineError::new(
            ErrorCode::ApprovalAlreadyResolved,
            format!("approval `{approval_id}` was already decided; the first decision stands"),
        ));
    }
    Err(unknown_approval(approval_id))
}

fn raw(value: &serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a serialized Value is JSON")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanArgs {
    plan_id: String,
    #[serde(default)]
    spec_name: Option<String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
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
    // Replay decodes every payload field the run log knows; one it would misread (a string
    // `step`, say) would make the log unreplayable, so refuse it while the input can be.
    serde_json::from_str::<crate::event::PayloadRef<'_>>(raw.get()).map_err(|e| {
        malformed(format!(
            "a tool-emitted event reuses a run-log field with another type ({e}); put tool data under `data`"
        ))
    })?;
    Ok(Event::ToolEmitted {
        kind,
        payload: one_line(raw),
    })
}

/// A raw value from an input, fit for a run-log line. JSON strings cannot hold a newline, so
/// every newline is insignificant whitespace, and left in it would split the line.
fn one_line(raw: &RawValue) -> Box<RawValue> {
    let text = raw.get();
    if !text.contains('\n') {
        return raw.to_owned();
    }
    RawValue::from_string(text.replace('\n', " ")).expect("whitespace for whitespace is JSON")
}

/// The decide loop for one thread, borrowing what it needs from the engine.
struct Decider<'e, 'c> {
    spec: &'e Spec,
    interpreter: &'e Interpreter,
    thread: &'e mut Thread,
    outputs: &'e mut VecDeque<Output>,
    cause: &'e Cause<'c>,
}

impl<'e, 'c> Decider<'e, 'c> {
    fn new(
        spec: &'e Spec,
        interpreter: &'e Interpreter,
        thread: &'e mut Thread,
        outputs: &'e mut VecDeque<Output>,
        cause: &'e Cause<'c>,
    ) -> Self {
        Decider {
            spec,
            interpreter,
            thread,
            outputs,
            cause,
        }
    }

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
            if self.spec.agent(&frame.agent).is_none() {
                // Only a log written under another spec gets here (replay does not check agents).
                let message = format!(
                    "this run's agent `{}` is not in the runtime spec; the log was written by another spec version",
                    frame.agent
                );
                self.emit(Event::Error {
                    code: ErrorCode::UnknownAgent.as_str().to_owned(),
                    message,
                });
                return;
            }
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

    /// Log a tool call; returns true when the run now waits (a tool, a check or a human).
    fn call_tool(&mut self, agent: String, id: String, tool: String, args: Box<RawValue>) -> bool {
        let problem = self.check_call(&agent, &tool, &args);
        self.emit(Event::ToolCall {
            agent,
            id,
            tool: tool.clone(),
            args,
        });
        if let Some((code, message)) = problem {
            self.answer(error_result(code, &message), true);
            return false;
        }
        match tool.as_str() {
            GET_PLAN => {
                self.get_plan();
                false
            }
            STORE_PLAN => self.store_plan(),
            EXECUTE_PLAN => self.execute_plan(),
            _ => {
                self.gate(Channel::Tools);
                true
            }
        }
    }

    /// Why a call cannot run, as (code, message) for the model, or None.
    fn check_call(
        &self,
        agent: &str,
        tool: &str,
        args: &RawValue,
    ) -> Option<(&'static str, String)> {
        let agent_spec = self.agent(agent);
        let builtins = builtin_tools(agent_spec.role);
        let schema = if builtins.contains(&tool) {
            self.spec
                .builtin_input(tool)
                .expect("every built-in has a schema")
        } else if agent_spec.tools.iter().any(|t| t == tool) {
            &self
                .spec
                .tool(tool)
                .expect("compiled spec: agent tools exist")
                .input
        } else if self.spec.builtin_input(tool).is_some() {
            return Some((
                "TOOL_NOT_ALLOWED_FOR_ROLE",
                format!(
                    "`{tool}` is not available to a {:?} agent (`{agent}`); its built-in tools are: {}",
                    agent_spec.role,
                    builtins.join(", ")
                ),
            ));
        } else {
            let mut available: Vec<&str> = agent_spec.tools.iter().map(String::as_str).collect();
            available.extend(builtins);
            return Some((
                "TOOL_NOT_AVAILABLE",
                format!(
                    "agent `{agent}` has no tool `{tool}`; its tools are: {}",
                    available.join(", ")
                ),
            ));
        };
        check_value(schema, args).err().map(|problem| {
            (
                "TOOL_ARGS_INVALID",
                format!("arguments for `{tool}` are invalid: {problem}"),
            )
        })
    }

    fn pending(&self) -> &crate::thread::Pending {
        self.thread.pending().expect("a call is outstanding")
    }

    fn plan_args(&self) -> PlanArgs {
        serde_json::from_str(self.pending().args.get()).expect("validated against its schema")
    }

    /// Answer the outstanding call with `result` (a tool-invocation result event).
    fn answer(&mut self, result: Box<RawValue>, is_error: bool) {
        let pending = self.pending();
        let (agent, id, tool, args) = (
            pending.agent.clone(),
            pending.id.clone(),
            pending.tool.clone(),
            pending.args.clone(),
        );
        self.emit(Event::ToolResult {
            agent,
            id,
            tool,
            args,
            result,
            is_error,
        });
    }

    fn answer_error(&mut self, err: EngineError) {
        self.answer(error_result(err.code.as_str(), &err.message), true);
    }

    fn set_plan_status(&mut self, plan_id: &str, to: PlanStatus) {
        let from = self.thread.plans.get(plan_id).and_then(|p| p.status);
        self.emit(Event::PlanStatusChange {
            plan_id: plan_id.to_owned(),
            from,
            to,
        });
    }

    fn plan_json(&self, plan_id: &str) -> Option<serde_json::Value> {
        let plan = self.thread.plans.get(plan_id)?;
        let actions: serde_json::Value = serde_json::from_str(plan.actions.get()).ok()?;
        let context: serde_json::Value = serde_json::from_str(plan.context.get()).ok()?;
        Some(serde_json::json!({
            "planId": plan.id,
            "specName": plan.spec_name,
            "status": plan.status.map(PlanStatus::as_str),
            "actions": actions,
            "context": context,
        }))
    }

    fn get_plan(&mut self) {
        let args = self.plan_args();
        match self.plan_json(&args.plan_id) {
            Some(plan) => self.answer(raw(&plan), false),
            None => self.answer(
                error_result(
                    "PLAN_NOT_FOUND",
                    &format!(
                        "no plan `{}` in this thread; store it with storePlan first",
                        args.plan_id
                    ),
                ),
                true,
            ),
        }
    }

    /// Validate and store a plan as a draft, then put it through the plans gate.
    fn store_plan(&mut self) -> bool {
        let args = self.plan_args();
        let spec_name = args.spec_name.unwrap_or_default();
        let body = args.body.unwrap_or_default();
        let Some(kind) = self.spec.plan_kind(&spec_name) else {
            let known = self.spec.plan_names().join(", ");
            self.answer(
                error_result(
                    "PLAN_UNKNOWN_SPEC",
                    &format!("no plan spec `{spec_name}`; this runtime's plans are: {known}"),
                ),
                true,
            );
            return false;
        };
        if let Err(violations) = kind.schema.validate(&body) {
            let message = format!(
                "plan `{}` does not match plan spec `{spec_name}`: {}",
                args.plan_id,
                schema::describe(&violations)
            );
            self.answer(error_result("PLAN_INVALID", &message), true);
            return false;
        }
        let current = self.thread.plans.get(&args.plan_id).and_then(|p| p.status);
        if let Some(status) = current.filter(|s| *s != PlanStatus::Draft) {
            self.answer_error(
                plans::check(&args.plan_id, Some(status), PlanStatus::Draft)
                    .expect_err("not a draft"),
            );
            return false;
        }
        let (actions, context) = plans::normalize(&body, &kind.spec.discriminator);
        self.emit(Event::DataPlan {
            plan_id: args.plan_id.clone(),
            spec_name,
            actions: raw(&actions),
            context: raw(&context),
        });
        if current.is_none() {
            self.set_plan_status(&args.plan_id, PlanStatus::Draft);
        }
        self.gate(Channel::Plans);
        // Waits unless the gate let the plan through at once.
        self.thread.pending().is_some()
    }

    fn execute_plan(&mut self) -> bool {
        let args = self.plan_args();
        let status = match self.thread.plans.get(&args.plan_id) {
            Some(plan) => plan.status,
            None => {
                self.answer(
                    error_result(
                        "PLAN_NOT_FOUND",
                        &format!("no plan `{}` in this thread", args.plan_id),
                    ),
                    true,
                );
                return false;
            }
        };
        if let Err(err) = plans::check(&args.plan_id, status, PlanStatus::Executing) {
            self.answer_error(err);
            return false;
        }
        self.set_plan_status(&args.plan_id, PlanStatus::Executing);
        self.invoke();
        true
    }

    /// The rule for the outstanding call on `channel`.
    fn rule(&self, channel: Channel) -> Rule {
        let pending = self.pending();
        let agent = self.agent(&pending.agent);
        let tool_rule = self
            .spec
            .tool(&pending.tool)
            .and_then(|t| t.spec.approval.0.as_ref());
        approval::resolve(
            channel,
            &Levels {
                approvals: &self.spec.doc.approvals,
                agent: &agent.name,
                agent_patch: &agent.approval,
                tool_rule,
                agent_tool_rule: agent.tool_approvals.get(&pending.tool),
                tool: Some(&pending.tool),
            },
        )
    }

    fn channel(&self) -> Channel {
        if self.pending().tool == STORE_PLAN {
            Channel::Plans
        } else {
            Channel::Tools
        }
    }

    /// Put the outstanding call through its gate.
    fn gate(&mut self, channel: Channel) {
        match self.rule(channel) {
            Rule::Never => self.cleared(),
            Rule::Always => self.request_approval(),
            Rule::Predicate(predicate) => self.check(&predicate),
        }
    }

    /// The gate let the call through: a tool goes out; a plan is approved.
    fn cleared(&mut self) {
        if self.pending().tool == STORE_PLAN {
            let plan_id = self.plan_args().plan_id;
            self.set_plan_status(&plan_id, PlanStatus::Approved);
            let result = serde_json::json!({"planId": plan_id, "status": "approved"});
            self.answer(raw(&result), false);
        } else {
            self.invoke();
        }
    }

    /// Ask a human: `approval-required`, and the request for approval services.
    fn request_approval(&mut self) {
        let pending = self.pending();
        let run_id = self.thread.run_id().unwrap_or_default().to_owned();
        let id = approval::approval_id(&self.thread.id, &run_id, &pending.id);
        let correlation_id = pending.id.clone();
        let timeout = self.spec.approval_timeout_ms(self.agent(&pending.agent));
        let expires_at = timeout.map(|ms| self.cause.ts.saturating_add(ms as i64));
        let (kind, target, payload) = if pending.tool == STORE_PLAN {
            let plan_id = self.plan_args().plan_id;
            self.set_plan_status(&plan_id, PlanStatus::PendingApproval);
            let plan = self.plan_json(&plan_id).expect("just stored");
            (ApprovalKind::Plan, plan_id, raw(&plan))
        } else {
            (
                ApprovalKind::Tool,
                pending.tool.clone(),
                pending.args.clone(),
            )
        };
        let event = Event::ApprovalRequired {
            id: id.clone(),
            kind,
            target,
            payload,
            resource_id: self.thread.tenant.clone(),
            thread_id: self.thread.id.clone(),
            correlation_id,
            expires_at,
        };
        let mut request = Vec::new();
        event.write_payload(&mut request);
        self.emit(event);
        let causation = self.last_event_id();
        self.effect(APPROVAL_REQUEST, &id, &causation, &request);
    }

    /// Ask the runtime to evaluate a dynamic rule.
    fn check(&mut self, predicate: &str) {
        let pending = self.pending();
        let run_id = self.thread.run_id().unwrap_or_default();
        let id = check_id(&self.thread.tenant, &self.thread.id, run_id, &pending.id);
        let payload = serde_json::json!({
            "check_id": id,
            "predicate": predicate,
            "tool": pending.tool,
            "agent": pending.agent,
            "args": serde_json::from_str::<serde_json::Value>(pending.args.get()).unwrap_or_default(),
        });
        let causation = self.last_event_id();
        self.effect(
            APPROVAL_CHECK,
            &id,
            &causation,
            payload.to_string().as_bytes(),
        );
    }

    /// A decision on the waiting approval (a human's, or the deadline's).
    fn decide(
        &mut self,
        id: String,
        outcome: Outcome,
        feedback: Option<String>,
        partial: Option<Box<RawValue>>,
        approver: Option<String>,
        reason: Option<String>,
    ) {
        self.emit(Event::ApprovalDecision {
            id,
            outcome,
            partial: partial.clone(),
            feedback: feedback.clone(),
            approver: approver.clone(),
            reason,
        });
        let is_plan = self.pending().tool == STORE_PLAN;
        let partial: serde_json::Value = partial
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(serde_json::Value::Null);
        match (outcome, is_plan) {
            (Outcome::Approve, _) => self.cleared(),
            (Outcome::Reject, false) => {
                let message = feedback.unwrap_or_else(|| "the call was rejected".to_owned());
                self.answer(error_result("APPROVAL_REJECTED", &message), true);
            }
            (Outcome::Revise, false) => {
                let result = serde_json::json!({
                    "should_revise": true, "feedback": feedback, "partial": partial,
                });
                self.answer(raw(&result), false);
            }
            (outcome, true) => {
                let plan_id = self.plan_args().plan_id;
                self.set_plan_status(&plan_id, PlanStatus::Draft);
                if outcome == Outcome::Reject {
                    let message = format!(
                        "plan `{plan_id}` was rejected: {}",
                        feedback.as_deref().unwrap_or("no feedback given")
                    );
                    self.answer(error_result("PLAN_REJECTED", &message), true);
                } else {
                    let result = serde_json::json!({
                        "planId": plan_id, "status": "draft", "should_revise": true,
                        "feedback": feedback, "partial": partial,
                    });
                    self.answer(raw(&result), false);
                }
            }
        }
    }

    /// A tool or dispatcher answered the outstanding call.
    fn finish_call(&mut self, outcome: std::result::Result<Box<RawValue>, (String, String)>) {
        let tool = self.pending().tool.clone();
        if tool == EXECUTE_PLAN {
            let plan_id = self.plan_args().plan_id;
            let output = outcome.and_then(|output| {
                check_value(self.spec.dispatch_output(), &output)
                    .map(|()| output)
                    .map_err(|problem| {
                        (
                            "PLAN_FAILED".to_owned(),
                            format!(
                                "the action dispatcher must return None or {{entitiesAffected: int >= 0, summary?: str, details?: any}}: {problem}"
                            ),
                        )
                    })
            });
            match output {
                Ok(output) => {
                    self.set_plan_status(&plan_id, PlanStatus::Executed);
                    let output: serde_json::Value =
                        serde_json::from_str(output.get()).unwrap_or_default();
                    let result = serde_json::json!({
                        "planId": plan_id, "status": "executed", "result": output,
                    });
                    self.answer(raw(&result), false);
                }
                Err((code, message)) => {
                    self.set_plan_status(&plan_id, PlanStatus::Failed);
                    let message = format!("plan `{plan_id}` failed ({code}): {message}");
                    self.answer(error_result("PLAN_FAILED", &message), true);
                }
            }
            return;
        }
        let (result, is_error) = match outcome {
            Err((code, message)) => (error_result(&code, &message), true),
            Ok(output) => match self.spec.tool(&tool).and_then(|t| t.output.as_ref()) {
                Some(schema) => match check_value(schema, &output) {
                    Ok(()) => (output, false),
                    Err(problem) => (
                        error_result(
                            "TOOL_OUTPUT_INVALID",
                            &format!(
                                "tool `{tool}` returned output that does not match its output schema: {problem}"
                            ),
                        ),
                        true,
                    ),
                },
                None => (output, false),
            },
        };
        self.answer(result, is_error);
    }

    fn last_event_id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.thread.tenant, self.thread.id, self.thread.last_seq
        )
    }

    /// Send the outstanding call out: a plan step for executePlan, else a tool invocation.
    fn invoke(&mut self) {
        let pending = self.pending();
        let run_id = self.thread.run_id().unwrap_or_default().to_owned();
        let effect_id = invocation_id(&self.thread.tenant, &self.thread.id, &run_id, &pending.id);
        let causation = self.last_event_id();
        if pending.tool == EXECUTE_PLAN {
            let plan_id = self.plan_args().plan_id;
            let plan = self
                .thread
                .plans
                .get(&plan_id)
                .expect("checked: the plan exists");
            let actions: serde_json::Value =
                serde_json::from_str(plan.actions.get()).unwrap_or_default();
            let mut references = Vec::new();
            plans::find_handles(&actions, &mut references);
            references.dedup();
            let payload = serde_json::json!({
                "step_id": effect_id,
                "tool_invocation_id": pending.id,
                "plan_id": plan_id,
                "spec_name": plan.spec_name,
                "actions": actions,
                "context": serde_json::from_str::<serde_json::Value>(plan.context.get()).unwrap_or_default(),
                "references": references,
                "agent": pending.agent,
            });
            self.effect(
                PLAN_STEP,
                &effect_id,
                &causation,
                payload.to_string().as_bytes(),
            );
            return;
        }
        let mut payload = Vec::with_capacity(96 + pending.args.get().len());
        payload.extend_from_slice(b"{\"tool\":");
        crate::event::write_json_str(&mut payload, &pending.tool);
        payload.extend_from_slice(b",\"tool_invocation_id\":");
        crate::event::write_json_str(&mut payload, &pending.id);
        payload.extend_from_slice(b",\"args\":");
        payload.extend_from_slice(pending.args.get().as_bytes());
        payload.extend_from_slice(b",\"agent\":");
        crate::event::write_json_str(&mut payload, &pending.agent);
        payload.push(b'}');
        self.effect(TOOL_INVOCATION, &effect_id, &causation, &payload);
    }

    /// Re-issue what the outstanding call still waits for (resume after a restart).
    fn reissue(&mut self) {
        let Some(pending) = self.thread.pending() else {
            return;
        };
        match &pending.gate {
            Gate::Clear if pending.approved => self.invoke(),
            Gate::Clear => match self.rule(self.channel()) {
                Rule::Predicate(predicate) => self.check(&predicate),
                _ => self.invoke(),
            },
            // A human decides these; the approval request went out when the gate closed.
            Gate::Waiting { .. } | Gate::Decided => {}
        }
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
        let total_ms = self.cause.ts.saturating_sub(run.started_ts).max(0);
        let latency = serde_json::json!({
            "totalMs": total_ms,
            "toolMs": run.tool_ms,
            "modelMs": total_ms.saturating_sub(run.tool_ms).max(0),
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
