//! flowai-engine: the pure, sans-IO agent engine.
//!
//! `Engine::handle` feeds one input envelope in, `Engine::poll_output` drains what it decided
//! (run-log events, effects, rejections), `Engine::apply` folds one logged event, and `replay`
//! folds a whole log. No clock, randomness, ids or I/O live here: time and ids arrive with every
//! input. Wire shapes are in docs/wire.md.
//!
//! This crate must not depend on pyo3, tokio or anything that touches the outside world.

pub mod approval;
pub mod engine;
pub mod error;
pub mod event;
pub mod interpreter;
pub mod plan;
pub mod run;
pub mod schema;
pub mod spec;
pub mod thread;

pub use engine::{replay, Engine, Output, OutputKind, Replay};
pub use error::{EngineError, ErrorCode};
pub use spec::Spec;
pub use thread::Thread;

/// The engine's version; the Python facade checks it at import (rebuild on mismatch).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
