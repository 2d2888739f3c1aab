//! The plan lifecycle: typed plans stored by a planner, approved at execution, run by an
//! executor (the seed's lifecycle: the gate is at `executePlan`, not at `storePlan`).
//!
//! Rules (every move is a `plan-status-change` event `{planId, from, to}`):
//!
//! | from             | on                                              | to               |
//! |------------------|-------------------------------------------------|------------------|
//! | (none)           | storePlan validates                             | draft            |
//! | draft            | executePlan, and its gate waits for a human     | pending_approval |
//! | draft            | executePlan, and its gate needs no approval     | approved         |
//! | pending_approval | approve                                         | approved         |
//! | pending_approval | reject, revise, or the deadline                 | draft            |
//! | approved         | executePlan runs it                             | executing        |
//! | executing        | the dispatcher returns a valid value            | executed         |
//! | executing        | the dispatcher fails or returns junk            | failed           |
//!
//! `pending_approval` is a draft waiting at its gate: it is shown under that name while it
//! waits (the seed's display alias). A draft may be stored again (revised) under the same id;
//! an approved plan skips the gate; anything else is an invalid transition, a typed error the
//! model sees. `executed` and `failed` are final.
//!
//! Imports nothing internal but `error`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{EngineError, ErrorCode, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Draft,
    PendingApproval,
    Approved,
    Executing,
    Executed,
    Failed,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Draft => "draft",
            PlanStatus::PendingApproval => "pending_approval",
            PlanStatus::Approved => "approved",
            PlanStatus::Executing => "executing",
            PlanStatus::Executed => "executed",
            PlanStatus::Failed => "failed",
        }
    }

    pub fn parse(word: &str) -> Option<PlanStatus> {
        [
            PlanStatus::Draft,
            PlanStatus::PendingApproval,
            PlanStatus::Approved,
            PlanStatus::Executing,
            PlanStatus::Executed,
            PlanStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == word)
    }
}

use PlanStatus::{Approved, Draft, Executed, Executing, Failed, PendingApproval};

/// Every allowed (from, to); `None` is a plan that does not exist yet.
pub const TRANSITIONS: &[(Option<PlanStatus>, PlanStatus)] = &[
    (None, Draft),
    (Some(Draft), PendingApproval),
    (Some(Draft), Approved),
    (Some(PendingApproval), Approved),
    (Some(PendingApproval), Draft),
    (Some(Approved), Executing),
    (Some(Executing), Executed),
    (Some(Executing), Failed),
];

/// Check a move against the table.
pub fn check(plan_id: &str, from: Option<PlanStatus>, to: PlanStatus) -> Result<()> {
    if TRANSITIONS.contains(&(from, to)) {
        return Ok(());
    }
    let advice = match (from, to) {
        (Some(Draft | PendingApproval), Executing) => {
            "; it must be approved before it runs".to_owned()
        }
        (Some(Executed | Failed), _) => "; it is final: store a new plan under a new id".to_owned(),
        (Some(Approved | Executing), Draft) => {
            "; it was already approved: store a new plan under a new id".to_owned()
        }
        _ => String::new(),
    };
    Err(EngineError::new(
        ErrorCode::PlanInvalidTransition,
        format!(
            "plan `{plan_id}` cannot go from {} to {}{advice}",
            from.map_or("(none)", PlanStatus::as_str),
            to.as_str()
        ),
    ))
}

/// A plan as the thread holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub spec_name: String,
    /// `[{kind, payload, references}]`, as validated and normalized by storePlan.
    pub actions: Box<RawValue>,
    /// The plan body's other top-level fields.
    pub context: Box<RawValue>,
    /// None between its `data-plan` and its first status change.
    pub status: Option<PlanStatus>,
}

/// A reference handle: `{"kind": <reference name>, "id": "ref_..."}` (extra keys allowed).
pub fn is_handle(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            matches!(map.get("kind"), Some(Value::String(_)))
                && matches!(map.get("id"), Some(Value::String(id)) if id.starts_with("ref_"))
        }
        _ => false,
    }
}

/// Every handle inside `value`, depth first, as `{kind, id}`.
pub fn find_handles(value: &Value, out: &mut Vec<Value>) {
    if is_handle(value) {
        out.push(serde_json::json!({"kind": value["kind"], "id": value["id"]}));
        return;
    }
    match value {
        Value::Object(map) => map.values().for_each(|v| find_handles(v, out)),
        Value::Array(items) => items.iter().for_each(|v| find_handles(v, out)),
        _ => {}
    }
}

/// Split a validated plan body into normalized actions and the remaining context.
pub fn normalize(body: &Value, discriminator: &str) -> (Value, Value) {
    let mut context = body.as_object().cloned().unwrap_or_default();
    let actions = match context.remove("actions") {
        Some(Value::Array(actions)) => actions,
        _ => Vec::new(),
    };
    let actions: Vec<Value> = actions
        .into_iter()
        .map(|action| {
            let kind = action.get(discriminator).cloned().unwrap_or(Value::Null);
            let mut references = Vec::new();
            find_handles(&action, &mut references);
            serde_json::json!({"kind": kind, "payload": action, "references": references})
        })
        .collect();
    (Value::Array(actions), Value::Object(context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    const ALL: [PlanStatus; 6] = [
        Draft,
        PendingApproval,
        Approved,
        Executing,
        Executed,
        Failed,
    ];

    #[test]
    fn every_listed_transition_is_allowed_and_nothing_else() {
        let allowed: HashSet<_> = TRANSITIONS.iter().copied().collect();
        let froms = std::iter::once(None).chain(ALL.into_iter().map(Some));
        for from in froms {
            for to in ALL {
                let ok = check("p", from, to).is_ok();
                assert_eq!(ok, allowed.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn invalid_transitions_say_what_to_do() {
        let err = check("p1", Some(Draft), Executing).unwrap_err();
        assert_eq!(err.code, ErrorCode::PlanInvalidTransition);
        assert!(err.message.contains("must be approved"), "{err}");
        let err = check("p1", Some(Executed), Executing).unwrap_err();
        assert!(err.message.contains("final"), "{err}");
    }

    #[test]
    fn normalize_splits_actions_and_finds_handles() {
        let body = json!({
            "reason": "low stock",
            "actions": [
                {"kind": "reorder_products", "products": {"kind": "product_set", "id": "ref_ab"}, "qty": 3},
                {"kind": "hold_inventory", "note": {"id": "not-a-ref", "kind": "x"}}
            ]
        });
        let (actions, context) = normalize(&body, "kind");
        assert_eq!(context, json!({"reason": "low stock"}));
        assert_eq!(actions[0]["kind"], "reorder_products");
        assert_eq!(
            actions[0]["references"],
            json!([{"kind": "product_set", "id": "ref_ab"}])
        );
        assert_eq!(actions[1]["references"], json!([]));
        assert_eq!(actions[1]["payload"]["note"]["id"], "not-a-ref");
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for status in ALL {
            assert_eq!(PlanStatus::parse(status.as_str()), Some(status));
        }
    }
}
