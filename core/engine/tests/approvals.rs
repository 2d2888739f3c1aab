//! Plans and approval gates through the engine's driving API: the order of events a user
//! relies on, decisions, deadlines, predicate checks, and the plan lifecycle.

mod common;

use common::*;
use flowai_engine::ErrorCode;
use serde_json::json;

fn planner(d: &mut Driver, thread: &str, calls: &[(&str, serde_json::Value)]) -> Vec<Out> {
    d.send(query(thread, &script(calls)).agent("planner"))
}

fn executor(d: &mut Driver, thread: &str, plan_id: &str) -> Vec<Out> {
    let exec = script(&[("executePlan", json!({"planId": plan_id}))]);
    d.send(query(thread, &exec).agent("executor"))
}

/// `(from, to)` of every plan-status-change.
fn changes(out: &[Out]) -> Vec<(serde_json::Value, serde_json::Value)> {
    out.events()
        .iter()
        .filter(|o| o.label() == "plan-status-change")
        .map(|o| {
            (
                o.payload()["data"]["from"].clone(),
                o.payload()["data"]["to"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_gated_tool_waits_for_approval_before_it_runs() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let out = planner(&mut d, "t", &[("delete_rows", json!({"table": "orders"}))]);
    assert_eq!(
        out.labels()[4..],
        ["tool-invocation/call", "approval-required"],
        "call, then the gate"
    );
    let required = &out.one("approval-required")["data"];
    assert_eq!(required["id"], approval_id("t", 1, 1));
    assert_eq!(required["kind"], "tool");
    assert_eq!(required["target"], "delete_rows");
    assert_eq!(required["payload"], json!({"table": "orders"}));
    assert_eq!(required["resourceId"], TENANT);
    assert_eq!(required["threadId"], "t");
    assert_eq!(required["correlationId"], "scripted-tool-1");
    assert_eq!(required["expiresAt"], json!(d.clock + 60_000));
    assert_eq!(required["agent"], "planner");
    let effects = out.effects();
    assert_eq!(
        effects.len(),
        1,
        "only the approval request goes out, not the tool"
    );
    assert_eq!(effects[0].envelope["schema"], "flowai.v1.ApprovalRequest");
    assert_eq!(
        effects[0].payload(),
        required,
        "the request is the event's data"
    );
    assert_eq!(d.snapshot_json("t")["status"], "awaiting-approval");

    let out = d.send(
        approval_decision("t", &approval_id("t", 1, 1), "approve")
            .payload("approver", json!("alice")),
    );
    let decision = &out.one("approval-decision")["data"];
    assert_eq!(decision["id"], approval_id("t", 1, 1));
    assert_eq!(decision["outcome"], json!({"outcome": "approve"}));
    assert_eq!(decision["approver"], "alice");
    let effects = out.effects();
    assert_eq!(effects[0].envelope["schema"], "flowai.v1.ToolInvocation");
    let out = d.send(tool_result(
        "t",
        &invocation("t", 1, 1),
        json!({"deleted": 3}),
    ));
    assert!(out.labels().contains(&"tool-invocation/result".to_owned()));
    assert_eq!(out.labels().last().unwrap(), "tool-agent/result");
}

#[test]
fn a_rejected_tool_never_runs_and_the_model_sees_the_feedback() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    planner(&mut d, "t", &[("delete_rows", json!({}))]);
    let out = d.send(
        approval_decision("t", &approval_id("t", 1, 1), "reject")
            .payload("feedback", json!("not on a Friday")),
    );
    assert!(
        out.effects().is_empty(),
        "no tool invocation after a reject"
    );
    let result = out.one("tool-invocation/result");
    assert_eq!(result["isError"], true);
    assert_eq!(result["result"]["error"]["code"], "APPROVAL_REJECTED");
    assert_eq!(
        result["result"]["error"]["message"],
        "the call was rejected: not on a Friday"
    );
    assert_eq!(out.labels().last().unwrap(), "tool-agent/result");
}

#[test]
fn revising_a_tool_call_counts_as_a_reject() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    planner(&mut d, "t", &[("delete_rows", json!({}))]);
    let out = d.send(
        approval_decision("t", &approval_id("t", 1, 1), "revise")
            .payload("feedback", json!("only old rows")),
    );
    assert!(out.effects().is_empty());
    let result = out.one("tool-invocation/result");
    assert_eq!(result["result"]["error"]["code"], "APPROVAL_REJECTED");
    assert!(result["result"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("only old rows"));
}

#[test]
fn decisions_for_unknown_resolved_or_other_tenants_approvals_are_refused() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    planner(
        &mut d,
        "t",
        &[("delete_rows", json!({})), ("delete_rows", json!({}))],
    );
    let id = approval_id("t", 1, 1);
    let before = d.snapshot("t");
    for (input, code) in [
        (
            approval_decision("t", "appr:t/run-1/nope", "approve"),
            "UNKNOWN_APPROVAL",
        ),
        (
            approval_decision("other", &id, "approve"),
            "UNKNOWN_APPROVAL",
        ),
        (
            approval_decision("t", &id, "approve").tenant("globex"),
            "TENANT_MISMATCH",
        ),
        (approval_decision("t", &id, "maybe"), "INPUT_MALFORMED"),
    ] {
        let out = d.send(input);
        assert_eq!(out.rejections().len(), 1);
        assert_eq!(out.rejections()[0].payload()["error"]["code"], code);
        assert_eq!(
            d.snapshot("t"),
            before,
            "a refused decision changes nothing"
        );
    }
    d.send(approval_decision("t", &id, "approve"));
    d.send(tool_result("t", &invocation("t", 1, 1), json!(1)));
    let out = d.send(approval_decision("t", &id, "reject"));
    assert_eq!(
        out.rejections()[0].payload()["error"]["code"],
        ErrorCode::ApprovalAlreadyResolved.as_str(),
        "the first decision wins"
    );
}

#[test]
fn a_result_for_a_call_still_at_its_gate_is_refused() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    planner(&mut d, "t", &[("delete_rows", json!({}))]);
    let out = d.send(tool_result("t", &invocation("t", 1, 1), json!(1)));
    assert_eq!(
        out.rejections()[0].payload()["error"]["code"],
        "UNKNOWN_INVOCATION"
    );
}

#[test]
fn the_deadline_resolves_the_gate_as_rejected_with_reason_timeout() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    planner(&mut d, "t", &[("delete_rows", json!({}))]);
    let expires = d.snapshot_json("t")["run"]["pending"]["approval"]["expiresAt"]
        .as_i64()
        .unwrap();
    assert_eq!(d.engine.next_deadline(), Some(("t", expires)));
    let early = d.send(deadline_reached("t").ts(expires - 1));
    assert!(early.is_empty(), "an early deadline changes nothing");
    let out = d.send(deadline_reached("t").ts(expires));
    let decision = &out.one("approval-decision")["data"];
    assert_eq!(decision["outcome"]["outcome"], "reject");
    assert_eq!(decision["reason"], "timeout");
    assert_eq!(
        out.one("tool-invocation/result")["result"]["error"]["code"],
        "APPROVAL_REJECTED"
    );
    assert_eq!(d.engine.next_deadline(), None);
}

