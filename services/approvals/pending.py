"""The approvals the service knows, folded from the ``approval-requests`` and
``approval-decisions`` topics.

Owns :class:`Approval`, :class:`Decision` and :class:`ApprovalBook`. The book is rebuilt on
every start by folding both topics from the beginning, so it is never the only copy of
anything: the topics are. Keys are ``(tenant, approval id)``: approval ids
(``appr:{thread}/{run}/{call}``) are unique within a tenant only, and another tenant's id
simply is not in the tenant's view.

Rules of the fold:

- a request is added once; a copy (the runtime re-issues the requests of a run it resumes)
  changes nothing;
- the first decision for an approval wins, in the order of its partition (a thread's
  decisions share one); later ones are ignored, as the engine ignores them. A decision this
  service published is shown at once, unconfirmed, until the topic is read back: if another
  decision came first on the topic (published directly, say by ``Client.respond_to_approval``),
  that one replaces it, because it is the one the runtime honours;
- a decision may be read before its request (the two topics are read side by side): it waits
  for its request.

Pure: no Kafka, Redis, HTTP or clock (callers pass ``now``). Must not import the rest of the
service.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from flowai_harness.messages import ApprovalDecision, ApprovalRequest

__all__ = ["Approval", "ApprovalBook", "Decision", "Status"]

Status = Literal["pending", "expired", "decided"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision that won: who decided what, when, in which message."""

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
    """One approval request and, once made, its decision."""

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
    decision: Decision | None = None
    # Whether ``decision`` was read on the decisions topic (or only published from here).
    confirmed: bool = False

    def status(self, now: int) -> Status:
        if self.decision is not None:
            return "decided"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "pending"

    def view(self, now: int) -> dict[str, Any]:
        """The approval as the API shows it (snake_case, like the envelopes)."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "kind": self.kind,
            "target": self.target,
            "payload": self.payload,
            "correlation_id": self.correlation_id,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "status": self.status(now),
            "decision": None if self.decision is None else self.decision.view(),
        }

    @classmethod
    def of(cls, message: ApprovalRequest) -> Approval:
        payload = message.payload
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
        )


@dataclass
class ApprovalBook:
    """Every approval seen on the topics, by tenant and id."""

    _tenants: dict[str, dict[str, Approval]] = field(default_factory=dict)
    # Decisions read before their request (the topics are read side by side).
    _early: dict[tuple[str, str], Decision] = field(default_factory=dict)

    def add_request(self, message: ApprovalRequest) -> Approval:
        """Fold one request; returns the approval (the one already known for a copy)."""
        approvals = self._tenants.setdefault(message.tenant, {})
        known = approvals.get(message.payload.id)
        if known is not None:
            return known
        approval = Approval.of(message)
        approval.decision = self._early.pop((message.tenant, approval.id), None)
        approval.confirmed = approval.decision is not None
        approvals[approval.id] = approval
        return approval

    def add_decision(self, message: ApprovalDecision) -> bool:
        """Fold one decision; True when it is the one that counts (the first)."""
        return self.decided(message.tenant, message.payload.approval_id, Decision.of(message))

    def decided(
        self, tenant: str, approval_id: str, decision: Decision, *, confirmed: bool = True
    ) -> bool:
        """Record ``decision`` (``confirmed``: read on the topic) unless the approval has one
        that counts; True when it was recorded."""
        approval = self.get(tenant, approval_id)
        if approval is None:
            if not confirmed:
                return False
            return self._early.setdefault((tenant, approval_id), decision) is decision
        if approval.decision is not None and (approval.confirmed or not confirmed):
            return False
        approval.decision = decision
        approval.confirmed = confirmed
        return True

    def get(self, tenant: str, approval_id: str) -> Approval | None:
        return self._tenants.get(tenant, {}).get(approval_id)

    def waiting(self, tenant: str) -> list[Approval]:
        """The tenant's approvals without a decision (expired ones included), oldest first."""
        found = [a for a in self._tenants.get(tenant, {}).values() if a.decision is None]
        found.sort(key=lambda approval: (approval.requested_at, approval.id))
        return found

    def __len__(self) -> int:
        return sum(len(approvals) for approvals in self._tenants.values())

    def __iter__(self) -> Iterator[Approval]:
        for approvals in self._tenants.values():
            yield from approvals.values()
