"""Studio's run index folds a real run log (the Acme example on an embedded runtime): thread
status through the gate, the approval and who decided it, usage per run and agent, a
cancelled run closing its gate, envelopes seen twice changing nothing, and a fork's copy of
its source's gate staying the source's."""

from __future__ import annotations

from typing import Any

from examples.acme.app import build_runtime, restock_prompt

from flowai_harness.studio.index import RunIndex


async def run_to_gate(runtime: Any, thread_id: str) -> str:
    async for event in runtime.query(restock_prompt(), thread_id):
        if event["type"] == "approval-required":
            approval_id: str = event["data"]["id"]
            return approval_id
    raise AssertionError("the run never reached its gate")


async def test_the_index_follows_a_run_through_its_gate() -> None:
    runtime = build_runtime([])
    index = RunIndex()
    pending_seen: list[Any] = []
    async for event in runtime.query(restock_prompt(), "t1"):
        if event["type"] != "approval-required":
            continue
        for entry in runtime.replay("t1").entries:
            index.add(entry)
        assert index.threads["t1"].as_json()["status"] == "awaiting-approval"
        pending_seen = index.pending()
        await runtime.respond_to_approval(event["data"]["id"], "approve", "ok", approver="dana")
    [pending] = pending_seen
    approval_id = pending.id
    assert (pending.kind, pending.target, pending.agent) == ("plan", "restock-1", "executor")

    entries = runtime.replay("t1").entries
    changes = [index.add(entry) for entry in entries]
    # The envelopes folded before are not new; each of the rest is.
    seen = pending.requested_seq or 0
    assert all(change is None for change in changes[:seen])
    assert all(change is not None for change in changes[seen:])

    thread = index.threads["t1"].as_json()
    assert (thread["status"], thread["lastSeq"], thread["runs"]) == ("finished", len(entries), 1)
    assert index.pending() == []
    decided = index.approvals[approval_id]
    assert (decided.status, decided.approver, decided.feedback) == ("approve", "dana", "ok")
    [run] = index.threads["t1"].runs
    finish = next(e["payload"] for e in entries if e["payload"]["type"] == "finish")
    assert run.usage["totalTokens"] == finish["usage"]["totalTokens"] > 0
    assert set(run.agents) == {"acme_coordinator", "planner", "executor"}
    assert sum(stats["calls"] for stats in run.agents.values()) == sum(
        1 for e in entries if e["payload"]["type"] == "model-response"
    )
    assert [e["seq"] for e in index.since("t1", 40)] == list(range(41, len(entries) + 1))


async def test_a_cancelled_run_closes_its_gate() -> None:
    runtime = build_runtime([])
    approval_id = await run_to_gate(runtime, "t2")
    await runtime.cancel("t2")
    index = RunIndex()
    for entry in runtime.replay("t2").entries:
        index.add(entry)
    assert index.threads["t2"].as_json()["status"] == "cancelled"
    closed = index.approvals[approval_id]
    assert (closed.status, closed.reason) == ("closed", "cancelled")


async def test_a_fork_read_before_its_source_keeps_each_gate_in_its_own_thread() -> None:
    runtime = build_runtime([])
    source_approval = await run_to_gate(runtime, "src")
    gate = runtime.replay("src").lines
    fork = runtime.fork("src", at=gate, new_thread_id="fk")
    index = RunIndex()
    # The fork first: its copy of the source's gate must not take the source's approval.
    for thread_id in ("fk", "src"):
        for entry in runtime.replay(thread_id).entries:
            index.add(entry)
    fork_approval = fork.snapshot["run"]["pending"]["approval"]["id"]
    assert {a.id: a.thread_id for a in index.pending()} == {
        source_approval: "src",
        fork_approval: "fk",
    }
    # Cancelling the fork's run-1 closes the fork's gate only, not the source's run-1 gate.
    await runtime.cancel("fk")
    for entry in runtime.replay("fk").entries:
        index.add(entry)
    assert {a.id for a in index.pending()} == {source_approval}
    assert index.approvals[fork_approval].status == "closed"
    await runtime.aclose()
