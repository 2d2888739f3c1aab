//! Versioned snapshots of a thread: its whole folded state and the log position it covers.
//!
//! A snapshot is one JSON line:
//!
//! ```text
//! {"snapshot":1,"engine":"0.1.0","tenant":"acme","thread_id":"t","seq":12,
//!  "checksum":"<fnv-1a 64 of the state's bytes, hex>","state":{...}}
//! ```
//!
//! `state` is the thread's serde form (`Thread` derives it; caches are skipped), so restoring
//! loses nothing, and `seq` is the last logged event it folded. The law, tested in
//! tests/snapshot.rs: restore(snapshot after event k) + fold events k+1.. = fold of the whole
//! log, byte for byte in [`state`]. A snapshot is an optimisation, never the truth: one this
//! engine cannot read is refused with a typed code (`SNAPSHOT_VERSION`, `SNAPSHOT_CORRUPTED`,
//! `SNAPSHOT_MISMATCH`) so the caller replays the whole log, never a wrong state. Bump
//! [`SNAPSHOT_FORMAT`] whenever the state's shape changes.
//!
//! Imports `thread`, `engine` (to hold restored threads), `codec`, `error`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codec::{raw_payload_of, EntryRef};
use crate::engine::{check_tenant, Engine, Replay};
use crate::error::{EngineError, ErrorCode, Result};
use crate::event::Block;
use crate::thread::{Message, Thread};

/// The snapshot format this engine writes and the only one it reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Serialize)]
struct Header<'a> {
    snapshot: u32,
    engine: &'a str,
    tenant: &'a str,
    thread_id: &'a str,
    seq: u64,
    checksum: String,
    state: &'a RawValue,
}

#[derive(Deserialize)]
struct HeaderIn<'a> {
    snapshot: Option<u32>,
    #[serde(borrow)]
    tenant: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    thread_id: std::borrow::Cow<'a, str>,
    seq: u64,
    checksum: String,
    #[serde(borrow)]
    state: &'a RawValue,
}

#[derive(Deserialize)]
struct Version {
    snapshot: Option<u32>,
}

/// The thread's state in its canonical form: the bytes the law compares.
pub fn state(thread: &Thread) -> Vec<u8> {
    // Strings, numbers, raw JSON and string-keyed maps only: serializing cannot fail.
    serde_json::to_vec(thread).expect("a thread's state always serializes")
}

/// A versioned snapshot of `thread`, covering its log up to `thread.last_seq`.
pub fn encode(thread: &Thread) -> Vec<u8> {
    let state = state(thread);
    let raw: &RawValue = serde_json::from_slice(&state).expect("state() writes JSON");
    serde_json::to_vec(&Header {
        snapshot: SNAPSHOT_FORMAT,
        engine: crate::VERSION,
        tenant: &thread.tenant,
        thread_id: &thread.id,
        seq: thread.last_seq,
        checksum: format!("{:016x}", fnv1a(raw.get().as_bytes())),
        state: raw,
    })
    .expect("a snapshot always serializes")
}

/// Read a snapshot, refusing one this engine cannot trust; `thread_id`, when given, is the
/// thread the caller expects it to hold.
pub fn decode(bytes: &[u8], thread_id: Option<&str>) -> Result<Thread> {
    // One pass over the header in the common case; only a snapshot that does not read as
    // this format's is parsed again, to tell an old or new format from a damaged one.
    let header = match serde_json::from_slice::<HeaderIn<'_>>(bytes) {
        Ok(header) if header.snapshot == Some(SNAPSHOT_FORMAT) => header,
        Ok(header) => return Err(version_refused(header.snapshot)),
        Err(e) => {
            return Err(match serde_json::from_slice::<Version>(bytes) {
                Ok(Version {
                    snapshot: Some(other),
                }) if other != SNAPSHOT_FORMAT => version_refused(Some(other)),
                Ok(_) => corrupted(format!("the snapshot's header is damaged: {e}")),
                Err(e) => corrupted(format!(
                    "a snapshot is not a JSON object ({e}); the file or record is damaged"
                )),
            })
        }
    };
    if let Some(expected) = thread_id {
        if header.thread_id != expected {
            return Err(EngineError::new(
                ErrorCode::SnapshotMismatch,
                format!(
                    "the snapshot is of thread `{}`, not `{expected}`",
                    header.thread_id
                ),
            ));
        }
    }
    let sum = format!("{:016x}", fnv1a(header.state.get().as_bytes()));
    if sum != header.checksum {
        return Err(corrupted(format!(
            "the snapshot of thread `{}` fails its checksum ({sum}, recorded {}); it was damaged",
            header.thread_id, header.checksum
        )));
    }
    let thread: Thread = serde_json::from_str(header.state.get()).map_err(|e| {
        corrupted(format!(
            "the state in the snapshot of thread `{}` does not read: {e}",
            header.thread_id
        ))
    })?;
    if thread.id != header.thread_id
        || thread.tenant != header.tenant
        || thread.last_seq != header.seq
    {
        return Err(corrupted(format!(
            "the snapshot's header (thread `{}`, tenant `{}`, seq {}) contradicts its state (thread `{}`, tenant `{}`, seq {})",
            header.thread_id, header.tenant, header.seq, thread.id, thread.tenant, thread.last_seq
        )));
    }
    Ok(thread)
}

