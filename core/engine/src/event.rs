//! Run-log events: the typed form the engine decides and folds.
//!
//! A logged event is a `flowai.v1.RuntimeEvent` envelope whose payload is the event dict a user
//! sees in the stream (docs/wire.md). The JSON encoding and the replay decoder live in
//! `codec`; this module only holds the types, their kinds (the run table's alphabet) and the
//! token usage they carry.
//!
//! Log format: every run starts with a `run-start` that names the format it was written in
//! (`v`). Format 2 (this engine) has the seed's event shapes and model calls as logged facts;
//! format 1 logs (the engine before model calls were effects) still replay.
//!
//! Variants name the fact that was logged, in the past tense where the input that caused it
//! has a schema of its own: a `flowai.v1.ToolResult` input is logged as `ToolReturned`, a
//! `flowai.v1.ToolProgress` one as `ProgressReported`, a `flowai.v1.ApprovalDecision` one as
//! `ApprovalDecided`, so grepping a schema's name finds its hop, not the log. The wire names
//! (`tool-invocation` result, `tool-progress`, `approval-decision`) are `codec`'s.
//!
//! Imports nothing internal but `approval` (outcomes) and `plan` (statuses).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::approval::Outcome;
use crate::plan::PlanStatus;

pub const RUNTIME_EVENT: &str = "flowai.v1.RuntimeEvent";

/// The log format this engine writes.
pub const LOG_FORMAT: u32 = 2;

/// Token counts of one model turn or of a whole run, in the seed's names.
///
/// `prompt_tokens` are input tokens neither read from nor written to a prompt cache; the
/// total counts all four.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "UsageDoc")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            ..Usage::default()
        }
    }

    // Counts come from logs and inputs: saturate rather than overflow on hostile values.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .saturating_add(other.cache_read_input_tokens);
        self.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .saturating_add(other.cache_creation_input_tokens);
    }

    pub fn total(self) -> u64 {
        self.prompt_tokens
            .saturating_add(self.completion_tokens)
            .saturating_add(self.cache_read_input_tokens)
            .saturating_add(self.cache_creation_input_tokens)
    }
}

impl Serialize for Usage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Usage", 5)?;
        out.serialize_field("promptTokens", &self.prompt_tokens)?;
        out.serialize_field("completionTokens", &self.completion_tokens)?;
        out.serialize_field("totalTokens", &self.total())?;
        out.serialize_field("cacheReadInputTokens", &self.cache_read_input_tokens)?;
        out.serialize_field(
            "cacheCreationInputTokens",
            &self.cache_creation_input_tokens,
        )?;
        out.end()
    }
}

/// Usage as logs spell it: the seed's names (format 2) or `inputTokens`/`outputTokens`
/// (format 1). `totalTokens` is derived, so it is not read.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsageDoc {
    #[serde(default, alias = "inputTokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "outputTokens")]
    completion_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

impl From<UsageDoc> for Usage {
    fn from(doc: UsageDoc) -> Usage {
        Usage::from(&doc)
    }
}

impl From<&UsageDoc> for Usage {
    fn from(doc: &UsageDoc) -> Usage {
        Usage {
            prompt_tokens: doc.prompt_tokens,
            completion_tokens: doc.completion_tokens,
            cache_read_input_tokens: doc.cache_read_input_tokens,
            cache_creation_input_tokens: doc.cache_creation_input_tokens,
        }
    }
}

/// Why a run finished: the seed's reasons, plus `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    ToolCalls,
    Length,
    ContentFilter,
    Cancelled,
}

impl FinishReason {
    pub const ALL: [FinishReason; 5] = [
        FinishReason::Stop,
        FinishReason::ToolCalls,
        FinishReason::Length,
        FinishReason::ContentFilter,
        FinishReason::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::ToolCalls => "tool-calls",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content-filter",
            FinishReason::Cancelled => "cancelled",
        }
    }

    pub fn parse(word: &str) -> Option<FinishReason> {
        FinishReason::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

/// What kind of event, as the run machine's table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    RunStart,
    /// The entry agent's wrapping `tool-agent` call (first event a user sees).
    AgentStart,
    /// The entry agent's wrapping `tool-agent` result (last event of a finished run).
    AgentEnd,
    StepStart,
    ModelResponse,
    ModelFailure,
    Reasoning,
    Text,
    ToolCall,
    /// A tool's (or the engine's) answer to a call: the `tool-invocation` result event.
    ToolReturned,
    ToolAgentCall,
    ToolAgentResult,
    DataToolAgent,
    Custom,
    /// A tool reported progress while it ran: the `tool-progress` event.
    ProgressReported,
    LatencySummary,
    CostSummary,
    Finish,
    FinishCancelled,
    Error,
    DataPlan,
    PlanStatusChange,
    ApprovalRequired,
    /// An approve that leaves a quorum gate waiting for more approvers.
    ApprovalProgress,
    /// A gate's decision (a human's, or the deadline's): the `approval-decision` event.
    ApprovalDecided,
    /// The first fact of a forked thread after the history it copied (ours).
    Fork,
}

