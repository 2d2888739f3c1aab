//! A thread's state, folded from its run log, and the fold itself (`apply`).
//!
//! `apply` is the only place state changes: live, the engine decides an event and applies it;
//! on replay, the log's events are applied in order. `apply` checks everything first (sequence,
//! run table, that ids match what is outstanding) and mutates only once nothing can fail, so a
//! rejected event leaves the thread untouched.
//!
//! Imports `event`, `run`, `approval`, `plan`, `interpreter` (the cached script), `error`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::approval::{self, Gate, GateEvent, GateState};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{
    Block, Event, EventKind, FinishReason, ModelFailure, ModelResponse, Recovery, StopReason,
    Tally, Usage, LOG_FORMAT,
};
use crate::interpreter::Script;
use crate::plan::{self, Plan};
use crate::run::{self, Phase};

/// How long a thread remembers the ids of the inputs it took, to refuse them again (ms).
pub const DEFAULT_DEDUP_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// One entry of the conversation history, rebuilt from the log. `frame` numbers the agent
/// frames of the thread (1, 2, ...), so a stateless agent sees only its own frame.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Message {
    User {
        agent: String,
        frame: u64,
        content: String,
    },
    Assistant {
        agent: String,
        frame: u64,
        content: Vec<Block>,
    },
    #[serde(rename_all = "camelCase")]
    ToolResult {
        agent: String,
        frame: u64,
        tool_invocation_id: String,
        result: Box<RawValue>,
        is_error: bool,
    },
}

impl Message {
    pub fn agent(&self) -> &str {
        match self {
            Message::User { agent, .. }
            | Message::Assistant { agent, .. }
            | Message::ToolResult { agent, .. } => agent,
        }
    }

    pub fn frame(&self) -> u64 {
        match self {
            Message::User { frame, .. }
            | Message::Assistant { frame, .. }
            | Message::ToolResult { frame, .. } => *frame,
        }
    }
}

/// A tool call of the model's latest answer that has not been logged as a call yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueuedCall {
    pub id: String,
    pub name: String,
    pub args: Box<RawValue>,
    pub args_error: Option<String>,
}

/// One agent working inside a run: the root agent, or a sub-agent a coordinator called.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Frame {
    /// The frame's number in the thread (messages carry it).
    pub number: u64,
    pub agent: String,
    pub prompt: String,
    /// The `call_agent` invocation that started this frame (None for the root).
    pub call_id: Option<String>,
    pub started_ts: i64,
    pub turns: u32,
    pub calls: u32,
    pub usage: Usage,
    pub answer: Option<String>,
    pub last_result: Option<Box<RawValue>>,
    /// Why the model's last turn stopped.
    pub last_stop: Option<StopReason>,
    /// Tool calls of the model's latest answer still to be made, in order.
    pub queue: VecDeque<QueuedCall>,
    /// The parsed scripted prompt; derived from `prompt`, cached (so not in a snapshot).
    #[serde(skip)]
    pub script: Option<Arc<Script>>,
}

impl Frame {
    fn new(number: u64, agent: String, prompt: String, call_id: Option<String>, ts: i64) -> Self {
        Frame {
            number,
            agent,
            prompt,
            call_id,
            started_ts: ts,
            turns: 0,
            calls: 0,
            usage: Usage::default(),
            answer: None,
            last_result: None,
            last_stop: None,
            queue: VecDeque::new(),
            script: None,
        }
    }
}

/// The tool invocation a run is waiting for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    pub agent: String,
    pub tool: String,
    pub args: Box<RawValue>,
    pub called_ts: i64,
    pub gate: Gate,
    /// A human approved this call (so a predicate is not asked again on resume).
    pub approved: bool,
}

impl Pending {
    /// Where the call's gate stands, as the log knows it (see `approval.rs`).
    pub fn gate_state(&self) -> GateState {
        self.gate.state(self.approved)
    }

    /// Take `on`, which `check` found in the gate table, to a state the fold keeps without
    /// more data (a human approved, decided against, or a fork re-opened the gate).
    fn settle(&mut self, on: GateEvent) {
        let to = approval::gate_step_logged(self.gate_state(), on)
            .expect("checked: the gate table allows it");
        (self.gate, self.approved) = match to {
            GateState::Approved => (Gate::Clear, true),
            GateState::Decided => (Gate::Decided, false),
            GateState::New => (Gate::Clear, false),
            other => unreachable!("a fold settles no gate at {other:?}"),
        };
    }
}

/// Where the model turn of a run stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelState {
    /// A request is out, sent at `sent_ts`.
    Sent { request_id: String, sent_ts: i64 },
    /// The last attempt failed; the same model is asked again at `at`.
    RetryAt { at: i64 },
    /// The last attempt failed; the next model of the chain is asked at once.
    Fallback { provider: String, model: String },
    /// Every attempt failed; the run ends with an error.
    GaveUp,
}