#[test]
fn a_predicate_rule_asks_the_runtime_then_gates_or_runs() {
    for required in [true, false] {
        let mut d = Driver::new(engine(plans_spec(), scripted()));
        let out = planner(&mut d, "t", &[("peek", json!({"n": 1}))]);
        let effects = out.effects();
        assert_eq!(effects[0].envelope["schema"], "flowai.v1.ApprovalCheck");
        let check = effects[0].payload().clone();
        assert_eq!(check["predicate"], "tool:peek");
        assert_eq!(check["args"], json!({"n": 1}));
        let check_id = check["check_id"].as_str().unwrap();
        let out = d.send(approval_check_result("t", check_id, required));
        let schema = &out.effects()[0].envelope["schema"];
        if required {
            assert_eq!(out.labels(), ["approval-required"]);
            assert_eq!(
                out.one("approval-required")["data"]["id"],
                approval_id("t", 1, 1)
            );
            assert_eq!(schema, "flowai.v1.ApprovalRequest");
        } else {
            assert!(out.labels().is_empty());
            assert_eq!(schema, "flowai.v1.ToolInvocation");
        }
    }
}

#[test]
fn a_plan_is_stored_as_a_draft_then_gated_approved_and_executed_by_the_executor() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let out = planner(&mut d, "t", &[store_plan("p1")]);
    let plan = out.one("data-plan")["data"].clone();
    assert_eq!(plan["context"], json!({"reason": "low stock"}));
    assert_eq!(plan["actions"][0]["kind"], "reorder_products");
    assert_eq!(
        plan["actions"][0]["references"],
        json!([{"kind": "product_set", "id": "ref_1"}])
    );
    assert_eq!(changes(&out), [(json!(null), json!("draft"))]);
    assert!(
        !out.labels().contains(&"approval-required".to_owned()),
        "storing a plan is not gated"
    );
    assert_eq!(
        out.one("tool-invocation/result")["result"],
        json!({"planId": "p1", "status": "draft"})
    );

    let out = executor(&mut d, "t", "p1");
    assert_eq!(changes(&out), [(json!("draft"), json!("pending_approval"))]);
    let required = &out.one("approval-required")["data"];
    assert_eq!(required["kind"], "plan");
    assert_eq!(required["target"], "p1");
    assert_eq!(required["correlationId"], "p1");
    assert_eq!(required["payload"]["planId"], "p1");
    assert!(out
        .effects()
        .iter()
        .all(|e| e.envelope["schema"] != "flowai.v1.PlanStep"));

    let out = d.send(approval_decision("t", &approval_id("t", 2, 1), "approve"));
    assert_eq!(
        changes(&out),
        [
            (json!("pending_approval"), json!("approved")),
            (json!("approved"), json!("executing"))
        ]
    );
    let step = out.effects()[0];
    assert_eq!(step.envelope["schema"], "flowai.v1.PlanStep");
    assert_eq!(
        step.payload()["references"],
        json!([{"kind": "product_set", "id": "ref_1"}])
    );
    assert_eq!(step.payload()["actions"].as_array().unwrap().len(), 2);
    let out = d.send(tool_result(
        "t",
        &invocation("t", 2, 1),
        json!({"entitiesAffected": 2, "summary": "done"}),
    ));
    assert_eq!(changes(&out), [(json!("executing"), json!("executed"))]);
    let result = &out.one("tool-invocation/result")["result"];
    assert_eq!(result["entitiesAffected"], 2, "the dispatcher's own result");
    assert_eq!(result["summary"], "done");
    assert_eq!(result["status"], "executed");
    assert_eq!(
        result["details"]["resolvedActions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(d.snapshot_json("t")["plans"][0]["status"], "executed");
}

#[test]
fn an_executor_whose_plan_rule_is_never_runs_a_draft_without_a_gate() {
    let mut spec = plans_spec();
    spec["agents"][1]["approval"] = json!({"plans": "never"});
    let mut d = Driver::new(engine(spec, scripted()));
    planner(&mut d, "t", &[store_plan("p1")]);
    let out = executor(&mut d, "t", "p1");
    assert_eq!(
        changes(&out),
        [
            (json!("draft"), json!("approved")),
            (json!("approved"), json!("executing"))
        ]
    );
    assert!(!out.labels().contains(&"approval-required".to_owned()));
    assert_eq!(out.effects()[0].envelope["schema"], "flowai.v1.PlanStep");
}

#[test]
fn display_aliases_label_the_status_changes() {
    let mut spec = plans_spec();
    spec["plans"][0]["display_aliases"] =
        json!({"draft": "Proposed", "pending_approval": "Awaiting sign-off"});
    let mut d = Driver::new(engine(spec, scripted()));
    let out = planner(&mut d, "t", &[store_plan("p1")]);
    let data = &out.one("plan-status-change")["data"];
    assert_eq!(data["toAlias"], "Proposed");
    let out = executor(&mut d, "t", "p1");
    let data = &out.one("plan-status-change")["data"];
    assert_eq!(
        (&data["fromAlias"], &data["toAlias"]),
        (&json!("Proposed"), &json!("Awaiting sign-off"))
    );
}

#[test]
fn reject_and_revise_send_a_plan_back_to_draft() {
    for (outcome, is_error) in [("reject", true), ("revise", false)] {
        let mut d = Driver::new(engine(plans_spec(), scripted()));
        planner(&mut d, "t", &[store_plan("p1")]);
        executor(&mut d, "t", "p1");
        let out = d.send(
            approval_decision("t", &approval_id("t", 2, 1), outcome)
                .payload("feedback", json!("fewer units"))
                .payload("partial", json!({"qty": 2})),
        );
        assert_eq!(
            changes(&out),
            [(json!("pending_approval"), json!("draft"))],
            "{outcome}"
        );
        let result = out.one("tool-invocation/result");
        assert_eq!(
            result["isError"].as_bool().unwrap_or(false),
            is_error,
            "{outcome}"
        );
        if outcome == "revise" {
            assert_eq!(result["result"]["rejected"], true);
            assert_eq!(result["result"]["should_revise"], true);
            assert_eq!(result["result"]["plan_id"], "p1");
            assert_eq!(result["result"]["partial"], json!({"qty": 2}));
        } else {
            assert_eq!(result["result"]["error"]["code"], "PLAN_REJECTED");
            assert_eq!(
                result["result"]["error"]["message"],
                "Plan p1 rejected: fewer units"
            );
        }
        assert!(
            out.effects().is_empty(),
            "{outcome}: the dispatcher never runs"
        );
        assert_eq!(d.snapshot_json("t")["plans"][0]["status"], "draft");
    }
}

#[test]
fn invalid_plans_and_invalid_transitions_are_tool_errors_the_model_sees() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let bad =
        json!({"specName": "reorder", "planId": "p1", "body": {"actions": [{"kind": "burn"}]}});
    let unknown = json!({"specName": "nope", "planId": "p1", "body": {"actions": []}});
    let out = planner(&mut d, "t", &[("storePlan", bad), ("storePlan", unknown)]);
    let codes: Vec<_> = out
        .events()
        .iter()
        .filter(|o| o.label() == "tool-invocation/result")
        .map(|o| o.payload()["result"]["error"]["code"].clone())
        .collect();
    assert_eq!(codes, [json!("PLAN_INVALID"), json!("PLAN_UNKNOWN_SPEC")]);

    planner(&mut d, "t", &[store_plan("p2")]);
    executor(&mut d, "t", "p2");
    d.send(approval_decision("t", &approval_id("t", 3, 1), "approve"));
    d.send(tool_result("t", &invocation("t", 3, 1), json!(null)));
    let out = executor(&mut d, "t", "p2");
    let result = out.one("tool-invocation/result");
    assert_eq!(result["result"]["error"]["code"], "PLAN_INVALID_TRANSITION");
    assert!(result["result"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("final"));
    let out = planner(&mut d, "t", &[store_plan("p2")]);
    assert_eq!(
        out.one("tool-invocation/result")["result"]["error"]["code"],
        "PLAN_INVALID_TRANSITION",
        "an executed plan cannot be stored again"
    );
}

#[test]
fn tools_outside_a_role_are_refused() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let out = d.send(query("t", &script(&[store_plan("p1")])).agent("executor"));
    assert_eq!(
        out.one("tool-invocation/result")["result"]["error"]["code"],
        "TOOL_NOT_ALLOWED_FOR_ROLE"
    );
}

