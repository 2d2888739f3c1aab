//! The run log's JSON: how an `Event` is written (format 2, the seed's shapes) and how a
//! logged line is read back (formats 1 and 2).
//!
//! Encoding writes the envelope by hand so payload values the engine never inspects (tool
//! arguments and results) pass through as raw JSON; decoding borrows from the line and only
//! copies what the state keeps. Round trips are tested in `core/engine/tests/codec.rs`.
//!
//! Imports nothing internal but `event`, `approval`, `plan` and `error`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::approval::Outcome;
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{
    ApprovalKind, ApprovalRequest, Block, Event, EventKind, FailureKind, FinishReason,
    ModelFailure, ModelResponse, Recovery, StopReason, Tally, Usage, UsageDoc, RUNTIME_EVENT,
};
use crate::plan::PlanStatus;

#[derive(Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub code: Cow<'a, str>,
}

/// Writes `{"k":v,...}` without building a map first.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    pub fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_str(self.out, value);
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    pub fn raw(&mut self, key: &str, value: &RawValue) {
        self.key(key);
        self.out.extend_from_slice(value.get().as_bytes());
    }

    pub fn json<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value).expect("engine values always serialize");
    }

    /// A nested object under `key`.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut ObjectWriter<'_>)) {
        self.key(key);
        let mut inner = ObjectWriter::new(&mut *self.out);
        fill(&mut inner);
        inner.close();
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

pub fn write_json_str(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("strings always serialize");
}