/// The model turn a run waits for: which request, which attempt, which model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelWait {
    /// The run's model turn number (request ids count them).
    pub turn: u32,
    pub attempt: u32,
    /// Position in the agent's model chain (each fallback moves on).
    pub chain_index: usize,
    /// Attempts made on the chain's current model.
    pub attempts_on_model: u32,
    pub provider: String,
    pub model: String,
    pub state: ModelState,
    /// One line per failed attempt, for the error that ends a run whose chain is exhausted.
    pub failures: Vec<String>,
}

/// Usage per (agent, model, provider) of a run, for its cost summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelUsage {
    pub agent: String,
    pub model: String,
    pub provider: String,
    pub usage: Usage,
    /// Answered by a provider (priced), not an interpreter.
    pub live: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolTiming {
    pub tool_name: String,
    pub tool_invocation_id: String,
    pub duration_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    /// The log format this run was written in.
    pub format: u32,
    pub started_ts: i64,
    pub phase: Phase,
    pub frames: Vec<Frame>,
    /// Calls decided in this run, across frames (scripted ids are numbered by it).
    pub calls: u32,
    pub steps: u32,
    pub usage: Usage,
    /// Usage per model, in first-use order.
    pub by_model: Vec<ModelUsage>,
    pub tool_ms: i64,
    pub tool_timings: Vec<ToolTiming>,
    pub sub_agent_ms: i64,
    /// Model calls answered (interpreters' included, `noop`'s not).
    pub llm_calls: u32,
    pub llm_ms: i64,
    pub retry_count: u32,
    pub had_timeout: bool,
    pub ttft_ms: Option<i64>,
    pub first_text_ms: Option<i64>,
    /// Model turns started in this run (request ids count them).
    pub model_turns: u32,
    pub model: Option<ModelWait>,
    pub pending: Option<Pending>,
}

impl Run {
    pub fn frame(&self) -> &Frame {
        self.frames.last().expect("a run has a frame")
    }

    fn frame_mut(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a run has a frame")
    }

    /// Whether any answer came from a provider (a priced call).
    pub fn any_live(&self) -> bool {
        self.by_model.iter().any(|m| m.live)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub run_id: String,
    pub outcome: String,
}

/// The ids of inputs a thread took, kept for a window so a repeat is recognized. A snapshot
/// keeps `order` only: `ids` is its index.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(into = "Vec<(i64, String)>", from = "Vec<(i64, String)>")]
pub struct SeenInputs {
    ids: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl From<SeenInputs> for Vec<(i64, String)> {
    fn from(seen: SeenInputs) -> Self {
        seen.order.into()
    }
}

impl From<Vec<(i64, String)>> for SeenInputs {
    fn from(order: Vec<(i64, String)>) -> Self {
        let ids = order.iter().map(|(ts, id)| (id.clone(), *ts)).collect();
        SeenInputs {
            ids,
            order: order.into(),
        }
    }
}

impl SeenInputs {
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn insert(&mut self, id: &str, ts: i64, window_ms: i64) {
        if id.is_empty() || self.ids.contains_key(id) {
            return;
        }
        self.ids.insert(id.to_owned(), ts);
        self.order.push_back((ts, id.to_owned()));
        let horizon = ts.saturating_sub(window_ms);
        while let Some((oldest, _)) = self.order.front() {
            if *oldest >= horizon {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.ids.remove(&old);
        }
    }
}

/// A thread's whole state. Its serde form is the state a versioned snapshot carries
/// (`snapshot.rs`): every field but caches, so restoring loses nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Thread {
    pub id: String,
    pub tenant: String,
    pub last_seq: u64,
    pub runs: u32,
    pub run: Option<Run>,
    #[serde(with = "crate::snapshot::history")]
    pub history: Vec<Message>,
    pub usage: Usage,
    pub last_run: Option<LastRun>,
    /// Plans stored in this thread, by id.
    pub plans: BTreeMap<String, Plan>,
    /// Approvals already decided (a second decision is refused, not folded).
    pub resolved_approvals: BTreeSet<String>,
    /// Frames started in this thread (the next frame's number is this + 1).
    pub frames_started: u64,
    /// Ids of the inputs that caused logged events, within the dedup window.
    pub seen_inputs: SeenInputs,
    pub dedup_window_ms: i64,
}

fn diverged(message: String) -> EngineError {
    EngineError::new(ErrorCode::ReplayDiverged, message)
}

impl Thread {
    pub fn new(id: String, tenant: String) -> Self {
        Thread {
            id,
            tenant,
            last_seq: 0,
            runs: 0,
            run: None,
            history: Vec::new(),
            usage: Usage::default(),
            last_run: None,
            plans: BTreeMap::new(),
            resolved_approvals: BTreeSet::new(),
            frames_started: 0,
            seen_inputs: SeenInputs::default(),
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
        }
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.run.as_ref().and_then(|run| run.pending.as_ref())
    }

