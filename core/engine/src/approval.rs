//! Approval gates: which rule applies to a call, and the gate each outstanding call sits at.
//!
//! Rules: a rule is `never`, `always`, `{"approvers": N}` (N >= 2 distinct people must approve:
//! the two-person rule) or a named predicate the runtime evaluates (a predicate that fails
//! means approval is required). The rule for a call is found by precedence, lowest
//! to highest: runtime policy < the agent's `approval` patch < the tool's own rule < the agent's
//! `tool_approvals` < runtime overrides (agent patch, then tool rule, then the rule for that
//! tool of that agent). `default` inherits.
//!
//! The gate of one outstanding call moves through this table (`GATE_TRANSITIONS`, read by
//! `gate_step`; the decide loop takes every move through it, and `Thread::apply` checks every
//! logged one against it):
//!
//! | from             | on                                  | to       | logged as                              |
//! |------------------|-------------------------------------|----------|----------------------------------------|
//! | New              | rule `never`                        | Clear    | nothing (the call goes out)            |
//! | New              | rule `always` or `{"approvers": N}` | Waiting  | `approval-required`                    |
//! | New              | rule predicate                      | Checking | nothing (an `ApprovalCheck` goes out)  |
//! | Checking         | the check says required             | Waiting  | `approval-required`                    |
//! | Checking         | the check says not required         | Clear    | nothing (the call goes out)            |
//! | Waiting          | approve short of the quorum         | Waiting  | `approval-progress`                    |
//! | Waiting          | approve (the quorum's last)         | Approved | `approval-decision`                    |
//! | Waiting          | reject                              | Decided  | `approval-decision`                    |
//! | Waiting          | revise                              | Decided  | `approval-decision`                    |
//! | Waiting          | the deadline passes                 | Decided  | `approval-decision` (reason `timeout`) |
//! | Waiting          | a fork copies the gate              | Reopened | `fork`                                 |
//! | Reopened         | ask again, under the fork's id      | Waiting  | `approval-required`                    |
//! | any but Reopened | cancel                              | Closed   | `finish` (cancelled)                   |
//!
//! Rules of the table:
//! - A call starts `New` when it is logged (`tool-call`); the rule moves it on at once. A
//!   `Decided` call is answered at once. Only a crash between two facts of one decision
//!   leaves a call `New` or `Decided` between inputs: a resume then asks the rule again (a
//!   `Decided` call waits for its cancel).
//! - A gate waits for `required` distinct approvers (1 unless the rule is a quorum); each
//!   approve short of it is logged as `approval-progress` and names its approver, and an
//!   approver who already approved is not counted again. Any reject closes the gate at once.
//! - Only a `Clear` or `Approved` call goes out to its tool; a `Decided` one is answered by the
//!   engine with the decision. A plan that was approved before (an `executePlan` of an
//!   approved plan) passes no gate: the plan table holds its approval.
//! - The log does not tell `New`, `Checking`, `Clear` and `Reopened` apart (their moves are
//!   effects, not facts): the fold keeps them as one "not at a human" state, and the decide
//!   loop tells them apart again from the rule (`Decider::gate_state`), so a resumed run asks
//!   for what it still needs.
//! - Anything else is refused: live, the engine never decides it; in a log, it is a divergence.
//!
//! Imports nothing internal but `error`.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// One approval rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    Never,
    Always,
    /// `N >= 2` distinct approvers must approve.
    Quorum(u32),
    Predicate(String),
}

impl Rule {
    /// How many distinct approvers a gate under this rule waits for.
    pub fn approvals_required(&self) -> u32 {
        match self {
            Rule::Quorum(n) => *n,
            _ => 1,
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rule::Never => s.serialize_str("never"),
            Rule::Always => s.serialize_str("always"),
            Rule::Quorum(n) => {
                let mut map = BTreeMap::new();
                map.insert("approvers", n);
                map.serialize(s)
            }
            Rule::Predicate(id) => {
                let mut map = BTreeMap::new();
                map.insert("predicate", id);
                map.serialize(s)
            }
        }
    }
}

/// A rule slot that may say `default` (inherit from the level below).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slot(pub Option<Rule>);

impl Serialize for Slot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(rule) => rule.serialize(s),
            None => s.serialize_str("default"),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum RuleDoc {
    Word(String),
    Predicate { predicate: String },
    Quorum { approvers: serde_json::Number },
}