/// One content block of a model's answer (docs/wire.md, "Model calls").
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Reasoning {
        #[serde(default)]
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redacted: Option<String>,
    },
    ToolCall {
        id: String,
        name: String,
        args: Box<RawValue>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args_error: Option<String>,
    },
}

// Read through a flat struct: raw JSON (tool arguments) cannot pass through serde's buffering
// of internally tagged enums.
impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            text: Option<String>,
            #[serde(default)]
            signature: Option<String>,
            #[serde(default)]
            redacted: Option<String>,
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            args: Option<Box<RawValue>>,
            #[serde(default)]
            args_error: Option<String>,
        }
        let doc = Doc::deserialize(d)?;
        match doc.kind.as_str() {
            "text" => Ok(Block::Text {
                text: doc.text.ok_or_else(|| D::Error::missing_field("text"))?,
            }),
            "reasoning" => Ok(Block::Reasoning {
                text: doc.text.unwrap_or_default(),
                signature: doc.signature,
                redacted: doc.redacted,
            }),
            "tool_call" => {
                let args = doc.args.ok_or_else(|| D::Error::missing_field("args"))?;
                let args = if args.get().trim_start().starts_with('{') {
                    args
                } else {
                    return Err(D::Error::custom("tool_call args must be a JSON object"));
                };
                Ok(Block::ToolCall {
                    id: doc.id.ok_or_else(|| D::Error::missing_field("id"))?,
                    name: doc.name.ok_or_else(|| D::Error::missing_field("name"))?,
                    args,
                    args_error: doc.args_error,
                })
            }
            other => Err(D::Error::unknown_variant(
                other,
                &["text", "reasoning", "tool_call"],
            )),
        }
    }
}

/// Why a model's turn stopped, normalized to the seed's finish reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    Stop,
    ToolCalls,
    Length,
    ContentFilter,
}

/// A model's answer to one request, as logged (`model-response`, not streamed).
#[derive(Clone, Debug)]
pub struct ModelResponse {
    pub agent: String,
    pub request_id: String,
    pub attempt: u32,
    /// Who answered: a provider, or the engine's interpreter (`mock`, `scripted`, `noop`).
    pub provider: String,
    /// The model that actually answered.
    pub model: String,
    pub stop_reason: StopReason,
    pub raw_stop_reason: Option<String>,
    pub usage: Usage,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub content: Vec<Block>,
    /// The driver's hash of the request this answers (`requestHash`; absent in older logs
    /// and for the interpreters): replay-as-eval reuses an answer whose request is unchanged.
    pub request_hash: Option<String>,
}

/// The kinds of model failure (docs/wire.md); the retry and fallback policies name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    RateLimited,
    Overloaded,
    Server,
    Timeout,
    Connection,
    Auth,
    BadRequest,
    ContextLength,
    BadResponse,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Overloaded => "overloaded",
            FailureKind::Server => "server",
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::Auth => "auth",
            FailureKind::BadRequest => "bad_request",
            FailureKind::ContextLength => "context_length",
            FailureKind::BadResponse => "bad_response",
        }
    }
}

/// What the engine decided after a failed model call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Ask the same model again at `at` (ms).
    Retry { at: i64 },
    /// Ask the next model of the fallback chain at once.
    Fallback { provider: String, model: String },
    /// The chain is exhausted: the run ends with an error naming every attempt.
    GiveUp,
}

/// One failed model call and what the engine does next (`model-failure`, streamed).
#[derive(Clone, Debug)]
pub struct ModelFailure {
    pub agent: String,
    pub request_id: String,
    pub attempt: u32,
    pub provider: String,
    pub model: String,
    pub kind: FailureKind,
    pub message: String,
    pub status: Option<u16>,
    pub retry_after_ms: Option<i64>,
    pub latency_ms: i64,
    pub recovery: Recovery,
}

