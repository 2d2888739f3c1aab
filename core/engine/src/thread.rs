//! A thread's state, folded from its run log, and the fold itself (`apply`).
//!
//! `apply` is the only place state changes: live, the engine decides an event and applies it;
//! on replay, the log's events are applied in order. `apply` checks everything first (sequence,
//! run table, that ids match what is outstanding) and mutates only once nothing can fail, so a
//! rejected event leaves the thread untouched.
//!
//! Imports `event`, `run`, `interpreter` (the cached script), `error`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::approval::{Gate, Outcome};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{Event, EventKind, Usage};
use crate::interpreter::Script;
use crate::plan::{self, Plan};
use crate::run::{self, Phase};

/// One entry of the conversation history, rebuilt from the log.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Message {
    User {
        agent: String,
        content: String,
    },
    Assistant {
        agent: String,
        content: String,
    },
    #[serde(rename_all = "camelCase")]
    ToolCall {
        agent: String,
        tool_invocation_id: String,
        tool_name: String,
        args: Box<RawValue>,
    },
    #[serde(rename_all = "camelCase")]
    ToolResult {
        tool_invocation_id: String,
        result: Box<RawValue>,
        is_error: bool,
    },
}

/// One agent working inside a run: the root agent, or a sub-agent a coordinator called.
#[derive(Clone, Debug)]
pub struct Frame {
    pub agent: String,
    pub prompt: String,
    /// The `call_agent` invocation that started this frame (None for the root).
    pub call_id: Option<String>,
    pub turns: u32,
    pub calls: u32,
    pub usage: Usage,
    pub answer: Option<String>,
    pub last_result: Option<Box<RawValue>>,
    /// The parsed scripted prompt; derived from `prompt`, cached.
    pub script: Option<Arc<Script>>,
}

impl Frame {
    fn new(agent: String, prompt: String, call_id: Option<String>) -> Self {
        Frame {
            agent,
            prompt,
            call_id,
            turns: 0,
            calls: 0,
            usage: Usage::default(),
            answer: None,
            last_result: None,
            script: None,
        }
    }
}

/// The tool invocation a run is waiting for.
#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
pub struct Run {
    pub id: String,
    pub started_ts: i64,
    pub phase: Phase,
    pub frames: Vec<Frame>,
    /// Calls decided in this run, across frames (scripted ids are numbered by it).
    pub calls: u32,
    pub steps: u32,
    pub usage: Usage,
    /// Usage per model, in first-use order.
    pub by_model: Vec<(String, Usage)>,
    pub tool_ms: i64,
    pub pending: Option<Pending>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub run_id: String,
    pub outcome: String,
}