fn rule_from_doc(doc: RuleDoc, allow_default: bool) -> Result<Option<Rule>, String> {
    match doc {
        RuleDoc::Word(word) => match word.as_str() {
            "never" => Ok(Some(Rule::Never)),
            "always" => Ok(Some(Rule::Always)),
            "default" if allow_default => Ok(None),
            other => Err(format!(
                "`{other}` is not an approval rule; use \"never\", \"always\"{}, {{\"approvers\": N}} or a predicate",
                if allow_default { ", \"default\"" } else { "" }
            )),
        },
        RuleDoc::Quorum { approvers } => match approvers.as_u64() {
            Some(n @ 2..) => Ok(Some(Rule::Quorum(u32::try_from(n).map_err(|_| {
                format!("{{\"approvers\": {n}}} asks for more approvers than anyone has")
            })?))),
            Some(1) => Err(
                "{\"approvers\": 1} is one approver: write \"always\"; a quorum needs 2 or more"
                    .to_owned(),
            ),
            _ => Err(format!(
                "{{\"approvers\": {approvers}}}: the number of approvers must be a whole number >= 2"
            )),
        },
        RuleDoc::Predicate { predicate } if !predicate.is_empty() => {
            Ok(Some(Rule::Predicate(predicate)))
        }
        RuleDoc::Predicate { .. } => Err("a predicate rule needs a non-empty id".to_owned()),
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        rule_from_doc(RuleDoc::deserialize(d)?, false)
            .map(|rule| rule.expect("default is refused here"))
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        rule_from_doc(RuleDoc::deserialize(d)?, true)
            .map(Slot)
            .map_err(de::Error::custom)
    }
}

/// The two channels a patch may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Plans,
    Tools,
}

/// An agent-level patch: `default`, one rule for both channels, or per channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Patch {
    pub plans: Slot,
    pub tools: Slot,
}

impl Patch {
    pub fn get(&self, channel: Channel) -> Option<&Rule> {
        match channel {
            Channel::Plans => self.plans.0.as_ref(),
            Channel::Tools => self.tools.0.as_ref(),
        }
    }
}

// Read by hand rather than as an untagged enum, so a bad rule inside a patch is reported as
// itself instead of as "no variant matched".
impl<'de> Deserialize<'de> for Patch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        let slot = |value: Value| Slot::deserialize(value).map_err(de::Error::custom);
        match Value::deserialize(d)? {
            Value::Object(mut channels)
                if channels.keys().all(|key| key == "plans" || key == "tools") =>
            {
                let mut take = |key: &str| match channels.remove(key) {
                    Some(value) => slot(value),
                    None => Ok(Slot::default()),
                };
                Ok(Patch {
                    plans: take("plans")?,
                    tools: take("tools")?,
                })
            }
            both => {
                let slot = slot(both)?;
                Ok(Patch {
                    plans: slot.clone(),
                    tools: slot,
                })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    #[serde(default = "always")]
    pub plans: Rule,
    #[serde(default = "never")]
    pub tools: Rule,
}

fn always() -> Rule {
    Rule::Always
}

fn never() -> Rule {
    Rule::Never
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            plans: Rule::Always,
            tools: Rule::Never,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub agents: BTreeMap<String, Patch>,
    /// A rule per tool, for every agent that uses it.
    #[serde(default)]
    pub tools: BTreeMap<String, Rule>,
    /// A rule per tool of one agent (the seed's `tools={agent: {tool: rule}}`): the most
    /// specific level of all.
    #[serde(default)]
    pub agent_tools: BTreeMap<String, BTreeMap<String, Rule>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    #[serde(default)]
    pub policies: Policies,
    #[serde(default)]
    pub overrides: Overrides,
}

/// What decides a call's gate, from the levels that apply to it (lowest first).
pub struct Levels<'a> {
    pub approvals: &'a Approvals,
    pub agent: &'a str,
    pub agent_patch: &'a Patch,
    /// The tool's own rule (tools channel only; None = default).
    pub tool_rule: Option<&'a Rule>,
    /// The agent's `tool_approvals` entry for this tool (tools channel only).
    pub agent_tool_rule: Option<&'a Rule>,
    /// The tool's name, for `overrides.tools` (tools channel only).
    pub tool: Option<&'a str>,
}

