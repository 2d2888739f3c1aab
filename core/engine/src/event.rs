//! Run-log events: the typed form, its JSON encoding, and a fast decoder for replay.
//!
//! A logged event is a `flowai.v1.RuntimeEvent` envelope whose payload is the event dict a user
//! sees in the stream (docs/wire.md). Encoding writes the envelope by hand so payload values the
//! engine never inspects (tool arguments and results) pass through as raw JSON; decoding borrows
//! from the line and only copies what the state keeps.
//!
//! Imports nothing internal but `error`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::approval::Outcome;
use crate::error::{EngineError, ErrorCode, Result};
use crate::plan::PlanStatus;

pub const RUNTIME_EVENT: &str = "flowai.v1.RuntimeEvent";

/// Token counts of one turn or of a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    // Counts come from logs and inputs: saturate rather than overflow on hostile values.
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }

    pub fn total(self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageWithTotal {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What kind of event, as the run machine's table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    RunStart,
    StepStart,
    Text,
    ToolCall,
    ToolResult,
    ToolAgentCall,
    ToolAgentResult,
    DataToolAgent,
    Custom,
    ToolProgress,
    LatencySummary,
    CostSummary,
    Finish,
    FinishCancelled,
    Error,
    DataPlan,
    PlanStatusChange,
    ApprovalRequired,
    ApprovalDecision,
}

/// One event of a thread's run log.
#[derive(Clone, Debug)]
pub enum Event {
    RunStart {
        run_id: String,
        agent: String,
        prompt: String,
    },
    StepStart {
        agent: String,
        step: u32,
        model: String,
        usage: Usage,
    },
    Text {
        agent: String,
        text: String,
    },
    ToolCall {
        agent: String,
        id: String,
        tool: String,
        args: Box<RawValue>,
    },
    ToolResult {
        agent: String,
        id: String,
        tool: String,
        args: Box<RawValue>,
        result: Box<RawValue>,
        is_error: bool,
    },
    ToolAgentCall {
        agent: String,
        id: String,
        target: String,
        prompt: String,
    },
    ToolAgentResult {
        agent: String,
        id: String,
        target: String,
        result: Box<RawValue>,
        is_error: bool,
    },
    /// `data-tool-agent`, `data-latency-summary`, `data-cost-summary`: facts for observers that
    /// the state does not fold beyond their kind.
    Data {
        kind: EventKind,
        data: Box<RawValue>,
    },
    /// `custom` and `tool-progress` payloads emitted by a tool, logged verbatim.
    ToolEmitted {
        kind: EventKind,
        payload: Box<RawValue>,
    },
    Finish {
        reason: FinishReason,
        usage: Usage,
    },
    Error {
        code: String,
        message: String,
    },
    /// A validated plan, logged before its first status change.
    DataPlan {
        plan_id: String,
        spec_name: String,
        actions: Box<RawValue>,
        context: Box<RawValue>,
    },
    PlanStatusChange {
        plan_id: String,
        from: Option<PlanStatus>,
        to: PlanStatus,
    },
    ApprovalRequired {
        id: String,
        kind: ApprovalKind,
        target: String,
        payload: Box<RawValue>,
        /// The tenant (`resourceId`) and thread, so a chat-ops consumer needs nothing else.
        resource_id: String,
        thread_id: String,
        correlation_id: String,
        expires_at: Option<i64>,
    },
    ApprovalDecision {
        id: String,
        outcome: Outcome,
        partial: Option<Box<RawValue>>,
        feedback: Option<String>,
        approver: Option<String>,
        reason: Option<String>,
    },
}

/// What an approval guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalKind {
    Tool,
    Plan,
}

