//! The engine's behaviour through its driving API: input envelopes in (`handle_batch`,
//! `handle`), events, effects and rejections out (`poll_output`), as docs/wire.md fixes them.

mod common;

use common::*;
use flowai_engine::event::{Event, Usage};
use flowai_engine::{ErrorCode, OutputKind};
use serde_json::{json, Value};

fn add(a: Value, b: Value) -> (&'static str, Value) {
    ("add", json!({"a": a, "b": b}))
}

/// A calculator run that calls `add` once and now waits for its result.
fn awaiting_add(d: &mut Driver, thread: &str) -> Vec<Out> {
    let outs = d.send(query(thread, &script(&[add(json!(1), json!(2))])).agent("calculator"));
    assert_eq!(d.snapshot_json(thread)["status"], "awaiting-tool");
    outs
}

/// The run's error result for a tool call that never went out: `{"error": {message, code}}`.
fn error_code(result_event: &Value) -> &str {
    assert_eq!(result_event["isError"], true, "{result_event}");
    result_event["result"]["error"]["code"].as_str().unwrap()
}

/// Send an input that must be rejected: exactly one unlogged `error` envelope with `code`,
/// and every thread's snapshot byte-identical before and after.
fn assert_rejected(d: &mut Driver, input: Input, threads: &[&str], code: ErrorCode) -> Value {
    let kind = if code == ErrorCode::DuplicateInput {
        OutputKind::Duplicate
    } else {
        OutputKind::Rejection
    };
    let before = d.all_snapshots(threads);
    let sent = input.0.to_string();
    let outs = d.send(input);
    assert_eq!(
        outs.len(),
        1,
        "{sent}: one output for a rejected input: {outs:?}"
    );
    let rejection = &outs[0];
    assert_eq!(rejection.kind, kind, "{sent}");
    assert_eq!(rejection.envelope["seq"], Value::Null);
    assert_eq!(rejection.envelope["schema"], "flowai.v1.RuntimeEvent");
    assert_eq!(rejection.payload()["type"], "error");
    let answered = &rejection.payload()["error"]["code"];
    assert_eq!(answered, code.as_str(), "{sent}: {}", rejection.envelope);
    assert_eq!(
        d.all_snapshots(threads),
        before,
        "{sent}: a rejection changed state"
    );
    rejection.envelope.clone()
}

// ---------------------------------------------------------------------------------------------
// A run, start to finish

#[test]
fn mock_query_runs_the_seed_hello_world_stream() {
    let mut d = Driver::mock("hello there");
    let outs = d.send(query("t", "Say hello").id("q-1").ts(T0));
    assert_eq!(
        outs.labels(),
        [
            "run-start",
            "tool-agent/call",
            "step-start",
            "model-response",
            "text",
            "text",
            "data-latency-summary",
            "finish",
            "tool-agent/result"
        ]
    );
    assert_eq!(outs.len(), 9, "no effects or rejections: {outs:?}");
    assert_eq!(texts(&outs), ["Received: Say hello", "hello there"]);
    let events = outs.events();
    assert_eq!(
        events[1].payload(),
        &json!({"type": "tool-agent", "agentName": "router", "toolInvocationId": "run-1", "state": "call"}),
        "no agent means the coordinator, wrapped in its own call"
    );
    assert_eq!(events[4].payload()["agent"], "router");
    let latency = &outs.one("data-latency-summary")["data"];
    assert_eq!(latency["totalDurationMs"], 0);
    assert_eq!(
        latency["phases"],
        json!({"llmCalls": 1, "llmTimeMs": 0, "subAgentTimeMs": 0, "toolTimeMs": 0})
    );
    let finish = outs.one("finish");
    assert_eq!(finish["finishReason"], "stop");
    assert_eq!(
        finish["usage"],
        json!({"promptTokens": 50, "completionTokens": 25, "totalTokens": 75,
               "cacheReadInputTokens": 0, "cacheCreationInputTokens": 0})
    );
    let end = events[8].payload();
    assert_eq!(
        (end["agentName"].as_str(), end["state"].as_str()),
        (Some("router"), Some("result"))
    );
    assert!(d.engine.poll_output().is_none(), "nothing after finish");
    let snapshot = d.snapshot_json("t");
    assert_eq!(snapshot["status"], "idle");
    assert_eq!(
        snapshot["lastRun"],
        json!({"runId": "run-1", "outcome": "stop"})
    );
}