    /// The deadline of the approval this thread waits for, if it has one.
    pub fn approval_deadline(&self) -> Option<i64> {
        match &self.pending()?.gate {
            Gate::Waiting { expires_at, .. } => *expires_at,
            _ => None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.run.as_ref().map_or(Phase::Idle, |run| run.phase)
    }

    pub fn run_id(&self) -> Option<&str> {
        self.run.as_ref().map(|run| run.id.as_str())
    }

    pub fn format(&self) -> u32 {
        self.run.as_ref().map_or(LOG_FORMAT, |run| run.format)
    }

    /// Fold one event logged at `seq` and time `ts`, caused by input `causation`.
    pub fn apply(&mut self, seq: u64, ts: i64, causation: &str, event: Event) -> Result<()> {
        if seq != self.last_seq + 1 {
            return Err(diverged(format!(
                "thread `{}` expected event seq {}, found {seq}; the log has a gap or a duplicate",
                self.id,
                self.last_seq + 1
            )));
        }
        let kind = event.kind();
        let from = self.phase();
        let format = match &event {
            Event::RunStart { format, .. } => *format,
            // A format 1 run that this engine continues (it was in flight when the engine was
            // upgraded) goes on in format 2 from its first format 2 decision.
            event if self.format() < 2 && is_format_2(event) => LOG_FORMAT,
            _ => self.format(),
        };
        let to = run::next(format, from, kind).ok_or_else(|| {
            diverged(format!(
                "thread `{}`: a {kind:?} event cannot happen while the thread is {}",
                self.id,
                from.as_str()
            ))
        })?;
        self.check(&event)?;
        if let Some(run) = self.run.as_mut() {
            run.format = format;
        }
        self.fold(ts, event);
        self.last_seq = seq;
        self.seen_inputs.insert(causation, ts, self.dedup_window_ms);
        match (to, self.run.as_mut()) {
            (Phase::Idle, _) => self.run = None,
            (phase, Some(run)) => run.phase = phase,
            (_, None) => unreachable!("only run-start leaves idle, and it creates the run"),
        }
        Ok(())
    }

    /// Everything `fold` relies on, checked without mutating.
    fn check(&self, event: &Event) -> Result<()> {
        let Some(run) = self.run.as_ref() else {
            return Ok(()); // idle: the table only admits run-start, which needs nothing
        };
        let top = run.frames.last().map(|f| f.agent.as_str());
        let same_agent = |agent: &str| -> Result<()> {
            if top == Some(agent) {
                Ok(())
            } else {
                Err(diverged(format!(
                    "thread `{}`: event for agent `{agent}` while `{}` has the turn",
                    self.id,
                    top.unwrap_or("nobody")
                )))
            }
        };
        let v2 = run.format >= 2;
        match event {
            Event::StepStart { agent, .. } => {
                same_agent(agent)?;
                match (run.phase, run.model.as_ref().map(|m| &m.state)) {
                    (Phase::AwaitingModel, Some(ModelState::RetryAt { .. }))
                    | (Phase::AwaitingModel, Some(ModelState::Fallback { .. })) => Ok(()),
                    (Phase::AwaitingModel, _) => Err(diverged(format!(
                        "thread `{}`: a new model request while one is out or given up",
                        self.id
                    ))),
                    _ => Ok(()),
                }
            }
            Event::AgentStart { agent, .. } => same_agent(agent),
            Event::AgentEnd { agent, .. } => match run.frames.first() {
                Some(root) if root.agent == *agent => Ok(()),
                _ => Err(diverged(format!(
                    "thread `{}`: the run of `{agent}` ends, but `{agent}` did not start it",
                    self.id
                ))),
            },
            Event::ModelResponse(response) => {
                same_agent(&response.agent)?;
                self.check_request(run, &response.request_id)
            }
            Event::ModelFailure(failure) => {
                same_agent(&failure.agent)?;
                self.check_request(run, &failure.request_id)
            }
            Event::Text { agent, .. } | Event::Reasoning { agent, .. } => same_agent(agent),
            Event::ToolCall { agent, id, .. } => {
                same_agent(agent)?;
                self.check_queued(run, id, v2)
            }
            Event::ToolAgentCall { agent, id, .. } => {
                same_agent(agent)?;
                self.check_queued(run, id, v2)
            }
            Event::ToolReturned { id, .. } => match &run.pending {
                Some(pending) if &pending.id == id => Ok(()),
                _ => Err(diverged(format!(
                    "thread `{}`: result for tool invocation `{id}`, which is not outstanding",
                    self.id
                ))),
            },
            Event::ToolAgentResult { id, .. } => match run.frames.last() {
                Some(frame) if run.frames.len() >= 2 && frame.call_id.as_deref() == Some(id) => {
                    Ok(())
                }
                _ => Err(diverged(format!(
                    "thread `{}`: sub-agent result for `{id}`, which is not the running sub-agent call",
                    self.id
                ))),
            },
            Event::DataPlan { plan_id, .. } => match (&run.pending, self.plans.get(plan_id)) {
                (Some(_), None) => Ok(()),
                (Some(_), Some(plan)) if plan.status == Some(plan::PlanStatus::Draft) => Ok(()),
                _ => Err(diverged(format!(
                    "thread `{}`: plan `{plan_id}` stored again while it is not a draft",
                    self.id
                ))),
            },
            Event::PlanStatusChange {
                plan_id, from, to, ..
            } => {
                let current = self.plans.get(plan_id).map(|plan| plan.status);
                match current {
                    Some(status) if status == *from => {
                        plan::check(plan_id, *from, *to).map_err(|e| diverged(e.message))
                    }
                    _ => Err(diverged(format!(
                        "thread `{}`: plan `{plan_id}` changes from {:?}, but its status is {:?}",
                        self.id, from, current
                    ))),
                }
            }
            Event::ApprovalRequired(request) => {
                let asked = run.pending.as_ref().is_some_and(|pending| {
                    // One fact for three moves: the rule, the check or a fork asks a human.
                    [
                        GateEvent::RuleAlways,
                        GateEvent::CheckRequired,
                        GateEvent::AskAgain,
                    ]
                    .into_iter()
                    .any(|on| approval::gate_step_logged(pending.gate_state(), on).is_ok())
                });
                if asked && !self.resolved_approvals.contains(&request.id) {
                    Ok(())
                } else {
                    Err(diverged(format!(
                        "thread `{}`: approval `{}` required with no undecided call outstanding",
                        self.id, request.id
                    )))
                }
            }
            Event::ApprovalProgress {
                id,
                approver,
                tally,
            } => {
                let (required, approvers) = self.waiting_at(run, id, GateEvent::ApproveShort)?;
                let next = approvers.len() as u64 + 1;
                if tally.required != required
                    || u64::from(tally.approvals) != next
                    || next >= u64::from(required)
                {
                    return Err(diverged(format!(
                        "thread `{}`: approval `{id}` counts {} of {} approvers, but {} of {required} had approved before",
                        self.id,
                        tally.approvals,
                        tally.required,
                        approvers.len()
                    )));
                }
                self.check_new_approver(id, approvers, approver)
            }
            Event::ApprovalDecided {
                id,
                outcome,
                approver,
                tally,
                reason,
                ..
            } => {
                let on = approval::decision_event(*outcome, reason.as_deref());
                let (required, approvers) = self.waiting_at(run, id, on)?;
                let approving = on == GateEvent::Approve;
                let expected = (required > 1).then(|| Tally {
                    approvals: approvers.len() as u32 + u32::from(approving),
                    required,
                });
                if *tally != expected {
                    return Err(diverged(format!(
                        "thread `{}`: decision for approval `{id}` says {tally:?} approvals, but the gate stands at {expected:?}",
                        self.id
                    )));
                }
                if approving && required > 1 {
                    if approvers.len() as u64 + 1 != u64::from(required) {
                        return Err(diverged(format!(
                            "thread `{}`: approval `{id}` is approved with {} of {required} approvers",
                            self.id,
                            approvers.len() + 1
                        )));
                    }
                    let approver = approver.as_deref().unwrap_or_default();
                    self.check_new_approver(id, approvers, approver)?;
                }
                Ok(())
            }
            Event::Fork { .. } => self.check_gate(run, GateEvent::Reopen),
            Event::Finish {
                reason: FinishReason::Cancelled,
                ..
            } => self.check_gate(run, GateEvent::Cancel),
            _ => Ok(()),
        }
    }

    /// The gate of the outstanding call, if any, can take `on` (the table in `approval.rs`).
    fn check_gate(&self, run: &Run, on: GateEvent) -> Result<()> {
        match &run.pending {
            Some(pending) => approval::gate_step_logged(pending.gate_state(), on)
                .map(|_| ())
                .map_err(|why| diverged(format!("thread `{}`: {why}", self.id))),
            None => Ok(()),
        }
    }

    /// The quorum and the approvers so far of approval `id`, which must be the one waiting
    /// and able to take `on`.
    fn waiting_at<'r>(&self, run: &'r Run, id: &str, on: GateEvent) -> Result<(u32, &'r [String])> {
        match run.pending.as_ref().map(|p| &p.gate) {
            Some(Gate::Waiting {
                approval_id,
                required,
                approvers,
                ..
            }) if approval_id == id => {
                self.check_gate(run, on)?;
                Ok((*required, approvers))
            }
            _ => Err(diverged(format!(
                "thread `{}`: decision for approval `{id}`, which is not waiting",
                self.id
            ))),
        }
    }