/// One event of a thread's run log.
#[derive(Clone, Debug)]
pub enum Event {
    RunStart {
        run_id: String,
        agent: String,
        prompt: String,
        /// The log format the run was written in.
        format: u32,
    },
    AgentStart {
        agent: String,
        id: String,
    },
    AgentEnd {
        agent: String,
        id: String,
        result: Box<RawValue>,
    },
    StepStart {
        agent: String,
        step: u32,
        model: String,
        provider: Option<String>,
        request_id: Option<String>,
        /// Format 1 only: the turn's usage (format 2 logs it with the model's response).
        usage: Option<Usage>,
    },
    ModelResponse(Box<ModelResponse>),
    ModelFailure(Box<ModelFailure>),
    Reasoning {
        agent: String,
        text: String,
        request_id: Option<String>,
    },
    Text {
        agent: String,
        text: String,
        request_id: Option<String>,
    },
    ToolCall {
        agent: String,
        id: String,
        tool: String,
        args: Box<RawValue>,
    },
    /// The answer to a call (`tool-invocation` result), from its tool or from the engine.
    ToolReturned {
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
        /// Display labels of the two statuses, from the plan spec's `display_aliases`.
        aliases: Option<(Option<String>, String)>,
    },
    ApprovalRequired(Box<ApprovalRequest>),
    /// One more distinct approver of a gate that needs several; the gate keeps waiting.
    ApprovalProgress {
        id: String,
        approver: String,
        tally: Tally,
    },
    /// This thread was forked from `source_thread_id` after its event `source_seq`: the
    /// events before this one are that thread's, copied. At a gate, the fork re-opens it (a
    /// new `approval-required` with this thread's approval id follows).
    Fork {
        source_thread_id: String,
        source_seq: u64,
    },
    /// The decision that closed a gate (`approval-decision`).
    ApprovalDecided {
        id: String,
        outcome: Outcome,
        partial: Option<Box<RawValue>>,
        feedback: Option<String>,
        approver: Option<String>,
        reason: Option<String>,
        /// At a gate that needs several approvers: how many had approved when it closed.
        tally: Option<Tally>,
    },
}

/// Where a quorum gate stands: `approvals` distinct approvers of the `required` (>= 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub approvals: u32,
    pub required: u32,
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

/// The `approval-required` fact: what a human is asked to decide.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    pub id: String,
    pub kind: ApprovalKind,
    /// The tool name, or the plan id.
    pub target: String,
    /// The tool's arguments, or the plan.
    pub payload: Box<RawValue>,
    /// The tenant (`resourceId`) and thread, so a chat-ops consumer needs nothing else.
    pub resource_id: String,
    pub thread_id: String,
    /// The tool invocation id (tools) or the plan id (plans).
    pub correlation_id: String,
    pub expires_at: Option<i64>,
    /// The agent whose call waits (format 2).
    pub agent: Option<String>,
    /// How many distinct approvers must approve, when more than one (the two-person rule).
    pub approvals_required: Option<u32>,
}

impl ApprovalRequest {
    /// How many distinct approvers the gate waits for.
    pub fn required(&self) -> u32 {
        self.approvals_required.unwrap_or(1)
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RunStart { .. } => EventKind::RunStart,
            Event::AgentStart { .. } => EventKind::AgentStart,
            Event::AgentEnd { .. } => EventKind::AgentEnd,
            Event::StepStart { .. } => EventKind::StepStart,
            Event::ModelResponse(_) => EventKind::ModelResponse,
            Event::ModelFailure(_) => EventKind::ModelFailure,
            Event::Reasoning { .. } => EventKind::Reasoning,
            Event::Text { .. } => EventKind::Text,
            Event::ToolCall { .. } => EventKind::ToolCall,
            Event::ToolReturned { .. } => EventKind::ToolReturned,
            Event::ToolAgentCall { .. } => EventKind::ToolAgentCall,
            Event::ToolAgentResult { .. } => EventKind::ToolAgentResult,
            Event::Data { kind, .. } | Event::ToolEmitted { kind, .. } => *kind,
            Event::Finish {
                reason: FinishReason::Cancelled,
                ..
            } => EventKind::FinishCancelled,
            Event::Finish { .. } => EventKind::Finish,
            Event::Error { .. } => EventKind::Error,
            Event::DataPlan { .. } => EventKind::DataPlan,
            Event::PlanStatusChange { .. } => EventKind::PlanStatusChange,
            Event::ApprovalRequired(_) => EventKind::ApprovalRequired,
            Event::ApprovalProgress { .. } => EventKind::ApprovalProgress,
            Event::ApprovalDecided { .. } => EventKind::ApprovalDecided,
            Event::Fork { .. } => EventKind::Fork,
        }
    }
}

