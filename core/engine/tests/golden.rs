//! Golden replay: the committed run logs under tests/golden/ rebuild their expected snapshots,
//! and the replay laws hold on every one of them (STYLE.md, "Tests").

mod common;

use common::*;
use flowai_engine::codec::{encode_entry, EntryRef, Header};
use flowai_engine::{replay, Engine, ErrorCode};
use serde_json::{json, Value};

fn replayed_snapshot(log: &[u8]) -> Vec<u8> {
    let replay = replay(log).expect("a golden log replays");
    assert_eq!(replay.threads.len(), 1, "a golden log holds one thread");
    snapshot_bytes(&replay.threads[0])
}

fn golden_engine() -> Engine {
    engine(golden_spec(), scripted())
}

fn broken(name: &str) -> Vec<u8> {
    std::fs::read(golden_dir().join("broken/acme").join(name)).expect("a broken golden log")
}

#[test]
fn every_golden_log_replays_to_its_expected_snapshot() {
    for (name, log) in golden_logs() {
        let replay = replay(&log).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(replay.threads.len(), 1, "{name}");
        assert_eq!(
            replay.threads[0].id, name,
            "the file is named after its thread"
        );
        assert_eq!(replay.lines, lines(&log).len(), "{name}");
        let actual: Value = serde_json::to_value(replay.threads[0].snapshot()).unwrap();
        let path = golden_dir().join("expected").join(format!("{name}.json"));
        let expected: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            actual,
            expected,
            "{name}: snapshot differs from {}",
            path.display()
        );
    }
}

#[test]
fn replaying_twice_gives_identical_snapshots() {
    for (name, log) in golden_logs() {
        assert_eq!(replayed_snapshot(&log), replayed_snapshot(&log), "{name}");
    }
}

#[test]
fn applying_line_by_line_equals_replaying_the_whole() {
    for (name, log) in golden_logs() {
        let mut engine = golden_engine();
        for (n, line) in lines(&log).into_iter().enumerate() {
            engine
                .apply(line)
                .unwrap_or_else(|e| panic!("{name} line {}: {e}", n + 1));
        }
        let applied = snapshot_bytes(engine.thread(&name).expect("the thread was applied"));
        assert_eq!(applied, replayed_snapshot(&log), "{name}");
    }
}

#[test]
fn replaying_a_prefix_then_applying_the_rest_equals_replaying_the_whole() {
    for (name, log) in golden_logs() {
        let whole = replayed_snapshot(&log);
        let lines = lines(&log);
        for k in 0..=lines.len() {
            let mut engine = golden_engine();
            let loaded = engine.load(&join_lines(&to_vecs(&lines[..k]))).unwrap();
            assert_eq!(loaded, usize::from(k > 0), "{name}: prefix of {k} lines");
            for line in &lines[k..] {
                engine.apply(line).unwrap();
            }
            let thread = engine.thread(&name).expect("the thread is held");
            assert_eq!(snapshot_bytes(thread), whole, "{name}: prefix of {k} lines");
        }
    }
}

#[test]
fn decoding_and_reencoding_a_line_gives_the_same_bytes() {
    for (name, log) in golden_logs() {
        for (n, line) in lines(&log).into_iter().enumerate() {
            let entry = EntryRef::parse(line).unwrap();
            let event = decode(line).unwrap();
            // The decoder skips `id` and `causation_id`; the encoder derives `id` from the rest.
            let envelope: Value = serde_json::from_slice(line).unwrap();
            let header = Header {
                tenant: &entry.tenant,
                thread_id: &entry.thread_id,
                run_id: entry.run_id.as_deref(),
                causation_id: envelope["causation_id"].as_str().unwrap(),
                ts: entry.ts,
                seq: entry.seq,
            };
            let encoded = encode_entry(&header, &event);
            assert_eq!(
                String::from_utf8_lossy(&encoded),
                String::from_utf8_lossy(line),
                "{name} line {}",
                n + 1
            );
        }
    }
}

