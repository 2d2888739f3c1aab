//! Deterministic model interpreters: what "the model" answers when no provider is called.
//!
//! They answer the same model requests a provider would, as pure functions of the frame whose
//! turn it is, and the engine logs their answers exactly as it logs a provider's:
//!
//! - `Noop` (the seed's default): an empty answer, so a run is `step-start` then `finish`.
//! - `Mock` (the seed's `TestingConfig`): echoes `Received: <prompt>`, then the configured
//!   text; usage 50/25 per turn.
//! - `Scripted`: the prompt is JSON, `{"tool": name, "args": {...}}` or
//!   `{"script": [{"tool": ..., "args": ...}, ...]}`; each entry is one turn in which the model
//!   calls that tool (ids `scripted-tool-N`), and the turn after the last entry answers with
//!   the last result as text. A prompt that is not such JSON is echoed back as text.
//! - `Live`: no interpreter; model requests go out as effects.
//!
//! An interpreter decides one turn from the frame's prompt and how many calls it has made, both
//! of which the run log holds, so a replayed run continues exactly where it stopped.
//! Imports nothing internal but `event` and `error` (result codes).

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ResultCode;
use crate::event::{Block, StopReason, Usage};

/// Provider names the interpreters answer under (never priced).
pub const NOOP: &str = "noop";
pub const MOCK: &str = "mock";
pub const SCRIPTED: &str = "scripted";

pub fn is_interpreter(provider: &str) -> bool {
    matches!(provider, NOOP | MOCK | SCRIPTED)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Interpreter {
    Noop,
    Mock { response: String },
    Scripted,
    Live,
}

/// One interpreted turn's answer.
#[derive(Clone, Debug)]
pub enum Answer {
    Content {
        content: Vec<Block>,
        stop: StopReason,
        usage: Usage,
    },
    /// The prompt cannot be followed; the run ends with this error.
    Fail { code: ResultCode, message: String },
}

/// A parsed scripted prompt, cached per frame.
#[derive(Debug)]
pub enum Script {
    Echo,
    Calls(Vec<(String, Box<RawValue>)>),
    Invalid(String),
}

impl Script {
    pub fn parse(prompt: &str) -> Script {
        let trimmed = prompt.trim_start();
        if !trimmed.starts_with('{') {
            return Script::Echo;
        }
        let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(trimmed) else {
            return Script::Echo;
        };
        if doc.contains_key("tool") {
            return match entry(&Value::Object(doc)) {
                Ok(call) => Script::Calls(vec![call]),
                Err(problem) => Script::Invalid(format!("the scripted call {problem}")),
            };
        }
        match doc.get("script") {
            Some(Value::Array(entries)) => {
                let mut calls = Vec::with_capacity(entries.len());
                for (index, value) in entries.iter().enumerate() {
                    match entry(value) {
                        Ok(call) => calls.push(call),
                        Err(problem) => {
                            return Script::Invalid(format!("script entry {index} {problem}"))
                        }
                    }
                }
                Script::Calls(calls)
            }
            Some(_) => Script::Invalid("`script` must be a list of calls".to_owned()),
            None => Script::Echo,
        }
    }
}

/// One `{"tool": name, "args": {...}}` entry; args default to `{}`.
fn entry(value: &Value) -> Result<(String, Box<RawValue>), String> {
    let shape = "is not {\"tool\": name, \"args\": {...}}";
    let Value::Object(entry) = value else {
        return Err(shape.to_owned());
    };
    let Some(Value::String(tool)) = entry.get("tool") else {
        return Err(format!("{shape}: `tool` must be a string"));
    };
    let args = match entry.get("args") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(args) => args.to_string(),
    };
    let args = RawValue::from_string(args).expect("a serialized Value is JSON");
    Ok((tool.clone(), args))
}

/// What an interpreter needs to know about the frame whose turn it is.
pub struct Turn<'a> {
    pub prompt: &'a str,
    /// Calls this frame made so far.
    pub calls: u32,
    /// Calls the whole run made so far (scripted ids are numbered by it).
    pub run_calls: u32,
    pub last_result: Option<&'a RawValue>,
    pub script: &'a mut Option<Arc<Script>>,
}

impl Interpreter {
    pub fn is_live(&self) -> bool {
        matches!(self, Interpreter::Live)
    }