/// Restore one thread from `snapshot` (refused unless it is `thread_id`, when given) and fold
/// `tail`, that thread's log lines after it (lines
/// the snapshot already covers are skipped, so the whole log works too). No spec, no decisions.
/// `lines` counts every entry the state covers, the snapshot's included.
pub fn replay_from(snapshot: &[u8], thread_id: Option<&str>, tail: &[u8]) -> Result<Replay> {
    let mut thread = decode(snapshot, thread_id)?;
    for_lines(tail, |_, line| {
        let entry = EntryRef::parse_str(line)?;
        if *entry.thread_id != *thread.id {
            return Err(EngineError::new(
                ErrorCode::ReplayDiverged,
                format!(
                    "the tail holds thread `{}`, but the snapshot is of thread `{}`",
                    entry.thread_id, thread.id
                ),
            ));
        }
        if entry.seq <= thread.last_seq {
            return Ok(());
        }
        check_tenant(&thread, &entry.tenant)?;
        let event = entry.event(|| raw_payload_of(line))?;
        thread.apply(entry.seq, entry.ts, entry.causation(), event)
    })?;
    // The entries the state covers, snapshot included, as a whole replay would count them.
    let lines = thread.last_seq as usize;
    Ok(Replay {
        threads: vec![thread],
        lines,
    })
}

