//! Deterministic model interpreters: what "the model" answers when no provider is called.
//!
//! - `Mock`: every model turn answers the configured text.
//! - `Scripted`: the prompt is JSON, `{"tool": name, "args": {...}}` or
//!   `{"script": [{"tool": ..., "args": ...}, ...]}`; each entry is one turn in which the model
//!   calls that tool, and the turn after the last entry answers with the last result as text.
//!   A prompt that is not such JSON is echoed back as text.
//!
//! An interpreter decides one turn from the frame's prompt and how many calls it has made, both
//! of which the run log holds, so a replayed run continues exactly where it stopped.
//! Imports nothing internal but `event` (usage) and `error` codes.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::event::Usage;

#[derive(Clone, Debug, PartialEq)]
pub enum Interpreter {
    Mock { response: String },
    Scripted,
}

/// One model turn's decision.
#[derive(Clone, Debug)]
pub enum Decision {
    Text(String),
    Call {
        tool: String,
        args: Box<RawValue>,
    },
    /// The prompt cannot be followed; the run ends with this error.
    Fail {
        code: &'static str,
        message: String,
    },
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
    pub calls: u32,
    pub last_result: Option<&'a RawValue>,
    pub script: &'a mut Option<Arc<Script>>,
}

impl Interpreter {
    pub fn decide(&self, turn: Turn<'_>) -> Decision {
        match self {
            Interpreter::Mock { response } => Decision::Text(response.clone()),
            Interpreter::Scripted => {
                let script = turn
                    .script
                    .get_or_insert_with(|| Arc::new(Script::parse(turn.prompt)));
                match script.as_ref() {
                    Script::Echo => Decision::Text(turn.prompt.to_owned()),
                    Script::Invalid(message) => Decision::Fail {
                        code: "SCRIPT_INVALID",
                        message: format!(
                            "{message}; a scripted prompt is {{\"tool\": ..., \"args\": ...}} or {{\"script\": [...]}}"
                        ),
                    },
                    Script::Calls(calls) => match calls.get(turn.calls as usize) {
                        Some((tool, args)) => Decision::Call {
                            tool: tool.clone(),
                            args: args.clone(),
                        },
                        None => Decision::Text(result_text(turn.last_result)),
                    },
                }
            }
        }
    }

    /// Whether usage is estimated (interpreters) rather than reported by a provider.
    pub fn estimates_usage(&self) -> bool {
        true
    }
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
pub fn estimate_usage(prompt: &str, decision: &Decision) -> Usage {
    let output_chars = match decision {
        Decision::Text(text) => text.chars().count(),
        Decision::Call { tool, args } => tool.len() + args.get().len(),
        Decision::Fail { .. } => 0,
    };
    Usage {
        input_tokens: tokens(prompt.chars().count()),
        output_tokens: tokens(output_chars),
    }
}

fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(prompt: &str, calls: u32, last: Option<&str>) -> Decision {
        let raw = last.map(|s| RawValue::from_string(s.to_owned()).unwrap());
        let mut cache = None;
        Interpreter::Scripted.decide(Turn {
            prompt,
            calls,
            last_result: raw.as_deref(),
            script: &mut cache,
        })
    }

    #[test]
    fn scripted_single_call_then_answers_with_the_result() {
        let prompt = r#"{"tool": "lookup", "args": {"q": "x"}}"#;
        match decide(prompt, 0, None) {
            Decision::Call { tool, args } => {
                assert_eq!(tool, "lookup");
                assert_eq!(args.get(), r#"{"q":"x"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decide(prompt, 1, Some(r#""found""#)), Decision::Text(t) if t == "found"));
        assert!(
            matches!(decide(prompt, 1, Some(r#"{"n":1}"#)), Decision::Text(t) if t == r#"{"n":1}"#)
        );
    }

    #[test]
    fn scripted_script_runs_in_order_and_defaults_args() {
        let prompt = r#"{"script": [{"tool": "a"}, {"tool": "b", "args": {"k": 1}}]}"#;
        assert!(
            matches!(decide(prompt, 0, None), Decision::Call { tool, args } if tool == "a" && args.get() == "{}")
        );
        assert!(matches!(decide(prompt, 1, None), Decision::Call { tool, .. } if tool == "b"));
        assert!(matches!(decide(prompt, 2, None), Decision::Text(t) if t.is_empty()));
    }

    #[test]
    fn non_script_prompts_are_echoed_and_bad_entries_fail() {
        assert!(matches!(decide("Say hello", 0, None), Decision::Text(t) if t == "Say hello"));
        assert!(
            matches!(decide(r#"{"other": 1}"#, 0, None), Decision::Text(t) if t == r#"{"other": 1}"#)
        );
        assert!(matches!(
            decide(r#"{"script": [{"nope": 1}]}"#, 0, None),
            Decision::Fail { code: "SCRIPT_INVALID", message } if message.contains("entry 0")
        ));
    }

    #[test]
    fn mock_answers_every_turn() {
        let mock = Interpreter::Mock {
            response: "hi".into(),
        };
        let mut cache = None;
        let turn = Turn {
            prompt: "x",
            calls: 3,
            last_result: None,
            script: &mut cache,
        };
        assert!(matches!(mock.decide(turn), Decision::Text(t) if t == "hi"));
    }
}