#[test]
fn a_live_engine_rewrites_each_golden_log_byte_for_byte_from_its_inputs() {
    for (name, log) in golden_logs() {
        // scenarios.py runs `hello` on the mock interpreter, `live` and `live-routing` on a
        // live model (its answers are inputs, read back from the log) and the rest scripted.
        let interpreter = match name.as_str() {
            "hello" => mock("hello from the Rust runtime"),
            live_thread if live_thread.starts_with("live") => live(),
            _ => scripted(),
        };
        let mut driver = Driver::new(engine(golden_spec(), interpreter));
        for input in inputs_of(&log) {
            let outs = driver.send(Input(input));
            assert!(
                outs.rejections().is_empty(),
                "{name}: {:?}",
                outs.rejections()
                    .iter()
                    .map(|o| String::from_utf8_lossy(&o.bytes).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&driver.log(&name)),
            String::from_utf8_lossy(&log),
            "{name}"
        );
    }
}

/// The inputs that produced a log, read back from it: the lines one input caused share its
/// `causation_id` and `ts`, and the first of them says what the input was.
fn inputs_of(log: &[u8]) -> Vec<Value> {
    let entries: Vec<Value> = lines(log)
        .into_iter()
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    let mut inputs = Vec::new();
    let mut rest = entries.as_slice();
    while let Some(first) = rest.first() {
        let cause = &first["causation_id"];
        let len = rest
            .iter()
            .take_while(|e| &e["causation_id"] == cause)
            .count();
        let (group, tail) = rest.split_at(len);
        rest = tail;
        let payloads: Vec<&Value> = group.iter().map(|e| &e["payload"]).collect();
        let (schema, payload) = match label(payloads[0]).as_str() {
            "run-start" => (
                "flowai.v1.Query",
                json!({"prompt": payloads[0]["prompt"], "agent": payloads[0]["agent"]}),
            ),
            "finish" => ("flowai.v1.CancelRun", json!({})),
            // A retry's step-start: the deadline of the wait after a failure.
            "step-start" => ("flowai.v1.DeadlineReached", json!({})),
            "model-response" => {
                let r = payloads[0];
                let usage = &r["usage"];
                let response = json!({
                    "content": r["content"], "stop_reason": r["stopReason"],
                    "raw_stop_reason": r["rawStopReason"], "provider": r["provider"],
                    "model": r["model"], "latency_ms": r["latencyMs"], "ttft_ms": r["ttftMs"],
                    "request_hash": r["requestHash"],
                    "usage": {
                        "prompt_tokens": usage["promptTokens"],
                        "completion_tokens": usage["completionTokens"],
                        "cache_read_input_tokens": usage["cacheReadInputTokens"],
                        "cache_creation_input_tokens": usage["cacheCreationInputTokens"],
                    },
                });
                (
                    "flowai.v1.ModelResult",
                    json!({"request_id": r["requestId"], "response": response}),
                )
            }
            "model-failure" => {
                let f = payloads[0];
                let failure = json!({
                    "kind": f["kind"], "message": f["message"], "status": f["status"],
                    "retry_after_ms": f["retryAfterMs"], "provider": f["provider"],
                    "model": f["model"], "latency_ms": f["latencyMs"],
                });
                (
                    "flowai.v1.ModelResult",
                    json!({"request_id": f["requestId"], "failure": failure}),
                )
            }
            _ => {
                let emitted: Vec<&Value> = payloads
                    .iter()
                    .copied()
                    .take_while(|p| matches!(p["type"].as_str(), Some("custom" | "tool-progress")))
                    .collect();
                let invocation_id = |id: &str| {
                    format!(
                        "{}/{}/{}/{id}",
                        first["tenant"].as_str().unwrap(),
                        first["thread_id"].as_str().unwrap(),
                        first["run_id"].as_str().unwrap()
                    )
                };
                if emitted.len() == payloads.len() {
                    // Logged while the tool ran: a ToolProgress input of their own.
                    let id = emitted[0]["toolInvocationId"].as_str().unwrap();
                    let payload = json!({
                        "invocation_id": invocation_id(id), "tool_invocation_id": id,
                        "events": emitted,
                    });
                    inputs.push(json!({
                        "schema": "flowai.v1.ToolProgress", "id": cause,
                        "tenant": first["tenant"], "thread_id": first["thread_id"],
                        "ts": first["ts"], "payload": payload,
                    }));
                    continue;
                }
                let result = payloads[emitted.len()];
                assert_eq!(label(result), "tool-invocation/result");
                let id = result["toolInvocationId"].as_str().unwrap();
                let mut payload = json!({
                    "invocation_id": invocation_id(id),
                    "tool_invocation_id": id,
                    "events": emitted,
                });
                if result["isError"] == json!(true) {
                    payload["error"] = result["result"]["error"].clone();
                } else {
                    payload["output"] = result["result"].clone();
                }
                ("flowai.v1.ToolResult", payload)
            }
        };
        inputs.push(json!({
            "schema": schema, "id": cause, "tenant": first["tenant"],
            "thread_id": first["thread_id"], "ts": first["ts"], "payload": payload,
        }));
    }
    inputs
}

fn to_vecs(lines: &[&[u8]]) -> Vec<Vec<u8>> {
    lines.iter().map(|line| line.to_vec()).collect()
}

#[test]
fn a_truncated_log_fails_as_corrupted_at_the_cut_line() {
    let err = replay(&broken("truncated.jsonl"))
        .err()
        .expect("must not replay");
    assert_eq!(err.code, ErrorCode::LogCorrupted, "{err}");
    assert_eq!(err.line, Some(6), "{err}");
}

#[test]
fn a_divergent_log_fails_as_diverged_at_the_first_impossible_line() {
    let err = replay(&broken("divergent.jsonl"))
        .err()
        .expect("must not replay");
    assert_eq!(err.code, ErrorCode::ReplayDiverged, "{err}");
    assert_eq!(err.line, Some(3), "{err}");
}

#[test]
fn loading_a_broken_log_adds_no_thread() {
    for name in ["truncated.jsonl", "divergent.jsonl"] {
        let mut engine = golden_engine();
        assert!(engine.load(&broken(name)).is_err(), "{name}");
        assert!(
            engine.thread("tools").is_none(),
            "{name}: a thread was half-loaded"
        );
        let (_, tools) = golden_logs()
            .into_iter()
            .find(|(n, _)| n == "tools")
            .unwrap();
        assert_eq!(
            engine.load(&tools).unwrap(),
            1,
            "{name}: the good log loads after"
        );
    }
}

#[test]
fn loading_a_log_with_one_thread_already_held_adds_none_of_its_threads() {
    let logs = golden_logs();
    let mut engine = golden_engine();
    engine.load(&logs[0].1).unwrap();
    let before = snapshot_bytes(engine.thread(&logs[0].0).unwrap());
    let all: Vec<u8> = logs.iter().flat_map(|(_, log)| log.clone()).collect();
    let err = engine
        .load(&all)
        .expect_err("a held thread cannot load twice");
    assert_eq!(err.code, ErrorCode::ReplayDiverged);
    for (name, _) in &logs[1..] {
        assert!(engine.thread(name).is_none(), "{name} was loaded anyway");
    }
    assert_eq!(snapshot_bytes(engine.thread(&logs[0].0).unwrap()), before);
}

#[test]
fn all_golden_logs_interleaved_replay_to_the_same_threads() {
    // A shared log file holds many threads' lines in any interleaving.
    let logs = golden_logs();
    let per_thread: Vec<Vec<&[u8]>> = logs.iter().map(|(_, log)| lines(log)).collect();
    let mut interleaved = Vec::new();
    for n in 0..per_thread.iter().map(Vec::len).max().unwrap() {
        for lines in &per_thread {
            if let Some(line) = lines.get(n) {
                interleaved.push(line.to_vec());
            }
        }
    }
    let replay = replay(&join_lines(&interleaved)).unwrap();
    assert_eq!(replay.threads.len(), logs.len());
    for (name, log) in &logs {
        let thread = replay.threads.iter().find(|t| &t.id == name).unwrap();
        assert_eq!(snapshot_bytes(thread), replayed_snapshot(log), "{name}");
    }
}

#[test]
fn apply_of_a_refused_first_line_adds_no_thread() {
    let mut engine = golden_engine();
    let log = golden_log("hello");
    let text = lines(&log)[1]; // step-start: seq 2, but as a thread's first line
    assert!(engine.apply(text).is_err());
    let mut first = String::from_utf8(lines(&log)[2].to_vec()).unwrap();
    first = first.replace("\"seq\":3", "\"seq\":1"); // text before any run-start
    assert_eq!(
        engine.apply(first.as_bytes()).unwrap_err().code,
        ErrorCode::ReplayDiverged
    );
    assert!(
        engine.thread("hello").is_none(),
        "a refused line left a thread behind"
    );
    assert_eq!(engine.load(&log).unwrap(), 1, "so the real log still loads");
}

#[test]
fn apply_refuses_a_line_of_another_tenant_like_replay_does() {
    let log = golden_log("hello");
    let lines = lines(&log);
    let foreign = String::from_utf8(lines[1].to_vec())
        .unwrap()
        .replace("\"tenant\":\"acme\"", "\"tenant\":\"globex\"");
    let mixed = join_lines(&[lines[0].to_vec(), foreign.clone().into_bytes()]);
    let replayed = replay(&mixed)
        .err()
        .expect("replay refuses the foreign line");
    assert_eq!(
        (replayed.code, replayed.line),
        (ErrorCode::ReplayDiverged, Some(2))
    );

    let mut engine = golden_engine();
    engine.apply(lines[0]).unwrap();
    let before = snapshot_bytes(engine.thread("hello").unwrap());
    assert_eq!(
        engine.apply(foreign.as_bytes()).unwrap_err().code,
        ErrorCode::ReplayDiverged
    );
    assert_eq!(snapshot_bytes(engine.thread("hello").unwrap()), before);
}

#[test]
fn format_1_logs_still_replay_and_their_threads_go_on_in_format_2() {
    for (name, log) in golden_logs_v1() {
        let replay = flowai_engine::replay(&log).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(replay.lines, lines(&log).len(), "{name}");
        let thread = &replay.threads[0];
        assert_eq!(thread.phase(), flowai_engine::run::Phase::Idle, "{name}");
        assert!(
            thread.usage.total() > 0,
            "{name}: usage folded from step-starts"
        );
        // A new run on an old thread is written in format 2 and replays with it.
        let mut d = Driver::scripted();
        for line in lines(&log) {
            d.apply(line).unwrap();
        }
        let outs = d.send(
            query(&name, "again")
                .agent("calculator")
                .id("after-upgrade"),
        );
        assert_eq!(outs.events()[0].payload()["v"], 2, "{name}");
        assert_eq!(outs.labels().last().unwrap(), "tool-agent/result", "{name}");
        let replayed = flowai_engine::replay(&d.log(&name)).unwrap();
        assert_eq!(
            snapshot_bytes(&replayed.threads[0]),
            d.snapshot(&name).unwrap(),
            "{name}"
        );
    }
}