#[test]
fn logged_events_carry_thread_seq_run_and_the_causing_input() {
    let mut d = Driver::mock("hi");
    let outs = d.send(query("t", "Say hello").id("q-1").ts(T0 + 5));
    for (n, out) in outs.events().iter().enumerate() {
        let seq = n as u64 + 1;
        let env = &out.envelope;
        assert_eq!(env["schema"], "flowai.v1.RuntimeEvent");
        assert_eq!(env["id"], format!("acme/t/{seq}"));
        assert_eq!(env["seq"], seq);
        assert_eq!(env["run_id"], "run-1");
        assert_eq!(env["causation_id"], "q-1");
        assert_eq!(env["ts"], T0 + 5);
        assert_eq!(out.thread_id, "t");
    }
}

#[test]
fn finish_usage_totals_the_turns_of_the_run() {
    let mut d = Driver::scripted();
    let prompt = script(&[add(json!(1), json!(2))]);
    d.send(query("t", &prompt).agent("calculator"));
    let outs = d.send(tool_result("t", &invocation("t", 1, 1), json!(3)));
    let first = &d
        .logs_of("t")
        .into_iter()
        .find(|e| e["type"] == "model-response")
        .unwrap()["usage"];
    let second = &outs.one("model-response")["usage"];
    let finish = &outs.one("finish")["usage"];
    for field in ["promptTokens", "completionTokens", "totalTokens"] {
        assert_eq!(
            finish[field].as_u64(),
            Some(first[field].as_u64().unwrap() + second[field].as_u64().unwrap()),
            "{field}"
        );
    }
    assert_eq!(d.snapshot_json("t")["usage"], *finish);
}

#[test]
fn a_second_query_on_the_same_thread_continues_the_conversation() {
    let mut d = Driver::mock("hi");
    d.send(query("t", "first"));
    let outs = d.send(query("t", "second"));
    assert_eq!(outs.one("run-start")["runId"], "run-2");
    assert_eq!(
        outs.events()[0].envelope["seq"],
        10,
        "seq continues across runs"
    );
    let snapshot = d.snapshot_json("t");
    assert_eq!(snapshot["runs"], 2);
    let roles: Vec<&Value> = snapshot["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["role"])
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(snapshot["messages"][2]["content"], "second");
    assert_eq!(
        snapshot["messages"][3]["content"],
        json!([{"type": "text", "text": "Received: second"}, {"type": "text", "text": "hi"}])
    );
}

#[test]
fn a_query_naming_an_agent_runs_that_agent() {
    let mut d = Driver::mock("hi");
    let outs = d.send(query("t", "x").agent("calculator"));
    assert_eq!(outs.one("run-start")["agent"], "calculator");
    assert_eq!(outs.one("step-start")["model"], "claude-haiku-4-5");
    assert_eq!(outs.one("step-start")["provider"], "anthropic");
}

// ---------------------------------------------------------------------------------------------
// Tools

#[test]
fn a_scripted_tool_call_goes_out_as_an_invocation_effect() {
    let mut d = Driver::scripted();
    let outs = awaiting_add(&mut d, "t");
    assert_eq!(
        outs.labels(),
        [
            "run-start",
            "tool-agent/call",
            "step-start",
            "model-response",
            "tool-invocation/call"
        ]
    );
    let call = outs.one("tool-invocation/call");
    assert_eq!(call["toolInvocationId"], "scripted-tool-1");
    assert_eq!(call["args"], json!({"a": 1, "b": 2}));
    let effects = outs.effects();
    assert_eq!(effects.len(), 1);
    let effect = &effects[0].envelope;
    assert_eq!(effect["schema"], "flowai.v1.ToolInvocation");
    assert_eq!(effect["id"], "acme/t/run-1/scripted-tool-1");
    assert_eq!(effect["run_id"], "run-1");
    assert_eq!(
        effect["causation_id"], "acme/t/5",
        "caused by the logged call event"
    );
    assert_eq!(
        effect["payload"],
        json!({"tool": "add", "tool_invocation_id": "scripted-tool-1",
               "args": {"a": 1, "b": 2}, "agent": "calculator"})
    );
    let pending = &d.snapshot_json("t")["run"]["pending"];
    assert_eq!(pending["toolInvocationId"], "scripted-tool-1");
    assert_eq!(pending["toolName"], "add");
}

#[test]
fn a_tool_result_continues_the_run_to_its_answer() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let outs = d.send(tool_result("t", &invocation("t", 1, 1), json!({"sum": 3})));
    assert_eq!(
        outs.labels(),
        [
            "tool-invocation/result",
            "step-start",
            "model-response",
            "text",
            "data-latency-summary",
            "finish",
            "tool-agent/result"
        ]
    );
    let result = outs.one("tool-invocation/result");
    assert_eq!(result["result"], json!({"sum": 3}));
    assert_eq!(result.get("isError"), None);
    assert_eq!(outs.one("text")["text"], r#"{"sum":3}"#);
    assert_eq!(outs.one("step-start")["step"], 2);
}

#[test]
fn a_tool_result_may_name_its_tool_invocation_id() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let input = tool_result("t", &invocation("t", 1, 1), json!({"sum": 3}))
        .payload("tool_invocation_id", json!("scripted-tool-1"));
    assert!(d.send(input).rejections().is_empty());
}