    /// An approve at a quorum gate counts only once per named approver.
    fn check_new_approver(&self, id: &str, approvers: &[String], approver: &str) -> Result<()> {
        if approver.is_empty() || approvers.iter().any(|a| a == approver) {
            return Err(diverged(format!(
                "thread `{}`: approval `{id}` counts `{approver}` again or without a name",
                self.id
            )));
        }
        Ok(())
    }

    fn check_request(&self, run: &Run, request_id: &str) -> Result<()> {
        match run.model.as_ref().map(|m| &m.state) {
            Some(ModelState::Sent {
                request_id: out, ..
            }) if out == request_id => Ok(()),
            _ => Err(diverged(format!(
                "thread `{}`: an answer to model request `{request_id}`, which is not out",
                self.id
            ))),
        }
    }

    /// A format 2 call must be the next one the model asked for.
    fn check_queued(&self, run: &Run, id: &str, v2: bool) -> Result<()> {
        if !v2 {
            return Ok(());
        }
        match run.frame().queue.front() {
            Some(call) if call.id == id => Ok(()),
            _ => Err(diverged(format!(
                "thread `{}`: a call `{id}` the model did not ask for next",
                self.id
            ))),
        }
    }

    /// Mutate state for an event `check` and the run table accepted. Infallible. Takes the
    /// event by value so its strings move into the state instead of being copied.
    fn fold(&mut self, ts: i64, event: Event) {
        let v2 = self.format() >= 2;
        match event {
            Event::RunStart {
                run_id,
                agent,
                prompt,
                format,
            } => {
                self.runs += 1;
                self.frames_started += 1;
                let number = self.frames_started;
                self.history.push(Message::User {
                    agent: agent.clone(),
                    frame: number,
                    content: prompt.clone(),
                });
                self.run = Some(Run {
                    id: run_id,
                    format,
                    started_ts: ts,
                    phase: Phase::Running,
                    frames: vec![Frame::new(number, agent, prompt, None, ts)],
                    calls: 0,
                    steps: 0,
                    usage: Usage::default(),
                    by_model: Vec::new(),
                    tool_ms: 0,
                    tool_timings: Vec::new(),
                    sub_agent_ms: 0,
                    llm_calls: 0,
                    llm_ms: 0,
                    retry_count: 0,
                    had_timeout: false,
                    ttft_ms: None,
                    first_text_ms: None,
                    model_turns: 0,
                    model: None,
                    pending: None,
                });
            }
            Event::AgentStart { .. } => {}
            Event::AgentEnd { .. } => {}
            Event::StepStart {
                model,
                provider,
                request_id,
                usage,
                ..
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                if let Some(usage) = usage {
                    // Format 1: the step-start is the whole turn.
                    run.steps += 1;
                    add_usage(run, &mut self.usage, &model, "", usage, false);
                    run.frame_mut().turns += 1;
                    return;
                }
                let provider = provider.unwrap_or_default();
                let request_id = request_id.unwrap_or_default();
                match run.model.as_mut() {
                    Some(wait) if run.phase == Phase::AwaitingModel => {
                        // A retry (same model) or a fallback (the next one).
                        if let ModelState::Fallback { .. } = wait.state {
                            wait.chain_index += 1;
                            wait.attempts_on_model = 0;
                        }
                        wait.attempt += 1;
                        wait.attempts_on_model += 1;
                        wait.provider = provider;
                        wait.model = model;
                        wait.state = ModelState::Sent {
                            request_id,
                            sent_ts: ts,
                        };
                    }
                    _ => {
                        run.steps += 1;
                        run.model_turns += 1;
                        run.model = Some(ModelWait {
                            turn: run.model_turns,
                            attempt: 1,
                            chain_index: 0,
                            attempts_on_model: 1,
                            provider,
                            model,
                            state: ModelState::Sent {
                                request_id,
                                sent_ts: ts,
                            },
                            failures: Vec::new(),
                        });
                    }
                }
            }
            Event::ModelResponse(response) => self.fold_response(ts, *response),
            Event::ModelFailure(failure) => self.fold_failure(*failure),
            Event::Reasoning { .. } => {}
            Event::Text { agent, text, .. } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                if run.first_text_ms.is_none() {
                    run.first_text_ms = Some(ts.saturating_sub(run.started_ts).max(0));
                }
                if !v2 {
                    let frame = run.frame_mut();
                    frame.answer = Some(text.clone());
                    let number = frame.number;
                    self.history.push(Message::Assistant {
                        agent,
                        frame: number,
                        content: vec![Block::Text { text }],
                    });
                }
            }
            Event::ToolCall {
                agent,
                id,
                tool,
                args,
            } => {
                self.record_call(v2, &agent, &id, &tool, || args.clone());
                let run = self.run.as_mut().expect("checked: a run is active");
                run.pending = Some(Pending {
                    id,
                    agent,
                    tool,
                    args,
                    called_ts: ts,
                    gate: Gate::Clear,
                    approved: false,
                });
            }
            Event::ToolReturned {
                agent,
                id,
                tool,
                result,
                is_error,
                ..
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                if let Some(pending) = run.pending.take() {
                    let ms = ts.saturating_sub(pending.called_ts).max(0);
                    run.tool_ms = run.tool_ms.saturating_add(ms);
                    run.tool_timings.push(ToolTiming {
                        tool_name: tool,
                        tool_invocation_id: id.clone(),
                        duration_ms: ms,
                    });
                }
                self.record_result(agent, id, result, is_error);
            }
            Event::ToolAgentCall {
                agent,
                id,
                target,
                prompt,
            } => {
                self.record_call(v2, &agent, &id, crate::spec::CALL_AGENT, || {
                    let args = serde_json::json!({"agent": target, "prompt": prompt}).to_string();
                    RawValue::from_string(args).expect("json! is JSON")
                });
                let run = self.run.as_mut().expect("checked: a run is active");
                self.frames_started += 1;
                let number = self.frames_started;
                self.history.push(Message::User {
                    agent: target.clone(),
                    frame: number,
                    content: prompt.clone(),
                });
                run.frames
                    .push(Frame::new(number, target, prompt, Some(id), ts));
            }
            Event::ToolAgentResult {
                agent,
                id,
                result,
                is_error,
                ..
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                let child = run.frames.pop().expect("checked: a sub-agent frame");
                run.sub_agent_ms = run
                    .sub_agent_ms
                    .saturating_add(ts.saturating_sub(child.started_ts).max(0));
                self.record_result(agent, id, result, is_error);
            }
            Event::Data { .. } | Event::ToolEmitted { .. } => {}
            Event::Finish { reason, .. } => {
                // The run's decisions are over: nothing it waited for is outstanding now.
                if let Some(run) = self.run.as_mut() {
                    run.pending = None;
                    run.model = None;
                }
                self.end_run(reason.as_str())
            }
            Event::Error { .. } => self.end_run("error"),
            Event::DataPlan {
                plan_id,
                spec_name,
                actions,
                context,
            } => {
                let status = self.plans.get(&plan_id).and_then(|plan| plan.status);
                self.plans.insert(
                    plan_id.clone(),
                    Plan {
                        id: plan_id,
                        spec_name,
                        actions,
                        context,
                        status,
                    },
                );
            }
            Event::PlanStatusChange { plan_id, to, .. } => {
                if let Some(plan) = self.plans.get_mut(&plan_id) {
                    plan.status = Some(to);
                }
            }
            Event::ApprovalRequired(request) => {
                let required = request.required();
                let pending = self.pending_mut();
                pending.gate = Gate::Waiting {
                    approval_id: request.id,
                    expires_at: request.expires_at,
                    required,
                    approvers: Vec::new(),
                };
            }
            Event::ApprovalProgress { approver, .. } => {
                if let Gate::Waiting { approvers, .. } = &mut self.pending_mut().gate {
                    approvers.push(approver);
                }
            }
            Event::Fork { .. } => {
                if let Some(pending) = self.run.as_mut().and_then(|run| run.pending.as_mut()) {
                    pending.settle(GateEvent::Reopen);
                }
            }
            Event::ApprovalDecided {
                id,
                outcome,
                reason,
                ..
            } => {
                let on = approval::decision_event(outcome, reason.as_deref());
                self.pending_mut().settle(on);
                self.resolved_approvals.insert(id);
            }
        }
    }

