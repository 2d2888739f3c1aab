//! The engine's driving API.
//!
//! [`Engine`] holds the compiled spec, the interpreter and every thread it owns; its doc lists
//! its methods by role.
//!
//! Deciding is separate from folding: the decide loop (`decide::Decider`) picks the next event
//! and hands it to `Thread::apply` exactly as a replay would, so a live thread and a replayed
//! one cannot differ. A rejected input leaves state untouched and becomes an unlogged `error`
//! envelope; an input this thread already took (same id, or an answer it no longer waits for)
//! is a `Duplicate`, ignored.
//!
//! Imports every other engine module; nothing outside the crate but serde.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::approval::{Gate, GateState, Outcome};
use crate::builtins::Decision;
use crate::codec::{raw_payload_of, write_json_str, write_payload, EntryRef};
use crate::decide::{Cause, Decider};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{Block, Event, EventKind, FailureKind, ModelResponse, Usage, LOG_FORMAT};
use crate::ids;
use crate::inputs::{
    self, malformed, CheckResultPayload, DecisionPayload, Envelope, ModelResultPayload,
    QueryPayload, ToolProgressPayload, ToolResultPayload,
};
use crate::interpreter::Interpreter;
use crate::model;
use crate::run::Phase;
use crate::spec::{Spec, DEFAULT_MAX_TURNS, DEFAULT_MAX_TURNS_INTERPRETED};
use crate::thread::{ModelState, Thread, DEFAULT_DEDUP_WINDOW_MS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// A run-log entry: append it to the thread's log, then show it.
    Event = 0,
    /// Work for the outside world (a model request, a tool invocation, ...).
    Effect = 1,
    /// An unlogged `error` envelope answering a rejected input.
    Rejection = 2,
    /// An input the thread already took (or an answer it no longer waits for): ignored. The
    /// bytes are an unlogged `error` envelope with code `DUPLICATE_INPUT`.
    Duplicate = 3,
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
    #[serde(default)]
    dedup_window_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum InterpreterConfig {
    Noop,
    Mock { response: String },
    Scripted,
    Live,
}

/// The engine: a compiled spec, its interpreter and the threads it owns. Its methods, by role:
///
/// - **make one**: [`Engine::new`] (a JSON config: spec, interpreter, options),
///   [`Engine::with_spec`];
/// - **feed facts in**: [`Engine::handle`] (one input envelope), [`Engine::handle_batch`] (a
///   JSON array), [`Engine::handle_many`] (separate messages, each possibly malformed),
///   [`Engine::fork`] (a new thread from another's log);
/// - **drain what was decided**: [`Engine::poll_output`], [`Engine::drain_outputs`] (run-log
///   events, effects, rejections, duplicates);
/// - **rebuild from the log**: [`Engine::apply`] (one line), [`Engine::load`] (a whole log),
///   [`Engine::restore`] then [`Engine::load_tail`] (a snapshot, then the log after it), and
///   the free function [`replay`] (no spec, no decisions);
/// - **hand a thread over**: [`Engine::save`] (its snapshot), [`Engine::forget`] (drop a
///   thread another owner took);
/// - **read-only**: [`Engine::thread`], [`Engine::thread_ids`], [`Engine::next_deadline`],
///   [`Engine::deadline`], [`Engine::due`], [`Engine::spec`], [`Engine::gate_moves`] (how
///   often each row of the approval-gate table was taken).
///
/// Threads are held in id order, so every walk over them (deadlines, snapshots) has one order.
pub struct Engine {
    spec: Spec,
    interpreter: Interpreter,
    /// Every thread held, by id: ordered, so whatever walks them (`due`, `next_deadline`,
    /// `thread_ids`, snapshots) sees the same order on every run and every machine.
    pub(crate) threads: BTreeMap<String, Thread>,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) dedup_window_ms: i64,
    default_max_turns: u32,
    /// How often each row of `approval::GATE_TRANSITIONS` was taken by this engine's
    /// decisions (the table's coverage, and a count of what approvals did).
    gate_moves: Vec<u64>,
}