#[test]
fn events_a_tool_emitted_are_logged_before_its_result() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let emitted = json!([
        {"type": "tool-progress", "message": "adding", "toolInvocationId": "scripted-tool-1"},
        {"type": "custom", "name": "sum", "data": {"n": 3}, "toolInvocationId": "scripted-tool-1"},
    ]);
    let input = tool_result("t", &invocation("t", 1, 1), json!({"sum": 3}))
        .payload("events", emitted.clone());
    let outs = d.send(input);
    assert_eq!(
        outs.labels()[..3],
        ["tool-progress", "custom", "tool-invocation/result"]
    );
    let events = outs.events();
    assert_eq!(*events[0].payload(), emitted[0], "logged verbatim");
    assert_eq!(*events[1].payload(), emitted[1], "logged verbatim");
}

#[test]
fn a_tool_may_not_emit_events_other_than_custom_and_progress() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let input = tool_result("t", &invocation("t", 1, 1), json!({"sum": 3})).payload(
        "events",
        json!([{"type": "finish", "finishReason": "stop"}]),
    );
    assert_rejected(&mut d, input, &["t"], ErrorCode::InputMalformed);
}

#[test]
fn a_tool_error_is_logged_as_an_error_result_and_the_run_goes_on() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let outs = d.send(tool_error(
        "t",
        &invocation("t", 1, 1),
        "boom",
        "TOOL_FAILED",
    ));
    let result = outs.one("tool-invocation/result");
    assert_eq!(error_code(result), "TOOL_FAILED");
    assert_eq!(result["result"]["error"]["message"], "boom");
    assert_eq!(outs.one("finish")["finishReason"], "stop");
}

#[test]
fn a_tool_error_without_a_code_is_tool_failed() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let input = tool_result("t", &invocation("t", 1, 1), Value::Null).set(
        "payload",
        json!({"invocation_id": invocation("t", 1, 1), "error": {"message": "x"}}),
    );
    let outs = d.send(input);
    assert_eq!(
        error_code(outs.one("tool-invocation/result")),
        "TOOL_FAILED"
    );
}

#[test]
fn invalid_arguments_answer_the_model_with_tool_args_invalid_and_no_effect() {
    let mut d = Driver::scripted();
    let outs = d.send(query("t", &script(&[("add", json!({"a": "one"}))])).agent("calculator"));
    assert!(outs.effects().is_empty(), "an invalid call never goes out");
    let result = outs.one("tool-invocation/result");
    assert_eq!(error_code(result), "TOOL_ARGS_INVALID");
    let message = result["result"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/a") && message.contains("`b`"),
        "{message}"
    );
    assert_eq!(
        outs.one("finish")["finishReason"],
        "stop",
        "the model saw the error and answered"
    );
}

#[test]
fn a_tool_not_bound_to_the_agent_is_not_available() {
    let mut d = Driver::scripted();
    // The router has no tools of its own; `add` belongs to the calculator.
    let outs = d.send(query("t", &script(&[add(json!(1), json!(2))])));
    assert!(outs.effects().is_empty());
    assert_eq!(
        error_code(outs.one("tool-invocation/result")),
        "TOOL_NOT_AVAILABLE"
    );
}

#[test]
fn output_breaking_the_output_schema_is_tool_output_invalid() {
    let mut spec = golden_spec();
    spec["tools"][0]["output_schema"] = json!({
        "type": "object", "required": ["sum"], "properties": {"sum": {"type": "integer"}}
    });
    let mut d = Driver::new(engine(spec, scripted()));
    awaiting_add(&mut d, "t");
    let outs = d.send(tool_result(
        "t",
        &invocation("t", 1, 1),
        json!({"sum": "three"}),
    ));
    assert_eq!(
        error_code(outs.one("tool-invocation/result")),
        "TOOL_OUTPUT_INVALID"
    );

    awaiting_add(&mut d, "u");
    let outs = d.send(tool_result("u", &invocation("u", 1, 1), json!({"sum": 3})));
    assert_eq!(
        outs.one("tool-invocation/result")["result"],
        json!({"sum": 3})
    );
}

