//! Fork: a new thread whose history is another thread's log up to a position.
//!
//! [`Engine::fork`] takes a `flowai.v1.ForkThread` envelope (the new thread's id, the tenant,
//! the time, and `{source_thread_id, at}`) with the source thread's log, and outputs the new
//! thread's log: the source's events 1..=at under the new thread's id (same seq, same payloads,
//! same causes), then a logged `fork` fact naming the source and position. The source is only
//! read. A fork starts where the source rested: between runs, or paused at an approval gate,
//! which the fork re-opens under its own approval id (the source's id names the source, and a
//! decision there must not open the fork's gate); a fork in the middle of a run (a model or a
//! tool call out) is refused, since the answer would go to the source's ids.
//!
//! Imports `engine`, `thread`, `decide`, `codec`, `snapshot` (line iteration), `error`.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::approval::Gate;
use crate::codec::{raw_payload_of, write_json_str, EntryRef};
use crate::decide::Cause;
use crate::engine::{check_tenant, Engine, Output, OutputKind};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::{Event, RUNTIME_EVENT};
use crate::inputs::{malformed, Envelope};
use crate::run::Phase;
use crate::snapshot::for_lines;
use crate::thread::Thread;

/// The input that asks for a fork.
pub const FORK_THREAD: &str = "flowai.v1.ForkThread";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkPayload {
    source_thread_id: String,
    at: u64,
}

/// The parts of a logged line a fork copies as they are.
#[derive(Deserialize)]
struct Copied<'a> {
    #[serde(borrow)]
    run_id: Option<&'a RawValue>,
    #[serde(borrow)]
    causation_id: Option<&'a RawValue>,
    ts: i64,
    seq: u64,
    #[serde(borrow)]
    payload: &'a RawValue,
}