impl ApprovalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::Tool => "tool",
            ApprovalKind::Plan => "plan",
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RunStart { .. } => EventKind::RunStart,
            Event::StepStart { .. } => EventKind::StepStart,
            Event::Text { .. } => EventKind::Text,
            Event::ToolCall { .. } => EventKind::ToolCall,
            Event::ToolResult { .. } => EventKind::ToolResult,
            Event::ToolAgentCall { .. } => EventKind::ToolAgentCall,
            Event::ToolAgentResult { .. } => EventKind::ToolAgentResult,
            Event::Data { kind, .. } | Event::ToolEmitted { kind, .. } => *kind,
            Event::Finish {
                reason: FinishReason::Stop,
                ..
            } => EventKind::Finish,
            Event::Finish {
                reason: FinishReason::Cancelled,
                ..
            } => EventKind::FinishCancelled,
            Event::Error { .. } => EventKind::Error,
            Event::DataPlan { .. } => EventKind::DataPlan,
            Event::PlanStatusChange { .. } => EventKind::PlanStatusChange,
            Event::ApprovalRequired { .. } => EventKind::ApprovalRequired,
            Event::ApprovalDecision { .. } => EventKind::ApprovalDecision,
        }
    }

    /// Write the payload object (the dict a user sees) as JSON.
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        if let Event::ToolEmitted { payload, .. } = self {
            // Already a complete object, checked when the tool result came in.
            out.extend_from_slice(payload.get().as_bytes());
            return;
        }
        let mut w = ObjectWriter::new(out);
        match self {
            Event::RunStart {
                run_id,
                agent,
                prompt,
            } => {
                w.str("type", "run-start");
                w.str("runId", run_id);
                w.str("agent", agent);
                w.str("prompt", prompt);
            }
            Event::StepStart {
                agent,
                step,
                model,
                usage,
            } => {
                w.str("type", "step-start");
                w.str("agent", agent);
                w.json("step", step);
                w.str("model", model);
                w.json("usage", usage);
            }
            Event::Text { agent, text } => {
                w.str("type", "text");
                w.str("agent", agent);
                w.str("text", text);
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
            Event::ToolResult {
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
                w.str("agent", agent);
                w.str("toolInvocationId", id);
                w.str("targetAgent", target);
                w.str("prompt", prompt);
                w.str("state", "call");
            }
            Event::ToolAgentResult {
                agent,
                id,
                target,
                result,
                is_error,
            } => {
                w.str("type", "tool-agent");
                w.str("agent", agent);
                w.str("toolInvocationId", id);
                w.str("targetAgent", target);
                w.str("state", "result");
                w.raw("result", result);
                if *is_error {
                    w.json("isError", &true);
                }
            }
            Event::Data { kind, data } => {
                w.str("type", data_type_name(*kind));
                w.raw("data", data);
            }
            Event::ToolEmitted { .. } => unreachable!("written above"),
            Event::Finish { reason, usage } => {
                w.str("type", "finish");
                w.str("finishReason", reason.as_str());
                w.json(
                    "usage",
                    &UsageWithTotal {
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                        total_tokens: usage.total(),
                    },
                );
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
                w.key("data");
                let mut data = ObjectWriter::new(&mut *w.out);
                data.str("planId", plan_id);
                data.str("specName", spec_name);
                data.raw("actions", actions);
                data.raw("context", context);
                data.close();
            }
            Event::PlanStatusChange { plan_id, from, to } => {
                w.str("type", "plan-status-change");
                w.str("planId", plan_id);
                w.json("from", &from.map(PlanStatus::as_str));
                w.str("to", to.as_str());
            }
            Event::ApprovalRequired {
                id,
                kind,
                target,
                payload,
                resource_id,
                thread_id,
                correlation_id,
                expires_at,
            } => {
                w.str("type", "approval-required");
                w.str("id", id);
                w.str("kind", kind.as_str());
                w.str("target", target);
                w.raw("payload", payload);
                w.str("resourceId", resource_id);
                w.str("threadId", thread_id);
                w.str("correlationId", correlation_id);
                w.json("expiresAt", expires_at);
            }
            Event::ApprovalDecision {
                id,
                outcome,
                partial,
                feedback,
                approver,
                reason,
            } => {
                w.str("type", "approval-decision");
                w.str("id", id);
                w.key("outcome");
                let mut o = ObjectWriter::new(&mut *w.out);
                o.str("outcome", outcome.as_str());
                if let Some(partial) = partial {
                    o.raw("partial", partial);
                }
                o.close();
                for (key, value) in [
                    ("feedback", feedback),
                    ("approver", approver),
                    ("reason", reason),
                ] {
                    if let Some(value) = value {
                        w.str(key, value);
                    }
                }
            }
        }
        w.close();
    }
}

fn data_type_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::DataToolAgent => "data-tool-agent",
        EventKind::LatencySummary => "data-latency-summary",
        EventKind::CostSummary => "data-cost-summary",
        EventKind::Custom => "custom",
        EventKind::ToolProgress => "tool-progress",
        other => unreachable!("{other:?} is not a data event"),
    }
}

#[derive(Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub code: Cow<'a, str>,
}

/// Writes `{"k":v,...}` without building a map first.
struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_str(self.out, value);
    }

    fn raw(&mut self, key: &str, value: &RawValue) {
        self.key(key);
        self.out.extend_from_slice(value.get().as_bytes());
    }

    fn json<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value).expect("engine values always serialize");
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

pub fn write_json_str(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("strings always serialize");
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
    event.write_payload(&mut out);
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
    pub ts: i64,
    pub seq: u64,
    #[serde(borrow)]
    pub payload: PayloadRef<'a>,
}

/// Every payload field of every event kind, flat: one pass, no buffering, no tag dispatch.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadRef<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow, default)]
    run_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    agent: Option<Str<'a>>,
    #[serde(borrow, default)]
    prompt: Option<Str<'a>>,
    #[serde(default)]
    step: Option<u32>,
    #[serde(borrow, default)]
    model: Option<Str<'a>>,
    #[serde(default)]
    usage: Option<UsageRef>,
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
    plan_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    from: Option<Str<'a>>,
    #[serde(borrow, default)]
    to: Option<Str<'a>>,
    #[serde(borrow, default)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    target: Option<Str<'a>>,
    /// `kind` of an approval (`type` is the event's kind).
    #[serde(rename = "kind", borrow, default)]
    approval_kind: Option<Str<'a>>,
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

