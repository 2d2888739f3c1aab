"""What the approvals service does, without Kafka's loop or HTTP's plumbing.

Owns :class:`ApprovalDesk`, :class:`DecisionRequest` (:func:`parse_decision`) and
:class:`Rejected`.

- :meth:`ApprovalDesk.observe` folds one message of ``approval-requests`` or
  ``approval-decisions`` into the :class:`~.pending.ApprovalBook`, validated against the
  message models (``schemas/v1``); a message it cannot use raises :class:`Rejected` with the
  dead-letter reason.
- :meth:`ApprovalDesk.decide` turns an HTTP decision into a ``flowai.v1.ApprovalDecision``:
  the approval must be known to the tenant (another tenant's id reads as unknown), the
  approver allowed by the policy, the approval neither decided nor expired; then the
  approval is claimed in Redis (first decision wins, across instances) and the decision is
  published (key ``tenant/thread_id``, so it reaches the runtime that owns the thread).

Errors are the package's typed errors (the HTTP layer maps each class to a status):
InvalidInputError (400), ApproverNotAllowedError (403), UnknownApprovalError (404),
ApprovalAlreadyResolvedError / ApprovalExpiredError (409), BusError (503).

Must not import aiohttp or another service; talks to Kafka only through a
:class:`flowai_harness.bus.Publisher`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import orjson
import pydantic

from flowai_harness import bus
from flowai_harness.errors import (
    ApprovalAlreadyResolvedError,
    ApprovalExpiredError,
    ApproverNotAllowedError,
    BusError,
    InvalidInputError,
    UnknownApprovalError,
    UnknownSchemaError,
)
from flowai_harness.messages import ApprovalDecision, ApprovalRequest, Envelope

from .claims import DecisionClaims
from .pending import Approval, ApprovalBook, Decision
from .policy import AppPolicy

__all__ = ["ApprovalDesk", "DecisionRequest", "Rejected", "parse_decision"]

log = logging.getLogger("flowai.approvals")

OUTCOMES: Final = ("approve", "reject", "revise")
MAX_APPROVER: Final = 256
_FIELDS: Final = ("outcome", "approver", "feedback", "partial")
_DECISION: Final = ApprovalDecision.NAME


class Rejected(Exception):
    """A message on an input topic this service cannot use: dead-letter it, go on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A decision as posted to the API."""

    outcome: Literal["approve", "reject", "revise"]
    approver: str
    feedback: str | None = None
    partial: Any = None


def parse_decision(raw: bytes) -> DecisionRequest:
    """Check a decision body; :class:`InvalidInputError` says what is wrong."""
    example = '{"outcome": "approve", "approver": "alice"}'
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the body is not JSON ({exc}); send e.g. {example}") from None
    if not isinstance(body, dict):
        raise InvalidInputError(
            f"the body must be a JSON object, got {type(body).__name__}; send e.g. {example}"
        )
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; a decision has {', '.join(_FIELDS)}"
        )
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        raise InvalidInputError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    approver = body.get("approver")
    if not isinstance(approver, str) or not approver.strip():
        raise InvalidInputError(
            f"approver is required: a non-empty string naming who decides, got {approver!r}"
        )
    if len(approver) > MAX_APPROVER:
        raise InvalidInputError(f"approver must be at most {MAX_APPROVER} characters")
    feedback = body.get("feedback")
    if feedback is not None and not isinstance(feedback, str):
        raise InvalidInputError(
            f"feedback must be a string (or left out), got {type(feedback).__name__}"
        )
    return DecisionRequest(
        outcome=outcome, approver=approver, feedback=feedback, partial=body.get("partial")
    )


class ApprovalDesk:
    """The approvals of every tenant, and deciding them; see the module docstring."""

    def __init__(
        self,
        policy: AppPolicy,
        claims: DecisionClaims,
        publisher: bus.Publisher,
        topics: bus.Topics,
        *,
        clock: Callable[[], int] = bus.now_ms,
        catch_up: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``catch_up`` waits (bounded) until everything on the input topics right now has
        been observed; a lookup of an unknown id calls it once before answering 404, so a
        request a bot just read on the topic is found."""
        self.policy = policy
        self.claims = claims
        self.publisher = publisher
        self.topics = topics
        self.book = ApprovalBook()
        self.clock = clock
        self._catch_up = catch_up
        # False until the topics were read up to where they ended at start: before that an
        # answer could miss approvals or decisions.
        self.ready = catch_up is None

    # --- the topics ------------------------------------------------------------------------

    def observe(self, topic: str, value: bytes | None) -> None:
        """Fold one message of ``approval-requests`` / ``approval-decisions``."""
        if topic == self.topics.approval_requests:
            self.book.add_request(_validated(ApprovalRequest, value))
        elif topic == self.topics.approval_decisions:
            self.book.add_decision(_validated(ApprovalDecision, value))
        else:  # a wiring mistake, not a bad message
            raise ValueError(f"the approvals service does not read {topic!r}")

    # --- the API ---------------------------------------------------------------------------

    def listing(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's approvals waiting for a decision, expired ones marked."""
        self._check_ready()
        now = self.clock()
        return [approval.view(now) for approval in self.book.waiting(tenant)]

    async def lookup(self, tenant: str, approval_id: str) -> Approval:
        """The tenant's approval ``approval_id`` (decided or not)."""
        self._check_ready()
        approval = self.book.get(tenant, approval_id)
        if approval is None and self._catch_up is not None:
            await self._catch_up()
            approval = self.book.get(tenant, approval_id)
        if approval is None:
            raise UnknownApprovalError(
                f"no approval {approval_id!r} for tenant {tenant!r}; check the id and the "
                "tenant (list them with GET /v1/tenants/{tenant}/approvals)"
            )
        return approval

    async def decide(
        self, tenant: str, approval_id: str, request: DecisionRequest
    ) -> dict[str, Any]:
        """Publish ``request`` as the approval's decision; returns it as published."""
        approval = await self.lookup(tenant, approval_id)
        now = self.clock()
        if not await self.policy.approvers.allows(tenant, request.approver, approval.view(now)):
            raise ApproverNotAllowedError(
                f"approver {request.approver!r} may not decide for tenant {tenant!r} "
                f"(allowed: {self.policy.approvers.describe(tenant)})"
            )
        _check_open(approval, now)
        decision = Decision(
            id=f"decision/{uuid.uuid4().hex}",
            outcome=request.outcome,
            approver=request.approver,
            ts=now,
            feedback=request.feedback,
            partial=request.partial,
        )
        claimed = decision.view()
        holder = await self.claims.claim(tenant, approval_id, claimed)
        if holder is not None:
            raise _already_decided(approval_id, holder)
        try:
            await self.publisher.publish(
                self.topics.approval_decisions,
                bus.thread_key(tenant, approval.thread_id),
                self._envelope(approval, decision),
                [(bus.TRACEPARENT, bus.new_traceparent().encode())],
            )
        except Exception as exc:
            log.exception("publishing the decision on %s failed", approval_id)
            # Not published: let the next attempt decide. (Should the broker have taken it
            # after all, the engine still honours only the first decision on the topic.)
            await self.claims.release(tenant, approval_id, claimed)
            raise BusError(
                f"the decision could not be published ({type(exc).__name__}); try again"
            ) from exc
        # Shown at once; the topic, read back, confirms it (or names the decision that was
        # published first by another route, which then wins here too).
        self.book.decided(tenant, approval_id, decision, confirmed=False)
        log.info(
            "approval %s of %s: %s by %s", approval_id, tenant, request.outcome, request.approver
        )
        return {"approval_id": approval_id, "tenant": tenant, **claimed}

    def _envelope(self, approval: Approval, decision: Decision) -> bytes:
        payload: dict[str, Any] = {
            "approval_id": approval.id,
            "outcome": decision.outcome,
            "approver": decision.approver,
        }
        if decision.feedback is not None:
            payload["feedback"] = decision.feedback
        if decision.partial is not None:
            payload["partial"] = decision.partial
        return orjson.dumps(
            {
                "schema": _DECISION,
                "id": decision.id,
                "tenant": approval.tenant,
                "thread_id": approval.thread_id,
                "run_id": approval.run_id,
                # The request it answers (its envelope id is the approval id).
                "causation_id": approval.id,
                "ts": decision.ts,
                "payload": payload,
            }
        )

    def _check_ready(self) -> None:
        if not self.ready:
            raise BusError(
                "the approvals service is still reading the approval topics; try again in a moment",
                code="NOT_READY",
            )


def _check_open(approval: Approval, now: int) -> None:
    if approval.decision is not None:
        raise _already_decided(approval.id, approval.decision.view())
    if approval.expires_at is not None and now >= approval.expires_at:
        raise ApprovalExpiredError(
            f"approval {approval.id!r} expired at {approval.expires_at} (ms since the epoch); "
            "the runtime resolves it as rejected (timeout)",
            details={"expires_at": approval.expires_at},
        )


def _already_decided(approval_id: str, decision: Mapping[str, Any]) -> ApprovalAlreadyResolvedError:
    return ApprovalAlreadyResolvedError(
        f"approval {approval_id!r} was already decided: {decision.get('outcome')} by "
        f"{decision.get('approver')!r}; the first decision wins",
        details={"decision": dict(decision)},
    )


M = TypeVar("M", bound=Envelope)


def _validated(model: type[M], value: bytes | None) -> M:
    fields = None if value is None else bus.peek(value)
    if fields is None:
        raise Rejected(InvalidInputError.code, "the message is not a JSON object (an envelope)")
    schema = fields.get("schema")
    if schema != model.NAME:
        raise Rejected(
            UnknownSchemaError.code if isinstance(schema, str) else InvalidInputError.code,
            f"schema {schema!r} does not belong on this topic; it carries {model.NAME}",
        )
    try:
        message = model.model_validate_json(value or b"")
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:5]
        )
        raise Rejected(InvalidInputError.code, f"not a valid {model.NAME}: {problems}") from None
    if isinstance(message, ApprovalRequest) and message.payload.resourceId != message.tenant:
        raise Rejected(
            InvalidInputError.code,
            f"resourceId {message.payload.resourceId!r} does not match the envelope's tenant "
            f"{message.tenant!r}",
        )
    return message
