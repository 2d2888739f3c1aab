//! Ids the engine derives: the same log gives the same ids, in every process and on replay.
//!
//! - tool invocation effect: `{tenant}/{thread}/{run}/{toolInvocationId}`
//! - approval check: the invocation id + `/check`
//! - approval: `appr:{thread}/{run}/{toolInvocationId}` (thread first, so a runtime finds the
//!   thread from the id alone; `parse_approval_id` is the inverse, and the only reader of
//!   approval ids: the facade asks it rather than splitting ids itself)
//! - model request: `{tenant}/{thread}/{run}/model-{turn}/{attempt}`
//! - logged event: `{tenant}/{thread}/{seq}`
//!
//! Imports nothing.

/// The id of a tool invocation effect: unique per tenant, stable across replays.
pub fn invocation_id(
    tenant: &str,
    thread_id: &str,
    run_id: &str,
    tool_invocation_id: &str,
) -> String {
    format!("{tenant}/{thread_id}/{run_id}/{tool_invocation_id}")
}

pub fn check_id(tenant: &str, thread_id: &str, run_id: &str, tool_invocation_id: &str) -> String {
    format!(
        "{}/check",
        invocation_id(tenant, thread_id, run_id, tool_invocation_id)
    )
}

/// The id of attempt `attempt` of model turn `turn` of a run.
pub fn model_request_id(
    tenant: &str,
    thread_id: &str,
    run_id: &str,
    turn: u32,
    attempt: u32,
) -> String {
    format!("{tenant}/{thread_id}/{run_id}/model-{turn}/{attempt}")
}

/// Whether `id` has the shape of an id this engine derived for `thread_id` of `tenant` (a late
/// or repeated answer to something the thread no longer waits for).
pub fn belongs_to(id: &str, tenant: &str, thread_id: &str) -> bool {
    id.strip_prefix(tenant)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_prefix(thread_id))
        .is_some_and(|rest| rest.starts_with("/run-"))
}

/// The id of the approval guarding call `call_id` of `run_id` in `thread_id`.
pub fn approval_id(thread_id: &str, run_id: &str, call_id: &str) -> String {
    format!("{APPROVAL_PREFIX}{thread_id}/{run_id}/{call_id}")
}

const APPROVAL_PREFIX: &str = "appr:";

/// What an approval id names: the gate of call `call_id` of run `run_id` of `thread_id`.
///
/// A fork copies its source's history, so a thread's log may hold approval facts whose id
/// names another thread (the source's gate, not one of its own): `thread_id` tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalRef<'a> {
    pub thread_id: &'a str,
    pub run_id: &'a str,
    pub call_id: &'a str,
}

/// The inverse of `approval_id`, or None when `id` is not one. The thread id may contain `/`;
/// run and call ids never do, so they are read from the end.
pub fn parse_approval_id(id: &str) -> Option<ApprovalRef<'_>> {
    let rest = id.strip_prefix(APPROVAL_PREFIX)?;
    let mut parts = rest.rsplitn(3, '/');
    let call_id = parts.next().filter(|p| !p.is_empty())?;
    let run_id = parts.next().filter(|p| !p.is_empty())?;
    let thread_id = parts.next().filter(|p| !p.is_empty())?;
    Some(ApprovalRef {
        thread_id,
        run_id,
        call_id,
    })
}

/// The thread an approval id belongs to, if the id is well formed.
pub fn thread_of_approval(id: &str) -> Option<&str> {
    parse_approval_id(id).map(|approval| approval.thread_id)
}

pub fn event_id(tenant: &str, thread_id: &str, seq: u64) -> String {
    format!("{tenant}/{thread_id}/{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_thread() {
        let id = model_request_id("acme", "t/1", "run-2", 3, 1);
        assert_eq!(id, "acme/t/1/run-2/model-3/1");
        assert!(belongs_to(&id, "acme", "t/1"));
        assert!(!belongs_to(&id, "acme", "t"));
        assert!(belongs_to(
            &invocation_id("acme", "t", "run-1", "x"),
            "acme",
            "t"
        ));
        assert!(!belongs_to("other/t/run-1/x", "acme", "t"));
    }

    #[test]
    fn approval_ids_parse_back_to_what_they_name() {
        let id = approval_id("team/42 a", "run-3", "scripted-tool-2");
        assert_eq!(id, "appr:team/42 a/run-3/scripted-tool-2");
        assert_eq!(
            parse_approval_id(&id),
            Some(ApprovalRef {
                thread_id: "team/42 a",
                run_id: "run-3",
                call_id: "scripted-tool-2",
            })
        );
        assert_eq!(thread_of_approval(&id), Some("team/42 a"));
        for bad in [
            "appr:x",
            "appr:t/run-1",
            "appr:/run-1/c",
            "appr:t//c",
            "appr:t/run-1/",
            "nope",
            "t/run-1/c",
        ] {
            assert_eq!(parse_approval_id(bad), None, "{bad}");
        }
    }
}