/// Call `each(line number, line)` for every line of a newline-separated log; errors carry the
/// 1-based line.
pub(crate) fn for_lines(log: &[u8], mut each: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let text = std::str::from_utf8(log).map_err(|e| {
        EngineError::new(
            ErrorCode::LogCorrupted,
            format!("not UTF-8 ({e}); the file was damaged"),
        )
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(());
    }
    for (n, line) in body.split('\n').enumerate() {
        each(n + 1, line).map_err(|e| e.at_line(n + 1))?;
    }
    Ok(())
}

impl Engine {
    /// Every thread held, by thread id.
    pub fn thread_ids(&self) -> Vec<String> {
        self.threads.keys().cloned().collect()
    }

    /// A snapshot of thread `thread_id` as held now, if it is held.
    pub fn save(&self, thread_id: &str) -> Option<Vec<u8>> {
        self.threads.get(thread_id).map(encode)
    }

    /// Hold the thread a snapshot carries (which must be `thread_id`, when given); returns the
    /// seq it covers. The thread must not be held already (restoring over live state would
    /// hide its newer events).
    pub fn restore(&mut self, snapshot: &[u8], thread_id: Option<&str>) -> Result<u64> {
        let mut thread = decode(snapshot, thread_id)?;
        if thread.tenant != self.spec().tenant() {
            return Err(EngineError::new(
                ErrorCode::SnapshotMismatch,
                format!(
                    "the snapshot of thread `{}` belongs to tenant `{}`, not `{}`",
                    thread.id,
                    thread.tenant,
                    self.spec().tenant()
                ),
            ));
        }
        if self.threads.contains_key(&thread.id) {
            return Err(EngineError::new(
                ErrorCode::ReplayDiverged,
                format!(
                    "thread `{}` is already held; forget it before restoring it",
                    thread.id
                ),
            ));
        }
        thread.dedup_window_ms = self.dedup_window_ms;
        let seq = thread.last_seq;
        self.threads.insert(thread.id.clone(), thread);
        Ok(seq)
    }

    /// Fold a log's lines after what is held: a line a held thread already folded (its seq is
    /// at or below the thread's) is skipped, a thread not held must start at seq 1. Returns the
    /// lines folded. Each line is all or nothing, as in [`Engine::apply`].
    pub fn load_tail(&mut self, log: &[u8]) -> Result<usize> {
        let mut folded = 0;
        for_lines(log, |_, line| {
            let entry = EntryRef::parse_str(line)?;
            if let Some(thread) = self.threads.get(&*entry.thread_id) {
                if entry.seq <= thread.last_seq {
                    return Ok(());
                }
            }
            self.apply(line.as_bytes())?;
            folded += 1;
            Ok(())
        })?;
        Ok(folded)
    }
}

fn version_refused(format: Option<u32>) -> EngineError {
    let Some(other) = format else {
        return corrupted("the snapshot has no `snapshot` format number".into());
    };
    let which = if other < SNAPSHOT_FORMAT {
        "an older"
    } else {
        "a newer"
    };
    EngineError::new(
        ErrorCode::SnapshotVersion,
        format!(
            "the snapshot is in format {other}, {which} format than this engine's ({SNAPSHOT_FORMAT}); replay the whole log (a new snapshot replaces it)"
        ),
    )
}

fn corrupted(message: String) -> EngineError {
    EngineError::new(ErrorCode::SnapshotCorrupted, message)
}

/// FNV-1a, 64 bit: enough to catch a damaged snapshot, and pure.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `Thread::history` in a snapshot. `Message` and `Block` serialize as the seed's tagged
/// shapes, which serde cannot read back with raw JSON inside; a snapshot writes them
/// externally tagged instead.
pub(crate) mod history {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    enum MessageDoc {
        User {
            agent: String,
            frame: u64,
            content: String,
        },
        Assistant {
            agent: String,
            frame: u64,
            content: Vec<BlockDoc>,
        },
        ToolResult {
            agent: String,
            frame: u64,
            tool_invocation_id: String,
            result: Box<RawValue>,
            is_error: bool,
        },
    }

    #[derive(Serialize, Deserialize)]
    enum BlockDoc {
        Text {
            text: String,
        },
        Reasoning {
            text: String,
            signature: Option<String>,
            redacted: Option<String>,
        },
        ToolCall {
            id: String,
            name: String,
            args: Box<RawValue>,
            args_error: Option<String>,
        },
    }

    impl From<&Block> for BlockDoc {
        fn from(block: &Block) -> Self {
            match block.clone() {
                Block::Text { text } => BlockDoc::Text { text },
                Block::Reasoning {
                    text,
                    signature,
                    redacted,
                } => BlockDoc::Reasoning {
                    text,
                    signature,
                    redacted,
                },
                Block::ToolCall {
                    id,
                    name,
                    args,
                    args_error,
                } => BlockDoc::ToolCall {
                    id,
                    name,
                    args,
                    args_error,
                },
            }
        }
    }

    impl From<BlockDoc> for Block {
        fn from(doc: BlockDoc) -> Self {
            match doc {
                BlockDoc::Text { text } => Block::Text { text },
                BlockDoc::Reasoning {
                    text,
                    signature,
                    redacted,
                } => Block::Reasoning {
                    text,
                    signature,
                    redacted,
                },
                BlockDoc::ToolCall {
                    id,
                    name,
                    args,
                    args_error,
                } => Block::ToolCall {
                    id,
                    name,
                    args,
                    args_error,
                },
            }
        }
    }

    impl From<&Message> for MessageDoc {
        fn from(message: &Message) -> Self {
            match message {
                Message::User {
                    agent,
                    frame,
                    content,
                } => MessageDoc::User {
                    agent: agent.clone(),
                    frame: *frame,
                    content: content.clone(),
                },
                Message::Assistant {
                    agent,
                    frame,
                    content,
                } => MessageDoc::Assistant {
                    agent: agent.clone(),
                    frame: *frame,
                    content: content.iter().map(BlockDoc::from).collect(),
                },
                Message::ToolResult {
                    agent,
                    frame,
                    tool_invocation_id,
                    result,
                    is_error,
                } => MessageDoc::ToolResult {
                    agent: agent.clone(),
                    frame: *frame,
                    tool_invocation_id: tool_invocation_id.clone(),
                    result: result.clone(),
                    is_error: *is_error,
                },
            }
        }
    }

    impl From<MessageDoc> for Message {
        fn from(doc: MessageDoc) -> Self {
            match doc {
                MessageDoc::User {
                    agent,
                    frame,
                    content,
                } => Message::User {
                    agent,
                    frame,
                    content,
                },
                MessageDoc::Assistant {
                    agent,
                    frame,
                    content,
                } => Message::Assistant {
                    agent,
                    frame,
                    content: content.into_iter().map(Block::from).collect(),
                },
                MessageDoc::ToolResult {
                    agent,
                    frame,
                    tool_invocation_id,
                    result,
                    is_error,
                } => Message::ToolResult {
                    agent,
                    frame,
                    tool_invocation_id,
                    result,
                    is_error,
                },
            }
        }
    }

    pub fn serialize<S: Serializer>(messages: &[Message], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(messages.iter().map(MessageDoc::from))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Message>, D::Error> {
        let docs = Vec::<MessageDoc>::deserialize(d)?;
        Ok(docs.into_iter().map(Message::from).collect())
    }
}