#[test]
fn a_dispatcher_returning_junk_fails_the_plan() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    planner(&mut d, "t", &[store_plan("p1")]);
    executor(&mut d, "t", "p1");
    d.send(approval_decision("t", &approval_id("t", 2, 1), "approve"));
    let out = d.send(tool_result(
        "t",
        &invocation("t", 2, 1),
        json!({"entitiesAffected": -1}),
    ));
    assert_eq!(changes(&out), [(json!("executing"), json!("failed"))]);
    assert_eq!(
        out.one("tool-invocation/result")["result"]["error"]["code"],
        "PLAN_FAILED"
    );
}

#[test]
fn a_paused_run_replays_and_continues_from_its_log() {
    let mut live = Driver::new(engine(plans_spec(), scripted()));
    planner(&mut live, "t", &[store_plan("p1")]);
    executor(&mut live, "t", "p1");
    let mut fresh = Driver::new(engine(plans_spec(), scripted()));
    fresh.clock = live.clock;
    for line in lines(&live.log("t")) {
        fresh.apply(line).unwrap();
    }
    assert_eq!(fresh.snapshot("t"), live.snapshot("t"));
    // Input ids are unique per process; the live one's are in the log and would repeat.
    let out = fresh.send(approval_decision("t", &approval_id("t", 2, 1), "approve").id("fresh-1"));
    assert_eq!(out.effects()[0].envelope["schema"], "flowai.v1.PlanStep");
    let out = fresh.send(tool_result("t", &invocation("t", 2, 1), json!(null)).id("fresh-2"));
    assert_eq!(out.labels().last().unwrap(), "tool-agent/result");
}