    /// A call the model asked for is made: counted, and written into the history as the
    /// model's when the log is format 1 (which did not log the model's answers).
    fn record_call(
        &mut self,
        v2: bool,
        agent: &str,
        id: &str,
        name: &str,
        args: impl FnOnce() -> Box<RawValue>,
    ) {
        let run = self.run.as_mut().expect("checked: a run is active");
        run.calls += 1;
        let frame = run.frame_mut();
        frame.calls += 1;
        if v2 {
            frame.queue.pop_front();
            return;
        }
        let number = frame.number;
        self.history.push(Message::Assistant {
            agent: agent.to_owned(),
            frame: number,
            content: vec![Block::ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                args: args(),
                args_error: None,
            }],
        });
    }

    /// A call's answer reaches the frame that made it (the top one, once a sub-agent's frame
    /// is popped).
    fn record_result(&mut self, agent: String, id: String, result: Box<RawValue>, is_error: bool) {
        let frame = self
            .run
            .as_mut()
            .expect("checked: a run is active")
            .frame_mut();
        frame.last_result = Some(result.clone());
        let number = frame.number;
        self.history.push(Message::ToolResult {
            agent,
            frame: number,
            tool_invocation_id: id,
            result,
            is_error,
        });
    }

    fn fold_response(&mut self, ts: i64, response: ModelResponse) {
        let run = self.run.as_mut().expect("checked: a run is active");
        run.model = None;
        let live = !crate::interpreter::is_interpreter(&response.provider);
        if response.provider != crate::interpreter::NOOP {
            run.llm_calls += 1;
        }
        run.llm_ms = run.llm_ms.saturating_add(response.latency_ms.max(0));
        if run.ttft_ms.is_none() {
            if let Some(ttft) = response.ttft_ms {
                // From the start of the run to the first streamed token of its first answer.
                let sent = ts.saturating_sub(response.latency_ms.max(0));
                run.ttft_ms = Some(sent.saturating_sub(run.started_ts).max(0) + ttft.max(0));
            }
        }
        let agent = response.agent;
        add_usage(
            run,
            &mut self.usage,
            &response.model,
            &response.provider,
            response.usage,
            live,
        );
        let frame = run.frame_mut();
        frame.turns += 1;
        frame.usage.add(response.usage);
        frame.last_stop = Some(response.stop_reason);
        let mut texts: Vec<&str> = Vec::new();
        for block in &response.content {
            match block {
                Block::Text { text } => texts.push(text),
                Block::ToolCall {
                    id,
                    name,
                    args,
                    args_error,
                } => frame.queue.push_back(QueuedCall {
                    id: id.clone(),
                    name: name.clone(),
                    args: args.clone(),
                    args_error: args_error.clone(),
                }),
                Block::Reasoning { .. } => {}
            }
        }
        if frame.queue.is_empty() {
            frame.answer = Some(texts.join("\n"));
        }
        let number = frame.number;
        self.history.push(Message::Assistant {
            agent,
            frame: number,
            content: response.content,
        });
    }

