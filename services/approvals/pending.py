"""The approvals the service knows, folded from the ``approval-requests`` and
``approval-decisions`` topics (and the cancellations on ``queries``).

Owns :class:`Approval`, :class:`Decision` and :class:`ApprovalBook`. The book is rebuilt on
every start by folding the topics from the beginning, so it is never the only copy of
anything: the topics are. Keys are ``(tenant, approval id)``: approval ids
(``appr:{thread}/{run}/{call}``) are unique within a tenant only, and another tenant's id
simply is not in the tenant's view.

Rules of the fold, the same the engine applies to the thread's decisions:

- a request is added once; a copy (the runtime re-issues the requests of a run it resumes)
  changes nothing but the approvers the engine reports as counted so far (``approvals``,
  from an engine that counts approvers), which are shown beside the ones read here;
- decisions count in the order of their partition (a thread's decisions share one). A
  decision id seen before is a copy (a retried publish) and changes nothing; an approver
  counts once per approval; an approval that needs ``approvalsRequired`` approvers (the
  two-person rule; 1 when the request does not say) is decided by the Nth approve, or by
  the first reject or revise; decisions after that are ignored;
- a decision may be read before its request (the topics are read side by side): it waits
  for its request;
- a ``CancelRun`` of the thread (of the run, when it names one) sent after an approval was
  requested cancels it while it is still pending.

Pure: no Kafka, Redis, HTTP, clock or signature checks (callers pass ``now`` and fold only
decisions they verified). Must not import the rest of the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from flowai_harness.messages import ApprovalDecision, ApprovalRequest

__all__ = ["Approval", "ApprovalBook", "Decision", "Status"]

Status = Literal["pending", "expired", "decided", "cancelled"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One counted decision: who decided what, when, in which message."""

    id: str  # the ApprovalDecision envelope's id
    outcome: str
    approver: str | None
    ts: int
    feedback: str | None = None
    partial: Any = None

    def view(self) -> dict[str, Any]:
        """The decision as the API shows it."""
        shown: dict[str, Any] = {
            "decision_id": self.id,
            "outcome": self.outcome,
            "approver": self.approver,
            "decided_at": self.ts,
        }
        if self.feedback is not None:
            shown["feedback"] = self.feedback
        if self.partial is not None:
            shown["partial"] = self.partial
        return shown

    def same_choice(self, other: Decision) -> bool:
        """Whether ``other`` asks for what this one did (a retry of it)."""
        return (self.outcome, self.feedback, self.partial) == (
            other.outcome,
            other.feedback,
            other.partial,
        )

    @classmethod
    def of(cls, message: ApprovalDecision) -> Decision:
        payload = message.payload
        return cls(
            id=message.id,
            outcome=payload.outcome,
            approver=payload.approver,
            ts=message.ts,
            feedback=payload.feedback,
            partial=payload.partial,
        )


