//! The engine's own tools and the approval gate every call passes through.
//!
//! - `storePlan` validates a plan against its spec and stores it as a draft (no gate: the
//!   seed gates plans where they run).
//! - `getPlan` reads it back.
//! - `executePlan` puts a draft through the plans gate (auto-approved when the executing
//!   agent's rule is `never`), then sends the approved plan to the action dispatcher as a
//!   `PlanStep`; its answer marks the plan executed or failed.
//! - Any other call passes the tools gate before it goes out as a `ToolInvocation`.
//!
//! The gate: every move is a row of the table in `approval.rs`, taken by `gate_move`, and what
//! the engine does follows from the state the row leads to: `Clear` or `Approved` sends the
//! call out, `Checking` asks the runtime (`ApprovalCheck`), `Waiting` asks a human (or N:
//! `approval-required` + an `ApprovalRequest` effect), `Decided` answers the call with the
//! decision. Imports `decide` (the loop these extend).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::approval::{self, Channel, Gate, GateEvent, GateState, Outcome, Rule};
use crate::codec::write_approval_request;
use crate::decide::{check_value, error_body, error_result, raw, Decider};
use crate::error::ResultCode;
use crate::event::{ApprovalKind, ApprovalRequest, Event, Tally};
use crate::ids;
use crate::inputs::{APPROVAL_CHECK, APPROVAL_REQUEST, PLAN_STEP};
use crate::plan::{self as plans, PlanStatus};
use crate::schema;
use crate::spec::{EXECUTE_PLAN, STORE_PLAN};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanArgs {
    pub plan_id: String,
    #[serde(default)]
    pub spec_name: Option<String>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// A decision on the waiting approval, as it is logged.
pub struct Decision {
    pub id: String,
    pub outcome: Outcome,
    pub feedback: Option<String>,
    pub partial: Option<Box<RawValue>>,
    pub approver: Option<String>,
    /// `timeout` when the deadline decided.
    pub reason: Option<String>,
}

impl Decider<'_, '_> {
    pub fn plan_args(&self) -> PlanArgs {
        serde_json::from_str(self.pending().args.get()).expect("validated against its schema")
    }

    pub fn set_plan_status(&mut self, plan_id: &str, to: PlanStatus) {
        let plan = self.thread.plans.get(plan_id);
        let from = plan.and_then(|p| p.status);
        let aliases = plan.and_then(|plan| {
            let to_alias = self.spec.plan_alias(&plan.spec_name, to.as_str())?;
            let from_alias = from
                .and_then(|from| self.spec.plan_alias(&plan.spec_name, from.as_str()))
                .map(str::to_owned);
            Some((from_alias, to_alias.to_owned()))
        });
        self.emit(Event::PlanStatusChange {
            plan_id: plan_id.to_owned(),
            from,
            to,
            aliases,
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

    fn plan_not_found(&mut self, plan_id: &str) {
        self.refuse(
            ResultCode::PlanNotFound,
            &format!("no plan `{plan_id}` in this thread; store it with storePlan first"),
        );
    }

    pub fn get_plan(&mut self) {
        let args = self.plan_args();
        match self.plan_json(&args.plan_id) {
            Some(plan) => self.answer(raw(&plan), false),
            None => self.plan_not_found(&args.plan_id),
        }
    }

    /// Validate and store a plan as a draft.
    pub fn store_plan(&mut self) {
        let args = self.plan_args();
        let spec_name = args.spec_name.unwrap_or_default();
        let body = args.body.unwrap_or_default();
        let Some(kind) = self.spec.plan_kind(&spec_name) else {
            let known = self.spec.plan_names().join(", ");
            self.refuse(
                ResultCode::PlanUnknownSpec,
                &format!("no plan spec `{spec_name}`; this runtime's plans are: {known}"),
            );
            return;
        };
        if let Err(violations) = kind.schema.validate(&body) {
            let message = format!(
                "plan `{}` does not match plan spec `{spec_name}`: {}",
                args.plan_id,
                schema::describe(&violations)
            );
            self.refuse(ResultCode::PlanInvalid, &message);
            return;
        }
        let current = self.thread.plans.get(&args.plan_id).and_then(|p| p.status);
        if let Some(status) = current.filter(|s| *s != PlanStatus::Draft) {
            // The plan table lets a revise take a pending plan back to draft, but storing over a
            // plan that is not a draft is refused whatever its status (found by a walk that
            // cancelled a run at the plan's gate, then stored the plan again).
            let message = match plans::check(&args.plan_id, Some(status), PlanStatus::Draft) {
                Err(err) => err.message,
                Ok(()) => format!(
                    "plan `{}` is {}, not a draft; store a new plan under a new id",
                    args.plan_id,
                    status.as_str()
                ),
            };
            self.refuse(ResultCode::PlanInvalidTransition, &message);
            return;
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
        let result = serde_json::json!({"planId": args.plan_id, "status": "draft"});
        self.answer(raw(&result), false);
    }

    /// Run a plan: through its gate when it is a draft; returns true when the run now waits.
    pub fn execute_plan(&mut self) -> bool {
        let args = self.plan_args();
        let status = match self.thread.plans.get(&args.plan_id) {
            Some(plan) => plan.status,
            None => {
                self.plan_not_found(&args.plan_id);
                return false;
            }
        };
        match status {
            Some(PlanStatus::Draft) => {
                self.gate(Channel::Plans);
                // Waits unless the gate let the plan through at once.
                self.thread.pending().is_some()
            }
            Some(PlanStatus::Approved) => {
                self.set_plan_status(&args.plan_id, PlanStatus::Executing);
                self.invoke();
                true
            }
            other => {
                let err = plans::check(&args.plan_id, other, PlanStatus::Executing)
                    .expect_err("only drafts and approved plans run");
                // The plan table's refusal, as the model sees it.
                debug_assert_eq!(
                    err.code.as_str(),
                    ResultCode::PlanInvalidTransition.as_str()
                );
                self.refuse(ResultCode::PlanInvalidTransition, &err.message);
                false
            }
        }
    }

    /// The rule for the outstanding call on `channel`.
    pub fn rule(&self, channel: Channel) -> Rule {
        let pending = self.pending();
        self.spec
            .rule(channel, self.agent(&pending.agent), &pending.tool)
    }

    pub fn channel(&self) -> Channel {
        if matches!(self.pending().tool.as_str(), EXECUTE_PLAN | STORE_PLAN) {
            Channel::Plans
        } else {
            Channel::Tools
        }
    }

    /// Take `on` from `from` through the gate table (counting the row), and return where it
    /// leads. A move the table does not allow is a bug in the engine, never an input's fault:
    /// inputs are checked before any move.
    pub fn gate_move(&mut self, from: GateState, on: GateEvent) -> GateState {
        let row = approval::gate_row(from, on)
            .unwrap_or_else(|| unreachable!("the engine moved a {from:?} gate on {on:?}"));
        self.gate_moves[row] += 1;
        approval::GATE_TRANSITIONS[row].2
    }

    /// Where the outstanding call's gate stands. The log keeps `New`, `Checking`, `Clear` as
    /// one state; the rule tells them apart (a call whose plan was approved before passed no
    /// gate, and is `Clear`).
    pub fn gate_state(&self) -> GateState {
        let pending = self.pending();
        let logged = pending.gate_state();
        if logged != GateState::New {
            return logged;
        }
        if pending.tool == EXECUTE_PLAN {
            let status = self
                .thread
                .plans
                .get(&self.plan_args().plan_id)
                .and_then(|p| p.status);
            if matches!(status, Some(PlanStatus::Approved | PlanStatus::Executing)) {
                return GateState::Clear;
            }
        }
        match self.rule(self.channel()) {
            Rule::Never => GateState::Clear,
            Rule::Predicate(_) => GateState::Checking,
            Rule::Always | Rule::Quorum(_) => GateState::New,
        }
    }

    /// Put the new call through its gate: the rule moves it.
    pub fn gate(&mut self, channel: Channel) {
        let rule = self.rule(channel);
        let on = match &rule {
            Rule::Never => GateEvent::RuleNever,
            Rule::Predicate(_) => GateEvent::RulePredicate,
            Rule::Always | Rule::Quorum(_) => GateEvent::RuleAlways,
        };
        match (self.gate_move(GateState::New, on), rule) {
            (GateState::Clear, _) => self.cleared(),
            (GateState::Checking, Rule::Predicate(predicate)) => self.check(&predicate),
            (GateState::Waiting, rule) => self.request_approval(rule.approvals_required()),
            (to, rule) => unreachable!("rule {rule:?} moved a new gate to {to:?}"),
        }
    }

    /// The runtime's answer to the check of a predicate rule.
    pub fn checked(&mut self, required: bool) {
        let on = if required {
            GateEvent::CheckRequired
        } else {
            GateEvent::CheckNotRequired
        };
        match self.gate_move(GateState::Checking, on) {
            GateState::Waiting => self.request_approval(1),
            _ => self.cleared(),
        }
    }

    /// A fork copied a gate that was waiting: the source's approval id names the source, so
    /// the fork asks again under its own.
    pub fn reopen_gate(&mut self, required: u32) {
        let reopened = self.gate_move(GateState::Waiting, GateEvent::Reopen);
        self.gate_move(reopened, GateEvent::AskAgain);
        self.request_approval(required);
    }

    /// The gate let the call through: a tool goes out; a plan is approved and runs.
    pub fn cleared(&mut self) {
        if self.pending().tool == STORE_PLAN {
            // A format 1 run paused at the gate its engine put on storePlan.
            let plan_id = self.plan_args().plan_id;
            self.set_plan_status(&plan_id, PlanStatus::Approved);
            let result = serde_json::json!({"planId": plan_id, "status": "approved"});
            self.answer(raw(&result), false);
            return;
        }
        if self.pending().tool == EXECUTE_PLAN {
            let plan_id = self.plan_args().plan_id;
            let status = self.thread.plans.get(&plan_id).and_then(|p| p.status);
            if matches!(
                status,
                Some(PlanStatus::Draft | PlanStatus::PendingApproval)
            ) {
                self.set_plan_status(&plan_id, PlanStatus::Approved);
            }
            self.set_plan_status(&plan_id, PlanStatus::Executing);
        }
        self.invoke();
    }

    /// Ask `required` distinct humans: `approval-required`, and the request for approval
    /// services.
    pub fn request_approval(&mut self, required: u32) {
        let pending = self.pending();
        let run_id = self.thread.run_id().unwrap_or_default().to_owned();
        let id = approval::approval_id(&self.thread.id, &run_id, &pending.id);
        let agent = pending.agent.clone();
        let tool_call = pending.id.clone();
        let timeout = self.spec.approval_timeout_ms(self.agent(&agent));
        let expires_at = timeout.map(|ms| self.cause.ts.saturating_add(ms as i64));
        let (kind, target, payload, correlation_id) = if pending.tool == EXECUTE_PLAN {
            let plan_id = self.plan_args().plan_id;
            // A fork re-opening a plan's gate finds the plan pending already.
            let status = self.thread.plans.get(&plan_id).and_then(|p| p.status);
            if status != Some(PlanStatus::PendingApproval) {
                self.set_plan_status(&plan_id, PlanStatus::PendingApproval);
            }
            let plan = self.plan_json(&plan_id).expect("checked: the plan exists");
            (ApprovalKind::Plan, plan_id.clone(), raw(&plan), plan_id)
        } else {
            (
                ApprovalKind::Tool,
                pending.tool.clone(),
                pending.args.clone(),
                tool_call,
            )
        };
        let request = ApprovalRequest {
            id: id.clone(),
            kind,
            target,
            payload,
            resource_id: self.thread.tenant.clone(),
            thread_id: self.thread.id.clone(),
            correlation_id,
            expires_at,
            agent: Some(agent),
            approvals_required: (required > 1).then_some(required),
        };
        let mut effect = Vec::new();
        write_approval_request(&request, &mut effect);
        self.emit(Event::ApprovalRequired(Box::new(request)));
        let causation = self.last_event_id();
        self.effect(APPROVAL_REQUEST, &id, &causation, &effect);
    }

    /// Ask the runtime to evaluate a dynamic rule.
    pub fn check(&mut self, predicate: &str) {
        let pending = self.pending();
        let run_id = self.thread.run_id().unwrap_or_default();
        let id = ids::check_id(&self.thread.tenant, &self.thread.id, run_id, &pending.id);
        // A plan gate's predicate is asked about the plan (kind `plan`, target its id, the
        // plan itself as args), as the human at that gate would be.
        let plan = (pending.tool == EXECUTE_PLAN).then(|| self.plan_args().plan_id);
        let (kind, target, args) = match plan.and_then(|id| Some((self.plan_json(&id)?, id))) {
            Some((plan, plan_id)) => ("plan", plan_id, plan),
            None => (
                "tool",
                pending.tool.clone(),
                serde_json::from_str::<serde_json::Value>(pending.args.get()).unwrap_or_default(),
            ),
        };
        let payload = serde_json::json!({
            "check_id": id,
            "predicate": predicate,
            "kind": kind,
            "target": target,
            "tool": pending.tool,
            "agent": pending.agent,
            "args": args,
        });
        let causation = self.last_event_id();
        self.effect(
            APPROVAL_CHECK,
            &id,
            &causation,
            payload.to_string().as_bytes(),
        );
    }

    /// Where the waiting quorum gate stands once `approving` is counted (None: one approver).
    fn tally(&self, approving: bool) -> Option<Tally> {
        match &self.thread.pending()?.gate {
            Gate::Waiting {
                required,
                approvers,
                ..
            } if *required > 1 => Some(Tally {
                approvals: approvers.len() as u32 + u32::from(approving),
                required: *required,
            }),
            _ => None,
        }
    }

    /// One more approver of a gate that needs several: counted, and the gate keeps waiting.
    pub fn approve_in_part(&mut self, id: String, approver: String) {
        self.gate_move(GateState::Waiting, GateEvent::ApproveShort);
        let tally = self.tally(true).expect("checked: a quorum gate is waiting");
        self.emit(Event::ApprovalProgress {
            id,
            approver,
            tally,
        });
    }

    /// The waiting approval's deadline passed: it resolves as rejected, reason `timeout`.
    pub fn deadline_passed(&mut self, id: String) {
        self.decide(Decision {
            id,
            outcome: Outcome::Reject,
            feedback: Some("no decision before the approval deadline".to_owned()),
            partial: None,
            approver: None,
            reason: Some(approval::DEADLINE_REASON.to_owned()),
        });
    }

    /// Log the decision that closes the waiting gate (a human's, or the deadline's), then do
    /// what the state it leads to asks.
    pub fn decide(&mut self, decision: Decision) {
        let Decision {
            id,
            outcome,
            feedback,
            partial,
            approver,
            reason,
        } = decision;
        let on = approval::decision_event(outcome, reason.as_deref());
        let to = self.gate_move(GateState::Waiting, on);
        let tally = self.tally(outcome == Outcome::Approve);
        self.emit(Event::ApprovalDecided {
            id,
            outcome,
            partial: partial.clone(),
            feedback: feedback.clone(),
            approver,
            reason,
            tally,
        });
        if to == GateState::Approved {
            self.cleared();
            return;
        }
        let tool = &self.pending().tool;
        if tool != EXECUTE_PLAN && tool != STORE_PLAN {
            // The seed: for tools, revise counts as reject; the model sees the feedback.
            let message = match &feedback {
                Some(feedback) => format!("the call was rejected: {feedback}"),
                None => "the call was rejected".to_owned(),
            };
            self.refuse(ResultCode::ApprovalRejected, &message);
            return;
        }
        let plan_id = self.plan_args().plan_id;
        self.set_plan_status(&plan_id, PlanStatus::Draft);
        if outcome == Outcome::Revise {
            let partial: serde_json::Value = partial
                .and_then(|p| serde_json::from_str(p.get()).ok())
                .unwrap_or(serde_json::Value::Null);
            let result = serde_json::json!({
                "rejected": true, "should_revise": true, "plan_id": plan_id,
                "partial": partial, "feedback": feedback, "status": "draft",
            });
            self.answer(raw(&result), false);
        } else {
            let message = format!(
                "Plan {plan_id} rejected: {}",
                feedback.as_deref().unwrap_or("no reason given")
            );
            self.refuse(ResultCode::PlanRejected, &message);
        }
    }

    /// A tool or the action dispatcher answered the outstanding call.
    pub fn finish_call(&mut self, outcome: Result<Box<RawValue>, (String, String)>) {
        let tool = self.pending().tool.clone();
        if tool == EXECUTE_PLAN {
            self.finish_plan(outcome);
            return;
        }
        let (result, is_error) = match outcome {
            Err((code, message)) => (error_body(&code, &message), true),
            Ok(output) => match self.spec.tool(&tool).and_then(|t| t.output.as_ref()) {
                Some(schema) => match check_value(schema, &output) {
                    Ok(()) => (output, false),
                    Err(problem) => (
                        error_result(
                            ResultCode::ToolOutputInvalid,
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

    /// The dispatcher's answer: the plan is executed (its result is the dispatcher's, with the
    /// actions it ran under `details.resolvedActions`) or failed.
    fn finish_plan(&mut self, outcome: Result<Box<RawValue>, (String, String)>) {
        let plan_id = self.plan_args().plan_id;
        let output = outcome.and_then(|output| {
            check_value(self.spec.dispatch_output(), &output)
                .map(|()| output)
                .map_err(|problem| {
                    (
                        ResultCode::PlanFailed.as_str().to_owned(),
                        format!(
                            "the action dispatcher must return None or {{entitiesAffected: int >= 0, summary?: str, details?: any}}: {problem}"
                        ),
                    )
                })
        });
        match output {
            Ok(output) => {
                self.set_plan_status(&plan_id, PlanStatus::Executed);
                let actions: serde_json::Value = self
                    .thread
                    .plans
                    .get(&plan_id)
                    .and_then(|plan| serde_json::from_str(plan.actions.get()).ok())
                    .unwrap_or_default();
                let mut result: serde_json::Value =
                    serde_json::from_str(output.get()).unwrap_or_default();
                if !result.is_object() {
                    result = serde_json::json!({"entitiesAffected": 0});
                }
                let details = match result.get_mut("details").map(serde_json::Value::take) {
                    Some(serde_json::Value::Object(mut details)) => {
                        details.insert("resolvedActions".to_owned(), actions);
                        serde_json::Value::Object(details)
                    }
                    Some(serde_json::Value::Null) | None => {
                        serde_json::json!({"resolvedActions": actions})
                    }
                    Some(other) => serde_json::json!({"value": other, "resolvedActions": actions}),
                };
                result["details"] = details;
                result["planId"] = serde_json::json!(plan_id);
                result["status"] = serde_json::json!("executed");
                self.answer(raw(&result), false);
            }
            Err((code, message)) => {
                self.set_plan_status(&plan_id, PlanStatus::Failed);
                let message = format!("plan `{plan_id}` failed ({code}): {message}");
                self.refuse(ResultCode::PlanFailed, &message);
            }
        }
    }

    /// The approved plan goes to the action dispatcher.
    pub fn plan_step(&mut self, effect_id: String, causation: String) {
        let pending = self.pending();
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
    }

    /// Re-issue what the outstanding call still waits for (resume after a restart).
    pub fn reissue_call(&mut self) {
        if self.thread.pending().is_none() {
            return;
        }
        match self.gate_state() {
            GateState::Clear | GateState::Approved => self.invoke(),
            GateState::Checking => match self.rule(self.channel()) {
                Rule::Predicate(predicate) => self.check(&predicate),
                rule => unreachable!("a checking gate under rule {rule:?}"),
            },
            // A crash cut the decision short of its gate: the rule moves it now.
            GateState::New => self.gate(self.channel()),
            // A human decides these; the approval request went out when the gate closed.
            GateState::Waiting | GateState::Decided | GateState::Reopened | GateState::Closed => {}
        }
    }
}