/// A present raw value, `null` included (a tool may return null): plain `Option` would read
/// `"result":null` as a missing field and refuse the line. Missing stays `None` (`default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageRef {
    input_tokens: u64,
    output_tokens: u64,
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

    /// The typed event this entry carries, `raw_payload` being the payload's JSON text
    /// (kept verbatim for tool-emitted events).
    pub fn event(&self, raw_payload: impl FnOnce() -> Result<Box<RawValue>>) -> Result<Event> {
        let p = &self.payload;
        let kind: &str = &p.kind;
        let s = |v: &Option<Str<'_>>, field: &str| -> Result<String> {
            need(v.as_deref(), kind, field).map(str::to_owned)
        };
        Ok(match kind {
            "run-start" => Event::RunStart {
                run_id: s(&p.run_id, "runId")?,
                agent: s(&p.agent, "agent")?,
                prompt: s(&p.prompt, "prompt")?,
            },
            "step-start" => {
                let usage = need(p.usage.as_ref(), kind, "usage")?;
                Event::StepStart {
                    agent: s(&p.agent, "agent")?,
                    step: need(p.step, kind, "step")?,
                    model: s(&p.model, "model")?,
                    usage: Usage {
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                    },
                }
            }
            "text" => Event::Text {
                agent: s(&p.agent, "agent")?,
                text: s(&p.text, "text")?,
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
                    "result" => Event::ToolResult {
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
            "tool-agent" => {
                let agent = s(&p.agent, "agent")?;
                let id = s(&p.tool_invocation_id, "toolInvocationId")?;
                let target = s(&p.target_agent, "targetAgent")?;
                match need(p.state.as_deref(), kind, "state")? {
                    "call" => Event::ToolAgentCall {
                        agent,
                        id,
                        target,
                        prompt: s(&p.prompt, "prompt")?,
                    },
                    "result" => Event::ToolAgentResult {
                        agent,
                        id,
                        target,
                        result: owned(need(p.result, kind, "result")?),
                        is_error: p.is_error.unwrap_or(false),
                    },
                    other => return Err(corrupt(format!("unknown tool-agent state `{other}`"))),
                }
            }
            "data-tool-agent" | "data-latency-summary" | "data-cost-summary" => Event::Data {
                kind: match kind {
                    "data-tool-agent" => EventKind::DataToolAgent,
                    "data-latency-summary" => EventKind::LatencySummary,
                    _ => EventKind::CostSummary,
                },
                data: owned(need(p.data, kind, "data")?),
            },
            "custom" | "tool-progress" => Event::ToolEmitted {
                kind: if kind == "custom" {
                    EventKind::Custom
                } else {
                    EventKind::ToolProgress
                },
                payload: raw_payload()?,
            },
            "finish" => {
                let usage = need(p.usage.as_ref(), kind, "usage")?;
                Event::Finish {
                    reason: match need(p.finish_reason.as_deref(), kind, "finishReason")? {
                        "stop" => FinishReason::Stop,
                        "cancelled" => FinishReason::Cancelled,
                        other => return Err(corrupt(format!("unknown finishReason `{other}`"))),
                    },
                    usage: Usage {
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                    },
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
            "plan-status-change" => {
                let status = |word: &str| {
                    PlanStatus::parse(word)
                        .ok_or_else(|| corrupt(format!("unknown plan status `{word}`")))
                };
                Event::PlanStatusChange {
                    plan_id: s(&p.plan_id, "planId")?,
                    from: p.from.as_deref().map(status).transpose()?,
                    to: status(need(p.to.as_deref(), kind, "to")?)?,
                }
            }
            "approval-required" => Event::ApprovalRequired {
                id: s(&p.id, "id")?,
                kind: match need(p.approval_kind.as_deref(), kind, "kind")? {
                    "tool" => ApprovalKind::Tool,
                    "plan" => ApprovalKind::Plan,
                    other => return Err(corrupt(format!("unknown approval kind `{other}`"))),
                },
                target: s(&p.target, "target")?,
                payload: owned(need(p.payload, kind, "payload")?),
                resource_id: s(&p.resource_id, "resourceId")?,
                thread_id: s(&p.thread_id, "threadId")?,
                correlation_id: s(&p.correlation_id, "correlationId")?,
                expires_at: p.expires_at,
            },
            "approval-decision" => {
                let outcome = need(p.outcome.as_ref(), kind, "outcome")?;
                Event::ApprovalDecision {
                    id: s(&p.id, "id")?,
                    outcome: Outcome::parse(&outcome.outcome).ok_or_else(|| {
                        corrupt(format!("unknown approval outcome `{}`", outcome.outcome))
                    })?,
                    partial: outcome.partial.map(owned),
                    feedback: p.feedback.as_deref().map(str::to_owned),
                    approver: p.approver.as_deref().map(str::to_owned),
                    reason: p.reason.as_deref().map(str::to_owned),
                }
            }
            other => return Err(corrupt(format!("unknown event type `{other}`"))),
        })
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