    fn fold_failure(&mut self, failure: ModelFailure) {
        let run = self.run.as_mut().expect("checked: a run is active");
        if failure.kind == crate::event::FailureKind::Timeout {
            run.had_timeout = true;
        }
        let wait = run.model.as_mut().expect("checked: a request is out");
        wait.failures.push(format!(
            "attempt {} ({} {}): {} - {}",
            failure.attempt,
            failure.provider,
            failure.model,
            failure.kind.as_str(),
            failure.message
        ));
        wait.state = match failure.recovery {
            Recovery::Retry { at } => ModelState::RetryAt { at },
            Recovery::Fallback { provider, model } => ModelState::Fallback { provider, model },
            Recovery::GiveUp => ModelState::GaveUp,
        };
        if wait.state != ModelState::GaveUp {
            run.retry_count += 1;
        }
    }

    fn pending_mut(&mut self) -> &mut Pending {
        self.run
            .as_mut()
            .and_then(|run| run.pending.as_mut())
            .expect("checked: a call is outstanding")
    }

    fn end_run(&mut self, outcome: &str) {
        if let Some(run) = self.run.as_ref() {
            self.last_run = Some(LastRun {
                run_id: run.id.clone(),
                outcome: outcome.to_owned(),
            });
        }
    }

    /// The messages the agent of the running top frame sees: its whole conversation in this
    /// thread when `stateful`, else only its current frame's.
    pub fn conversation(&self, stateful: bool) -> Vec<&Message> {
        let Some(frame) = self.run.as_ref().map(Run::frame) else {
            return Vec::new();
        };
        self.history
            .iter()
            .filter(|m| {
                if stateful {
                    m.agent() == frame.agent
                } else {
                    m.frame() == frame.number
                }
            })
            .collect()
    }