    /// The provider name answers are logged under.
    pub fn name(&self) -> &'static str {
        match self {
            Interpreter::Noop => NOOP,
            Interpreter::Mock { .. } => MOCK,
            Interpreter::Scripted => SCRIPTED,
            Interpreter::Live => "live",
        }
    }

    /// Answer one turn. Only for deterministic interpreters (`Live` answers nothing here).
    pub fn respond(&self, turn: Turn<'_>) -> Answer {
        match self {
            Interpreter::Live => unreachable!("live turns are answered by a provider"),
            Interpreter::Noop => Answer::Content {
                content: Vec::new(),
                stop: StopReason::Stop,
                usage: Usage::default(),
            },
            Interpreter::Mock { response } => Answer::Content {
                content: vec![
                    Block::Text {
                        text: format!("Received: {}", turn.prompt),
                    },
                    Block::Text {
                        text: response.clone(),
                    },
                ],
                stop: StopReason::Stop,
                usage: Usage::new(50, 25),
            },
            Interpreter::Scripted => {
                let script = turn
                    .script
                    .get_or_insert_with(|| Arc::new(Script::parse(turn.prompt)));
                let (content, stop) = match script.as_ref() {
                    Script::Echo => (text(turn.prompt.to_owned()), StopReason::Stop),
                    Script::Invalid(message) => {
                        return Answer::Fail {
                            code: ResultCode::ScriptInvalid,
                            message: format!(
                                "{message}; a scripted prompt is {{\"tool\": ..., \"args\": ...}} or {{\"script\": [...]}}"
                            ),
                        }
                    }
                    Script::Calls(calls) => match calls.get(turn.calls as usize) {
                        Some((tool, args)) => (
                            vec![Block::ToolCall {
                                id: format!("scripted-tool-{}", turn.run_calls + 1),
                                name: tool.clone(),
                                args: args.clone(),
                                args_error: None,
                            }],
                            StopReason::ToolCalls,
                        ),
                        None => (text(result_text(turn.last_result)), StopReason::Stop),
                    },
                };
                let usage = estimate_usage(turn.prompt, &content);
                Answer::Content {
                    content,
                    stop,
                    usage,
                }
            }
        }
    }
}

fn text(text: String) -> Vec<Block> {
    vec![Block::Text { text }]
}

/// A tool result as the text a model would answer with: strings as they are, anything else
/// as compact JSON.
pub fn result_text(result: Option<&RawValue>) -> String {
    match result {
        None => String::new(),
        Some(raw) => match serde_json::from_str::<String>(raw.get()) {
            Ok(text) => text,
            Err(_) => raw.get().to_owned(),
        },
    }
}

/// Token estimate for one interpreted turn: about four characters a token, at least one.
pub fn estimate_usage(prompt: &str, content: &[Block]) -> Usage {
    let output_chars: usize = content
        .iter()
        .map(|block| match block {
            Block::Text { text } => text.chars().count(),
            Block::ToolCall { name, args, .. } => name.len() + args.get().len(),
            Block::Reasoning { text, .. } => text.chars().count(),
        })
        .sum();
    Usage::new(tokens(prompt.chars().count()), tokens(output_chars))
}

fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(prompt: &str, calls: u32, last: Option<&str>) -> Answer {
        let raw = last.map(|s| RawValue::from_string(s.to_owned()).unwrap());
        let mut cache = None;
        Interpreter::Scripted.respond(Turn {
            prompt,
            calls,
            run_calls: calls,
            last_result: raw.as_deref(),
            script: &mut cache,
        })
    }

    fn only(answer: Answer) -> Block {
        match answer {
            Answer::Content { mut content, .. } => {
                assert_eq!(content.len(), 1, "{content:?}");
                content.remove(0)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scripted_single_call_then_answers_with_the_result() {
        let prompt = r#"{"tool": "lookup", "args": {"q": "x"}}"#;
        match only(respond(prompt, 0, None)) {
            Block::ToolCall { id, name, args, .. } => {
                assert_eq!((id.as_str(), name.as_str()), ("scripted-tool-1", "lookup"));
                assert_eq!(args.get(), r#"{"q":"x"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(only(respond(prompt, 1, Some(r#""found""#))), Block::Text { text } if text == "found")
        );
        assert!(
            matches!(only(respond(prompt, 1, Some(r#"{"n":1}"#))), Block::Text { text } if text == r#"{"n":1}"#)
        );
    }

    #[test]
    fn scripted_script_runs_in_order_and_defaults_args() {
        let prompt = r#"{"script": [{"tool": "a"}, {"tool": "b", "args": {"k": 1}}]}"#;
        assert!(
            matches!(only(respond(prompt, 0, None)), Block::ToolCall { name, args, .. } if name == "a" && args.get() == "{}")
        );
        assert!(
            matches!(only(respond(prompt, 1, None)), Block::ToolCall { name, id, .. } if name == "b" && id == "scripted-tool-2")
        );
        assert!(matches!(only(respond(prompt, 2, None)), Block::Text { text } if text.is_empty()));
    }

    #[test]
    fn non_script_prompts_are_echoed_and_bad_entries_fail() {
        assert!(
            matches!(only(respond("Say hello", 0, None)), Block::Text { text } if text == "Say hello")
        );
        assert!(
            matches!(only(respond(r#"{"other": 1}"#, 0, None)), Block::Text { text } if text == r#"{"other": 1}"#)
        );
        assert!(matches!(
            respond(r#"{"script": [{"nope": 1}]}"#, 0, None),
            Answer::Fail { code: ResultCode::ScriptInvalid, message } if message.contains("entry 0")
        ));
    }

    #[test]
    fn mock_echoes_then_answers_with_the_seed_usage() {
        let mock = Interpreter::Mock {
            response: "hi".into(),
        };
        let mut cache = None;
        let turn = Turn {
            prompt: "x",
            calls: 3,
            run_calls: 3,
            last_result: None,
            script: &mut cache,
        };
        match mock.respond(turn) {
            Answer::Content { content, usage, .. } => {
                let texts: Vec<_> = content
                    .iter()
                    .map(|b| match b {
                        Block::Text { text } => text.as_str(),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(texts, ["Received: x", "hi"]);
                assert_eq!((usage.prompt_tokens, usage.completion_tokens), (50, 25));
            }
            other => panic!("{other:?}"),
        }
    }
}
