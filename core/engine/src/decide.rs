//! The decide loop for one thread: given what just happened, what the engine does next.
//!
//! `Decider::emit` hands every decided event to `Thread::apply` exactly as a replay would, so
//! a live thread and a replayed one cannot differ. The loop (`advance`) asks the model for a
//! turn, makes the calls the model asked for one by one, hands work to sub-agents and returns
//! their answers, and ends the run with its summaries. Model turns are effects: a live model's
//! request goes out and its answer comes back as an input; an interpreter's answer is made here
//! and taken through the same path. Plan tools and approval gates are in `builtins`.
//!
//! Imports every module the decisions need; nothing outside the crate but serde.

use std::collections::VecDeque;

use serde_json::value::RawValue;

use crate::codec::{encode_entry, write_json_str, Header};
use crate::error::{ErrorCode, ResultCode};
use crate::event::{
    Block, Event, EventKind, FailureKind, FinishReason, ModelFailure, ModelResponse, Recovery,
    StopReason, Usage,
};
use crate::ids;
use crate::inputs::{MODEL_REQUEST, TOOL_INVOCATION};
use crate::interpreter::{Answer, Interpreter, Turn};
use crate::model;
use crate::run::Phase;
use crate::spec::{AgentSpec, Spec, CALL_AGENT, EXECUTE_PLAN, GET_PLAN, STORE_PLAN};
use crate::summaries;
use crate::thread::{ModelState, QueuedCall, Thread};
use crate::{Output, OutputKind};

/// Who caused the events being decided, and when.
pub struct Cause<'a> {
    pub id: &'a str,
    pub ts: i64,
}

/// The decide loop for one thread, borrowing what it needs from the engine.
pub struct Decider<'e, 'c> {
    pub spec: &'e Spec,
    pub interpreter: &'e Interpreter,
    pub thread: &'e mut Thread,
    pub outputs: &'e mut VecDeque<Output>,
    pub cause: &'e Cause<'c>,
    /// Turns an agent may take when its spec does not say.
    pub default_max_turns: u32,
    /// How often each row of the approval-gate table was taken (`Engine::gate_moves`).
    pub gate_moves: &'e mut [u64],
}

pub fn raw(value: &serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a serialized Value is JSON")
}

/// A tool call's error result, as the model sees it.
pub fn error_result(code: ResultCode, message: &str) -> Box<RawValue> {
    error_body(code.as_str(), message)
}

/// An error result under a code a tool chose itself (passed through as it sent it).
pub fn error_body(code: &str, message: &str) -> Box<RawValue> {
    raw(&serde_json::json!({"error": {"message": message, "code": code}}))
}

impl Decider<'_, '_> {
    /// Log an event: fold it, then queue its encoded entry.
    pub fn emit(&mut self, event: Event) {
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
        if let Err(err) = self.thread.apply(seq, self.cause.ts, self.cause.id, event) {
            unreachable!("the engine decided an event its own run table rejects: {err}");
        }
        self.outputs.push_back(Output {
            kind: OutputKind::Event,
            thread_id: self.thread.id.clone(),
            bytes,
        });
    }

    /// Queue an effect envelope (work for the outside world).
    pub fn effect(&mut self, schema_name: &str, id: &str, causation: &str, payload: &[u8]) {
        let mut bytes = Vec::with_capacity(128 + payload.len());
        bytes.extend_from_slice(b"{\"schema\":");
        write_json_str(&mut bytes, schema_name);
        bytes.extend_from_slice(b",\"id\":");
        write_json_str(&mut bytes, id);
        bytes.extend_from_slice(b",\"tenant\":");
        write_json_str(&mut bytes, &self.thread.tenant);
        bytes.extend_from_slice(b",\"thread_id\":");
        write_json_str(&mut bytes, &self.thread.id);
        bytes.extend_from_slice(b",\"run_id\":");
        write_json_str(&mut bytes, self.thread.run_id().unwrap_or_default());
        bytes.extend_from_slice(b",\"causation_id\":");
        write_json_str(&mut bytes, causation);
        bytes.extend_from_slice(format!(",\"ts\":{},\"payload\":", self.cause.ts).as_bytes());
        bytes.extend_from_slice(payload);
        bytes.push(b'}');
        self.outputs.push_back(Output {
            kind: OutputKind::Effect,
            thread_id: self.thread.id.clone(),
            bytes,
        });
    }