/// Write the payload object of `event` (the dict a user sees) as JSON.
pub fn write_payload(event: &Event, out: &mut Vec<u8>) {
    if let Event::ToolEmitted { payload, .. } = event {
        // Already a complete object, checked when the tool result came in.
        out.extend_from_slice(payload.get().as_bytes());
        return;
    }
    let mut w = ObjectWriter::new(out);
    match event {
        Event::RunStart {
            run_id,
            agent,
            prompt,
            format,
        } => {
            w.str("type", "run-start");
            w.str("runId", run_id);
            w.str("agent", agent);
            w.str("prompt", prompt);
            if *format >= 2 {
                w.json("v", format);
            }
        }
        Event::AgentStart { agent, id } => {
            w.str("type", "tool-agent");
            w.str("agentName", agent);
            w.str("toolInvocationId", id);
            w.str("state", "call");
        }
        Event::AgentEnd { agent, id, result } => {
            w.str("type", "tool-agent");
            w.str("agentName", agent);
            w.str("toolInvocationId", id);
            w.str("state", "result");
            w.raw("result", result);
        }
        Event::StepStart {
            agent,
            step,
            model,
            provider,
            request_id,
            usage,
        } => {
            w.str("type", "step-start");
            w.str("agent", agent);
            w.json("step", step);
            w.str("model", model);
            w.opt_str("provider", provider.as_deref());
            w.opt_str("requestId", request_id.as_deref());
            if let Some(usage) = usage {
                w.json("usage", usage);
            }
        }
        Event::ModelResponse(r) => {
            w.str("type", "model-response");
            w.str("agent", &r.agent);
            w.str("requestId", &r.request_id);
            w.json("attempt", &r.attempt);
            w.str("provider", &r.provider);
            w.str("model", &r.model);
            w.json("stopReason", &r.stop_reason);
            w.opt_str("rawStopReason", r.raw_stop_reason.as_deref());
            w.json("usage", &r.usage);
            w.json("latencyMs", &r.latency_ms);
            if let Some(ttft) = r.ttft_ms {
                w.json("ttftMs", &ttft);
            }
            w.json("content", &r.content);
            w.opt_str("requestHash", r.request_hash.as_deref());
        }
        Event::ModelFailure(f) => {
            w.str("type", "model-failure");
            w.str("agent", &f.agent);
            w.str("requestId", &f.request_id);
            w.json("attempt", &f.attempt);
            w.str("provider", &f.provider);
            w.str("model", &f.model);
            w.str("kind", f.kind.as_str());
            w.str("message", &f.message);
            if let Some(status) = f.status {
                w.json("status", &status);
            }
            if let Some(after) = f.retry_after_ms {
                w.json("retryAfterMs", &after);
            }
            w.json("latencyMs", &f.latency_ms);
            w.object("recovery", |r| match &f.recovery {
                Recovery::Retry { at } => {
                    r.str("action", "retry");
                    r.json("at", at);
                }
                Recovery::Fallback { provider, model } => {
                    r.str("action", "fallback");
                    r.str("provider", provider);
                    r.str("model", model);
                }
                Recovery::GiveUp => r.str("action", "give-up"),
            });
        }
        Event::Reasoning {
            agent,
            text,
            request_id,
        } => {
            w.str("type", "reasoning");
            w.str("agent", agent);
            w.str("text", text);
            w.opt_str("requestId", request_id.as_deref());
        }
        Event::Text {
            agent,
            text,
            request_id,
        } => {
            w.str("type", "text");
            w.str("agent", agent);
            w.str("text", text);
            w.opt_str("requestId", request_id.as_deref());
        }
        Event::ToolCall {
            agent,
            id,
            tool,
            args,
        } => {
            w.str("type", "tool-invocation");
            w.str("agent", agent);
            w.str("toolInvocationId", id);
            w.str("toolName", tool);
            w.raw("args", args);
            w.str("state", "call");
        }
        Event::ToolReturned {
            agent,
            id,
            tool,
            args,
            result,
            is_error,
        } => {
            w.str("type", "tool-invocation");
            w.str("agent", agent);
            w.str("toolInvocationId", id);
            w.str("toolName", tool);
            w.raw("args", args);
            w.str("state", "result");
            w.raw("result", result);
            if *is_error {
                w.json("isError", &true);
            }
        }
        Event::ToolAgentCall {
            agent,
            id,
            target,
            prompt,
        } => {
            w.str("type", "tool-agent");
            w.str("agentName", target);
            w.str("toolInvocationId", id);
            w.str("state", "call");
            w.str("agent", agent);
            w.str("targetAgent", target);
            w.str("prompt", prompt);
        }
        Event::ToolAgentResult {
            agent,
            id,
            target,
            result,
            is_error,
        } => {
            w.str("type", "tool-agent");
            w.str("agentName", target);
            w.str("toolInvocationId", id);
            w.str("state", "result");
            w.str("agent", agent);
            w.str("targetAgent", target);
            w.raw("result", result);
            if *is_error {
                w.json("isError", &true);
            }
        }
        Event::Data { kind, data } => {
            w.str(
                "type",
                kind.wire_name().expect("a data event's kind is named"),
            );
            w.raw("data", data);
        }
        Event::ToolEmitted { .. } => unreachable!("written above"),
        Event::Finish { reason, usage } => {
            w.str("type", "finish");
            w.str("finishReason", reason.as_str());
            w.json("usage", usage);
        }
        Event::Error { code, message } => {
            w.str("type", "error");
            w.json(
                "error",
                &ErrorBody {
                    message: Cow::Borrowed(message),
                    code: Cow::Borrowed(code),
                },
            );
        }
        Event::DataPlan {
            plan_id,
            spec_name,
            actions,
            context,
        } => {
            w.str("type", "data-plan");
            w.object("data", |d| {
                d.str("planId", plan_id);
                d.str("specName", spec_name);
                d.raw("actions", actions);
                d.raw("context", context);
            });
        }
        Event::PlanStatusChange {
            plan_id,
            from,
            to,
            aliases,
        } => {
            w.str("type", "plan-status-change");
            w.object("data", |d| {
                d.str("planId", plan_id);
                d.json("from", &from.map(PlanStatus::as_str));
                d.str("to", to.as_str());
                if let Some((from_alias, to_alias)) = aliases {
                    d.json("fromAlias", from_alias);
                    d.str("toAlias", to_alias);
                }
            });
        }
        Event::ApprovalRequired(request) => {
            w.str("type", "approval-required");
            w.key("data");
            write_approval_request(request, w.out);
        }
        Event::Fork {
            source_thread_id,
            source_seq,
        } => {
            w.str("type", "fork");
            w.object("data", |d| {
                d.str("sourceThreadId", source_thread_id);
                d.json("sourceSeq", source_seq);
            });
        }
        Event::ApprovalProgress {
            id,
            approver,
            tally,
        } => {
            w.str("type", "approval-progress");
            w.object("data", |d| {
                d.str("id", id);
                d.str("approver", approver);
                write_tally(d, tally);
            });
        }
        Event::ApprovalDecided {
            id,
            outcome,
            partial,
            feedback,
            approver,
            reason,
            tally,
        } => {
            w.str("type", "approval-decision");
            w.object("data", |d| {
                d.str("id", id);
                d.object("outcome", |o| {
                    o.str("outcome", outcome.as_str());
                    if let Some(partial) = partial {
                        o.raw("partial", partial);
                    }
                });
                d.opt_str("feedback", feedback.as_deref());
                d.opt_str("approver", approver.as_deref());
                d.opt_str("reason", reason.as_deref());
                if let Some(tally) = tally {
                    write_tally(d, tally);
                }
            });
        }
    }
    w.close();
}