/// The rule for a call on `channel`: the most specific level that says something.
pub fn resolve(channel: Channel, levels: &Levels<'_>) -> Rule {
    let policy = match channel {
        Channel::Plans => &levels.approvals.policies.plans,
        Channel::Tools => &levels.approvals.policies.tools,
    };
    let mut rule = policy;
    if let Some(r) = levels.agent_patch.get(channel) {
        rule = r;
    }
    if channel == Channel::Tools {
        if let Some(r) = levels.tool_rule {
            rule = r;
        }
        if let Some(r) = levels.agent_tool_rule {
            rule = r;
        }
    }
    let overrides = &levels.approvals.overrides;
    if let Some(r) = overrides
        .agents
        .get(levels.agent)
        .and_then(|patch| patch.get(channel))
    {
        rule = r;
    }
    if channel == Channel::Tools {
        if let Some(r) = levels.tool.and_then(|tool| overrides.tools.get(tool)) {
            rule = r;
        }
        if let Some(r) = levels.tool.and_then(|tool| {
            overrides
                .agent_tools
                .get(levels.agent)
                .and_then(|tools| tools.get(tool))
        }) {
            rule = r;
        }
    }
    rule.clone()
}

/// The gate of one outstanding call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gate {
    /// Not at a human: with `Pending::approved`, the table's `Approved`; else one of `New`,
    /// `Checking`, `Clear`, `Reopened`, which the log does not tell apart (see the header).
    Clear,
    /// Waits for a human decision: `required` distinct approvers, of whom `approvers` have
    /// approved so far (in order).
    Waiting {
        approval_id: String,
        expires_at: Option<i64>,
        required: u32,
        approvers: Vec<String>,
    },
    /// Decided against (reject, revise or deadline); the engine answers the call itself.
    Decided,
}

/// What moves a gate: the rule found for a new call, the runtime's check, a human, time, a
/// fork or a cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateEvent {
    RuleNever,
    /// Rule `always` or `{"approvers": N}`: a human (or N) must approve.
    RuleAlways,
    RulePredicate,
    CheckRequired,
    CheckNotRequired,
    /// An approve that leaves the gate short of its quorum.
    ApproveShort,
    /// The approve that completes the quorum (the only one, at a gate of one approver).
    Approve,
    Reject,
    Revise,
    /// The approval's deadline passed with no decision: a reject with reason `timeout`.
    Deadline,
    /// A fork of a thread paused at this gate: the source's approval id names the source.
    Reopen,
    /// The fork asks again, under its own approval id.
    AskAgain,
    Cancel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateState {
    New,
    Checking,
    Clear,
    Waiting,
    Approved,
    Decided,
    Reopened,
    Closed,
}

impl GateState {
    pub fn as_str(self) -> &'static str {
        match self {
            GateState::New => "new",
            GateState::Checking => "checking",
            GateState::Clear => "clear",
            GateState::Waiting => "waiting",
            GateState::Approved => "approved",
            GateState::Decided => "decided",
            GateState::Reopened => "reopened",
            GateState::Closed => "closed",
        }
    }

    /// The state as the log knows it: `New`, `Checking`, `Clear` and `Reopened` differ only
    /// in effects, so a fold sees them all as `New` (not at a human).
    pub fn logged(self) -> GateState {
        match self {
            GateState::Checking | GateState::Clear | GateState::Reopened => GateState::New,
            other => other,
        }
    }
}

use GateEvent as On;
use GateState::{Approved, Checking, Clear, Closed, Decided, New, Reopened, Waiting};

/// Every allowed (from, on, to) of a call's gate: the single source of truth.
pub const GATE_TRANSITIONS: &[(GateState, GateEvent, GateState)] = &[
    (New, On::RuleNever, Clear),
    (New, On::RuleAlways, Waiting),
    (New, On::RulePredicate, Checking),
    (Checking, On::CheckRequired, Waiting),
    (Checking, On::CheckNotRequired, Clear),
    (Waiting, On::ApproveShort, Waiting),
    (Waiting, On::Approve, Approved),
    (Waiting, On::Reject, Decided),
    (Waiting, On::Revise, Decided),
    (Waiting, On::Deadline, Decided),
    (Waiting, On::Reopen, Reopened),
    (Reopened, On::AskAgain, Waiting),
    (Clear, On::Cancel, Closed),
    (Checking, On::Cancel, Closed),
    (Waiting, On::Cancel, Closed),
    (Approved, On::Cancel, Closed),
    // Only a decision cut short by a crash leaves a call `New` or `Decided` between inputs.
    (New, On::Cancel, Closed),
    (Decided, On::Cancel, Closed),
];