    /// Whether tool call `id` of this thread was answered already.
    pub fn answered(&self, id: &str) -> bool {
        self.history.iter().any(|m| {
            matches!(m, Message::ToolResult { tool_invocation_id, .. } if tool_invocation_id == id)
        })
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            thread_id: &self.id,
            tenant: &self.tenant,
            status: self.phase().as_str(),
            last_seq: self.last_seq,
            runs: self.runs,
            usage: self.usage,
            last_run: self.last_run.as_ref(),
            run: self.run.as_ref().map(|run| RunSnapshot {
                run_id: &run.id,
                steps: run.steps,
                calls: run.calls,
                frames: run
                    .frames
                    .iter()
                    .map(|f| FrameSnapshot {
                        agent: &f.agent,
                        turns: f.turns,
                        calls: f.calls,
                    })
                    .collect(),
                pending: run.pending.as_ref().map(|p| PendingSnapshot {
                    tool_invocation_id: &p.id,
                    tool_name: &p.tool,
                    approval: match &p.gate {
                        Gate::Waiting {
                            approval_id,
                            expires_at,
                            required,
                            approvers,
                        } => Some(ApprovalSnapshot {
                            id: approval_id,
                            expires_at: *expires_at,
                            approvals_required: (*required > 1).then_some(*required),
                            approvers: (*required > 1).then_some(approvers.as_slice()),
                        }),
                        _ => None,
                    },
                }),
                model: run.model.as_ref().map(|m| ModelSnapshot {
                    turn: m.turn,
                    attempt: m.attempt,
                    provider: &m.provider,
                    model: &m.model,
                    request_id: match &m.state {
                        ModelState::Sent { request_id, .. } => Some(request_id),
                        _ => None,
                    },
                    retry_at: match &m.state {
                        ModelState::RetryAt { at } => Some(*at),
                        _ => None,
                    },
                }),
            }),
            plans: self
                .plans
                .values()
                .map(|plan| PlanSnapshot {
                    plan_id: &plan.id,
                    spec_name: &plan.spec_name,
                    status: plan.status.map(plan::PlanStatus::as_str),
                    actions: &plan.actions,
                    context: &plan.context,
                })
                .collect(),
            messages: &self.history,
        }
    }
}