/// The `approval-required` data object, which is also the `ApprovalRequest` effect payload.
pub fn write_approval_request(request: &ApprovalRequest, out: &mut Vec<u8>) {
    let mut d = ObjectWriter::new(out);
    d.str("id", &request.id);
    d.str("kind", request.kind.as_str());
    d.str("target", &request.target);
    d.raw("payload", &request.payload);
    d.str("resourceId", &request.resource_id);
    d.str("threadId", &request.thread_id);
    d.str("correlationId", &request.correlation_id);
    d.json("expiresAt", &request.expires_at);
    d.opt_str("agent", request.agent.as_deref());
    if let Some(required) = request.approvals_required {
        d.json("approvalsRequired", &required);
    }
    d.close();
}

fn write_tally(d: &mut ObjectWriter<'_>, tally: &Tally) {
    d.json("approvals", &tally.approvals);
    d.json("approvalsRequired", &tally.required);
}

/// Envelope fields of a logged event.
pub struct Header<'a> {
    pub tenant: &'a str,
    pub thread_id: &'a str,
    pub run_id: Option<&'a str>,
    pub causation_id: &'a str,
    pub ts: i64,
    pub seq: u64,
}

/// Encode a whole run-log line (no trailing newline).
pub fn encode_entry(header: &Header<'_>, event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"schema\":\"");
    out.extend_from_slice(RUNTIME_EVENT.as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    write_json_str(
        &mut out,
        &format!("{}/{}/{}", header.tenant, header.thread_id, header.seq),
    );
    out.extend_from_slice(b",\"tenant\":");
    write_json_str(&mut out, header.tenant);
    out.extend_from_slice(b",\"thread_id\":");
    write_json_str(&mut out, header.thread_id);
    out.extend_from_slice(b",\"run_id\":");
    match header.run_id {
        Some(run_id) => write_json_str(&mut out, run_id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"causation_id\":");
    write_json_str(&mut out, header.causation_id);
    out.extend_from_slice(
        format!(",\"ts\":{},\"seq\":{},\"payload\":", header.ts, header.seq).as_bytes(),
    );
    write_payload(event, &mut out);
    out.push(b'}');
    out
}

/// A JSON string borrowed from the input when it has no escapes, copied when it has.
///
/// serde only borrows a bare `Cow<str>` field; inside an `Option` it always copies, which made
/// replay allocate for every field of every line.
#[derive(Debug)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A decoded run-log line, borrowing from the line where it can.
#[derive(Deserialize)]
pub struct EntryRef<'a> {
    #[serde(borrow)]
    pub schema: Str<'a>,
    #[serde(borrow)]
    pub tenant: Str<'a>,
    #[serde(borrow)]
    pub thread_id: Str<'a>,
    #[serde(borrow, default)]
    pub run_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub causation_id: Option<Str<'a>>,
    pub ts: i64,
    pub seq: u64,
    #[serde(borrow)]
    pub payload: PayloadRef<'a>,
}

/// Every payload field of every event kind, flat: one pass, no buffering, no tag dispatch.
/// Format 2 nests plan and approval fields under `data`, which is read with this struct too.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadRef<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Str<'a>>,
    #[serde(default)]
    v: Option<u32>,
    #[serde(borrow, default)]
    run_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    agent: Option<Str<'a>>,
    #[serde(borrow, default)]
    agent_name: Option<Str<'a>>,
    #[serde(borrow, default)]
    prompt: Option<Str<'a>>,
    #[serde(default)]
    step: Option<u32>,
    #[serde(borrow, default)]
    model: Option<Str<'a>>,
    #[serde(borrow, default)]
    provider: Option<Str<'a>>,
    #[serde(borrow, default)]
    request_id: Option<Str<'a>>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    usage: Option<UsageDoc>,
    #[serde(borrow, default)]
    text: Option<Str<'a>>,
    #[serde(borrow, default)]
    tool_invocation_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    tool_name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    args: Option<&'a RawValue>,
    #[serde(borrow, default)]
    state: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(borrow, default)]
    target_agent: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    finish_reason: Option<Str<'a>>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Str<'a>>,
    #[serde(borrow, default)]
    raw_stop_reason: Option<Str<'a>>,
    #[serde(default)]
    latency_ms: Option<i64>,
    #[serde(default)]
    ttft_ms: Option<i64>,
    #[serde(borrow, default)]
    request_hash: Option<Str<'a>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<Str<'a>>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    retry_after_ms: Option<i64>,
    #[serde(borrow, default)]
    recovery: Option<&'a RawValue>,
    // Plan and approval fields: at the top level in format 1, under `data` in format 2 (which
    // is read with this same struct).
    #[serde(borrow, default)]
    plan_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    from: Option<Str<'a>>,
    #[serde(borrow, default)]
    to: Option<Str<'a>>,
    #[serde(borrow, default)]
    from_alias: Option<Str<'a>>,
    #[serde(borrow, default)]
    to_alias: Option<Str<'a>>,
    #[serde(borrow, default)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    target: Option<Str<'a>>,
    /// `kind` of an approval, or of a model failure (`type` is the event's kind).
    #[serde(rename = "kind", borrow, default)]
    kind_field: Option<Str<'a>>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    thread_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    correlation_id: Option<Str<'a>>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(borrow, default)]
    outcome: Option<OutcomeRef<'a>>,
    #[serde(borrow, default)]
    feedback: Option<Str<'a>>,
    #[serde(borrow, default)]
    approver: Option<Str<'a>>,
    #[serde(borrow, default)]
    reason: Option<Str<'a>>,
    #[serde(default)]
    approvals: Option<u32>,
    #[serde(default)]
    approvals_required: Option<u32>,
}

