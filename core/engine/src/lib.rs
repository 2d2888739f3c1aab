//! flowai-engine: the pure, sans-IO agent engine.
//!
//! `Engine::handle` feeds one input envelope in, `Engine::poll_output` drains what it decided
//! (run-log events, effects, rejections), `Engine::apply` folds one logged event, and `replay`
//! folds a whole log. No clock, randomness, ids or I/O live here: time and ids arrive with every
//! input. Wire shapes are in docs/wire.md.
//!
//! Modules, by what they own: `engine` (the API and input handlers), `inputs` (input and effect
//! schemas, payload reading), `decide` (the agent loop), `builtins` (plan tools, approval
//! gates), `model` (model requests, retry and fallback), `interpreter` (the deterministic
//! models), `summaries` (latency and cost), `thread` (state and its fold), `snapshot`
//! (versioned thread snapshots, restore), `fork` (a thread branched from another's log),
//! `event` (event
//! types), `codec` (their JSON), `run` / `plan` / `approval` (the three machines' tables),
//! `spec` (the runtime spec), `schema` (the JSON Schema validator), `ids`, `error`.
//!
//! This crate must not depend on pyo3, tokio or anything that touches the outside world.

pub mod approval;
mod builtins;
pub mod codec;
mod decide;
pub mod engine;
pub mod error;
pub mod event;
pub mod fork;
pub mod ids;
pub mod inputs;
pub mod interpreter;
pub mod model;
pub mod plan;
pub mod run;
pub mod schema;
pub mod snapshot;
pub mod spec;
mod summaries;
pub mod thread;

pub use engine::{replay, Engine, Output, OutputKind, Replay};
pub use error::{EngineError, ErrorCode, ResultCode};
pub use spec::Spec;
pub use thread::Thread;

/// The engine's version; the Python facade checks it at import (rebuild on mismatch).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