/// The row of the table `on` takes from `from`, as its index in [`GATE_TRANSITIONS`].
pub fn gate_row(from: GateState, on: GateEvent) -> Option<usize> {
    GATE_TRANSITIONS
        .iter()
        .position(|(f, e, _)| *f == from && *e == on)
}

/// The state after `on` in `from`, or an error naming the move the table does not allow.
pub fn gate_step(from: GateState, on: GateEvent) -> Result<GateState, String> {
    match gate_row(from, on) {
        Some(row) => Ok(GATE_TRANSITIONS[row].2),
        None => Err(format!(
            "an approval gate that is {} cannot take {on:?}",
            from.as_str()
        )),
    }
}

/// The same move as a fold sees it, in the states the log knows (`GateState::logged`).
pub fn gate_step_logged(from: GateState, on: GateEvent) -> Result<GateState, String> {
    GATE_TRANSITIONS
        .iter()
        .find(|(f, e, _)| f.logged() == from.logged() && *e == on)
        .map(|(_, _, to)| to.logged())
        .ok_or_else(|| {
            format!(
                "an approval gate that is {} cannot take {on:?}",
                from.logged().as_str()
            )
        })
}

/// The `reason` of a decision the deadline made.
pub const DEADLINE_REASON: &str = "timeout";

/// The move a logged decision is: its outcome, and whether the deadline made it.
pub fn decision_event(outcome: Outcome, reason: Option<&str>) -> GateEvent {
    match outcome {
        Outcome::Approve => GateEvent::Approve,
        Outcome::Reject if reason == Some(DEADLINE_REASON) => GateEvent::Deadline,
        Outcome::Reject => GateEvent::Reject,
        Outcome::Revise => GateEvent::Revise,
    }
}

impl Gate {
    /// The gate's state as the log knows it (`approved`: a human approved the call).
    pub fn state(&self, approved: bool) -> GateState {
        match self {
            Gate::Clear if approved => GateState::Approved,
            Gate::Clear => GateState::New,
            Gate::Waiting { .. } => GateState::Waiting,
            Gate::Decided => GateState::Decided,
        }
    }
}

