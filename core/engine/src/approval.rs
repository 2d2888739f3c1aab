//! Approval gates: which rule applies to a call, and the gate each outstanding call sits at.
//!
//! Rules: a rule is `never`, `always`, `{"approvers": N}` (N >= 2 distinct people must approve:
//! the two-person rule) or a named predicate the runtime evaluates (a predicate that fails
//! means approval is required). The rule for a call is found by precedence, lowest
//! to highest: runtime policy < the agent's `approval` patch < the tool's own rule < the agent's
//! `tool_approvals` < runtime overrides (agent patch, then tool rule, then the rule for that
//! tool of that agent). `default` inherits.
//!
//! The gate of one outstanding call moves through this table:
//!
//! | from       | on                                  | to        |
//! |------------|-------------------------------------|-----------|
//! | (new call) | rule `never`                        | Clear     |
//! | (new call) | rule `always` or `{"approvers": N}` | Waiting   |
//! | (new call) | rule predicate                      | Checking  |
//! | Checking   | check says required                 | Waiting   |
//! | Checking   | check says not required             | Clear     |
//! | Waiting    | approve short of the quorum         | Waiting   |
//! | Waiting    | approve (the quorum's last)         | Clear     |
//! | Waiting    | reject, revise, deadline passed     | Decided   |
//!
//! A gate waits for `required` distinct approvers (1 unless the rule is a quorum); each approve
//! short of it is logged as `approval-progress` and names its approver, and an approver who
//! already approved is not counted again. Any reject closes the gate at once.
//!
//! Only a `Clear` call goes out to its tool; a `Decided` one is answered by the engine with the
//! decision. Imports nothing internal but `error`.

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
    /// May go out to its tool (or, under a predicate rule and not yet approved, waits for the
    /// check's answer: the table's `Checking`, which is not logged).
    Clear,
    /// Waits for a human decision: `required` distinct approvers, of whom `approvers` have
    /// approved so far (in order).
    Waiting {
        approval_id: String,
        expires_at: Option<i64>,
        required: u32,
        approvers: Vec<String>,
    },
    /// Decided against (reject, revise or timeout); the engine answers the call itself.
    Decided,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateEvent {
    RuleNever,
    RuleAlways,
    RulePredicate,
    CheckRequired,
    CheckNotRequired,
    /// An approve that leaves the gate short of its quorum.
    ApproveShort,
    Approve,
    RejectOrRevise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateState {
    New,
    Clear,
    Checking,
    Waiting,
    Decided,
}

/// Every allowed (from, on, to) of a call's gate; `gate_next` reads it.
pub const GATE_TRANSITIONS: &[(GateState, GateEvent, GateState)] = &[
    (GateState::New, GateEvent::RuleNever, GateState::Clear),
    (GateState::New, GateEvent::RuleAlways, GateState::Waiting),
    (
        GateState::New,
        GateEvent::RulePredicate,
        GateState::Checking,
    ),
    (
        GateState::Checking,
        GateEvent::CheckRequired,
        GateState::Waiting,
    ),
    (
        GateState::Checking,
        GateEvent::CheckNotRequired,
        GateState::Clear,
    ),
    (
        GateState::Waiting,
        GateEvent::ApproveShort,
        GateState::Waiting,
    ),
    (GateState::Waiting, GateEvent::Approve, GateState::Clear),
    (
        GateState::Waiting,
        GateEvent::RejectOrRevise,
        GateState::Decided,
    ),
];

pub fn gate_next(from: GateState, on: GateEvent) -> Option<GateState> {
    GATE_TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == on)
        .map(|(_, _, to)| *to)
}

impl Gate {
    pub fn state(&self) -> GateState {
        match self {
            Gate::Clear => GateState::Clear,
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
            assert!(seen.insert((*from, *on)));
        }
        assert_eq!(gate_next(GateState::Clear, GateEvent::Approve), None);
        assert_eq!(gate_next(GateState::Decided, GateEvent::Approve), None);
        assert_eq!(
            gate_next(GateState::Waiting, GateEvent::Approve),
            Some(GateState::Clear)
        );
        assert_eq!(
            gate_next(GateState::Waiting, GateEvent::ApproveShort),
            Some(GateState::Waiting)
        );
        assert_eq!(
            gate_next(GateState::Checking, GateEvent::ApproveShort),
            None
        );
    }

    #[test]
    fn approval_ids_name_their_thread() {
        let id = approval_id("team/42 a", "run-3", "scripted-tool-2");
        assert_eq!(thread_of_approval(&id), Some("team/42 a"));
        assert_eq!(thread_of_approval("appr:x"), None);
        assert_eq!(thread_of_approval("nope"), None);
    }
}
