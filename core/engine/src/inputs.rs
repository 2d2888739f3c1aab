//! What the engine takes in and sends out, by schema name, and how an input's payload is read.
//!
//! Every input is an envelope (docs/wire.md); its payload is checked strictly here, so an
//! input the engine would misread is refused (with what was wrong and what to send) before it
//! changes anything.
//!
//! Imports `event` (blocks, usage, failure kinds) and `error`.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{EngineError, ErrorCode, Result, ResultCode};
use crate::event::{Block, FailureKind, StopReason, Usage};

// Inputs.
pub const QUERY: &str = "flowai.v1.Query";
pub const TOOL_RESULT: &str = "flowai.v1.ToolResult";
pub const TOOL_PROGRESS: &str = "flowai.v1.ToolProgress";
pub const MODEL_RESULT: &str = "flowai.v1.ModelResult";
pub const CANCEL_RUN: &str = "flowai.v1.CancelRun";
pub const APPROVAL_DECISION: &str = "flowai.v1.ApprovalDecision";
pub const DEADLINE_REACHED: &str = "flowai.v1.DeadlineReached";
pub const APPROVAL_CHECK_RESULT: &str = "flowai.v1.ApprovalCheckResult";
pub const RESUME_RUN: &str = "flowai.v1.ResumeRun";

pub const INPUTS: &[&str] = &[
    QUERY,
    TOOL_RESULT,
    TOOL_PROGRESS,
    MODEL_RESULT,
    CANCEL_RUN,
    APPROVAL_DECISION,
    DEADLINE_REACHED,
    APPROVAL_CHECK_RESULT,
    RESUME_RUN,
];

// Effects.
pub const TOOL_INVOCATION: &str = "flowai.v1.ToolInvocation";
pub const PLAN_STEP: &str = "flowai.v1.PlanStep";
pub const APPROVAL_REQUEST: &str = "flowai.v1.ApprovalRequest";
pub const APPROVAL_CHECK: &str = "flowai.v1.ApprovalCheck";
pub const MODEL_REQUEST: &str = "flowai.v1.ModelRequest";

#[derive(Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow)]
    pub schema: &'a str,
    pub id: String,
    pub tenant: String,
    pub thread_id: String,
    pub ts: i64,
    #[serde(borrow)]
    pub payload: &'a RawValue,
}

pub fn malformed(message: String) -> EngineError {
    EngineError::new(ErrorCode::InputMalformed, message)
}

fn read<'a, T: Deserialize<'a>>(payload: &'a RawValue, shape: &str) -> Result<T> {
    serde_json::from_str(payload.get()).map_err(|e| malformed(format!("a {shape}: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryPayload {
    pub prompt: String,
    #[serde(default)]
    pub agent: Option<String>,
}

impl QueryPayload {
    pub fn read(payload: &RawValue) -> Result<Self> {
        read(
            payload,
            "Query payload is {\"prompt\": str, \"agent\": str | null}",
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolResultPayload<'a> {
    pub invocation_id: String,
    #[serde(default)]
    pub tool_invocation_id: Option<String>,
    #[serde(borrow, default)]
    pub output: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<ToolErrorBody>,
    #[serde(borrow, default)]
    pub events: Vec<&'a RawValue>,
}

impl<'a> ToolResultPayload<'a> {
    pub fn read(payload: &'a RawValue) -> Result<Self> {
        read(
            payload,
            "ToolResult payload is {\"invocation_id\", \"output\" | \"error\", \"events\"?}",
        )
    }
}

/// Events a tool emitted while it runs (`custom`, `tool-progress`), logged at once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolProgressPayload<'a> {
    pub invocation_id: String,
    #[serde(default)]
    pub tool_invocation_id: Option<String>,
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

impl<'a> ToolProgressPayload<'a> {
    pub fn read(payload: &'a RawValue) -> Result<Self> {
        read(
            payload,
            "ToolProgress payload is {\"invocation_id\", \"events\": [...]}",
        )
    }
}

#[derive(Deserialize)]
pub struct ToolErrorBody {
    pub message: String,
    #[serde(default = "tool_failed")]
    pub code: String,
}

fn tool_failed() -> String {
    ResultCode::ToolFailed.as_str().to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionPayload {
    pub approval_id: String,
    pub outcome: String,
    #[serde(default)]
    pub feedback: Option<String>,
    #[serde(default)]
    pub partial: Option<Box<RawValue>>,
    #[serde(default)]
    pub approver: Option<String>,
    /// Checked by the runtime before the engine sees the decision (decision_auth.py).
    #[serde(default, rename = "signature")]
    pub _signature: Option<Box<RawValue>>,
}

impl DecisionPayload {
    pub fn read(payload: &RawValue) -> Result<Self> {
        read(
            payload,
            "ApprovalDecision payload is {\"approval_id\", \"outcome\", \"feedback\"?, \"partial\"?, \"approver\"?, \"signature\"?}",
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResultPayload {
    pub check_id: String,
    pub required: bool,
}

impl CheckResultPayload {
    pub fn read(payload: &RawValue) -> Result<Self> {
        read(
            payload,
            "ApprovalCheckResult payload is {\"check_id\", \"required\": bool}",
        )
    }
}

/// A model's answer as a driver reports it (docs/wire.md, "Model calls").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelResultPayload {
    pub request_id: String,
    #[serde(default)]
    pub response: Option<ResponseBody>,
    #[serde(default)]
    pub failure: Option<FailureBody>,
}

impl ModelResultPayload {
    pub fn read(payload: &RawValue) -> Result<Self> {
        let result: ModelResultPayload = read(
            payload,
            "ModelResult payload is {\"request_id\", \"response\": {...}} or {\"request_id\", \"failure\": {...}} (docs/wire.md)",
        )?;
        if result.response.is_some() == result.failure.is_some() {
            return Err(malformed(format!(
                "model result `{}` must carry exactly one of `response` and `failure`",
                result.request_id
            )));
        }
        Ok(result)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseBody {
    pub content: Vec<Block>,
    pub stop_reason: StopReason,
    #[serde(default)]
    pub raw_stop_reason: Option<String>,
    pub usage: UsageBody,
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub latency_ms: i64,
    #[serde(default)]
    pub ttft_ms: Option<i64>,
    #[serde(default)]
    pub request_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBody {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

impl From<&UsageBody> for Usage {
    fn from(body: &UsageBody) -> Usage {
        Usage {
            prompt_tokens: body.prompt_tokens,
            completion_tokens: body.completion_tokens,
            cache_read_input_tokens: body.cache_read_input_tokens,
            cache_creation_input_tokens: body.cache_creation_input_tokens,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureBody {
    pub kind: FailureKind,
    pub message: String,
    #[serde(default)]
    pub retry_after_ms: Option<i64>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub latency_ms: Option<i64>,
}
