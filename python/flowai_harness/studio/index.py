"""Studio's view of a tenant's run log: threads, approvals, costs and latency, folded from the
logged envelopes (``flowai.v1.RuntimeEvent``) as they come.

Owns :class:`RunIndex` (:meth:`RunIndex.add` folds one envelope, in log order per thread, and
says what changed), :class:`ThreadView`, :class:`RunView` and :class:`ApprovalView`. Both
Studio backends feed it the same envelopes (the embedded runtime's log lines, the run-log topic
on Kafka), so the pages read the same in both modes. Everything here is derived from the log:
nothing is decided, and an envelope seen twice (a reconnect, a re-read) is ignored by its seq.

Must not import the runtime, Kafka, FastAPI or the server: it is a pure fold (the engine
only reads approval ids for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .._native import parse_approval_id

__all__ = ["ApprovalView", "Change", "RunIndex", "RunView", "ThreadView"]

Envelope = dict[str, Any]
RunStatus = Literal["running", "awaiting-approval", "finished", "cancelled", "failed"]
ApprovalStatus = Literal["pending", "approve", "reject", "revise", "closed"]

_USAGE_KEYS: Final = (
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "cacheReadInputTokens",
    "cacheCreationInputTokens",
)


@dataclass
class ApprovalView:
    """One approval gate, as the run log tells it."""

    id: str
    thread_id: str
    run_id: str | None
    kind: str
    target: str
    agent: str | None
    payload: Any
    glimpse: Any
    requested_at: int | None
    requested_seq: int | None
    expires_at: int | None
    approvals_required: int
    approvers: list[str] = field(default_factory=list)
    status: ApprovalStatus = "pending"
    decided_at: int | None = None
    approver: str | None = None
    feedback: str | None = None
    reason: str | None = None
    partial: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "threadId": self.thread_id,
            "runId": self.run_id,
            "kind": self.kind,
            "target": self.target,
            "agent": self.agent,
            "payload": self.payload,
            "glimpse": self.glimpse,
            "requestedAt": self.requested_at,
            "requestedSeq": self.requested_seq,
            "expiresAt": self.expires_at,
            "approvalsRequired": self.approvals_required,
            "approvers": list(self.approvers),
            "status": self.status,
            "decidedAt": self.decided_at,
            "approver": self.approver,
            "feedback": self.feedback,
            "reason": self.reason,
            "partial": self.partial,
        }


@dataclass
class RunView:
    """One run of a thread (a query and everything it caused)."""

    run_id: str
    agent: str | None
    prompt: str
    started_at: int | None
    status: RunStatus = "running"
    ended_at: int | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    error: str | None = None
    # Model calls of this run: per agent, how many, their tokens and the time they took.
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def as_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "agent": self.agent,
            "prompt": self.prompt,
            "status": self.status,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "durationMs": self.duration_ms,
            "usage": dict(self.usage),
            "costUsd": self.cost_usd,
            "error": self.error,
            "agents": {name: dict(stats) for name, stats in self.agents.items()},
        }


@dataclass
class ThreadView:
    """A thread: its runs, in order, and where its log has got to."""

    thread_id: str
    runs: list[RunView] = field(default_factory=list)
    last_seq: int = 0
    updated_at: int | None = None

    @property
    def last_run(self) -> RunView | None:
        return self.runs[-1] if self.runs else None

    def as_json(self) -> dict[str, Any]:
        last = self.last_run
        costs = [run.cost_usd for run in self.runs if run.cost_usd is not None]
        durations = [run.duration_ms for run in self.runs if run.duration_ms is not None]
        return {
            "threadId": self.thread_id,
            "status": last.status if last else "idle",
            "agent": last.agent if last else None,
            "prompt": last.prompt if last else "",
            "runs": len(self.runs),
            "startedAt": self.runs[0].started_at if self.runs else None,
            "updatedAt": self.updated_at,
            "lastSeq": self.last_seq,
            "totalTokens": sum(run.usage.get("totalTokens", 0) for run in self.runs),
            "costUsd": sum(costs) if costs else None,
            "durationMs": sum(durations) if durations else None,
        }


@dataclass(frozen=True)
class Change:
    """What one envelope changed: the thread, and the approval if it touched one."""

    thread_id: str
    approval_ids: tuple[str, ...] = ()


class RunIndex:
    """Threads and approvals of one tenant, folded from run-log envelopes."""

    def __init__(self) -> None:
        self.threads: dict[str, ThreadView] = {}
        self.approvals: dict[str, ApprovalView] = {}
        # The envelopes themselves, per thread in seq order (timelines are served from here).
        self.entries: dict[str, list[Envelope]] = {}

    def add(self, envelope: Envelope) -> Change | None:
        """Fold one logged envelope; None when it is not new (its seq was seen already)."""
        thread_id = envelope.get("thread_id")
        seq = envelope.get("seq")
        if not isinstance(thread_id, str) or not isinstance(seq, int):
            return None
        thread = self.threads.get(thread_id)
        if thread is None:
            thread = self.threads[thread_id] = ThreadView(thread_id)
            self.entries[thread_id] = []
        if seq <= thread.last_seq:
            return None
        thread.last_seq = seq
        ts = envelope.get("ts")
        if isinstance(ts, int):
            thread.updated_at = ts
        self.entries[thread_id].append(envelope)
        payload = envelope.get("payload") or {}
        touched = self._fold(thread, envelope, payload)
        return Change(thread_id, touched)

    def since(self, thread_id: str, seq: int) -> list[Envelope]:
        """The thread's envelopes after ``seq``, in order."""
        entries = self.entries.get(thread_id, [])
        # seqs are 1, 2, 3, ... without gaps, so the position is the seq (kept general anyway:
        # a log read from the middle starts later).
        start = 0
        if entries:
            first = entries[0]["seq"]
            start = max(0, min(len(entries), seq - first + 1))
            while start > 0 and entries[start - 1]["seq"] > seq:
                start -= 1
        return entries[start:]

    def pending(self) -> list[ApprovalView]:
        return [a for a in self.approvals.values() if a.status == "pending"]

    # --- the fold --------------------------------------------------------------------------

    def _fold(self, thread: ThreadView, envelope: Envelope, p: dict[str, Any]) -> tuple[str, ...]:
        kind = p.get("type")
        ts = envelope.get("ts") if isinstance(envelope.get("ts"), int) else None
        run = self._run_of(thread, envelope)
        if kind == "run-start":
            thread.runs.append(
                RunView(
                    run_id=str(p.get("runId") or envelope.get("run_id") or len(thread.runs) + 1),
                    agent=p.get("agent"),
                    prompt=str(p.get("prompt") or ""),
                    started_at=ts,
                )
            )
            return ()
        if run is None:
            return ()
        data: dict[str, Any] = p["data"] if isinstance(p.get("data"), dict) else {}
        if kind == "model-response":
            agent = str(p.get("agent") or "?")
            stats = run.agents.setdefault(
                agent, {"calls": 0, "tokens": 0, "latencyMs": 0, "model": p.get("model")}
            )
            usage = p.get("usage") or {}
            stats["calls"] += 1
            stats["tokens"] += int(usage.get("totalTokens", 0) or 0)
            stats["latencyMs"] += int(p.get("latencyMs") or 0)
        elif kind == "data-cost-summary":
            total = data.get("totalCost")
            if isinstance(total, int | float):
                run.cost_usd = float(total)
            for entry in data.get("agents") or []:
                name = entry.get("agentName") if isinstance(entry, dict) else None
                cost = entry.get("cost") if isinstance(entry, dict) else None
                if isinstance(name, str) and isinstance(cost, int | float):
                    stats = run.agents.setdefault(
                        name, {"calls": 0, "tokens": 0, "latencyMs": 0, "model": None}
                    )
                    stats["costUsd"] = stats.get("costUsd", 0.0) + float(cost)
        elif kind == "approval-required":
            run.status = "awaiting-approval"
            if _copied(thread, data):
                return ()
            approval = ApprovalView(
                id=str(data.get("id")),
                thread_id=thread.thread_id,
                run_id=envelope.get("run_id"),
                kind=str(data.get("kind", "")),
                target=str(data.get("target", "")),
                agent=data.get("agent"),
                payload=data.get("payload"),
                glimpse=data.get("glimpse"),
                requested_at=ts,
                requested_seq=envelope.get("seq"),
                expires_at=data.get("expiresAt"),
                approvals_required=int(data.get("approvalsRequired") or 1),
            )
            self.approvals[approval.id] = approval
            return (approval.id,)
        elif kind == "approval-progress":
            found = None if _copied(thread, data) else self.approvals.get(str(data.get("id")))
            if found is not None and isinstance(data.get("approver"), str):
                found.approvers.append(data["approver"])
                return (found.id,)
        elif kind == "approval-decision":
            found = None if _copied(thread, data) else self.approvals.get(str(data.get("id")))
            run.status = "running"
            if found is not None:
                outcome = data.get("outcome") or {}
                found.status = outcome.get("outcome", "closed")
                found.partial = outcome.get("partial")
                found.decided_at = ts
                found.approver = data.get("approver")
                found.feedback = data.get("feedback")
                found.reason = data.get("reason")
                return (found.id,)
        elif kind == "finish":
            usage = p.get("usage") or {}
            run.usage = {key: int(usage.get(key, 0) or 0) for key in _USAGE_KEYS}
            run.status = "cancelled" if p.get("finishReason") == "cancelled" else "finished"
            run.ended_at = ts
            return self._close_gates(thread, run)
        elif kind == "error":
            error = p.get("error") or {}
            run.status = "failed"
            run.error = f"{error.get('code')}: {error.get('message')}"
            run.ended_at = ts
            return self._close_gates(thread, run)
        return ()

    def _run_of(self, thread: ThreadView, envelope: Envelope) -> RunView | None:
        run_id = envelope.get("run_id")
        for run in reversed(thread.runs):
            if run_id is None or run.run_id == run_id:
                return run
        return thread.last_run

    def _close_gates(self, thread: ThreadView, run: RunView) -> tuple[str, ...]:
        """A run that ended (cancelled, failed) leaves no gate open."""
        closed = []
        for approval in self.approvals.values():
            # Run ids count per thread: another thread's run-1 is another run.
            if (
                approval.thread_id == thread.thread_id
                and approval.run_id == run.run_id
                and approval.status == "pending"
            ):
                approval.status = "closed"
                approval.reason = run.status
                closed.append(approval.id)
        return tuple(closed)


def _copied(thread: ThreadView, data: dict[str, Any]) -> bool:
    """Whether an approval fact names another thread's gate: a fork's copy of its source's
    history, which is the source's approval, not this one's (the fork re-opens a gate it
    copied under an id of its own). The engine reads the id."""
    approval_id = data.get("id")
    if not isinstance(approval_id, str):
        return False
    approval = parse_approval_id(approval_id)
    return approval is not None and approval.thread_id != thread.thread_id
