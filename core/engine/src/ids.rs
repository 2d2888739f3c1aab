//! Ids the engine derives: the same log gives the same ids, in every process and on replay.
//!
//! - tool invocation effect: `{tenant}/{thread}/{run}/{toolInvocationId}`
//! - approval check: the invocation id + `/check`
//! - approval: `appr:{thread}/{run}/{toolInvocationId}` (thread first, so a runtime finds the
//!   thread from the id alone; see `approval::thread_of_approval`)
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
}