#[test]
fn latency_summary_measures_time_from_the_input_timestamps() {
    let mut d = Driver::scripted();
    let prompt = script(&[add(json!(1), json!(2)), add(json!(3), json!(4))]);
    d.send(query("t", &prompt).agent("calculator").ts(1_000));
    d.send(tool_result("t", &invocation("t", 1, 1), json!(3)).ts(1_250));
    let outs = d.send(tool_result("t", &invocation("t", 1, 2), json!(7)).ts(1_600));
    assert_eq!(
        outs.one("data-latency-summary")["data"],
        json!({
            "totalDurationMs": 600,
            "phases": {"llmCalls": 3, "llmTimeMs": 0, "subAgentTimeMs": 0, "toolTimeMs": 600},
            "toolTimings": [
                {"toolName": "add", "toolInvocationId": "scripted-tool-1", "durationMs": 250},
                {"toolName": "add", "toolInvocationId": "scripted-tool-2", "durationMs": 350}
            ],
            "retryCount": 0,
            "hadTimeout": false,
            "firstTextMs": 600
        })
    );
}

#[test]
fn interpreted_runs_have_no_cost_summary() {
    let mut d = Driver::mock("hi");
    let outs = d.send(query("t", "Say hello"));
    assert!(!outs.labels().contains(&"data-cost-summary".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Routing

#[test]
fn call_agent_runs_an_allowed_route_as_a_sub_agent() {
    let mut d = Driver::scripted();
    let prompt = script(&[(
        "call_agent",
        json!({"agent": "calculator", "prompt": "seven"}),
    )]);
    let outs = d.send(query("t", &prompt));
    assert_eq!(
        outs.labels(),
        [
            "run-start",
            "tool-agent/call",
            "step-start",
            "model-response",
            "tool-agent/call",
            "step-start",
            "model-response",
            "text",
            "data-tool-agent",
            "tool-agent/result",
            "step-start",
            "model-response",
            "text",
            "data-latency-summary",
            "finish",
            "tool-agent/result"
        ]
    );
    let call = sub_agent(&outs, "call");
    assert_eq!(call["agentName"], "calculator", "the agent being called");
    assert_eq!(call["agent"], "router");
    assert_eq!(call["targetAgent"], "calculator");
    assert_eq!(call["prompt"], "seven");
    let sub = outs.one("data-tool-agent")["data"].clone();
    assert_eq!(sub["agentName"], "calculator");
    assert_eq!(sub["model"], "claude-haiku-4-5");
    assert_eq!(sub["provider"], "anthropic");
    assert_eq!(sub["usage"]["promptTokens"], 2, "the sub-agent's own usage");
    let result = sub_agent(&outs, "result");
    assert_eq!(result["result"], "seven", "the sub-agent's final text");
    assert_eq!(result.get("isError"), None);
    let steps = outs.events();
    assert_eq!(steps[5].payload()["agent"], "calculator");
    assert_eq!(steps[5].payload()["step"], 1, "steps count per agent frame");
    assert_eq!(steps[10].payload()["step"], 2);
}

#[test]
fn call_agent_to_an_agent_outside_the_routes_is_route_not_allowed() {
    let mut d = Driver::scripted();
    let prompt = script(&[("call_agent", json!({"agent": "router", "prompt": "loop"}))]);
    let outs = d.send(query("t", &prompt));
    assert_eq!(
        outs.labels()[4..6],
        ["tool-agent/call", "tool-agent/result"]
    );
    assert_eq!(error_code(&sub_agent(&outs, "result")), "ROUTE_NOT_ALLOWED");
    assert!(outs
        .events()
        .iter()
        .all(|o| o.payload()["agent"] != "calculator"));
}

#[test]
fn call_agent_to_an_unknown_agent_is_route_not_allowed() {
    let mut d = Driver::scripted();
    let prompt = script(&[("call_agent", json!({"agent": "ghost", "prompt": "boo"}))]);
    let outs = d.send(query("t", &prompt));
    assert_eq!(error_code(&sub_agent(&outs, "result")), "ROUTE_NOT_ALLOWED");
    assert_eq!(outs.one("finish")["finishReason"], "stop");
}

#[test]
fn call_agent_from_an_agent_without_the_tool_is_not_allowed_for_its_role() {
    let mut d = Driver::scripted();
    let prompt = script(&[("call_agent", json!({"agent": "router", "prompt": "up"}))]);
    let outs = d.send(query("t", &prompt).agent("calculator"));
    assert_eq!(
        error_code(outs.one("tool-invocation/result")),
        "TOOL_NOT_ALLOWED_FOR_ROLE"
    );
}

#[test]
fn call_agent_with_malformed_arguments_is_tool_args_invalid() {
    let mut d = Driver::scripted();
    let outs = d.send(query(
        "t",
        &script(&[("call_agent", json!({"who": "calculator"}))]),
    ));
    assert_eq!(error_code(&sub_agent(&outs, "result")), "TOOL_ARGS_INVALID");
}

#[test]
fn a_sub_agent_tool_call_waits_and_resumes_inside_the_sub_agent() {
    let mut d = Driver::scripted();
    let inner = script(&[add(json!(2), json!(3))]);
    let outs = d.send(query(
        "t",
        &script(&[(
            "call_agent",
            json!({"agent": "calculator", "prompt": inner}),
        )]),
    ));
    assert_eq!(
        outs.effects()[0].envelope["id"],
        "acme/t/run-1/scripted-tool-2"
    );
    let frames = &d.snapshot_json("t")["run"]["frames"];
    assert_eq!(frames.as_array().unwrap().len(), 2);
    let outs = d.send(tool_result("t", &invocation("t", 1, 2), json!({"sum": 5})));
    assert_eq!(sub_agent(&outs, "result")["result"], r#"{"sum":5}"#);
    assert_eq!(outs.one("finish")["finishReason"], "stop");
}

// ---------------------------------------------------------------------------------------------
// Runs that end early

#[test]
fn exceeding_max_turns_ends_the_run_with_a_terminal_error() {
    let mut spec = golden_spec();
    spec["agents"][1]["max_turns"] = json!(2);
    let mut d = Driver::new(engine(spec, scripted()));
    // Each invalid call is one turn that never waits for a tool.
    let bad = ("add", json!({}));
    let outs = d.send(query("t", &script(&[bad.clone(), bad.clone(), bad])).agent("calculator"));
    let labels = outs.labels();
    assert_eq!(labels.last().unwrap(), "error");
    assert!(!labels.contains(&"finish".to_owned()));
    assert_eq!(labels.iter().filter(|l| *l == "step-start").count(), 2);
    let error = &outs.one("error")["error"];
    assert_eq!(error["code"], "MAX_TURNS_EXCEEDED");
    assert!(error["message"].as_str().unwrap().contains("calculator"));
    let snapshot = d.snapshot_json("t");
    assert_eq!(snapshot["status"], "idle");
    assert_eq!(snapshot["lastRun"]["outcome"], "error");
    assert_eq!(
        d.send(query("t", "again")).one("run-start")["runId"],
        "run-2"
    );
}

#[test]
fn an_invalid_script_ends_the_run_with_script_invalid() {
    let mut d = Driver::scripted();
    let outs = d.send(query("t", r#"{"script": [{"nope": 1}]}"#));
    assert_eq!(
        outs.labels(),
        ["run-start", "tool-agent/call", "step-start", "error"]
    );
    assert_eq!(outs.one("error")["error"]["code"], "SCRIPT_INVALID");
}

#[test]
fn cancelling_while_a_tool_is_out_finishes_cancelled_and_rejects_the_late_result() {
    let mut d = Driver::scripted();
    let started = awaiting_add(&mut d, "t");
    let outs = d.send(cancel_run("t"));
    assert_eq!(outs.labels(), ["finish", "tool-agent/result"]);
    let finish = outs.one("finish");
    assert_eq!(finish["finishReason"], "cancelled");
    assert_eq!(
        finish["usage"]["promptTokens"],
        started.one("model-response")["usage"]["promptTokens"]
    );
    assert_eq!(d.snapshot_json("t")["lastRun"]["outcome"], "cancelled");
    let late = tool_result("t", &invocation("t", 1, 1), json!({"sum": 3}));
    assert_rejected(&mut d, late, &["t"], ErrorCode::DuplicateInput);
}

// ---------------------------------------------------------------------------------------------
// Rejections: one unlogged error envelope each, state untouched

#[test]
fn a_query_while_a_tool_is_out_is_thread_busy() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    assert_rejected(&mut d, query("t", "hello?"), &["t"], ErrorCode::ThreadBusy);
}

#[test]
fn a_rejection_echoes_the_input_id_thread_and_ts() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let input = query("t", "hello?").id("q-9").ts(T0 + 9);
    let envelope = assert_rejected(&mut d, input, &["t"], ErrorCode::ThreadBusy);
    assert_eq!(envelope["id"], "q-9/rejected");
    assert_eq!(envelope["causation_id"], "q-9");
    assert_eq!(envelope["thread_id"], "t");
    assert_eq!(envelope["ts"], T0 + 9);
    assert_eq!(envelope["run_id"], Value::Null);
}

#[test]
fn every_bad_input_is_rejected_with_its_code_and_changes_nothing() {
    let threads = ["busy", "done", "never"];
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "busy");
    d.send(query("done", "hi"));
    let busy = invocation("busy", 1, 1);
    use ErrorCode::*;
    let cases = [
        (InputMalformed, Input(json!(42))),
        (
            InputMalformed,
            query("busy", "x").set("payload", Value::Null),
        ),
        (InputMalformed, query("done", "x").set("ts", json!("now"))),
        (InputMalformed, query("", "x")),
        (
            InputMalformed,
            query("done", "x").payload("prompt", json!(5)),
        ),
        (
            InputMalformed,
            query("done", "x").payload("extra", json!(1)),
        ),
        (
            InputMalformed,
            Input::new("flowai.v1.ToolResult", "busy", json!({"output": 1})),
        ),
        (
            InputUnknownSchema,
            Input::new("flowai.v1.Nope", "busy", json!({})),
        ),
        (TenantMismatch, query("done", "x").tenant("globex")),
        (UnknownAgent, query("done", "x").agent("ghost")),
        (ThreadBusy, query("busy", "x")),
        (UnknownThread, tool_result("never", &busy, json!(1))),
        (UnknownThread, cancel_run("never")),
        (NoActiveRun, tool_result("done", &busy, json!(1))),
        (NoActiveRun, cancel_run("done")),
        (
            UnknownInvocation,
            tool_result("busy", "acme/busy/run-1/nope", json!(1)),
        ),
        (
            UnknownInvocation,
            tool_result("busy", &invocation("busy", 2, 1), json!(1)),
        ),
        (
            UnknownInvocation,
            tool_result("busy", &busy, json!(1))
                .payload("tool_invocation_id", json!("scripted-tool-9")),
        ),
    ];
    for (code, input) in cases {
        assert_rejected(&mut d, input, &threads, code);
    }
    assert!(d.snapshot("never").is_none(), "rejections create no thread");
}

#[test]
fn a_tool_result_replayed_after_the_run_finished_is_a_duplicate() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let result = tool_result("t", &invocation("t", 1, 1), json!({"sum": 3})).id("r-1");
    assert_eq!(d.send(result.clone()).one("finish")["finishReason"], "stop");
    // The same message again, and the same answer under another message id.
    assert_rejected(&mut d, result.clone(), &["t"], ErrorCode::DuplicateInput);
    assert_rejected(&mut d, result.id("r-2"), &["t"], ErrorCode::DuplicateInput);
}

#[test]
fn a_repeated_query_is_a_duplicate_not_a_second_run() {
    let mut d = Driver::mock("hi");
    let first = query("t", "hello").id("q-1");
    d.send(first.clone());
    assert_rejected(&mut d, first, &["t"], ErrorCode::DuplicateInput);
    assert_eq!(d.snapshot_json("t")["runs"], 1);
}

#[test]
fn a_tool_result_replayed_while_the_next_call_is_out_is_a_duplicate() {
    let mut d = Driver::scripted();
    let prompt = script(&[add(json!(1), json!(2)), add(json!(3), json!(4))]);
    d.send(query("t", &prompt).agent("calculator"));
    let first = tool_result("t", &invocation("t", 1, 1), json!(3));
    assert_eq!(
        d.send(first.clone()).effects().len(),
        1,
        "the second call went out"
    );
    assert_rejected(&mut d, first.id("again"), &["t"], ErrorCode::DuplicateInput);
}

#[test]
fn a_batch_answers_each_input_in_order_and_rejects_only_the_bad_ones() {
    let mut d = Driver::mock("hi");
    let batch = json!([
        query("t", "one").id("a").ts(1).0,
        query("t", "two").id("b").ts(2).tenant("globex").0,
        query("t", "three").id("c").ts(3).0,
    ]);
    let outs = d.send_bytes(batch.to_string().as_bytes());
    let mut causes: Vec<&str> = outs
        .iter()
        .map(|o| o.envelope["causation_id"].as_str().unwrap())
        .collect();
    causes.dedup();
    assert_eq!(causes, ["a", "b", "c"], "outputs follow the batch order");
    assert_eq!(outs.rejections().len(), 1);
    assert_eq!(outs.rejections()[0].envelope["causation_id"], "b");
    assert_eq!(d.snapshot_json("t")["runs"], 2);
}

#[test]
fn a_batch_that_is_not_a_json_array_is_an_error_with_no_output() {
    let mut d = Driver::mock("hi");
    for batch in [&b"{}"[..], b"", b"[", b"\xff", b"null"] {
        let err = d.engine.handle_batch(batch).expect_err("not a batch");
        assert_eq!(err.code, ErrorCode::InputMalformed);
        assert!(d.engine.poll_output().is_none());
    }
}

#[test]
fn handle_returns_the_error_and_outputs_nothing() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let before = d.snapshot("t");
    for (bytes, code) in [
        (&b"not json"[..], ErrorCode::InputMalformed),
        (br#"{"schema":"flowai.v1.Query","id":"x","tenant":"acme","thread_id":"t","ts":1,"payload":{"prompt":"p"}}"#, ErrorCode::ThreadBusy),
    ] {
        let err = d.engine.handle(bytes).expect_err("rejected");
        assert_eq!(err.code, code);
        assert!(d.engine.poll_output().is_none(), "handle queues no rejection itself");
    }
    assert_eq!(d.snapshot("t"), before);
}

#[test]
fn a_live_thread_equals_its_replayed_log() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    d.send(tool_result("t", &invocation("t", 1, 1), json!({"sum": 3})).ts(T0 + 10));
    d.send(query(
        "t",
        &script(&[("call_agent", json!({"agent": "calculator", "prompt": "x"}))]),
    ));
    awaiting_add(&mut d, "t");
    d.send(cancel_run("t"));
    let replay = flowai_engine::replay(&d.log("t")).unwrap();
    assert_eq!(snapshot_bytes(&replay.threads[0]), d.snapshot("t").unwrap());
}

// ---------------------------------------------------------------------------------------------
// Inputs and logs the engine once mishandled: each was accepted live but broke replay, or
// panicked

#[test]
fn a_tool_returning_null_logs_a_result_that_replays() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let outs = d.send(tool_result("t", &invocation("t", 1, 1), Value::Null));
    assert_eq!(outs.one("tool-invocation/result")["result"], Value::Null);
    let replay = flowai_engine::replay(&d.log("t")).expect("a null result replays");
    assert_eq!(snapshot_bytes(&replay.threads[0]), d.snapshot("t").unwrap());
}