/// Events only format 2 writes.
fn is_format_2(event: &Event) -> bool {
    matches!(
        event,
        Event::StepStart { usage: None, .. }
            | Event::ModelResponse(_)
            | Event::ModelFailure(_)
            | Event::AgentStart { .. }
            | Event::AgentEnd { .. }
            | Event::Reasoning { .. }
            | Event::Fork { .. }
    )
}

fn add_usage(
    run: &mut Run,
    thread_usage: &mut Usage,
    model: &str,
    provider: &str,
    usage: Usage,
    live: bool,
) {
    run.usage.add(usage);
    thread_usage.add(usage);
    let agent = run.frame().agent.clone();
    match run
        .by_model
        .iter_mut()
        .find(|m| m.agent == agent && m.model == model && m.provider == provider)
    {
        Some(found) => {
            found.usage.add(usage);
            found.live |= live;
        }
        None => run.by_model.push(ModelUsage {
            agent,
            model: model.to_owned(),
            provider: provider.to_owned(),
            usage,
            live,
        }),
    }
}

impl EventKind {
    /// Events a stream shows (the rest are logged for replay only).
    pub fn is_streamed(self) -> bool {
        !matches!(self, EventKind::RunStart | EventKind::ModelResponse)
    }
}

/// The read-only view of a thread that `snapshot()` serializes.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot<'a> {
    pub thread_id: &'a str,
    pub tenant: &'a str,
    pub status: &'static str,
    pub last_seq: u64,
    pub runs: u32,
    pub usage: Usage,
    pub last_run: Option<&'a LastRun>,
    pub run: Option<RunSnapshot<'a>>,
    pub plans: Vec<PlanSnapshot<'a>>,
    pub messages: &'a [Message],
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PlanSnapshot<'a> {
    pub plan_id: &'a str,
    pub spec_name: &'a str,
    pub status: Option<&'static str>,
    pub actions: &'a RawValue,
    pub context: &'a RawValue,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSnapshot<'a> {
    pub id: &'a str,
    pub expires_at: Option<i64>,
    /// At a gate that needs several approvers: how many, and who approved so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<&'a [String]>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ModelSnapshot<'a> {
    pub turn: u32,
    pub attempt: u32,
    pub provider: &'a str,
    pub model: &'a str,
    pub request_id: Option<&'a str>,
    pub retry_at: Option<i64>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RunSnapshot<'a> {
    pub run_id: &'a str,
    pub steps: u32,
    pub calls: u32,
    pub frames: Vec<FrameSnapshot<'a>>,
    pub pending: Option<PendingSnapshot<'a>>,
    pub model: Option<ModelSnapshot<'a>>,
}

#[derive(Serialize, Debug)]
pub struct FrameSnapshot<'a> {
    pub agent: &'a str,
    pub turns: u32,
    pub calls: u32,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PendingSnapshot<'a> {
    pub tool_invocation_id: &'a str,
    pub tool_name: &'a str,
    pub approval: Option<ApprovalSnapshot<'a>>,
}