    pub fn agent(&self, name: &str) -> &AgentSpec {
        self.spec
            .agent(name)
            .expect("frames only run agents of the spec")
    }

    pub fn last_event_id(&self) -> String {
        ids::event_id(&self.thread.tenant, &self.thread.id, self.thread.last_seq)
    }

    /// Decide until the run waits for the outside world or ends.
    pub fn advance(&mut self) {
        loop {
            let Some(run) = self.thread.run.as_ref() else {
                return;
            };
            match run.phase {
                Phase::Running => {}
                Phase::Closing => {
                    self.close_run();
                    return;
                }
                _ => return,
            }
            let depth = run.frames.len();
            let frame = run.frame();
            let Some(agent) = self.spec.agent(&frame.agent) else {
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
            };
            if let Some(call) = frame.queue.front().cloned() {
                if self.process_call(call) {
                    return;
                }
                continue;
            }
            if let Some(answer) = frame.answer.clone() {
                if depth == 1 {
                    self.finish(answer);
                    return;
                }
                self.return_to_parent(answer);
                continue;
            }
            let max_turns = Spec::max_turns(agent, self.default_max_turns);
            if frame.turns >= max_turns {
                let message = format!(
                    "agent `{}` used all {max_turns} turns without answering; raise its max_turns or simplify the task",
                    agent.name
                );
                self.emit(Event::Error {
                    code: ResultCode::MaxTurnsExceeded.as_str().to_owned(),
                    message,
                });
                return;
            }
            let first = self.spec.chain(agent)[0].clone();
            self.request_model(
                1,
                first.provider.as_deref().unwrap_or_default(),
                &first.model,
            );
        }
    }