#[test]
fn a_compiled_spec_compiles_to_itself_narrowed_toolkits_included() {
    let mut spec = golden_spec();
    spec["agents"][1]["toolkits"] =
        json!([{"id": "references", "config": {"tools": ["glimpseRef"]}}]);
    let compiled = flowai_engine::spec::Spec::compile(spec.to_string().as_bytes()).unwrap();
    let again = flowai_engine::spec::Spec::compile(&compiled.to_json()).unwrap();
    assert_eq!(again.to_json(), compiled.to_json());
    let calculator = again.agent("calculator").unwrap();
    assert_eq!(again.builtin_tools(calculator), ["glimpseRef"]);
}

// ---------------------------------------------------------------------------------------------
// The two-person rule: `{"approvers": N}`

/// A planner's `delete_rows` call waiting at a gate that needs `n` approvers.
fn at_a_quorum_gate(n: u32) -> (Driver, String) {
    let mut d = Driver::new(engine(quorum_spec(n), scripted()));
    planner(&mut d, "t", &[("delete_rows", json!({"table": "orders"}))]);
    (d, approval_id("t", 1, 1))
}

fn rejected_with(out: &[Out]) -> String {
    assert_eq!(out.rejections().len(), 1, "{:?}", out.labels());
    assert!(out.events().is_empty(), "a refused decision logs nothing");
    out.rejections()[0].payload()["error"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_quorum_gate_opens_at_the_nth_distinct_approver() {
    let (mut d, id) = at_a_quorum_gate(3);
    let log = d.logs_of("t");
    let required = &log.last().unwrap()["data"];
    assert_eq!(required["approvalsRequired"], 3);
    assert_eq!(
        d.engine.thread("t").unwrap().pending().unwrap().gate,
        flowai_engine::approval::Gate::Waiting {
            approval_id: id.clone(),
            expires_at: required["expiresAt"].as_i64(),
            required: 3,
            approvers: vec![],
        }
    );

    for (n, who) in [(1, "alice"), (2, "bob")] {
        let out = d.send(decision_by("t", &id, "approve", who));
        assert_eq!(out.labels(), ["approval-progress"], "{who}");
        assert_eq!(
            out.one("approval-progress")["data"],
            json!({"id": id, "approver": who, "approvals": n, "approvalsRequired": 3})
        );
        assert!(out.effects().is_empty(), "{who}: the call waits");
        let snapshot = d.snapshot_json("t");
        assert_eq!(snapshot["status"], "awaiting-approval");
        assert_eq!(
            snapshot["run"]["pending"]["approval"]["approvalsRequired"],
            3
        );
    }
    assert_eq!(
        d.snapshot_json("t")["run"]["pending"]["approval"]["approvers"],
        json!(["alice", "bob"])
    );

    let out = d.send(decision_by("t", &id, "approve", "carol"));
    assert_eq!(
        out.one("approval-decision")["data"],
        json!({"id": id, "outcome": {"outcome": "approve"}, "approver": "carol",
               "approvals": 3, "approvalsRequired": 3})
    );
    assert_eq!(
        out.effects()[0].envelope["schema"],
        "flowai.v1.ToolInvocation"
    );
    let out = d.send(tool_result(
        "t",
        &invocation("t", 1, 1),
        json!({"deleted": 3}),
    ));
    assert_eq!(out.labels().last().unwrap(), "tool-agent/result");
    let out = d.send(decision_by("t", &id, "approve", "dave"));
    assert_eq!(rejected_with(&out), "APPROVAL_ALREADY_RESOLVED");
}

#[test]
fn the_request_for_approvers_carries_the_quorum_and_a_single_gate_does_not() {
    let mut quorum = Driver::new(engine(quorum_spec(2), scripted()));
    let out = planner(&mut quorum, "t", &[("delete_rows", json!({}))]);
    let effect = out.effects()[0];
    assert_eq!(effect.envelope["schema"], "flowai.v1.ApprovalRequest");
    assert_eq!(effect.payload()["approvalsRequired"], 2);
    assert_eq!(
        effect.payload(),
        &out.one("approval-required")["data"],
        "approval services receive the event's data, quorum included"
    );

    let mut single = Driver::new(engine(plans_spec(), scripted()));
    let out = planner(&mut single, "t", &[("delete_rows", json!({}))]);
    assert!(out.one("approval-required")["data"]
        .get("approvalsRequired")
        .is_none());
    let approval = &single.snapshot_json("t")["run"]["pending"]["approval"];
    assert!(approval.get("approvalsRequired").is_none() && approval.get("approvers").is_none());
}

#[test]
fn a_repeat_approver_and_a_nameless_decision_are_refused_and_change_nothing() {
    let (mut d, id) = at_a_quorum_gate(2);
    d.send(decision_by("t", &id, "approve", "alice"));
    let before = d.snapshot("t");
    let lines = d.log("t");
    for (input, code, says) in [
        (
            decision_by("t", &id, "approve", "alice"),
            "APPROVER_ALREADY_APPROVED",
            "another person must approve",
        ),
        (
            approval_decision("t", &id, "approve"),
            "APPROVER_REQUIRED",
            "must name its approver",
        ),
        (
            decision_by("t", &id, "approve", "  "),
            "APPROVER_REQUIRED",
            "must name its approver",
        ),
        (
            approval_decision("t", &id, "reject"),
            "APPROVER_REQUIRED",
            "needs 2 different approvers",
        ),
    ] {
        let out = d.send(input);
        assert_eq!(rejected_with(&out), code);
        let message = out.rejections()[0].payload()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(says), "{message}");
        assert_eq!(d.snapshot("t"), before, "{code}: nothing changed");
        assert_eq!(d.log("t"), lines, "{code}: nothing logged");
    }
    // The refusals cost nothing: bob still opens it.
    let out = d.send(decision_by("t", &id, "approve", "bob"));
    assert_eq!(
        out.effects()[0].envelope["schema"],
        "flowai.v1.ToolInvocation"
    );
}

#[test]
fn any_reject_after_an_approve_closes_the_gate() {
    // The second approver rejects; or the first changes her mind: any reject closes it.
    for rejecter in ["bob", "alice"] {
        let (mut d, id) = at_a_quorum_gate(2);
        d.send(decision_by("t", &id, "approve", "alice"));
        let out = d.send(
            decision_by("t", &id, "reject", rejecter).payload("feedback", json!("not today")),
        );
        assert_eq!(
            out.one("approval-decision")["data"],
            json!({"id": id, "outcome": {"outcome": "reject"}, "feedback": "not today",
                   "approver": rejecter, "approvals": 1, "approvalsRequired": 2})
        );
        assert!(out.effects().is_empty(), "{rejecter}: the tool never runs");
        assert_eq!(
            out.one("tool-invocation/result")["result"]["error"]["code"],
            "APPROVAL_REJECTED"
        );
        let out = d.send(decision_by("t", &id, "approve", "carol"));
        assert_eq!(rejected_with(&out), "APPROVAL_ALREADY_RESOLVED");
    }
}

#[test]
fn the_deadline_closes_a_partly_approved_gate() {
    let (mut d, id) = at_a_quorum_gate(2);
    d.send(decision_by("t", &id, "approve", "alice"));
    let expires = d.snapshot_json("t")["run"]["pending"]["approval"]["expiresAt"]
        .as_i64()
        .unwrap();
    assert_eq!(
        d.engine.next_deadline(),
        Some(("t", expires)),
        "progress keeps the deadline"
    );
    let out = d.send(deadline_reached("t").ts(expires));
    let decision = &out.one("approval-decision")["data"];
    assert_eq!(decision["outcome"]["outcome"], "reject");
    assert_eq!(decision["reason"], "timeout");
    assert!(decision.get("approver").is_none());
    assert_eq!(
        (&decision["approvals"], &decision["approvalsRequired"]),
        (&json!(1), &json!(2))
    );
    assert!(out.effects().is_empty());
}

#[test]
fn a_partly_approved_gate_replays_and_the_last_approve_opens_it_elsewhere() {
    let (mut live, id) = at_a_quorum_gate(2);
    live.send(decision_by("t", &id, "approve", "alice"));
    // Another process folds the log: it knows alice approved.
    let mut fresh = Driver::new(engine(quorum_spec(2), scripted()));
    fresh.clock = live.clock;
    for line in lines(&live.log("t")) {
        fresh.apply(line).unwrap();
    }
    assert_eq!(fresh.snapshot("t"), live.snapshot("t"));
    let again = fresh.send(decision_by("t", &id, "approve", "alice").id("fresh-1"));
    assert_eq!(rejected_with(&again), "APPROVER_ALREADY_APPROVED");
    let out = fresh.send(decision_by("t", &id, "approve", "bob").id("fresh-2"));
    assert_eq!(out.one("approval-decision")["data"]["approvals"], 2);
    assert_eq!(
        out.effects()[0].envelope["schema"],
        "flowai.v1.ToolInvocation"
    );
    let out = fresh.send(tool_result("t", &invocation("t", 1, 1), json!(1)).id("fresh-3"));
    assert_eq!(out.labels().last().unwrap(), "tool-agent/result");

    // The whole log replays, and every line decodes and encodes back to its bytes.
    let log = fresh.log("t");
    let replayed = flowai_engine::replay(&log).unwrap();
    assert_eq!(
        snapshot_bytes(&replayed.threads[0]),
        fresh.snapshot("t").unwrap()
    );
    for line in lines(&log) {
        let text = std::str::from_utf8(line).unwrap();
        let entry = flowai_engine::codec::EntryRef::parse_str(text).unwrap();
        let event = entry
            .event(|| flowai_engine::codec::raw_payload_of(text))
            .unwrap();
        let header = flowai_engine::codec::Header {
            tenant: &entry.tenant,
            thread_id: &entry.thread_id,
            run_id: entry.run_id.as_deref(),
            causation_id: entry.causation(),
            ts: entry.ts,
            seq: entry.seq,
        };
        assert_eq!(
            String::from_utf8(flowai_engine::codec::encode_entry(&header, &event)).unwrap(),
            text
        );
    }
}

#[test]
fn a_log_that_counts_an_approver_twice_or_opens_short_of_the_quorum_diverges() {
    let (mut d, id) = at_a_quorum_gate(3);
    d.send(decision_by("t", &id, "approve", "alice"));
    let log = d.log("t");
    let good = lines(&log);
    let progress = String::from_utf8(good.last().unwrap().to_vec()).unwrap();
    let next_seq = good.len() + 1;
    let seq = |line: &str| {
        line.replace(
            &format!("\"seq\":{}", good.len()),
            &format!("\"seq\":{next_seq}"),
        )
    };
    let tampered = [
        // alice again, as the second approver
        seq(&progress.replace("\"approvals\":1", "\"approvals\":2")),
        // an approve that opens the gate with two of three
        seq(&progress
            .replace("approval-progress", "approval-decision")
            .replace(
                "\"approver\":\"alice\"",
                "\"outcome\":{\"outcome\":\"approve\"},\"approver\":\"bob\"",
            )
            .replace("\"approvals\":1", "\"approvals\":2")),
        // bob's approve counted as the third
        seq(&progress
            .replace("alice", "bob")
            .replace("\"approvals\":1", "\"approvals\":3")),
    ];
    for line in tampered {
        let mut whole = log.clone();
        whole.extend_from_slice(line.as_bytes());
        whole.push(b'\n');
        let err = flowai_engine::replay(&whole).err().expect(&line);
        assert_eq!(err.code, ErrorCode::ReplayDiverged, "{line}: {err}");
        assert_eq!(err.line, Some(next_seq), "{err}");
    }
}

#[test]
fn a_plan_gate_under_the_two_person_rule_runs_after_the_second_approver() {
    let mut d = Driver::new(engine(quorum_spec(2), scripted()));
    planner(&mut d, "t", &[store_plan("p1")]);
    let out = executor(&mut d, "t", "p1");
    let required = &out.one("approval-required")["data"];
    assert_eq!(
        (&required["kind"], &required["approvalsRequired"]),
        (&json!("plan"), &json!(2))
    );
    let id = approval_id("t", 2, 1);

    let out = d.send(decision_by("t", &id, "approve", "alice"));
    assert_eq!(out.labels(), ["approval-progress"]);
    assert!(changes(&out).is_empty(), "the plan stays pending");
    assert!(out.effects().is_empty(), "the dispatcher does not run yet");
    assert_eq!(
        d.snapshot_json("t")["plans"][0]["status"],
        "pending_approval"
    );

    let out = d.send(decision_by("t", &id, "approve", "bob"));
    assert_eq!(
        changes(&out),
        [
            (json!("pending_approval"), json!("approved")),
            (json!("approved"), json!("executing"))
        ]
    );
    assert_eq!(out.effects()[0].envelope["schema"], "flowai.v1.PlanStep");
    let out = d.send(tool_result("t", &invocation("t", 2, 1), json!(null)));
    assert_eq!(changes(&out), [(json!("executing"), json!("executed"))]);
}

#[test]
fn one_approver_is_always_and_a_quorum_of_one_is_a_spec_error() {
    let err = match flowai_engine::Engine::new(
        json!({"spec": quorum_spec(1), "interpreter": scripted()})
            .to_string()
            .as_bytes(),
    ) {
        Ok(_) => panic!("a quorum of one compiled"),
        Err(err) => err,
    };
    assert_eq!(err.code, ErrorCode::SpecInvalid);
    assert!(err.message.contains("write \"always\""), "{}", err.message);
}

#[test]
fn deadlines_due_at_the_same_time_go_by_thread_id_whatever_the_order_threads_came_in() {
    let mut d = Driver::new(engine(plans_spec(), scripted()));
    let delete = [("delete_rows", json!({}))];
    // Held in an order that is neither the ids' nor their reverse; `z` waits one ms less.
    for thread in ["c", "a", "b"] {
        d.send(query(thread, &script(&delete)).agent("planner").ts(T0));
    }
    d.send(query("z", &script(&delete)).agent("planner").ts(T0 - 1));
    let expires = |d: &Driver, thread: &str| {
        d.snapshot_json(thread)["run"]["pending"]["approval"]["expiresAt"]
            .as_i64()
            .unwrap()
    };
    let at = expires(&d, "a");
    assert!(["b", "c"].iter().all(|t| expires(&d, t) == at));
    assert_eq!(expires(&d, "z"), at - 1);
    assert_eq!(d.engine.next_deadline(), Some(("z", at - 1)));
    assert_eq!(d.engine.due(at), ["z", "a", "b", "c"]);
    assert_eq!(d.engine.due(at - 1), ["z"]);
    d.send(deadline_reached("z").ts(at - 1));
    assert_eq!(
        d.engine.next_deadline(),
        Some(("a", at)),
        "a tie goes to the smallest thread id"
    );
    assert_eq!(d.engine.thread_ids(), ["a", "b", "c", "z"]);
}