#[test]
fn pretty_printed_tool_output_is_logged_on_one_line() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    let input = tool_result(
        "t",
        &invocation("t", 1, 1),
        json!({"sum": 3, "note": "a\nb"}),
    )
    .payload(
        "events",
        json!([{"type": "custom", "name": "n", "data": [1, 2],
                "toolInvocationId": "scripted-tool-1"}]),
    )
    .set("id", json!("r-1"))
    .set("ts", json!(T0));
    let pretty = serde_json::to_string_pretty(&json!([input.0])).unwrap();
    let outs = d.send_bytes(pretty.as_bytes());
    assert!(outs.rejections().is_empty());
    for event in outs.events() {
        assert!(
            !event.bytes.contains(&b'\n'),
            "a log line with a newline in it"
        );
    }
    assert_eq!(outs.one("tool-invocation/result")["result"]["note"], "a\nb");
    let replay = flowai_engine::replay(&d.log("t")).expect("the log replays");
    assert_eq!(snapshot_bytes(&replay.threads[0]), d.snapshot("t").unwrap());
}

#[test]
fn a_tool_emitted_event_reusing_a_run_log_field_is_rejected() {
    let mut d = Driver::scripted();
    awaiting_add(&mut d, "t");
    // `step` is a number in the run log; a string would make the logged line unreadable.
    let input = tool_result("t", &invocation("t", 1, 1), json!(3)).payload(
        "events",
        json!([{"type": "tool-progress", "step": "downloading", "toolInvocationId": "scripted-tool-1"}]),
    );
    let rejection = assert_rejected(&mut d, input, &["t"], ErrorCode::InputMalformed);
    assert!(rejection["payload"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("data"));
}

#[test]
fn a_tool_emitted_event_without_its_invocation_is_rejected() {
    // The run log would hold an event its contract (messages.CustomEvent) refuses.
    for event in [
        json!({"type": "custom", "name": "n", "data": 1}),
        json!({"type": "custom", "data": 1, "toolInvocationId": "scripted-tool-1"}),
        json!({"type": "tool-progress", "label": "x"}),
    ] {
        let mut d = Driver::scripted();
        awaiting_add(&mut d, "t");
        let input =
            tool_result("t", &invocation("t", 1, 1), json!(3)).payload("events", json!([event]));
        let rejection = assert_rejected(&mut d, input, &["t"], ErrorCode::InputMalformed);
        assert!(rejection["payload"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("toolInvocationId"));
    }
}

#[test]
fn extreme_timestamps_saturate_the_latency_summary() {
    let mut d = Driver::scripted();
    let prompt = script(&[add(json!(1), json!(2))]);
    d.send(query("t", &prompt).agent("calculator").ts(i64::MIN));
    let outs = d.send(tool_result("t", &invocation("t", 1, 1), json!(3)).ts(i64::MAX));
    let data = &outs.one("data-latency-summary")["data"];
    assert_eq!(data["totalDurationMs"], i64::MAX);
    assert_eq!(data["phases"]["toolTimeMs"], i64::MAX);
}

#[test]
fn token_counts_from_a_log_saturate_instead_of_overflowing() {
    let mut d = Driver::scripted();
    // A format 1 log: each step-start carries its turn's usage.
    let huge = Usage::new(u64::MAX, u64::MAX);
    let step = |n| Event::StepStart {
        agent: "calculator".into(),
        step: n,
        model: "claude-haiku-4-5".into(),
        provider: None,
        request_id: None,
        usage: Some(huge),
    };
    let run_start = Event::RunStart {
        run_id: "run-1".into(),
        agent: "calculator".into(),
        prompt: "p".into(),
        format: 1,
    };
    for (seq, event) in [run_start, step(1), step(2)].iter().enumerate() {
        d.apply(&entry("t", seq as u64 + 1, event)).unwrap();
    }
    let outs = d.send(cancel_run("t"));
    assert_eq!(outs.one("finish")["usage"]["totalTokens"], u64::MAX);
}

#[test]
fn a_run_whose_agent_left_the_spec_ends_with_unknown_agent() {
    // A log written under an older spec: its run waits for a tool in agent `ghost`.
    let mut d = Driver::scripted();
    let run_start = Event::RunStart {
        run_id: "run-1".into(),
        agent: "ghost".into(),
        prompt: "p".into(),
        format: 1,
    };
    let call = Event::ToolCall {
        agent: "ghost".into(),
        id: "k".into(),
        tool: "add".into(),
        args: raw("{}"),
    };
    d.apply(&entry("t", 1, &run_start)).unwrap();
    d.apply(&entry("t", 2, &call)).unwrap();
    let outs = d.send(tool_result("t", "acme/t/run-1/k", json!(1)));
    assert_eq!(outs.labels(), ["tool-invocation/result", "error"]);
    assert_eq!(outs.one("error")["error"]["code"], "UNKNOWN_AGENT");
    assert_eq!(d.snapshot_json("t")["status"], "idle");
}

#[test]
fn an_input_id_is_remembered_for_the_dedup_window_then_forgotten() {
    let config = json!({
        "spec": golden_spec(),
        "interpreter": mock("hi"),
        "dedup_window_ms": 1_000,
    });
    let mut d = Driver::new(flowai_engine::Engine::new(config.to_string().as_bytes()).unwrap());
    let first = query("t", "hello").id("q-1").ts(T0);
    d.send(first.clone());
    // Within the window: the same message again is a duplicate.
    assert_rejected(
        &mut d,
        first.clone().ts(T0 + 500),
        &["t"],
        ErrorCode::DuplicateInput,
    );
    // An input past the window pushes q-1 out; the same message is then a new query.
    d.send(query("t", "later").id("q-2").ts(T0 + 2_000));
    let outs = d.send(first.ts(T0 + 2_001));
    assert!(outs.rejections().is_empty(), "{:?}", outs.rejections());
    assert_eq!(d.snapshot_json("t")["runs"], 3);
    // The fold forgets the same ids: a replayed engine with that window agrees.
    let mut again = flowai_engine::Engine::new(config.to_string().as_bytes()).unwrap();
    again.load(&d.log("t")).unwrap();
    let (live, replayed) = (d.engine.thread("t").unwrap(), again.thread("t").unwrap());
    assert_eq!(replayed.seen_inputs.len(), live.seen_inputs.len());
    for id in ["q-1", "q-2"] {
        assert!(
            live.seen_inputs.contains(id) && replayed.seen_inputs.contains(id),
            "{id}"
        );
    }
}