/// The kinds whose events are logged as `{"type", "data"}` ([`Event::Data`]) or as a tool
/// emitted them ([`Event::ToolEmitted`]), with their wire `type`: the one list the codec reads
/// both ways and the table tests build samples from, so a new fact of this shape is a line
/// here (plus its run-table row).
const NAMED: [(EventKind, &str); 5] = [
    (EventKind::DataToolAgent, "data-tool-agent"),
    (EventKind::LatencySummary, "data-latency-summary"),
    (EventKind::CostSummary, "data-cost-summary"),
    (EventKind::Custom, "custom"),
    (EventKind::ProgressReported, "tool-progress"),
];

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 26] = [
        EventKind::RunStart,
        EventKind::AgentStart,
        EventKind::AgentEnd,
        EventKind::StepStart,
        EventKind::ModelResponse,
        EventKind::ModelFailure,
        EventKind::Reasoning,
        EventKind::Text,
        EventKind::ToolCall,
        EventKind::ToolReturned,
        EventKind::ToolAgentCall,
        EventKind::ToolAgentResult,
        EventKind::DataToolAgent,
        EventKind::Custom,
        EventKind::ProgressReported,
        EventKind::LatencySummary,
        EventKind::CostSummary,
        EventKind::Finish,
        EventKind::FinishCancelled,
        EventKind::Error,
        EventKind::DataPlan,
        EventKind::PlanStatusChange,
        EventKind::ApprovalRequired,
        EventKind::ApprovalProgress,
        EventKind::ApprovalDecided,
        EventKind::Fork,
    ];

    /// The wire `type` of this kind's events. Several kinds share one: the call and result
    /// halves of a `tool-agent` or a `tool-invocation`, a finish and a cancelled finish.
    pub fn type_name(self) -> &'static str {
        match self {
            EventKind::RunStart => "run-start",
            EventKind::AgentStart
            | EventKind::AgentEnd
            | EventKind::ToolAgentCall
            | EventKind::ToolAgentResult => "tool-agent",
            EventKind::StepStart => "step-start",
            EventKind::ModelResponse => "model-response",
            EventKind::ModelFailure => "model-failure",
            EventKind::Reasoning => "reasoning",
            EventKind::Text => "text",
            EventKind::ToolCall | EventKind::ToolReturned => "tool-invocation",
            EventKind::DataToolAgent
            | EventKind::LatencySummary
            | EventKind::CostSummary
            | EventKind::Custom
            | EventKind::ProgressReported => self.wire_name().expect("named in NAMED"),
            EventKind::Finish | EventKind::FinishCancelled => "finish",
            EventKind::Error => "error",
            EventKind::DataPlan => "data-plan",
            EventKind::PlanStatusChange => "plan-status-change",
            EventKind::ApprovalRequired => "approval-required",
            EventKind::ApprovalProgress => "approval-progress",
            EventKind::ApprovalDecided => "approval-decision",
            EventKind::Fork => "fork",
        }
    }

    /// The wire `type` of an [`Event::Data`] or [`Event::ToolEmitted`] kind.
    pub fn wire_name(self) -> Option<&'static str> {
        NAMED
            .iter()
            .find(|(kind, _)| *kind == self)
            .map(|(_, name)| *name)
    }

    /// The kind of an [`Event::Data`] or [`Event::ToolEmitted`] event of wire `type` `name`.
    pub fn of_wire_name(name: &str) -> Option<EventKind> {
        NAMED
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(kind, _)| *kind)
    }

    /// Whether events of this kind are logged verbatim as a tool emitted them.
    pub fn is_tool_emitted(self) -> bool {
        matches!(self, EventKind::Custom | EventKind::ProgressReported)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventKind::Finish | EventKind::FinishCancelled | EventKind::Error
        )
    }
}