@dataclass(slots=True)
class Approval:
    """One approval request and the decisions that counted."""

    tenant: str
    id: str
    thread_id: str
    run_id: str | None
    kind: str  # "tool" or "plan"
    target: str  # the tool name or the plan id
    payload: Any  # the tool's arguments or the plan
    correlation_id: str | None
    requested_at: int
    expires_at: int | None
    agent: str | None = None
    glimpse: Any = None
    approvals_required: int = 1
    # Counted decisions in topic order: approves, then the one that closed it, if any.
    votes: list[Decision] = field(default_factory=list)
    decision: Decision | None = None  # the one that decided it
    cancelled_at: int | None = None
    # Who the engine says approved so far (its request's ``approvals``), when it says.
    reported: tuple[str, ...] = ()
    # The id of every decision read for it, counted or not.
    seen: set[str] = field(default_factory=set)

    def status(self, now: int) -> Status:
        if self.decision is not None:
            return "decided"
        if self.cancelled_at is not None:
            return "cancelled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "pending"

    def vote_of(self, approver: str) -> Decision | None:
        return next((vote for vote in self.votes if vote.approver == approver), None)

    def counted(self, decision_id: str) -> Decision | None:
        return next((vote for vote in self.votes if vote.id == decision_id), None)

    @property
    def approvers(self) -> list[str]:
        """Who approved so far, in order (as counted here)."""
        return [v.approver or "?" for v in self.votes if v.outcome == "approve"]

    @property
    def progress(self) -> list[str]:
        """Who approved so far, as counted here or reported by the engine."""
        counted = self.approvers
        return counted + [name for name in self.reported if name not in counted]

    def view(self, now: int) -> dict[str, Any]:
        """The approval as the API shows it (snake_case, like the envelopes)."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "kind": self.kind,
            "target": self.target,
            "agent": self.agent,
            "payload": self.payload,
            "glimpse": self.glimpse,
            "correlation_id": self.correlation_id,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "status": self.status(now),
            "approvals_required": self.approvals_required,
            "approvals": self.progress,
            "decision": None if self.decision is None else self.decision.view(),
        }

    @classmethod
    def of(cls, message: ApprovalRequest) -> Approval:
        payload = message.payload
        # How many different approvers it needs (the two-person rule; absent: one).
        required = payload.approvalsRequired
        return cls(
            tenant=message.tenant,
            id=payload.id,
            thread_id=message.thread_id,
            run_id=message.run_id,
            kind=payload.kind,
            target=payload.target,
            payload=payload.payload,
            correlation_id=payload.correlationId,
            requested_at=message.ts,
            expires_at=payload.expiresAt,
            agent=payload.agent,
            glimpse=payload.glimpse,
            approvals_required=required if isinstance(required, int) and required > 1 else 1,
            reported=_reported(payload.model_extra),
        )


@dataclass
class ApprovalBook:
    """Every approval seen on the topics, by tenant and id."""

    _tenants: dict[str, dict[str, Approval]] = field(default_factory=dict)
    # Decisions read before their request (the topics are read side by side), in order.
    _early: dict[tuple[str, str], list[Decision]] = field(default_factory=dict)

    def add_request(self, message: ApprovalRequest) -> tuple[Approval, bool]:
        """Fold one request; returns the approval and whether it changed (new, or a copy
        reporting more approvers)."""
        approvals = self._tenants.setdefault(message.tenant, {})
        known = approvals.get(message.payload.id)
        if known is not None:
            reported = _reported(message.payload.model_extra)
            if len(reported) > len(known.reported):
                known.reported = reported
                return known, True
            return known, False
        approval = Approval.of(message)
        approvals[approval.id] = approval
        for decision in self._early.pop((message.tenant, approval.id), []):
            _count(approval, decision)
        return approval, True

    def add_decision(self, message: ApprovalDecision) -> Approval | None:
        """Fold one decision; returns its approval when the decision counted."""
        tenant, approval_id = message.tenant, message.payload.approval_id
        decision = Decision.of(message)
        approval = self.get(tenant, approval_id)
        if approval is None:
            early = self._early.setdefault((tenant, approval_id), [])
            if all(seen.id != decision.id for seen in early):
                early.append(decision)
            return None
        return approval if _count(approval, decision) else None

    def cancel(self, tenant: str, thread_id: str, run_id: str | None, ts: int) -> list[Approval]:
        """Fold a ``CancelRun``; returns the approvals it cancelled."""
        cancelled = []
        for approval in self._tenants.get(tenant, {}).values():
            if (
                approval.thread_id == thread_id
                and (run_id is None or approval.run_id == run_id)
                and approval.decision is None
                and approval.cancelled_at is None
                and approval.requested_at <= ts
            ):
                approval.cancelled_at = ts
                cancelled.append(approval)
        return cancelled

    def get(self, tenant: str, approval_id: str) -> Approval | None:
        return self._tenants.get(tenant, {}).get(approval_id)

    def waiting(self, tenant: str) -> list[Approval]:
        """The tenant's approvals without a decision, not cancelled (expired ones included),
        oldest first."""
        found = [
            a
            for a in self._tenants.get(tenant, {}).values()
            if a.decision is None and a.cancelled_at is None
        ]
        found.sort(key=lambda approval: (approval.requested_at, approval.id))
        return found

    def __len__(self) -> int:
        return sum(len(approvals) for approvals in self._tenants.values())

    def __iter__(self) -> Iterator[Approval]:
        for approvals in self._tenants.values():
            yield from approvals.values()


def _count(approval: Approval, decision: Decision) -> bool:
    """Count ``decision`` if it may; True when it did."""
    approval.seen.add(decision.id)
    if approval.decision is not None or approval.counted(decision.id) is not None:
        return False  # decided already, or a copy
    if decision.approver is not None and approval.vote_of(decision.approver) is not None:
        return False  # an approver counts once
    approval.votes.append(decision)
    if decision.outcome != "approve" or len(approval.approvers) >= approval.approvals_required:
        approval.decision = decision
    return True


def _reported(extra: dict[str, Any] | None) -> tuple[str, ...]:
    """The approvers an engine reports in a request's ``approvals`` (names, or objects with
    an ``approver``); () when it reports none."""
    listed = (extra or {}).get("approvals")
    if not isinstance(listed, list):
        return ()
    names = [
        item if isinstance(item, str) else item.get("approver")
        for item in listed
        if isinstance(item, (str, dict))
    ]
    return tuple(name for name in names if isinstance(name, str) and name)