#[derive(Deserialize)]
struct OutcomeRef<'a> {
    #[serde(borrow)]
    outcome: Str<'a>,
    #[serde(borrow, default)]
    partial: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanDataRef<'a> {
    #[serde(borrow)]
    plan_id: Str<'a>,
    #[serde(borrow)]
    spec_name: Str<'a>,
    #[serde(borrow)]
    actions: &'a RawValue,
    #[serde(borrow)]
    context: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForkDataRef<'a> {
    #[serde(borrow)]
    source_thread_id: Str<'a>,
    source_seq: u64,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
enum RecoveryDoc {
    Retry { at: i64 },
    Fallback { provider: String, model: String },
    GiveUp,
}

/// A present raw value, `null` included (a tool may return null): plain `Option` would read
/// `"result":null` as a missing field and refuse the line. Missing stays `None` (`default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

fn corrupt(message: String) -> EngineError {
    EngineError::new(ErrorCode::LogCorrupted, message)
}

fn need<T>(value: Option<T>, kind: &str, field: &str) -> Result<T> {
    value.ok_or_else(|| corrupt(format!("a `{kind}` event has no `{field}`")))
}

fn owned(value: &RawValue) -> Box<RawValue> {
    value.to_owned()
}

impl EntryRef<'_> {
    /// Decode one run-log line. Errors are `LOG_CORRUPTED` (the caller adds the line number).
    pub fn parse(line: &[u8]) -> Result<EntryRef<'_>> {
        let line = std::str::from_utf8(line)
            .map_err(|e| corrupt(format!("not UTF-8 ({e}); the file was damaged")))?;
        EntryRef::parse_str(line)
    }

    /// Decode a line already known to be UTF-8 (a whole log is checked once, which is much
    /// cheaper than serde checking every string of every line).
    pub fn parse_str(line: &str) -> Result<EntryRef<'_>> {
        let entry: EntryRef<'_> = serde_json::from_str(line).map_err(|e| {
            corrupt(format!(
                "not a run-log entry ({e}); the file was truncated or edited by hand"
            ))
        })?;
        if &*entry.schema != RUNTIME_EVENT {
            return Err(corrupt(format!(
                "expected schema `{RUNTIME_EVENT}`, found `{}`",
                &*entry.schema
            )));
        }
        Ok(entry)
    }

    pub fn causation(&self) -> &str {
        self.causation_id.as_deref().unwrap_or_default()
    }

    /// The typed event this entry carries, `raw_payload` being the payload's JSON text
    /// (kept verbatim for tool-emitted events).
    pub fn event(&self, raw_payload: impl FnOnce() -> Result<Box<RawValue>>) -> Result<Event> {
        let p = &self.payload;
        let kind: &str = p
            .kind
            .as_deref()
            .ok_or_else(|| corrupt("a run-log payload has no `type`".to_owned()))?;
        let s = |v: &Option<Str<'_>>, field: &str| -> Result<String> {
            need(v.as_deref(), kind, field).map(str::to_owned)
        };
        let opt = |v: &Option<Str<'_>>| v.as_deref().map(str::to_owned);
        Ok(match kind {
            "run-start" => Event::RunStart {
                run_id: s(&p.run_id, "runId")?,
                agent: s(&p.agent, "agent")?,
                prompt: s(&p.prompt, "prompt")?,
                format: p.v.unwrap_or(1),
            },
            "step-start" => Event::StepStart {
                agent: s(&p.agent, "agent")?,
                step: need(p.step, kind, "step")?,
                model: s(&p.model, "model")?,
                provider: opt(&p.provider),
                request_id: opt(&p.request_id),
                usage: p.usage.as_ref().map(Usage::from),
            },
            "model-response" => {
                let content = need(p.content, kind, "content")?;
                let content: Vec<Block> = serde_json::from_str(content.get()).map_err(|e| {
                    corrupt(format!("a `model-response` event has a bad `content`: {e}"))
                })?;
                let stop = need(p.stop_reason.as_deref(), kind, "stopReason")?;
                Event::ModelResponse(Box::new(ModelResponse {
                    agent: s(&p.agent, "agent")?,
                    request_id: s(&p.request_id, "requestId")?,
                    attempt: need(p.attempt, kind, "attempt")?,
                    provider: s(&p.provider, "provider")?,
                    model: s(&p.model, "model")?,
                    stop_reason: parse_stop(stop)?,
                    raw_stop_reason: opt(&p.raw_stop_reason),
                    usage: Usage::from(need(p.usage.as_ref(), kind, "usage")?),
                    latency_ms: p.latency_ms.unwrap_or(0),
                    ttft_ms: p.ttft_ms,
                    content,
                    request_hash: opt(&p.request_hash),
                }))
            }
            "model-failure" => {
                let recovery = need(p.recovery, kind, "recovery")?;
                let recovery = match serde_json::from_str::<RecoveryDoc>(recovery.get()) {
                    Ok(RecoveryDoc::Retry { at }) => Recovery::Retry { at },
                    Ok(RecoveryDoc::Fallback { provider, model }) => {
                        Recovery::Fallback { provider, model }
                    }
                    Ok(RecoveryDoc::GiveUp) => Recovery::GiveUp,
                    Err(e) => {
                        return Err(corrupt(format!(
                            "a `model-failure` event has a bad `recovery`: {e}"
                        )))
                    }
                };
                let failure = need(p.kind_field.as_deref(), kind, "kind")?;
                let failure: FailureKind = serde_json::from_value(failure.into())
                    .map_err(|_| corrupt(format!("unknown model failure kind `{failure}`")))?;
                Event::ModelFailure(Box::new(ModelFailure {
                    agent: s(&p.agent, "agent")?,
                    request_id: s(&p.request_id, "requestId")?,
                    attempt: need(p.attempt, kind, "attempt")?,
                    provider: s(&p.provider, "provider")?,
                    model: s(&p.model, "model")?,
                    kind: failure,
                    message: opt(&p.message).unwrap_or_default(),
                    status: p.status,
                    retry_after_ms: p.retry_after_ms,
                    latency_ms: p.latency_ms.unwrap_or(0),
                    recovery,
                }))
            }
            "reasoning" => Event::Reasoning {
                agent: s(&p.agent, "agent")?,
                text: opt(&p.text).unwrap_or_default(),
                request_id: opt(&p.request_id),
            },
            "text" => Event::Text {
                agent: s(&p.agent, "agent")?,
                text: s(&p.text, "text")?,
                request_id: opt(&p.request_id),
            },
            "tool-invocation" => {
                let agent = s(&p.agent, "agent")?;
                let id = s(&p.tool_invocation_id, "toolInvocationId")?;
                let tool = s(&p.tool_name, "toolName")?;
                let args = owned(need(p.args, kind, "args")?);
                match need(p.state.as_deref(), kind, "state")? {
                    "call" => Event::ToolCall {
                        agent,
                        id,
                        tool,
                        args,
                    },
                    "result" => Event::ToolReturned {
                        agent,
                        id,
                        tool,
                        args,
                        result: owned(need(p.result, kind, "result")?),
                        is_error: p.is_error.unwrap_or(false),
                    },
                    other => {
                        return Err(corrupt(format!("unknown tool-invocation state `{other}`")))
                    }
                }
            }
            "tool-agent" => self.tool_agent(kind)?,
            named if EventKind::of_wire_name(named).is_some() => {
                let kind = EventKind::of_wire_name(named).expect("checked by the guard");
                if kind.is_tool_emitted() {
                    Event::ToolEmitted {
                        kind,
                        payload: raw_payload()?,
                    }
                } else {
                    Event::Data {
                        kind,
                        data: owned(need(p.data, named, "data")?),
                    }
                }
            }
            "finish" => {
                let reason = need(p.finish_reason.as_deref(), kind, "finishReason")?;
                Event::Finish {
                    reason: FinishReason::parse(reason)
                        .ok_or_else(|| corrupt(format!("unknown finishReason `{reason}`")))?,
                    usage: Usage::from(need(p.usage.as_ref(), kind, "usage")?),
                }
            }
            "error" => {
                let body = need(p.error.as_ref(), kind, "error")?;
                Event::Error {
                    code: body.code.to_string(),
                    message: body.message.to_string(),
                }
            }
            "data-plan" => {
                let data = need(p.data, kind, "data")?;
                let plan: PlanDataRef<'_> = serde_json::from_str(data.get())
                    .map_err(|e| corrupt(format!("a `data-plan` event has a bad `data`: {e}")))?;
                Event::DataPlan {
                    plan_id: plan.plan_id.to_string(),
                    spec_name: plan.spec_name.to_string(),
                    actions: owned(plan.actions),
                    context: owned(plan.context),
                }
            }
            "fork" => {
                let data = need(p.data, kind, "data")?;
                let fork: ForkDataRef<'_> = serde_json::from_str(data.get())
                    .map_err(|e| corrupt(format!("a `fork` event has a bad `data`: {e}")))?;
                Event::Fork {
                    source_thread_id: fork.source_thread_id.to_string(),
                    source_seq: fork.source_seq,
                }
            }
            "plan-status-change" | "approval-required" | "approval-progress"
            | "approval-decision" => {
                match p.data {
                    // Format 2: the fields are under `data`.
                    Some(data) => {
                        let nested: PayloadRef<'_> =
                            serde_json::from_str(data.get()).map_err(|e| {
                                corrupt(format!("a `{kind}` event has a bad `data`: {e}"))
                            })?;
                        flat_event(kind, &nested)?
                    }
                    None => flat_event(kind, p)?,
                }
            }
            other => return Err(corrupt(format!("unknown event type `{other}`"))),
        })
    }

    fn tool_agent(&self, kind: &str) -> Result<Event> {
        let p = &self.payload;
        let s = |v: &Option<Str<'_>>, field: &str| -> Result<String> {
            need(v.as_deref(), kind, field).map(str::to_owned)
        };
        let id = s(&p.tool_invocation_id, "toolInvocationId")?;
        let state = need(p.state.as_deref(), kind, "state")?;
        if p.target_agent.is_none() {
            // The entry agent's wrapping pair names only the agent being run.
            let agent = s(&p.agent_name, "agentName")?;
            return match state {
                "call" => Ok(Event::AgentStart { agent, id }),
                "result" => Ok(Event::AgentEnd {
                    agent,
                    id,
                    result: owned(need(p.result, kind, "result")?),
                }),
                other => Err(corrupt(format!("unknown tool-agent state `{other}`"))),
            };
        }
        let agent = s(&p.agent, "agent")?;
        let target = s(&p.target_agent, "targetAgent")?;
        match state {
            "call" => Ok(Event::ToolAgentCall {
                agent,
                id,
                target,
                prompt: s(&p.prompt, "prompt")?,
            }),
            "result" => Ok(Event::ToolAgentResult {
                agent,
                id,
                target,
                result: owned(need(p.result, kind, "result")?),
                is_error: p.is_error.unwrap_or(false),
            }),
            other => Err(corrupt(format!("unknown tool-agent state `{other}`"))),
        }
    }
}