impl Engine {
    /// Start thread `input.thread_id` from `source_log` (the source thread's log, whole or up
    /// to at least `at`). Outputs the new thread's events (append them to its log) and, at a
    /// gate, the approval request. On error nothing changed and nothing was output.
    pub fn fork(&mut self, input: &[u8], source_log: &[u8]) -> Result<()> {
        let envelope: Envelope<'_> = serde_json::from_slice(input).map_err(|e| {
            malformed(format!(
                "a fork is a `{FORK_THREAD}` envelope {{schema, id, tenant, thread_id, ts, payload}}: {e}"
            ))
        })?;
        if envelope.schema != FORK_THREAD {
            return Err(malformed(format!(
                "a fork is a `{FORK_THREAD}` envelope, not `{}`",
                envelope.schema
            )));
        }
        if envelope.tenant != self.spec().tenant() {
            return Err(EngineError::new(
                ErrorCode::TenantMismatch,
                format!(
                    "a fork for tenant `{}` reached the runtime of tenant `{}`",
                    envelope.tenant,
                    self.spec().tenant()
                ),
            ));
        }
        let payload: ForkPayload = serde_json::from_str(envelope.payload.get())
            .map_err(|e| malformed(format!("a fork's payload is {{source_thread_id, at}}: {e}")))?;
        let new_id = envelope.thread_id.clone();
        let source = payload.source_thread_id;
        if new_id.is_empty() || new_id == source {
            return Err(unavailable(format!(
                "a fork needs a new thread id, other than its source `{source}`"
            )));
        }
        if self.threads.contains_key(&new_id) {
            return Err(unavailable(format!(
                "thread `{new_id}` exists already; fork into a new thread id"
            )));
        }
        let mut thread = Thread::new(new_id.clone(), envelope.tenant.clone());
        thread.dedup_window_ms = self.dedup_window_ms;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for_lines(source_log, |_, line| {
            let entry = EntryRef::parse_str(line)?;
            if *entry.thread_id != *source {
                return Err(EngineError::new(
                    ErrorCode::ReplayDiverged,
                    format!(
                        "the source log of a fork from `{source}` holds thread `{}`",
                        entry.thread_id
                    ),
                ));
            }
            if *entry.tenant != *thread.tenant {
                return Err(EngineError::new(
                    ErrorCode::TenantMismatch,
                    format!(
                        "thread `{source}` belongs to tenant `{}`; a fork stays in its tenant",
                        entry.tenant
                    ),
                ));
            }
            if entry.seq > payload.at {
                return Ok(());
            }
            let copied = copy_line(line, &thread.tenant, &new_id)?;
            let text = std::str::from_utf8(&copied).expect("copied from UTF-8");
            let entry = EntryRef::parse_str(text)?;
            check_tenant(&thread, &entry.tenant)?;
            let event = entry.event(|| raw_payload_of(text))?;
            thread.apply(entry.seq, entry.ts, entry.causation(), event)?;
            lines.push(copied);
            Ok(())
        })?;
        if payload.at == 0 || thread.last_seq != payload.at {
            return Err(unavailable(format!(
                "thread `{source}` has {} events; fork at a seq from 1 to {}",
                thread.last_seq, thread.last_seq
            )));
        }
        let required = match (thread.phase(), thread.pending().map(|p| &p.gate)) {
            (Phase::Idle, _) => None,
            (Phase::AwaitingApproval, Some(Gate::Waiting { required, .. })) => Some(*required),
            (phase, _) => {
                return Err(unavailable(format!(
                    "thread `{source}` is {} after event {}: a fork starts between runs or at an approval gate; pick the seq of a run's last event or of an `approval-required`",
                    phase.as_str(),
                    payload.at
                )))
            }
        };
        if thread.seen_inputs.contains(&envelope.id) {
            return Err(EngineError::new(
                ErrorCode::DuplicateInput,
                format!("fork `{}` was handled already", envelope.id),
            ));
        }
        for bytes in lines {
            self.outputs.push_back(Output {
                kind: OutputKind::Event,
                thread_id: new_id.clone(),
                bytes,
            });
        }
        self.threads.insert(new_id.clone(), thread);
        let cause = Cause {
            id: &envelope.id,
            ts: envelope.ts,
        };
        self.with_thread(&new_id, &cause, |d| {
            d.emit(Event::Fork {
                source_thread_id: source.clone(),
                source_seq: payload.at,
            });
            if let Some(required) = required {
                d.reopen_gate(required);
            }
        });
        Ok(())
    }
}

/// A source line under the new thread's id (its envelope id names the thread too).
fn copy_line(line: &str, tenant: &str, thread_id: &str) -> Result<Vec<u8>> {
    let c: Copied<'_> = serde_json::from_str(line).map_err(|e| {
        EngineError::new(
            ErrorCode::LogCorrupted,
            format!("a run-log line of the fork's source does not read: {e}"),
        )
    })?;
    let mut out = Vec::with_capacity(line.len() + thread_id.len());
    out.extend_from_slice(b"{\"schema\":\"");
    out.extend_from_slice(RUNTIME_EVENT.as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    write_json_str(&mut out, &crate::ids::event_id(tenant, thread_id, c.seq));
    out.extend_from_slice(b",\"tenant\":");
    write_json_str(&mut out, tenant);
    out.extend_from_slice(b",\"thread_id\":");
    write_json_str(&mut out, thread_id);
    out.extend_from_slice(b",\"run_id\":");
    out.extend_from_slice(c.run_id.map_or("null", RawValue::get).as_bytes());
    out.extend_from_slice(b",\"causation_id\":");
    out.extend_from_slice(c.causation_id.map_or("null", RawValue::get).as_bytes());
    out.extend_from_slice(format!(",\"ts\":{},\"seq\":{},\"payload\":", c.ts, c.seq).as_bytes());
    out.extend_from_slice(c.payload.get().as_bytes());
    out.push(b'}');
    Ok(out)
}

fn unavailable(message: String) -> EngineError {
    EngineError::new(ErrorCode::ForkUnavailable, message)
}