#[derive(Clone, Debug)]
pub struct Thread {
    pub id: String,
    pub tenant: String,
    pub last_seq: u64,
    pub runs: u32,
    pub run: Option<Run>,
    pub history: Vec<Message>,
    pub usage: Usage,
    pub last_run: Option<LastRun>,
    /// Plans stored in this thread, by id.
    pub plans: BTreeMap<String, Plan>,
    /// Approvals already decided (a second decision is refused, not folded).
    pub resolved_approvals: BTreeSet<String>,
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
        }
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.run.as_ref().and_then(|run| run.pending.as_ref())
    }

    /// The deadline of the approval this thread waits for, if it has one.
    pub fn deadline(&self) -> Option<i64> {
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

    /// Fold one event logged at `seq` and time `ts`.
    pub fn apply(&mut self, seq: u64, ts: i64, event: Event) -> Result<()> {
        if seq != self.last_seq + 1 {
            return Err(diverged(format!(
                "thread `{}` expected event seq {}, found {seq}; the log has a gap or a duplicate",
                self.id,
                self.last_seq + 1
            )));
        }
        let kind = event.kind();
        let from = self.phase();
        let to = run::next(from, kind).ok_or_else(|| {
            diverged(format!(
                "thread `{}`: a {kind:?} event cannot happen while the thread is {}",
                self.id,
                from.as_str()
            ))
        })?;
        self.check(&event)?;
        self.fold(ts, event);
        self.last_seq = seq;
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
        match event {
            Event::StepStart { agent, .. }
            | Event::Text { agent, .. }
            | Event::ToolCall { agent, .. }
            | Event::ToolAgentCall { agent, .. } => same_agent(agent),
            Event::ToolResult { id, .. } => match &run.pending {
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
            Event::PlanStatusChange { plan_id, from, to } => {
                let current = self.plans.get(plan_id).map(|plan| plan.status);
                match current {
                    Some(status) if status == *from => plan::check(plan_id, *from, *to)
                        .map_err(|e| diverged(e.message)),
                    _ => Err(diverged(format!(
                        "thread `{}`: plan `{plan_id}` changes from {:?}, but its status is {:?}",
                        self.id, from, current
                    ))),
                }
            }
            Event::ApprovalRequired { id, .. } => match &run.pending {
                Some(pending) if pending.gate == Gate::Clear && !self.resolved_approvals.contains(id) => Ok(()),
                _ => Err(diverged(format!(
                    "thread `{}`: approval `{id}` required with no undecided call outstanding",
                    self.id
                ))),
            },
            Event::ApprovalDecision { id, .. } => match run.pending.as_ref().map(|p| &p.gate) {
                Some(Gate::Waiting { approval_id, .. }) if approval_id == id => Ok(()),
                _ => Err(diverged(format!(
                    "thread `{}`: decision for approval `{id}`, which is not waiting",
                    self.id
                ))),
            },
            _ => Ok(()),
        }
    }

    /// Mutate state for an event `check` and the run table accepted. Infallible. Takes the
    /// event by value so its strings move into the state instead of being copied.
    fn fold(&mut self, ts: i64, event: Event) {
        match event {
            Event::RunStart {
                run_id,
                agent,
                prompt,
            } => {
                self.runs += 1;
                self.history.push(Message::User {
                    agent: agent.clone(),
                    content: prompt.clone(),
                });
                self.run = Some(Run {
                    id: run_id,
                    started_ts: ts,
                    phase: Phase::Running,
                    frames: vec![Frame::new(agent, prompt, None)],
                    calls: 0,
                    steps: 0,
                    usage: Usage::default(),
                    by_model: Vec::new(),
                    tool_ms: 0,
                    pending: None,
                });
            }
            Event::StepStart { model, usage, .. } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                run.steps += 1;
                run.usage.add(usage);
                match run.by_model.iter_mut().find(|(m, _)| *m == model) {
                    Some((_, total)) => total.add(usage),
                    None => run.by_model.push((model, usage)),
                }
                let frame = run
                    .frames
                    .last_mut()
                    .expect("checked: a frame has the turn");
                frame.turns += 1;
                frame.usage.add(usage);
                self.usage.add(usage);
            }
            Event::Text { agent, text } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                run.frames.last_mut().expect("checked").answer = Some(text.clone());
                self.history.push(Message::Assistant {
                    agent,
                    content: text,
                });
            }
            Event::ToolCall {
                agent,
                id,
                tool,
                args,
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                run.calls += 1;
                run.frames.last_mut().expect("checked").calls += 1;
                self.history.push(Message::ToolCall {
                    agent: agent.clone(),
                    tool_invocation_id: id.clone(),
                    tool_name: tool.clone(),
                    args: args.clone(),
                });
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
            Event::ToolResult {
                id,
                result,
                is_error,
                ..
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                if let Some(pending) = run.pending.take() {
                    run.tool_ms = run
                        .tool_ms
                        .saturating_add(ts.saturating_sub(pending.called_ts).max(0));
                }
                run.frames.last_mut().expect("checked").last_result = Some(result.clone());
                self.history.push(Message::ToolResult {
                    tool_invocation_id: id,
                    result,
                    is_error,
                });
            }
            Event::ToolAgentCall {
                agent,
                id,
                target,
                prompt,
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                run.calls += 1;
                run.frames.last_mut().expect("checked").calls += 1;
                let args = serde_json::json!({"agent": target, "prompt": prompt}).to_string();
                run.frames
                    .push(Frame::new(target, prompt, Some(id.clone())));
                self.history.push(Message::ToolCall {
                    agent,
                    tool_invocation_id: id,
                    tool_name: crate::spec::CALL_AGENT.to_owned(),
                    args: RawValue::from_string(args).expect("json! is JSON"),
                });
            }
            Event::ToolAgentResult {
                id,
                result,
                is_error,
                ..
            } => {
                let run = self.run.as_mut().expect("checked: a run is active");
                run.frames.pop();
                run.frames
                    .last_mut()
                    .expect("checked: a parent")
                    .last_result = Some(result.clone());
                self.history.push(Message::ToolResult {
                    tool_invocation_id: id.clone(),
                    result: result.clone(),
                    is_error,
                });
            }
            Event::Data { .. } | Event::ToolEmitted { .. } => {}
            Event::Finish { reason, .. } => self.end_run(reason.as_str()),
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
            Event::ApprovalRequired { id, expires_at, .. } => {
                let pending = self.pending_mut();
                pending.gate = Gate::Waiting {
                    approval_id: id,
                    expires_at,
                };
            }
            Event::ApprovalDecision { id, outcome, .. } => {
                let pending = self.pending_mut();
                if outcome == Outcome::Approve {
                    pending.gate = Gate::Clear;
                    pending.approved = true;
                } else {
                    pending.gate = Gate::Decided;
                }
                self.resolved_approvals.insert(id);
            }
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
                        } => Some(ApprovalSnapshot {
                            id: approval_id,
                            expires_at: *expires_at,
                        }),
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

impl EventKind {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventKind::Finish | EventKind::FinishCancelled | EventKind::Error
        )
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
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RunSnapshot<'a> {
    pub run_id: &'a str,
    pub steps: u32,
    pub calls: u32,
    pub frames: Vec<FrameSnapshot<'a>>,
    pub pending: Option<PendingSnapshot<'a>>,
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