fn parse_stop(word: &str) -> Result<StopReason> {
    serde_json::from_value(word.into()).map_err(|_| corrupt(format!("unknown stopReason `{word}`")))
}

/// A plan or approval event from its (top-level or nested) fields.
fn flat_event(kind: &str, f: &PayloadRef<'_>) -> Result<Event> {
    let s = |v: &Option<Str<'_>>, field: &str| -> Result<String> {
        need(v.as_deref(), kind, field).map(str::to_owned)
    };
    let opt = |v: &Option<Str<'_>>| v.as_deref().map(str::to_owned);
    Ok(match kind {
        "plan-status-change" => {
            let status = |word: &str| {
                PlanStatus::parse(word)
                    .ok_or_else(|| corrupt(format!("unknown plan status `{word}`")))
            };
            let to = status(need(f.to.as_deref(), kind, "to")?)?;
            Event::PlanStatusChange {
                plan_id: s(&f.plan_id, "planId")?,
                from: f.from.as_deref().map(status).transpose()?,
                to,
                aliases: f
                    .to_alias
                    .as_deref()
                    .map(|to_alias| (opt(&f.from_alias), to_alias.to_owned())),
            }
        }
        "approval-required" => Event::ApprovalRequired(Box::new(ApprovalRequest {
            id: s(&f.id, "id")?,
            kind: match need(f.kind_field.as_deref(), kind, "kind")? {
                "tool" => ApprovalKind::Tool,
                "plan" => ApprovalKind::Plan,
                other => return Err(corrupt(format!("unknown approval kind `{other}`"))),
            },
            target: s(&f.target, "target")?,
            payload: owned(need(f.payload, kind, "payload")?),
            resource_id: s(&f.resource_id, "resourceId")?,
            thread_id: s(&f.thread_id, "threadId")?,
            correlation_id: s(&f.correlation_id, "correlationId")?,
            expires_at: f.expires_at,
            agent: opt(&f.agent),
            approvals_required: match f.approvals_required {
                None => None,
                Some(n @ 2..) => Some(n),
                Some(n) => {
                    return Err(corrupt(format!(
                        "an `approval-required` event asks for {n} approvers; more than one is written only when 2 or more are needed"
                    )))
                }
            },
        })),
        "approval-progress" => Event::ApprovalProgress {
            id: s(&f.id, "id")?,
            approver: s(&f.approver, "approver")?,
            tally: need(tally(kind, f)?, kind, "approvals")?,
        },
        _ => {
            let outcome = need(f.outcome.as_ref(), kind, "outcome")?;
            Event::ApprovalDecided {
                id: s(&f.id, "id")?,
                outcome: Outcome::parse(&outcome.outcome).ok_or_else(|| {
                    corrupt(format!("unknown approval outcome `{}`", outcome.outcome))
                })?,
                partial: outcome.partial.map(owned),
                feedback: opt(&f.feedback),
                approver: opt(&f.approver),
                reason: opt(&f.reason),
                tally: tally(kind, f)?,
            }
        }
    })
}

/// `approvals` and `approvalsRequired`, which come together or not at all.
fn tally(kind: &str, f: &PayloadRef<'_>) -> Result<Option<Tally>> {
    match (f.approvals, f.approvals_required) {
        (None, None) => Ok(None),
        (Some(approvals), Some(required)) => Ok(Some(Tally {
            approvals,
            required,
        })),
        _ => Err(corrupt(format!(
            "a `{kind}` event has one of `approvals` and `approvalsRequired` without the other"
        ))),
    }
}

/// The payload object of a line as raw JSON (only needed for tool-emitted events).
pub fn raw_payload_of(line: &str) -> Result<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Only<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let only: Only<'_> =
        serde_json::from_str(line).map_err(|e| corrupt(format!("not a run-log entry ({e})")))?;
    Ok(only.payload.to_owned())
}