    /// Ask the model for the top frame's next turn: `step-start`, then the request goes out
    /// (live) or the interpreter answers it here.
    /// `attempt` counts this turn's requests; which model of the chain it is, the fold knows
    /// from the failures logged before it.
    pub fn request_model(&mut self, attempt: u32, provider: &str, model: &str) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let frame = run.frame();
        let agent_name = frame.agent.clone();
        let step = frame.turns + 1;
        // A new turn counts on; a retry or a fallback is the same turn.
        let turn = match &run.model {
            Some(wait) if run.phase == Phase::AwaitingModel => wait.turn,
            _ => run.model_turns + 1,
        };
        let run_id = run.id.clone();
        let request_id =
            ids::model_request_id(&self.thread.tenant, &self.thread.id, &run_id, turn, attempt);
        self.emit(Event::StepStart {
            agent: agent_name.clone(),
            step,
            model: model.to_owned(),
            provider: Some(provider.to_owned()),
            request_id: Some(request_id.clone()),
            usage: None,
        });
        if self.interpreter.is_live() {
            self.send_request(&request_id);
        } else {
            self.interpret(request_id, attempt, model.to_owned());
        }
    }

    /// Put the outstanding request on the wire (also when a resumed run re-issues it: the
    /// request id is the idempotency key).
    pub fn send_request(&mut self, request_id: &str) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let wait = run.model.as_ref().expect("a request is out");
        let agent = self.agent(&run.frame().agent);
        let payload = model::request(
            self.spec,
            agent,
            self.thread,
            &model::Attempt {
                request_id,
                provider: &wait.provider,
                model: &wait.model,
                attempt: wait.attempt,
                turn: wait.turn,
            },
        );
        let causation = self.last_event_id();
        self.effect(MODEL_REQUEST, request_id, &causation, &payload);
    }

    /// Answer the outstanding request with the deterministic interpreter, through the same
    /// path a provider's answer takes.
    fn interpret(&mut self, request_id: String, attempt: u32, model: String) {
        let run = self.thread.run.as_mut().expect("a run is active");
        let run_calls = run.calls;
        let frame = run.frames.last_mut().expect("a run has a frame");
        let agent = frame.agent.clone();
        let answer = self.interpreter.respond(Turn {
            prompt: &frame.prompt,
            calls: frame.calls,
            run_calls,
            last_result: frame.last_result.as_deref(),
            script: &mut frame.script,
        });
        match answer {
            Answer::Content {
                content,
                stop,
                usage,
            } => self.model_answered(ModelResponse {
                agent,
                request_id,
                attempt,
                provider: self.interpreter.name().to_owned(),
                model,
                stop_reason: stop,
                raw_stop_reason: None,
                usage,
                latency_ms: 0,
                ttft_ms: None,
                content,
                request_hash: None,
            }),
            Answer::Fail { code, message } => self.emit(Event::Error {
                code: code.as_str().to_owned(),
                message,
            }),
        }
    }

    /// Log a model's answer, then what a user sees of it (reasoning, text); its tool calls
    /// are made by `advance`, one by one.
    pub fn model_answered(&mut self, response: ModelResponse) {
        let mut shown = Vec::new();
        for block in &response.content {
            match block {
                Block::Text { text } => shown.push(Event::Text {
                    agent: response.agent.clone(),
                    text: text.clone(),
                    request_id: Some(response.request_id.clone()),
                }),
                Block::Reasoning { text, .. } if !text.is_empty() => shown.push(Event::Reasoning {
                    agent: response.agent.clone(),
                    text: text.clone(),
                    request_id: Some(response.request_id.clone()),
                }),
                _ => {}
            }
        }
        self.emit(Event::ModelResponse(Box::new(response)));
        for event in shown {
            self.emit(event);
        }
    }

    /// A model call failed: log it with what happens next, and do it.
    pub fn model_failed(
        &mut self,
        kind: FailureKind,
        message: String,
        status: Option<u16>,
        retry_after_ms: Option<i64>,
        latency_ms: i64,
    ) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let wait = run.model.as_ref().expect("a request is out").clone();
        let agent_name = run.frame().agent.clone();
        let agent = self.agent(&agent_name);
        let recovery =
            model::recovery(self.spec, agent, &wait, kind, retry_after_ms, self.cause.ts);
        let request_id = match &wait.state {
            ModelState::Sent { request_id, .. } => request_id.clone(),
            _ => String::new(),
        };
        self.emit(Event::ModelFailure(Box::new(ModelFailure {
            agent: agent_name.clone(),
            request_id,
            attempt: wait.attempt,
            provider: wait.provider.clone(),
            model: wait.model.clone(),
            kind,
            message,
            status,
            retry_after_ms,
            latency_ms,
            recovery: recovery.clone(),
        })));
        match recovery {
            Recovery::Retry { .. } => {} // the deadline brings the next attempt
            Recovery::Fallback { provider, model } => {
                self.request_model(wait.attempt + 1, &provider, &model)
            }
            Recovery::GiveUp => {
                let failures = self
                    .thread
                    .run
                    .as_ref()
                    .and_then(|run| run.model.as_ref())
                    .map(|wait| wait.failures.join("; "))
                    .unwrap_or_default();
                self.emit(Event::Error {
                    code: ResultCode::ModelFailed.as_str().to_owned(),
                    message: format!(
                        "agent `{agent_name}` got no answer from its models: {failures}"
                    ),
                });
            }
        }
    }

    /// The deadline of the model turn passed: retry now, or count the silence as a timeout.
    pub fn model_deadline(&mut self) {
        let Some(run) = self.thread.run.as_ref() else {
            return;
        };
        let Some(wait) = run.model.clone() else {
            return;
        };
        let now = self.cause.ts;
        match wait.state {
            ModelState::RetryAt { at } if now >= at => {
                self.request_model(wait.attempt + 1, &wait.provider, &wait.model)
            }
            ModelState::Sent { sent_ts, .. } if self.interpreter.is_live() => {
                let agent = self.agent(&run.frame().agent);
                let Some(timeout) = self.spec.retry(agent).request_timeout_ms else {
                    return;
                };
                if now < sent_ts.saturating_add(timeout as i64) {
                    return;
                }
                self.model_failed(
                    FailureKind::Timeout,
                    format!("no answer within {timeout} ms"),
                    None,
                    None,
                    now.saturating_sub(sent_ts),
                );
            }
            _ => {}
        }
    }

    /// Make the next call the model asked for; returns true when the run now waits.
    fn process_call(&mut self, call: QueuedCall) -> bool {
        let run = self.thread.run.as_ref().expect("a run is active");
        let agent = run.frame().agent.clone();
        if call.name == CALL_AGENT
            && self
                .spec
                .builtin_tools(self.agent(&agent))
                .contains(&CALL_AGENT)
        {
            self.call_agent(agent, call);
            false
        } else {
            self.call_tool(agent, call)
        }
    }

    /// Route to a sub-agent: a `tool-agent` call, then either the sub-agent's frame runs or an
    /// error result says why it could not.
    fn call_agent(&mut self, caller: String, call: QueuedCall) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            agent: String,
            prompt: String,
        }
        let caller_spec = self.agent(&caller);
        let parsed = match &call.args_error {
            Some(problem) => Err(format!("the arguments are not valid JSON: {problem}")),
            None => serde_json::from_str::<Args>(call.args.get()).map_err(|e| e.to_string()),
        };
        let (target, prompt, problem) = match parsed {
            Err(e) => (
                String::new(),
                String::new(),
                Some((
                    ResultCode::ToolArgsInvalid,
                    format!("call_agent takes {{\"agent\": name, \"prompt\": text}}: {e}"),
                )),
            ),
            Ok(Args { agent, prompt }) => {
                let problem = if !caller_spec.routes.contains(&agent) {
                    Some((
                        ResultCode::RouteNotAllowed,
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
            id: call.id.clone(),
            target: target.clone(),
            prompt,
        });
        if let Some((code, message)) = problem {
            self.emit(Event::ToolAgentResult {
                agent: caller,
                id: call.id,
                target,
                result: error_result(code, &message),
                is_error: true,
            });
        }
    }

    /// Log a tool call; returns true when the run now waits (a tool, a check or a human).
    fn call_tool(&mut self, agent: String, call: QueuedCall) -> bool {
        let tool = call.name.clone();
        let problem = match &call.args_error {
            Some(problem) => Some((
                ResultCode::ToolArgsInvalid,
                format!("the arguments for `{tool}` are not valid JSON: {problem}"),
            )),
            None => self.check_call(&agent, &tool, &call.args),
        };
        self.emit(Event::ToolCall {
            agent,
            id: call.id,
            tool: tool.clone(),
            args: call.args,
        });
        if let Some((code, message)) = problem {
            self.refuse(code, &message);
            return false;
        }
        match tool.as_str() {
            GET_PLAN => {
                self.get_plan();
                false
            }
            STORE_PLAN => {
                self.store_plan();
                false
            }
            EXECUTE_PLAN => self.execute_plan(),
            _ => {
                self.gate(crate::approval::Channel::Tools);
                true
            }
        }
    }

    /// Why a call cannot run, as (code, message) for the model, or None.
    fn check_call(&self, agent: &str, tool: &str, args: &RawValue) -> Option<(ResultCode, String)> {
        let agent_spec = self.agent(agent);
        let builtins = self.spec.builtin_tools(agent_spec);
        let schema = if builtins.contains(&tool) {
            self.spec
                .builtin_input(tool)
                .expect("every built-in but call_agent has a schema")
        } else if agent_spec.tools.iter().any(|t| t == tool) {
            &self
                .spec
                .tool(tool)
                .expect("compiled spec: agent tools exist")
                .input
        } else if crate::spec::is_builtin_tool(tool) {
            let role = format!("{:?}", agent_spec.role).to_lowercase();
            let offered = if builtins.is_empty() {
                format!("a {role} has no built-in tools")
            } else {
                format!("its built-in tools are: {}", builtins.join(", "))
            };
            return Some((
                ResultCode::ToolNotAllowedForRole,
                format!("`{tool}` is not available to {role} agent `{agent}`; {offered}"),
            ));
        } else {
            let mut available: Vec<&str> = agent_spec.tools.iter().map(String::as_str).collect();
            available.extend(builtins);
            return Some((
                ResultCode::ToolNotAvailable,
                format!(
                    "agent `{agent}` has no tool `{tool}`; its tools are: {}",
                    available.join(", ")
                ),
            ));
        };
        check_value(schema, args).err().map(|problem| {
            (
                ResultCode::ToolArgsInvalid,
                format!("arguments for `{tool}` are invalid: {problem}"),
            )
        })
    }

    pub fn pending(&self) -> &crate::thread::Pending {
        self.thread.pending().expect("a call is outstanding")
    }

    /// Answer the outstanding call with `result` (a tool-invocation result event).
    pub fn answer(&mut self, result: Box<RawValue>, is_error: bool) {
        let pending = self.pending();
        let (agent, id, tool, args) = (
            pending.agent.clone(),
            pending.id.clone(),
            pending.tool.clone(),
            pending.args.clone(),
        );
        self.emit(Event::ToolReturned {
            agent,
            id,
            tool,
            args,
            result,
            is_error,
        });
    }

    /// Answer the outstanding call with an error result the model sees.
    pub fn refuse(&mut self, code: ResultCode, message: &str) {
        self.answer(error_result(code, message), true);
    }

    /// Send the outstanding call out: a plan step for executePlan, else a tool invocation.
    pub fn invoke(&mut self) {
        let pending = self.pending();
        let run_id = self.thread.run_id().unwrap_or_default().to_owned();
        let effect_id =
            ids::invocation_id(&self.thread.tenant, &self.thread.id, &run_id, &pending.id);
        let causation = self.last_event_id();
        if pending.tool == EXECUTE_PLAN {
            self.plan_step(effect_id, causation);
            return;
        }
        let mut payload = Vec::with_capacity(96 + pending.args.get().len());
        payload.extend_from_slice(b"{\"tool\":");
        write_json_str(&mut payload, &pending.tool);
        payload.extend_from_slice(b",\"tool_invocation_id\":");
        write_json_str(&mut payload, &pending.id);
        payload.extend_from_slice(b",\"args\":");
        payload.extend_from_slice(pending.args.get().as_bytes());
        payload.extend_from_slice(b",\"agent\":");
        write_json_str(&mut payload, &pending.agent);
        payload.push(b'}');
        self.effect(TOOL_INVOCATION, &effect_id, &causation, &payload);
    }

    /// Re-issue what the run still waits for (resume after a restart; effects are idempotent
    /// by id, so a second copy changes nothing downstream).
    pub fn reissue(&mut self) {
        let Some(run) = self.thread.run.as_ref() else {
            return;
        };
        match run.phase {
            Phase::AwaitingModel => match run.model.as_ref().map(|m| m.state.clone()) {
                Some(ModelState::Sent { request_id, .. }) => {
                    if self.interpreter.is_live() {
                        self.send_request(&request_id);
                    } else {
                        let wait = run.model.as_ref().expect("matched").clone();
                        self.interpret(request_id, wait.attempt, wait.model);
                    }
                }
                Some(ModelState::Fallback { provider, model }) => {
                    let wait = run.model.as_ref().expect("matched").clone();
                    self.request_model(wait.attempt + 1, &provider, &model);
                }
                // A retry waits for its deadline; a run that gave up has its error next.
                _ => {}
            },
            Phase::AwaitingTool => self.reissue_call(),
            // The engine's own decisions: `advance` (which every handler ends with) takes them.
            Phase::Running | Phase::Closing | Phase::AwaitingApproval | Phase::Idle => {}
        }
    }

    /// The running sub-agent answered: report it to its caller and pop its frame.
    fn return_to_parent(&mut self, answer: String) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let frame = run.frames.last().expect("a sub-agent frame");
        let parent = &run.frames[run.frames.len() - 2];
        let child = self.agent(&frame.agent);
        let data = serde_json::json!({
            "agentName": child.name,
            "model": child.model,
            "usage": frame.usage,
            "provider": child.provider,
            "agent": parent.agent,
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
            data: raw(&data),
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

    /// The entry agent answered: summaries, `finish`, then the wrapping `tool-agent` result.
    fn finish(&mut self, answer: String) {
        let run = self.thread.run.as_ref().expect("a run is active");
        let reason = match run.frame().last_stop {
            Some(StopReason::Length) => FinishReason::Length,
            Some(StopReason::ContentFilter) => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        };
        let usage: Usage = run.usage;
        if run.llm_calls > 0 {
            let data = summaries::latency(run, self.cause.ts);
            self.emit(Event::Data {
                kind: EventKind::LatencySummary,
                data: raw(&data),
            });
        }
        let run = self.thread.run.as_ref().expect("a run is active");
        if run.any_live() {
            let data = summaries::cost(run);
            self.emit(Event::Data {
                kind: EventKind::CostSummary,
                data: raw(&data),
            });
        }
        self.emit(Event::Finish { reason, usage });
        let result = serde_json::to_string(&answer).expect("strings serialize");
        self.close_run_with(RawValue::from_string(result).expect("a JSON string"));
    }

    /// After `finish`: the wrapping `tool-agent` result ends the run (format 2).
    pub fn close_run(&mut self) {
        let answer = self
            .thread
            .run
            .as_ref()
            .and_then(|run| run.frames.first())
            .and_then(|root| root.answer.clone());
        let result = match answer {
            Some(answer) => serde_json::to_string(&answer).expect("strings serialize"),
            None => "null".to_owned(),
        };
        self.close_run_with(RawValue::from_string(result).expect("JSON"));
    }

    fn close_run_with(&mut self, result: Box<RawValue>) {
        let Some(run) = self.thread.run.as_ref() else {
            return;
        };
        if run.phase != Phase::Closing {
            return; // a format 1 run ends at its finish
        }
        let Some(root) = run.frames.first() else {
            return;
        };
        // Cancelled inside a sub-agent: the wrapper still closes the entry agent's call.
        let (agent, id) = (root.agent.clone(), run.id.clone());
        self.emit(Event::AgentEnd { agent, id, result });
    }

    /// Cancel the run: `finish` (cancelled), then the wrapper's result.
    pub fn cancel(&mut self) {
        if self.thread.pending().is_some() {
            let from = self.gate_state();
            self.gate_move(from, crate::approval::GateEvent::Cancel);
        }
        let usage = self
            .thread
            .run
            .as_ref()
            .map(|run| run.usage)
            .unwrap_or_default();
        self.emit(Event::Finish {
            reason: FinishReason::Cancelled,
            usage,
        });
        self.close_run();
    }
}

pub fn check_value(schema: &crate::schema::Schema, raw: &RawValue) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|e| format!("not JSON: {e}"))?;
    schema
        .validate(&value)
        .map_err(|violations| crate::schema::describe(&violations))
}
