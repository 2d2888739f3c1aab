//! Model turns: the request an agent's turn sends (docs/wire.md, "Model calls"), the checks
//! an answer passes before it is logged, and what a failed call leads to (retry, fallback or
//! give up), all decided from the spec and the thread's log.
//!
//! Imports `spec`, `thread`, `event`, `ids`, `error` and `decide` (result codes, error results);
//! no I/O: the request is bytes for a driver.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::ResultCode;
use crate::event::{Block, FailureKind, Recovery};
use crate::spec::{AgentSpec, OfferedTool, Spec, DEFAULT_MAX_TOKENS};
use crate::thread::{Message, ModelWait, Thread};

/// A conversation message as a provider adapter reads it.
#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Vec<BlockOut<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Text {
        text: &'a str,
    },
    Reasoning {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        redacted: Option<&'a str>,
    },
    ToolCall {
        id: &'a str,
        name: &'a str,
        args: &'a RawValue,
    },
    ToolResult {
        tool_call_id: String,
        content: &'a RawValue,
        is_error: bool,
    },
}

#[derive(Serialize)]
struct Thinking {
    budget_tokens: u32,
}

#[derive(Serialize)]
struct RequestOut<'a> {
    request_id: &'a str,
    agent: &'a str,
    provider: &'a str,
    model: &'a str,
    attempt: u32,
    turn: u32,
    system: &'a str,
    messages: Vec<MessageOut<'a>>,
    tools: Vec<OfferedTool<'a>>,
    max_tokens: u32,
    temperature: Option<f64>,
    thinking: Option<Thinking>,
    cache: bool,
}

/// Which request: the ids and the model of one attempt.
pub struct Attempt<'a> {
    pub request_id: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub attempt: u32,
    pub turn: u32,
}

/// The ModelRequest payload for the top frame of `thread`'s run, as JSON bytes.
pub fn request(spec: &Spec, agent: &AgentSpec, thread: &Thread, attempt: &Attempt<'_>) -> Vec<u8> {
    let cancelled = crate::decide::error_result(
        ResultCode::Cancelled,
        "the call was cancelled before it finished",
    );
    let messages = conversation(thread.conversation(spec.is_stateful(agent)), &cancelled);
    let request = RequestOut {
        request_id: attempt.request_id,
        agent: &agent.name,
        provider: attempt.provider,
        model: attempt.model,
        attempt: attempt.attempt,
        turn: attempt.turn,
        system: &agent.prompt,
        messages,
        tools: spec.offered_tools(agent),
        max_tokens: agent.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        temperature: agent.temperature,
        thinking: agent
            .thinking_budget
            .map(|budget_tokens| Thinking { budget_tokens }),
        cache: agent.prompt_cache.unwrap_or(true),
    };
    serde_json::to_vec(&request).expect("requests always serialize")
}

/// The neutral messages of a conversation: consecutive messages of one role merged, every
/// tool call answered (a call a cancelled run left open gets a `CANCELLED` result), answers
/// without content dropped.
fn conversation<'a>(history: Vec<&'a Message>, cancelled: &'a RawValue) -> Vec<MessageOut<'a>> {
    let mut out: Vec<MessageOut<'a>> = Vec::new();
    let mut open: Vec<&'a str> = Vec::new();
    fn close<'a>(out: &mut Vec<MessageOut<'a>>, open: &mut Vec<&'a str>, cancelled: &'a RawValue) {
        if open.is_empty() {
            return;
        }
        let missing = open.drain(..).map(|id| BlockOut::ToolResult {
            tool_call_id: id.to_owned(),
            content: cancelled,
            is_error: true,
        });
        match out.last_mut() {
            Some(last) if last.role == "tool" => last.content.extend(missing),
            _ => out.push(MessageOut {
                role: "tool",
                content: missing.collect(),
            }),
        }
    }
    fn push<'a>(out: &mut Vec<MessageOut<'a>>, role: &'static str, blocks: Vec<BlockOut<'a>>) {
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(MessageOut {
                role,
                content: blocks,
            }),
        }
    }
    for message in history {
        match message {
            Message::User { content, .. } => {
                close(&mut out, &mut open, cancelled);
                push(&mut out, "user", vec![BlockOut::Text { text: content }]);
            }
            Message::Assistant { content, .. } => {
                if content.is_empty() {
                    continue;
                }
                close(&mut out, &mut open, cancelled);
                let blocks = content
                    .iter()
                    .map(|block| match block {
                        Block::Text { text } => BlockOut::Text { text },
                        Block::Reasoning {
                            text,
                            signature,
                            redacted,
                        } => BlockOut::Reasoning {
                            text,
                            signature: signature.as_deref(),
                            redacted: redacted.as_deref(),
                        },
                        Block::ToolCall { id, name, args, .. } => {
                            open.push(id);
                            BlockOut::ToolCall { id, name, args }
                        }
                    })
                    .collect();
                push(&mut out, "assistant", blocks);
            }
            Message::ToolResult {
                tool_invocation_id,
                result,
                is_error,
                ..
            } => {
                open.retain(|id| *id != tool_invocation_id);
                push(
                    &mut out,
                    "tool",
                    vec![BlockOut::ToolResult {
                        tool_call_id: tool_invocation_id.clone(),
                        content: result,
                        is_error: *is_error,
                    }],
                );
            }
        }
    }
    close(&mut out, &mut open, cancelled);
    out
}

/// Why a model's answer cannot be logged as it is (then it counts as a `bad_response`).
pub fn problem_with(content: &[Block], thread: &Thread) -> Option<String> {
    let mut ids = HashSet::new();
    for block in content {
        if let Block::ToolCall { id, name, .. } = block {
            if id.is_empty() || name.is_empty() {
                return Some("a tool call has an empty id or name".to_owned());
            }
            if !ids.insert(id.as_str()) || thread.answered(id) {
                return Some(format!("tool call id `{id}` is used twice"));
            }
        }
    }
    None
}

/// What follows a failed attempt: the same model again after a backoff, the next model of the
/// chain at once, or nothing (the chain is exhausted).
pub fn recovery(
    spec: &Spec,
    agent: &AgentSpec,
    wait: &ModelWait,
    kind: FailureKind,
    retry_after_ms: Option<i64>,
    now: i64,
) -> Recovery {
    let policy = spec.retry(agent);
    if policy.retry_on.contains(&kind) && wait.attempts_on_model < policy.max_attempts {
        let delay = policy.backoff_ms(wait.attempts_on_model, retry_after_ms);
        return Recovery::Retry {
            at: now.saturating_add(delay),
        };
    }
    let chain = spec.chain(agent);
    match chain.get(wait.chain_index + 1) {
        Some(next) if spec.falls_back_on(agent, kind) => Recovery::Fallback {
            provider: next.provider.clone().unwrap_or_default(),
            model: next.model.clone(),
        },
        _ => Recovery::GiveUp,
    }
}