// Approval ids are derived and parsed in `ids`, with the engine's other ids.
pub use crate::ids::{approval_id, thread_of_approval};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approve,
    Reject,
    Revise,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approve => "approve",
            Outcome::Reject => "reject",
            Outcome::Revise => "revise",
        }
    }

    pub fn parse(word: &str) -> Option<Outcome> {
        match word {
            "approve" => Some(Outcome::Approve),
            "reject" => Some(Outcome::Reject),
            "revise" => Some(Outcome::Revise),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn patch(json: &str) -> Patch {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_and_patches_parse_from_their_json_forms() {
        assert_eq!(
            serde_json::from_str::<Rule>("\"always\"").unwrap(),
            Rule::Always
        );
        assert_eq!(
            serde_json::from_str::<Rule>(r#"{"predicate": "tool:x"}"#).unwrap(),
            Rule::Predicate("tool:x".into())
        );
        assert!(serde_json::from_str::<Rule>("\"default\"").is_err());
        assert!(serde_json::from_str::<Rule>("\"sometimes\"").is_err());
        assert_eq!(patch("\"default\""), Patch::default());
        assert_eq!(patch("\"always\"").get(Channel::Plans), Some(&Rule::Always));
        let p = patch(r#"{"tools": "always"}"#);
        assert_eq!(p.get(Channel::Tools), Some(&Rule::Always));
        assert_eq!(p.get(Channel::Plans), None);
    }

    #[test]
    fn a_quorum_rule_needs_two_or_more_approvers() {
        let rule = serde_json::from_str::<Rule>(r#"{"approvers": 3}"#).unwrap();
        assert_eq!(rule, Rule::Quorum(3));
        assert_eq!(rule.approvals_required(), 3);
        assert_eq!(Rule::Always.approvals_required(), 1);
        assert_eq!(serde_json::to_string(&rule).unwrap(), r#"{"approvers":3}"#);
        for (json, says) in [
            (r#"{"approvers": 1}"#, "write \"always\""),
            (r#"{"approvers": 0}"#, "whole number >= 2"),
            (r#"{"approvers": -2}"#, "whole number >= 2"),
            (r#"{"approvers": 2.5}"#, "whole number >= 2"),
            (r#"{"approvers": 99999999999}"#, "more approvers"),
        ] {
            let err = serde_json::from_str::<Rule>(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
        for json in [
            r#"{"approvers": "2"}"#,
            r#"{"approvers": 2, "predicate": "p"}"#,
        ] {
            assert!(serde_json::from_str::<Rule>(json).is_err(), "{json}");
        }
        assert_eq!(
            patch(r#"{"plans": {"approvers": 2}}"#).get(Channel::Plans),
            Some(&Rule::Quorum(2))
        );
    }

    #[test]
    fn normalized_rules_parse_back() {
        for json in [
            r#""default""#,
            r#"{"tools": "always"}"#,
            r#"{"plans": {"predicate": "p"}}"#,
            r#"{"plans": {"approvers": 2}, "tools": "never"}"#,
        ] {
            let p = patch(json);
            let again: Patch = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(p, again, "{json}");
        }
    }

    #[test]
    fn the_most_specific_level_wins() {
        let mut approvals = Approvals::default();
        let agent_patch = patch(r#"{"tools": "always"}"#);
        let levels = |approvals: &Approvals,
                      tool_rule: Option<&Rule>,
                      agent_tool_rule: Option<&Rule>|
         -> Rule {
            resolve(
                Channel::Tools,
                &Levels {
                    approvals,
                    agent: "a",
                    agent_patch: &agent_patch,
                    tool_rule,
                    agent_tool_rule,
                    tool: Some("t"),
                },
            )
        };
        assert_eq!(
            levels(&approvals, None, None),
            Rule::Always,
            "agent patch over policy"
        );
        assert_eq!(
            levels(&approvals, Some(&Rule::Never), None),
            Rule::Never,
            "tool over agent"
        );
        assert_eq!(
            levels(&approvals, Some(&Rule::Never), Some(&Rule::Always)),
            Rule::Always,
            "agent tool_approvals over tool"
        );
        approvals.overrides.tools.insert("t".into(), Rule::Never);
        assert_eq!(
            levels(&approvals, Some(&Rule::Never), Some(&Rule::Always)),
            Rule::Never,
            "runtime override over everything"
        );
        let plans = resolve(
            Channel::Plans,
            &Levels {
                approvals: &Approvals::default(),
                agent: "a",
                agent_patch: &Patch::default(),
                tool_rule: Some(&Rule::Never),
                agent_tool_rule: None,
                tool: None,
            },
        );
        assert_eq!(
            plans,
            Rule::Always,
            "plans default to always; tool rules do not apply"
        );
    }

    #[test]
    fn gate_table_is_a_function_and_only_waiting_takes_decisions() {
        let mut seen = HashSet::new();
        for (from, on, _) in GATE_TRANSITIONS {
            assert!(seen.insert((*from, *on)), "two rows for {from:?} + {on:?}");
        }
        for on in [
            On::ApproveShort,
            On::Approve,
            On::Reject,
            On::Revise,
            On::Deadline,
        ] {
            for (from, e, _) in GATE_TRANSITIONS {
                if *e == on {
                    assert_eq!(*from, Waiting, "{on:?} from {from:?}");
                }
            }
        }
        assert!(gate_step(Clear, On::Approve).is_err());
        assert!(gate_step(Decided, On::Approve).is_err());
        assert_eq!(gate_step(Waiting, On::Approve), Ok(Approved));
        assert_eq!(gate_step(Waiting, On::ApproveShort), Ok(Waiting));
        assert!(gate_step(Checking, On::ApproveShort).is_err());
        assert!(
            gate_step(Reopened, On::Cancel).is_err(),
            "a fork asks again in the decision that re-opened the gate"
        );
    }

    #[test]
    fn a_fold_sees_the_unlogged_states_as_new() {
        assert_eq!(gate_step_logged(New, On::CheckRequired), Ok(Waiting));
        assert_eq!(gate_step_logged(New, On::AskAgain), Ok(Waiting));
        assert_eq!(gate_step_logged(Waiting, On::Reopen), Ok(New));
        assert_eq!(gate_step_logged(New, On::Cancel), Ok(Closed));
        assert!(gate_step_logged(New, On::Approve).is_err());
        assert_eq!(Gate::Clear.state(true), Approved);
        assert_eq!(Gate::Clear.state(false), New);
    }

    #[test]
    fn approval_ids_name_their_thread() {
        let id = approval_id("team/42 a", "run-3", "scripted-tool-2");
        assert_eq!(thread_of_approval(&id), Some("team/42 a"));
        assert_eq!(thread_of_approval("appr:x"), None);
        assert_eq!(thread_of_approval("nope"), None);
    }
}