impl Engine {
    /// Build an engine from `{"spec": <runtime spec>, "interpreter": {"kind": ...},
    /// "dedup_window_ms"?: ms}`.
    pub fn new(config: &[u8]) -> Result<Engine> {
        let config: EngineConfig = serde_json::from_slice(config).map_err(|e| {
            EngineError::new(
                ErrorCode::SpecInvalid,
                format!("engine config is not valid: {e}"),
            )
        })?;
        let spec = Spec::compile(config.spec.get().as_bytes())?;
        let interpreter = match config.interpreter {
            InterpreterConfig::Noop => Interpreter::Noop,
            InterpreterConfig::Mock { response } => Interpreter::Mock { response },
            InterpreterConfig::Scripted => Interpreter::Scripted,
            InterpreterConfig::Live => Interpreter::Live,
        };
        let mut engine = Engine::with_spec(spec, interpreter);
        if let Some(window) = config.dedup_window_ms {
            if window < 0 {
                return Err(EngineError::new(
                    ErrorCode::SpecInvalid,
                    "dedup_window_ms must be >= 0".to_owned(),
                ));
            }
            engine.dedup_window_ms = window;
        }
        Ok(engine)
    }

    pub fn with_spec(spec: Spec, interpreter: Interpreter) -> Engine {
        let default_max_turns = if interpreter.is_live() {
            DEFAULT_MAX_TURNS
        } else {
            DEFAULT_MAX_TURNS_INTERPRETED
        };
        Engine {
            spec,
            interpreter,
            threads: BTreeMap::new(),
            outputs: VecDeque::new(),
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
            default_max_turns,
            gate_moves: vec![0; crate::approval::GATE_TRANSITIONS.len()],
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn thread(&self, id: &str) -> Option<&Thread> {
        self.threads.get(id)
    }

    /// How often this engine's decisions took each row of the approval-gate table, in the
    /// table's order (`approval::GATE_TRANSITIONS`).
    pub fn gate_moves(&self) -> &[u64] {
        &self.gate_moves
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
        if let Some(thread) = self.threads.get(&envelope.thread_id) {
            if thread.seen_inputs.contains(&envelope.id) {
                return Err(duplicate(format!(
                    "input `{}` was handled already; its id is the idempotency key",
                    envelope.id
                )));
            }
        }
        let cause = Cause {
            id: &envelope.id,
            ts: envelope.ts,
        };
        let start = self.outputs.len();
        let result = match envelope.schema {
            inputs::QUERY => self.on_query(&envelope, &cause),
            inputs::TOOL_RESULT => self.on_tool_result(&envelope, &cause),
            inputs::TOOL_PROGRESS => self.on_tool_progress(&envelope, &cause),
            inputs::MODEL_RESULT => self.on_model_result(&envelope, &cause),
            inputs::CANCEL_RUN => self.on_cancel_run(&envelope, &cause),
            inputs::APPROVAL_DECISION => self.on_approval_decision(&envelope, &cause),
            inputs::DEADLINE_REACHED => self.on_deadline_reached(&envelope, &cause),
            inputs::APPROVAL_CHECK_RESULT => self.on_approval_check_result(&envelope, &cause),
            inputs::RESUME_RUN => self.on_resume_run(&envelope, &cause),
            other => Err(EngineError::new(
                ErrorCode::InputUnknownSchema,
                format!(
                    "unknown input schema `{other}`; the runtime takes {}",
                    inputs::INPUTS.join(", ")
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
        write_json_str(&mut bytes, &format!("{}/rejected", partial.id));
        bytes.extend_from_slice(b",\"tenant\":");
        write_json_str(&mut bytes, &partial.tenant);
        bytes.extend_from_slice(b",\"thread_id\":");
        write_json_str(&mut bytes, &partial.thread_id);
        bytes.extend_from_slice(b",\"run_id\":null,\"causation_id\":");
        write_json_str(&mut bytes, &partial.id);
        bytes.extend_from_slice(
            format!(",\"ts\":{},\"seq\":null,\"payload\":", partial.ts).as_bytes(),
        );
        write_payload(
            &Event::Error {
                code: err.code.as_str().to_owned(),
                message: err.message.clone(),
            },
            &mut bytes,
        );
        bytes.push(b'}');
        let kind = if err.code == ErrorCode::DuplicateInput {
            OutputKind::Duplicate
        } else {
            OutputKind::Rejection
        };
        self.outputs.push_back(Output {
            kind,
            thread_id: partial.thread_id,
            bytes,
        });
    }

    /// Run `decide` on thread `thread_id` (which must exist), then let the loop go on.
    pub(crate) fn with_thread(
        &mut self,
        thread_id: &str,
        cause: &Cause<'_>,
        decide: impl FnOnce(&mut Decider<'_, '_>),
    ) {
        let thread = self
            .threads
            .get_mut(thread_id)
            .expect("checked by the caller");
        let mut d = Decider {
            spec: &self.spec,
            interpreter: &self.interpreter,
            thread,
            outputs: &mut self.outputs,
            cause,
            default_max_turns: self.default_max_turns,
            gate_moves: &mut self.gate_moves,
        };
        decide(&mut d);
        d.advance();
    }

    fn known_thread(&self, thread_id: &str, what: &str) -> Result<&Thread> {
        self.threads.get(thread_id).ok_or_else(|| {
            EngineError::new(
                ErrorCode::UnknownThread,
                format!(
                    "{what} for unknown thread `{thread_id}`; its run log was never loaded here"
                ),
            )
        })
    }

    fn on_query(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let query = QueryPayload::read(envelope.payload)?;
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
        let window = self.dedup_window_ms;
        let thread = self
            .threads
            .entry(envelope.thread_id.clone())
            .or_insert_with(|| {
                let mut thread = Thread::new(envelope.thread_id.clone(), envelope.tenant.clone());
                thread.dedup_window_ms = window;
                thread
            });
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
        let thread_id = thread.id.clone();
        self.with_thread(&thread_id, cause, |d| {
            d.emit(Event::RunStart {
                run_id: run_id.clone(),
                agent: agent_name.clone(),
                prompt: query.prompt,
                format: LOG_FORMAT,
            });
            d.emit(Event::AgentStart {
                agent: agent_name,
                id: run_id,
            });
        });
        Ok(())
    }

    /// A result that answers nothing outstanding: a repeat of one already logged (or of a run
    /// that ended) is a duplicate; anything else names what the thread waits for.
    fn stale_or_unknown(thread: &Thread, id: &str, what: &str) -> EngineError {
        let current = thread.run_id();
        let run_of = id
            .strip_prefix(&format!("{}/{}/", thread.tenant, thread.id))
            .and_then(|rest| rest.split('/').next());
        // A run this thread has had: one that ended, or the current one.
        let past_run = run_of
            .and_then(|run| run.strip_prefix("run-"))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 1 && n <= thread.runs);
        let stale = ids::belongs_to(id, &thread.tenant, &thread.id)
            && past_run
            && (run_of != current
                || thread.answered(id.rsplit('/').next().unwrap_or_default())
                || what == "model result");
        if stale {
            return duplicate(format!(
                "{what} `{id}` answers something thread `{}` no longer waits for; ignored",
                thread.id
            ));
        }
        let waiting = match thread.pending() {
            Some(p) => format!(" (it waits for `{}`)", p.id),
            None => " (it waits for no tool)".to_owned(),
        };
        EngineError::new(
            ErrorCode::UnknownInvocation,
            format!(
                "{what} `{id}` does not answer anything thread `{}` is waiting for{waiting}",
                thread.id
            ),
        )
    }

    fn on_tool_result(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let payload = ToolResultPayload::read(envelope.payload)?;
        let thread = self.known_thread(&envelope.thread_id, "tool result")?;
        let outstanding = thread.run.as_ref().and_then(|run| {
            run.pending.as_ref().filter(|p| {
                // A call still at its gate never went out: a result for it is forged or stale.
                matches!(p.gate_state(), GateState::New | GateState::Approved)
                    && payload.invocation_id
                        == ids::invocation_id(&thread.tenant, &thread.id, &run.id, &p.id)
                    && payload
                        .tool_invocation_id
                        .as_ref()
                        .is_none_or(|t| t == &p.id)
            })
        });
        if outstanding.is_none() {
            if thread.run.is_none()
                && !ids::belongs_to(&payload.invocation_id, &thread.tenant, &thread.id)
            {
                return Err(EngineError::new(
                    ErrorCode::NoActiveRun,
                    format!(
                        "tool result `{}` for thread `{}`, which has no active run (finished or cancelled)",
                        payload.invocation_id, thread.id
                    ),
                ));
            }
            return Err(Engine::stale_or_unknown(
                thread,
                &payload.invocation_id,
                "tool result",
            ));
        }
        let mut emitted = Vec::with_capacity(payload.events.len());
        for raw in &payload.events {
            emitted.push(tool_emitted(raw)?);
        }
        let outcome = match payload.error {
            Some(error) => Err((error.code, error.message)),
            None => Ok(payload.output.map(one_line).unwrap_or_else(json_null)),
        };
        self.with_thread(&envelope.thread_id, cause, |d| {
            for event in emitted {
                d.emit(event);
            }
            d.finish_call(outcome);
        });
        Ok(())
    }

    fn on_tool_progress(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let payload = ToolProgressPayload::read(envelope.payload)?;
        let thread = self.known_thread(&envelope.thread_id, "tool progress")?;
        let running = thread.run.as_ref().is_some_and(|run| {
            run.phase == Phase::AwaitingTool
                && run.pending.as_ref().is_some_and(|p| {
                    matches!(p.gate_state(), GateState::New | GateState::Approved)
                        && payload.invocation_id
                            == ids::invocation_id(&thread.tenant, &thread.id, &run.id, &p.id)
                })
        });
        if !running {
            return Err(Engine::stale_or_unknown(
                thread,
                &payload.invocation_id,
                "tool progress",
            ));
        }
        let mut emitted = Vec::with_capacity(payload.events.len());
        for raw in &payload.events {
            emitted.push(tool_emitted(raw)?);
        }
        self.with_thread(&envelope.thread_id, cause, |d| {
            for event in emitted {
                d.emit(event);
            }
        });
        Ok(())
    }

    fn on_model_result(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let payload = ModelResultPayload::read(envelope.payload)?;
        let thread = self.known_thread(&envelope.thread_id, "model result")?;
        let waiting = thread.run.as_ref().and_then(|run| {
            let wait = run.model.as_ref()?;
            match &wait.state {
                ModelState::Sent { request_id, .. } if *request_id == payload.request_id => {
                    Some((run.frame().agent.clone(), wait.attempt, wait.model.clone()))
                }
                _ => None,
            }
        });
        let Some((agent, attempt, model)) = waiting else {
            return Err(Engine::stale_or_unknown(
                thread,
                &payload.request_id,
                "model result",
            ));
        };
        let problem = payload
            .response
            .as_ref()
            .and_then(|r| model::problem_with(&r.content, thread));
        self.with_thread(&envelope.thread_id, cause, |d| {
            match (payload.response, payload.failure) {
                (Some(response), _) if problem.is_none() => {
                    let content = response
                        .content
                        .into_iter()
                        .map(|block| match block {
                            Block::ToolCall {
                                id,
                                name,
                                args,
                                args_error,
                            } => Block::ToolCall {
                                id,
                                name,
                                args: one_line(&args),
                                args_error,
                            },
                            other => other,
                        })
                        .collect();
                    d.model_answered(ModelResponse {
                        agent,
                        request_id: payload.request_id,
                        attempt,
                        provider: response.provider,
                        model: response.model,
                        stop_reason: response.stop_reason,
                        raw_stop_reason: response.raw_stop_reason,
                        usage: Usage::from(&response.usage),
                        latency_ms: response.latency_ms,
                        ttft_ms: response.ttft_ms,
                        content,
                        request_hash: response.request_hash,
                    });
                }
                (Some(response), _) => d.model_failed(
                    FailureKind::BadResponse,
                    format!(
                        "{} answered with content the engine cannot use: {}",
                        response.model,
                        problem.unwrap_or_default()
                    ),
                    None,
                    None,
                    response.latency_ms,
                ),
                (None, Some(failure)) => {
                    let _ = &model;
                    d.model_failed(
                        failure.kind,
                        failure.message,
                        failure.status,
                        failure.retry_after_ms,
                        failure.latency_ms.unwrap_or(0),
                    )
                }
                (None, None) => unreachable!("checked: a result has a response or a failure"),
            }
        });
        Ok(())
    }

    fn on_approval_decision(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let payload = DecisionPayload::read(envelope.payload)?;
        let outcome = Outcome::parse(&payload.outcome).ok_or_else(|| {
            malformed(format!(
                "`{}` is not an approval outcome; use approve, reject or revise",
                payload.outcome
            ))
        })?;
        let thread = self
            .threads
            .get(&envelope.thread_id)
            .ok_or_else(|| unknown_approval(&payload.approval_id))?;
        let (required, approvers) = waiting_for(thread, &payload.approval_id)?;
        let approver = payload.approver;
        let short = if required > 1 {
            let who = approver
                .as_deref()
                .filter(|who| !who.trim().is_empty())
                .ok_or_else(|| approver_required(&payload.approval_id, required))?;
            if outcome == Outcome::Approve && approvers.iter().any(|a| a == who) {
                return Err(EngineError::new(
                    ErrorCode::ApproverAlreadyApproved,
                    format!(
                        "`{who}` already approved `{}`; it needs {required} different approvers, {} so far ({}): another person must approve",
                        payload.approval_id,
                        approvers.len(),
                        approvers.join(", ")
                    ),
                ));
            }
            outcome == Outcome::Approve && approvers.len() as u64 + 1 < u64::from(required)
        } else {
            false
        };
        self.with_thread(&envelope.thread_id, cause, |d| {
            if short {
                d.approve_in_part(payload.approval_id, approver.expect("checked: named"));
                return;
            }
            d.decide(Decision {
                id: payload.approval_id,
                outcome,
                feedback: payload.feedback,
                partial: payload.partial.filter(|p| p.get() != "null"),
                approver,
                reason: None,
            });
        });
        Ok(())
    }

    /// Time has come: an approval whose deadline passed resolves as rejected; a model retry
    /// that was due goes out; a model request unanswered past its timeout fails. Early or
    /// repeated deadlines change nothing.
    fn on_deadline_reached(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let Some(thread) = self.threads.get(&envelope.thread_id) else {
            return Ok(());
        };
        if let Some(Gate::Waiting {
            approval_id,
            expires_at: Some(expires_at),
            ..
        }) = thread.pending().map(|p| p.gate.clone())
        {
            if cause.ts >= expires_at {
                self.with_thread(&envelope.thread_id, cause, |d| {
                    d.deadline_passed(approval_id);
                });
            }
            return Ok(());
        }
        if thread.run.as_ref().is_some_and(|run| run.model.is_some()) {
            self.with_thread(&envelope.thread_id, cause, |d| d.model_deadline());
        }
        Ok(())
    }

    fn on_approval_check_result(
        &mut self,
        envelope: &Envelope<'_>,
        cause: &Cause<'_>,
    ) -> Result<()> {
        let payload = CheckResultPayload::read(envelope.payload)?;
        let thread = self.known_thread(&envelope.thread_id, "approval check")?;
        let expected = thread
            .pending()
            .filter(|p| p.gate_state() == GateState::New)
            .map(|p| {
                ids::check_id(
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
        self.with_thread(&envelope.thread_id, cause, |d| d.checked(payload.required));
        Ok(())
    }

    /// Re-issue the effects a thread's unfinished run still needs (after a restart: the log
    /// says what is outstanding; effects are idempotent by id). Logs nothing new unless the
    /// crash cut a decision short.
    fn on_resume_run(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        self.known_thread(&envelope.thread_id, "resume")?;
        self.with_thread(&envelope.thread_id, cause, |d| d.reissue());
        Ok(())
    }

    fn on_cancel_run(&mut self, envelope: &Envelope<'_>, cause: &Cause<'_>) -> Result<()> {
        let thread = self.known_thread(&envelope.thread_id, "cancel")?;
        match thread.run.as_ref().map(|run| run.phase) {
            None | Some(Phase::Closing) => {
                return Err(EngineError::new(
                    ErrorCode::NoActiveRun,
                    format!("thread `{}` has no active run to cancel", thread.id),
                ))
            }
            Some(_) => {}
        }
        self.with_thread(&envelope.thread_id, cause, |d| d.cancel());
        Ok(())
    }

    /// When thread `thread_id` needs the time next (an approval's deadline, a model retry, a
    /// model request's timeout), in ms.
    pub fn deadline(&self, thread_id: &str) -> Option<i64> {
        self.threads
            .get(thread_id)
            .and_then(|t| self.deadline_of(t))
    }

    fn deadline_of(&self, thread: &Thread) -> Option<i64> {
        let mut at = thread.approval_deadline();
        let run = thread.run.as_ref()?;
        if let Some(wait) = &run.model {
            let model_at = match &wait.state {
                ModelState::RetryAt { at } => Some(*at),
                ModelState::Sent { sent_ts, .. } if self.interpreter.is_live() => self
                    .spec
                    .agent(&run.frame().agent)
                    .and_then(|agent| self.spec.retry(agent).request_timeout_ms)
                    .map(|timeout| sent_ts.saturating_add(timeout as i64)),
                _ => None,
            };
            at = match (at, model_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        at
    }

    /// Every thread whose deadline is at or before `now`, earliest first (ties by thread id).
    pub fn due(&self, now: i64) -> Vec<&str> {
        let mut due: Vec<(i64, &str)> = self
            .threads
            .values()
            .filter_map(|t| {
                self.deadline_of(t)
                    .filter(|at| *at <= now)
                    .map(|at| (at, t.id.as_str()))
            })
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// The earliest deadline over every thread held, as (thread id, ms); ties go to the
    /// smallest thread id, so the order does not depend on the map.
    pub fn next_deadline(&self) -> Option<(&str, i64)> {
        self.threads
            .values()
            .filter_map(|t| self.deadline_of(t).map(|at| (t.id.as_str(), at)))
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)))
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
                thread.apply(entry.seq, entry.ts, entry.causation(), event)
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
                thread.dedup_window_ms = self.dedup_window_ms;
                thread.apply(entry.seq, entry.ts, entry.causation(), event)?;
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
        for mut thread in replay.threads {
            thread.dedup_window_ms = self.dedup_window_ms;
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
        thread
            .apply(entry.seq, entry.ts, entry.causation(), event)
            .map_err(at)?;
        lines = n + 1;
    }
    Ok(Replay { threads, lines })
}

pub(crate) fn check_tenant(thread: &Thread, tenant: &str) -> Result<()> {
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

fn duplicate(message: String) -> EngineError {
    EngineError::new(ErrorCode::DuplicateInput, message)
}

fn unknown_approval(approval_id: &str) -> EngineError {
    EngineError::new(
        ErrorCode::UnknownApproval,
        format!(
            "no approval `{approval_id}` is waiting here; check the id (approvals are per tenant)"
        ),
    )
}

fn approver_required(approval_id: &str, required: u32) -> EngineError {
    EngineError::new(
        ErrorCode::ApproverRequired,
        format!(
            "approval `{approval_id}` needs {required} different approvers, so a decision on it must name its approver; send it again with `approver`"
        ),
    )
}

/// Check that `approval_id` is the approval `thread` waits for; its quorum and approvers so far.
fn waiting_for<'t>(thread: &'t Thread, approval_id: &str) -> Result<(u32, &'t [String])> {
    if let Some(Gate::Waiting {
        approval_id: id,
        required,
        approvers,
        ..
    }) = thread.pending().map(|p| &p.gate)
    {
        if id == approval_id {
            return Ok((*required, approvers));
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

fn json_null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

fn tool_emitted(raw: &RawValue) -> Result<Event> {
    // What the contract requires of an emitted event (messages.CustomEvent /
    // ToolProgressEvent), checked here so the run log never holds one its readers refuse.
    #[derive(Deserialize)]
    struct Emitted {
        #[serde(rename = "type")]
        kind: String,
        #[serde(rename = "toolInvocationId")]
        invocation: Option<String>,
        name: Option<String>,
    }
    let emitted: Emitted = serde_json::from_str(raw.get()).map_err(|e| {
        malformed(format!(
            "a tool-emitted event must be an object with a string `type` (and a string `name` \
             and `toolInvocationId`): {e}"
        ))
    })?;
    let kind = EventKind::of_wire_name(&emitted.kind)
        .filter(|kind| kind.is_tool_emitted())
        .ok_or_else(|| {
            malformed(format!(
                "a tool may emit `custom` and `tool-progress` events, not `{}`",
                emitted.kind
            ))
        })?;
    if emitted.invocation.is_none() || (kind == EventKind::Custom && emitted.name.is_none()) {
        return Err(malformed(format!(
            "a tool-emitted `{}` event needs {}`toolInvocationId` (the invocation it belongs \
             to), as ctx.emit and ctx.progress write them",
            emitted.kind,
            if kind == EventKind::Custom {
                "`name` and "
            } else {
                ""
            }
        )));
    }
    // Replay decodes every payload field the run log knows; one it would misread (a string
    // `step`, say) would make the log unreplayable, so refuse it while the input can be.
    serde_json::from_str::<crate::codec::PayloadRef<'_>>(raw.get()).map_err(|e| {
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
